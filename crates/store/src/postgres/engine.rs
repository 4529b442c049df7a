//! PostgreSQL as an [`Engine`]: reads on pooled connections with their
//! statements prepared once, and the writer's own connection, reopened
//! when it breaks. Every connection is driven by the store's runtime
//! (`io`), and the writer runs there too.
//!
//! Every call is bounded: the database cuts a statement at the store
//! timeout (`statement_timeout`, and an idle transaction likewise), and
//! this side gives up on a call at the same timeout plus a margin, for a
//! peer that went silent without closing (the database cannot cut what
//! never reaches it). A connection that failed or timed out is never used
//! again; one abandoned inside a transaction has its server process ended
//! from a new connection, so the locks it holds do not outlive it. Pooled
//! connections are renewed after [`MAX_AGE`], so a setting changed on the
//! database reaches them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio_postgres::Config;
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage, Reason};

use super::schema::WRITE_LOCK;
use super::tables::{self, Conn, Fail, Result};
use super::{io, logged};
use crate::chain::Dirty;
use crate::engine::{Engine, OutcomeRow, WriteConn, WriterTask};
use crate::{StoredBar, SymbolRecord};

/// A read on a pooled connection, bounded; a connection that failed or
/// timed out is closed, not pooled.
macro_rules! read {
    ($engine:ident, |$conn:ident| $call:expr) => {{
        let mut lease = $engine.readers.get(&$engine.io).await?;
        let $conn: &Conn = &lease;
        let done = $engine.connector.bounded($call).await;
        if done.is_err() {
            lease.discard();
        }
        done
    }};
}

/// A call on the writer's connection, bounded; a connection that timed
/// out is given up.
macro_rules! call {
    ($writer:ident, |$conn:ident| $call:expr) => {{
        let limit = $writer.connector.limit();
        let $conn = $writer.conn().await?;
        let done = bounded(limit, $call).await;
        $writer.after(&done);
        done
    }};
}

/// Idle read connections kept: as many as ever ran at once, up to this.
const MAX_IDLE: usize = 16;

/// A connection older than this is closed rather than reused.
const MAX_AGE: Duration = Duration::from_secs(300);

/// How the engine's connections are opened and bounded.
#[derive(Clone)]
struct Connector {
    config: Config,
    /// The store timeout: the database's limit on a statement, and this
    /// side's (plus [`MARGIN`]) on a call.
    timeout: Duration,
}

/// What this side waits beyond the database's own limit, so that the
/// database's cut (with its reason) comes first when it can.
const MARGIN: Duration = Duration::from_secs(2);

impl Connector {
    /// A connection with the store's limits set (on the current runtime:
    /// call it through `Io`).
    async fn open(&self) -> Result<Conn> {
        let ms = self.timeout.as_millis();
        let opened = async {
            let conn = Conn::open(&self.config).await?;
            conn.client
                .batch_execute(&format!(
                    "SET statement_timeout = {ms}; \
                     SET idle_in_transaction_session_timeout = {ms}"
                ))
                .await?;
            Ok(conn)
        };
        self.bounded(opened).await
    }

    /// How long this side waits for one call: the store timeout and a
    /// margin.
    fn limit(&self) -> Duration {
        self.timeout + MARGIN
    }

    /// `work`, bounded by [`Connector::limit`].
    async fn bounded<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        bounded(self.limit(), work).await
    }

    /// Ends the server process of a connection abandoned mid-transaction
    /// (its locks go with it), from a new connection. Best effort: one
    /// that cannot be reached now ends at its idle-transaction timeout.
    async fn end_backend(&self, pid: i32) {
        if let Ok(conn) = self.open().await {
            let _ = self
                .bounded(async {
                    conn.client
                        .execute("SELECT pg_terminate_backend($1)", &[&pid])
                        .await?;
                    Ok(())
                })
                .await;
        }
    }
}

/// `work`, or a timeout error once `limit` has passed.
async fn bounded<T>(limit: Duration, work: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => Err(Fail::of(
            Reason::Timeout,
            format!("no answer from the database within {} s", limit.as_secs()),
        )),
    }
}

