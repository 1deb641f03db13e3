//! The local spool: where an accepted webhook body waits when the database cannot commit it before
//! the answer deadline, so amoCRM still gets its 200 and nothing is lost.
//!
//! What it guarantees: a body is appended and `fsync`ed to this host's disk before the 200 goes out,
//! so it survives a crash, a `kill -9` or a restart of the service, but not the loss of that disk. A
//! drainer moves spooled bodies into the store, oldest first, once the database answers again; a body
//! that was both committed and spooled (the commit landing just after the deadline) is stored once,
//! events being deduplicated by `event_hash`.
//!
//! On disk: numbered segment files (`00000000000000000001.spool`, ...), each a sequence of records
//! `magic "JSP1" | length u32 | CRC-32C u32 | payload`, the payload being the receive time, the content
//! type and the raw body. A record torn by a crash mid-write, or damaged later, fails its length or
//! checksum and is skipped (the reader resynchronises on the next magic). Appends go to the newest
//! segment only; a restart always opens a new one, so nothing is ever written after a torn tail. The
//! drainer reads only closed segments and deletes each once all its bodies are committed; a crash
//! in the middle makes it store that segment again, which deduplication makes harmless.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use amocrm_webhook::{Parser, WebhookBatch};
use chrono::{DateTime, Utc};
use jarvis_store::{DynStore, NewEvent, RejectedWebhook};
use tokio::sync::{Notify, oneshot, watch};

use crate::task::stopped;
use crate::telemetry::names;

const MAGIC: &[u8; 4] = b"JSP1";
const HEADER: usize = 12;
const EXTENSION: &str = "spool";
/// A segment is closed once this large, bounding how much a drain interrupted by a crash repeats.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Bodies stored per insert while draining.
const DRAIN_CHUNK: usize = 64;
static CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// Why a body could not be spooled (the webhook is then answered 503).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `max_bytes` already.
    #[error("the spool is full")]
    Full,
    /// Writing or syncing failed (disk full, directory not writable, ...).
    #[error("the spool cannot be written: {0}")]
    Io(#[from] io::Error),
    /// The spool's writer thread has stopped.
    #[error("the spool is closed")]
    Closed,
}

/// One spooled webhook: what storing it later needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBody {
    pub received_at: DateTime<Utc>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl SpooledBody {
    fn encode(&self) -> Vec<u8> {
        let content_type = self.content_type.as_deref().unwrap_or_default().as_bytes();
        let content_type = &content_type[..content_type.len().min(u16::MAX as usize)];
        let payload_len = 8 + 2 + content_type.len() + self.body.len();
        let mut record = Vec::with_capacity(HEADER + payload_len);
        record.extend_from_slice(MAGIC);
        record.extend_from_slice(&(payload_len as u32).to_le_bytes());
        record.extend_from_slice(&[0; 4]);
        record.extend_from_slice(&self.received_at.timestamp_micros().to_le_bytes());
        record.extend_from_slice(&(content_type.len() as u16).to_le_bytes());
        record.extend_from_slice(content_type);
        record.extend_from_slice(&self.body);
        let crc = CRC.checksum(&record[HEADER..]);
        record[8..12].copy_from_slice(&crc.to_le_bytes());
        record
    }

    fn decode(payload: &[u8]) -> Option<SpooledBody> {
        let micros = i64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let ct_len = u16::from_le_bytes(payload.get(8..10)?.try_into().ok()?) as usize;
        let content_type = payload.get(10..10 + ct_len)?;
        let body = payload.get(10 + ct_len..)?;
        Some(SpooledBody {
            received_at: DateTime::from_timestamp_micros(micros)?,
            content_type: (!content_type.is_empty())
                .then(|| String::from_utf8_lossy(content_type).into_owned()),
            body: body.to_vec(),
        })
    }
}

