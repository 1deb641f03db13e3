//! The state every route and task shares: the store, the amoCRM client, the parser and what the
//! service keeps in memory. `startup` builds it; routes and the worker only use it.

use std::sync::Arc;

use amocrm_webhook::{Limits, Parser};
use jarvis_store::DynStore;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;

use crate::config::{HttpSettings, MetadataField, Secret};
use crate::spool::Spool;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: DynStore,
    pub parser: Arc<Parser>,
    pub parser_limits: Limits,
    pub webhook_secret: Option<Secret>,
    pub api_token: Option<Secret>,
    pub account_id: Option<u64>,
    pub metadata_fields: Arc<[MetadataField]>,
    /// Wakes the worker when new events are stored.
    pub wake: Arc<Notify>,
    /// Webhooks whose events are being stored right now. After an idle spell the worker waits for
    /// them before it claims, so a burst whose commits come a little apart is still fetched together.
    pub storing: Arc<std::sync::atomic::AtomicUsize>,
    pub metrics: PrometheusHandle,
    pub client: Option<amocrm_client::Client>,
    /// The amoCRM account this service works for (its subdomain); keys its tokens and its worker lock.
    pub account_key: String,
    /// Recent deliveries, events per minute and the worker's lock, for `GET /status`.
    pub activity: Arc<crate::activity::Activity>,
    /// The amoCRM settings (mode, budgets) the status page reports.
    pub amocrm: crate::config::AmoSettings,
    /// What the webhook route saw that may make a gap (deliveries, refusals).
    pub gaps: Arc<crate::catch_up::GapTracker>,
    /// Fills deals' `client_id` / `conversation_id`, when link queries are configured.
    pub linker: Option<Arc<crate::link::Linker>>,
    /// The answer deadline and the HTTP limits.
    pub http: HttpSettings,
    /// Where bodies wait when the database cannot take them in time; `None` without a spool.
    pub spool: Option<Spool>,
    /// Whether the webhook route writes the lead changes the bodies carry in the statement that
    /// stores their events, stored processed ([`jarvis_store::Store::insert_settled`]): in webhook-only
    /// mode, without link queries (the worker runs them after its batches), when this process runs
    /// a worker too, on a store that does so (PostgreSQL). A receiver alone (`serve --http-only`)
    /// only stores, for the workers elsewhere.
    pub settle_on_receipt: bool,
}
