//! A PostgreSQL store (`--store postgres://USER@HOST:PORT/DB`): the same
//! tables, rules and behaviour as the embedded store, in a database that
//! several processes can share.
//!
//! * reads (every `DataSource` call) take a connection from a small pool,
//!   each with its statements prepared once, and are one primary-key
//!   range scan each; closed D/W/M bars are kept in memory (`history`);
//! * in the server, every write goes through one writer task (`writer`),
//!   which puts concurrent ingest requests into one transaction, then
//!   publishes the changed bars, then answers;
//! * the import command streams each file into a staging table with COPY
//!   and merges it in one transaction (`import`); the server's writer
//!   notices (a change counter) and serves the new symbols and bars, and
//!   republishes live bars, without a restart;
//! * the schema is versioned and migrated at start-up under an advisory
//!   lock (`schema`); every connection is driven by the store's own
//!   runtime (`io`).

mod import;
mod io;
mod logged;
mod schema;
mod tables;
mod writer;

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::Config;
use trading_pro::types::SymbolInfo;

use crate::chain::is_base;
use crate::recent;
use crate::{
    calendar_of, check_info, ImportSink, Records, Registered, Store, StoreError, StoredBar,
    SymbolRecord,
};
use trading_market::bars_json::{EncodedRun, PriceFormat};
use trading_market::calendar::Resolution;
use trading_market::catalog::{Catalog, Symbol};
use trading_market::ingest::{Ingest, IngestError, IngestReceipt, IngestRequest};
use trading_market::source::{
    Bar, BarQuery, BarsPage, DataSource, Live, Quote, Reason, SourceError, Unhealthy, UpdateSink,
};

use schema::{MigrateError, WRITE_LOCK};
use tables::{Conn, Fail};

/// Idle read connections kept: as many as ever ran at once, up to this.
const MAX_IDLE: usize = 16;

pub struct PostgresStore {
    config: Config,
    /// The URL without its password, for messages.
    shown: String,
    readers: Pool,
    /// The symbols as of the last change the server saw.
    records: Arc<RwLock<Arc<Records>>>,
    /// Closed D/W/M bars kept in memory (see `history`).
    recent: Arc<recent::RecentBars>,
    /// Present in the server: the one task that writes.
    writer: Option<writer::Writer>,
    /// Why the writer cannot reach the database, if it cannot.
    problem: Arc<Mutex<Option<String>>>,
    /// The change counter when the symbols were loaded.
    changes: i64,
    /// The store's identity (`market` table).
    market: String,
    /// Last: every connection above is driven here.
    io: io::Io,
}

