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
//!
//! The paper broker's desk lives here too (`broker`, `crate::trading`):
//! its commands are applied in transactions of their own, and the trades
//! and bars of an ingest request are the market's prints for it, in the
//! request's own transaction, so a trade and the fills it causes are
//! durable together.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use trading_market::ingest::{IngestError, IngestReceipt, IngestRequest, KEY_RETENTION_MS};
use trading_market::source::{Reason, Unhealthy, UpdateSink};

use crate::effects::{self, Effects, OUTCOME_RETENTION_MS};
use crate::engine::{Fail, WriteConn};
use crate::ledger::{BrokerJob, Ledger, TradeError};
use crate::plan::{self, Job, Work};
use crate::plan::{MAX_BATCH, MAX_PUBLISHED, QUEUE, QUEUE_WAIT, WATCH_EVERY};
use crate::recent::RecentBars;
use crate::replication::{Logged, Outcome};
use crate::Records;

mod broker;
mod health;
mod logged;
mod request;

pub use health::Health;

/// The request path's handle on the writer.
#[derive(Clone)]
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
    /// Paper broker commands (see `broker`), boxed: a command is several
    /// times the size of the other tasks.
    Broker(Box<BrokerJob>),
    /// The clock for the broker's DAY orders.
    BrokerTick(i64),
    /// Rebuild the broker's desk from the ledger if it is not there.
    BrokerRestore(oneshot::Sender<Result<(), TradeError>>),
    /// The server is stopping: leave the store clean and end.
    Close(oneshot::Sender<()>),
}

