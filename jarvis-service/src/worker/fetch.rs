//! The amoCRM calls: leads (contacts embedded) and contacts by id, 250 a request, upserted as the
//! API returns them; what a failed call means for the events that wait for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use amocrm_client::{Client, ContactId, LeadId, LeadWith};
use chrono::{DateTime, Utc};
use jarvis_store::{ContactUpsert, DealUpsert};
use serde_json::Value;

use super::Worker;
use super::settle::Settle;
use crate::amo::AccessProblem;
use crate::mapping;
use crate::telemetry::names;

/// A failed fetch, classified for the queue.
#[derive(Debug)]
pub struct FetchError {
    /// 429, 5xx, transport and database errors: retry without counting towards dead.
    pub transient: bool,
    pub message: String,
    pub not_before: Option<DateTime<Utc>>,
    /// amoCRM refuses access in a way only a person can fix.
    pub access: Option<AccessProblem>,
}

impl FetchError {
    pub fn store(err: jarvis_store::Error) -> Self {
        FetchError {
            // Data the database refuses will be refused again.
            transient: !err.is_bad_data(),
            message: format!("database: {err}"),
            not_before: None,
            access: None,
        }
    }

    fn api(err: amocrm_client::Error) -> Self {
        use amocrm_client::Error as E;
        let auth_trouble = match &err {
            E::NoToken => Some("no_token"),
            E::TokenRequest { .. } => Some("token_request"),
            E::TokenStore(_) => Some("token_store"),
            E::Unauthorized { .. } => Some("unauthorized"),
            _ => None,
        };
        if let Some(kind) = auth_trouble {
            metrics::counter!(names::AUTH_ERRORS, "kind" => kind).increment(1);
        }
        let (transient, not_before) = match &err {
            E::RateLimited { retry_after, .. } => (
                true,
                // Bounded: an absurd Retry-After must neither overflow nor park events for years.
                retry_after.map(|d| {
                    Utc::now()
                        + chrono::Duration::from_std(d.min(std::time::Duration::from_secs(3600)))
                            .unwrap_or_default()
                }),
            ),
            // Outages, an account-wide block after abuse (403), and credentials that need an operator
            // (no token yet, revoked, unpaid account): the events wait rather than die.
            E::Server { .. }
            | E::Transport { .. }
            | E::Forbidden { .. }
            | E::Unauthorized { .. }
            | E::PaymentRequired { .. }
            | E::NoToken
            | E::TokenRequest { .. }
            | E::TokenStore(_) => (true, None),
            // A request amoCRM refuses as such (400, an unexpected answer) will not get better by itself.
            _ => (false, None),
        };
        FetchError {
            transient,
            message: err.to_string(),
            not_before,
            access: AccessProblem::of(&err),
        }
    }
}

impl FetchError {
    pub(super) fn to_settle(&self) -> Settle {
        if self.transient {
            Settle::Transient {
                error: self.message.clone(),
                not_before: self.not_before,
            }
        } else {
            Settle::Permanent(self.message.clone())
        }
    }
}

/// Leads by id with their contacts embedded, as raw API JSON (`deal_full_data`).
pub async fn fetch_leads(client: &Client, ids: &[u64]) -> Result<Vec<Value>, FetchError> {
    let ids: Vec<LeadId> = ids.iter().copied().map(LeadId).collect();
    let leads = client
        .leads()
        .get_many(&ids, &[LeadWith::Contacts])
        .await
        .map_err(FetchError::api)?;
    Ok(leads.into_iter().map(|lead| lead.raw().clone()).collect())
}

/// Contacts by id, as raw API JSON.
pub async fn fetch_contacts(client: &Client, ids: &[u64]) -> Result<Vec<Value>, FetchError> {
    let ids: Vec<ContactId> = ids.iter().copied().map(ContactId).collect();
    let contacts = client
        .contacts()
        .get_many(&ids, &[])
        .await
        .map_err(FetchError::api)?;
    Ok(contacts.into_iter().map(|c| c.raw().clone()).collect())
}

impl Worker {
    /// Tells the access monitor what amoCRM's answers said about access.
    pub(super) async fn note_access(&self, outcome: &Result<(), FetchError>) {
        match outcome {
            Ok(()) => self.access.lock().await.succeeded().await,
            Err(FetchError {
                access: Some(problem),
                message,
                ..
            }) => self.access.lock().await.failed(*problem, message).await,
            // Outages and database errors say nothing about access.
            Err(_) => {}
        }
    }

