//! The embedded store: one SQLite file (`--store PATH`), created if
//! missing. No server to run, and the file is the whole store.
//!
//! SQLite in WAL mode lets readers run while one writer writes:
//! * reads (every `DataSource` call) take a connection from a small pool
//!   and are one primary-key range scan each;
//! * in the server, every write goes through one writer thread
//!   (`writer`), which puts concurrent ingest requests into one transaction
//!   (one sync to disk for all of them), then publishes the changed bars,
//!   then answers;
//! * the import command writes from its own process, one transaction per
//!   file; the server's writer notices (`PRAGMA data_version`) and serves
//!   the new symbols and bars, and republishes live bars, without a restart.
//!
//! Closed D/W/M bars are kept in memory (`store::history`).

mod engine;
pub mod file;
mod logged;
mod schema;
mod tables;

pub use engine::SqliteEngine;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::Connection;
use trading_pro::types::SymbolInfo;

use crate::chain::{is_base, Dirty};
use crate::served::ServedStore;
use crate::{
    calendar_of, check_info, ImportSink, Records, Registered, Store, StoreError, StoredBar,
    SymbolRecord,
};
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::UpdateSink;

use engine::Pool;
use schema::Role;

/// An SQLite store as the import and export commands use it (see
/// [`Store`]); [`SqliteStore::open_for_serving`] serves one.
pub struct SqliteStore {
    path: PathBuf,
    readers: Pool,
}

fn failed(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Failed(format!("store {}: {e}", path.display()))
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the store at `path`, for
    /// the import and export commands.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(StoreError::Invalid(format!(
                    "cannot create the store {}: the directory {} does not exist",
                    path.display(),
                    parent.display()
                )));
            }
        }
        // Before SQLite sees the file: a log left by a crash is replayed
        // on open, and must belong to this file.
        file::check_log(path).map_err(StoreError::Invalid)?;
        let mut conn = schema::connect(path, Role::Write).map_err(failed(path))?;
        if let Some(version) = schema::too_new(&conn).map_err(failed(path))? {
            return Err(StoreError::Invalid(format!(
                "store {} has schema version {version}, newer than this trading-server knows; \
                 upgrade trading-server",
                path.display()
            )));
        }
        schema::migrate(&mut conn).map_err(failed(path))?;
        // What a crash left in the log goes into the file now, and the
        // record of what the log builds on starts from here.
        let checkpointer = file::Checkpointer::new(path);
        // Without a log, an old record (a crash's, before a restore) says
        // nothing about this file.
        checkpointer.forget();
        checkpointer
            .run(&conn, "TRUNCATE")
            .map_err(StoreError::Failed)?;
        checkpointer.settle().map_err(StoreError::Failed)?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            readers: Pool::new(path),
        };
        // A store whose symbols do not load is refused now, not served.
        store.load_records(&conn)?;
        Ok(store)
    }

    /// Opens the store for the server: it also takes ingest (and a shared
    /// log's entries), and pushes the bars every write changes to `sink`.
    pub fn open_for_serving(
        path: &Path,
        sink: Arc<dyn UpdateSink>,
        broker: crate::trading::BrokerConfig,
    ) -> Result<ServedStore<SqliteEngine>, StoreError> {
        let store = SqliteStore::open(path)?;
        let conn = schema::connect(path, Role::Read).map_err(failed(path))?;
        // The change counter first: an import committing meanwhile is
        // noticed by the writer later.
        let changes = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(failed(path))?;
        let records = store.load_records(&conn)?;
        let market = logged::market(&conn).map_err(failed(path))?;
        let engine = SqliteEngine::new(path, market)
            .map_err(|e| StoreError::Failed(format!("store {}: {e}", path.display())))?;
        ServedStore::start(engine, records, changes, sink, broker)
            .map_err(|e| StoreError::Failed(format!("store {}: {e}", path.display())))
    }

    fn load_records(&self, conn: &Connection) -> Result<Records, StoreError> {
        let (records, problems) = tables::load_symbols(conn).map_err(failed(&self.path))?;
        if let Some(problem) = problems.first() {
            return Err(StoreError::Failed(format!(
                "store {}: {problem}",
                self.path.display()
            )));
        }
        Records::new(records).map_err(StoreError::Failed)
    }
}

impl Store for SqliteStore {
    fn records(&self) -> Result<Records, StoreError> {
        let conn = schema::connect(&self.path, Role::Read).map_err(failed(&self.path))?;
        self.load_records(&conn)
    }

    fn upsert_symbols(
        &self,
        infos: Vec<SymbolInfo>,
    ) -> Result<Vec<(String, Registered)>, StoreError> {
        let mut conn = schema::connect(&self.path, Role::Write).map_err(failed(&self.path))?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(failed(&self.path))?;
        let mut outcome = Vec::with_capacity(infos.len());
        for info in infos {
            check_info(&info)?;
            let found = tables::find_symbol(&tx, &info.ticker).map_err(failed(&self.path))?;
            let registered = match found {
                None => {
                    tables::insert_symbol(&tx, &info).map_err(failed(&self.path))?;
                    Registered::Added
                }
                Some((id, old, base)) => {
                    let old: SymbolInfo = serde_json::from_str(&old).map_err(|e| {
                        StoreError::Failed(format!("symbol {}: stored info: {e}", info.ticker))
                    })?;
                    if old == info {
                        Registered::Unchanged
                    } else {
                        if base.is_some()
                            && (old.session != info.session || old.timezone != info.timezone)
                        {
                            return Err(StoreError::Invalid(format!(
                                "{}: cannot change the session or timezone of a symbol that \
                                 has bars (from {} {} to {} {}): its bars were placed by the old \
                                 ones",
                                info.ticker, old.session, old.timezone, info.session, info.timezone
                            )));
                        }
                        tables::update_symbol(&tx, id, &info, base).map_err(failed(&self.path))?;
                        Registered::Updated
                    }
                }
            };
            outcome.push((info.ticker.clone(), registered));
        }
        tx.commit().map_err(failed(&self.path))?;
        Ok(outcome)
    }

