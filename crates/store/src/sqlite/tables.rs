//! Reading and writing the tables of `schema`, on any connection: the
//! request path's readers, the server's writer and the import command all
//! go through these.

use rusqlite::{params, Connection, OptionalExtension};
use trading_pro::types::SymbolInfo;

use crate::chain::{child_of, served, Buckets, Dirty};
use crate::{StoredBar, SymbolRecord};
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage};

pub use crate::bar::{code, from_code};

fn decode(time: i64, blob: &[u8]) -> rusqlite::Result<StoredBar> {
    StoredBar::decode(time, blob).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            blob.len(),
            rusqlite::types::Type::Blob,
            format!("a bar of {} bytes", blob.len()).into(),
        )
    })
}

fn row_bar(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredBar> {
    let time: i64 = row.get(0)?;
    let blob = row.get_ref(1)?.as_blob()?;
    decode(time, blob)
}

/// Bars for a `getBars` request: the newest `limit` (or `count_back`)
/// before `to`, from `from` on unless `count_back` is given. Mirrors the
/// synthetic market's paging (`market::page`): the cost is the bars
/// returned, one range scan.
pub fn page(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    q: &BarQuery,
) -> rusqlite::Result<BarsPage> {
    let from = q.from_s.saturating_mul(1000);
    let to = q.to_s.saturating_mul(1000);
    let want = q.count_back.map_or(q.limit, |n| n.min(q.limit));
    let mut rows: Vec<StoredBar> = Vec::with_capacity(want.min(5_000) + 1);
    if q.count_back.is_some() {
        let mut stmt = conn.prepare_cached(
            "SELECT time, bar FROM bars WHERE symbol = ?1 AND resolution = ?2 AND time < ?3
             ORDER BY time DESC LIMIT ?4",
        )?;
        for bar in stmt.query_map(params![symbol, code(res), to, want as i64 + 1], row_bar)? {
            rows.push(bar?);
        }
    } else {
        let mut stmt = conn.prepare_cached(
            "SELECT time, bar FROM bars
             WHERE symbol = ?1 AND resolution = ?2 AND time >= ?3 AND time < ?4
             ORDER BY time DESC LIMIT ?5",
        )?;
        let found = stmt.query_map(
            params![symbol, code(res), from, to, want as i64 + 1],
            row_bar,
        )?;
        for bar in found {
            rows.push(bar?);
        }
    }
    let next_time = if rows.len() > want {
        rows.pop().map(|b| b.time)
    } else if q.count_back.is_some() {
        None
    } else {
        last_time_before(conn, symbol, res, from.min(to))?
    };
    // No bar before `to` at all: only when nothing was found in the range
    // and nothing lies before it either.
    let no_data = rows.is_empty() && (q.count_back.is_some() || next_time.is_none());
    Ok(BarsPage {
        bars: rows.iter().rev().map(StoredBar::to_bar).collect(),
        no_data,
        next_time,
    })
}

fn last_time_before(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    t: i64,
) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT time FROM bars WHERE symbol = ?1 AND resolution = ?2 AND time < ?3
         ORDER BY time DESC LIMIT 1",
    )?
    .query_row(params![symbol, code(res), t], |r| r.get(0))
    .optional()
}

/// The newest `n` bars of a resolution, newest first.
pub fn latest(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    n: usize,
) -> rusqlite::Result<Vec<StoredBar>> {
    let mut stmt = conn.prepare_cached(
        "SELECT time, bar FROM bars WHERE symbol = ?1 AND resolution = ?2
         ORDER BY time DESC LIMIT ?3",
    )?;
    let bars = stmt.query_map(params![symbol, code(res), n as i64], row_bar)?;
    bars.collect()
}

/// Bars from `from` on (at most `n`, the newest kept), in time order.
pub fn since(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    from: i64,
    n: usize,
) -> rusqlite::Result<Vec<StoredBar>> {
    let mut stmt = conn.prepare_cached(
        "SELECT time, bar FROM bars WHERE symbol = ?1 AND resolution = ?2 AND time >= ?3
         ORDER BY time DESC LIMIT ?4",
    )?;
    let mut bars: Vec<StoredBar> = stmt
        .query_map(params![symbol, code(res), from, n as i64], row_bar)?
        .collect::<rusqlite::Result<_>>()?;
    bars.reverse();
    Ok(bars)
}

