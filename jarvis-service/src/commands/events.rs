//! `jarvis events replay`: puts dead or chosen events back in the queue.

use jarvis_store::Requeue;

use crate::config::Settings;

/// Requeues every dead event (`dead`), or the events `ids`.
pub async fn replay(settings: &Settings, dead: bool, ids: Vec<i64>) -> anyhow::Result<()> {
    let store = jarvis_store::connect(&settings.database_url).await?;
    let which = if dead {
        Requeue::Dead
    } else {
        Requeue::Ids(ids)
    };
    let n = store.requeue(which).await?;
    println!("requeued {n} event(s)");
    Ok(())
}
