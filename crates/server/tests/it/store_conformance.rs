//! The store conformance suite: what every store must do, checked through
//! the real interfaces (the `import` command as a process, a real server on
//! the store, the generated client, raw WebSocket frames). Each case is a
//! function of the engine; `conformance!` instantiates all of them for one.
//! A new store passes by adding one line at the bottom, unchanged.
//!
//! Expected values are computed here from the rows the test wrote, with
//! its own bucketing (local wall-clock arithmetic through jiff), never read
//! back from the server.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::store::{
    cli_ok, store_server, with_token, Engine, Postgres, Sqlite, TempDir, TOKEN,
};
use crate::common::ws::{self as raw, subscribe};
use crate::common::{error_of, TestServer, FROZEN_NOW_S};
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde_json::json;
use trading_pro_client::types::{
    Bar, BarsIngestRequest, IngestBar, QuotesRequest, Trade, TradesIngestRequest,
};
use trading_pro_client::Client;

const MINUTE: i64 = 60_000;
const DAY: i64 = 86_400_000;
/// Bounds every wait so a broken server fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- data --

/// A bar as the tests compute it. Volumes in thousandths, summed exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Ref {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    milli_volume: i64,
}

impl Ref {
    fn bar(&self) -> Bar {
        Bar {
            time: self.time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.milli_volume as f64 / 1000.0,
        }
    }

    fn absorb(&mut self, later: &Ref) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.milli_volume += later.milli_volume;
    }
}

/// Deterministic one-minute bars at `times`: whole cents, volumes with up
/// to three decimals.
fn minute_bars(times: impl Iterator<Item = i64>, seed: u64) -> Vec<Ref> {
    let mut state = seed | 1;
    let mut next = move |n: i64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as i64).rem_euclid(n)
    };
    let mut cents = 10_000;
    times
        .map(|time| {
            let open = cents;
            let close = (open + next(41) - 20).max(100);
            let high = open.max(close) + next(15);
            let low = (open.min(close) - next(15)).max(1);
            cents = close;
            Ref {
                time,
                open: open as f64 / 100.0,
                high: high as f64 / 100.0,
                low: low as f64 / 100.0,
                close: close as f64 / 100.0,
                milli_volume: 1 + next(5_000_000),
            }
        })
        .collect()
}

fn csv_of(bars: &[Ref]) -> String {
    let mut out = String::from("time,open,high,low,close,volume\n");
    for b in bars {
        out.push_str(&format!(
            "{},{:.2},{:.2},{:.2},{:.2},{}.{:03}\n",
            Timestamp::from_millisecond(b.time).unwrap(),
            b.open,
            b.high,
            b.low,
            b.close,
            b.milli_volume / 1000,
            b.milli_volume % 1000
        ));
    }
    out
}

fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

/// How the tests cut a symbol's time into bars, in its local wall clock.
struct Layout {
    tz: TimeZone,
    /// Session start and length in local minutes (0 and 1440 for 24x7).
    open_min: i64,
    /// Trading days are Monday to Friday (else every day).
    weekdays: bool,
}

impl Layout {
    fn utc_24x7() -> Layout {
        Layout {
            tz: TimeZone::UTC,
            open_min: 0,
            weekdays: false,
        }
    }

    fn new_york_stocks() -> Layout {
        Layout {
            tz: TimeZone::get("America/New_York").unwrap(),
            open_min: 9 * 60 + 30,
            weekdays: true,
        }
    }

    fn local(&self, t: i64) -> DateTime {
        Timestamp::from_millisecond(t)
            .unwrap()
            .to_zoned_datetime(self.tz.clone())
            .datetime()
    }

    /// The bucket key and stamp of a one-minute bar at `t` for resolution
    /// `res`.
    fn bucket(&self, res: &str, t: i64) -> (i64, Option<i64>) {
        let local = self.local(t);
        let date = local.date();
        let day_stamp = midnight_utc(date);
        match res {
            "D" => (day_stamp, Some(day_stamp)),
            // W and M at the period's first trading day, whichever day
            // has data.
            "W" => {
                let monday = day_stamp - i64::from(date.weekday().to_monday_zero_offset()) * DAY;
                (monday, Some(monday))
            }
            "M" => {
                let mut first = date.first_of_month();
                while self.weekdays && first.weekday().to_monday_zero_offset() >= 5 {
                    first = first.tomorrow().unwrap();
                }
                let key = i64::from(date.year()) * 12 + i64::from(date.month());
                (key, Some(midnight_utc(first)))
            }
            minutes => {
                let m: i64 = minutes.parse().unwrap();
                let of_day = i64::from(local.hour()) * 60 + i64::from(local.minute());
                let start = self.open_min + (of_day - self.open_min).div_euclid(m) * m;
                let begin = date
                    .at((start / 60) as i8, (start % 60) as i8, 0, 0)
                    .to_zoned_datetime(self.tz.clone())
                    .unwrap()
                    .timestamp()
                    .as_millisecond();
                (begin, Some(begin))
            }
        }
    }

