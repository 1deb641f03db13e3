//! `jarvis migrate`: creates or upgrades the database schema.

use crate::config::Settings;

/// Applies the migrations the database lacks (idempotent).
pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let store = jarvis_store::connect(&settings.database_url).await?;
    store.migrate().await?;
    println!("database is up to date");
    Ok(())
}
