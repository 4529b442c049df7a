//! SQLite as an [`Engine`]: reads on pooled read-only connections (a
//! request worker runs each; a range scan of the primary key), and the
//! writer's own connection, whose thread runs the writer loop. WAL mode
//! lets readers run while the writer writes; a thread of its own copies
//! the log into the file (`checkpoint_in_background`), so commits seldom
//! wait for that. The log is bounded all the same: past [`WAL_LIMIT`] the
//! writer empties it before its next transaction, waiting for readers if
//! it must (`file` keeps the record of what the log builds on).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage, Reason};

use super::file::{Checkpointer, Opened};
use super::schema::{self, Role};
use super::{logged, tables};
use crate::chain::Dirty;
use crate::engine::{Engine, Fail, OutcomeRow, Result, WriteConn, WriterTask};
use crate::{StoredBar, SymbolRecord};

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::of(reason_of(&e), e.to_string())
    }
}

/// The class of an SQLite error, as clients are told it.
pub(super) fn reason_of(e: &rusqlite::Error) -> Reason {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Reason::DiskFull,
        Some(ErrorCode::ReadOnly) => Reason::ReadOnly,
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => Reason::Damaged,
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Reason::Timeout,
        _ => Reason::Unavailable,
    }
}

pub struct SqliteEngine {
    path: PathBuf,
    market: String,
    readers: Pool,
    /// The file opened, to notice it deleted or replaced.
    opened: Opened,
    checkpointer: Checkpointer,
    /// Tells the checkpoint thread to end with the engine.
    stop: Arc<AtomicBool>,
    /// The checkpoint thread, joined on close (its connection must be
    /// closed before the writer's, the last, removes the log).
    checkpoints: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for SqliteEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl SqliteEngine {
    pub(super) fn new(path: &Path, market: String) -> std::io::Result<SqliteEngine> {
        Ok(SqliteEngine {
            path: path.to_path_buf(),
            market,
            readers: Pool::new(path),
            opened: Opened::of(path)?,
            checkpointer: Checkpointer::new(path),
            stop: Arc::new(AtomicBool::new(false)),
            checkpoints: Mutex::default(),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        Ok(self.readers.with(f)?)
    }

    /// `f` on a connection of its own that may write.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = schema::connect(&self.path, Role::Write)?;
        Ok(f(&conn)?)
    }
}

#[async_trait]
impl Engine for SqliteEngine {
    type Writer = SqliteWriter;

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn market(&self) -> &str {
        &self.market
    }

    fn open_writer(&self) -> Result<SqliteWriter> {
        let conn = schema::connect(&self.path, Role::Writer)?;
        let checkpoints = schema::connect(&self.path, Role::Checkpoint)?;
        *self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = checkpoint_in_background(
            checkpoints,
            self.checkpointer.clone(),
            Arc::clone(&self.stop),
        );
        Ok(SqliteWriter {
            conn,
            gen: 0,
            path: self.path.clone(),
            opened: self.opened,
            checkpointer: self.checkpointer.clone(),
        })
    }

    /// Readers and the checkpoint thread close their connections; the
    /// writer's, closed after them, is the last and removes the log.
    fn close(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.readers.close();
        let thread = self
            .checkpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// On a thread of its own: every write is a blocking call on the
    /// writer's connection, which no request worker should wait behind.
    /// The log is gone with the last connection: so is the record of what
    /// it built on, and a clean stop leaves the store's one file.
    fn closed(&self) {
        self.checkpointer.forget();
    }

    fn spawn_writer(&self, writer: WriterTask) {
        let spawned = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(writer),
                    Err(e) => eprintln!("cannot start the store writer's runtime: {e}"),
                }
            });
        if let Err(e) = spawned {
            eprintln!("cannot start the store writer thread: {e}");
        }
    }

    async fn page(&self, id: i64, res: Resolution, query: &BarQuery) -> Result<BarsPage> {
        self.read(|conn| tables::page(conn, id, res, query))
    }