pub fn get(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    time: i64,
) -> rusqlite::Result<Option<StoredBar>> {
    conn.prepare_cached(
        "SELECT time, bar FROM bars WHERE symbol = ?1 AND resolution = ?2 AND time = ?3",
    )?
    .query_row(params![symbol, code(res), time], row_bar)
    .optional()
}

/// Every bar with time in `[from, to)`, in time order.
pub fn scan(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    from: i64,
    to: i64,
    each: &mut dyn FnMut(&StoredBar) -> Result<(), String>,
) -> Result<(), ScanError> {
    let mut stmt = conn.prepare_cached(
        "SELECT time, bar FROM bars
         WHERE symbol = ?1 AND resolution = ?2 AND time >= ?3 AND time < ?4 ORDER BY time",
    )?;
    let mut rows = stmt.query(params![symbol, code(res), from, to])?;
    while let Some(row) = rows.next()? {
        each(&row_bar(row)?).map_err(ScanError::Stopped)?;
    }
    Ok(())
}

pub enum ScanError {
    Sql(rusqlite::Error),
    /// The callback said stop, and why.
    Stopped(String),
}

impl From<rusqlite::Error> for ScanError {
    fn from(e: rusqlite::Error) -> Self {
        ScanError::Sql(e)
    }
}

/// Stores a bar (replacing one at the same time). False when this write
/// (`gen`) already stored a bar at that time, which is then kept.
pub fn put(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    bar: &StoredBar,
    gen: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "INSERT INTO bars (symbol, resolution, time, gen, bar) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (symbol, resolution, time) DO UPDATE
             SET gen = excluded.gen, bar = excluded.bar WHERE gen <> excluded.gen",
        )?
        .execute(params![symbol, code(res), bar.time, gen, &bar.encode()[..]])?;
    Ok(changed == 1)
}

/// Stores a bar this write computed (replacing whatever is there).
pub fn overwrite(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
    bar: &StoredBar,
    gen: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO bars (symbol, resolution, time, gen, bar)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![symbol, code(res), bar.time, gen, &bar.encode()[..]])?;
    Ok(())
}

/// Rebuilds every coarser resolution over the base bars `dirty` names
/// (see `chain`): for each level, the buckets those cover are deleted and
/// written again from the level below, within the caller's transaction.
pub fn rebuild(
    conn: &Connection,
    symbol: i64,
    calendar: &TradingCalendar,
    base: Resolution,
    dirty: &Dirty,
    gen: i64,
) -> rusqlite::Result<()> {
    let mut changed: Vec<(Resolution, Dirty)> = vec![(base, dirty.clone())];
    for res in served(base).skip(1) {
        let Some(child) = child_of(res, base) else {
            continue;
        };
        let Some(child_dirty) = changed
            .iter()
            .find(|(r, _)| *r == child)
            .map(|(_, d)| d.clone())
        else {
            continue;
        };
        let mut rebuilt = Dirty::default();
        for (from, to) in Buckets::new(calendar, res).spans(&child_dirty) {
            conn.prepare_cached(
                "DELETE FROM bars WHERE symbol = ?1 AND resolution = ?2 AND time >= ?3 AND time < ?4",
            )?
            .execute(params![symbol, code(res), from, to])?;
            let mut aggregator = Buckets::new(calendar, res).aggregator();
            let mut stmt = conn.prepare_cached(
                "SELECT time, bar FROM bars
                 WHERE symbol = ?1 AND resolution = ?2 AND time >= ?3 AND time < ?4
                 ORDER BY time",
            )?;
            let mut rows = stmt.query(params![symbol, code(child), from, to])?;
            // Parents are written while the children's cursor is open: they
            // are another resolution, a key range the cursor never visits.
            while let Some(row) = rows.next()? {
                if let Some(done) = aggregator.push(&row_bar(row)?) {
                    overwrite(conn, symbol, res, &done, gen)?;
                    rebuilt.add(done.time);
                }
            }
            if let Some(done) = aggregator.finish() {
                overwrite(conn, symbol, res, &done, gen)?;
                rebuilt.add(done.time);
            }
        }
        changed.push((res, rebuilt));
    }
    Ok(())
}

/// A number no earlier write used, for `put`'s duplicate check.
pub fn next_gen(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("UPDATE meta SET value = value + 1 WHERE key = 'gen' RETURNING value")?
        .query_row([], |r| r.get(0))
}

