//! Plays amoCRM's webhook sender: a paced stream of form bodies built from the fake's data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::form::{
    contact_event_body, delete_lead_body, lead_event_body, lead_events_body, note_event_body,
};
use crate::{FakeAmo, PIPELINE_ID};

/// Relative weights of the event kinds in a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindMix {
    /// `leads[status]`: an existing lead moved to another stage.
    pub lead_status: u32,
    /// `leads[update]`: an existing lead changed.
    pub lead_update: u32,
    /// `leads[add]`: a new lead, created in the fake first so it can be fetched.
    pub lead_add: u32,
    /// `contacts[update]` with `linked_leads_id`.
    pub contact_update: u32,
    /// `leads[note]`: a note added to a lead.
    pub lead_note: u32,
    /// `leads[delete]`: the lead is removed from the fake too.
    pub lead_delete: u32,
}

impl Default for KindMix {
    fn default() -> Self {
        Self {
            lead_status: 4,
            lead_update: 4,
            lead_add: 1,
            contact_update: 1,
            lead_note: 0,
            lead_delete: 0,
        }
    }
}

impl KindMix {
    /// Parses `lead_status=4,lead_update=4,lead_add=1`; kinds not named get weight 0.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut mix = Self {
            lead_status: 0,
            lead_update: 0,
            lead_add: 0,
            contact_update: 0,
            lead_note: 0,
            lead_delete: 0,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected kind=weight, got {part:?}"))?;
            let w: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("bad weight in {part:?}"))?;
            let slot = match k.trim() {
                "lead_status" => &mut mix.lead_status,
                "lead_update" => &mut mix.lead_update,
                "lead_add" => &mut mix.lead_add,
                "contact_update" => &mut mix.contact_update,
                "lead_note" => &mut mix.lead_note,
                "lead_delete" => &mut mix.lead_delete,
                other => return Err(format!("unknown event kind {other:?}")),
            };
            *slot = w;
        }
        Ok(mix)
    }

    fn weights(&self) -> [(Kind, u32); 6] {
        [
            (Kind::LeadStatus, self.lead_status),
            (Kind::LeadUpdate, self.lead_update),
            (Kind::LeadAdd, self.lead_add),
            (Kind::ContactUpdate, self.contact_update),
            (Kind::LeadNote, self.lead_note),
            (Kind::LeadDelete, self.lead_delete),
        ]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    LeadStatus,
    LeadUpdate,
    LeadAdd,
    ContactUpdate,
    LeadNote,
    LeadDelete,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::LeadStatus => "lead_status",
            Kind::LeadUpdate => "lead_update",
            Kind::LeadAdd => "lead_add",
            Kind::ContactUpdate => "contact_update",
            Kind::LeadNote => "lead_note",
            Kind::LeadDelete => "lead_delete",
        }
    }
}

/// What to send, where and how fast. With neither `duration` nor `total`, 100 bodies are sent;
/// with both, whichever ends first.
#[derive(Clone, Debug)]
pub struct SendPlan {
    pub url: String,
    /// Bodies per second, paced from the start (an open-loop load); 0 = as fast as possible.
    pub rate_per_second: f64,
    pub duration: Option<Duration>,
    pub total: Option<usize>,
    /// Requests in flight at most.
    pub concurrency: usize,
    pub kind_mix: KindMix,
    /// Lead status/update events per body (amoCRM batches several into one delivery).
    pub events_per_body: usize,
    /// Per-request timeout; amoCRM itself gives up after a few seconds.
    pub timeout: Duration,
}

impl SendPlan {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            rate_per_second: 0.0,
            duration: None,
            total: None,
            concurrency: 8,
            kind_mix: KindMix::default(),
            events_per_body: 1,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SendReport {
    pub sent: u64,
    /// Answered 2xx.
    pub acknowledged: u64,
    /// Not 2xx, including transport errors.
    pub failed: u64,
    /// No HTTP answer at all (refused, reset, timed out).
    pub transport_errors: u64,
    pub status_counts: BTreeMap<u16, u64>,
    pub by_kind: BTreeMap<String, u64>,
    pub elapsed_secs: f64,
    /// Bodies sent per second over the whole run.
    pub achieved_rate: f64,
    pub latency: LatencySummary,
}

/// Builds bodies from the fake's current data, mutating it as amoCRM would
/// (touching, adding, deleting) so a receiver that fetches the lead sees the new state.
struct Generator<'a> {
    fake: &'a FakeAmo,
    rng: StdRng,
    leads: Vec<u64>,
    contacts: Vec<u64>,
    weights: [(Kind, u32); 6],
    sum: u32,
    per_body: usize,
    account_id: u64,
    subdomain: String,
}

