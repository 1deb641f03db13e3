//! `jarvis link --backfill`: linking the deals already stored.

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Settings;
use crate::link::Linker;

/// Reads `--since`: RFC 3339 (`2025-11-01T00:00:00Z`) or a date (`2025-11-01`, midnight UTC).
pub fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").with_context(|| {
        format!("--since must be a date (2025-11-01) or an RFC 3339 time, got `{text}`")
    })?;
    Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// `jarvis link --backfill`: links existing rows, printing progress after each batch.
pub async fn backfill(
    settings: &Settings,
    since: Option<&str>,
    batch: usize,
) -> anyhow::Result<()> {
    let since = since.map(parse_since).transpose()?;
    let store = jarvis_store::connect(&settings.database_url).await?;
    store.check_migrated().await?;
    let linker = Linker::new(store, settings.link.clone()).context(
        "neither JARVIS_LINK_CLIENT_SQL nor JARVIS_LINK_CONVERSATION_SQL is set: nothing to link",
    )?;
    let progress = linker
        .backfill(since, batch, |p| {
            println!(
                "batch {}: {} deals so far (up to {}), clients linked {}, conversations linked {}, \
                 failed {}",
                p.batches,
                p.report.deals,
                p.last_deal.as_deref().unwrap_or("-"),
                p.report.clients_linked,
                p.report.conversations_linked,
                p.report.failed
            )
        })
        .await?;
    let r = progress.report;
    println!(
        "done: {} deals checked, {} queries, clients linked {}, conversations linked {}, cleared {}, \
         kept (set by others) {}, failed {}",
        r.deals,
        r.queries,
        r.clients_linked,
        r.conversations_linked,
        r.cleared,
        r.kept_other,
        r.failed
    );
    if r.failed > 0 {
        println!(
            "failed deals keep link_failed_at set; the service tries them again, or run this again"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_date_or_a_time() {
        assert_eq!(
            parse_since("2025-11-01").unwrap().to_rfc3339(),
            "2025-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2025-11-01T10:00:00+03:00")
                .unwrap()
                .to_rfc3339(),
            "2025-11-01T07:00:00+00:00"
        );
        assert!(parse_since("yesterday").is_err());
    }
}
