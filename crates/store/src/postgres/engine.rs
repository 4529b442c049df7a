//! PostgreSQL as an [`Engine`]: reads on pooled connections with their
//! statements prepared once, and the writer's own connection, reopened
//! when it breaks. Every connection is driven by the store's runtime
//! (`io`), and the writer runs there too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio_postgres::Config;
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage};

use super::schema::WRITE_LOCK;
use super::tables::{self, Conn, Fail, Result};
use super::{io, logged};
use crate::chain::Dirty;
use crate::engine::{Engine, OutcomeRow, WriteConn, WriterTask};
use crate::{StoredBar, SymbolRecord};

/// Idle read connections kept: as many as ever ran at once, up to this.
const MAX_IDLE: usize = 16;

pub struct PgEngine {
    config: Config,
    /// The URL without its password, for messages.
    shown: String,
    market: String,
    readers: Pool,
    /// Last: every connection above is driven here.
    io: Arc<io::Io>,
}

impl PgEngine {
    pub(super) fn new(config: Config, shown: String, market: String, io: Arc<io::Io>) -> PgEngine {
        PgEngine {
            readers: Pool::new(config.clone()),
            config,
            shown,
            market,
            io,
        }
    }

    /// A read connection.
    async fn reader(&self) -> Result<Lease<'_>> {
        self.readers.get(&self.io).await
    }

    /// Runs `work` on a fresh connection of its own, on the store's runtime.
    async fn on_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(Conn) -> futures_util::future::BoxFuture<'static, Result<T>> + Send + 'static,
    ) -> Result<T> {
        let config = self.config.clone();
        self.io
            .run(async move { work(Conn::open(&config).await?).await })
            .await
            .map_err(Fail)?
    }
}

#[async_trait]
impl Engine for PgEngine {
    type Writer = PgWriter;

    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn market(&self) -> &str {
        &self.market
    }

    fn open_writer(&self) -> Result<PgWriter> {
        let config = self.config.clone();
        let conn = self
            .io
            .wait(async move { Conn::open(&config).await })
            .map_err(Fail)??;
        Ok(PgWriter {
            conn: Some(conn),
            config: self.config.clone(),
        })
    }

    fn spawn_writer(&self, writer: WriterTask) {
        self.io.handle().spawn(writer);
    }

    async fn page(&self, id: i64, res: Resolution, query: &BarQuery) -> Result<BarsPage> {
        tables::page(&*self.reader().await?, id, res, query).await
    }

