//! A serving store's one writer, for every engine: a task that owns the
//! engine's write connection ([`WriteConn`]).
//!
//! Ingest requests queue here (bounded: a full queue makes the request
//! wait, not the server grow). The writer takes every request waiting and
//! applies them in one transaction, each inside a savepoint so one bad
//! request does not undo the others; one commit (one sync to disk) then
//! makes all of them durable. Only after that does it publish the changed
//! bars, in commit order (so a subscriber never sees a bar that a crash
//! could take back), and answer.
//!
//! Entries of a shared log (`replication`) come here too, in log order:
//! those the store has applied already (another node was first) are
//! answered and published from the store's record of them; the rest are
//! applied in one transaction that also records what they answered and
//! changed, and how far the log is applied.
//!
//! Between requests the writer looks for commits by other processes (an
//! import): the engine's change counter. Then it reloads the symbols and
//! the followed topics' live bars.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use trading_market::calendar::Resolution;
use trading_market::ingest::{IngestError, IngestReceipt, IngestRequest, KEY_RETENTION_MS};
use trading_market::source::UpdateSink;

use crate::chain::{served, Dirty};
use crate::effects::{self, Effects, OUTCOME_RETENTION_MS};
use crate::engine::{Fail, WriteConn};
use crate::plan::{self, BaseBars, Job, Target, Touched, Work};
use crate::plan::{MAX_BATCH, MAX_PUBLISHED, QUEUE, QUEUE_WAIT, WATCH_EVERY};
use crate::recent::RecentBars;
use crate::replication::{Command, Logged, Outcome};
use crate::Records;

/// The request path's handle on the writer.
pub struct Writer {
    jobs: mpsc::Sender<Task>,
}

/// What the writer is asked to do.
enum Task {
    /// An ingest request of this node (without a bus).
    Direct(Job),
    /// Entries of a shared log, in order (see `replication`).
    Logged {
        log: String,
        entries: Vec<Logged>,
        reply: oneshot::Sender<Result<Vec<Outcome>, String>>,
    },
}

/// What the writer shares with the store's readers.
pub struct Shared {
    pub records: Arc<RwLock<Arc<Records>>>,
    pub recent: Arc<RecentBars>,
    pub sink: Arc<dyn UpdateSink>,
    /// Why the store cannot be written or read, as of the writer's last
    /// look (every [`WATCH_EVERY`] at most); None while it can.
    pub problem: Arc<Mutex<Option<String>>>,
}

