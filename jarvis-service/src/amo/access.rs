//! API access that does not come back by itself (401, 402, 403, a refused refresh): made visible in
//! the log, the metrics and the stored state `jarvis status` reads, and cleared on the next success.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jarvis_store::DynStore;
use serde_json::Value;

use crate::telemetry::names;

/// amoCRM refusing this service's API access in a way that does not pass by itself: someone has to
/// issue a token, pay the account or lift a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessProblem {
    /// 401: the token is revoked, wrong or of another account.
    Unauthorized,
    /// 402: the account is not paid.
    PaymentRequired,
    /// 403: the account, the integration or the address is blocked.
    Forbidden,
    /// The OAuth token endpoint refused the refresh token.
    RefreshRefused,
    /// OAuth is configured but no tokens were ever stored.
    NoToken,
}

impl AccessProblem {
    pub const ALL: [AccessProblem; 5] = [
        AccessProblem::Unauthorized,
        AccessProblem::PaymentRequired,
        AccessProblem::Forbidden,
        AccessProblem::RefreshRefused,
        AccessProblem::NoToken,
    ];

    /// What an API error says about access, if anything (outages and bad requests say nothing).
    pub fn of(error: &amocrm_client::Error) -> Option<Self> {
        use amocrm_client::Error as E;
        match error {
            E::Unauthorized { .. } => Some(AccessProblem::Unauthorized),
            E::PaymentRequired { .. } => Some(AccessProblem::PaymentRequired),
            E::Forbidden { .. } => Some(AccessProblem::Forbidden),
            // A token endpoint that is down is an outage; one that answers "no" is not.
            E::TokenRequest { status, .. } if (400..500).contains(status) && *status != 429 => {
                Some(AccessProblem::RefreshRefused)
            }
            E::NoToken => Some(AccessProblem::NoToken),
            _ => None,
        }
    }

    /// The `reason` label of the metrics and the stored state.
    pub fn label(self) -> &'static str {
        match self {
            AccessProblem::Unauthorized => "unauthorized",
            AccessProblem::PaymentRequired => "payment_required",
            AccessProblem::Forbidden => "forbidden",
            AccessProblem::RefreshRefused => "token_refresh_refused",
            AccessProblem::NoToken => "no_token",
        }
    }

    /// What happened and what to do, for the log and `jarvis status`.
    pub fn advice(self) -> &'static str {
        match self {
            AccessProblem::Unauthorized => {
                "amoCRM answers 401 Unauthorized: the token is revoked or wrong; issue a new \
                 long-lived token, or run `jarvis auth url` and `jarvis auth exchange <code>`"
            }
            AccessProblem::PaymentRequired => {
                "amoCRM answers 402 Payment Required: the account is not paid"
            }
            AccessProblem::Forbidden => {
                "amoCRM answers 403 Forbidden: the account, the integration or this address is \
                 blocked; ask amoCRM support"
            }
            AccessProblem::RefreshRefused => {
                "amoCRM refused to refresh the OAuth token: run `jarvis auth url` and \
                 `jarvis auth exchange <code>` again"
            }
            AccessProblem::NoToken => {
                "no OAuth tokens are stored: run `jarvis auth url` and `jarvis auth exchange <code>`"
            }
        }
    }
}

/// The `jarvis_state` key under which broken API access is kept for `jarvis status`.
pub const API_ACCESS_STATE: &str = "api_access";

/// Broken API access as stored under [`API_ACCESS_STATE`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessBroken {
    pub reason: String,
    pub since: DateTime<Utc>,
    /// What to do about it.
    pub advice: String,
    /// The last error amoCRM's answer produced.
    pub error: String,
}

/// Reads the stored broken-access state, if any (for `jarvis status`).
pub async fn access_broken(store: &DynStore) -> anyhow::Result<Option<AccessBroken>> {
    let Some(entry) = store.get_state(API_ACCESS_STATE).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value(entry.value).ok())
}