/// The records of one segment's bytes, and how many bytes were skipped as torn or damaged.
pub fn read_records(bytes: &[u8]) -> (Vec<SpooledBody>, usize) {
    let mut records = Vec::new();
    let mut skipped = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        if let Some((record, len)) = record_at(&bytes[pos..]) {
            records.push(record);
            pos += len;
            continue;
        }
        // Torn or damaged: resume at the next magic that starts a valid record.
        let next = bytes[pos + 1..]
            .windows(MAGIC.len())
            .position(|window| window == MAGIC)
            .map(|offset| pos + 1 + offset)
            .unwrap_or(bytes.len());
        skipped += next - pos;
        pos = next;
    }
    (records, skipped)
}

fn record_at(bytes: &[u8]) -> Option<(SpooledBody, usize)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER + len)?;
    if CRC.checksum(payload) != crc {
        return None;
    }
    Some((SpooledBody::decode(payload)?, HEADER + len))
}

/// The closed and open segments of a spool directory, oldest first.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXTENSION) {
            continue;
        }
        if let Some(seq) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            found.push((seq, path));
        }
    }
    found.sort();
    Ok(found)
}

/// Bodies and bytes waiting in a spool directory (for `jarvis status`; reads every segment).
pub fn inspect(dir: &Path) -> io::Result<(u64, u64)> {
    if !dir.exists() {
        return Ok((0, 0));
    }
    let (mut bodies, mut bytes) = (0, 0);
    for (_, path) in segments(dir)? {
        let data = fs::read(&path)?;
        bytes += data.len() as u64;
        bodies += read_records(&data).0.len() as u64;
    }
    Ok((bodies, bytes))
}

enum Command {
    Append(Vec<u8>, oneshot::Sender<Result<(), SpoolError>>),
    /// Closes the open segment so the drainer may take it.
    Seal(oneshot::Sender<()>),
}

struct Inner {
    dir: PathBuf,
    bytes: AtomicU64,
    bodies: AtomicU64,
    /// The segment being appended to, which the drainer leaves alone.
    open_segment: Arc<Mutex<Option<u64>>>,
    commands: Mutex<mpsc::Sender<Command>>,
    appended: Notify,
    /// Until when webhooks skip the database and go straight to the spool: set when an insert failed
    /// for the database's sake, so an outage does not cost every webhook the wait for the database.
    bypass_until: Mutex<Option<tokio::time::Instant>>,
}

/// How long webhooks go straight to the spool after the database failed one.
const BYPASS: Duration = Duration::from_millis(500);

/// Where the drainer puts spooled bodies: the service's store, parsed and turned into rows the
/// way the webhook route does it, so a body both committed and spooled is stored once.
#[derive(Clone)]
pub struct DrainTarget {
    pub store: DynStore,
    pub parser: Arc<Parser>,
    /// The rows a parsed body becomes (the webhook route's own function).
    pub events: fn(&WebhookBatch, DateTime<Utc>) -> Vec<NewEvent>,
    /// Wakes the worker when events are stored.
    pub wake: Arc<Notify>,
}