impl<'a> Generator<'a> {
    fn new(fake: &'a FakeAmo, plan: &SendPlan) -> anyhow::Result<Self> {
        let weights = plan.kind_mix.weights();
        let sum = weights.iter().map(|(_, w)| *w).sum();
        if sum == 0 {
            bail!("the kind mix has no kind with a weight above 0");
        }
        Ok(Self {
            fake,
            rng: StdRng::from_rng(&mut rand::rng()),
            leads: fake.lead_ids(),
            contacts: fake.contact_ids(),
            weights,
            sum,
            per_body: plan.events_per_body.max(1),
            account_id: fake.config().account_id,
            subdomain: fake.config().subdomain.clone(),
        })
    }

    fn pick_kind(&mut self) -> Kind {
        let mut roll = self.rng.random_range(0..self.sum);
        for (kind, w) in self.weights {
            if roll < w {
                return kind;
            }
            roll -= w;
        }
        Kind::LeadUpdate
    }

    fn add(&mut self) -> (Kind, String) {
        let lead = self.fake.create_lead();
        if let Some(id) = lead["id"].as_u64() {
            self.leads.push(id);
        }
        (
            Kind::LeadAdd,
            lead_event_body(&lead, "add", self.account_id, &self.subdomain),
        )
    }

    fn next(&mut self) -> (Kind, String) {
        let kind = self.pick_kind();
        // Anything needing an existing lead becomes an add when none is left.
        if kind != Kind::LeadAdd && kind != Kind::ContactUpdate && self.leads.is_empty() {
            return self.add();
        }
        match kind {
            Kind::LeadAdd => self.add(),
            Kind::LeadStatus | Kind::LeadUpdate => {
                let action = if kind == Kind::LeadStatus {
                    "status"
                } else {
                    "update"
                };
                let mut touched = Vec::with_capacity(self.per_body);
                for id in self
                    .leads
                    .choose_multiple(&mut self.rng, self.per_body)
                    .copied()
                    .collect::<Vec<_>>()
                {
                    let lead = self.fake.touch_lead(id);
                    if lead.is_null() {
                        self.leads.retain(|l| *l != id);
                    } else {
                        touched.push(lead);
                    }
                }
                if touched.is_empty() {
                    return self.add();
                }
                (
                    kind,
                    lead_events_body(&touched, action, self.account_id, &self.subdomain),
                )
            }
            Kind::ContactUpdate => {
                let Some(id) = self.contacts.choose(&mut self.rng).copied() else {
                    return self.add();
                };
                let contact = self.fake.touch_contact(id);
                if contact.is_null() {
                    self.contacts.retain(|c| *c != id);
                    return self.add();
                }
                (
                    kind,
                    contact_event_body(&contact, "update", self.account_id, &self.subdomain),
                )
            }
            Kind::LeadNote => {
                let id = self.leads[self.rng.random_range(0..self.leads.len())];
                let text = format!("Звонок клиенту, #{}", self.rng.random_range(1..10_000));
                let note_id = self.fake.add_note(id, &text);
                let note = self
                    .fake
                    .lead_notes(id)
                    .into_iter()
                    .find(|n| n["id"].as_u64() == Some(note_id))
                    .unwrap_or(Value::Null);
                (
                    kind,
                    note_event_body(&note, self.account_id, &self.subdomain),
                )
            }
            Kind::LeadDelete => {
                let idx = self.rng.random_range(0..self.leads.len());
                let id = self.leads.swap_remove(idx);
                let lead = self.fake.delete_lead(id).unwrap_or(Value::Null);
                let status = lead["status_id"].as_u64().unwrap_or(143);
                let pipeline = lead["pipeline_id"].as_u64().unwrap_or(PIPELINE_ID);
                (
                    kind,
                    delete_lead_body(id, status, pipeline, self.account_id, &self.subdomain),
                )
            }
        }
    }
}

