//! Reading and writing the tables of `schema`, on one connection with its
//! statements prepared once ([`Conn`]): the request path's readers, the
//! server's writer and the import command all go through these.
//!
//! Bars are read by primary-key range scans; bars are written in batches
//! (arrays unnested into one statement) rather than one round trip each.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, RowStream, Statement};
use trading_pro::types::SymbolInfo;

use super::io;
use crate::bar::{code, from_code};
use crate::chain::{self, Dirty};
use crate::{StoredBar, SymbolRecord};
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::source::{Bar, BarQuery, BarsPage};

/// A failed query, or a row that does not read as what it should be.
pub use crate::engine::Fail;

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::of(io::reason_of(&e), io::describe(&e))
    }
}

pub type Result<T> = std::result::Result<T, Fail>;

/// Bars written in one statement, at most.
const WRITE_CHUNK: usize = 10_000;

/// A connection and its prepared statements.
pub struct Conn {
    pub client: Client,
    /// The server process serving it (to end it when the connection is
    /// abandoned mid-transaction), and when it was opened.
    pub pid: i32,
    pub born: std::time::Instant,
    back: Statement,
    range: Statement,
    before: Statement,
    latest: Statement,
    since: Statement,
    newest_times: Statement,
    get_many: Statement,
    children: Statement,
    delete_range: Statement,
    write_many: Statement,
    set_base: Statement,
    find_key: Statement,
    insert_key: Statement,
    changes: Statement,
    pub log_position: Statement,
    pub set_log_position: Statement,
    pub log_outcomes: Statement,
    pub record_outcomes: Statement,
    append_ledger: Statement,
}

