//! Group commit: concurrent callers hand their batch of rows to writer tasks; each writer takes every
//! batch waiting at that moment, stores them in one transaction and answers each caller after the
//! commit. An acknowledgement still follows a durable commit, and concurrent callers share the commit
//! (and its disk sync) instead of queueing for one each.
//!
//! Every wait is bounded: a caller waits at most the ingest timeout for its answer, a group's write
//! is cut at the latest deadline of its callers, and a group that fails is retried once with its
//! batches in parallel (so one bad batch cannot fail the others), never one caller after another.
//!
//! Both backends use it for event inserts; what a group's transaction looks like is theirs
//! ([`GroupWrite`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::{Error, Result};

/// Rows written in one group at most (a larger single batch still goes in whole).
const MAX_GROUP_ROWS: usize = 512;
const QUEUE_DEPTH: usize = 4096;

/// How a backend stores a group of batches.
pub(crate) trait GroupWrite: Clone + Send + Sync + 'static {
    type Row: Send + Sync + 'static;
    /// What a caller learns of its batch.
    type Outcome: Send + 'static;
    /// Writer tasks working at once.
    const WRITERS: usize;
    /// Stores the batches in one transaction; returns each batch's outcome, in order.
    fn write(
        &self,
        batches: &[Vec<Self::Row>],
    ) -> impl Future<Output = Result<Vec<Self::Outcome>>> + Send;
}

struct Job<R, O> {
    rows: Vec<R>,
    reply: oneshot::Sender<Result<O>>,
    /// When the caller stops waiting: the write is not worth finishing after it.
    deadline: Instant,
}

type Jobs<R, O> = Arc<tokio::sync::Mutex<mpsc::Receiver<Job<R, O>>>>;
/// The live sender, if the writers run; replaced when their runtime has gone.
type SharedSender<R, O> = Arc<Mutex<Option<mpsc::Sender<Job<R, O>>>>>;

/// The handle callers send batches through; the writers start on first use, in the caller's runtime,
/// and again if that runtime has gone.
pub(crate) struct GroupCommit<W: GroupWrite> {
    sender: SharedSender<W::Row, W::Outcome>,
    /// How long a caller waits for its answer, queueing included.
    timeout: Duration,
}

impl<W: GroupWrite> GroupCommit<W> {
    /// A group commit whose callers wait at most `timeout` for their answer.
    pub fn new(timeout: Duration) -> Self {
        Self {
            sender: Arc::default(),
            timeout,
        }
    }
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            timeout: self.timeout,
        }
    }
}

impl<W: GroupWrite> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GroupCommit")
    }
}

impl<W: GroupWrite> GroupCommit<W> {
    /// Stores the rows (in one transaction, possibly shared with other callers' rows); returns the
    /// writer's outcome for them. [`Error::TimedOut`] when no answer came within the timeout: the rows may still
    /// be committed afterwards, which the callers' deduplication makes harmless.
    pub async fn insert(&self, writer: &W, rows: Vec<W::Row>) -> Result<W::Outcome> {
        let deadline = Instant::now() + self.timeout;
        let (reply, answer) = oneshot::channel();
        let sender = self.sender(writer);
        match timeout_at(
            deadline,
            sender.send(Job {
                rows,
                reply,
                deadline,
            }),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Error::Database(sqlx::Error::WorkerCrashed)),
            Err(_) => return Err(Error::TimedOut),
        }
        match timeout_at(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Database(sqlx::Error::WorkerCrashed)),
            Err(_) => Err(Error::TimedOut),
        }
    }

    fn sender(&self, writer: &W) -> mpsc::Sender<Job<W::Row, W::Outcome>> {
        let mut sender = self
            .sender
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match sender.as_ref() {
            Some(live) if !live.is_closed() => live.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
                let jobs: Jobs<W::Row, W::Outcome> = Arc::new(tokio::sync::Mutex::new(rx));
                for _ in 0..W::WRITERS {
                    tokio::spawn(write_loop(writer.clone(), jobs.clone()));
                }
                *sender = Some(tx.clone());
                tx
            }
        }
    }
}

/// Takes the next job and every job already waiting behind it (up to the group limit), leaving out
/// those whose caller has stopped waiting.
async fn next_group<R, O>(jobs: &Jobs<R, O>) -> Option<Vec<Job<R, O>>> {
    let mut jobs = jobs.lock().await;
    loop {
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
        let now = Instant::now();
        group.retain(|job| !job.reply.is_closed() && job.deadline > now);
        if !group.is_empty() {
            return Some(group);
        }
    }
}

async fn write_loop<W: GroupWrite>(writer: W, jobs: Jobs<W::Row, W::Outcome>) {
    while let Some(group) = next_group(&jobs).await {
        let deadline = group
            .iter()
            .map(|job| job.deadline)
            .max()
            .expect("a group is never empty");
        let (batches, replies): (Vec<_>, Vec<_>) =
            group.into_iter().map(|job| (job.rows, job.reply)).unzip();
        let error = match timeout_at(deadline, writer.write(&batches)).await {
            Ok(Ok(outcomes)) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
                continue;
            }
            Ok(Err(error)) => error,
            Err(_) => Error::TimedOut,
        };
        // One caller: its own error, as it came (whether it is bad data matters to it).
        if batches.len() == 1 {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(error));
            }
            continue;
        }
        // The database is away or slow: a retry now would fail the same way, and the callers have
        // their own fallback. Everyone gets the answer at once.
        if error.is_unavailable() {
            for reply in replies {
                let _ = reply.send(Err(shared(&error)));
            }
            continue;
        }
        // Nothing of the group was stored, maybe for one batch's content: every batch is retried
        // alone, all at once, so each caller gets its own outcome within the same deadline.
        let mut retries = tokio::task::JoinSet::new();
        for (batch, reply) in batches.into_iter().zip(replies) {
            let writer = writer.clone();
            retries.spawn(async move {
                let result =
                    match timeout_at(deadline, writer.write(std::slice::from_ref(&batch))).await {
                        Ok(result) => result.and_then(|outcomes| {
                            outcomes.into_iter().next().ok_or_else(|| {
                                Error::Database(sqlx::Error::Protocol("no outcome".into()))
                            })
                        }),
                        Err(_) => Err(Error::TimedOut),
                    };
                let _ = reply.send(result);
            });
        }
        while retries.join_next().await.is_some() {}
    }
}