/// Makes API access problems visible: an error line (at most once a minute per reason), the
/// `jarvis_api_access_broken` gauge and `jarvis_api_access_errors_total` counter, and the stored
/// state `jarvis status` shows. The next successful request clears all of it.
pub struct AccessMonitor {
    store: DynStore,
    current: Option<(AccessProblem, DateTime<Utc>)>,
    /// Whether `current` reflects the store (read once, so a restart keeps "since").
    loaded: bool,
    logged: BTreeMap<AccessProblem, Instant>,
}

impl AccessMonitor {
    /// Shortest time between two log lines (and state writes) for one reason.
    pub const LOG_EVERY: Duration = Duration::from_secs(60);

    pub fn new(store: DynStore) -> Self {
        Self {
            store,
            current: None,
            loaded: false,
            logged: BTreeMap::new(),
        }
    }

    async fn load(&mut self) {
        if self.loaded {
            return;
        }
        match access_broken(&self.store).await {
            Ok(stored) => {
                self.loaded = true;
                self.current = stored.and_then(|stored| {
                    let problem = AccessProblem::ALL
                        .into_iter()
                        .find(|problem| problem.label() == stored.reason)?;
                    Some((problem, stored.since))
                });
                if let Some((problem, _)) = self.current {
                    set_gauge(Some(problem));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the API access state failed"),
        }
    }

    /// amoCRM refused access for `problem`; `error` is the client's error text.
    pub async fn failed(&mut self, problem: AccessProblem, error: &str) {
        self.load().await;
        metrics::counter!(names::API_ACCESS_ERRORS, "reason" => problem.label()).increment(1);
        let since = match self.current {
            Some((current, since)) if current == problem => since,
            _ => Utc::now(),
        };
        let changed = self.current.map(|(current, _)| current) != Some(problem);
        self.current = Some((problem, since));
        if changed {
            set_gauge(Some(problem));
        }
        let due = self
            .logged
            .get(&problem)
            .is_none_or(|at| at.elapsed() >= Self::LOG_EVERY);
        if !changed && !due {
            return;
        }
        self.logged.insert(problem, Instant::now());
        tracing::error!(
            reason = problem.label(),
            since = %since.to_rfc3339(),
            %error,
            "amoCRM API access is broken and needs a person: {}; events wait until it works again",
            problem.advice()
        );
        let state = AccessBroken {
            reason: problem.label().to_string(),
            since,
            advice: problem.advice().to_string(),
            error: error.to_string(),
        };
        let value = serde_json::to_value(&state).unwrap_or(Value::Null);
        if let Err(e) = self.store.set_state(API_ACCESS_STATE, &value).await {
            tracing::warn!(error = %e, "recording the API access state failed");
        }
    }

    /// A request went through: access works (again).
    pub async fn succeeded(&mut self) {
        self.load().await;
        let Some((problem, since)) = self.current else {
            return;
        };
        match self.store.clear_state(API_ACCESS_STATE).await {
            Ok(_) => {
                self.current = None;
                self.logged.clear();
                set_gauge(None);
                tracing::info!(
                    reason = problem.label(),
                    since = %since.to_rfc3339(),
                    "amoCRM API access works again"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "clearing the API access state failed; will retry")
            }
        }
    }
}

/// One series per reason: 1 for the current problem, 0 for the others.
fn set_gauge(current: Option<AccessProblem>) {
    for problem in AccessProblem::ALL {
        let value = if Some(problem) == current { 1.0 } else { 0.0 };
        metrics::gauge!(names::API_ACCESS_BROKEN, "reason" => problem.label()).set(value);
    }
}

#[cfg(test)]
mod access_tests {
    use super::AccessProblem;

    #[test]
    fn every_access_problem_is_a_registered_metric_label() {
        let labels: Vec<&str> = AccessProblem::ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels, crate::metrics::ACCESS_PROBLEMS);
    }
}
