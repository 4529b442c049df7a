//! SQLite as an [`Engine`]: reads on pooled read-only connections (a
//! request worker runs each; a range scan of the primary key), and the
//! writer's own connection, whose thread runs the writer loop. WAL mode
//! lets readers run while the writer writes; a thread of its own copies
//! the log into the file (`checkpoint_in_background`), so no commit waits
//! for that.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage};

use super::schema::{self, Role};
use super::{logged, tables};
use crate::chain::Dirty;
use crate::engine::{Engine, Fail, OutcomeRow, Result, WriteConn, WriterTask};
use crate::{StoredBar, SymbolRecord};

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail(e.to_string())
    }
}

pub struct SqliteEngine {
    path: PathBuf,
    market: String,
    readers: Pool,
    /// Tells the checkpoint thread to end with the engine.
    stop: Arc<AtomicBool>,
}

impl Drop for SqliteEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl SqliteEngine {
    pub(super) fn new(path: &Path, market: String) -> SqliteEngine {
        SqliteEngine {
            path: path.to_path_buf(),
            market,
            readers: Pool::new(path),
            stop: Arc::new(AtomicBool::new(false)),
        }
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
        checkpoint_in_background(checkpoints, Arc::clone(&self.stop));
        Ok(SqliteWriter { conn, gen: 0 })
    }

    /// On a thread of its own: every write is a blocking call on the
    /// writer's connection, which no request worker should wait behind.
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

/// The writer's connection, and the write number of the transaction in
/// progress (`tables::put` tells an import's repeated times by it).
pub struct SqliteWriter {
    conn: Connection,
    gen: i64,
}

impl SqliteWriter {
    fn execute(&self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

#[async_trait]
impl WriteConn for SqliteWriter {
    async fn begin(&mut self, _logged: bool) -> Result<()> {
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
}

impl Pool {
    pub(super) fn new(path: &Path) -> Pool {
        Pool {
            path: path.to_path_buf(),
            idle: Mutex::default(),
        }
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
        if idle.len() < 16 {
            idle.push(conn);
        }
        result
    }
}