    async fn since(
        &self,
        id: i64,
        res: Resolution,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>> {
        tables::since(&*self.reader().await?, id, res, after, limit).await
    }

    async fn latest(&self, id: i64, res: Resolution, n: usize) -> Result<Vec<StoredBar>> {
        tables::latest(&*self.reader().await?, id, res, n).await
    }

    async fn latest_bar(&self, id: i64, res: Resolution) -> Result<Option<Bar>> {
        tables::latest_bar(&*self.reader().await?, id, res).await
    }

    async fn followed(&self) -> Result<Option<String>> {
        self.on_connection(|conn| {
            Box::pin(async move {
                let row = conn
                    .client
                    .query_one("SELECT stream FROM market", &[])
                    .await?;
                Ok(row.try_get::<_, Option<String>>(0)?)
            })
        })
        .await
    }

    async fn follow(&self, log: &str) -> Result<()> {
        let log = log.to_string();
        self.on_connection(move |conn| {
            Box::pin(async move {
                conn.client
                    .execute("UPDATE market SET stream = $1", &[&log])
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn position(&self, log: &str) -> Result<u64> {
        let log = log.to_string();
        self.on_connection(move |conn| Box::pin(async move { logged::position(&conn, &log).await }))
            .await
    }
}

/// The writer's connection: None after it failed, until it is reopened.
pub struct PgWriter {
    conn: Option<Conn>,
    config: Config,
}

impl PgWriter {
    /// The connection, reopened if it was lost.
    async fn conn(&mut self) -> Result<&Conn> {
        if self.conn.as_ref().is_some_and(Conn::is_closed) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(Conn::open(&self.config).await?);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| Fail("no connection".into()))
    }

    async fn execute(&mut self, sql: &str) -> Result<()> {
        self.conn().await?.client.batch_execute(sql).await?;
        Ok(())
    }
}

#[async_trait]
impl WriteConn for PgWriter {
    async fn begin(&mut self, logged: bool) -> Result<()> {
        // Entries of a shared log are durable there already: the commit
        // need not wait for PostgreSQL's own log flush (`writer`).
        let flush = if logged {
            "SET LOCAL synchronous_commit = off;"
        } else {
            ""
        };
        self.execute(&format!(
            "BEGIN; {flush} SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))
        .await
    }

    async fn commit(&mut self) -> Result<()> {
        self.execute("COMMIT").await
    }

    async fn rollback(&mut self) {
        if let Some(conn) = &self.conn {
            let _ = conn.client.batch_execute("ROLLBACK").await;
        }
    }

    async fn savepoint(&mut self) -> Result<()> {
        self.execute("SAVEPOINT job").await
    }

    async fn release(&mut self) -> Result<()> {
        self.execute("RELEASE job").await
    }

    async fn rollback_to_savepoint(&mut self) -> Result<()> {
        self.execute("ROLLBACK TO job; RELEASE job").await
    }

    async fn find_key(&mut self, endpoint: &str, key: &str) -> Result<Option<(i64, i64, i64)>> {
        tables::find_key(self.conn().await?, endpoint, key).await
    }

    async fn insert_key(
        &mut self,
        endpoint: &str,
        key: &str,
        fingerprint: i64,
        applied: i64,
        now_ms: i64,
    ) -> Result<()> {
        tables::insert_key(
            self.conn().await?,
            endpoint,
            key,
            fingerprint,
            applied,
            now_ms,
        )
        .await
    }

    async fn get_many(
        &mut self,
        wanted: &[(i64, Resolution, i64)],
    ) -> Result<HashMap<(i64, i64), StoredBar>> {
        // In one round trip.
        tables::get_many(self.conn().await?, wanted).await
    }

    async fn newest_times(
        &mut self,
        id: i64,
        resolutions: &[Resolution],
    ) -> Result<Vec<(Resolution, Option<i64>)>> {
        tables::newest_times(self.conn().await?, id, resolutions).await
    }

    async fn set_base(&mut self, id: i64, base: Resolution) -> Result<()> {
        tables::set_base(self.conn().await?, id, base).await
    }

    async fn write_many(&mut self, id: i64, base: Resolution, bars: &[StoredBar]) -> Result<()> {
        tables::write_many(self.conn().await?, id, base, bars).await
    }

    async fn rebuild(
        &mut self,
        id: i64,
        calendar: &TradingCalendar,
        base: Resolution,
        dirty: &Dirty,
    ) -> Result<()> {
        tables::rebuild(self.conn().await?, id, calendar, base, dirty).await
    }

    async fn since(
        &mut self,
        id: i64,
        res: Resolution,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>> {
        tables::since(self.conn().await?, id, res, after, limit).await
    }

    async fn latest_bar(&mut self, id: i64, res: Resolution) -> Result<Option<Bar>> {
        tables::latest_bar(self.conn().await?, id, res).await
    }

    async fn changes(&mut self) -> Result<i64> {
        tables::changes(self.conn().await?).await
    }

    async fn load_symbols(&mut self) -> Result<(Vec<SymbolRecord>, Vec<String>)> {
        tables::load_symbols(&self.conn().await?.client).await
    }

    async fn prune(&mut self, keys_before_ms: i64, outcomes_before_ms: i64) {
        if let Ok(conn) = self.conn().await {
            let _ = tables::prune_keys(&conn.client, keys_before_ms).await;
            let _ = logged::prune(conn, outcomes_before_ms).await;
        }
    }

    async fn position(&mut self, log: &str) -> Result<u64> {
        logged::position(self.conn().await?, log).await
    }

    async fn set_position(&mut self, log: &str, seq: u64) -> Result<()> {
        logged::set_position(self.conn().await?, log, seq).await
    }

    async fn recorded(&mut self, log: &str, from: u64, to: u64) -> Result<Vec<OutcomeRow>> {
        logged::recorded(self.conn().await?, log, from, to).await
    }

    async fn record(&mut self, log: &str, rows: &[OutcomeRow], now_ms: i64) -> Result<()> {
        logged::record(self.conn().await?, log, rows, now_ms).await
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

    async fn get(&self, io: &io::Io) -> Result<Lease<'_>> {
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