    async fn since(
        &self,
        id: i64,
        res: Resolution,
        from: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>> {
        self.read(|conn| tables::since(conn, id, res, from, limit))
    }

    async fn latest(&self, id: i64, res: Resolution, n: usize) -> Result<Vec<StoredBar>> {
        self.read(|conn| tables::latest(conn, id, res, n))
    }

    async fn latest_bar(&self, id: i64, res: Resolution) -> Result<Option<Bar>> {
        self.read(|conn| tables::latest_bar(conn, id, res))
    }

    async fn followed(&self) -> Result<Option<String>> {
        self.read(logged::followed)
    }

    async fn follow(&self, log: &str) -> Result<()> {
        self.write(|conn| logged::follow(conn, log))
    }

    async fn position(&self, log: &str) -> Result<u64> {
        self.read(|conn| logged::position(conn, log))
    }
}

/// How often the log is copied into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The write-ahead log's bound: past this the writer empties it before its
/// next transaction. The log then stays within this plus one transaction
/// (at most `MAX_BATCH` requests; docs/BENCHMARKS.md has the measured
/// peak).
pub const WAL_LIMIT: u64 = 64 << 20;

/// Copies the write-ahead log into the database file now and then, on a
/// connection and thread of its own, so that the writer's commits mostly
/// only append to the log. A passive checkpoint never blocks the writer;
/// the log starts over once everything in it is in the file (when no
/// reader still reads from it). Runs until `stop`.
fn checkpoint_in_background(
    conn: Connection,
    checkpointer: Checkpointer,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            let mut seen = None;
            // A failure is logged when it starts or changes, not every
            // half second while it lasts (a full disk).
            let mut failing: Option<String> = None;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(CHECKPOINT_EVERY);
                // Only when someone committed since the last look.
                let version: Option<i64> =
                    conn.query_row("PRAGMA data_version", [], |r| r.get(0)).ok();
                if version.is_none() || version == seen {
                    continue;
                }
                match checkpointer.run(&conn, "PASSIVE") {
                    Ok(_) => {
                        seen = version;
                        failing = None;
                    }
                    Err(e) => {
                        if failing.as_ref() != Some(&e) {
                            eprintln!("{e}");
                        }
                        failing = Some(e);
                    }
                }
            }
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(e) => {
            eprintln!("cannot start the store checkpoint thread: {e}");
            None
        }
    }
}

/// The writer's connection, and the write number of the transaction in
/// progress (`tables::put` tells an import's repeated times by it).
pub struct SqliteWriter {
    conn: Connection,
    gen: i64,
    path: PathBuf,
    opened: Opened,
    checkpointer: Checkpointer,
}

