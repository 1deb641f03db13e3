//! `GET /status`: one HTML page for people, with no external assets (a strict Content-Security-Policy
//! says so to the browser). Protected by `JARVIS_API_TOKEN`, as a bearer token or `?token=`; the query
//! never reaches the logs (the HTTP span records the route, not the URI) nor other sites (no referrer).
//!
//! The queue, dead events, API use and the token come from the database; deliveries, events per minute
//! and the worker's lock from this process ([`crate::activity`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use jarvis_store::{QueueStats, StoredEvent, StoredTokens};
use subtle::ConstantTimeEq;

use crate::activity::{MinuteCount, Snapshot, WorkerLock};
use crate::config::AmoAuth;
use crate::error::ApiError;
use crate::state::AppState;

/// The longest each database read of the page may take.
const READ_BOUND: Duration = Duration::from_secs(5);
/// How many dead events the page lists.
const DEAD_LISTED: usize = 10;

/// Accepts `Authorization: Bearer <JARVIS_API_TOKEN>` or `?token=<JARVIS_API_TOKEN>`; without a
/// configured token the page does not exist.
fn authorized(state: &AppState, headers: &HeaderMap, query: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = &state.api_token else {
        return Err(ApiError::NotFound);
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned());
    let from_query = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let matches = |given: &str| bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes()));
    if bearer.as_deref().is_some_and(matches) || from_query.as_deref().is_some_and(matches) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// What the database said, or why it could not.
type Read<T> = Result<T, String>;

async fn read<T>(what: impl std::future::Future<Output = jarvis_store::Result<T>>) -> Read<T> {
    match tokio::time::timeout(READ_BOUND, what).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("database: {e}")),
        Err(_) => Err(format!(
            "the database did not answer within {}s",
            READ_BOUND.as_secs()
        )),
    }
}

/// Everything one page shows.
struct Page {
    now: DateTime<Utc>,
    version: &'static str,
    api_mode: bool,
    account: String,
    queue: Read<QueueStats>,
    dead: Read<Vec<StoredEvent>>,
    api_minute: Read<u64>,
    api_hour: Read<u64>,
    budget_minute: Option<u32>,
    budget_hour: Option<u32>,
    tokens: Option<Read<Option<StoredTokens>>>,
    activity: Snapshot,
    /// API mode only: whether amoCRM refuses access (a state the worker keeps in the store).
    access: Option<Read<Option<crate::amo::AccessBroken>>>,
    /// Spans of missed changes not yet caught up (`jarvis_gaps`).
    gaps: Read<Vec<jarvis_store::Gap>>,
}

pub async fn page(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorized(&state, &headers, query.as_deref())?;
    let now = Utc::now();
    let store = &state.store;
    let oauth = matches!(state.amocrm.auth, Some(AmoAuth::OAuth { .. }));
    let (queue, dead, api_minute, api_hour, gaps) = tokio::join!(
        read(store.queue_stats()),
        read(store.dead_events(DEAD_LISTED)),
        read(store.api_usage_since(now - chrono::Duration::minutes(1))),
        read(store.api_usage_since(now - chrono::Duration::hours(1))),
        read(store.open_gaps()),
    );
    let tokens = if oauth {
        Some(read(store.load_tokens(&state.account_key)).await)
    } else {
        None
    };
    let access = if state.client.is_some() {
        let stored = read(store.get_state(crate::amo::API_ACCESS_STATE)).await;
        Some(stored.map(|entry| entry.and_then(|e| serde_json::from_value(e.value).ok())))
    } else {
        None
    };
    let page = Page {
        access,
        gaps,
        now,
        version: env!("CARGO_PKG_VERSION"),
        api_mode: state.client.is_some(),
        account: state.account_key.clone(),
        queue,
        dead,
        api_minute,
        api_hour,
        budget_minute: state.amocrm.rate_per_minute,
        budget_hour: state.amocrm.rate_per_hour,
        tokens,
        activity: state.activity.snapshot(now),
    };
    let mut response = (StatusCode::OK, render(&page)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src data:"),
    );
    // The URL may carry the token: never send it elsewhere, never keep the page in a cache.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// HTML-escapes text.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `3h 5m`, `42s`: an age for people.
fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86400, (s % 86400) / 3600),
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn unavailable(out: &mut String, why: &str) {
    let _ = write!(out, "<p class=\"bad\">unavailable: {}</p>", esc(why));
}