impl Writer {
    /// The writer loop on `conn`, to be run where the engine runs its
    /// writes, and the handle that feeds it. `shown` names the store in
    /// log lines; `changes` is the engine's change counter as the records
    /// were loaded.
    pub fn new<W: WriteConn>(
        conn: W,
        shown: String,
        changes: i64,
        shared: Shared,
    ) -> (
        Writer,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let records = Arc::clone(
            &shared
                .records
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let worker = Worker {
            conn,
            shown,
            records,
            shared,
            changes,
            last_prune: Instant::now(),
            now_ms: 0,
        };
        (Writer { jobs }, worker.run(queue))
    }

    /// Queues a request and waits for its answer.
    pub async fn submit(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
    ) -> Result<IngestReceipt, IngestError> {
        let (reply, answer) = oneshot::channel();
        let job = Task::Direct(Job {
            request,
            key,
            now_ms,
            reply,
        });
        match self.jobs.send_timeout(job, QUEUE_WAIT).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                return Err(IngestError::Unavailable(
                    "the store is not keeping up: the ingest queue stayed full; retry".into(),
                ))
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(stopped()),
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Applies log entries (or replays those another node applied first)
    /// and publishes what they changed.
    pub async fn apply_logged(
        &self,
        log: &str,
        entries: Vec<Logged>,
    ) -> Result<Vec<Outcome>, String> {
        let (reply, answer) = oneshot::channel();
        let task = Task::Logged {
            log: log.to_string(),
            entries,
            reply,
        };
        self.jobs
            .send(task)
            .await
            .map_err(|_| stopped().to_string())?;
        answer.await.unwrap_or_else(|_| Err(stopped().to_string()))
    }
}

fn stopped() -> IngestError {
    IngestError::Unavailable("the store's writer has stopped".into())
}

struct Worker<W> {
    conn: W,
    /// The store, for log lines (without a password).
    shown: String,
    /// The symbols as the writer sees them (`shared.records` is what the
    /// request path reads; replaced after a commit changes symbols).
    records: Arc<Records>,
    shared: Shared,
    /// The engine's change counter when last looked.
    changes: i64,
    last_prune: Instant,
    /// The newest request's clock, for expiring idempotency keys.
    now_ms: i64,
}

impl<W: WriteConn> Worker<W> {
    async fn run(mut self, mut queue: mpsc::Receiver<Task>) {
        // A logged task met while gathering direct jobs: next.
        let mut held: Option<Task> = None;
        loop {
            let task = match held.take() {
                Some(task) => Some(task),
                None => match tokio::time::timeout(WATCH_EVERY, queue.recv()).await {
                    Ok(task) => task,
                    Err(_) => {
                        self.watch().await;
                        self.prune().await;
                        continue;
                    }
                },
            };
            match task {
                None => return,
                Some(Task::Direct(first)) => {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(Task::Direct(job)) => batch.push(job),
                            Ok(task) => {
                                held = Some(task);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.watch().await;
                    self.apply(batch).await;
                }
                Some(Task::Logged {
                    log,
                    entries,
                    reply,
                }) => {
                    self.watch().await;
                    let _ = reply.send(self.apply_logged(&log, &entries).await);
                }
            }
        }
    }

    /// Another process committed (an import): serve its symbols, and give
    /// the followed topics their bars as they are now. The store's health
    /// follows what the look found.
    async fn watch(&mut self) {
        let changes = self.conn.changes().await;
        let problem = changes
            .as_ref()
            .err()
            .map(|e| format!("store {}: {e}", self.shown));
        {
            let mut kept = self
                .shared
                .problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // The details go to the log, once per change; health and
            // readiness say only that the store is unavailable.
            match (&*kept, &problem) {
                (_, Some(now)) if kept.as_ref() != Some(now) => eprintln!("{now}"),
                (Some(_), None) => eprintln!("store {}: reachable again", self.shown),
                _ => {}
            }
            *kept = problem;
        }
        let Ok(changes) = changes else {
            return;
        };
        if changes == self.changes {
            return;
        }
        self.changes = changes;
        self.refresh().await;
    }

    /// Serves what is in the store now: its symbols, every kept bar read
    /// again, and the followed topics' newest bars.
    async fn refresh(&mut self) {
        self.shared.recent.external_change();
        match self.conn.load_symbols().await {
            Ok((records, problems)) => {
                for problem in problems {
                    eprintln!("store {}: {problem}", self.shown);
                }
                if let Ok(records) = Records::new(records) {
                    self.set_records(records);
                }
            }
            Err(e) => eprintln!("store {}: cannot reload symbols: {e}", self.shown),
        }
        for (ticker, res) in self.shared.sink.followed() {
            let Some(record) = self.records.lookup(&ticker) else {
                continue;
            };
            if record.base.is_some_and(|base| res >= base) {
                if let Ok(Some(bar)) = self.conn.latest_bar(record.id, res).await {
                    self.shared.sink.publish(&record.info.ticker, res, bar);
                }
            }
        }
    }

    fn set_records(&mut self, records: Records) {
        let records = Arc::new(records);
        *self
            .shared
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&records);
        self.records = records;
    }

    /// Forgets idempotency keys and recorded outcomes older than their
    /// retention, now and then.
    async fn prune(&mut self) {
        if self.last_prune.elapsed() < Duration::from_secs(600) || self.now_ms == 0 {
            return;
        }
        self.last_prune = Instant::now();
        self.conn
            .prune(
                self.now_ms - KEY_RETENTION_MS,
                self.now_ms - OUTCOME_RETENTION_MS,
            )
            .await;
    }

    async fn apply(&mut self, batch: Vec<Job>) {
        let mut answers = Vec::with_capacity(batch.len());
        let mut work = Work::default();
        let outcome = self.transaction(&batch, &mut work, &mut answers).await;
        if let Err(e) = outcome {
            let why = self.rolled_back(e).await;
            for job in batch {
                let _ = job.reply.send(Err(IngestError::Unavailable(why.clone())));
            }
            return;
        }
        let mut effects = effects::effects_of(&work);
        // Committed: a failed read of what changed costs its live updates,
        // never the write (the next look publishes the newest bars).
        let _ = self.changed_bars(&work, &mut effects).await;
        self.take_in(&effects).await;
        for (job, answer) in batch.into_iter().zip(answers) {
            let _ = job.reply.send(answer);
        }
    }

    /// Ends a failed transaction; the reason, as clients are told.
    async fn rolled_back(&mut self, e: Fail) -> String {
        self.conn.rollback().await;
        let why = format!("the store could not apply the request: {e}");
        eprintln!("store {}: {why}", self.shown);
        why
    }

    /// After a commit, this node's or another's: serve what it changed (new
    /// bases, kept bars dropped), then publish its bars.
    async fn take_in(&mut self, effects: &Effects) {
        let bases = effects.new_bases();
        if !bases.is_empty() {
            if bases
                .keys()
                .all(|id| self.records.iter().any(|r| r.id == *id))
            {
                if let Some(records) = plan::adopt_bases(&self.records, &bases) {
                    self.set_records(records);
                }
            } else {
                // A symbol registered since this node last looked.
                self.refresh().await;
            }
        }
        // Before anyone hears of the write: kept bars it changed go.
        for (id, amended) in &effects.touched {
            self.shared.recent.written(*id, *amended);
        }
        for (ticker, res, bar) in effects.bars() {
            self.shared.sink.publish(ticker, res, bar);
        }
    }

    /// Applies every job in one transaction; `answers` gets one per job.
    /// An error here is the store's, and undoes the whole transaction.
    async fn transaction(
        &mut self,
        batch: &[Job],
        work: &mut Work,
        answers: &mut Vec<Result<IngestReceipt, IngestError>>,
    ) -> Result<(), Fail> {
        self.conn.begin(false).await?;
        let mut now_ms = self.now_ms;
        for job in batch {
            now_ms = now_ms.max(job.now_ms);
            let answer = self
                .in_savepoint(&job.request, &job.key, job.now_ms, work)
                .await?;
            answers.push(answer);
        }
        self.conn.commit().await?;
        self.now_ms = now_ms;
        Ok(())
    }

    /// Log entries: those the store has applied already are replayed from
    /// its record; the rest are applied in one transaction that also
    /// records what they answered and changed, and how far the log is
    /// applied. Then this node takes in every effect, in log order.
    async fn apply_logged(
        &mut self,
        log: &str,
        entries: &[Logged],
    ) -> Result<Vec<Outcome>, String> {
        let mut work = Work::default();
        match self.logged_transaction(log, entries, &mut work).await {
            Ok((outcomes, effects)) => {
                for effects in effects {
                    match effects {
                        Some(effects) => self.take_in(&effects).await,
                        None => self.refresh().await,
                    }
                }
                Ok(outcomes)
            }
            Err(e) => Err(self.rolled_back(e).await),
        }
    }

    /// The outcome of every entry, and the effects to take in, in order
    /// (None: applied by another node so long ago that its record is gone).
    async fn logged_transaction(
        &mut self,
        log: &str,
        entries: &[Logged],
        work: &mut Work,
    ) -> Result<(Vec<Outcome>, Vec<Option<Effects>>), Fail> {
        // The entries are durable in the bus already, and the position
        // commits with what they wrote, so a commit the store loses in a
        // crash is applied again from the bus, exactly once.
        self.conn.begin(true).await?;
        let position = self.conn.position(log).await?;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut taken = Vec::new();
        let (done, fresh): (Vec<&Logged>, Vec<&Logged>) =
            entries.iter().partition(|e| e.seq <= position);
        if let (Some(first), Some(last)) = (done.first(), done.last()) {
            let rows = self.conn.recorded(log, first.seq, last.seq).await?;
            let mut recorded = effects::read_rows(rows)?;
            let mut forgotten = false;
            for entry in &done {
                match recorded.remove(&entry.seq) {
                    Some(r) => {
                        outcomes.push(Outcome {
                            seq: entry.seq,
                            fingerprint: r.fingerprint,
                            result: r.result,
                        });
                        if let Some(effects) = r.effects {
                            taken.push(Some(effects));
                        }
                    }
                    None => {
                        outcomes.push(Outcome {
                            seq: entry.seq,
                            fingerprint: 0,
                            result: Err(IngestError::Unavailable(format!(
                                "log entry {} was applied by another node; its outcome is no \
                                 longer kept",
                                entry.seq
                            ))),
                        });
                        forgotten = true;
                    }
                }
            }
            if forgotten {
                taken.push(None);
            }
        }
        let Some(first) = fresh.first() else {
            self.conn.commit().await?;
            return Ok((outcomes, taken));
        };
        if first.prev != position {
            return Err(Fail(format!(
                "log {log}: entry {} follows entry {}, but the store has applied up to {position}",
                first.seq, first.prev
            )));
        }
        let mut now_ms = self.now_ms;
        let mut applied = Vec::with_capacity(fresh.len());
        for entry in &fresh {
            let (fingerprint, result) = match &entry.command {
                Ok(Command::Ingest(s)) => {
                    now_ms = now_ms.max(s.accepted_ms);
                    let result = self
                        .in_savepoint(&s.request, &s.key, s.accepted_ms, work)
                        .await?;
                    (s.request.fingerprint(), result)
                }
                Err(why) => (
                    0,
                    Err(IngestError::Invalid(format!(
                        "log entry {}: {why}",
                        entry.seq
                    ))),
                ),
            };
            applied.push((entry.seq, fingerprint, result));
        }
        let mut effects = effects::effects_of(work);
        self.changed_bars(work, &mut effects).await?;
        let rows = effects::rows_of(&applied, &effects)?;
        self.conn.record(log, &rows, now_ms).await?;
        let last = applied.last().map_or(position, |a| a.0);
        self.conn.set_position(log, last).await?;
        self.conn.commit().await?;
        self.now_ms = now_ms;
        outcomes.extend(
            applied
                .into_iter()
                .map(|(seq, fingerprint, result)| Outcome {
                    seq,
                    fingerprint,
                    result,
                }),
        );
        taken.push(Some(effects));
        Ok((outcomes, taken))
    }

    /// The bars a transaction changed, into `effects`: every bar from the
    /// newest before it on, in order, for each resolution of each symbol
    /// it touched. Read inside the transaction or after its commit.
    async fn changed_bars(&mut self, work: &Work, effects: &mut Effects) -> Result<(), Fail> {
        for (id, ticker, res, before) in work.to_publish() {
            let bars = self
                .conn
                .since(id, res, before.unwrap_or(i64::MIN), MAX_PUBLISHED)
                .await?;
            for bar in bars {
                effects.publish(ticker, res, &bar.to_bar());
            }
        }
        Ok(())
    }

    /// One request inside a savepoint, so refusing it undoes only its
    /// writes.
    async fn in_savepoint(
        &mut self,
        request: &IngestRequest,
        key: &Option<String>,
        now_ms: i64,
        work: &mut Work,
    ) -> Result<Result<IngestReceipt, IngestError>, Fail> {
        self.conn.savepoint().await?;
        let bases_before = work.new_bases.clone();
        let answer = self.job(request, key, now_ms, work).await?;
        if answer.is_ok() {
            self.conn.release().await?;
        } else {
            self.conn.rollback_to_savepoint().await?;
            work.new_bases = bases_before;
        }
        Ok(answer)
    }

    /// One request: its key, its validation, its writes.
    async fn job(
        &mut self,
        request: &IngestRequest,
        key: &Option<String>,
        now_ms: i64,
        work: &mut Work,
    ) -> Result<Result<IngestReceipt, IngestError>, Fail> {
        let endpoint = request.endpoint();
        let fingerprint = request.fingerprint();
        if let Some(key) = key {
            if let Some((stored, applied, created)) = self.conn.find_key(endpoint, key).await? {
                if created >= now_ms - KEY_RETENTION_MS {
                    return Ok(plan::replay(key, endpoint, fingerprint, (stored, applied)));
                }
            }
        }
        let records = Arc::clone(&self.records);
        let planned = match request {
            IngestRequest::Trades(trades) => match plan::trades(&records, trades, now_ms, work) {
                Ok((targets, placed)) => {
                    // Every bar the trades land in, read at once.
                    let stored = self.conn.get_many(&plan::bars_to_read(&placed)).await?;
                    plan::fold(placed, trades, &stored).map(|bars| (targets, bars))
                }
                Err(e) => Err(e),
            },
            IngestRequest::Bars { resolution, bars } => {
                plan::bars(&records, *resolution, bars, now_ms, work)
            }
        };
        let (targets, bars) = match planned {
            Ok(planned) => planned,
            Err(e) => return Ok(Err(e)),
        };
        self.write(&targets, bars, work).await?;
        let applied = request.len();
        if let Some(key) = key {
            self.conn
                .insert_key(endpoint, key, fingerprint, applied as i64, now_ms)
                .await?;
        }
        Ok(Ok(IngestReceipt { applied }))
    }

    /// Stores base bars and rebuilds the coarser ones over them.
    async fn write(
        &mut self,
        targets: &[Target],
        bars: BaseBars,
        work: &mut Work,
    ) -> Result<(), Fail> {
        for Target {
            record, base, new, ..
        } in targets
        {
            if let Entry::Vacant(slot) = work.touched.entry(record.id) {
                let resolutions: Vec<Resolution> = served(*base).collect();
                let before = self.conn.newest_times(record.id, &resolutions).await?;
                slot.insert(Touched {
                    record: record.clone(),
                    before,
                });
            }
            if *new {
                self.conn.set_base(record.id, *base).await?;
                work.new_bases.insert(record.id, *base);
            }
        }
        // Grouped by symbol (and so by base), in time order.
        let mut grouped: BTreeMap<i64, (Resolution, Vec<_>)> = BTreeMap::new();
        for ((id, _), (base, bar)) in bars {
            work.note_written(id, base, bar.time);
            grouped.entry(id).or_insert((base, Vec::new())).1.push(bar);
        }
        let mut dirty: HashMap<i64, Dirty> = HashMap::new();
        for (id, (base, bars)) in &grouped {
            self.conn.write_many(*id, *base, bars).await?;
            let d = dirty.entry(*id).or_default();
            for bar in bars {
                d.add(bar.time);
            }
        }
        for Target { record, base, .. } in targets {
            if let Some(dirty) = dirty.get(&record.id) {
                self.conn
                    .rebuild(record.id, &record.calendar, *base, dirty)
                    .await?;
            }
        }
        Ok(())
    }
}