impl SqliteWriter {
    fn execute(&self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

#[async_trait]
impl WriteConn for SqliteWriter {
    async fn begin(&mut self, _logged: bool) -> Result<()> {
        if self.checkpointer.log_len() > WAL_LIMIT {
            // Back-pressure: no transaction until the log is empty again.
            // The checkpoint waits for readers (the busy timeout); one
            // that cannot finish fails this transaction, not the bound.
            let done = self
                .checkpointer
                .run(&self.conn, "TRUNCATE")
                .map_err(Fail::new)?;
            if done.busy {
                return Err(Fail::of(
                    Reason::Timeout,
                    format!(
                        "the store's log passed {} MiB and could not be emptied (readers or \
                         another process held it for {} s)",
                        WAL_LIMIT >> 20,
                        schema::BUSY_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
        // IMMEDIATE: the write lock now, so an import in another process
        // waits (or this waits for it) instead of failing mid-way.
        self.execute("BEGIN IMMEDIATE")?;
        self.gen = tables::next_gen(&self.conn)?;
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        self.execute("COMMIT")
    }

    async fn rollback(&mut self) {
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    /// SQLite reports a file system that refuses writes as an I/O error
    /// at times; a write beside the store tells which.
    fn refine(&self, e: Fail) -> Fail {
        if e.reason != Reason::Unavailable {
            return e;
        }
        match self.checkpointer.probe_write() {
            Some(reason) => Fail::of(reason, e.detail),
            None => e,
        }
    }

    async fn intact(&mut self, thorough: bool) -> Result<()> {
        let overwritten = || thorough.then(|| self.checkpointer.overwritten()).flatten();
        match self.opened.changed(&self.path).or_else(overwritten) {
            Some(why) => Err(Fail::of(Reason::Damaged, why)),
            None => Ok(()),
        }
    }

    /// Everything into the file and the log emptied; the log and its index
    /// go when this, the last connection, closes.
    async fn close(&mut self) -> Result<()> {
        self.intact(true).await?;
        let done = self
            .checkpointer
            .run(&self.conn, "TRUNCATE")
            .map_err(Fail::new)?;
        if done.busy {
            return Err(Fail::new("the log could not be emptied: a reader held it"));
        }
        Ok(())
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.execute("SAVEPOINT job")
    }

    async fn release(&mut self) -> Result<()> {
        self.execute("RELEASE job")
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.execute("ROLLBACK TO job; RELEASE job")
    }

    async fn find_key(&mut self, endpoint: &str, key: &str) -> Result<Option<(i64, i64, i64)>> {
        Ok(tables::find_key(&self.conn, endpoint, key)?)
    }

    async fn append_ledger(&mut self, records: &[(i64, String)]) -> Result<()> {
        Ok(tables::append_ledger(&self.conn, records)?)
    }

    async fn load_ledger(&mut self) -> Result<Vec<String>> {
        Ok(tables::load_ledger(&self.conn)?)
    }

    async fn insert_key(
        &mut self,
        endpoint: &str,
        key: &str,
        fingerprint: i64,
        applied: i64,
        now_ms: i64,
    ) -> Result<()> {
        Ok(tables::insert_key(
            &self.conn,
            endpoint,
            key,
            fingerprint,
            applied,
            now_ms,
        )?)
    }

    async fn get_many(
        &mut self,
        wanted: &[(i64, Resolution, i64)],
    ) -> Result<HashMap<(i64, i64), StoredBar>> {
        let mut found = HashMap::with_capacity(wanted.len());
        for (id, res, time) in wanted {
            if let Some(bar) = tables::get(&self.conn, *id, *res, *time)? {
                found.insert((*id, *time), bar);
            }
        }
        Ok(found)
    }

    async fn newest_times(
        &mut self,
        id: i64,
        resolutions: &[Resolution],
    ) -> Result<Vec<(Resolution, Option<i64>)>> {
        let mut out = Vec::with_capacity(resolutions.len());
        for res in resolutions {
            let newest = tables::latest(&self.conn, id, *res, 1)?;
            out.push((*res, newest.first().map(|b| b.time)));
        }
        Ok(out)
    }

    async fn set_base(&mut self, id: i64, base: Resolution) -> Result<()> {
        Ok(tables::set_base(&self.conn, id, base)?)
    }

    async fn write_many(&mut self, id: i64, base: Resolution, bars: &[StoredBar]) -> Result<()> {
        for bar in bars {
            tables::overwrite(&self.conn, id, base, bar, self.gen)?;
        }
        Ok(())
    }

    async fn rebuild(
        &mut self,
        id: i64,
        calendar: &TradingCalendar,
        base: Resolution,
        dirty: &Dirty,
    ) -> Result<()> {
        Ok(tables::rebuild(
            &self.conn, id, calendar, base, dirty, self.gen,
        )?)
    }

    async fn since(
        &mut self,
        id: i64,
        res: Resolution,
        from: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>> {
        Ok(tables::since(&self.conn, id, res, from, limit)?)
    }

    async fn latest_bar(&mut self, id: i64, res: Resolution) -> Result<Option<Bar>> {
        Ok(tables::latest_bar(&self.conn, id, res)?)
    }

    /// `PRAGMA data_version`: it changes when another connection commits.
    async fn changes(&mut self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    async fn load_symbols(&mut self) -> Result<(Vec<SymbolRecord>, Vec<String>)> {
        Ok(tables::load_symbols(&self.conn)?)
    }

    async fn prune(&mut self, keys_before_ms: i64, outcomes_before_ms: i64) {
        let _ = tables::prune_keys(&self.conn, keys_before_ms);
        let _ = logged::prune(&self.conn, outcomes_before_ms);
    }

    async fn position(&mut self, log: &str) -> Result<u64> {
        Ok(logged::position(&self.conn, log)?)
    }

    async fn set_position(&mut self, log: &str, seq: u64) -> Result<()> {
        Ok(logged::set_position(&self.conn, log, seq)?)
    }

    async fn recorded(&mut self, log: &str, from: u64, to: u64) -> Result<Vec<OutcomeRow>> {
        Ok(logged::recorded(&self.conn, log, from, to)?)
    }

    async fn record(&mut self, log: &str, rows: &[OutcomeRow], now_ms: i64) -> Result<()> {
        Ok(logged::record(&self.conn, log, rows, now_ms)?)
    }
}

/// Read-only connections, reused across requests.
pub(super) struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// The store closed: connections are not kept.
    closed: AtomicBool,
}

impl Pool {
    pub(super) fn new(path: &Path) -> Pool {
        Pool {
            path: path.to_path_buf(),
            idle: Mutex::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// Closes the idle connections, and any returned from now on.
    fn close(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.clear();
        self.closed.store(true, Ordering::Relaxed);
    }

    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => schema::connect(&self.path, Role::Read)?,
        };
        let result = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // As many as ever ran at once are kept: the request workers.
        if idle.len() < 16 && !self.closed.load(Ordering::Relaxed) {
            idle.push(conn);
        }
        result
    }
}