    /// Fetches and upserts leads and contacts now, the way their events are processed (contacts
    /// first, so the deals get their fresh fields): for `jarvis sync`.
    pub async fn sync_now(&self, leads: &[u64], contacts: &[u64]) -> Result<(), FetchError> {
        if !contacts.is_empty() {
            let contacts: BTreeMap<u64, Vec<i64>> =
                contacts.iter().map(|id| (*id, Vec::new())).collect();
            self.sync_contacts(&contacts).await?;
        }
        if !leads.is_empty() {
            let leads: BTreeMap<u64, Vec<i64>> = leads.iter().map(|id| (*id, Vec::new())).collect();
            self.sync_leads(&leads).await?;
        }
        Ok(())
    }

    /// Fetches the contacts; upserts those the API returns (their deals follow their fields) and
    /// marks the others deleted.
    pub(super) async fn sync_contacts(
        &self,
        contacts: &BTreeMap<u64, Vec<i64>>,
    ) -> Result<(), FetchError> {
        let client = self
            .state
            .client
            .as_ref()
            .expect("sync_contacts runs in API mode only");
        let store = &self.state.store;
        let ids: Vec<u64> = contacts.keys().copied().collect();
        let fetched = fetch_contacts(client, &ids).await?;
        let rows: Vec<ContactUpsert> = fetched
            .iter()
            .filter_map(mapping::contact_from_api)
            .collect();
        store
            .upsert_contacts(&rows)
            .await
            .map_err(FetchError::store)?;
        let returned: BTreeSet<u64> = fetched
            .iter()
            .filter_map(|c| c.get("id").and_then(Value::as_u64))
            .collect();
        for id in ids.iter().filter(|id| !returned.contains(id)) {
            store
                .mark_contact_deleted(&id.to_string(), true)
                .await
                .map_err(FetchError::store)?;
        }
        self.follow_contact_fields(&rows)
            .await
            .map_err(FetchError::store)?;
        Ok(())
    }

    /// Fetches the leads (contacts embedded), the main contacts whose fields are not stored yet, and
    /// upserts both.
    pub(super) async fn sync_leads(
        &self,
        leads: &BTreeMap<u64, Vec<i64>>,
    ) -> Result<(), FetchError> {
        let client = self
            .state
            .client
            .as_ref()
            .expect("sync_leads runs in API mode only");
        let store = &self.state.store;
        let ids: Vec<u64> = leads.keys().copied().collect();
        let fetched = fetch_leads(client, &ids).await?;

        // Main contacts: stored custom fields are fresh (contact webhooks keep them so); fetch the rest.
        let main_ids: BTreeSet<u64> = fetched
            .iter()
            .filter_map(mapping::main_contact_id)
            .map(u64::from)
            .collect();
        let mut contact_fields: HashMap<u64, Value> = HashMap::new();
        let mut missing = Vec::new();
        for id in &main_ids {
            match store
                .get_contact(&id.to_string())
                .await
                .map_err(FetchError::store)?
            {
                // A stored state of the contact (a bare deleted marker has no time).
                Some(contact) if contact.updated_at.is_some() => {
                    let fields = contact.custom_fields.unwrap_or(Value::Null);
                    contact_fields
                        .insert(*id, serde_json::json!({ "custom_fields_values": fields }));
                }
                _ => missing.push(*id),
            }
        }
        if !missing.is_empty() {
            let contacts = fetch_contacts(client, &missing).await?;
            let rows: Vec<ContactUpsert> = contacts
                .iter()
                .filter_map(mapping::contact_from_api)
                .collect();
            store
                .upsert_contacts(&rows)
                .await
                .map_err(FetchError::store)?;
            for contact in contacts {
                if let Some(id) = contact.get("id").and_then(Value::as_u64) {
                    contact_fields.insert(id, contact);
                }
            }
            // A main contact the API does not return has no fields to show.
            for id in missing {
                contact_fields
                    .entry(id)
                    .or_insert_with(|| serde_json::json!({}));
            }
        }

        let deals: Vec<DealUpsert> = fetched
            .iter()
            .filter_map(|lead| {
                let contact =
                    mapping::main_contact_id(lead).and_then(|id| contact_fields.get(&id.get()));
                mapping::deal_from_api(lead, contact, &self.state.metadata_fields)
            })
            .collect();
        store
            .upsert_deals(&deals)
            .await
            .map_err(FetchError::store)?;
        // A lead the API no longer returns is deleted (in amoCRM's trash): this confirms a delete
        // event, and corrects a row whose delete body never came or was a repeat.
        let returned: BTreeSet<&str> = deals.iter().map(|d| d.amocrm_deal_id.as_str()).collect();
        for id in ids.iter().map(u64::to_string) {
            if !returned.contains(id.as_str()) {
                store
                    .mark_deal_deleted(&id, true)
                    .await
                    .map_err(FetchError::store)?;
            }
        }
        Ok(())
    }
}