    fn begin_import<'a>(
        &'a self,
        info: &SymbolInfo,
        resolution: Resolution,
    ) -> Result<Box<dyn ImportSink + 'a>, StoreError> {
        if !is_base(resolution) {
            return Err(StoreError::Invalid(format!(
                "bars cannot be imported at {}: import the daily bars, weekly and monthly ones \
                 are built from them",
                resolution.as_str()
            )));
        }
        check_info(info)?;
        let calendar = calendar_of(info)?;
        let conn = schema::connect(&self.path, Role::Write).map_err(failed(&self.path))?;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(failed(&self.path))?;
        let mut import = SqliteImport {
            store: self,
            conn,
            open: true,
            symbol: 0,
            resolution,
            calendar,
            gen: 0,
            dirty: Dirty::default(),
        };
        let found = tables::find_symbol(&import.conn, &info.ticker).map_err(failed(&self.path))?;
        import.symbol = match found {
            Some((_, _, Some(base))) if base != resolution => {
                return Err(StoreError::Invalid(format!(
                    "{} has {} bars: its data is at resolution {}, so bars are imported at {} \
                     (not {})",
                    info.ticker,
                    base.as_str(),
                    base.as_str(),
                    base.as_str(),
                    resolution.as_str()
                )));
            }
            Some((id, old, Some(_))) => {
                let old: SymbolInfo = serde_json::from_str(&old).map_err(|e| {
                    StoreError::Failed(format!("symbol {}: stored info: {e}", info.ticker))
                })?;
                if old.session != info.session || old.timezone != info.timezone {
                    return Err(StoreError::Invalid(format!(
                        "{}: cannot change the session or timezone of a symbol that has bars \
                         (from {} {} to {} {})",
                        info.ticker, old.session, old.timezone, info.session, info.timezone
                    )));
                }
                id
            }
            Some((id, _, None)) => id,
            None => tables::insert_symbol(&import.conn, info).map_err(failed(&self.path))?,
        };
        import.gen = tables::next_gen(&import.conn).map_err(failed(&self.path))?;
        Ok(Box::new(import))
    }

    fn scan(
        &self,
        symbol: &SymbolRecord,
        resolution: Resolution,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&StoredBar) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        self.readers
            .with(|conn| Ok(tables::scan(conn, symbol.id, resolution, from, to, each)))
            .map_err(failed(&self.path))?
            .map_err(|e| match e {
                tables::ScanError::Sql(e) => failed(&self.path)(e),
                tables::ScanError::Stopped(why) => StoreError::Failed(why),
            })
    }
}

/// Writes a consistent copy of the store at `path` to `to` (a new file),
/// from one snapshot, while a server may be writing.
pub fn backup(path: &Path, to: &Path) -> Result<(), String> {
    if to.exists() {
        return Err(format!(
            "{} exists already: name a new file for the copy",
            to.display()
        ));
    }
    let target = to
        .to_str()
        .ok_or_else(|| format!("{}: not a UTF-8 path", to.display()))?;
    let conn = schema::connect(path, Role::Read).map_err(|e| e.to_string())?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| format!("cannot copy {} to {}: {e}", path.display(), to.display()))?;
    Ok(())
}

/// One file's bars in one transaction on a connection of its own.
struct SqliteImport<'a> {
    store: &'a SqliteStore,
    conn: Connection,
    /// A transaction is open (rolled back on drop unless committed).
    open: bool,
    symbol: i64,
    resolution: Resolution,
    calendar: TradingCalendar,
    gen: i64,
    dirty: Dirty,
}

impl ImportSink for SqliteImport<'_> {
    fn put(&mut self, bar: &StoredBar) -> Result<bool, StoreError> {
        let stored = tables::put(&self.conn, self.symbol, self.resolution, bar, self.gen)
            .map_err(failed(&self.store.path))?;
        if stored {
            self.dirty.add(bar.time);
        }
        Ok(stored)
    }

    fn commit(mut self: Box<Self>, info: SymbolInfo) -> Result<(), StoreError> {
        let path = &self.store.path;
        tables::update_symbol(&self.conn, self.symbol, &info, Some(self.resolution))
            .map_err(failed(path))?;
        tables::rebuild(
            &self.conn,
            self.symbol,
            &self.calendar,
            self.resolution,
            &self.dirty,
            self.gen,
        )
        .map_err(failed(path))?;
        self.conn.execute_batch("COMMIT").map_err(failed(path))?;
        self.open = false;
        // The import's pages into the file, so its log does not stay
        // behind (a server reading meanwhile may keep this from
        // finishing: its writer checkpoints later).
        let _ = file::Checkpointer::new(path).run(&self.conn, "TRUNCATE");
        Ok(())
    }
}

impl Drop for SqliteImport<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}
