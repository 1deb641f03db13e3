//! Links deals to the business's own clients and conversations: fills `client_id` and
//! `conversation_id` of `amocrm_deals` through queries the operator writes against its own tables
//! (`JARVIS_LINK_CLIENT_SQL`, `JARVIS_LINK_CONVERSATION_SQL`).
//!
//! When it runs:
//! - after a batch of events is settled: for every lead the batch touched, the client query when the
//!   deal has no `client_id` (or its main contact changed since the linker set it) and the
//!   conversation query when it has no `conversation_id`; for every contact, the client query of the
//!   deals it is the main contact of; for every talk and chat message tied to a lead, the
//!   conversation query with the talk's inputs;
//! - for deals whose last attempt failed, again once a minute while the worker is idle;
//! - over existing rows with `jarvis link --backfill`.
//!
//! A query that fails is logged with its error and counted (`jarvis_link_failures_total`), the deal is
//! marked (`link_failed_at`) and tried again later; the events themselves are settled before any
//! query runs, so a failing or slow query never holds them up.
//!
//! When the query returns several rows, the first one wins: give it an `ORDER BY` (and `LIMIT 1`) so
//! that the answer is stable.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amocrm_webhook::{Action, Entity, WebhookEvent};
use chrono::{DateTime, Utc};
use jarvis_store::{
    DealLinks, DynStore, LinkBind, LinkColumn, LinkFailure, LinkOutcome, LinkScan, StoredEvent,
};
use serde_json::Value;

use crate::config::LinkSettings;
use crate::metrics::names;

/// How often deals whose last link attempt failed are tried again.
pub const RETRY_EVERY: Duration = Duration::from_secs(60);
/// Most deals one retry pass takes.
const RETRY_BATCH: usize = 200;
/// The least time the linking after one batch of events may take before the rest is left to the
/// retry pass; it grows with the query timeout.
const MIN_BUDGET: Duration = Duration::from_secs(10);
/// An outer bound on one query, beyond its own statement timeout: for a connection that stops
/// answering altogether.
const NETWORK_SLACK: Duration = Duration::from_secs(5);

/// A phone number in E.164 (`+79123456789`), when `raw` is a valid number. Numbers without a
/// country code are read as Russian, so `8 (912) 345-67-89` and `+7 912 345 67 89` are one number;
/// short and invalid numbers give `None`.
pub fn normalize_phone(raw: &str) -> Option<String> {
    let number = phonenumber::parse(Some(phonenumber::country::Id::RU), raw.trim()).ok()?;
    if !phonenumber::is_valid(&number) {
        return None;
    }
    Some(number.format().mode(phonenumber::Mode::E164).to_string())
}

/// An e-mail address trimmed and lower-cased, when it looks like one.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !email.contains(char::is_whitespace))
        .then_some(email)
}

/// The text values of the custom fields with a code (`PHONE`, `EMAIL`) in an API-shaped
/// `custom_fields_values` list.
fn field_values<'a>(fields: Option<&'a Value>, code: &str) -> impl Iterator<Item = &'a str> {
    fields
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |field| {
            field
                .get("field_code")
                .and_then(Value::as_str)
                .is_some_and(|c| c.eq_ignore_ascii_case(code))
        })
        .filter_map(|field| field.get("values").and_then(Value::as_array))
        .flatten()
        .filter_map(|value| match value {
            Value::Object(object) => object.get("value").and_then(Value::as_str),
            Value::String(text) => Some(text.as_str()),
            _ => None,
        })
}

/// Unique values, in first-seen order.
fn unique(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    values.filter(|v| seen.insert(v.clone())).collect()
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The inputs of the client query, bound in this order: `$1` phones (E.164), `$2` e-mails
/// (lower case), `$3` amoCRM contact id, `$4` lead id, `$5` RentProg id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInputs {
    pub phones: Vec<String>,
    pub emails: Vec<String>,
    pub contact_id: Option<String>,
    pub lead_id: String,
    pub rentprog_id: Option<String>,
}

impl ClientInputs {
    /// From the main contact's custom fields (API shape) and the deal's `metadata`.
    pub fn new(
        lead_id: &str,
        contact_id: Option<&str>,
        contact_fields: Option<&Value>,
        metadata: &Value,
        rentprog_key: &str,
    ) -> Self {
        ClientInputs {
            phones: unique(field_values(contact_fields, "PHONE").filter_map(normalize_phone)),
            emails: unique(field_values(contact_fields, "EMAIL").filter_map(normalize_email)),
            contact_id: contact_id.map(str::to_owned),
            lead_id: lead_id.to_owned(),
            rentprog_id: metadata.get(rentprog_key).and_then(text_of),
        }
    }

