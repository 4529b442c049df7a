//! One file's bars into the database, all or nothing.
//!
//! Rows are checked and numbered by the import command as they are read;
//! here they are buffered and streamed with `COPY ... FROM STDIN (FORMAT
//! binary)` into a temporary staging table inside the import's
//! transaction. At the commit, under the write lock, one statement merges
//! the staging table into `bars`, the coarser resolutions are rebuilt over
//! them, the symbol is registered or updated and the change counter bumped:
//! a running server sees the whole file at once, or nothing of it.
//!
//! Nothing touches `bars` before the commit, so a server's ingest keeps
//! running while a large file streams in; it waits only for the merge.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::pin_mut;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use trading_pro::types::SymbolInfo;

use super::schema::WRITE_LOCK;
use super::tables::{self, Conn, Fail};
use super::PostgresStore;
use crate::bar::code;
use crate::chain::Dirty;
use crate::{ImportSink, StoreError, StoredBar};
use trading_market::calendar::{Resolution, TradingCalendar};

/// Bars buffered before they are sent.
const BATCH: usize = 65_536;

pub struct PgImport<'a> {
    store: &'a PostgresStore,
    conn: Arc<Conn>,
    ticker: String,
    resolution: Resolution,
    calendar: TradingCalendar,
    /// Times this import stored: a repeated one is the file's mistake.
    seen: HashSet<i64>,
    buffer: Vec<StoredBar>,
    dirty: Dirty,
}

impl PgImport<'_> {
    /// Opens the import's transaction and staging table, after the checks
    /// that can fail before any row is read.
    pub fn begin<'a>(
        store: &'a PostgresStore,
        info: &SymbolInfo,
        resolution: Resolution,
        calendar: TradingCalendar,
    ) -> Result<PgImport<'a>, StoreError> {
        let config = store.config.clone();
        let ticker = info.ticker.clone();
        let (conn, found) = store
            .io
            .wait(async move {
                let conn = Conn::open(&config).await?;
                conn.client
                    .batch_execute(
                        "BEGIN;
                         CREATE TEMPORARY TABLE import_bars (
                             time bigint NOT NULL,
                             bar bytea NOT NULL
                         ) ON COMMIT DROP;",
                    )
                    .await?;
                let found = tables::find_symbol(&conn.client, &ticker).await?;
                Ok::<_, Fail>((conn, found))
            })
            .map_err(StoreError::Failed)?
            .map_err(|e| store.failed(e))?;
        if let Some((_, old, base)) = &found {
            check_fits(info, old, *base, resolution)?;
        }
        Ok(PgImport {
            store,
            conn: Arc::new(conn),
            ticker: info.ticker.clone(),
            resolution,
            calendar,
            seen: HashSet::new(),
            buffer: Vec::with_capacity(BATCH),
            dirty: Dirty::default(),
        })
    }

    /// Sends the buffered bars to the staging table.
    fn flush(&mut self) -> Result<(), StoreError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let bars = std::mem::replace(&mut self.buffer, Vec::with_capacity(BATCH));
        let conn = Arc::clone(&self.conn);
        self.store
            .io
            .wait(async move {
                let sink = conn
                    .client
                    .copy_in("COPY import_bars (time, bar) FROM STDIN (FORMAT binary)")
                    .await?;
                let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::BYTEA]);
                pin_mut!(writer);
                for bar in &bars {
                    writer
                        .as_mut()
                        .write(&[&bar.time, &&bar.encode()[..]])
                        .await?;
                }
                writer.finish().await?;
                Ok::<_, Fail>(())
            })
            .map_err(StoreError::Failed)?
            .map_err(|e| self.store.failed(e))
    }
}

/// Whether bars at `resolution` may go to a symbol stored as `old` with
/// base `base`: the same base, and (once it has bars) the same session
/// and time zone, which placed them.
fn check_fits(
    info: &SymbolInfo,
    old: &str,
    base: Option<Resolution>,
    resolution: Resolution,
) -> Result<(), StoreError> {
    match base {
        Some(base) if base != resolution => Err(StoreError::Invalid(format!(
            "{} has {} bars: its data is at resolution {}, so bars are imported at {} (not {})",
            info.ticker,
            base.as_str(),
            base.as_str(),
            base.as_str(),
            resolution.as_str()
        ))),
        Some(_) => {
            let old: SymbolInfo = serde_json::from_str(old).map_err(|e| {
                StoreError::Failed(format!("symbol {}: stored info: {e}", info.ticker))
            })?;
            if old.session != info.session || old.timezone != info.timezone {
                return Err(StoreError::Invalid(format!(
                    "{}: cannot change the session or timezone of a symbol that has bars (from \
                     {} {} to {} {})",
                    info.ticker, old.session, old.timezone, info.session, info.timezone
                )));
            }
            Ok(())
        }
        None => Ok(()),
    }
}

impl ImportSink for PgImport<'_> {
    fn put(&mut self, bar: &StoredBar) -> Result<bool, StoreError> {
        if !self.seen.insert(bar.time) {
            return Ok(false);
        }
        self.dirty.add(bar.time);
        self.buffer.push(*bar);
        if self.buffer.len() >= BATCH {
            self.flush()?;
        }
        Ok(true)
    }

    fn commit(mut self: Box<Self>, info: SymbolInfo) -> Result<(), StoreError> {
        self.flush()?;
        let conn = Arc::clone(&self.conn);
        let (resolution, calendar, dirty) = (self.resolution, self.calendar.clone(), self.dirty);
        let ticker = self.ticker;
        let store = self.store;
        store
            .io
            .wait(async move {
                let c = &conn.client;
                c.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
                    .await?;
                // Again, under the lock: another import may have committed
                // since this one began.
                let id = match tables::find_symbol(c, &ticker).await? {
                    Some((id, old, base)) => {
                        if let Err(e) = check_fits(&info, &old, base, resolution) {
                            return Ok(Err(e));
                        }
                        id
                    }
                    None => tables::insert_symbol(c, &info).await?,
                };
                let r = code(resolution) as i32;
                // Over stored bars, the import replaces those at its times.
                // Over none (a new symbol, or a range it has no bars in),
                // a plain insert does the same at about half the cost:
                // PostgreSQL's upsert logs a speculative insertion a row.
                let (first, last) = (dirty.first(), dirty.last());
                let clash = match (first, last) {
                    (Some(first), Some(last)) => c
                        .query_one(
                            "SELECT EXISTS (SELECT 1 FROM bars WHERE symbol = $1 AND \
                             resolution = $2 AND time >= $3 AND time <= $4)",
                            &[&id, &r, &first, &last],
                        )
                        .await?
                        .try_get::<_, bool>(0)?,
                    _ => false,
                };
                let insert = if clash {
                    "INSERT INTO bars (symbol, resolution, time, bar)
                     SELECT $1::bigint, $2::integer, time, bar FROM import_bars
                     ON CONFLICT (symbol, resolution, time) DO UPDATE SET bar = excluded.bar"
                } else {
                    "INSERT INTO bars (symbol, resolution, time, bar)
                     SELECT $1::bigint, $2::integer, time, bar FROM import_bars"
                };
                c.execute(insert, &[&id, &r]).await?;
                tables::update_symbol(c, id, &info, Some(resolution)).await?;
                tables::rebuild(&conn, id, &calendar, resolution, &dirty).await?;
                tables::bump_changes(c).await?;
                c.batch_execute("COMMIT").await?;
                Ok::<_, Fail>(Ok(()))
            })
            .map_err(StoreError::Failed)?
            .map_err(|e| store.failed(e))?
    }
}