    /// The bars of `res` that `minutes` aggregate to.
    fn aggregate(&self, res: &str, minutes: &[Ref]) -> Vec<Ref> {
        let mut out: BTreeMap<i64, Ref> = BTreeMap::new();
        for m in minutes {
            let (key, stamp) = self.bucket(res, m.time);
            out.entry(key).and_modify(|b| b.absorb(m)).or_insert(Ref {
                time: stamp.unwrap_or(midnight_utc(self.local(m.time).date())),
                ..*m
            });
        }
        out.into_values().collect()
    }
}

/// 00:00 UTC of a date: where daily bars (and W and M bars, at their
/// period's first trading day) are stamped.
fn midnight_utc(date: Date) -> i64 {
    date.at(0, 0, 0, 0)
        .to_zoned_datetime(TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_millisecond()
}

// ---------------------------------------------------------------- helpers --

/// A fresh store of `engine` with `minutes` imported as `symbol`.
fn import_minutes(
    engine: &dyn Engine,
    dir: &TempDir,
    symbol: &str,
    minutes: &[Ref],
    extra: &[&str],
) -> String {
    let store = engine.fresh(dir);
    let file = dir.file(&format!("{symbol}.csv"), &csv_of(minutes));
    let mut args = vec![
        "import",
        "--store",
        &store,
        "--symbol",
        symbol,
        "--resolution",
        "1",
    ];
    args.extend_from_slice(extra);
    let file = file.to_str().unwrap().to_string();
    args.push(&file);
    cli_ok(&args);
    store
}

async fn bars(c: &Client, symbol: &str, res: &str, from_ms: i64, to_ms: i64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    let mut to = to_ms / 1000;
    loop {
        let page = c
            .get_bars()
            .symbol(symbol)
            .resolution(res)
            .from_time(from_ms / 1000)
            .to_time(to)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{symbol} {res}: {e}"))
            .into_inner();
        let full = page.bars.len() == 5000;
        if let Some(first) = page.bars.first() {
            to = first.time / 1000;
        }
        let mut page_bars = page.bars;
        page_bars.append(&mut out);
        out = page_bars;
        if !full {
            return out;
        }
    }
}

/// Every resolution in `resolutions` of `symbol`, in `[from, to)`, is the
/// aggregate `layout` makes of the one-minute bars `minutes`.
async fn assert_served(
    c: &Client,
    symbol: &str,
    layout: &Layout,
    minutes: &[Ref],
    resolutions: &[&str],
    (from, to): (i64, i64),
    label: &str,
) {
    for res in resolutions {
        let got = bars(c, symbol, res, from, to).await;
        let want: Vec<Bar> = layout
            .aggregate(res, minutes)
            .iter()
            .map(Ref::bar)
            .collect();
        assert_eq!(got, want, "{symbol} {res} {label}");
    }
}

fn trade(symbol: &str, time: i64, price: f64, size: f64) -> Trade {
    Trade {
        symbol: symbol.into(),
        time,
        price,
        size,
    }
}

async fn ingest(c: &Client, trades: Vec<Trade>) -> i64 {
    c.ingest_trades()
        .body(TradesIngestRequest { trades })
        .send()
        .await
        .expect("ingest succeeds")
        .into_inner()
        .applied
}

fn bar_of(update: &serde_json::Value) -> Bar {
    Bar {
        time: update["time"].as_i64().unwrap(),
        open: update["open"].as_f64().unwrap(),
        high: update["high"].as_f64().unwrap(),
        low: update["low"].as_f64().unwrap(),
        close: update["close"].as_f64().unwrap(),
        volume: update["volume"].as_f64().unwrap(),
    }
}

// ------------------------------------------------------------------ cases --

/// A week of 24x7 minutes across a week and a month boundary: served
/// exactly, and every coarser resolution is their aggregate.
async fn imported_minutes_are_served_exactly_at_every_resolution(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-import");
    let start = ms("2024-01-29T00:00:00Z");
    let minutes = minute_bars((0..8 * 1440).map(|i| start + i * MINUTE), 7);
    let store = import_minutes(engine, &dir, "BTCX", &minutes, &["--type", "crypto"]);
    let s = store_server(&store, &[]).await;
    let (from, to) = (start - 40 * DAY, start + 40 * DAY);
    let layout = Layout::utc_24x7();
    let all = ["1", "5", "15", "30", "60", "240", "D", "W", "M"];
    assert_served(&s.client, "BTCX", &layout, &minutes, &all, (from, to), "").await;
    let info = s
        .client
        .resolve_symbol()
        .symbol("btcx")
        .send()
        .await
        .unwrap();
    assert_eq!(info.supported_resolutions.len(), 9);
    assert!(info.has_intraday && info.has_daily && info.has_weekly_and_monthly);
    assert_eq!((info.pricescale, info.type_.as_str()), (100, "crypto"));
    s.stop().await;
}

/// Stock minutes in New York across the 2024 DST change: intraday bars
/// align to 09:30 local (14:30 UTC in winter, 13:30 in summer), the 240s
/// are 09:30-13:30 and a short 13:30-16:00, daily bars sit at 00:00 UTC.
async fn session_buckets_follow_the_local_clock_across_dst(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-dst");
    let layout = Layout::new_york_stocks();
    let mut times = Vec::new();
    for day in ["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"] {
        let open = day
            .parse::<Date>()
            .unwrap()
            .at(9, 30, 0, 0)
            .to_zoned_datetime(layout.tz.clone())
            .unwrap()
            .timestamp()
            .as_millisecond();
        times.extend((0..390).map(|m| open + m * MINUTE));
    }
    let minutes = minute_bars(times.into_iter(), 11);
    let store = import_minutes(
        engine,
        &dir,
        "ACME",
        &minutes,
        &["--session", "0930-1600", "--timezone", "America/New_York"],
    );
    let s = store_server(&store, &[]).await;
    let (from, to) = (ms("2024-03-01T00:00:00Z"), ms("2024-03-20T00:00:00Z"));
    assert_served(
        &s.client,
        "ACME",
        &layout,
        &minutes,
        &["5", "30", "60", "240", "D", "W", "M"],
        (from, to),
        "",
    )
    .await;
    let fours = bars(&s.client, "ACME", "240", from, to).await;
    let first_two: Vec<i64> = fours.iter().take(2).map(|b| b.time).collect();
    assert_eq!(
        first_two,
        [ms("2024-03-07T14:30:00Z"), ms("2024-03-07T18:30:00Z")]
    );
    assert!(fours.iter().any(|b| b.time == ms("2024-03-11T13:30:00Z")));
    let daily = bars(&s.client, "ACME", "D", from, to).await;
    assert_eq!(daily[0].time, ms("2024-03-07T00:00:00Z"));
    s.stop().await;
}

/// TradingView's getBars contract on a store: count_back, ranges, paging
/// with next_time, no_data only before the first bar.
async fn get_bars_follows_the_paging_contract(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-paging");
    let start = ms("2024-05-06T00:00:00Z");
    // Two stretches with a gap of a day between them.
    let times = (0..3000)
        .map(|i| start + i * MINUTE)
        .chain((0..4000).map(|i| start + 3 * DAY + i * MINUTE));
    let minutes = minute_bars(times, 3);
    let store = import_minutes(engine, &dir, "GAPPY", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let c = &s.client;
    let page = |from: i64, to: i64, count_back: Option<i64>| {
        let mut req = c
            .get_bars()
            .symbol("GAPPY")
            .resolution("1")
            .from_time(from / 1000)
            .to_time(to / 1000);
        if let Some(n) = count_back {
            req = req.count_back(n);
        }
        async move { req.send().await.unwrap().into_inner() }
    };
    let all: Vec<Bar> = minutes.iter().map(Ref::bar).collect();
    let end = start + 10 * DAY;

    // count_back: the newest n before to, whatever from says.
    let p = page(end, end, Some(300)).await;
    assert_eq!(p.bars, all[all.len() - 300..]);
    assert_eq!(p.next_time, Some(all[all.len() - 301].time));
    assert!(!p.no_data);

    // A range wider than 5000 bars: the newest 5000, then the rest.
    let p = page(start, end, None).await;
    assert_eq!(p.bars, all[all.len() - 5000..]);
    assert_eq!(p.next_time, Some(all[all.len() - 5001].time));
    let rest = page(start, p.bars[0].time, None).await;
    assert_eq!(rest.bars, all[..all.len() - 5000]);
    assert_eq!(rest.next_time, None);

    // Inside the gap: nothing, but history continues before it.
    let gap = start + 3000 * MINUTE + 60 * MINUTE;
    let p = page(gap, gap + 3_600_000, None).await;
    assert!(p.bars.is_empty() && !p.no_data);
    assert_eq!(p.next_time, Some(start + 2999 * MINUTE));

    // Before the first bar: no data at all.
    let p = page(start - DAY, start, None).await;
    assert!(p.bars.is_empty() && p.no_data && p.next_time.is_none());
    let p = page(start - DAY, start, Some(10)).await;
    assert!(p.no_data);
    s.stop().await;
}

/// Pages of `res` before `to_ms`, 5,000 at a time as a chart scrolls back
/// (`count_back`), down to no_data: each exactly its stretch of `want`,
/// with the time of the bar before it as `next_time`.
async fn assert_scrolled_back(c: &Client, symbol: &str, res: &str, to_ms: i64, want: &[Bar]) {
    let mut to = to_ms / 1000;
    let mut end = want.len();
    loop {
        let page = c
            .get_bars()
            .symbol(symbol)
            .resolution(res)
            .from_time(0)
            .to_time(to)
            .count_back(5000)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{symbol} {res} before {to}: {e}"))
            .into_inner();
        if end == 0 {
            assert!(
                page.no_data && page.bars.is_empty(),
                "{symbol} {res}: bars before the first one"
            );
            return;
        }
        let begin = end.saturating_sub(5000);
        assert_eq!(page.bars, want[begin..end], "{symbol} {res} before {to}");
        assert_eq!(
            page.next_time,
            begin.checked_sub(1).map(|i| want[i].time),
            "{symbol} {res} next_time before {to}"
        );
        assert!(!page.no_data);
        to = want[begin].time / 1000;
        end = begin;
    }
}

/// A history longer than a store keeps in memory: every page, scrolled
/// back or asked as a range, is exactly the stored bars, read twice, and
/// again after trades amend it at both ends and extend it.
async fn a_long_history_pages_exactly_at_both_ends(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-long");
    let start = ms("2025-09-01T00:00:00Z");
    let n = 30_000;
    let minutes = minute_bars((0..n).map(|i| start + i * MINUTE), 21);
    let store = import_minutes(engine, &dir, "LONG", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let layout = Layout::utc_24x7();
    let end = start + 40 * DAY;
    // Twice: the second time from whatever the store kept of the first.
    let read_twice = |minutes: Vec<Ref>, label: &'static str| {
        let (c, layout) = (&s.client, &layout);
        async move {
            for round in 0..2 {
                for res in ["1", "5"] {
                    let want: Vec<Bar> = layout
                        .aggregate(res, &minutes)
                        .iter()
                        .map(Ref::bar)
                        .collect();
                    assert_scrolled_back(c, "LONG", res, end, &want).await;
                }
                let ranges = &["1", "15", "D"];
                let label = format!("{label}, read {round}");
                assert_served(c, "LONG", layout, &minutes, ranges, (start, end), &label).await;
            }
        }
    };
    read_twice(minutes.clone(), "as imported").await;

    // A late trade in one of the first minutes, one in a minute near the
    // end, and a new minute after the last.
    let mut expected = minutes.clone();
    let last = start + n * MINUTE;
    ingest(
        &c,
        vec![
            trade(
                "LONG",
                minutes[200].time + 10_000,
                minutes[200].high + 3.0,
                2.5,
            ),
            trade(
                "LONG",
                minutes[29_000].time + 20_000,
                minutes[29_000].low - 1.0,
                1.5,
            ),
            trade("LONG", last + 5_000, 42.0, 1.0),
        ],
    )
    .await;
    expected[200].high += 3.0;
    expected[200].milli_volume += 2_500;
    expected[29_000].low -= 1.0;
    expected[29_000].milli_volume += 1_500;
    expected.push(Ref {
        time: last,
        open: 42.0,
        high: 42.0,
        low: 42.0,
        close: 42.0,
        milli_volume: 1_000,
    });
    read_twice(expected, "after the trades").await;
    s.stop().await;
}

/// A daily-only symbol serves D, W, M and says why not finer, in REST and
/// on the WebSocket; the configuration lists what some symbol serves.
async fn only_resolutions_the_data_supports_are_served(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-daily");
    let store = engine.fresh(&dir);
    let daily = dir.file(
        "daily.csv",
        "date,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,10.5,12,10,11,200\n",
    );
    cli_ok(&[
        "import",
        "--store",
        &store,
        "--symbol",
        "DAILY",
        "--resolution",
        "D",
        daily.to_str().unwrap(),
    ]);
    let s = store_server(&store, &[]).await;
    let c = &s.client;
    let info = c.resolve_symbol().symbol("DAILY").send().await.unwrap();
    assert_eq!(info.supported_resolutions, ["D", "W", "M"]);
    assert!(!info.has_intraday && info.has_daily && info.has_weekly_and_monthly);
    assert!(info.intraday_multipliers.is_empty());
    let (status, message) = error_of(
        c.get_bars()
            .symbol("DAILY")
            .resolution("60")
            .from_time(0)
            .to_time(FROZEN_NOW_S)
            .send()
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("served at D, W, M only"), "{message}");
    let config = c.get_config().send().await.unwrap();
    assert_eq!(config.supported_resolutions, ["D", "W", "M"]);
    let health = c.datafeed_health_check().send().await.unwrap();
    assert_eq!(
        (health.symbols, health.source.as_str()),
        (1, engine_kind(&store))
    );

    let mut ws = raw::connect(&s.base).await;
    let reply = subscribe(&mut ws, "DAILY", "5").await;
    assert_eq!(reply["status"], "error");
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains("served at D, W, M only"), "{message}");
    let reply = subscribe(&mut ws, "DAILY", "W").await;
    assert_eq!(reply["status"], "ok");
    let week = raw::update(&mut ws).await;
    assert_eq!(
        (week["time"].as_i64(), week["volume"].as_f64()),
        (Some(ms("2024-01-01T00:00:00Z")), Some(300.0))
    );
    s.stop().await;
}

fn engine_kind(store: &str) -> &'static str {
    if store.starts_with("sqlite:") {
        "sqlite"
    } else if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        "postgres"
    } else {
        "unknown"
    }
}