    /// `$1` .. `$5`.
    pub fn binds(&self) -> Vec<LinkBind> {
        vec![
            LinkBind::TextList(self.phones.clone()),
            LinkBind::TextList(self.emails.clone()),
            LinkBind::Text(self.contact_id.clone()),
            LinkBind::Text(Some(self.lead_id.clone())),
            LinkBind::Text(self.rentprog_id.clone()),
        ]
    }
}

/// The inputs of the conversation query, bound in this order: `$1` talk id, `$2` chat id, `$3`
/// contact id, `$4` lead id. Outside a talk or message event (a deal upserted, the backfill) the talk
/// and chat ids are NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationInputs {
    pub talk_id: Option<String>,
    pub chat_id: Option<String>,
    pub contact_id: Option<String>,
    pub lead_id: String,
}

impl ConversationInputs {
    /// From a `talk` or `message` event tied to a lead; `None` for any other event.
    pub fn from_event(event: &WebhookEvent) -> Option<Self> {
        if !matches!(event.entity, Entity::Talk | Entity::Message) {
            return None;
        }
        let on_lead = event
            .text("entity_type")
            .is_some_and(|t| t == "lead" || t == "leads");
        let lead_id = on_lead
            .then(|| event.text("entity_id"))
            .flatten()
            .map(str::to_owned)
            .or_else(|| {
                (event.element_type() == Some(2))
                    .then(|| event.element_id())
                    .flatten()
                    .map(|id| id.to_string())
            })?;
        Some(ConversationInputs {
            talk_id: event.talk_id().map(|id| id.to_string()),
            chat_id: event.chat_id().map(str::to_owned),
            contact_id: event.contact_id().map(|id| id.to_string()),
            lead_id,
        })
    }

    /// For a deal outside any talk event.
    pub fn for_deal(deal: &DealLinks) -> Self {
        ConversationInputs {
            talk_id: None,
            chat_id: None,
            contact_id: deal.main_contact_id.clone(),
            lead_id: deal.amocrm_deal_id.clone(),
        }
    }

    /// What the link is recorded as computed for: the talk (else the chat).
    fn linked_for(&self) -> Option<&str> {
        self.talk_id.as_deref().or(self.chat_id.as_deref())
    }

    /// `$1` .. `$4`.
    pub fn binds(&self) -> Vec<LinkBind> {
        vec![
            LinkBind::Text(self.talk_id.clone()),
            LinkBind::Text(self.chat_id.clone()),
            LinkBind::Text(self.contact_id.clone()),
            LinkBind::Text(Some(self.lead_id.clone())),
        ]
    }
}

/// Which links of a deal a trigger concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// A lead changed, or the backfill: both.
    Both,
    /// Its main contact changed.
    Client,
    /// A talk or message of the lead, with its inputs.
    Conversation,
}

/// What linking did, summed over deals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkReport {
    /// Deals looked at.
    pub deals: u64,
    /// Queries run.
    pub queries: u64,
    pub clients_linked: u64,
    pub conversations_linked: u64,
    /// Values the linker had set and that no longer match.
    pub cleared: u64,
    /// Values someone else had set, kept.
    pub kept_other: u64,
    /// Queries (or their writes) that failed.
    pub failed: u64,
}

impl std::ops::AddAssign for LinkReport {
    fn add_assign(&mut self, other: Self) {
        self.deals += other.deals;
        self.queries += other.queries;
        self.clients_linked += other.clients_linked;
        self.conversations_linked += other.conversations_linked;
        self.cleared += other.cleared;
        self.kept_other += other.kept_other;
        self.failed += other.failed;
    }
}

/// Where a backfill is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackfillProgress {
    pub batches: u64,
    pub report: LinkReport,
    /// The last deal done (the backfill goes in `amocrm_deal_id` order).
    pub last_deal: Option<String>,
}

/// Runs the configured link queries and writes their answers.
pub struct Linker {
    store: DynStore,
    settings: LinkSettings,
    last_retry: Mutex<Option<Instant>>,
    /// A retry pass is running.
    retrying: AtomicBool,
}

