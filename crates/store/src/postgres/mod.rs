//! A PostgreSQL store (`--store postgres://USER@HOST:PORT/DB`): the same
//! tables, rules and behaviour as the embedded store, in a database that
//! several processes can share.
//!
//! * served (`engine`: the [`Engine`](crate::engine::Engine) the shared
//!   `served` store and `writer` run on), reads take a connection from a
//!   small pool, each with its statements prepared once, and are one
//!   primary-key range scan each; the writer has a connection of its own,
//!   reopened when it breaks, and holds an advisory lock per transaction
//!   (`schema::WRITE_LOCK`), so writers of every process take turns;
//! * the import command streams each file into a staging table with COPY
//!   and merges it in one transaction (`import`); the server's writer
//!   notices (a change counter) and serves the new symbols and bars, and
//!   republishes live bars, without a restart;
//! * the schema is versioned and migrated at start-up under an advisory
//!   lock (`schema`); every connection is driven by the store's own
//!   runtime (`io`).

mod engine;
mod import;
mod io;
mod logged;
mod schema;
mod tables;

pub use engine::PgEngine;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{pin_mut, TryStreamExt};
use tokio_postgres::Config;
use trading_pro::types::SymbolInfo;

use crate::chain::is_base;
use crate::served::ServedStore;
use crate::{
    calendar_of, check_info, ImportSink, Records, Registered, Store, StoreError, StoredBar,
    SymbolRecord,
};
use trading_market::calendar::Resolution;
use trading_market::source::UpdateSink;

use schema::{MigrateError, WRITE_LOCK};
use tables::{Conn, Fail};

/// A PostgreSQL store as the import and export commands use it (see
/// [`Store`]); [`PostgresStore::open_for_serving`] serves one.
pub struct PostgresStore {
    config: Config,
    /// The URL without its password, for messages.
    shown: String,
    /// The symbols when it was opened.
    records: Records,
    /// The change counter when the symbols were loaded.
    changes: i64,
    /// The store's identity (`market` table).
    market: String,
    /// Last: every connection above is driven here.
    io: Arc<io::Io>,
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
        // A peer that stops answering is found out by the kernel too: an
        // idle connection by keepalives, one with unacknowledged data by
        // the user timeout (the engine also bounds every call itself).
        config
            .application_name("trading-server")
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(2))
            .keepalives_retries(3)
            .tcp_user_timeout(Duration::from_secs(15));
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
                    .map_err(|e| MigrateError::Other(e.detail))?;
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
            config,
            shown,
            records,
            changes,
            market,
            io: Arc::new(io),
        })
    }

    /// Opens the store for the server: it also takes ingest (and a shared
    /// log's entries), and pushes the bars every write changes to `sink`.
    /// Every database call is bounded by `timeout` (see `PgEngine`).
    pub fn open_for_serving(
        url: &str,
        sink: Arc<dyn UpdateSink>,
        timeout: Duration,
        broker: crate::trading::BrokerConfig,
    ) -> Result<ServedStore<PgEngine>, StoreError> {
        let store = PostgresStore::open(url)?;
        let engine = PgEngine::new(
            store.config,
            store.shown.clone(),
            store.market,
            store.io,
            timeout,
        );
        ServedStore::start(engine, store.records, store.changes, sink, broker)
            .map_err(|e| StoreError::Failed(format!("store {}: {e}", store.shown)))
    }

    fn failed(&self, e: Fail) -> StoreError {
        StoreError::Failed(format!("store {}: {e}", self.shown))
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