/// Trades reach subscribers at once (a store has no broadcast tick), the
/// closed bar's final state goes out before the next bar, and history then
/// holds exactly the aggregate of the trades at every resolution.
async fn ingested_trades_stream_at_once_and_close_into_history(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-stream");
    let day = ms("2025-11-20T00:00:00Z");
    let minutes = minute_bars((0..600).map(|i| day + i * MINUTE), 5);
    let store = import_minutes(engine, &dir, "LIVE", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let mut ws = raw::connect(&s.base).await;
    for res in ["1", "D"] {
        assert_eq!(subscribe(&mut ws, "LIVE", res).await["status"], "ok");
        raw::update(&mut ws).await;
    }

    // Three trades in the minute after the imported ones, then one in the
    // minute after that.
    let bar_time = day + 600 * MINUTE;
    let trades = [
        (bar_time + 1_000, 101.5, 0.5),
        (bar_time + 20_000, 103.25, 1.25),
        (bar_time + 59_000, 100.75, 2.0),
    ];
    for (at, price, size) in trades {
        assert_eq!(ingest(&c, vec![trade("LIVE", at, price, size)]).await, 1);
    }
    let mut seen = Vec::new();
    while seen.last().map(bar_of)
        != Some(Bar {
            time: bar_time,
            open: 101.5,
            high: 103.25,
            low: 100.75,
            close: 100.75,
            volume: 3.75,
        })
    {
        let u = raw::update(&mut ws).await;
        if u["resolution"] == "1" {
            seen.push(u);
        }
    }
    ingest(
        &c,
        vec![trade("LIVE", bar_time + MINUTE + 5_000, 99.0, 1.0)],
    )
    .await;
    // The closed bar is final already; the next one follows it.
    let next = loop {
        let u = raw::update(&mut ws).await;
        if u["resolution"] == "1" {
            break u;
        }
    };
    assert_eq!(bar_of(&next).time, bar_time + MINUTE);
    assert_eq!(bar_of(&next).close, 99.0);

    // One request that closes several bars at once (a feed catching up):
    // each closed bar's final state arrives, in order, then the new one.
    let catch_up: Vec<Trade> = (2..6)
        .map(|m| trade("LIVE", bar_time + m * MINUTE + 10_000, 90.0 + m as f64, 1.0))
        .collect();
    ingest(&c, catch_up).await;
    let mut times = Vec::new();
    while times.last() != Some(&(bar_time + 5 * MINUTE)) {
        let u = raw::update(&mut ws).await;
        if u["resolution"] == "1" {
            times.push(bar_of(&u).time);
        }
    }
    let expected: Vec<i64> = (1..6).map(|m| bar_time + m * MINUTE).collect();
    assert_eq!(times, expected[expected.len() - times.len()..]);
    assert!(
        times.len() >= 4,
        "every closed bar of the catch-up: {times:?}"
    );

    let history = bars(&s.client, "LIVE", "1", day, day + DAY).await;
    let closed = history.iter().find(|b| b.time == bar_time).unwrap();
    assert_eq!(
        (
            closed.open,
            closed.high,
            closed.low,
            closed.close,
            closed.volume
        ),
        (101.5, 103.25, 100.75, 100.75, 3.75)
    );
    // Every coarser resolution is still the aggregate of the minutes.
    let layout = Layout::utc_24x7();
    let all: Vec<Ref> = history
        .iter()
        .map(|b| Ref {
            time: b.time,
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            milli_volume: (b.volume * 1000.0).round() as i64,
        })
        .collect();
    assert_served(
        &s.client,
        "LIVE",
        &layout,
        &all,
        &["5", "60", "240", "D", "W", "M"],
        (day - 40 * DAY, day + 40 * DAY),
        "",
    )
    .await;
    s.stop().await;
}

/// A trade older than the current bar amends history: its minute and every
/// bar containing it, and only those; the open and close move only if it
/// really was the first or last trade of its bar.
async fn late_trades_amend_history_exactly(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-late");
    let day = ms("2025-11-15T00:00:00Z");
    let minutes = minute_bars((0..3 * 1440).map(|i| day + i * MINUTE), 9);
    let store = import_minutes(engine, &dir, "LATE", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let layout = Layout::utc_24x7();
    // Read every resolution first, so whatever a store keeps of them is
    // warm when the history changes under it.
    assert_served(
        &s.client,
        "LATE",
        &layout,
        &minutes,
        &["1", "15", "240", "D", "W", "M"],
        (day - 40 * DAY, day + 40 * DAY),
        "before",
    )
    .await;
    let target = minutes[700];
    // Inside the minute: high and volume change, open and close do not (an
    // imported bar spans its whole minute).
    let price = target.high + 5.0;
    ingest(&c, vec![trade("LATE", target.time + 30_000, price, 2.5)]).await;
    let mut expected = minutes.clone();
    expected[700].high = price;
    expected[700].milli_volume += 2_500;
    assert_served(
        &s.client,
        "LATE",
        &layout,
        &expected,
        &["1", "15", "240", "D", "W", "M"],
        (day - 40 * DAY, day + 40 * DAY),
        "",
    )
    .await;
    // A new day, then a trade amending a day long closed.
    ingest(&c, vec![trade("LATE", day + 3 * DAY + 5_000, 77.0, 1.0)]).await;
    bars(&s.client, "LATE", "D", day - 40 * DAY, day + 40 * DAY).await;
    ingest(&c, vec![trade("LATE", day + 3_000, 1.0, 4.0)]).await;
    expected[0].low = 1.0;
    expected[0].milli_volume += 4_000;
    expected.push(Ref {
        time: day + 3 * DAY,
        open: 77.0,
        high: 77.0,
        low: 77.0,
        close: 77.0,
        milli_volume: 1_000,
    });
    assert_served(
        &s.client,
        "LATE",
        &layout,
        &expected,
        &["1", "D", "W", "M"],
        (day - 40 * DAY, day + 40 * DAY),
        "after amending a closed day",
    )
    .await;
    s.stop().await;
}

/// A request with one bad trade is refused whole: the index and the reason
/// in a 400, and nothing of it applied.
async fn a_bad_trade_refuses_the_whole_request(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-bad");
    let day = ms("2025-11-20T00:00:00Z");
    let minutes = minute_bars((0..60).map(|i| day + i * MINUTE), 1);
    let store = import_minutes(
        engine,
        &dir,
        "BAD",
        &minutes,
        &["--session", "0000-1200", "--timezone", "Etc/UTC"],
    );
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let good = trade("BAD", day + 70 * MINUTE, 101.0, 1.0);
    let now = FROZEN_NOW_S * 1000;
    let cases = [
        (trade("NOPE", day, 1.0, 1.0), "unknown symbol \"NOPE\""),
        (trade("BAD", day, 0.0, 1.0), "price must be positive"),
        (trade("BAD", day, -3.0, 1.0), "price must be positive"),
        (trade("BAD", day, 1.0, -1.0), "size must not be negative"),
        (
            trade("BAD", day, 1.0, 0.123456789),
            "more than 8 decimal places",
        ),
        (
            trade("BAD", now + 3_600_000, 1.0, 1.0),
            "ahead of the server's clock",
        ),
        (
            // Year -292 million: a unit or a sign gone wrong.
            trade("BAD", -9_223_372_036_854_775, 1.0, 1.0),
            "before 1900-01-01",
        ),
        (
            trade("BAD", day + 13 * 3_600_000, 1.0, 1.0),
            "outside the session",
        ),
    ];
    let before = bars(&s.client, "BAD", "1", day, day + DAY).await;
    for (bad, reason) in cases {
        let request = TradesIngestRequest {
            trades: vec![good.clone(), good.clone(), bad],
        };
        let (status, message) = error_of(c.ingest_trades().body(request).send().await);
        assert_eq!(status, 400, "{message}");
        assert!(message.starts_with("trades[2]"), "{message}");
        assert!(message.contains(reason), "{reason}: {message}");
    }
    let (status, message) = error_of(
        c.ingest_trades()
            .body(TradesIngestRequest { trades: vec![] })
            .send()
            .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("between 1 and 10000"), "{message}");
    assert_eq!(bars(&s.client, "BAD", "1", day, day + DAY).await, before);
    s.stop().await;
}

/// A retry with the same `Idempotency-Key` is answered as before and
/// applied once; the key with another body is a 422.
async fn retries_with_the_same_key_apply_once(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-idem");
    let day = ms("2025-11-20T00:00:00Z");
    let minutes = minute_bars((0..10).map(|i| day + i * MINUTE), 2);
    let store = import_minutes(engine, &dir, "IDEM", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let at = day + 20 * MINUTE;
    let body = || TradesIngestRequest {
        trades: vec![
            trade("IDEM", at, 50.0, 1.5),
            trade("IDEM", at + 1, 51.0, 2.0),
        ],
    };
    for _ in 0..3 {
        let answer = c
            .ingest_trades()
            .idempotency_key("batch-0001")
            .body(body())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.applied, 2);
    }
    let (status, message) = error_of(
        c.ingest_trades()
            .idempotency_key("batch-0001")
            .body(TradesIngestRequest {
                trades: vec![trade("IDEM", at, 50.0, 9.0)],
            })
            .send()
            .await,
    );
    assert_eq!(status, 422);
    assert!(
        message.contains("already used for a different"),
        "{message}"
    );
    let history = bars(&s.client, "IDEM", "1", day, day + DAY).await;
    assert_eq!(history.last().unwrap().volume, 3.5, "applied once");
    // Keys are per endpoint, and a new key applies again.
    ingest(&c, body().trades).await;
    let history = bars(&s.client, "IDEM", "1", day, day + DAY).await;
    assert_eq!(history.last().unwrap().volume, 7.0);
    s.stop().await;
}

/// Bars ingested at the base resolution replace stored ones; bars off the
/// grid, at another resolution or twice in one request are refused whole.
async fn ingested_bars_replace_and_follow_the_rules(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-bars");
    let day = ms("2025-11-20T00:00:00Z");
    let minutes = minute_bars((0..30).map(|i| day + i * 5 * MINUTE), 4);
    let file = dir.file("five.csv", &csv_of(&minutes));
    let store = engine.fresh(&dir);
    cli_ok(&[
        "import",
        "--store",
        &store,
        "--symbol",
        "FIVE",
        "--resolution",
        "5",
        file.to_str().unwrap(),
    ]);
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let bar = |time: i64, close: f64| IngestBar {
        symbol: "FIVE".into(),
        time,
        open: 10.0,
        high: 12.0,
        low: 9.0,
        close,
        volume: 42.0,
    };
    let send = |resolution: Option<&str>, bars: Vec<IngestBar>| {
        let body = BarsIngestRequest {
            resolution: resolution.map(|r| r.parse().unwrap()),
            bars,
        };
        c.ingest_bars().body(body).send()
    };
    send(Some("5"), vec![bar(day + 10 * MINUTE, 11.0)])
        .await
        .unwrap();
    send(None, vec![bar(day + 150 * MINUTE, 11.5)])
        .await
        .unwrap();
    let history = bars(&s.client, "FIVE", "5", day, day + DAY).await;
    let replaced = history
        .iter()
        .find(|b| b.time == day + 10 * MINUTE)
        .unwrap();
    assert_eq!((replaced.close, replaced.volume), (11.0, 42.0));
    assert_eq!(history.last().unwrap().time, day + 150 * MINUTE);

    let cases = [
        (
            send(None, vec![bar(day + 11 * MINUTE, 11.0)]).await,
            "not on the 5-minute grid",
        ),
        (
            send(Some("1"), vec![bar(day, 11.0)]).await,
            "base resolution is 5",
        ),
        (
            send(None, vec![bar(day, 11.0), bar(day, 10.5)]).await,
            "a bar may appear once per request",
        ),
        (send(None, vec![bar(day, 13.0)]).await, "high 12 is below"),
    ];
    for (answer, reason) in cases {
        let (status, message) = error_of(answer);
        assert_eq!(status, 400, "{message}");
        assert!(message.starts_with("bars["), "{message}");
        assert!(message.contains(reason), "{reason}: {message}");
    }
    assert_eq!(bars(&s.client, "FIVE", "5", day, day + DAY).await, history);
    s.stop().await;
}

/// Quotes follow the last trade and compare it with the previous daily
/// close; a store has no bid or ask to report.
async fn quotes_follow_the_last_trade(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-quotes");
    let day = ms("2025-11-18T00:00:00Z");
    let minutes = minute_bars((0..2 * 1440).map(|i| day + i * MINUTE), 6);
    let store = import_minutes(engine, &dir, "QUOTE", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    ingest(&c, vec![trade("QUOTE", day + 2 * DAY + 1_000, 123.45, 3.0)]).await;
    let quotes = s
        .client
        .get_quotes()
        .body(QuotesRequest {
            symbols: vec!["QUOTE".into(), "NOPE".into()],
        })
        .send()
        .await
        .unwrap()
        .into_inner();
    let v = &quotes[0].v;
    let prev_close = minutes[2 * 1440 - 1].close;
    assert_eq!(v.lp, Some(123.45));
    assert_eq!(v.prev_close_price, Some(prev_close));
    assert_eq!(v.ch, Some(((123.45 - prev_close) * 100.0).round() / 100.0));
    assert_eq!((v.open_price, v.volume), (Some(123.45), Some(3.0)));
    assert!(v.bid.is_none() && v.ask.is_none() && v.spread.is_none());
    assert_eq!(quotes[1].s, trading_pro_client::types::QuoteStatus::Error);
    s.stop().await;
}

/// An import into the store a server is running on is served without a
/// restart: new symbols, new bars, and the followed topics' live bars.
async fn a_running_server_serves_what_an_import_adds(engine: &dyn Engine) {
    let dir = TempDir::new("conformance-running");
    let day = ms("2025-11-18T00:00:00Z");
    let minutes = minute_bars((0..120).map(|i| day + i * MINUTE), 8);
    let store = import_minutes(engine, &dir, "FIRST", &minutes, &[]);
    let s = store_server(&store, &[]).await;
    let mut ws = raw::connect(&s.base).await;
    assert_eq!(subscribe(&mut ws, "FIRST", "1").await["status"], "ok");
    assert_eq!(bar_of(&raw::update(&mut ws).await).time, minutes[119].time);

    let later = minute_bars((120..180).map(|i| day + i * MINUTE), 12);
    let more = dir.file("more.csv", &csv_of(&later));
    let second = dir.file("second.csv", &csv_of(&minutes[..10]));
    for (symbol, file) in [("FIRST", &more), ("SECOND", &second)] {
        cli_ok(&[
            "import",
            "--store",
            &store,
            "--symbol",
            symbol,
            "--resolution",
            "1",
            file.to_str().unwrap(),
        ]);
    }
    // The subscriber gets the new newest bar.
    loop {
        if bar_of(&raw::update(&mut ws).await).time == later[59].time {
            break;
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hits = s.tickers().await;
        if hits.contains(&"SECOND".to_string()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "SECOND never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history = bars(&s.client, "FIRST", "1", day, day + DAY).await;
    assert_eq!(history.len(), 180);

    // An import that corrects days long closed: what the server kept of
    // them must not outlive it.
    let days = minute_bars((0..3 * 1440).map(|i| day - 3 * DAY + i * MINUTE), 14);
    let file = dir.file("third.csv", &csv_of(&days));
    let import = |file: &std::path::Path| {
        cli_ok(&[
            "import",
            "--store",
            &store,
            "--symbol",
            "THIRD",
            "--resolution",
            "1",
            file.to_str().unwrap(),
        ])
    };
    import(&file);
    let daily = |bars: &[Ref]| -> Vec<Bar> {
        Layout::utc_24x7()
            .aggregate("D", bars)
            .iter()
            .map(Ref::bar)
            .collect()
    };
    // Unknown (404) until the server has noticed the import.
    let served = || async {
        let page = s
            .client
            .get_bars()
            .symbol("THIRD")
            .resolution("D")
            .from_time((day - 5 * DAY) / 1000)
            .to_time(day / 1000)
            .send()
            .await;
        page.map(|p| p.into_inner().bars).unwrap_or_default()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while served().await != daily(&days) {
        assert!(tokio::time::Instant::now() < deadline, "THIRD never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut corrected = days.clone();
    corrected[0].high += 50.0;
    import(&dir.file("fix.csv", &csv_of(&corrected[..1])));
    let deadline = tokio::time::Instant::now() + WAIT;
    while served().await != daily(&corrected) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the correction never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

/// Ingest is refused, with the reason, by a server that takes none, and
/// without the right bearer token.
async fn ingest_needs_a_store_a_token_and_the_right_one(engine: &dyn Engine) {
    let request = || TradesIngestRequest {
        trades: vec![trade("X", 0, 1.0, 1.0)],
    };
    let synthetic = TestServer::frozen().await;
    let (status, message) = error_of(
        with_token(&synthetic.base, TOKEN)
            .ingest_trades()
            .body(request())
            .send()
            .await,
    );
    assert_eq!(status, 403);
    assert!(message.contains("start it with --store"), "{message}");
    synthetic.stop().await;

    let dir = TempDir::new("conformance-auth");
    let store = engine.fresh(&dir);
    let untokened = TestServer::start(&["--store", &store, "--create"]).await;
    let (status, message) = error_of(
        with_token(&untokened.base, TOKEN)
            .ingest_trades()
            .body(request())
            .send()
            .await,
    );
    assert_eq!(status, 403);
    assert!(
        message.contains("no ingest token is configured"),
        "{message}"
    );
    untokened.stop().await;

    let s = store_server(&store, &[]).await;
    let anonymous = reqwest::Client::new()
        .post(s.url("/api/v1/ingest/trades"))
        .json(&json!({"trades": [{"symbol": "X", "time": 0, "price": 1, "size": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"trading-pro ingest\""
    );
    let (status, message) = error_of(
        with_token(&s.base, "wrong")
            .ingest_trades()
            .body(request())
            .send()
            .await,
    );
    assert_eq!(status, 403);
    assert!(
        message.contains("not this server's ingest token"),
        "{message}"
    );
    s.stop().await;
}

macro_rules! conformance {
    ($module:ident, $engine:expr; $($case:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&$engine).await
                }
            )*
        }
    };
}

/// Every case, for one engine.
macro_rules! suite {
    ($module:ident, $engine:expr) => {
        conformance!($module, $engine;
            imported_minutes_are_served_exactly_at_every_resolution,
            session_buckets_follow_the_local_clock_across_dst,
            get_bars_follows_the_paging_contract,
            a_long_history_pages_exactly_at_both_ends,
            only_resolutions_the_data_supports_are_served,
            ingested_trades_stream_at_once_and_close_into_history,
            late_trades_amend_history_exactly,
            a_bad_trade_refuses_the_whole_request,
            retries_with_the_same_key_apply_once,
            ingested_bars_replace_and_follow_the_rules,
            quotes_follow_the_last_trade,
            a_running_server_serves_what_an_import_adds,
            ingest_needs_a_store_a_token_and_the_right_one,
        );
    };
}

suite!(sqlite, super::Sqlite);
suite!(postgres, super::Postgres);