/// What the writer shares with the store's readers.
pub struct Shared {
    pub records: Arc<RwLock<Arc<Records>>>,
    pub recent: Arc<RecentBars>,
    pub sink: Arc<dyn UpdateSink>,
    /// Whether the store can be written and read, as of the writer's last
    /// look (every [`WATCH_EVERY`] at most) and its last transaction.
    pub health: Arc<Health>,
    /// The paper broker's desk, which lives with this writer.
    pub ledger: Arc<Ledger>,
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
            refused: None,
            last_look: Instant::now(),
            last_prune: Instant::now(),
            now_ms: 0,
            pending: Vec::new(),
        };
        (Writer { jobs }, worker.run(queue))
    }

    /// Queues a request and waits for its answer. Past `deadline` (the
    /// client's), a request not yet committed is not applied.
    pub async fn submit(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
        deadline: Option<Instant>,
    ) -> Result<IngestReceipt, IngestError> {
        let (reply, answer) = oneshot::channel();
        let job = Task::Direct(Job {
            request,
            key,
            now_ms,
            deadline,
            reply,
        });
        match self.jobs.send_timeout(job, QUEUE_WAIT).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                return Err(IngestError::unavailable(
                    Reason::Timeout,
                    "the store is not keeping up: the ingest queue stayed full; retry",
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

    /// Carries out a paper broker command; answered once what it changed
    /// is durable.
    pub(crate) async fn broker(
        &self,
        command: trading_broker::desk::Command,
    ) -> Result<trading_broker::desk::Answer, TradeError> {
        let (reply, answer) = oneshot::channel();
        let job = Task::Broker(Box::new(BrokerJob { command, reply }));
        match self.jobs.send_timeout(job, QUEUE_WAIT).await {
            Ok(()) => {}
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                return Err(TradeError::Unavailable(Unhealthy {
                    reason: Reason::Timeout,
                    detail: "the store is not keeping up: its writer's queue stayed full; retry"
                        .into(),
                }))
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => return Err(broker_stopped()),
        }
        answer.await.unwrap_or_else(|_| Err(broker_stopped()))
    }

    /// The broker's clock: DAY orders whose session closed end.
    pub(crate) async fn broker_tick(&self, now_ms: i64) {
        let _ = self.jobs.send(Task::BrokerTick(now_ms)).await;
    }

    /// Has the writer rebuild the broker's desk if it is not there.
    pub(crate) async fn broker_restore(&self) -> Result<(), TradeError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Task::BrokerRestore(reply))
            .await
            .map_err(|_| broker_stopped())?;
        answer.await.unwrap_or_else(|_| Err(broker_stopped()))
    }

    /// Finishes what is queued, leaves the store clean (see
    /// [`WriteConn::close`]) and ends the writer.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.jobs.send(Task::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

fn broker_stopped() -> TradeError {
    TradeError::Unavailable(Unhealthy {
        reason: Reason::Unavailable,
        detail: "the store's writer has stopped".into(),
    })
}

fn stopped() -> IngestError {
    IngestError::unavailable(Reason::Unavailable, "the store's writer has stopped")
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
    /// Set when the store is no longer the one opened (deleted, replaced,
    /// overwritten): every write is refused from then on.
    refused: Option<Unhealthy>,
    /// When the store's file was last looked at.
    last_look: Instant,
    last_prune: Instant,
    /// The newest request's clock, for expiring idempotency keys.
    now_ms: i64,
    /// The broker's records the open transaction writes (the prints of
    /// its ingest requests), published after its commit.
    pending: Vec<trading_broker::desk::Record>,
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
                Some(Task::Broker(first)) => {
                    let mut batch = vec![*first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(Task::Broker(job)) => batch.push(*job),
                            Ok(task) => {
                                held = Some(task);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.watch().await;
                    self.apply_broker(batch).await;
                }
                Some(Task::BrokerTick(now_ms)) => self.broker_tick(now_ms).await,
                Some(Task::BrokerRestore(reply)) => {
                    let _ = reply.send(self.restore_desk().await);
                }
                Some(Task::Close(done)) => {
                    if let Err(e) = self.conn.close().await {
                        eprintln!("store {}: closing: {e}", self.shown);
                    }
                    // The connection closes before the server is told it
                    // may exit.
                    drop(self);
                    let _ = done.send(());
                    return;
                }
            }
        }
    }

    /// Looks at the store: whether it is still the one opened, whether it
    /// answers, whether a write failure has passed (a small write tries),
    /// and whether another process committed (an import): then serves its
    /// symbols and gives the followed topics their bars as they are now.
    async fn watch(&mut self) {
        // Before every batch, whether the store is still the file opened
        // (a stat); every WATCH_EVERY, also whether another program wrote
        // it (a few reads, too many for every batch under back-to-back
        // ingest).
        if self.refused.is_none() {
            let thorough = self.last_look.elapsed() >= WATCH_EVERY;
            if thorough {
                self.last_look = Instant::now();
            }
            if let Err(e) = self.conn.intact(thorough).await {
                eprintln!("store {}: {e}", self.shown);
                let damaged = Unhealthy {
                    reason: e.reason,
                    detail: format!("store {}: {e}", self.shown),
                };
                self.shared.health.set_problem(Some(damaged.clone()), false);
                self.refused = Some(damaged);
            }
        }
        if self.refused.is_some() {
            return;
        }
        let changes = self.conn.changes().await;
        match &changes {
            Err(e) => self.problem(e, false),
            Ok(_) if self.shared.health.failing_writes() => {
                // Disk full, read-only, a stuck lock: clear once a write
                // goes through again.
                let probe = match self.conn.begin(false).await {
                    Ok(()) => self.conn.commit().await,
                    Err(e) => Err(e),
                };
                match probe {
                    Ok(()) => self.healthy(),
                    Err(e) => {
                        self.conn.rollback().await;
                        let e = self.conn.refine(e);
                        self.problem(&e, true);
                    }
                }
            }
            Ok(_) => self.healthy(),
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

    /// The store failed: health and readiness say so with its class (the
    /// details go to the log, once per change). `writing`: a write failed,
    /// which only a write that succeeds clears.
    fn problem(&self, e: &Fail, writing: bool) {
        let now = Unhealthy {
            reason: e.reason,
            detail: format!("store {}: {e}", self.shown),
        };
        if self.shared.health.set_problem(Some(now.clone()), writing) {
            eprintln!("{}", now.detail);
        }
    }

    fn healthy(&self) {
        if self.shared.health.set_problem(None, false) {
            eprintln!("store {}: reachable and writable again", self.shown);
        }
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
        if let Some(refused) = &self.refused {
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(IngestError::Unavailable(refused.clone())));
            }
            return;
        }
        // A client that stopped waiting before its request was taken up
        // is told (if it still listens) that nothing was applied.
        let (expired, batch): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(Job::expired);
        for job in expired {
            let _ = job.reply.send(Err(not_in_time()));
        }
        if batch.is_empty() {
            return;
        }
        // The broker sees every trade: without its desk, nothing is applied.
        if let Err(why) = self.restore_desk().await {
            let why = match why {
                TradeError::Unavailable(u) => IngestError::Unavailable(u),
                TradeError::Desk(_) => unreachable!("restoring runs no command"),
            };
            for job in batch {
                let _ = job.reply.send(Err(why.clone()));
            }
            return;
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut work = Work::default();
        self.shared.health.busy();
        let outcome = self.transaction(&batch, &mut work, &mut answers).await;
        self.shared.health.idle();
        let failed = match outcome {
            Ok(()) => None,
            Err(Cut::Expired) => {
                self.conn.rollback().await;
                Some(not_in_time())
            }
            Err(Cut::Failed(e)) => Some(self.rolled_back(e).await),
            Err(Cut::Commit(e)) => match self.conn.committed().await {
                Ok(true) => {
                    eprintln!(
                        "store {}: the reply to a commit was lost ({e}); the transaction \
                         committed",
                        self.shown
                    );
                    None
                }
                Ok(false) => Some(self.rolled_back(e).await),
                Err(unknown) => {
                    eprintln!(
                        "store {}: the reply to a commit was lost ({e}) and whether it \
                         committed is unknown: {unknown}",
                        self.shown
                    );
                    self.problem(&unknown, true);
                    Some(IngestError::Retry {
                        reason: Reason::Timeout,
                        message: "the store lost the reply to the commit, and whether the \
                                  request was applied is not known: retry with the same \
                                  Idempotency-Key, which applies it at most once"
                            .into(),
                        detail: unknown.to_string(),
                    })
                }
            },
        };
        if let Some(why) = failed {
            // Whatever the database kept, what this node keeps in memory
            // of these symbols is read again, and the broker's desk, which
            // saw the prints, is rebuilt from its ledger.
            for id in work.touched.keys() {
                self.shared.recent.written(*id, true);
            }
            self.pending.clear();
            self.shared.ledger.lost();
            for job in batch {
                let _ = job.reply.send(Err(why.clone()));
            }
            return;
        }
        self.healthy();
        self.shared
            .ledger
            .durable(std::mem::take(&mut self.pending));
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
    pub(super) async fn rolled_back(&mut self, e: Fail) -> IngestError {
        self.conn.rollback().await;
        let e = self.conn.refine(e);
        let why = format!("the store could not apply the request: {e}");
        eprintln!("store {}: {why}", self.shown);
        if e.reason != Reason::Unavailable {
            // Disk full, read-only, damaged, timed out: probes say so
            // until a write goes through again.
            self.problem(&e, true);
        }
        IngestError::unavailable(e.reason, why)
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
    ) -> Result<(), Cut> {
        self.conn.begin(false).await.map_err(Cut::Failed)?;
        let mut now_ms = self.now_ms;
        for job in batch {
            now_ms = now_ms.max(job.now_ms);
            let answer = self
                .in_savepoint(&job.request, &job.key, job.now_ms, work)
                .await
                .map_err(Cut::Failed)?;
            answers.push(answer);
        }
        self.write_pending().await.map_err(Cut::Failed)?;
        // A client that gave up meanwhile was told its request timed out:
        // it must not be applied now, unseen. (The others are told to
        // retry; their keys make that safe.)
        if batch.iter().any(Job::expired) {
            return Err(Cut::Expired);
        }
        self.conn.commit().await.map_err(Cut::Commit)?;
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

/// Why a transaction did not commit.
enum Cut {
    /// A statement failed; nothing was committed.
    Failed(Fail),
    /// A client stopped waiting before the commit; rolled back.
    Expired,
    /// The commit itself failed: it may have committed all the same
    /// ([`WriteConn::committed`] finds out).
    Commit(Fail),
}

/// What a request that was not committed in time is told.
fn not_in_time() -> IngestError {
    IngestError::Retry {
        reason: Reason::Timeout,
        message: "the store did not apply the request within the request timeout; nothing of \
                  it was applied: retry"
            .into(),
        detail: "the request's deadline passed before its commit".into(),
    }
}