/// What messages show of a database (logs, errors, health): built from
/// the parsed URL's user, hosts, ports and database, never from its text,
/// so a password (in the userinfo, a `password=` parameter, with a `/` or
/// percent-encoded, whatever the form) never appears.
fn shown(config: &Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(name) if name.contains(':') => {
                    format!("[{name}]")
                }
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

impl PostgresStore {
    /// Connects to the database `url` names and brings its schema up to
    /// date, for the import and export commands.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        // The parser's message names what is wrong, never the URL's text.
        let mut config: Config = url.parse().map_err(|e| {
            StoreError::Invalid(format!(
                "--store: not a PostgreSQL URL ({})",
                io::describe(&e)
            ))
        })?;
        let shown = shown(&config);
        config
            .application_name("trading-server")
            .connect_timeout(Duration::from_secs(10));
        let io = io::Io::start().map_err(StoreError::Failed)?;
        let cfg = config.clone();
        let (changes, market, records) = io
            .wait(async move {
                let client = io::connect(&cfg).await?;
                schema::migrate(&client).await?;
                let market = client
                    .query_one("SELECT id FROM market", &[])
                    .await?
                    .try_get::<_, String>(0)?;
                // The counter first: an import committing meanwhile is
                // noticed by the writer later.
                let changes = client
                    .query_one("SELECT value FROM meta WHERE key = 'changes'", &[])
                    .await?
                    .try_get::<_, i64>(0)?;
                let records = tables::load_symbols(&client)
                    .await
                    .map_err(|Fail(e)| MigrateError::Other(e))?;
                Ok::<_, MigrateError>((changes, market, records))
            })
            .map_err(StoreError::Failed)?
            .map_err(|e| match e {
                MigrateError::TooNew(version) => StoreError::Invalid(format!(
                    "store {shown} has schema version {version}, newer than this trading-server \
                     knows; upgrade trading-server"
                )),
                MigrateError::Failed(e) => {
                    StoreError::Failed(format!("store {shown}: {}", io::describe(&e)))
                }
                MigrateError::Other(e) => StoreError::Failed(format!("store {shown}: {e}")),
            })?;
        let (records, problems) = records;
        if let Some(problem) = problems.first() {
            return Err(StoreError::Failed(format!("store {shown}: {problem}")));
        }
        let records = Records::new(records).map_err(StoreError::Failed)?;
        Ok(PostgresStore {
            readers: Pool::new(config.clone()),
            config,
            shown,
            records: Arc::new(RwLock::new(Arc::new(records))),
            recent: Arc::default(),
            writer: None,
            problem: Arc::default(),
            changes,
            market,
            io,
        })
    }

    /// Opens the store for the server: it also takes ingest, and pushes the
    /// bars every write changes to `sink`.
    pub fn open_for_serving(
        url: &str,
        sink: Arc<dyn UpdateSink>,
    ) -> Result<PostgresStore, StoreError> {
        let mut store = PostgresStore::open(url)?;
        let config = store.config.clone();
        let conn = store
            .io
            .wait(async move { Conn::open(&config).await })
            .map_err(StoreError::Failed)?
            .map_err(|e| store.failed(e))?;
        store.writer = Some(writer::Writer::start(
            store.io.handle(),
            conn,
            store.config.clone(),
            store.shown.clone(),
            store.changes,
            writer::Shared {
                records: Arc::clone(&store.records),
                recent: Arc::clone(&store.recent),
                sink,
                problem: Arc::clone(&store.problem),
            },
        ));
        Ok(store)
    }

    fn failed(&self, e: Fail) -> StoreError {
        StoreError::Failed(format!("store {}: {e}", self.shown))
    }

    fn unavailable(&self, e: Fail) -> SourceError {
        SourceError::Unavailable(format!("store {}: {e}", self.shown))
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

    /// A read connection.
    async fn reader(&self) -> Result<Lease<'_>, SourceError> {
        self.readers
            .get(&self.io)
            .await
            .map_err(|e| self.unavailable(e))
    }

    /// The kept bars of a series (`history`), built if missing or stale,
    /// and the bars after them: kept too while the symbol has not been
    /// written since, else read from the database.
    async fn kept(
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
            let conn = self.reader().await?;
            let tail = tables::since(&conn, id, res, entry.cutoff, recent::MAX_TAIL + 1)
                .await
                .map_err(|e| self.unavailable(e))?;
            if tail.len() <= recent::MAX_TAIL {
                return Ok((entry, tail.iter().map(StoredBar::to_bar).collect()));
            }
        }
        let conn = self.reader().await?;
        let newest = tables::since(&conn, id, res, i64::MIN, recent::WINDOW)
            .await
            .map_err(|e| self.unavailable(e))?;
        drop(conn);
        let newest: Vec<Bar> = newest.iter().map(StoredBar::to_bar).collect();
        let prices = PriceFormat::for_pricescale(symbol.info.pricescale);
        Ok(self.recent.put(id, res, stamp, newest, prices))
    }
}

/// Read connections, reused across requests.
struct Pool {
    config: Config,
    idle: Mutex<Vec<Conn>>,
}

/// A read connection, back to the pool when dropped (unless it broke).
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Only taken out in `drop`.
        self.conn.as_ref().expect("a leased connection")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take().filter(|c| !c.is_closed()) {
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}

impl Pool {
    fn new(config: Config) -> Pool {
        Pool {
            config,
            idle: Mutex::default(),
        }
    }

    async fn get(&self, io: &io::Io) -> Result<Lease<'_>, Fail> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                // One the database closed (a restart) is dropped.
                Some(conn) if conn.is_closed() => continue,
                Some(conn) => {
                    return Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                    })
                }
                None => break,
            }
        }
        let config = self.config.clone();
        let conn = io
            .run(async move { Conn::open(&config).await })
            .await
            .map_err(Fail)??;
        Ok(Lease {
            pool: self,
            conn: Some(conn),
        })
    }
}