impl std::fmt::Debug for Linker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linker")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Linker {
    /// A linker, when at least one query is configured.
    pub fn new(store: DynStore, settings: LinkSettings) -> Option<Self> {
        if settings.client_sql.is_none() && settings.conversation_sql.is_none() {
            return None;
        }
        Some(Linker {
            store,
            settings,
            last_retry: Mutex::new(None),
            retrying: AtomicBool::new(false),
        })
    }

    pub fn settings(&self) -> &LinkSettings {
        &self.settings
    }

    /// How long linking after one batch may take.
    fn budget(&self) -> Duration {
        MIN_BUDGET.max(self.settings.timeout * 5)
    }

    fn client_due(&self, deal: &DealLinks) -> bool {
        if self.settings.client_sql.is_none() || deal.is_deleted {
            return false;
        }
        let contact_changed =
            deal.main_contact_id.as_deref() != deal.linked_for(LinkColumn::Client);
        deal.client_id.is_none()
            || (contact_changed
                && (self.settings.overwrite || !deal.set_by_someone_else(LinkColumn::Client)))
    }

    fn conversation_due(&self, deal: &DealLinks, talk: Option<&ConversationInputs>) -> bool {
        if self.settings.conversation_sql.is_none() || deal.is_deleted {
            return false;
        }
        let new_talk = talk.is_some_and(|talk| {
            talk.linked_for().is_some()
                && talk.linked_for() != deal.linked_for(LinkColumn::Conversation)
        });
        deal.conversation_id.is_none()
            || (new_talk
                && (self.settings.overwrite || !deal.set_by_someone_else(LinkColumn::Conversation)))
    }

    /// Links one deal: runs the queries that are due and writes their answers. Never fails: a
    /// failure is logged, counted, and recorded on the deal for a later attempt.
    pub async fn link_deal(
        &self,
        deal: &DealLinks,
        which: Links,
        talk: Option<&ConversationInputs>,
    ) -> LinkReport {
        let mut report = LinkReport {
            deals: 1,
            ..LinkReport::default()
        };
        if matches!(which, Links::Both | Links::Client) && self.client_due(deal) {
            let sql = self.settings.client_sql.as_deref().unwrap_or_default();
            let inputs = self.client_inputs(deal).await;
            let linked_for = deal.main_contact_id.as_deref();
            self.link_one(
                deal,
                LinkColumn::Client,
                sql,
                &inputs.binds(),
                linked_for,
                &mut report,
            )
            .await;
        }
        if matches!(which, Links::Both | Links::Conversation) && self.conversation_due(deal, talk) {
            let sql = self
                .settings
                .conversation_sql
                .as_deref()
                .unwrap_or_default();
            let inputs = talk
                .cloned()
                .unwrap_or_else(|| ConversationInputs::for_deal(deal));
            self.link_one(
                deal,
                LinkColumn::Conversation,
                sql,
                &inputs.binds(),
                inputs.linked_for(),
                &mut report,
            )
            .await;
        }
        let failed = report.failed > 0;
        // Only a pass over both links may clear the mark: a talk's pass leaves a failed client link
        // marked.
        if (failed || (deal.link_failed_at.is_some() && which == Links::Both))
            && let Err(error) = self
                .store
                .links()
                .set_link_failed(&deal.amocrm_deal_id, failed)
                .await
        {
            tracing::warn!(deal = %deal.amocrm_deal_id, %error, "recording the link attempt failed");
        }
        report
    }

    /// The client query's inputs: the main contact's fields as stored on the deal, else on the
    /// contact's own row.
    async fn client_inputs(&self, deal: &DealLinks) -> ClientInputs {
        let mut fields = deal.contact_custom_fields.clone().filter(|f| !f.is_null());
        if fields.is_none()
            && let Some(contact_id) = &deal.main_contact_id
        {
            match self.store.get_contact(contact_id).await {
                Ok(contact) => fields = contact.and_then(|c| c.custom_fields),
                Err(error) => {
                    tracing::warn!(contact = %contact_id, %error, "reading the main contact failed")
                }
            }
        }
        ClientInputs::new(
            &deal.amocrm_deal_id,
            deal.main_contact_id.as_deref(),
            fields.as_ref(),
            &deal.metadata,
            &self.settings.rentprog_key,
        )
    }

    async fn link_one(
        &self,
        deal: &DealLinks,
        column: LinkColumn,
        sql: &str,
        binds: &[LinkBind],
        linked_for: Option<&str>,
        report: &mut LinkReport,
    ) {
        let links = self.store.links();
        let deal_id = deal.amocrm_deal_id.as_str();
        report.queries += 1;
        let found = tokio::time::timeout(
            self.settings.timeout + NETWORK_SLACK,
            links.run_link_query(sql, binds, self.settings.timeout),
        )
        .await;
        let found = match found {
            Ok(Ok(found)) => found,
            Ok(Err(jarvis_store::Error::LinkQuery { failure, message })) => {
                self.failed(deal_id, column, failure.as_str(), &message, report);
                return;
            }
            Ok(Err(error)) => {
                let kind = if error.is_unavailable() {
                    LinkFailure::Unavailable.as_str()
                } else {
                    "store"
                };
                self.failed(deal_id, column, kind, &error.to_string(), report);
                return;
            }
            Err(_) => {
                let message = "no answer from the database within the timeout";
                self.failed(
                    deal_id,
                    column,
                    LinkFailure::Timeout.as_str(),
                    message,
                    report,
                );
                return;
            }
        };
        // Nothing to write when the row already says it (the common case of no match).
        if found == deal.value(column) && linked_for == deal.linked_for(column) {
            return;
        }
        match links
            .apply_link(deal_id, column, found, linked_for, self.settings.overwrite)
            .await
        {
            Ok(outcome) => {
                let label = match outcome {
                    LinkOutcome::Linked => {
                        match column {
                            LinkColumn::Client => report.clients_linked += 1,
                            LinkColumn::Conversation => report.conversations_linked += 1,
                        }
                        Some("linked")
                    }
                    LinkOutcome::Cleared => {
                        report.cleared += 1;
                        Some("cleared")
                    }
                    LinkOutcome::KeptOther => {
                        report.kept_other += 1;
                        Some("kept_other")
                    }
                    LinkOutcome::Unchanged | LinkOutcome::NoDeal => None,
                };
                if let Some(label) = label {
                    metrics::counter!(names::LINKS, "link" => column.as_str(), "outcome" => label)
                        .increment(1);
                    tracing::debug!(deal = deal_id, link = column.as_str(), outcome = label, value = ?found, "link written");
                }
            }
            Err(error) => {
                let kind = if error.is_unavailable() {
                    LinkFailure::Unavailable.as_str()
                } else {
                    "store"
                };
                self.failed(deal_id, column, kind, &error.to_string(), report);
            }
        }
    }

    fn failed(
        &self,
        deal_id: &str,
        column: LinkColumn,
        kind: &'static str,
        message: &str,
        report: &mut LinkReport,
    ) {
        report.failed += 1;
        metrics::counter!(names::LINK_FAILURES, "link" => column.as_str(), "kind" => kind)
            .increment(1);
        tracing::warn!(deal = deal_id, link = column.as_str(), kind, error = %message, "link query failed; the deal is tried again later");
    }

    /// Links what a settled batch of events touched (see the module docs). Bounded in time: what
    /// is left when the budget is spent is marked for the retry pass.
    pub async fn after_batch(&self, events: &[StoredEvent]) -> LinkReport {
        let mut leads = BTreeSet::new();
        let mut contacts = BTreeSet::new();
        let mut talks = Vec::new();
        for stored in events {
            let Ok(event) = stored.webhook_event() else {
                continue;
            };
            match (&event.entity, &event.action, event.entity_id()) {
                (_, Action::Delete, _) => {}
                (Entity::Lead, _, Some(id)) => {
                    leads.insert(id.to_owned());
                }
                (Entity::Contact, _, Some(id)) => {
                    contacts.insert(id.to_owned());
                }
                (Entity::Talk | Entity::Message, _, _) => {
                    talks.extend(ConversationInputs::from_event(&event));
                }
                _ => {}
            }
        }
        let mut work: Vec<(String, Links, Option<ConversationInputs>)> = Vec::new();
        work.extend(leads.iter().map(|id| (id.clone(), Links::Both, None)));
        for contact in &contacts {
            match self.store.links().deal_links_by_main_contact(contact).await {
                Ok(deals) => work.extend(
                    deals
                        .into_iter()
                        .filter(|d| !leads.contains(&d.amocrm_deal_id))
                        .map(|d| (d.amocrm_deal_id, Links::Client, None)),
                ),
                Err(error) => {
                    tracing::warn!(contact = %contact, %error, "finding the contact's deals to link failed")
                }
            }
        }
        work.extend(
            talks
                .into_iter()
                .map(|talk| (talk.lead_id.clone(), Links::Conversation, Some(talk))),
        );

        self.link_work(work).await
    }

    /// Links each deal for what concerns it, until the time budget is spent; the rest is marked for
    /// the retry pass rather than holding up the caller.
    async fn link_work(
        &self,
        work: Vec<(String, Links, Option<ConversationInputs>)>,
    ) -> LinkReport {
        let deadline = Instant::now() + self.budget();
        let mut report = LinkReport::default();
        let mut deferred = 0u64;
        for (deal_id, which, talk) in work {
            if Instant::now() >= deadline {
                deferred += 1;
                if let Err(error) = self.store.links().set_link_failed(&deal_id, true).await {
                    tracing::warn!(deal = %deal_id, %error, "recording a deferred link failed");
                }
                continue;
            }
            match self.store.links().deal_links(&deal_id).await {
                Ok(Some(deal)) => report += self.link_deal(&deal, which, talk.as_ref()).await,
                // A talk can come before its lead's row; the lead's upsert links it then.
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(deal = %deal_id, %error, "reading the deal to link failed")
                }
            }
        }
        if deferred > 0 {
            tracing::warn!(
                deferred,
                budget_ms = self.budget().as_millis() as u64,
                "linking took its whole budget; the rest is tried again later"
            );
        }
        report
    }

    /// Links deals that were just upserted (outside the worker), within the time budget.
    pub async fn link_deals(&self, amocrm_deal_ids: &[String]) -> LinkReport {
        let work = amocrm_deal_ids
            .iter()
            .map(|id| (id.clone(), Links::Both, None))
            .collect();
        self.link_work(work).await
    }

    /// Starts a pass over the deals whose last attempt failed at least [`RETRY_EVERY`] ago, when
    /// the last pass started that long ago and has ended. For the worker's idle moments: the pass
    /// runs on its own task, so events arriving meanwhile are not kept waiting.
    pub fn retry_failed_if_due(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<LinkReport>> {
        {
            let mut last = self.last_retry.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < RETRY_EVERY) {
                return None;
            }
            if self.retrying.swap(true, Ordering::AcqRel) {
                return None;
            }
            *last = Some(Instant::now());
        }
        /// Ends the pass however the task ends.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Release);
            }
        }
        let linker = self.clone();
        Some(tokio::spawn(async move {
            let _done = Done(&linker.retrying);
            let before = Utc::now() - chrono::Duration::from_std(RETRY_EVERY).unwrap_or_default();
            linker.retry_failed(before).await
        }))
    }

    /// Tries again the deals whose last attempt failed before `before`, within the time budget.
    pub async fn retry_failed(&self, before: DateTime<Utc>) -> LinkReport {
        let scan = LinkScan {
            failed_before: Some(before),
            limit: RETRY_BATCH,
            ..LinkScan::default()
        };
        let deals = match self.store.links().deals_to_link(&scan).await {
            Ok(deals) => deals,
            Err(error) => {
                tracing::warn!(%error, "finding deals to link again failed");
                return LinkReport::default();
            }
        };
        let deadline = Instant::now() + self.budget();
        let mut report = LinkReport::default();
        for deal in &deals {
            if Instant::now() >= deadline {
                break;
            }
            report += self.link_deal(deal, Links::Both, None).await;
        }
        if !deals.is_empty() {
            tracing::info!(
                deals = report.deals,
                failed = report.failed,
                "linked deals again"
            );
        }
        report
    }

    /// Links existing deals in batches of `batch`, in `amocrm_deal_id` order, calling `on_batch`
    /// after each; only deals changed at or after `since` when given. Safe to run again: deals that
    /// are linked are left alone.
    pub async fn backfill(
        &self,
        since: Option<DateTime<Utc>>,
        batch: usize,
        mut on_batch: impl FnMut(&BackfillProgress),
    ) -> jarvis_store::Result<BackfillProgress> {
        let batch = batch.max(1);
        let mut progress = BackfillProgress::default();
        loop {
            let scan = LinkScan {
                client: self.settings.client_sql.is_some(),
                conversation: self.settings.conversation_sql.is_some(),
                since,
                after: progress.last_deal.clone(),
                failed_before: None,
                limit: batch,
            };
            let deals = self.store.links().deals_to_link(&scan).await?;
            let Some(last) = deals.last() else {
                break;
            };
            progress.last_deal = Some(last.amocrm_deal_id.clone());
            for deal in &deals {
                progress.report += self.link_deal(deal, Links::Both, None).await;
            }
            progress.batches += 1;
            on_batch(&progress);
            if deals.len() < batch {
                break;
            }
        }
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn russian_forms_of_one_number_are_one_number() {
        let forms = [
            "8 (912) 345-67-89",
            "+7 912 345 67 89",
            "+7 (912) 345-67-89",
            "89123456789",
            "79123456789",
            "tel:+7-912-345-67-89",
        ];
        for form in forms {
            assert_eq!(
                normalize_phone(form).as_deref(),
                Some("+79123456789"),
                "{form}"
            );
        }
    }

    #[test]
    fn other_countries_stay_apart_and_short_numbers_are_dropped() {
        assert_eq!(
            normalize_phone("+1 650-253-0000").as_deref(),
            Some("+16502530000")
        );
        assert_eq!(
            normalize_phone("+375 29 123-45-67").as_deref(),
            Some("+375291234567")
        );
        for bad in ["112", "12345", "", "not a phone", "+7 912"] {
            assert_eq!(normalize_phone(bad), None, "{bad}");
        }
    }

    #[test]
    fn emails_are_lower_cased() {
        assert_eq!(
            normalize_email("  Ivan.Petrov@Example.RU ").as_deref(),
            Some("ivan.petrov@example.ru")
        );
        assert_eq!(normalize_email("ivan"), None);
        assert_eq!(normalize_email("@example.ru"), None);
    }

    #[test]
    fn client_inputs_come_from_the_main_contact_and_metadata() {
        let fields = json!([
            {"field_id": 1, "field_code": "PHONE", "values": [
                {"value": "8 (912) 345-67-89", "enum_code": "WORK"},
                {"value": "+7 912 345 67 89", "enum_code": "MOB"},
                {"value": "112"}
            ]},
            {"field_id": 2, "field_code": "EMAIL", "values": [{"value": "Ivan@Example.ru"}]},
            {"field_id": 3, "field_code": null, "values": [{"value": "+7 999 000 00 00"}]}
        ]);
        let inputs = ClientInputs::new(
            "31840021",
            Some("52110077"),
            Some(&fields),
            &json!({"rentprog_id": 48213}),
            "rentprog_id",
        );
        assert_eq!(inputs.phones, ["+79123456789"]);
        assert_eq!(inputs.emails, ["ivan@example.ru"]);
        assert_eq!(
            inputs.binds(),
            vec![
                LinkBind::TextList(vec!["+79123456789".into()]),
                LinkBind::TextList(vec!["ivan@example.ru".into()]),
                LinkBind::Text(Some("52110077".into())),
                LinkBind::Text(Some("31840021".into())),
                LinkBind::Text(Some("48213".into())),
            ]
        );
        let bare = ClientInputs::new("1", None, None, &json!({}), "rentprog_id");
        assert_eq!(
            bare.binds(),
            vec![
                LinkBind::TextList(vec![]),
                LinkBind::TextList(vec![]),
                LinkBind::Text(None),
                LinkBind::Text(Some("1".into())),
                LinkBind::Text(None),
            ]
        );
    }

    fn event(fixture: &str) -> WebhookEvent {
        let path = format!(
            "{}/../amocrm-webhook/tests/fixtures/{fixture}",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(path).unwrap();
        let batch = amocrm_webhook::Parser::default()
            .parse(Some("application/x-www-form-urlencoded"), &body)
            .unwrap();
        batch.events.into_iter().next().unwrap()
    }

    #[test]
    fn talk_and_message_events_give_conversation_inputs() {
        let expected = ConversationInputs {
            talk_id: Some("8841".into()),
            chat_id: Some("6c1c2f2e-0b47-4f0b-9d5c-9f5a2a7d1e33".into()),
            contact_id: Some("52110077".into()),
            lead_id: "31840021".into(),
        };
        assert_eq!(
            ConversationInputs::from_event(&event("talk_add.form")),
            Some(expected.clone())
        );
        assert_eq!(
            ConversationInputs::from_event(&event("message_add.form")),
            Some(expected)
        );
        assert_eq!(
            ConversationInputs::from_event(&event("lead_status.form")),
            None
        );
    }
}