type Outcome = (Kind, Option<u16>, Duration);

/// Posts generated webhook bodies to `plan.url` and reports what came back.
///
/// Bodies are built from `fake`'s leads and contacts (touched, added or deleted there
/// first), so a receiver that fetches entities from that fake sees matching data. The
/// fake does not need to be started for sending alone.
pub async fn send(plan: &SendPlan, fake: &FakeAmo) -> anyhow::Result<SendReport> {
    let client = reqwest::Client::builder()
        .timeout(plan.timeout)
        .user_agent("amoCRM-Webhooks/3.0")
        .build()
        .context("building the HTTP client")?;
    let url = reqwest::Url::parse(&plan.url).with_context(|| format!("bad URL {}", plan.url))?;
    let mut generator = Generator::new(fake, plan)?;
    let concurrency = plan.concurrency.max(1);
    let permits = Arc::new(Semaphore::new(concurrency));
    let total = plan.total.or(if plan.duration.is_none() {
        Some(100)
    } else {
        None
    });
    let start = Instant::now();
    let deadline = plan.duration.map(|d| start + d);
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut report = SendReport::default();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut record = |report: &mut SendReport, (kind, status, took): Outcome| {
        *report.by_kind.entry(kind.name().into()).or_default() += 1;
        latencies.push(took);
        match status {
            Some(s) => {
                *report.status_counts.entry(s).or_default() += 1;
                if (200..300).contains(&s) {
                    report.acknowledged += 1;
                } else {
                    report.failed += 1;
                }
            }
            None => {
                report.transport_errors += 1;
                report.failed += 1;
            }
        }
    };
    let mut i: usize = 0;
    loop {
        if total.is_some_and(|t| i >= t) {
            break;
        }
        if plan.rate_per_second > 0.0 {
            let at = start + Duration::from_secs_f64(i as f64 / plan.rate_per_second);
            if deadline.is_some_and(|d| at >= d) {
                break;
            }
            tokio::time::sleep_until(at).await;
        }
        let permit = permits.clone().acquire_owned().await?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let (kind, body) = generator.next();
        let request = client
            .post(url.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-amocrm-requestid", uuid::Uuid::new_v4().to_string())
            .body(body);
        tasks.spawn(async move {
            let t0 = Instant::now();
            let status = match request.send().await {
                // Drain the body so the connection goes back to the pool.
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    Some(s)
                }
                Err(_) => None,
            };
            drop(permit);
            (kind, status, t0.elapsed())
        });
        i += 1;
        while let Some(done) = tasks.try_join_next() {
            if let Ok(outcome) = done {
                record(&mut report, outcome);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(outcome) = done {
            record(&mut report, outcome);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    report.sent = i as u64;
    report.elapsed_secs = elapsed;
    report.achieved_rate = if elapsed > 0.0 {
        i as f64 / elapsed
    } else {
        0.0
    };
    report.latency = summarize(&mut latencies);
    Ok(report)
}

/// Percentiles of `latencies` (sorted in place).
pub fn summarize(latencies: &mut [Duration]) -> LatencySummary {
    if latencies.is_empty() {
        return LatencySummary::default();
    }
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| {
        let idx = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        ms(latencies[idx])
    };
    let sum: f64 = latencies.iter().map(|d| ms(*d)).sum();
    LatencySummary {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: ms(latencies[latencies.len() - 1]),
        mean_ms: sum / latencies.len() as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mix() {
        let mix = KindMix::parse("lead_status=2, lead_delete=1").unwrap();
        assert_eq!(mix.lead_status, 2);
        assert_eq!(mix.lead_delete, 1);
        assert_eq!(mix.lead_update, 0);
        assert!(KindMix::parse("nope=1").is_err());
    }

    #[test]
    fn percentiles() {
        let mut l: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(&mut l);
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p99_ms, 99.0);
        assert_eq!(s.max_ms, 100.0);
    }
}