/// Every symbol. A row that cannot be read as a symbol is skipped with its
/// reason (returned), so one bad row does not hide the rest.
pub fn load_symbols(conn: &Connection) -> rusqlite::Result<(Vec<SymbolRecord>, Vec<String>)> {
    let mut stmt = conn.prepare_cached("SELECT id, info, base FROM symbols ORDER BY id")?;
    let mut rows = stmt.query([])?;
    let (mut records, mut problems) = (Vec::new(), Vec::new());
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        let info: String = row.get(1)?;
        let base: Option<i64> = row.get(2)?;
        let record = serde_json::from_str::<SymbolInfo>(&info)
            .map_err(|e| format!("symbol #{id}: its info does not parse: {e}"))
            .and_then(|info| SymbolRecord::new(id, info, base.and_then(from_code)));
        match record {
            Ok(r) => records.push(r),
            Err(e) => problems.push(e),
        }
    }
    Ok((records, problems))
}

/// The symbol row of `ticker` (case-insensitive): id, registered info and
/// base.
pub fn find_symbol(
    conn: &Connection,
    ticker: &str,
) -> rusqlite::Result<Option<(i64, String, Option<Resolution>)>> {
    conn.prepare_cached("SELECT id, info, base FROM symbols WHERE ticker_key = ?1")?
        .query_row(params![ticker.to_ascii_uppercase()], |r| {
            let base: Option<i64> = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, base.and_then(from_code)))
        })
        .optional()
}

/// Inserts a symbol; its id.
pub fn insert_symbol(conn: &Connection, info: &SymbolInfo) -> rusqlite::Result<i64> {
    let json = serde_json::to_string(info)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    conn.prepare_cached("INSERT INTO symbols (ticker_key, info) VALUES (?1, ?2) RETURNING id")?
        .query_row(params![info.ticker.to_ascii_uppercase(), json], |r| {
            r.get(0)
        })
}

pub fn set_base(conn: &Connection, id: i64, base: Resolution) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE symbols SET base = ?2 WHERE id = ?1")?
        .execute(params![id, code(base)])?;
    Ok(())
}

pub fn update_symbol(
    conn: &Connection,
    id: i64,
    info: &SymbolInfo,
    base: Option<Resolution>,
) -> rusqlite::Result<()> {
    let json = serde_json::to_string(info)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    conn.prepare_cached("UPDATE symbols SET ticker_key = ?2, info = ?3, base = ?4 WHERE id = ?1")?
        .execute(params![
            id,
            info.ticker.to_ascii_uppercase(),
            json,
            base.map(code)
        ])?;
    Ok(())
}

/// What an `Idempotency-Key` answered before: (fingerprint, applied,
/// when).
pub fn find_key(
    conn: &Connection,
    endpoint: &str,
    key: &str,
) -> rusqlite::Result<Option<(i64, i64, i64)>> {
    conn.prepare_cached(
        "SELECT fingerprint, applied, created_ms FROM ingest_keys
         WHERE endpoint = ?1 AND key = ?2",
    )?
    .query_row(params![endpoint, key], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .optional()
}

pub fn insert_key(
    conn: &Connection,
    endpoint: &str,
    key: &str,
    fingerprint: i64,
    applied: i64,
    now_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO ingest_keys (endpoint, key, fingerprint, applied, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![endpoint, key, fingerprint, applied, now_ms])?;
    Ok(())
}

pub fn prune_keys(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM ingest_keys WHERE created_ms < ?1")?
        .execute(params![before_ms])
}

/// The newest bar of each resolution as a `Bar`, for publishing.
pub fn latest_bar(
    conn: &Connection,
    symbol: i64,
    res: Resolution,
) -> rusqlite::Result<Option<Bar>> {
    Ok(latest(conn, symbol, res, 1)?.first().map(StoredBar::to_bar))
}

/// Appends the broker's records (time, JSON) to its ledger, in order.
pub fn append_ledger(conn: &Connection, records: &[(i64, String)]) -> rusqlite::Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT INTO broker_ledger (time_ms, record) VALUES (?1, ?2)")?;
    for (time_ms, record) in records {
        insert.execute(params![time_ms, record])?;
    }
    Ok(())
}

/// The broker's ledger, oldest first.
pub fn load_ledger(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut select = conn.prepare_cached("SELECT record FROM broker_ledger ORDER BY pos")?;
    let rows = select.query_map([], |row| row.get(0))?;
    rows.collect()
}
