//! `jarvis status`: backlog, failures, last event and API budget use, read from the database (and
//! the spool) so it works beside a running service.

use chrono::Utc;
use serde_json::json;

use crate::amo;
use crate::config::Settings;

/// The spool's line of `status`: what waits there is what the database has not got yet.
fn spool_status(settings: &Settings) -> (serde_json::Value, String) {
    let Some(spool) = &settings.spool else {
        return (serde_json::Value::Null, "off".into());
    };
    let dir = spool.dir.display().to_string();
    match crate::spool::inspect(&spool.dir) {
        Ok((bodies, bytes)) => (
            json!({"dir": dir, "bodies": bodies, "bytes": bytes, "max_bytes": spool.max_bytes}),
            format!("{bodies} bodies, {bytes} bytes waiting in {dir}"),
        ),
        Err(error) => (
            json!({"dir": dir, "error": error.to_string()}),
            format!("{dir} cannot be read: {error}"),
        ),
    }
}

/// Prints the backlog, failures, API access and budget use, gaps and the spool, as text or JSON.
pub async fn run(settings: &Settings, as_json: bool) -> anyhow::Result<()> {
    let (spool_json, spool_line) = spool_status(settings);
    let store = match jarvis_store::connect(&settings.database_url).await {
        Ok(store) => store,
        Err(error) => {
            // The spool matters most while the database is away.
            eprintln!("spool:           {spool_line}");
            return Err(error.into());
        }
    };
    let stats = store.stats().await?;
    let now = Utc::now();
    let minute = store
        .api_usage_since(now - chrono::Duration::minutes(1))
        .await?;
    let hour = store
        .api_usage_since(now - chrono::Duration::hours(1))
        .await?;
    let oldest_age = stats.oldest_pending_at.map(|t| (now - t).num_seconds());
    let access = amo::access_broken(&store).await?;
    let gaps = store.open_gaps().await?;
    let mode = if settings.amocrm.auth.is_some() {
        "api"
    } else {
        "webhook-only"
    };
    if as_json {
        let out = json!({
            "mode": mode,
            "backlog": stats.backlog,
            "retrying": stats.retrying,
            "oldest_pending_age_seconds": oldest_age,
            "dead": stats.dead,
            "processed": stats.processed,
            "rejected": stats.rejected,
            "last_event_at": stats.last_event_at,
            "deals": stats.deals,
            "contacts": stats.contacts,
            "api_requests_last_minute": minute,
            "api_budget_per_minute": settings.amocrm.rate_per_minute,
            "api_requests_last_hour": hour,
            "api_budget_per_hour": settings.amocrm.rate_per_hour,
            "by_type": stats.by_type.iter().map(|(t, n)| json!({"event_type": t, "count": n})).collect::<Vec<_>>(),
            "api_access": match &access {
                Some(broken) => json!({
                    "ok": false,
                    "broken_since": broken.since,
                    "reason": broken.reason,
                    "advice": broken.advice,
                    "error": broken.error,
                }),
                None => json!({"ok": true}),
            },
            "open_gaps": gaps.iter().map(|g| json!({
                "id": g.id, "kind": g.kind.as_str(), "from": g.from, "to": g.to,
                "pages_done": g.pages_done, "events_read": g.events_read,
            })).collect::<Vec<_>>(),
            "spool": spool_json,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let budget = |b: Option<u32>| b.map(|b| format!(" of {b}")).unwrap_or_default();
    println!("mode:            {mode}");
    if let Some(broken) = &access {
        println!(
            "API access broken since {}: {}; {}",
            broken.since.to_rfc3339(),
            broken.reason,
            broken.advice
        );
    }
    println!(
        "backlog:         {} ({} retrying{})",
        stats.backlog,
        stats.retrying,
        oldest_age
            .map(|a| format!(", oldest {a}s"))
            .unwrap_or_default()
    );
    println!("dead:            {}", stats.dead);
    println!("processed:       {}", stats.processed);
    println!("rejected bodies: {}", stats.rejected);
    println!(
        "last event:      {}",
        stats
            .last_event_at
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "none".into())
    );
    println!("deals/contacts:  {}/{}", stats.deals, stats.contacts);
    println!("spool:           {spool_line}");
    println!(
        "API requests:    {minute}{} this minute, {hour}{} this hour",
        budget(settings.amocrm.rate_per_minute),
        budget(settings.amocrm.rate_per_hour)
    );
    match gaps.iter().map(|g| g.from).min() {
        None => println!("open gap:        none"),
        Some(from) => println!(
            "open gap:        since {} ({}s, {} gap(s): {})",
            from.to_rfc3339(),
            (now - from).num_seconds(),
            gaps.len(),
            gaps.iter()
                .map(|g| format!("{} {} page(s) read", g.kind, g.pages_done))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    if !stats.by_type.is_empty() {
        println!("events by type:");
        for (event_type, count) in &stats.by_type {
            println!("  {event_type:<22} {count}");
        }
    }
    Ok(())
}
