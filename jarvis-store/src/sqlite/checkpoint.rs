//! WAL checkpoints beside the writer, not inside its commits.
//!
//! SQLite's automatic checkpoint runs in the connection whose commit takes the WAL past its
//! threshold (1,000 pages by default): that commit copies the WAL into the database file and syncs
//! it, 10–17 ms on a small machine, and every webhook waiting for the next group commit waits too
//! (BENCHMARKS.md). Here a connection of its own runs passive checkpoints, which copy what the WAL
//! holds without taking the write lock, shortly after writes; the writer's own threshold is raised
//! to [`WRITER_AUTOCHECKPOINT`] pages, a backstop that also lets the WAL start over from its
//! beginning when writes never pause (a passive checkpoint cannot restart it while a writer keeps
//! appending).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

/// The writer's `wal_autocheckpoint`, in pages (about 40 MB of WAL at 4 KiB pages).
pub(super) const WRITER_AUTOCHECKPOINT: &str = "10000";

/// How long after a write the checkpoint runs: writes that come in the meantime share it.
const AFTER_WRITE: Duration = Duration::from_millis(100);

/// Asks for a checkpoint after writes; a background task runs it. The task ends on
/// [`Checkpointer::stop`], or when every clone of the store (and so every sender) is gone.
#[derive(Debug, Clone)]
pub(super) struct Checkpointer {
    nudge: mpsc::Sender<()>,
    stop: Arc<Notify>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl Checkpointer {
    /// Starts the task; its connection opens at the first checkpoint.
    pub(super) fn spawn(options: SqliteConnectOptions) -> Self {
        let (nudge, mut nudged) = mpsc::channel(1);
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut connection: Option<SqliteConnection> = None;
            loop {
                tokio::select! {
                    _ = stopped.notified() => break,
                    nudge = nudged.recv() => if nudge.is_none() { break },
                }
                tokio::select! {
                    _ = stopped.notified() => break,
                    _ = tokio::time::sleep(AFTER_WRITE) => {}
                }
                // A nudge that came during the wait is served by this checkpoint.
                let _ = nudged.try_recv();
                if connection.is_none() {
                    match options.connect().await {
                        Ok(opened) => connection = Some(opened),
                        Err(error) => {
                            tracing::debug!(%error, "opening the checkpoint connection failed");
                            continue;
                        }
                    }
                }
                if let Some(conn) = connection.as_mut()
                    && let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(conn)
                        .await
                {
                    // The writer's own checkpoint still bounds the WAL; a new connection next time.
                    tracing::debug!(%error, "WAL checkpoint failed");
                    connection = None;
                }
            }
            if let Some(conn) = connection {
                let _ = conn.close().await;
            }
        });
        Checkpointer {
            nudge,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// Asks for a checkpoint soon; one already asked for covers this one.
    pub(super) fn nudge(&self) {
        let _ = self.nudge.try_send(());
    }

    /// Ends the task (after a checkpoint under way) and closes its connection.
    pub(super) async fn stop(&self) {
        self.stop.notify_one();
        let task = self.task.lock().expect("not poisoned").take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
