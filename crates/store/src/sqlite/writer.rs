//! The server's one writer: a thread that owns the write connection.
//!
//! Ingest requests queue here (bounded: a full queue makes the request
//! wait, not the server grow). The thread takes every request waiting and
//! applies them in one transaction, each inside a savepoint so one bad
//! request does not undo the others; one sync to disk then makes all of
//! them durable. Only after that does it publish the changed bars (so a
//! subscriber never sees a bar that a crash could take back) and answer.
//! Everything it publishes, it publishes in commit order, from this one
//! thread.
//!
//! Between requests it watches for commits by other processes (an import)
//! and refreshes the symbols and the followed topics' live bars.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::tables;
use crate::chain::{served, Dirty};
use crate::plan::{self, BaseBars, Target, Touched, Work};
use crate::recent::RecentBars;
use crate::Records;
use trading_market::calendar::Resolution;
use trading_market::ingest::{IngestError, IngestReceipt, IngestRequest, KEY_RETENTION_MS};
use trading_market::source::UpdateSink;

use crate::plan::{Job, MAX_BATCH, MAX_PUBLISHED, QUEUE, QUEUE_WAIT, WATCH_EVERY};

pub struct Writer {
    jobs: SyncSender<Job>,
    /// Tells the checkpoint thread to end with the writer.
    stop: Arc<AtomicBool>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // The writer thread ends when `jobs` is dropped right after this.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Writer {
    /// Starts the writer thread on `conn` and the checkpoint thread on
    /// `checkpoints`.
    pub fn start(
        conn: Connection,
        checkpoints: Connection,
        path: PathBuf,
        records: Arc<RwLock<Arc<Records>>>,
        recent: Arc<RecentBars>,
        sink: Arc<dyn UpdateSink>,
    ) -> Writer {
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        let current = Arc::clone(&records.read().unwrap_or_else(PoisonError::into_inner));
        let mut worker = Worker {
            conn,
            path,
            shared: records,
            records: current,
            recent,
            sink,
            data_version: 0,
            last_prune: Instant::now(),
            now_ms: 0,
            gen: 0,
        };
        worker.data_version = worker.data_version().unwrap_or(0);
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || worker.run(queue))
            .expect("spawn the store writer thread");
        let stop = Arc::new(AtomicBool::new(false));
        checkpoint_in_background(checkpoints, Arc::clone(&stop));
        Writer { jobs, stop }
    }

    /// Queues a request and waits for its answer.
    pub async fn submit(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
    ) -> Result<IngestReceipt, IngestError> {
        let (reply, answer) = oneshot::channel();
        let mut job = Job {
            request,
            key,
            now_ms,
            reply,
        };
        let deadline = Instant::now() + QUEUE_WAIT;
        loop {
            match self.jobs.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    job = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(TrySendError::Full(_)) => {
                    return Err(IngestError::Unavailable(
                        "the store is not keeping up: the ingest queue stayed full; retry".into(),
                    ))
                }
                Err(TrySendError::Disconnected(_)) => return Err(stopped()),
            }
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// How often the log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copies the write-ahead log into the database file now and then, on a
/// connection and thread of its own, so that the writer's commits only ever
/// append to the log. A passive checkpoint never blocks the writer; the log
/// starts over once everything in it is in the file. Runs until `stop`.
fn checkpoint_in_background(conn: Connection, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    eprintln!("store checkpoint: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("cannot start the store checkpoint thread: {e}");
    }
}

fn stopped() -> IngestError {
    IngestError::Unavailable("the store's writer has stopped".into())
}

struct Worker {
    conn: Connection,
    path: PathBuf,
    /// What the request path reads; replaced after a commit changes symbols.
    shared: Arc<RwLock<Arc<Records>>>,
    records: Arc<Records>,
    recent: Arc<RecentBars>,
    sink: Arc<dyn UpdateSink>,
    /// `PRAGMA data_version` when last looked: it changes when another
    /// connection commits.
    data_version: i64,
    last_prune: Instant,
    /// The newest request's clock, for expiring idempotency keys.
    now_ms: i64,
    /// The write number of the transaction in progress (`tables::put`).
    gen: i64,
}

impl Worker {
    fn run(mut self, queue: Receiver<Job>) {
        loop {
            match queue.recv_timeout(WATCH_EVERY) {
                Ok(first) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    self.watch();
                    self.apply(batch);
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.watch();
                    self.prune();
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn data_version(&self) -> rusqlite::Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0))
    }

    /// Another process committed (an import): serve its symbols, and give
    /// the followed topics their bars as they are now.
    fn watch(&mut self) {
        let Ok(version) = self.data_version() else {
            return;
        };
        if version == self.data_version {
            return;
        }
        self.data_version = version;
        self.recent.external_change();
        match tables::load_symbols(&self.conn) {
            Ok((records, problems)) => {
                for problem in problems {
                    eprintln!("store {}: {problem}", self.path.display());
                }
                if let Ok(records) = Records::new(records) {
                    self.set_records(records);
                }
            }
            Err(e) => eprintln!("store {}: cannot reload symbols: {e}", self.path.display()),
        }
        for (ticker, res) in self.sink.followed() {
            let Some(record) = self.records.lookup(&ticker) else {
                continue;
            };
            if record.base.is_some_and(|base| res >= base) {
                if let Ok(Some(bar)) = tables::latest_bar(&self.conn, record.id, res) {
                    self.sink.publish(&record.info.ticker, res, bar);
                }
            }
        }
    }

    fn set_records(&mut self, records: Records) {
        let records = Arc::new(records);
        *self.shared.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&records);
        self.records = records;
    }

    /// Forgets idempotency keys older than their retention, now and then.
    fn prune(&mut self) {
        if self.last_prune.elapsed() < Duration::from_secs(600) || self.now_ms == 0 {
            return;
        }
        self.last_prune = Instant::now();
        let _ = tables::prune_keys(&self.conn, self.now_ms - KEY_RETENTION_MS);
    }

    fn apply(&mut self, batch: Vec<Job>) {
        let mut answers = Vec::with_capacity(batch.len());
        let mut work = Work::default();
        let outcome = self.transaction(&batch, &mut work, &mut answers);
        if let Err(e) = outcome {
            let _ = self.conn.execute_batch("ROLLBACK");
            let why = format!("the store could not apply the request: {e}");
            eprintln!("store {}: {why}", self.path.display());
            for job in batch {
                let _ = job.reply.send(Err(IngestError::Unavailable(why.clone())));
            }
            return;
        }
        if !work.new_bases.is_empty() {
            self.adopt_bases(&work.new_bases);
        }
        // Before anyone hears of the write: kept bars it changed go.
        for id in work.touched.keys() {
            self.recent.written(*id, work.amended.contains(id));
        }
        self.publish(&work);
        for (job, answer) in batch.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
    }

    /// Applies every job in one transaction; `answers` gets one per job.
    /// An error here is the store's, and undoes the whole transaction.
    fn transaction(
        &mut self,
        batch: &[Job],
        work: &mut Work,
        answers: &mut Vec<Result<IngestReceipt, IngestError>>,
    ) -> rusqlite::Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        self.gen = tables::next_gen(&self.conn)?;
        for job in batch {
            self.now_ms = self.now_ms.max(job.now_ms);
            self.conn.execute_batch("SAVEPOINT job")?;
            let bases_before = work.new_bases.clone();
            match self.job(job, work)? {
                Ok(receipt) => {
                    self.conn.execute_batch("RELEASE job")?;
                    answers.push(Ok(receipt));
                }
                Err(e) => {
                    self.conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
                    work.new_bases = bases_before;
                    answers.push(Err(e));
                }
            }
        }
        self.conn.execute_batch("COMMIT")
    }

    /// One request: its key, its validation, its writes.
    fn job(
        &self,
        job: &Job,
        work: &mut Work,
    ) -> rusqlite::Result<Result<IngestReceipt, IngestError>> {
        let endpoint = job.request.endpoint();
        let fingerprint = job.request.fingerprint();
        if let Some(key) = &job.key {
            if let Some((stored, applied, created)) = tables::find_key(&self.conn, endpoint, key)? {
                if created >= job.now_ms - KEY_RETENTION_MS {
                    return Ok(plan::replay(key, endpoint, fingerprint, (stored, applied)));
                }
            }
        }
        let planned = match &job.request {
            IngestRequest::Trades(trades) => {
                match plan::trades(&self.records, trades, job.now_ms, work) {
                    Ok((targets, placed)) => {
                        let mut stored = HashMap::new();
                        for (id, base, time) in plan::bars_to_read(&placed) {
                            if let Some(bar) = tables::get(&self.conn, id, base, time)? {
                                stored.insert((id, time), bar);
                            }
                        }
                        plan::fold(placed, trades, &stored).map(|bars| (targets, bars))
                    }
                    Err(e) => Err(e),
                }
            }
            IngestRequest::Bars { resolution, bars } => {
                plan::bars(&self.records, *resolution, bars, job.now_ms, work)
            }
        };
        let (targets, bars) = match planned {
            Ok(planned) => planned,
            Err(e) => return Ok(Err(e)),
        };
        self.write(&targets, bars, work)?;
        let applied = job.request.len();
        if let Some(key) = &job.key {
            tables::insert_key(
                &self.conn,
                endpoint,
                key,
                fingerprint,
                applied as i64,
                job.now_ms,
            )?;
        }
        Ok(Ok(IngestReceipt { applied }))
    }

    /// Stores base bars and rebuilds the coarser ones over them.
    fn write(&self, targets: &[Target], bars: BaseBars, work: &mut Work) -> rusqlite::Result<()> {
        let gen = self.gen;
        for Target {
            record, base, new, ..
        } in targets
        {
            if let Entry::Vacant(slot) = work.touched.entry(record.id) {
                let mut before = Vec::new();
                for res in served(*base) {
                    let newest = tables::latest(&self.conn, record.id, res, 1)?;
                    before.push((res, newest.first().map(|b| b.time)));
                }
                slot.insert(Touched {
                    record: record.clone(),
                    before,
                });
            }
            if *new {
                tables::set_base(&self.conn, record.id, *base)?;
                work.new_bases.insert(record.id, *base);
            }
        }
        let mut dirty: BTreeMap<i64, Dirty> = BTreeMap::new();
        for ((id, _), (base, bar)) in &bars {
            tables::overwrite(&self.conn, *id, *base, bar, gen)?;
            dirty.entry(*id).or_default().add(bar.time);
            work.note_written(*id, *base, bar.time);
        }
        for Target { record, base, .. } in targets {
            if let Some(dirty) = dirty.get(&record.id) {
                tables::rebuild(&self.conn, record.id, &record.calendar, *base, dirty, gen)?;
            }
        }
        Ok(())
    }

    /// Symbols that got their first bars now serve their resolutions.
    fn adopt_bases(&mut self, bases: &HashMap<i64, Resolution>) {
        if let Some(records) = plan::adopt_bases(&self.records, bases) {
            self.set_records(records);
        }
    }

    /// After the commit: every bar from the newest before it on, in order,
    /// for each resolution of each symbol the transaction touched.
    fn publish(&self, work: &Work) {
        for (id, ticker, res, before) in work.to_publish() {
            let Ok(bars) = tables::since(
                &self.conn,
                id,
                res,
                before.unwrap_or(i64::MIN),
                MAX_PUBLISHED,
            ) else {
                continue;
            };
            for bar in bars {
                self.sink.publish(ticker, res, bar.to_bar());
            }
        }
    }
}