#[async_trait]
impl DataSource for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn describe(&self) -> String {
        self.shown.clone()
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
        let (entry, tail) = self.kept(symbol, id, res).await?;
        if let Some(page) = entry.page(&tail, query) {
            return Ok(page);
        }
        // Reaching back before the kept bars: from the database.
        let conn = self.reader().await?;
        tables::page(&conn, id, res, query)
            .await
            .map_err(|e| self.unavailable(e))
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
        let conn = self.reader().await?;
        tables::latest_bar(&conn, id, res)
            .await
            .map_err(|e| self.unavailable(e))
    }

    async fn quote(&self, symbol: &Symbol, _now_ms: i64) -> Result<Option<Quote>, SourceError> {
        let Some((id, base)) = self.base_of(symbol) else {
            return Ok(None);
        };
        // The trading day and the one before it, from the kept daily bars.
        let (entry, tail) = self.kept(symbol, id, Resolution::Day).await?;
        let mut days = entry.bars().iter().chain(&tail).rev();
        let (Some(today), yesterday) = (days.next().copied(), days.next()) else {
            return Ok(None);
        };
        let last = if base == Resolution::Day {
            today.close
        } else {
            let conn = self.reader().await?;
            let latest = tables::latest(&conn, id, base, 1)
                .await
                .map_err(|e| self.unavailable(e))?;
            match latest.first() {
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

    fn health(&self) -> Result<(), Unhealthy> {
        match &*self.problem.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(problem) => Err(Unhealthy {
                reason: Reason::Unavailable,
                detail: problem.clone(),
            }),
            None => Ok(()),
        }
    }

    fn ingest(&self) -> Option<&dyn Ingest> {
        self.writer.as_ref().map(|w| w as &dyn Ingest)
    }
}

impl Store for PostgresStore {
    fn records(&self) -> Result<Records, StoreError> {
        let config = self.config.clone();
        let (records, problems) = self
            .io
            .wait(async move {
                let client = io::connect(&config).await?;
                tables::load_symbols(&client).await
            })
            .map_err(StoreError::Failed)?
            .map_err(|e| self.failed(e))?;
        if let Some(problem) = problems.first() {
            return Err(StoreError::Failed(format!(
                "store {}: {problem}",
                self.shown
            )));
        }
        Records::new(records).map_err(StoreError::Failed)
    }

    fn upsert_symbols(
        &self,
        infos: Vec<SymbolInfo>,
    ) -> Result<Vec<(String, Registered)>, StoreError> {
        for info in &infos {
            check_info(info)?;
        }
        let config = self.config.clone();
        // Dropping the connection without a commit rolls everything back.
        self.io
            .wait(async move {
                let client = io::connect(&config).await?;
                client
                    .batch_execute(&format!(
                        "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
                    ))
                    .await?;
                let mut outcome = Vec::with_capacity(infos.len());
                for info in infos {
                    let registered = match tables::find_symbol(&client, &info.ticker).await? {
                        None => {
                            tables::insert_symbol(&client, &info).await?;
                            Registered::Added
                        }
                        Some((id, old, base)) => {
                            let old: SymbolInfo = match serde_json::from_str(&old) {
                                Ok(old) => old,
                                Err(e) => {
                                    return Ok(Err(StoreError::Failed(format!(
                                        "symbol {}: stored info: {e}",
                                        info.ticker
                                    ))))
                                }
                            };
                            if old == info {
                                Registered::Unchanged
                            } else {
                                if base.is_some()
                                    && (old.session != info.session
                                        || old.timezone != info.timezone)
                                {
                                    return Ok(Err(StoreError::Invalid(format!(
                                        "{}: cannot change the session or timezone of a symbol \
                                         that has bars (from {} {} to {} {}): its bars were \
                                         placed by the old ones",
                                        info.ticker,
                                        old.session,
                                        old.timezone,
                                        info.session,
                                        info.timezone
                                    ))));
                                }
                                tables::update_symbol(&client, id, &info, base).await?;
                                Registered::Updated
                            }
                        }
                    };
                    outcome.push((info.ticker.clone(), registered));
                }
                tables::bump_changes(&client).await?;
                client.batch_execute("COMMIT").await?;
                Ok::<_, Fail>(Ok(outcome))
            })
            .map_err(StoreError::Failed)?
            .map_err(|e| self.failed(e))?
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
        Ok(Box::new(import::PgImport::begin(
            self, info, resolution, calendar,
        )?))
    }

    fn scan(
        &self,
        symbol: &SymbolRecord,
        resolution: Resolution,
        from: i64,
        to: i64,
        each: &mut dyn FnMut(&StoredBar) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        // Read ahead on the store's runtime, handed over in chunks: `each`
        // runs here, on the caller's thread.
        let (chunks, mut received) = tokio::sync::mpsc::channel::<Result<Vec<StoredBar>, Fail>>(4);
        let (config, id) = (self.config.clone(), symbol.id);
        self.io.handle().spawn(async move {
            let read = async {
                let conn = Conn::open(&config).await?;
                let rows = tables::stream(&conn, id, resolution, from, to).await?;
                pin_mut!(rows);
                let mut chunk = Vec::with_capacity(4096);
                while let Some(row) = rows.try_next().await? {
                    chunk.push(tables::bar_of_row(&row)?);
                    if chunk.len() == 4096 {
                        let full = std::mem::replace(&mut chunk, Vec::with_capacity(4096));
                        if chunks.send(Ok(full)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                let _ = chunks.send(Ok(chunk)).await;
                Ok::<_, Fail>(())
            };
            if let Err(e) = read.await {
                let _ = chunks.send(Err(e)).await;
            }
        });
        while let Some(chunk) = received.blocking_recv() {
            for bar in chunk.map_err(|e| self.failed(e))? {
                each(&bar).map_err(StoreError::Failed)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl crate::replication::Applier for PostgresStore {
    fn records(&self) -> Arc<Records> {
        self.snapshot()
    }

    fn market(&self) -> &str {
        &self.market
    }

    async fn followed(&self) -> Result<Option<String>, String> {
        let config = self.config.clone();
        self.io
            .run(async move {
                let conn = io::connect(&config).await?;
                let row = conn.query_one("SELECT stream FROM market", &[]).await?;
                row.try_get::<_, Option<String>>(0)
            })
            .await?
            .map_err(|e| format!("store {}: {}", self.shown, io::describe(&e)))
    }

    async fn follow(&self, log: &str) -> Result<(), String> {
        let (config, log) = (self.config.clone(), log.to_string());
        self.io
            .run(async move {
                let conn = io::connect(&config).await?;
                conn.execute("UPDATE market SET stream = $1", &[&log])
                    .await
                    .map(drop)
            })
            .await?
            .map_err(|e| format!("store {}: {}", self.shown, io::describe(&e)))
    }

    async fn position(&self, log: &str) -> Result<u64, String> {
        let (config, log) = (self.config.clone(), log.to_string());
        self.io
            .run(async move {
                let conn = Conn::open(&config).await?;
                logged::position(&conn, &log).await
            })
            .await?
            .map_err(|e| format!("store {}: {e}", self.shown))
    }

    async fn apply_logged(
        &self,
        log: &str,
        entries: Vec<crate::replication::Logged>,
    ) -> Result<Vec<crate::replication::Outcome>, String> {
        let Some(writer) = &self.writer else {
            return Err("the store was not opened for serving".into());
        };
        writer.apply_logged(log, entries).await
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

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        let shown = |url: &str| super::shown(&url.parse().unwrap());
        for url in [
            "postgres://u:SECRET@db:5432/market",
            "postgresql://u:pa/SECRET@db:5432/market",
            "postgres://u@db:5432/market?password=SECRET",
            "postgres://u:SEC%52ET@db:5432/market",
            "postgres://u@db:5432/market?sslmode=disable&password=SECRET&application_name=x",
        ] {
            assert_eq!(shown(url), "postgres://u@db:5432/market", "{url}");
        }
        assert_eq!(shown("postgres://db/market"), "postgres://db:5432/market");
        assert_eq!(
            shown("postgres://u@a:1,b:2/m?password=SECRET"),
            "postgres://u@a:1,b:2/m"
        );
        assert_eq!(shown("postgres://u@[::1]:5/m"), "postgres://u@[::1]:5/m");
        // A URL that does not parse is refused without echoing it.
        for bad in [
            "postgres://u:SECRET@db:notaport/m",
            "postgres://u:SECRET@db/m?sslmode=SECRET",
        ] {
            let e = super::PostgresStore::open(bad)
                .err()
                .expect("refused")
                .to_string();
            assert!(!e.contains("SECRET"), "{e}");
            assert!(e.contains("not a PostgreSQL URL"), "{e}");
        }
    }
}