/// A handle on the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.inner.dir)
            .field("bodies", &self.bodies())
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Spool {
    /// Opens (creating) the spool directory, counts what waits there and starts the writer thread.
    /// Fails if the directory cannot be created or read.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut next_seq = 1;
        let (mut bodies, mut bytes) = (0, 0);
        for (seq, path) in segments(dir)? {
            let data = fs::read(&path)?;
            let (records, skipped) = read_records(&data);
            if skipped > 0 {
                tracing::warn!(segment = %path.display(), skipped_bytes = skipped, "spool segment has a torn or damaged record; skipped");
            }
            bytes += data.len() as u64;
            bodies += records.len() as u64;
            next_seq = next_seq.max(seq + 1);
        }
        // Probe that the directory is writable now rather than at the first outage.
        let probe = dir.join(".probe");
        File::create(&probe)?;
        fs::remove_file(&probe)?;

        let (tx, rx) = mpsc::channel();
        let open_segment = Arc::new(Mutex::new(None));
        let inner = Arc::new(Inner {
            dir: dir.to_path_buf(),
            bytes: AtomicU64::new(bytes),
            bodies: AtomicU64::new(bodies),
            open_segment: open_segment.clone(),
            commands: Mutex::new(tx),
            appended: Notify::new(),
            bypass_until: Mutex::new(None),
        });
        let writer = Writer {
            dir: dir.to_path_buf(),
            max_bytes,
            next_seq,
            open: None,
            open_segment,
            inner: Arc::downgrade(&inner),
        };
        std::thread::Builder::new()
            .name("jarvis-spool".into())
            .spawn(move || writer.run(rx))?;
        let spool = Spool { inner };
        spool.export_gauges();
        if bodies > 0 {
            tracing::info!(bodies, bytes, dir = %dir.display(), "spool holds bodies from before; they will be stored");
        }
        Ok(spool)
    }

    /// Appends a body durably (written and synced to disk) before returning.
    pub async fn append(&self, body: &SpooledBody) -> Result<(), SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Command::Append(body.encode(), reply))
            .map_err(|_| SpoolError::Closed)?;
        answer.await.map_err(|_| SpoolError::Closed)??;
        self.inner.bodies.fetch_add(1, Ordering::SeqCst);
        metrics::counter!(names::SPOOLED).increment(1);
        self.export_gauges();
        self.inner.appended.notify_one();
        Ok(())
    }

    /// The database just failed to take a webhook: the next ones, for a short while, go straight to
    /// the spool.
    pub fn database_failed(&self) {
        *self
            .inner
            .bypass_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(tokio::time::Instant::now() + BYPASS);
    }

    /// Whether webhooks should skip the database for now (see [`Spool::database_failed`]).
    pub fn bypassing_database(&self) -> bool {
        self.inner
            .bypass_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| tokio::time::Instant::now() < until)
    }

    fn database_answered(&self) {
        *self
            .inner
            .bypass_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Bodies waiting.
    pub fn bodies(&self) -> u64 {
        self.inner.bodies.load(Ordering::SeqCst)
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::SeqCst)
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Sets the spool gauges.
    pub fn export_gauges(&self) {
        metrics::gauge!(names::SPOOL_BYTES).set(self.bytes() as f64);
        metrics::gauge!(names::SPOOL_BODIES).set(self.bodies() as f64);
    }

    async fn seal(&self) {
        let (reply, answer) = oneshot::channel();
        let sent = self
            .inner
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Command::Seal(reply));
        if sent.is_ok() {
            let _ = answer.await;
        }
    }

    /// Closed segments, oldest first.
    fn closed_segments(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        // The directory first, the open segment after: the writer names a segment open before it
        // creates the file, so a segment listed here and not open now can no longer be written.
        let listed = segments(&self.inner.dir)?;
        let open = *self
            .inner
            .open_segment
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(listed
            .into_iter()
            .filter(|(seq, _)| Some(*seq) != open)
            .collect())
    }

    /// Moves every spooled body into the store, until the spool is empty or `stop` turns true. A
    /// database error ends the pass; the next one starts again from the oldest segment.
    async fn drain(
        &self,
        target: &DrainTarget,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        loop {
            let mut closed = self.closed_segments()?;
            if closed.is_empty() {
                if self.bodies() == 0 && self.open_segment_empty()? {
                    return Ok(());
                }
                self.seal().await;
                closed = self.closed_segments()?;
                if closed.is_empty() {
                    // Nothing on disk: a count that drifted (an append whose sync failed after
                    // the write) is corrected here.
                    if segments(&self.inner.dir)?.is_empty() {
                        self.inner.bodies.store(0, Ordering::SeqCst);
                        self.export_gauges();
                    }
                    return Ok(());
                }
            }
            for (_, path) in closed {
                if *stop.borrow() {
                    return Ok(());
                }
                self.drain_segment(target, &path).await?;
            }
        }
    }

    fn open_segment_empty(&self) -> io::Result<bool> {
        let open = *self
            .inner
            .open_segment
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        Ok(match open {
            None => true,
            Some(seq) => fs::metadata(segment_path(&self.inner.dir, seq))
                .map(|m| m.len() == 0)
                .unwrap_or(true),
        })
    }

    async fn drain_segment(&self, target: &DrainTarget, path: &Path) -> anyhow::Result<()> {
        // Reading and checking a segment (megabytes of checksums) would hold up a runtime thread
        // that webhooks are answered on.
        let (size, records, skipped) = {
            let path = path.to_path_buf();
            tokio::task::spawn_blocking(move || {
                fs::read(path).map(|data| {
                    let (records, skipped) = read_records(&data);
                    (data.len() as u64, records, skipped)
                })
            })
            .await??
        };
        if skipped > 0 {
            tracing::warn!(segment = %path.display(), skipped_bytes = skipped, "spool segment has a torn or damaged record; skipped");
        }
        for chunk in records.chunks(DRAIN_CHUNK) {
            store_chunk(target, chunk).await?;
        }
        fs::remove_file(path)?;
        let count = records.len() as u64;
        let _ = self
            .inner
            .bodies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(count))
            });
        let _ = self
            .inner
            .bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(size))
            });
        metrics::counter!(names::SPOOL_DRAINED).increment(count);
        self.export_gauges();
        tracing::info!(
            bodies = count,
            remaining = self.bodies(),
            "spooled bodies stored"
        );
        Ok(())
    }

    /// Drains the spool whenever it holds something and the database answers, until `stop`.
    pub async fn run_drainer(self, target: DrainTarget, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(250);
        loop {
            if *stop.borrow() {
                return;
            }
            if self.bodies() > 0 || !self.closed_segments().map(|s| s.is_empty()).unwrap_or(true) {
                let ready = matches!(
                    tokio::time::timeout(Duration::from_secs(1), target.store.ping()).await,
                    Ok(Ok(()))
                );
                let result = if ready {
                    self.database_answered();
                    self.drain(&target, &stop).await
                } else {
                    Err(anyhow::anyhow!("the database does not answer"))
                };
                match result {
                    Ok(()) => backoff = Duration::from_millis(250),
                    Err(error) => {
                        tracing::warn!(error = %error, bodies = self.bodies(), retry_in_ms = backoff.as_millis() as u64, "spool not drained yet");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stopped(&mut stop) => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            // Woken by an append; the timer catches bodies found at start-up or left by a failed pass.
            tokio::select! {
                _ = self.inner.appended.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

/// Stores the events of spooled bodies; a body the store refuses for its content is kept as rejected.
async fn store_chunk(target: &DrainTarget, chunk: &[SpooledBody]) -> anyhow::Result<()> {
    // Parsing a chunk is CPU work: off the runtime threads that answer webhooks.
    let parsed = {
        let (parser, bodies, events) = (target.parser.clone(), chunk.to_vec(), target.events);
        tokio::task::spawn_blocking(move || {
            bodies
                .iter()
                .map(|spooled| {
                    parser
                        .parse(spooled.content_type.as_deref(), &spooled.body)
                        .map(|batch| events(&batch, spooled.received_at))
                        .map_err(|error| error.to_string())
                })
                .collect::<Vec<_>>()
        })
        .await?
    };
    let mut per_body = Vec::with_capacity(chunk.len());
    for (spooled, result) in chunk.iter().zip(parsed) {
        match result {
            Ok(events) => per_body.push(events),
            // Only bodies that parsed are spooled: a parser that changed its mind keeps it for audit.
            Err(error) => {
                let reason = format!("spooled body no longer parses: {error}");
                keep_rejected(target, spooled, reason).await?;
                per_body.push(Vec::new());
            }
        }
    }
    let all: Vec<NewEvent> = per_body.iter().flatten().cloned().collect();
    match target.store.insert_events(&all).await {
        Ok(outcome) => record_stored(target, outcome),
        Err(error) if error.is_bad_data() => {
            for (spooled, events) in chunk.iter().zip(&per_body) {
                match target.store.insert_events(events).await {
                    Ok(outcome) => record_stored(target, outcome),
                    Err(error) if error.is_bad_data() => {
                        let reason = format!("the events cannot be stored: {error}");
                        keep_rejected(target, spooled, reason).await?;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

fn record_stored(target: &DrainTarget, outcome: jarvis_store::InsertOutcome) {
    metrics::counter!(names::EVENTS_STORED).increment(outcome.stored);
    metrics::counter!(names::EVENTS_DUPLICATE).increment(outcome.duplicates);
    if outcome.stored > 0 {
        target.wake.notify_one();
    }
}

async fn keep_rejected(
    target: &DrainTarget,
    spooled: &SpooledBody,
    reason: String,
) -> anyhow::Result<()> {
    tracing::warn!(reason = %reason, "spooled body refused; kept for audit");
    target
        .store
        .insert_rejected(&RejectedWebhook {
            body: spooled.body.clone(),
            content_type: spooled.content_type.clone(),
            reason,
            received_at: spooled.received_at,
        })
        .await?;
    Ok(())
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{EXTENSION}"))
}

/// The thread that owns the open segment: appends every waiting record, syncs once for all of them
/// (concurrent webhooks share the disk sync), then answers each.
struct Writer {
    dir: PathBuf,
    max_bytes: u64,
    next_seq: u64,
    open: Option<(u64, File, u64)>,
    open_segment: Arc<Mutex<Option<u64>>>,
    inner: std::sync::Weak<Inner>,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut group = vec![first];
            group.extend(commands.try_iter());
            let Some(inner) = self.inner.upgrade() else {
                return;
            };
            let mut written = Vec::new();
            let mut failure: Option<io::Error> = None;
            for command in group {
                match command {
                    Command::Seal(reply) => {
                        // Records of this group already in the segment are synced as it closes.
                        if let Err(error) = self.close() {
                            failure.get_or_insert(error);
                        }
                        let _ = reply.send(());
                    }
                    Command::Append(record, reply) => {
                        if failure.is_some() {
                            let _ = reply.send(Err(SpoolError::Io(io::Error::other(
                                "an earlier write in this group failed",
                            ))));
                            continue;
                        }
                        let size = record.len() as u64;
                        if inner.bytes.load(Ordering::SeqCst) + size > self.max_bytes {
                            metrics::counter!(names::SPOOL_REFUSED, "reason" => "full")
                                .increment(1);
                            let _ = reply.send(Err(SpoolError::Full));
                            continue;
                        }
                        match self.write(&record) {
                            Ok(()) => {
                                inner.bytes.fetch_add(size, Ordering::SeqCst);
                                written.push(reply);
                            }
                            Err(error) => {
                                failure = Some(error);
                                let _ = reply.send(Err(SpoolError::Io(io::Error::other(
                                    "the spool write failed",
                                ))));
                            }
                        }
                    }
                }
            }
            if failure.is_none()
                && !written.is_empty()
                && let Some((_, file, _)) = &self.open
                && let Err(error) = file.sync_data()
            {
                failure = Some(error);
            }
            match failure {
                None => {
                    for reply in written {
                        let _ = reply.send(Ok(()));
                    }
                }
                Some(error) => {
                    tracing::error!(error = %error, dir = %self.dir.display(), "spool write failed");
                    metrics::counter!(names::SPOOL_REFUSED, "reason" => "error").increment(1);
                    // What was written may be torn: never append after it.
                    let _ = self.close();
                    for reply in written {
                        let _ = reply.send(Err(SpoolError::Io(io::Error::new(
                            error.kind(),
                            error.to_string(),
                        ))));
                    }
                }
            }
        }
    }

    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        if self
            .open
            .as_ref()
            .is_some_and(|(_, _, len)| *len >= SEGMENT_BYTES)
        {
            self.close()?;
        }
        if self.open.is_none() {
            let seq = self.next_seq;
            self.next_seq += 1;
            // Named open before the file exists, so the drainer never takes it for a closed one.
            *self.open_segment.lock().unwrap_or_else(|p| p.into_inner()) = Some(seq);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segment_path(&self.dir, seq))?;
            // The new file's directory entry must be durable too.
            File::open(&self.dir)?.sync_all()?;
            self.open = Some((seq, file, 0));
        }
        let (_, file, len) = self.open.as_mut().expect("opened above");
        file.write_all(record)?;
        *len += record.len() as u64;
        Ok(())
    }

    /// Syncs and closes the open segment: no record is acknowledged unsynced whichever segment it
    /// went to.
    fn close(&mut self) -> io::Result<()> {
        let synced = match self.open.take() {
            Some((_, file, _)) => file.sync_data(),
            None => Ok(()),
        };
        *self.open_segment.lock().unwrap_or_else(|p| p.into_inner()) = None;
        synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(n: usize) -> SpooledBody {
        SpooledBody {
            received_at: DateTime::from_timestamp_micros(1_700_000_000_123_456 + n as i64).unwrap(),
            content_type: Some("application/x-www-form-urlencoded".into()),
            body: format!("leads[status][0][id]={n}").into_bytes(),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut bytes = Vec::new();
        for n in 0..3 {
            bytes.extend(body(n).encode());
        }
        let (records, skipped) = read_records(&bytes);
        assert_eq!(skipped, 0);
        assert_eq!(records, vec![body(0), body(1), body(2)]);
    }

    #[test]
    fn a_torn_tail_is_skipped_at_every_cut() {
        let mut bytes = body(0).encode();
        let second = body(1).encode();
        for cut in 0..second.len() {
            let mut torn = bytes.clone();
            torn.extend_from_slice(&second[..cut]);
            let (records, skipped) = read_records(&torn);
            assert_eq!(records, vec![body(0)], "cut at {cut}");
            assert_eq!(skipped, cut);
        }
        bytes.extend(second);
        assert_eq!(read_records(&bytes).0.len(), 2);
    }

    #[test]
    fn a_damaged_record_is_skipped_and_the_next_ones_kept() {
        let mut bytes = Vec::new();
        for n in 0..3 {
            bytes.extend(body(n).encode());
        }
        let first_len = body(0).encode().len();
        // One flipped bit in the second record's body.
        let at = first_len + HEADER + 20;
        bytes[at] ^= 0x40;
        let (records, skipped) = read_records(&bytes);
        assert_eq!(records, vec![body(0), body(2)]);
        assert_eq!(skipped, body(1).encode().len());
    }

    #[tokio::test]
    async fn appends_are_durable_across_reopen_and_the_size_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let one = body(0).encode().len() as u64;
        let spool = Spool::open(dir.path(), one * 3).unwrap();
        for n in 0..3 {
            spool.append(&body(n)).await.unwrap();
        }
        assert!(matches!(
            spool.append(&body(3)).await,
            Err(SpoolError::Full)
        ));
        assert_eq!(spool.bodies(), 3);
        assert_eq!(spool.bytes(), one * 3);
        drop(spool);
        // A torn record at the tail, as a crash mid-write leaves it.
        let (_, path) = segments(dir.path()).unwrap().pop().unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&body(9).encode()[..15]).unwrap();
        drop(file);
        let reopened = Spool::open(dir.path(), one * 10).unwrap();
        assert_eq!(reopened.bodies(), 3);
        assert_eq!(inspect(dir.path()).unwrap().0, 3);
        // New appends go to a new segment, never after the torn tail.
        reopened.append(&body(4)).await.unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), 2);
        assert_eq!(inspect(dir.path()).unwrap().0, 4);
    }

    #[test]
    fn an_unwritable_directory_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-directory");
        fs::write(&file, b"x").unwrap();
        assert!(Spool::open(&file, 1024).is_err());
    }
}
