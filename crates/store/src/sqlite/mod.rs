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

mod schema;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use rusqlite::Connection;
use trading_pro::types::SymbolInfo;

use crate::chain::{is_base, Dirty};
use crate::recent;
use crate::{
    calendar_of, check_info, ImportSink, Records, Registered, Store, StoreError, StoredBar,
    SymbolRecord,
};
use trading_market::bars_json::{EncodedRun, PriceFormat};
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::catalog::{Catalog, Symbol};
use trading_market::ingest::{Ingest, IngestError, IngestReceipt, IngestRequest};
use trading_market::source::{
    Bar, BarQuery, BarsPage, DataSource, Live, Quote, SourceError, UpdateSink,
};

use schema::Role;

pub struct SqliteStore {
    path: PathBuf,
    readers: Pool,
    /// The symbols as of the last change the server saw.
    records: Arc<RwLock<Arc<Records>>>,
    /// Closed D/W/M bars kept in memory (see `history`).
    recent: Arc<recent::RecentBars>,
    /// Present in the server: the one thread that writes.
    writer: Option<writer::Writer>,
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
        let mut conn = schema::connect(path, Role::Write).map_err(failed(path))?;
        if let Some(version) = schema::too_new(&conn).map_err(failed(path))? {
            return Err(StoreError::Invalid(format!(
                "store {} has schema version {version}, newer than this trading-server knows; \
                 upgrade trading-server",
                path.display()
            )));
        }
        schema::migrate(&mut conn).map_err(failed(path))?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            readers: Pool::new(path),
            records: Arc::default(),
            recent: Arc::default(),
            writer: None,
        };
        let records = store.load_records(&conn)?;
        *store
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(records);
        Ok(store)
    }

    /// Opens the store for the server: it also takes ingest, and pushes the
    /// bars every write changes to `sink`.
    pub fn open_for_serving(
        path: &Path,
        sink: Arc<dyn UpdateSink>,
    ) -> Result<SqliteStore, StoreError> {
        let mut store = SqliteStore::open(path)?;
        let conn = schema::connect(path, Role::Writer).map_err(failed(path))?;
        let checkpoints = schema::connect(path, Role::Checkpoint).map_err(failed(path))?;
        store.writer = Some(writer::Writer::start(
            conn,
            checkpoints,
            path.to_path_buf(),
            Arc::clone(&store.records),
            Arc::clone(&store.recent),
            sink,
        ));
        Ok(store)
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

    fn snapshot(&self) -> Arc<Records> {
        Arc::clone(&self.records.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The record behind a catalog symbol and its base resolution, or None
    /// for a symbol without bars.
    fn base_of(&self, symbol: &Symbol) -> Option<(i64, Resolution)> {
        let records = self.snapshot();
        let record = records.get(symbol)?;
        Some((record.id, record.base?))
    }

    /// The kept bars of a series (`history`), built if missing or stale,
    /// and the bars after them: kept too while the symbol has not been
    /// written since, else read from the file.
    fn kept(
        &self,
        symbol: &Symbol,
        id: i64,
        res: Resolution,
    ) -> Result<(Arc<recent::Entry>, Vec<Bar>), SourceError> {
        let stamp = self.recent.stamp(id);
        if let Some(entry) = self.recent.get(id, res, stamp.0) {
            if let Some(tail) = entry.tail(stamp.1) {
                let tail = tail.to_vec();
                return Ok((entry, tail));
            }
            let tail =
                self.read(|conn| tables::since(conn, id, res, entry.cutoff, recent::MAX_TAIL + 1))?;
            if tail.len() <= recent::MAX_TAIL {
                return Ok((entry, tail.iter().map(StoredBar::to_bar).collect()));
            }
        }
        let newest = self.read(|conn| tables::since(conn, id, res, i64::MIN, recent::WINDOW))?;
        let newest: Vec<Bar> = newest.iter().map(StoredBar::to_bar).collect();
        let prices = PriceFormat::for_pricescale(symbol.info.pricescale);
        Ok(self.recent.put(id, res, stamp, newest, prices))
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, SourceError> {
        self.readers
            .with(f)
            .map_err(|e| SourceError::Unavailable(format!("store {}: {e}", self.path.display())))
    }
}

/// Read-only connections, reused across requests.
struct Pool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Pool {
    fn new(path: &Path) -> Pool {
        Pool {
            path: path.to_path_buf(),
            idle: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
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

#[async_trait]
impl DataSource for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(self.snapshot().catalog())
    }

    fn live(&self) -> Live {
        Live::Pushed
    }

    async fn bars(
        &self,
        symbol: &Symbol,
        res: Resolution,
        query: &BarQuery,
        _now_ms: i64,
    ) -> Result<BarsPage, SourceError> {
        let Some((id, _)) = self.base_of(symbol) else {
            return Ok(BarsPage {
                bars: Vec::new(),
                no_data: true,
                next_time: None,
            });
        };
        let (entry, tail) = self.kept(symbol, id, res)?;
        match entry.page(&tail, query) {
            Some(page) => Ok(page),
            // Reaching back before the kept bars: from the file.
            None => self.read(|conn| tables::page(conn, id, res, query)),
        }
    }

    fn encoded_history(
        &self,
        symbol: &Symbol,
        res: Resolution,
        _now_ms: i64,
    ) -> Option<Arc<EncodedRun>> {
        let (id, _) = self.base_of(symbol)?;
        let (stamp, _) = self.recent.stamp(id);
        self.recent
            .get(id, res, stamp)
            .map(|entry| Arc::clone(&entry.run))
    }

    async fn current_bar(
        &self,
        symbol: &Symbol,
        res: Resolution,
        _now_ms: i64,
    ) -> Result<Option<Bar>, SourceError> {
        let Some((id, _)) = self.base_of(symbol) else {
            return Ok(None);
        };
        self.read(|conn| tables::latest_bar(conn, id, res))
    }

    async fn quote(&self, symbol: &Symbol, _now_ms: i64) -> Result<Option<Quote>, SourceError> {
        let Some((id, base)) = self.base_of(symbol) else {
            return Ok(None);
        };
        // The trading day and the one before it, from the kept daily bars.
        let (entry, tail) = self.kept(symbol, id, Resolution::Day)?;
        let mut days = entry.bars().iter().chain(&tail).rev();
        let (Some(today), yesterday) = (days.next().copied(), days.next()) else {
            return Ok(None);
        };
        let last = if base == Resolution::Day {
            today.close
        } else {
            match self.read(|conn| tables::latest(conn, id, base, 1))?.first() {
                Some(bar) => bar.close,
                None => return Ok(None),
            }
        };
        let prev_close = yesterday.map_or(today.open, |d| d.close);
        let change = last - prev_close;
        Ok(Some(Quote {
            last,
            bid: None,
            ask: None,
            open: today.open,
            high: today.high,
            low: today.low,
            prev_close,
            volume: today.volume,
            change,
            change_percent: if prev_close != 0.0 {
                change / prev_close * 100.0
            } else {
                0.0
            },
        }))
    }

    fn ingest(&self) -> Option<&dyn Ingest> {
        self.writer.as_ref().map(|w| w as &dyn Ingest)
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

#[async_trait]
impl Ingest for writer::Writer {
    async fn apply(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
    ) -> Result<IngestReceipt, IngestError> {
        self.submit(request, key, now_ms).await
    }
}
