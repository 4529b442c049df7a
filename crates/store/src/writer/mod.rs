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

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use trading_market::ingest::{IngestError, IngestReceipt, IngestRequest, KEY_RETENTION_MS};
use trading_market::source::UpdateSink;

use crate::effects::{self, Effects, OUTCOME_RETENTION_MS};
use crate::engine::{Fail, WriteConn};
use crate::plan::{self, Job, Work};
use crate::plan::{MAX_BATCH, MAX_PUBLISHED, QUEUE, QUEUE_WAIT, WATCH_EVERY};
use crate::recent::RecentBars;
use crate::replication::{Logged, Outcome};
use crate::Records;

mod logged;
mod request;

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

/// The writer loop's state (its methods are spread over this module,
/// `request` and `logged`).
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
    pub(super) async fn refresh(&mut self) {
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
    pub(super) async fn rolled_back(&mut self, e: Fail) -> String {
        self.conn.rollback().await;
        let why = format!("the store could not apply the request: {e}");
        eprintln!("store {}: {why}", self.shown);
        why
    }

    /// After a commit, this node's or another's: serve what it changed (new
    /// bases, kept bars dropped), then publish its bars.
    pub(super) async fn take_in(&mut self, effects: &Effects) {
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

    /// The bars a transaction changed, into `effects`: every bar from the
    /// newest before it on, in order, for each resolution of each symbol
    /// it touched. Read inside the transaction or after its commit.
    pub(super) async fn changed_bars(
        &mut self,
        work: &Work,
        effects: &mut Effects,
    ) -> Result<(), Fail> {
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
}