/// A copy of a group's error for each of its callers (the database's errors cannot be cloned); keeps
/// what matters to them, whether the database was unavailable.
fn shared(error: &Error) -> Error {
    match error {
        Error::TimedOut => Error::TimedOut,
        Error::NotMigrated => Error::NotMigrated,
        Error::Database(sqlx::Error::PoolTimedOut) => Error::Database(sqlx::Error::PoolTimedOut),
        Error::Database(sqlx::Error::PoolClosed) => Error::Database(sqlx::Error::PoolClosed),
        Error::Database(sqlx::Error::Io(io)) => Error::Database(sqlx::Error::Io(
            std::io::Error::new(io.kind(), io.to_string()),
        )),
        other if other.is_unavailable() => {
            Error::Database(sqlx::Error::Io(std::io::Error::other(other.to_string())))
        }
        other => Error::Database(sqlx::Error::Protocol(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Fails any group holding a batch with a zero; otherwise stores everything after `delay`.
    #[derive(Clone)]
    struct Fake {
        delay: Duration,
        writes: Arc<AtomicUsize>,
        unavailable: bool,
    }

    impl GroupWrite for Fake {
        type Row = u32;
        type Outcome = u64;
        const WRITERS: usize = 1;

        async fn write(&self, batches: &[Vec<u32>]) -> Result<Vec<u64>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            if self.unavailable {
                return Err(Error::Database(sqlx::Error::PoolTimedOut));
            }
            if batches.iter().flatten().any(|row| *row == 0) {
                return Err(Error::Database(sqlx::Error::Protocol("bad row".into())));
            }
            Ok(batches.iter().map(|b| b.len() as u64).collect())
        }
    }

    fn fake(delay: Duration, unavailable: bool) -> Fake {
        Fake {
            delay,
            writes: Arc::default(),
            unavailable,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_an_answer_is_bounded() {
        let writer = fake(Duration::from_secs(3600), false);
        let commit = GroupCommit::<Fake>::new(Duration::from_millis(300));
        let started = Instant::now();
        let result = commit.insert(&writer, vec![1, 2]).await;
        assert!(matches!(result, Err(Error::TimedOut)), "{result:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_database_fails_the_whole_group_at_once() {
        let writer = fake(Duration::from_millis(100), true);
        let commit = GroupCommit::<Fake>::new(Duration::from_secs(5));
        // The first caller's group is being written while the others queue; they form one group.
        let mut callers = tokio::task::JoinSet::new();
        for i in 1..=9u32 {
            let (commit, writer) = (commit.clone(), writer.clone());
            callers.spawn(async move {
                let started = Instant::now();
                let result = commit.insert(&writer, vec![i]).await;
                (result, started.elapsed())
            });
        }
        while let Some(joined) = callers.join_next().await {
            let (result, elapsed) = joined.unwrap();
            assert!(result.unwrap_err().is_unavailable());
            assert!(elapsed <= Duration::from_millis(200), "{elapsed:?}");
        }
        assert!(
            writer.writes.load(Ordering::SeqCst) <= 2,
            "no retry per caller"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_batch_fails_alone_and_the_retries_run_in_parallel() {
        let writer = fake(Duration::from_millis(100), false);
        let commit = GroupCommit::<Fake>::new(Duration::from_secs(5));
        // Occupy the writer so the next callers queue up and form one group.
        let first = {
            let (commit, writer) = (commit.clone(), writer.clone());
            tokio::spawn(async move { commit.insert(&writer, vec![7]).await })
        };
        tokio::task::yield_now().await;
        let mut callers = tokio::task::JoinSet::new();
        for i in 0..8u32 {
            let (commit, writer) = (commit.clone(), writer.clone());
            callers.spawn(async move {
                let started = Instant::now();
                (i, commit.insert(&writer, vec![i]).await, started.elapsed())
            });
        }
        assert_eq!(first.await.unwrap().unwrap(), 1);
        while let Some(joined) = callers.join_next().await {
            let (i, result, elapsed) = joined.unwrap();
            if i == 0 {
                assert!(result.is_err());
            } else {
                assert_eq!(result.unwrap(), 1);
            }
            // First group, the failed group, then one round of retries side by side.
            assert!(elapsed <= Duration::from_millis(300), "{elapsed:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn callers_that_gave_up_are_not_written() {
        let writer = fake(Duration::from_millis(500), false);
        let commit = GroupCommit::<Fake>::new(Duration::from_millis(200));
        let busy = {
            let (commit, writer) = (commit.clone(), writer.clone());
            tokio::spawn(async move { commit.insert(&writer, vec![1]).await })
        };
        tokio::task::yield_now().await;
        let late = commit.insert(&writer, vec![2]).await;
        assert!(matches!(late, Err(Error::TimedOut)));
        assert!(matches!(busy.await.unwrap(), Err(Error::TimedOut)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            writer.writes.load(Ordering::SeqCst),
            1,
            "the expired job was dropped unwritten"
        );
    }
}
