//! Group commit: concurrent callers hand their batch of rows to writer tasks; each writer takes every
//! batch waiting at that moment, stores them in one transaction and answers each caller after the
//! commit. An acknowledgement still follows a durable commit, and concurrent callers share the commit
//! (and its disk sync) instead of queueing for one each.
//!
//! Both backends use it for event inserts; what a group's transaction looks like is theirs
//! ([`GroupWrite`]).

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::{Error, Result};

/// Rows written in one group at most (a larger single batch still goes in whole).
const MAX_GROUP_ROWS: usize = 512;
const QUEUE_DEPTH: usize = 4096;

/// How a backend stores a group of batches.
pub(crate) trait GroupWrite: Clone + Send + Sync + 'static {
    type Row: Send + Sync + 'static;
    /// Writer tasks working at once.
    const WRITERS: usize;
    /// Stores the batches in one transaction; returns each batch's count of new rows.
    fn write(&self, batches: &[Vec<Self::Row>]) -> impl Future<Output = Result<Vec<u64>>> + Send;
}

struct Job<R> {
    rows: Vec<R>,
    reply: oneshot::Sender<Result<u64>>,
}

type Jobs<R> = Arc<tokio::sync::Mutex<mpsc::Receiver<Job<R>>>>;
/// The live sender, if the writers run; replaced when their runtime has gone.
type SharedSender<R> = Arc<Mutex<Option<mpsc::Sender<Job<R>>>>>;

/// The handle callers send batches through; the writers start on first use, in the caller's runtime,
/// and again if that runtime has gone.
pub(crate) struct GroupCommit<W: GroupWrite> {
    sender: SharedSender<W::Row>,
}

impl<W: GroupWrite> Default for GroupCommit<W> {
    fn default() -> Self {
        Self {
            sender: Arc::default(),
        }
    }
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<W: GroupWrite> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl<W: GroupWrite> GroupCommit<W> {
    /// Stores the rows (in one transaction, possibly shared with other callers' rows); returns how
    /// many were new.
    pub async fn insert(&self, writer: &W, rows: Vec<W::Row>) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.sender(writer)
            .send(Job { rows, reply })
            .await
            .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?;
        answer
            .await
            .map_err(|_| Error::Database(sqlx::Error::WorkerCrashed))?
    }

    fn sender(&self, writer: &W) -> mpsc::Sender<Job<W::Row>> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match sender.as_ref() {
            Some(live) if !live.is_closed() => live.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                let jobs: Jobs<W::Row> = Arc::new(tokio::sync::Mutex::new(rx));
                for _ in 0..W::WRITERS {
                    tokio::spawn(write_loop(writer.clone(), jobs.clone()));
                }
                *sender = Some(tx.clone());
                tx
            }
        }
    }
}

/// Takes the next job and every job already waiting behind it (up to the group limit).
async fn next_group<R>(jobs: &Jobs<R>) -> Option<Vec<Job<R>>> {
    let mut jobs = jobs.lock().await;
    let first = jobs.recv().await?;
    let mut rows = first.rows.len();
    let mut group = vec![first];
    while rows < MAX_GROUP_ROWS {
        match jobs.try_recv() {
            Ok(job) => {
                rows += job.rows.len();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

async fn write_loop<W: GroupWrite>(writer: W, jobs: Jobs<W::Row>) {
    while let Some(group) = next_group(&jobs).await {
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|job| (job.rows, job.reply)).unzip();
        match writer.write(&batches).await {
            Ok(counts) => {
                for (reply, stored) in replies.into_iter().zip(counts) {
                    let _ = reply.send(Ok(stored));
                }
            }
            Err(error) if batches.len() == 1 => {
                let _ = replies
                    .into_iter()
                    .next()
                    .map(|reply| reply.send(Err(error)));
            }
            // Nothing of the group was stored; retry each batch alone so every caller gets its own
            // outcome and one bad batch cannot fail the others.
            Err(_) => {
                for (batch, reply) in batches.into_iter().zip(replies) {
                    let result = writer
                        .write(std::slice::from_ref(&batch))
                        .await
                        .map(|counts| counts[0]);
                    let _ = reply.send(result);
                }
            }
        }
    }
}
