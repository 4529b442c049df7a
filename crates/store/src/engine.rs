//! What differs between the stores, and only that: an engine's reads
//! ([`Engine`]) and its writer's connection ([`WriteConn`]). The rest of a
//! store is written once over these two traits: serving reads with the
//! newest bars kept in memory (`served`), the one writer loop that plans,
//! batches, writes, publishes and answers (`writer`), and replication
//! (`replication`). SQLite (`sqlite`) and PostgreSQL (`postgres`) each keep
//! their SQL and their connection handling.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage, Reason};

use crate::chain::Dirty;
use crate::{StoredBar, SymbolRecord};

/// Why an engine could not do something: the class clients are told
/// (disk full, read-only, ...) and the database's or the file's own words,
/// for the log (never shown to clients as they are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fail {
    pub reason: Reason,
    pub detail: String,
}

impl Fail {
    /// A failure of no particular class: the store is unavailable.
    pub fn new(detail: impl Into<String>) -> Fail {
        Fail::of(Reason::Unavailable, detail)
    }

    pub fn of(reason: Reason, detail: impl Into<String>) -> Fail {
        Fail {
            reason,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

pub type Result<T> = std::result::Result<T, Fail>;

/// A future the writer loop is, to be run where the engine's writes
/// belong (a runtime of the engine's, or a thread of its own).
pub type WriterTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// One entry's outcome as a store records it: (seq, request fingerprint,
/// its answer as JSON, and for the last entry of a transaction what the
/// transaction changed, as JSON).
pub type OutcomeRow = (u64, i64, String, Option<String>);

/// An engine's read side and what it runs its writer on. Reads may run on
/// any request worker, many at once.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    type Writer: WriteConn;

    /// `sqlite` or `postgres`, as the datafeed health check reports it.
    fn kind(&self) -> &'static str;

    /// The store as messages show it: a path, or `postgres://USER@HOST/DB`
    /// (never a password).
    fn describe(&self) -> String;

    /// The store's identity, made when it was created (see
    /// `replication::Applier::market`).
    fn market(&self) -> &str;

    /// Opens the connection the writer owns (at start-up: it may block).
    fn open_writer(&self) -> Result<Self::Writer>;

    /// Runs the writer loop where this engine's writes belong.
    fn spawn_writer(&self, writer: WriterTask);

    /// The server is stopping: let go of every read connection (no reads
    /// come any more); the writer closes next.
    fn close(&self) {}

    /// The writer has closed too: whatever the engine keeps beside the
    /// store only while it is open can go.
    fn closed(&self) {}

    /// A `getBars` page of one series.
    async fn page(&self, id: i64, res: Resolution, query: &BarQuery) -> Result<BarsPage>;

    /// Up to `limit` bars after `after` (oldest first).
    async fn since(
        &self,
        id: i64,
        res: Resolution,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>>;

    /// The newest `n` bars, newest first.
    async fn latest(&self, id: i64, res: Resolution, n: usize) -> Result<Vec<StoredBar>>;

    /// The newest bar, as served.
    async fn latest_bar(&self, id: i64, res: Resolution) -> Result<Option<Bar>>;

    /// The log incarnation the store follows, if it follows one.
    async fn followed(&self) -> Result<Option<String>>;

    /// Records that the store follows `log`.
    async fn follow(&self, log: &str) -> Result<()>;

    /// How far `log` has been applied (0: not at all).
    async fn position(&self, log: &str) -> Result<u64>;
}

/// The writer's own connection: one transaction at a time, with a
/// savepoint per request inside it. Whatever fails is rolled back by the
/// writer loop, which then reports it; a connection that broke is the
/// engine's to open again on the next `begin`.
#[async_trait]
pub trait WriteConn: Send + 'static {
    /// Begins a write transaction, holding the store's write lock until it
    /// ends (no other writer, another process's import included, folds a
    /// trade into a bar meanwhile). `logged`: its entries are durable in a
    /// bus already, so the commit need not wait for the store's own flush.
    async fn begin(&mut self, logged: bool) -> Result<()>;
    async fn commit(&mut self) -> Result<()>;
    /// After [`commit`](Self::commit) failed: whether the transaction
    /// committed all the same (the reply to COMMIT was lost with the
    /// connection). An error when that cannot be found out now.
    async fn committed(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// Whether the store is still the one opened (a file not deleted or
    /// replaced; `thorough`: nor overwritten); the reason when it is not,
    /// for good.
    async fn intact(&mut self, _thorough: bool) -> Result<()> {
        Ok(())
    }
    /// `e` with its class made precise where the database gave none (an
    /// I/O error of a full or read-only file system).
    fn refine(&self, e: Fail) -> Fail {
        e
    }
    /// The server is stopping: leave the store as a clean stop should
    /// (SQLite: the log copied into the file and removed).
    async fn close(&mut self) -> Result<()> {
        Ok(())
    }
    /// Ends a failed transaction; never fails (a broken connection has no
    /// transaction left).
    async fn rollback(&mut self);
    async fn savepoint(&mut self) -> Result<()>;
    async fn release(&mut self) -> Result<()>;
    async fn rollback_to_savepoint(&mut self) -> Result<()>;

    /// The stored `(fingerprint, applied, created_ms)` of an idempotency key.
    async fn find_key(&mut self, endpoint: &str, key: &str) -> Result<Option<(i64, i64, i64)>>;
    async fn insert_key(
        &mut self,
        endpoint: &str,
        key: &str,
        fingerprint: i64,
        applied: i64,
        now_ms: i64,
    ) -> Result<()>;

    /// The stored bars at these (symbol, resolution, time), by (symbol,
    /// time).
    async fn get_many(
        &mut self,
        wanted: &[(i64, Resolution, i64)],
    ) -> Result<HashMap<(i64, i64), StoredBar>>;
    /// The time of the newest bar of each resolution.
    async fn newest_times(
        &mut self,
        id: i64,
        resolutions: &[Resolution],
    ) -> Result<Vec<(Resolution, Option<i64>)>>;
    async fn set_base(&mut self, id: i64, base: Resolution) -> Result<()>;
    /// Stores base bars (in time order), replacing those at their times.
    async fn write_many(&mut self, id: i64, base: Resolution, bars: &[StoredBar]) -> Result<()>;
    /// Rebuilds every coarser resolution over the `dirty` base bars.
    async fn rebuild(
        &mut self,
        id: i64,
        calendar: &TradingCalendar,
        base: Resolution,
        dirty: &Dirty,
    ) -> Result<()>;
    async fn since(
        &mut self,
        id: i64,
        res: Resolution,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>>;
    async fn latest_bar(&mut self, id: i64, res: Resolution) -> Result<Option<Bar>>;

    /// A number that changes whenever another process commits (an import):
    /// the writer then reloads what it keeps.
    async fn changes(&mut self) -> Result<i64>;
    /// Every symbol, and the problems of those that do not load.
    async fn load_symbols(&mut self) -> Result<(Vec<SymbolRecord>, Vec<String>)>;
    /// Forgets idempotency keys and recorded outcomes older than these.
    async fn prune(&mut self, keys_before_ms: i64, outcomes_before_ms: i64);

    /// How far `log` is applied, inside the transaction.
    async fn position(&mut self, log: &str) -> Result<u64>;
    async fn set_position(&mut self, log: &str, seq: u64) -> Result<()>;
    /// The recorded outcomes of entries `from..=to` of `log`.
    async fn recorded(&mut self, log: &str, from: u64, to: u64) -> Result<Vec<OutcomeRow>>;
    async fn record(&mut self, log: &str, rows: &[OutcomeRow], now_ms: i64) -> Result<()>;

    /// Appends the paper broker's records (time, JSON), in order, inside
    /// the transaction.
    async fn append_ledger(&mut self, records: &[(i64, String)]) -> Result<()>;
    /// The paper broker's ledger, oldest first (outside a transaction).
    async fn load_ledger(&mut self) -> Result<Vec<String>>;
}