fn budget(used: u64, budget: Option<u32>) -> String {
    match budget {
        Some(b) if b > 0 => {
            let share = used as f64 * 100.0 / f64::from(b);
            let class = if share >= 90.0 { "bad" } else { "ok" };
            format!("<span class=\"{class}\">{used} of {b} ({share:.0}%)</span>")
        }
        _ => format!("{used} (no budget set)"),
    }
}

fn render(p: &Page) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <meta http-equiv=\"refresh\" content=\"30\">\
         <title>Jarvis status</title><style>{STYLE}</style></head><body>\
         <h1>Jarvis status</h1><p class=\"muted\">version {} &middot; {} &middot; account <b>{}</b> &middot; \
         {} &middot; refreshes every 30 s</p>",
        esc(p.version),
        if p.api_mode {
            "API mode"
        } else {
            "webhook-only mode"
        },
        esc(&p.account),
        time(p.now),
    );

    // Queue.
    o.push_str("<section id=\"backlog\"><h2>Backlog</h2>");
    match &p.queue {
        Ok(q) => {
            let oldest = q
                .oldest_pending_at
                .map(|t| age((p.now - t).num_seconds()))
                .unwrap_or_else(|| "-".into());
            let class = if q.backlog == 0 { "ok" } else { "warn" };
            let _ = write!(
                o,
                "<table><tr><th>Waiting events</th><td class=\"{class}\" id=\"backlog-count\">{}</td></tr>\
                 <tr><th>Oldest waiting for</th><td id=\"backlog-age\">{oldest}</td></tr></table>",
                q.backlog
            );
        }
        Err(why) => unavailable(&mut o, why),
    }
    o.push_str("</section>");

    // Events per minute, with the chart.
    let minutes = &p.activity.minutes;
    let last = minutes.last().copied().unwrap_or_default();
    let received_hour: u64 = minutes.iter().map(|m| m.received).sum();
    let processed_hour: u64 = minutes.iter().map(|m| m.processed).sum();
    let _ = write!(
        o,
        "<section id=\"rate\"><h2>Events per minute</h2>\
         <p>This minute: <b>{}</b> stored, <b>{}</b> processed. Last hour: {received_hour} stored, \
         {processed_hour} processed (this instance, since {}).</p>{}</section>",
        last.received,
        last.processed,
        time(p.activity.started_at),
        chart(minutes),
    );

    // amoCRM access: shown only when it needs a person, at the top of what follows.
    if let Some(access) = &p.access {
        match access {
            Ok(None) => {}
            Ok(Some(broken)) => {
                let _ = write!(
                    o,
                    "<section id=\"api-access\"><h2>amoCRM API access</h2>\
                     <p class=\"bad\">API access broken since {}: {}</p><p>{}</p>\
                     <p class=\"muted\">{}</p></section>",
                    time(broken.since),
                    esc(&broken.reason),
                    esc(&broken.advice),
                    esc(&broken.error),
                );
            }
            Err(why) => {
                o.push_str("<section id=\"api-access\"><h2>amoCRM API access</h2>");
                unavailable(&mut o, why);
                o.push_str("</section>");
            }
        }
    }

    // Deliveries.
    o.push_str("<section id=\"deliveries\"><h2>Last deliveries</h2>");
    if p.activity.deliveries.is_empty() {
        o.push_str("<p class=\"muted\">No webhook received by this instance since it started.</p>");
    } else {
        o.push_str(
            "<table><tr><th>Time</th><th>Outcome</th><th>Stored</th><th>Duplicates</th>\
             <th>Duration</th><th>Request id</th></tr>",
        );
        for d in &p.activity.deliveries {
            let outcome = match &d.error {
                None => format!("<span class=\"ok\">{}</span>", d.status),
                Some(e) => format!("<span class=\"bad\">{}</span> {}", d.status, esc(e)),
            };
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{outcome}</td><td>{}</td><td>{}</td><td>{} ms</td><td><code>{}</code></td></tr>",
                time(d.at),
                d.stored,
                d.duplicates,
                d.duration_ms,
                esc(&d.request_id)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("</section>");

    // Dead events.
    o.push_str("<section id=\"dead\"><h2>Dead events</h2>");
    match (&p.queue, &p.dead) {
        (Ok(q), Ok(dead)) => {
            let class = if q.dead == 0 { "ok" } else { "bad" };
            let _ = write!(
                o,
                "<p><span class=\"{class}\" id=\"dead-count\">{}</span> dead; \
                 <code>jarvis events replay --dead</code> puts them back.</p>",
                q.dead
            );
            if !dead.is_empty() {
                o.push_str(
                    "<table><tr><th>Id</th><th>Type</th><th>Entity</th><th>Dead since</th>\
                     <th>Last error</th></tr>",
                );
                for e in dead {
                    let _ = write!(
                        o,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        e.id,
                        esc(&e.event_type),
                        esc(e.amocrm_entity_id.as_deref().unwrap_or("-")),
                        e.dead_at.map(time).unwrap_or_else(|| "-".into()),
                        esc(e.last_error.as_deref().unwrap_or("")),
                    );
                }
                o.push_str("</table>");
            }
        }
        (Err(why), _) | (_, Err(why)) => unavailable(&mut o, why),
    }
    o.push_str("</section>");

    // API budget.
    o.push_str("<section id=\"api\"><h2>amoCRM API requests</h2>");
    match (&p.api_minute, &p.api_hour) {
        (Ok(minute), Ok(hour)) => {
            let _ = write!(
                o,
                "<table><tr><th>This minute</th><td id=\"api-minute\">{}</td></tr>\
                 <tr><th>This hour</th><td id=\"api-hour\">{}</td></tr></table>",
                budget(*minute, p.budget_minute),
                budget(*hour, p.budget_hour)
            );
        }
        (Err(why), _) | (_, Err(why)) => unavailable(&mut o, why),
    }
    o.push_str("</section>");

    // Token.
    o.push_str("<section id=\"token\"><h2>amoCRM token</h2>");
    match &p.tokens {
        None if p.api_mode => o.push_str("<p>Long-lived token (no expiry to watch).</p>"),
        None => o.push_str("<p class=\"muted\">No API access configured (webhook-only mode).</p>"),
        Some(Ok(None)) => o.push_str(
            "<p class=\"bad\">No OAuth token stored: run <code>jarvis auth url</code> and \
             <code>jarvis auth exchange</code>.</p>",
        ),
        Some(Ok(Some(t))) => {
            let left = (t.expires_at - p.now).num_seconds();
            let (class, text) = if left > 0 {
                ("ok", format!("expires in {}", age(left)))
            } else {
                (
                    "warn",
                    format!("expired {} ago (refreshed on the next request)", age(-left)),
                )
            };
            let _ = write!(
                o,
                "<p>Access token <span class=\"{class}\">{text}</span> ({}); last rotated {}.</p>",
                time(t.expires_at),
                time(t.updated_at)
            );
        }
        Some(Err(why)) => unavailable(&mut o, why),
    }
    o.push_str("</section>");

    // Worker lock.
    o.push_str("<section id=\"worker\"><h2>Worker lock</h2><p>");
    match p.activity.worker {
        WorkerLock::NotRunning => o.push_str(
            "No worker runs in this process (<code>serve --http-only</code>, or stopping).",
        ),
        WorkerLock::NotNeeded => o.push_str("Webhook-only mode: the worker needs no account lock."),
        WorkerLock::Held { since } => {
            let _ = write!(
                o,
                "<span class=\"ok\">This instance</span> holds the lock of account <b>{}</b> since {}.",
                esc(&p.account),
                time(since)
            );
        }
        WorkerLock::Standby { since } => {
            let _ = write!(
                o,
                "<span class=\"warn\">Standing by</span> since {}: another instance holds the lock of \
                 account <b>{}</b> (or it could not be taken).",
                time(since),
                esc(&p.account)
            );
        }
    }
    o.push_str("</p></section>");

    // Gaps.
    o.push_str("<section id=\"gaps\"><h2>Open gaps</h2>");
    match &p.gaps {
        Err(why) => unavailable(&mut o, why),
        Ok(gaps) if gaps.is_empty() => o.push_str(
            "<p class=\"ok\">None: every change since the service first started has been received \
             or caught up.</p>",
        ),
        Ok(gaps) => {
            o.push_str(
                "<table><tr><th>Kind</th><th>From</th><th>To</th><th>Length</th>\
                 <th>Feed pages read</th><th>Events read</th><th>State</th></tr>",
            );
            for gap in gaps {
                let state = if gap.read_done_at.is_some() {
                    "queueing entities"
                } else if gap.pages_done > 0 {
                    "reading the events feed"
                } else {
                    "waiting"
                };
                let _ = write!(
                    o,
                    "<tr><td class=\"warn\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td>{}</td></tr>",
                    esc(gap.kind.as_str()),
                    time(gap.from),
                    time(gap.to),
                    age((gap.to - gap.from).num_seconds()),
                    gap.pages_done,
                    gap.events_read,
                    state
                );
            }
            o.push_str("</table>");
        }
    }
    o.push_str("</section>");
    o.push_str("</body></html>\n");
    o
}

/// An inline SVG bar chart of the last hour: events stored per minute (bars) and processed (line).
fn chart(minutes: &[MinuteCount]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    let n = minutes.len().max(1) as f64;
    let peak = minutes
        .iter()
        .map(|m| m.received.max(m.processed))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let bar = W / n;
    let y = |v: u64| H - (v as f64 / peak) * (H - 10.0);
    let mut svg = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {}\" width=\"{W}\" \
         height=\"{}\" role=\"img\" aria-label=\"events per minute, last hour\">\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#f6f8fa\"/>",
        H + 16.0,
        H + 16.0
    );
    for (i, m) in minutes.iter().enumerate() {
        if m.received > 0 {
            let top = y(m.received);
            let _ = write!(
                svg,
                "<rect class=\"bar\" x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4c8bf5\">\
                 <title>{} stored</title></rect>",
                i as f64 * bar + 1.0,
                (bar - 2.0).max(1.0),
                H - top,
                m.received
            );
        }
    }
    let points: Vec<String> = minutes
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{:.1},{:.1}", i as f64 * bar + bar / 2.0, y(m.processed)))
        .collect();
    let _ = write!(
        svg,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#e8710a\" stroke-width=\"2\"/>\
         <text x=\"2\" y=\"{}\" font-size=\"11\">-60 min</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">now</text>\
         <text x=\"2\" y=\"11\" font-size=\"11\">{} / min</text></svg>\
         <p class=\"muted\"><span style=\"color:#4c8bf5\">&#9632;</span> stored \
         <span style=\"color:#e8710a\">&#9472;</span> processed</p>",
        points.join(" "),
        H + 13.0,
        W - 2.0,
        H + 13.0,
        peak as u64
    );
    svg
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1f2328;max-width:980px}\
h1{font-size:1.5em;margin:0}h2{font-size:1.1em;margin:1.2em 0 .4em}\
table{border-collapse:collapse}th,td{text-align:left;padding:2px 10px 2px 0;vertical-align:top}\
th{font-weight:600}.muted{color:#656d76}.ok{color:#1a7f37;font-weight:600}\
.warn{color:#9a6700;font-weight:600}.bad{color:#cf222e;font-weight:600}code{font-size:.95em}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(185), "3m 5s");
        assert_eq!(age(3 * 3600 + 120), "3h 2m");
        assert_eq!(age(2 * 86400 + 3600), "2d 1h");
        assert_eq!(age(-5), "0s");
    }

    #[test]
    fn the_chart_has_a_bar_per_busy_minute() {
        let minutes: Vec<MinuteCount> = (0..60)
            .map(|i| MinuteCount {
                minute: i,
                received: if i % 10 == 0 { 5 } else { 0 },
                processed: 1,
            })
            .collect();
        let svg = chart(&minutes);
        assert_eq!(svg.matches("class=\"bar\"").count(), 6);
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("5 / min"));
    }

    #[test]
    fn budgets_warn_near_their_end() {
        assert!(budget(95, Some(100)).contains("bad"));
        assert!(budget(10, Some(100)).contains("ok"));
        assert_eq!(budget(3, None), "3 (no budget set)");
    }
}