impl Conn {
    /// Connects and prepares every statement (on the current runtime: call
    /// it through `Io`).
    pub async fn open(config: &Config) -> Result<Conn> {
        let client = io::connect(config).await?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .try_get(0)?;
        let prepare = |sql: &'static str| client.prepare(sql);
        Ok(Conn {
            pid,
            born: std::time::Instant::now(),
            // A page is one row: its times and its bars back to back
            // (newest first). Thousands of rows cost both ends far more
            // than one row of the same bytes. The aggregates take the rows
            // in the order the index scan yields them (newest first), as
            // PostgreSQL does for a sorted subquery under a plain
            // aggregate. An ORDER BY inside them would sort the page once
            // more for each: without it PostgreSQL 15 answers twice the
            // pages a second (pgbench, 8 clients, 5,000 bars).
            // Both aggregates see the same rows in the same order, so the
            // n-th time is the n-th bar's; `unpack` sorts a page
            // that comes back in another order.
            back: prepare(
                "SELECT coalesce(array_agg(time), '{}'),
                        coalesce(string_agg(bar, ''::bytea), ''::bytea)
                 FROM (SELECT time, bar FROM bars
                       WHERE symbol = $1 AND resolution = $2 AND time < $3
                       ORDER BY time DESC LIMIT $4) page",
            )
            .await?,
            range: prepare(
                "SELECT coalesce(array_agg(time), '{}'),
                        coalesce(string_agg(bar, ''::bytea), ''::bytea)
                 FROM (SELECT time, bar FROM bars
                       WHERE symbol = $1 AND resolution = $2 AND time >= $3 AND time < $4
                       ORDER BY time DESC LIMIT $5) page",
            )
            .await?,
            before: prepare(
                "SELECT time FROM bars WHERE symbol = $1 AND resolution = $2 AND time < $3
                 ORDER BY time DESC LIMIT 1",
            )
            .await?,
            latest: prepare(
                "SELECT time, bar FROM bars WHERE symbol = $1 AND resolution = $2
                 ORDER BY time DESC LIMIT $3",
            )
            .await?,
            since: prepare(
                "SELECT time, bar FROM bars WHERE symbol = $1 AND resolution = $2 AND time >= $3
                 ORDER BY time DESC LIMIT $4",
            )
            .await?,
            // One index probe per resolution, in one round trip.
            newest_times: prepare(
                "SELECT r, (SELECT time FROM bars WHERE symbol = $1 AND resolution = r
                            ORDER BY time DESC LIMIT 1)
                 FROM unnest($2::integer[]) AS u(r)",
            )
            .await?,
            get_many: prepare(
                "SELECT b.symbol, b.time, b.bar
                 FROM unnest($1::bigint[], $2::integer[], $3::bigint[]) AS k(symbol, resolution, time)
                 JOIN bars b ON b.symbol = k.symbol AND b.resolution = k.resolution
                                AND b.time = k.time",
            )
            .await?,
            children: prepare(
                "SELECT time, bar FROM bars
                 WHERE symbol = $1 AND resolution = $2 AND time >= $3 AND time < $4
                 ORDER BY time",
            )
            .await?,
            delete_range: prepare(
                "DELETE FROM bars
                 WHERE symbol = $1 AND resolution = $2 AND time >= $3 AND time < $4",
            )
            .await?,
            write_many: prepare(
                "INSERT INTO bars (symbol, resolution, time, bar)
                 SELECT $1::bigint, $2::integer, t, b
                 FROM unnest($3::bigint[], $4::bytea[]) AS u(t, b)
                 ON CONFLICT (symbol, resolution, time) DO UPDATE SET bar = excluded.bar",
            )
            .await?,
            set_base: prepare("UPDATE symbols SET base = $2 WHERE id = $1").await?,
            find_key: prepare(
                "SELECT fingerprint, applied, created_ms FROM ingest_keys
                 WHERE endpoint = $1 AND key = $2",
            )
            .await?,
            append_ledger: prepare(
                "INSERT INTO broker_ledger (time_ms, record)
                 SELECT t, b FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS r(t, b, n)
                 ORDER BY n",
            )
            .await?,
            insert_key: prepare(
                "INSERT INTO ingest_keys (endpoint, key, fingerprint, applied, created_ms)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (endpoint, key) DO UPDATE
                 SET fingerprint = excluded.fingerprint, applied = excluded.applied,
                     created_ms = excluded.created_ms",
            )
            .await?,
            changes: prepare("SELECT value FROM meta WHERE key = 'changes'").await?,
            // The bus's record (see `logged`).
            log_position: prepare("SELECT seq FROM bus_logs WHERE log = $1").await?,
            set_log_position: prepare(
                "INSERT INTO bus_logs (log, seq) VALUES ($1, $2)
                 ON CONFLICT (log) DO UPDATE SET seq = excluded.seq",
            )
            .await?,
            log_outcomes: prepare(
                "SELECT seq, fingerprint, outcome, effects FROM bus_outcomes
                 WHERE log = $1 AND seq >= $2 AND seq <= $3",
            )
            .await?,
            record_outcomes: prepare(
                "INSERT INTO bus_outcomes (log, seq, fingerprint, outcome, effects, created_ms)
                 SELECT $1, s, f, o, e, $6
                 FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u(s, f, o, e)",
            )
            .await?,
            client,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

fn res_code(res: Resolution) -> i32 {
    code(res) as i32
}

fn row_bar(row: &Row) -> Result<StoredBar> {
    let time: i64 = row.try_get(0)?;
    let blob: &[u8] = row.try_get(1)?;
    StoredBar::decode(time, blob).ok_or_else(|| Fail::new(format!("a bar of {} bytes", blob.len())))
}

/// The bars of a packed page: (times, bars back to back).
fn packed_bars(row: &Row) -> Result<Vec<StoredBar>> {
    unpack(&row.try_get::<_, Vec<i64>>(0)?, row.try_get(1)?)
}

/// A page's times and its bars' bytes back to back, as bars newest first.
fn unpack(times: &[i64], blob: &[u8]) -> Result<Vec<StoredBar>> {
    let len = crate::bar::ENCODED_LEN;
    if blob.len() != times.len() * len {
        return Err(Fail::new(format!(
            "a page of {} times and {} bytes of bars",
            times.len(),
            blob.len()
        )));
    }
    let mut bars = times
        .iter()
        .zip(blob.chunks_exact(len))
        .map(|(time, bytes)| {
            StoredBar::decode(*time, bytes).ok_or_else(|| Fail::new("a bar that does not decode"))
        })
        .collect::<Result<Vec<_>>>()?;
    // Newest first, as the scan yields them; should a plan ever feed the
    // aggregates in another order, the page is still served in order.
    if !bars.windows(2).all(|w| w[0].time > w[1].time) {
        bars.sort_unstable_by_key(|b| std::cmp::Reverse(b.time));
    }
    Ok(bars)
}

fn bars_of(rows: &[Row]) -> Result<Vec<StoredBar>> {
    rows.iter().map(row_bar).collect()
}

/// Bars for a `getBars` request: the newest `limit` (or `count_back`)
/// before `to`, from `from` on unless `count_back` is given; the cost is
/// the bars returned, one range scan (as the embedded store's).
pub async fn page(c: &Conn, symbol: i64, res: Resolution, q: &BarQuery) -> Result<BarsPage> {
    let from = q.from_s.saturating_mul(1000);
    let to = q.to_s.saturating_mul(1000);
    let want = q.count_back.map_or(q.limit, |n| n.min(q.limit));
    let n = want as i64 + 1;
    let r = res_code(res);
    let row = if q.count_back.is_some() {
        c.client.query_one(&c.back, &[&symbol, &r, &to, &n]).await?
    } else {
        c.client
            .query_one(&c.range, &[&symbol, &r, &from, &to, &n])
            .await?
    };
    let mut rows = packed_bars(&row)?;
    let next_time = if rows.len() > want {
        rows.pop().map(|b| b.time)
    } else if q.count_back.is_some() {
        None
    } else {
        let t = from.min(to);
        c.client
            .query_opt(&c.before, &[&symbol, &r, &t])
            .await?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?
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

/// The newest `n` bars of a resolution, newest first.
pub async fn latest(c: &Conn, symbol: i64, res: Resolution, n: usize) -> Result<Vec<StoredBar>> {
    let rows = c
        .client
        .query(&c.latest, &[&symbol, &res_code(res), &(n as i64)])
        .await?;
    bars_of(&rows)
}

/// The newest bar of a resolution as a `Bar`.
pub async fn latest_bar(c: &Conn, symbol: i64, res: Resolution) -> Result<Option<Bar>> {
    Ok(latest(c, symbol, res, 1)
        .await?
        .first()
        .map(StoredBar::to_bar))
}

/// Bars from `from` on (at most `n`, the newest kept), in time order.
pub async fn since(
    c: &Conn,
    symbol: i64,
    res: Resolution,
    from: i64,
    n: usize,
) -> Result<Vec<StoredBar>> {
    let rows = c
        .client
        .query(&c.since, &[&symbol, &res_code(res), &from, &(n as i64)])
        .await?;
    let mut bars = bars_of(&rows)?;
    bars.reverse();
    Ok(bars)
}

/// The time of the newest bar of each resolution in `resolutions`.
pub async fn newest_times(
    c: &Conn,
    symbol: i64,
    resolutions: &[Resolution],
) -> Result<Vec<(Resolution, Option<i64>)>> {
    let codes: Vec<i32> = resolutions.iter().map(|r| res_code(*r)).collect();
    let rows = c.client.query(&c.newest_times, &[&symbol, &codes]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let code: i32 = row.try_get(0)?;
        let res =
            from_code(i64::from(code)).ok_or_else(|| Fail::new(format!("resolution {code}")))?;
        out.push((res, row.try_get(1)?));
    }
    Ok(out)
}

/// The stored bars among `keys` (symbol id, resolution, time), by (symbol
/// id, time).
pub async fn get_many(
    c: &Conn,
    keys: &[(i64, Resolution, i64)],
) -> Result<HashMap<(i64, i64), StoredBar>> {
    let symbols: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let resolutions: Vec<i32> = keys.iter().map(|k| res_code(k.1)).collect();
    let times: Vec<i64> = keys.iter().map(|k| k.2).collect();
    let rows = c
        .client
        .query(&c.get_many, &[&symbols, &resolutions, &times])
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let symbol: i64 = row.try_get(0)?;
        let time: i64 = row.try_get(1)?;
        let blob: &[u8] = row.try_get(2)?;
        let bar = StoredBar::decode(time, blob)
            .ok_or_else(|| Fail::new(format!("a bar of {} bytes", blob.len())))?;
        out.insert((symbol, time), bar);
    }
    Ok(out)
}

/// Every bar with time in `[from, to)`, in time order, as a stream.
pub async fn stream(
    c: &Conn,
    symbol: i64,
    res: Resolution,
    from: i64,
    to: i64,
) -> Result<RowStream> {
    let r = res_code(res);
    let params: [&(dyn ToSql + Sync); 4] = [&symbol, &r, &from, &to];
    Ok(c.client
        .query_raw(&c.children, params.iter().copied())
        .await?)
}

/// Stores bars of one symbol and resolution (replacing any at the same
/// times).
pub async fn write_many(c: &Conn, symbol: i64, res: Resolution, bars: &[StoredBar]) -> Result<()> {
    futures_util::future::try_join_all(writes(c, symbol, res, bars)).await?;
    Ok(())
}

/// The statements of [`write_many`], one a chunk, to send in one pipeline:
/// each is sent when first polled, and polled in order.
fn writes<'a>(
    c: &'a Conn,
    symbol: i64,
    res: Resolution,
    bars: &'a [StoredBar],
) -> impl Iterator<Item = impl std::future::Future<Output = Result<u64>> + 'a> + 'a {
    let r = res_code(res);
    bars.chunks(WRITE_CHUNK).map(move |chunk| async move {
        let times: Vec<i64> = chunk.iter().map(|b| b.time).collect();
        let encoded: Vec<[u8; crate::bar::ENCODED_LEN]> =
            chunk.iter().map(StoredBar::encode).collect();
        let blobs: Vec<&[u8]> = encoded.iter().map(|b| &b[..]).collect();
        Ok(c.client
            .execute(&c.write_many, &[&symbol, &r, &times, &blobs])
            .await?)
    })
}

/// Rebuilds every coarser resolution over the base bars `dirty` names
/// (see `chain`): for each level, the buckets those cover are deleted and
/// written again from the level below, within the caller's transaction.
///
/// Two round trips, however many levels: the levels are planned up front
/// (`chain::plan`), every level's children are read in one pipeline, each
/// level is built in memory from what was read and the level below's new
/// bars, and every level's deletes and writes go in a second pipeline
/// (PostgreSQL runs a connection's statements in the order sent).
pub async fn rebuild(
    c: &Conn,
    symbol: i64,
    calendar: &TradingCalendar,
    base: Resolution,
    dirty: &Dirty,
) -> Result<()> {
    let levels = chain::plan(calendar, base, dirty);
    let reads = levels.iter().flat_map(|level| {
        let child = res_code(level.child);
        level.spans.iter().map(move |(from, to)| async move {
            Ok::<_, Fail>(
                c.client
                    .query(&c.children, &[&symbol, &child, from, to])
                    .await?,
            )
        })
    });
    let read = futures_util::future::try_join_all(reads)
        .await?
        .iter()
        .map(|rows| bars_of(rows))
        .collect::<Result<Vec<_>>>()?;
    let built = chain::build(calendar, &levels, read);
    let mut statements: Vec<
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64>> + Send + '_>>,
    > = Vec::new();
    for (level, bars) in &built {
        let r = res_code(level.res);
        for (from, to) in &level.spans {
            statements.push(Box::pin(async move {
                Ok(c.client
                    .execute(&c.delete_range, &[&symbol, &r, from, to])
                    .await?)
            }));
        }
        for write in writes(c, symbol, level.res, bars) {
            statements.push(Box::pin(write));
        }
    }
    futures_util::future::try_join_all(statements).await?;
    Ok(())
}

/// A row of [`stream`] as a bar.
pub fn bar_of_row(row: &Row) -> Result<StoredBar> {
    row_bar(row)
}

/// Every symbol. A row that cannot be read as a symbol is skipped with its
/// reason (returned), so one bad row does not hide the rest.
pub async fn load_symbols(client: &Client) -> Result<(Vec<SymbolRecord>, Vec<String>)> {
    let rows = client
        .query("SELECT id, info, base FROM symbols ORDER BY id", &[])
        .await?;
    let (mut records, mut problems) = (Vec::new(), Vec::new());
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let info: String = row.try_get(1)?;
        let base: Option<i32> = row.try_get(2)?;
        let record = serde_json::from_str::<SymbolInfo>(&info)
            .map_err(|e| format!("symbol #{id}: its info does not parse: {e}"))
            .and_then(|info| {
                SymbolRecord::new(id, info, base.and_then(|b| from_code(i64::from(b))))
            });
        match record {
            Ok(r) => records.push(r),
            Err(e) => problems.push(e),
        }
    }
    Ok((records, problems))
}

/// The symbol row of `ticker` (case-insensitive): id, registered info and
/// base.
pub async fn find_symbol(
    client: &Client,
    ticker: &str,
) -> Result<Option<(i64, String, Option<Resolution>)>> {
    let row = client
        .query_opt(
            "SELECT id, info, base FROM symbols WHERE ticker_key = $1",
            &[&ticker.to_ascii_uppercase()],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let base: Option<i32> = row.try_get(2)?;
    Ok(Some((
        row.try_get(0)?,
        row.try_get(1)?,
        base.and_then(|b| from_code(i64::from(b))),
    )))
}

fn json(info: &SymbolInfo) -> Result<String> {
    serde_json::to_string(info).map_err(|e| Fail::new(format!("symbol {}: {e}", info.ticker)))
}

/// Inserts a symbol; its id.
pub async fn insert_symbol(client: &Client, info: &SymbolInfo) -> Result<i64> {
    let row = client
        .query_one(
            "INSERT INTO symbols (ticker_key, info) VALUES ($1, $2) RETURNING id",
            &[&info.ticker.to_ascii_uppercase(), &json(info)?],
        )
        .await?;
    Ok(row.try_get(0)?)
}

pub async fn update_symbol(
    client: &Client,
    id: i64,
    info: &SymbolInfo,
    base: Option<Resolution>,
) -> Result<()> {
    client
        .execute(
            "UPDATE symbols SET ticker_key = $2, info = $3, base = $4 WHERE id = $1",
            &[
                &id,
                &info.ticker.to_ascii_uppercase(),
                &json(info)?,
                &base.map(res_code),
            ],
        )
        .await?;
    Ok(())
}

pub async fn set_base(c: &Conn, id: i64, base: Resolution) -> Result<()> {
    c.client
        .execute(&c.set_base, &[&id, &res_code(base)])
        .await?;
    Ok(())
}

/// What an `Idempotency-Key` answered before: (fingerprint, applied,
/// when).
pub async fn find_key(c: &Conn, endpoint: &str, key: &str) -> Result<Option<(i64, i64, i64)>> {
    let row = c.client.query_opt(&c.find_key, &[&endpoint, &key]).await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
}

pub async fn insert_key(
    c: &Conn,
    endpoint: &str,
    key: &str,
    fingerprint: i64,
    applied: i64,
    now_ms: i64,
) -> Result<()> {
    c.client
        .execute(
            &c.insert_key,
            &[&endpoint, &key, &fingerprint, &applied, &now_ms],
        )
        .await?;
    Ok(())
}

pub async fn prune_keys(client: &Client, before_ms: i64) -> Result<u64> {
    Ok(client
        .execute(
            "DELETE FROM ingest_keys WHERE created_ms < $1",
            &[&before_ms],
        )
        .await?)
}

/// The change counter: imports and symbol updates bump it.
pub async fn changes(c: &Conn) -> Result<i64> {
    Ok(c.client.query_one(&c.changes, &[]).await?.try_get(0)?)
}

/// Tells running servers that this transaction changed symbols or bars.
pub async fn bump_changes(client: &Client) -> Result<()> {
    client
        .execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'changes'",
            &[],
        )
        .await?;
    Ok(())
}

/// Appends the broker's records (time, JSON) to its ledger, in order, in
/// one statement.
pub async fn append_ledger(c: &Conn, records: &[(i64, String)]) -> Result<()> {
    let times: Vec<i64> = records.iter().map(|r| r.0).collect();
    let bodies: Vec<&str> = records.iter().map(|r| r.1.as_str()).collect();
    c.client
        .execute(&c.append_ledger, &[&times, &bodies])
        .await?;
    Ok(())
}

/// The broker's ledger, oldest first.
pub async fn load_ledger(c: &Conn) -> Result<Vec<String>> {
    let rows = c
        .client
        .query("SELECT record FROM broker_ledger ORDER BY pos", &[])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::unpack;
    use crate::bar::StoredBar;
    use trading_market::volume::Volume;

    #[test]
    fn a_page_comes_out_newest_first_whatever_order_it_came_in() {
        let bar =
            |time: i64, price: f64| StoredBar::of_trade(time, time, price, Volume::from_units(1));
        let page = [bar(60_000, 2.0), bar(180_000, 4.0), bar(120_000, 3.0)];
        let times: Vec<i64> = page.iter().map(|b| b.time).collect();
        let blob: Vec<u8> = page.iter().flat_map(|b| b.encode()).collect();
        let got = unpack(&times, &blob).expect("unpacks");
        let got: Vec<(i64, f64)> = got.iter().map(|b| (b.time, b.close)).collect();
        // Each time keeps its own bar.
        assert_eq!(got, [(180_000, 4.0), (120_000, 3.0), (60_000, 2.0)]);
        assert!(unpack(&times, &blob[1..]).is_err());
    }
}
