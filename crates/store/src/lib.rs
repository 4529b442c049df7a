//! Real market data: stores of bars, fed by CSV import and live ingest.
//!
//! A store keeps symbols (their `SymbolInfo`), one base series per symbol
//! at the finest resolution it was given, and every coarser resolution as
//! the exact aggregate of that base, kept up to date at write time
//! (`chain`). It serves reads as a [`DataSource`] and takes writes through
//! [`Store`] (import, symbols) and [`Ingest`] (live trades and bars).
//!
//! * `bar`: a bar as stored (exact volume, first and last trade times);
//! * `chain`: which resolution is built from which, and the aggregation;
//! * `rules`: what every live trade and bar must follow, and `plan`: what
//!   a request writes, decided before it writes (shared by every writer);
//! * `recent`: the newest bars of each series, kept in memory and encoded;
//! * `replication`: how a store applies a log several nodes share, once;
//! * `sqlite`: the embedded engine (`--store PATH` or `sqlite:PATH`);
//! * `postgres`: a PostgreSQL database (`--store postgres://...`), which
//!   several processes can share;
//! * `import`: the `import` and `export` commands (CSV files in and out).
//!
//! Every engine passes the same conformance suite, at the trait level in
//! this crate (`tests/conformance.rs`) and through the server's binary and
//! API (`crates/server/tests/it/store_conformance.rs`).

pub mod backup;
pub mod bar;
pub mod chain;
pub mod effects;
pub mod engine;
pub mod import;
pub mod ledger;
pub mod plan;
pub mod postgres;
pub mod recent;
pub mod replication;
pub mod rules;
pub mod served;
pub mod sqlite;
pub mod trading;
pub mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use trading_pro::types::SymbolInfo;

use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::catalog::{set_resolutions, Catalog, Symbol};
use trading_market::source::{DataSource, UpdateSink};

pub use bar::StoredBar;
pub use trading_market::ingest::{Ingest, IngestError, IngestReceipt, IngestRequest};

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The request cannot be applied as asked; the message says why.
    Invalid(String),
    /// The store itself failed (a file that cannot be written, a database
    /// error).
    Failed(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Invalid(m) | StoreError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for StoreError {}

/// Where a store lives, from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL, as given.
    Postgres(String),
}

impl StoreUrl {
    /// `sqlite:PATH`, or a bare path (an embedded SQLite file), or
    /// `postgres://USER@HOST:PORT/DB` (also `postgresql://`).
    pub fn parse(text: &str) -> Result<StoreUrl, String> {
        if text.trim().is_empty() {
            return Err(
                "--store needs a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB".into(),
            );
        }
        if let Some(path) = text.strip_prefix("sqlite://") {
            return Ok(StoreUrl::Sqlite(path.into()));
        }
        if let Some(path) = text.strip_prefix("sqlite:") {
            return Ok(StoreUrl::Sqlite(path.into()));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(StoreUrl::Postgres(text.to_string()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            // Only the scheme: the rest may hold a password.
            return Err(format!(
                "--store: unknown store type {scheme:?}; use a file path, sqlite:PATH or \
                 postgres://USER@HOST:PORT/DB"
            ));
        }
        Ok(StoreUrl::Sqlite(text.into()))
    }
}

/// How a served store is opened.
#[derive(Clone, Copy, Debug)]
pub struct ServeOptions {
    /// A file store that does not exist is created only with `create`: a
    /// server started on a path where its store was expected (deleted,
    /// moved, a typo) must not serve a new empty one instead.
    pub create: bool,
    /// The longest one database call may take (PostgreSQL's
    /// `statement_timeout`, and this side's limit on every call).
    pub timeout: std::time::Duration,
    /// How the paper broker's accounts start and what a fill costs.
    pub broker: trading::BrokerConfig,
}

/// Opens the store `url` names as the server's data source, and its paper
/// broker; it pushes the bars its writes change to `sink`.
pub fn open_source(
    url: &str,
    sink: Arc<dyn UpdateSink>,
    options: &ServeOptions,
) -> Result<(Arc<dyn DataSource>, Arc<trading::Trading>), String> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            if !options.create && !path.exists() {
                return Err(format!(
                    "there is no store at {}: `trading-server import --store {} ...` creates \
                     one with data, `--create` serves a new empty one (or create an empty file \
                     there on purpose)",
                    path.display(),
                    path.display()
                ));
            }
            let store = sqlite::SqliteStore::open_for_serving(&path, sink, options.broker)
                .map_err(|e| e.to_string())?;
            let trading = store.trading();
            Ok((Arc::new(store), trading))
        }
        StoreUrl::Postgres(url) => {
            let store = postgres::PostgresStore::open_for_serving(
                &url,
                sink,
                options.timeout,
                options.broker,
            )
            .map_err(|e| e.to_string())?;
            let trading = store.trading();
            Ok((Arc::new(store), trading))
        }
    }
}

/// Opens the store `url` names for the import and export commands; only
/// an import (`create`) creates a store that does not exist yet.
pub fn open(url: &str, create: bool) -> Result<Box<dyn Store>, String> {
    match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => {
            if !create && !path.exists() {
                return Err(format!("there is no store at {}", path.display()));
            }
            Ok(Box::new(
                sqlite::SqliteStore::open(&path).map_err(|e| e.to_string())?,
            ))
        }
        // A database is never created here: its server's administrator
        // creates it (and its user); the tables are created on first use.
        StoreUrl::Postgres(url) => Ok(Box::new(
            postgres::PostgresStore::open(&url).map_err(|e| e.to_string())?,
        )),
    }
}