pub struct PgEngine {
    connector: Connector,
    /// The URL without its password, for messages.
    shown: String,
    market: String,
    readers: Pool,
    /// Last: every connection above is driven here.
    io: Arc<io::Io>,
}

impl PgEngine {
    pub(super) fn new(
        config: Config,
        shown: String,
        market: String,
        io: Arc<io::Io>,
        timeout: Duration,
    ) -> PgEngine {
        let connector = Connector { config, timeout };
        PgEngine {
            readers: Pool::new(connector.clone()),
            connector,
            shown,
            market,
            io,
        }
    }

    /// Runs `work` on a fresh connection of its own, on the store's runtime.
    async fn on_connection<T: Send + 'static>(
        &self,
        work: impl FnOnce(Conn) -> futures_util::future::BoxFuture<'static, Result<T>> + Send + 'static,
    ) -> Result<T> {
        let connector = self.connector.clone();
        self.io
            .run(async move {
                let conn = connector.open().await?;
                connector.bounded(work(conn)).await
            })
            .await
            .map_err(Fail::new)?
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
        let connector = self.connector.clone();
        let conn = self
            .io
            .wait(async move { connector.open().await })
            .map_err(Fail::new)??;
        Ok(PgWriter {
            conn: Some(conn),
            connector: self.connector.clone(),
            txid: None,
            abandoned: None,
            lost_commit: false,
        })
    }

    fn close(&self) {
        self.readers.close();
    }

    fn spawn_writer(&self, writer: WriterTask) {
        self.io.handle().spawn(writer);
    }

    async fn page(&self, id: i64, res: Resolution, query: &BarQuery) -> Result<BarsPage> {
        read!(self, |conn| tables::page(conn, id, res, query))
    }

    async fn since(
        &self,
        id: i64,
        res: Resolution,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>> {
        read!(self, |conn| tables::since(conn, id, res, after, limit))
    }

    async fn latest(&self, id: i64, res: Resolution, n: usize) -> Result<Vec<StoredBar>> {
        read!(self, |conn| tables::latest(conn, id, res, n))
    }

    async fn latest_bar(&self, id: i64, res: Resolution) -> Result<Option<Bar>> {
        read!(self, |conn| tables::latest_bar(conn, id, res))
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
    connector: Connector,
    /// The transaction in progress (`txid_current()`), to learn its fate
    /// when the reply to its COMMIT is lost.
    txid: Option<i64>,
    /// The server process of a connection given up inside a transaction:
    /// ended before the next one begins.
    abandoned: Option<i32>,
    /// The last COMMIT failed without an answer from the database.
    lost_commit: bool,
}

impl PgWriter {
    /// The connection, reopened if it was lost.
    async fn conn(&mut self) -> Result<&Conn> {
        if self.conn.as_ref().is_some_and(Conn::is_closed) {
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(self.connector.open().await?);
        }
        self.conn.as_ref().ok_or_else(|| Fail::new("no connection"))
    }

    /// `sql`, bounded.
    async fn execute(&mut self, sql: &str) -> Result<()> {
        call!(self, |conn| async {
            Ok(conn.client.batch_execute(sql).await?)
        })
    }

    async fn prune_now(&mut self, keys_before_ms: i64, outcomes_before_ms: i64) -> Result<u64> {
        call!(self, |conn| async {
            tables::prune_keys(&conn.client, keys_before_ms).await?;
            logged::prune(conn, outcomes_before_ms).await
        })
    }

    /// A call that timed out, whose connection broke, or that the
    /// database refused for its state (read-only, disk full) leaves the
    /// connection unused from then on: the next one gets the database's
    /// settings as they are then.
    fn after<T>(&mut self, done: &Result<T>) {
        let broken = self.conn.as_ref().is_some_and(Conn::is_closed);
        if broken || matches!(done, Err(e) if e.reason != Reason::Unavailable) {
            self.give_up();
        }
    }

    /// Stops using the connection; its server process, if it may still
    /// hold the transaction's locks, is ended before the next begins.
    fn give_up(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.txid.is_some() {
                self.abandoned = Some(conn.pid);
            }
        }
    }
}