/// The checks every registered symbol passes.
pub fn check_info(info: &SymbolInfo) -> Result<(), StoreError> {
    let bad = |why: String| Err(StoreError::Invalid(format!("{}: {why}", info.ticker)));
    let ticker = info.ticker.trim();
    if ticker.is_empty() || ticker != info.ticker || ticker.contains(':') {
        return bad("a ticker must be non-empty, without spaces around it or ':'".into());
    }
    if info.pricescale < 1 || info.minmov < 1 {
        return bad(format!(
            "pricescale ({}) and minmov ({}) must be positive",
            info.pricescale, info.minmov
        ));
    }
    calendar_of(info).map(drop)
}

pub fn calendar_of(info: &SymbolInfo) -> Result<TradingCalendar, StoreError> {
    TradingCalendar::new(&info.session, &info.timezone)
        .map_err(|e| StoreError::Invalid(format!("{}: {e}", info.ticker)))
}

/// A store's symbol: its description, its base resolution (None until it
/// has bars) and its trading calendar.
#[derive(Clone, Debug)]
pub struct SymbolRecord {
    pub id: i64,
    /// As served: the resolution fields follow from `base`.
    pub info: SymbolInfo,
    /// As registered (what an update starts from).
    pub registered: SymbolInfo,
    pub base: Option<Resolution>,
    /// The finest storable resolution the registration listed: where a
    /// symbol's first trades go.
    pub declared_base: Option<Resolution>,
    pub calendar: TradingCalendar,
}

impl SymbolRecord {
    pub fn new(
        id: i64,
        registered: SymbolInfo,
        base: Option<Resolution>,
    ) -> Result<SymbolRecord, String> {
        let mut info = registered.clone();
        let calendar = TradingCalendar::new(&info.session, &info.timezone)
            .map_err(|e| format!("{}: {e}", info.ticker))?;
        let declared_base = info
            .supported_resolutions
            .iter()
            .filter_map(|r| Resolution::parse(r))
            .filter(|r| chain::is_base(*r))
            .min();
        // Before its first bar, a symbol serves what its registration
        // declares, so a chart can open it and wait for the feed.
        set_resolutions(&mut info, base.or(declared_base));
        Ok(SymbolRecord {
            id,
            info,
            registered,
            base,
            declared_base,
            calendar,
        })
    }
}

/// A store's symbols as of one moment: the catalog the API serves, and the
/// records behind it.
#[derive(Default)]
pub struct Records {
    catalog: Arc<Catalog>,
    by_ticker: HashMap<String, SymbolRecord>,
}

impl Records {
    pub fn new(records: Vec<SymbolRecord>) -> Result<Records, String> {
        let catalog =
            Catalog::new(records.iter().map(|r| r.info.clone()).collect()).map_err(|e| e.0)?;
        let by_ticker = records
            .into_iter()
            .map(|r| (r.info.ticker.to_ascii_uppercase(), r))
            .collect();
        Ok(Records {
            catalog: Arc::new(catalog),
            by_ticker,
        })
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The record of a catalog symbol.
    pub fn get(&self, symbol: &Symbol) -> Option<&SymbolRecord> {
        self.by_ticker.get(&symbol.ticker().to_ascii_uppercase())
    }

    /// The record a request names (case-insensitive, `EXCHANGE:TICKER`).
    pub fn lookup(&self, name: &str) -> Option<&SymbolRecord> {
        self.catalog.lookup(name).and_then(|s| self.get(s))
    }

    pub fn iter(&self) -> impl Iterator<Item = &SymbolRecord> {
        self.by_ticker.values()
    }
}

/// What registering or updating a symbol did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Added,
    Updated,
    Unchanged,
}

/// One file's bars on their way into a store. Nothing is visible until
/// [`ImportSink::commit`]; dropping the sink without committing stores
/// nothing.
pub trait ImportSink {
    /// Stores a bar at the import's resolution. False when this import
    /// already stored a bar at that time (the first one stays).
    fn put(&mut self, bar: &StoredBar) -> Result<bool, StoreError>;

    /// Rebuilds the coarser resolutions, registers or updates the symbol as
    /// `info`, and makes everything durable at once.
    fn commit(self: Box<Self>, info: SymbolInfo) -> Result<(), StoreError>;
}

/// A store as the import and export commands use it; the server reads it
/// as a [`DataSource`] and writes to it through [`Ingest`].
pub trait Store {
    /// Every symbol, with its record.
    fn records(&self) -> Result<Records, StoreError>;

    /// Registers new symbols and updates existing ones (matched by ticker,
    /// case-insensitively), all or none. Changing the session or time zone
    /// of a symbol that has bars is refused: its bars would no longer fit.
    fn upsert_symbols(
        &self,
        infos: Vec<SymbolInfo>,
    ) -> Result<Vec<(String, Registered)>, StoreError>;

    /// Starts importing bars of `ticker` at `resolution`, which must be the
    /// symbol's base resolution if it has one. `info` describes a symbol
    /// the store does not know yet (registered at commit).
    fn begin_import<'a>(
        &'a self,
        info: &SymbolInfo,
        resolution: Resolution,
    ) -> Result<Box<dyn ImportSink + 'a>, StoreError>;

    /// Every bar of `symbol` at `resolution` with time in `[from, to)`, in
    /// time order.
    fn scan(
        &self,
        symbol: &SymbolRecord,
        resolution: Resolution,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&StoredBar) -> Result<(), String>,
    ) -> Result<(), StoreError>;
}