#[async_trait]
impl WriteConn for PgWriter {
    async fn begin(&mut self, logged: bool) -> Result<()> {
        if let Some(pid) = self.abandoned.take() {
            self.connector.end_backend(pid).await;
        }
        // A connection past its age is renewed between transactions.
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.born.elapsed() >= MAX_AGE)
        {
            self.conn = None;
        }
        self.txid = None;
        self.lost_commit = false;
        // Entries of a shared log are durable there already: the commit
        // need not wait for PostgreSQL's own log flush (`writer`).
        let flush = if logged {
            "SET LOCAL synchronous_commit = off;"
        } else {
            ""
        };
        let limit = self.connector.limit();
        let conn = self.conn().await?;
        let sql = format!(
            "BEGIN; {flush} SELECT pg_advisory_xact_lock({WRITE_LOCK}); SELECT txid_current()"
        );
        let began = bounded(limit, async { Ok(conn.client.simple_query(&sql).await?) }).await;
        match began {
            Ok(messages) => {
                self.txid = messages.iter().rev().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => {
                        row.get(0).and_then(|t| t.parse().ok())
                    }
                    _ => None,
                });
                Ok(())
            }
            Err(e) => {
                self.give_up();
                Err(e)
            }
        }
    }

    async fn commit(&mut self) -> Result<()> {
        let limit = self.connector.limit();
        let conn = self.conn().await?;
        let done = bounded(limit, async {
            Ok(conn.client.batch_execute("COMMIT").await)
        })
        .await;
        match done {
            Ok(Ok(())) => {
                self.txid = None;
                Ok(())
            }
            // The database answered: it did not commit.
            Ok(Err(e)) if e.code().is_some() => Err(e.into()),
            // No answer (the connection broke, or silence): it may have.
            Ok(Err(e)) => {
                self.lost_commit = true;
                self.give_up();
                Err(e.into())
            }
            Err(e) => {
                self.lost_commit = true;
                self.give_up();
                Err(e)
            }
        }
    }

    /// Asks the database on a new connection, after ending the old
    /// connection's server process (so the transaction is settled one way
    /// or the other): `txid_status` of the transaction.
    async fn committed(&mut self) -> Result<bool> {
        let Some(txid) = self.txid.filter(|_| self.lost_commit) else {
            return Ok(false);
        };
        if let Some(pid) = self.abandoned.take() {
            self.connector.end_backend(pid).await;
        }
        let deadline = Instant::now() + self.connector.timeout;
        loop {
            let limit = self.connector.limit();
            let conn = self.conn().await?;
            let status = bounded(limit, async {
                let row = conn
                    .client
                    .query_one("SELECT txid_status($1)", &[&txid])
                    .await?;
                Ok(row.try_get::<_, Option<String>>(0)?)
            })
            .await;
            match status {
                Ok(Some(s)) if s == "committed" => {
                    self.txid = None;
                    return Ok(true);
                }
                Ok(Some(s)) if s == "aborted" => {
                    self.txid = None;
                    return Ok(false);
                }
                // Still ending: ask again.
                Ok(Some(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ok(_) => {
                    return Err(Fail::of(
                        Reason::Timeout,
                        format!("transaction {txid} has not ended yet"),
                    ))
                }
                Err(e) => {
                    self.give_up();
                    return Err(e);
                }
            }
        }
    }

    async fn rollback(&mut self) {
        if let Some(conn) = &self.conn {
            let limit = self.connector.limit();
            let rolled = bounded(limit, async {
                Ok(conn.client.batch_execute("ROLLBACK").await?)
            })
            .await;
            if rolled.is_err() {
                self.give_up();
            }
        }
        self.txid = None;
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
        call!(self, |conn| tables::find_key(conn, endpoint, key))
    }

    async fn append_ledger(&mut self, records: &[(i64, String)]) -> Result<()> {
        call!(self, |conn| tables::append_ledger(conn, records))
    }

    async fn load_ledger(&mut self) -> Result<Vec<String>> {
        call!(self, |conn| tables::load_ledger(conn))
    }

    async fn insert_key(
        &mut self,
        endpoint: &str,
        key: &str,
        fingerprint: i64,
        applied: i64,
        now_ms: i64,
    ) -> Result<()> {
        call!(self, |conn| tables::insert_key(
            conn,
            endpoint,
            key,
            fingerprint,
            applied,
            now_ms
        ))
    }

    async fn get_many(
        &mut self,
        wanted: &[(i64, Resolution, i64)],
    ) -> Result<HashMap<(i64, i64), StoredBar>> {
        // In one round trip.
        call!(self, |conn| tables::get_many(conn, wanted))
    }

    async fn newest_times(
        &mut self,
        id: i64,
        resolutions: &[Resolution],
    ) -> Result<Vec<(Resolution, Option<i64>)>> {
        call!(self, |conn| tables::newest_times(conn, id, resolutions))
    }

    async fn set_base(&mut self, id: i64, base: Resolution) -> Result<()> {
        call!(self, |conn| tables::set_base(conn, id, base))
    }

    async fn write_many(&mut self, id: i64, base: Resolution, bars: &[StoredBar]) -> Result<()> {
        call!(self, |conn| tables::write_many(conn, id, base, bars))
    }

    async fn rebuild(
        &mut self,
        id: i64,
        calendar: &TradingCalendar,
        base: Resolution,
        dirty: &Dirty,
    ) -> Result<()> {
        call!(self, |conn| tables::rebuild(
            conn, id, calendar, base, dirty
        ))
    }

    async fn since(
        &mut self,
        id: i64,
        res: Resolution,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredBar>> {
        call!(self, |conn| tables::since(conn, id, res, after, limit))
    }

    async fn latest_bar(&mut self, id: i64, res: Resolution) -> Result<Option<Bar>> {
        call!(self, |conn| tables::latest_bar(conn, id, res))
    }

    async fn changes(&mut self) -> Result<i64> {
        call!(self, |conn| tables::changes(conn))
    }

    async fn load_symbols(&mut self) -> Result<(Vec<SymbolRecord>, Vec<String>)> {
        call!(self, |conn| tables::load_symbols(&conn.client))
    }

    async fn prune(&mut self, keys_before_ms: i64, outcomes_before_ms: i64) {
        let _ = self.prune_now(keys_before_ms, outcomes_before_ms).await;
    }

    async fn position(&mut self, log: &str) -> Result<u64> {
        call!(self, |conn| logged::position(conn, log))
    }

    async fn set_position(&mut self, log: &str, seq: u64) -> Result<()> {
        call!(self, |conn| logged::set_position(conn, log, seq))
    }

    async fn recorded(&mut self, log: &str, from: u64, to: u64) -> Result<Vec<OutcomeRow>> {
        call!(self, |conn| logged::recorded(conn, log, from, to))
    }

    async fn record(&mut self, log: &str, rows: &[OutcomeRow], now_ms: i64) -> Result<()> {
        call!(self, |conn| logged::record(conn, log, rows, now_ms))
    }
}

/// Read connections, reused across requests.
struct Pool {
    connector: Connector,
    idle: Mutex<Vec<Conn>>,
    /// The store closed: connections are not kept.
    closed: std::sync::atomic::AtomicBool,
}

/// A read connection, back to the pool when dropped (unless it broke,
/// failed, or is past its age).
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
}

impl Lease<'_> {
    /// Closes the connection instead of pooling it.
    fn discard(&mut self) {
        self.conn = None;
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        // Only taken out in `drop` and `discard`, after the last use.
        self.conn.as_ref().expect("a leased connection")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let reusable = |c: &Conn| !c.is_closed() && c.born.elapsed() < MAX_AGE;
        if let Some(conn) = self.conn.take().filter(reusable) {
            if self.pool.closed.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
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
    fn new(connector: Connector) -> Pool {
        Pool {
            connector,
            idle: Mutex::default(),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    async fn get(&self, io: &io::Io) -> Result<Lease<'_>> {
        loop {
            let idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match idle {
                // One the database closed (a restart), or too old, is
                // dropped.
                Some(conn) if conn.is_closed() || conn.born.elapsed() >= MAX_AGE => continue,
                Some(conn) => {
                    return Ok(Lease {
                        pool: self,
                        conn: Some(conn),
                    })
                }
                None => break,
            }
        }
        let connector = self.connector.clone();
        let conn = io
            .run(async move { connector.open().await })
            .await
            .map_err(Fail::new)??;
        Ok(Lease {
            pool: self,
            conn: Some(conn),
        })
    }
}
