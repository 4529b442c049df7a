//! Bars through the generated client: the aggregation property for every
//! symbol and every resolution pair, the TradingView getBars contract, and
//! session semantics.

use crate::common::{TestServer, FROZEN_NOW_S};
use futures::{stream, StreamExt};
use trading_pro_client::types::{Bar, BarsResponse};
use trading_pro_client::Client;

const RESOLUTIONS: [&str; 9] = ["1", "5", "15", "30", "60", "240", "D", "W", "M"];
const MINUTE_MS: i64 = 60_000;
const DAY_S: i64 = 86_400;
/// 2024-02-20 .. 2024-04-10: spans the US DST change of 2024-03-10 and whole
/// weeks and one whole month (March).
const WINDOW: (i64, i64) = (1_708_387_200, 1_712_707_200);
const CAP: usize = 5000;

async fn get(
    c: &Client,
    symbol: &str,
    res: &str,
    from: i64,
    to: i64,
    count_back: Option<i64>,
) -> BarsResponse {
    let mut req = c
        .get_bars()
        .symbol(symbol)
        .resolution(res)
        .from_time(from)
        .to_time(to);
    if let Some(n) = count_back {
        req = req.count_back(n);
    }
    let page = match req.send().await {
        Ok(page) => page.into_inner(),
        Err(e) => {
            let mut chain = format!("{e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                chain.push_str(&format!(": {s}"));
                source = s.source();
            }
            panic!("{symbol} {res} {from}..{to}: {chain}")
        }
    };
    check_page(&page, from, to, count_back.is_some());
    page
}

/// What every getBars answer must satisfy.
fn check_page(page: &BarsResponse, from: i64, to: i64, count_back: bool) {
    assert!(page.bars.len() <= CAP);
    for w in page.bars.windows(2) {
        assert!(w[0].time < w[1].time, "ascending without duplicates");
    }
    for b in &page.bars {
        assert!(b.time < to * 1000, "before to_time");
        if !count_back {
            assert!(b.time >= from * 1000, "at or after from_time");
        }
        assert!(
            b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close),
            "{b:?}"
        );
        assert!(b.volume >= 0.0);
    }
    if let (Some(next), Some(first)) = (page.next_time, page.bars.first()) {
        assert!(next < first.time);
    }
    if page.no_data {
        assert!(page.bars.is_empty() && page.next_time.is_none());
    }
}

/// All bars in [from, to), paging backwards the way a chart does.
async fn fetch_all(c: &Client, symbol: &str, res: &str, from: i64, to: i64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    let mut to_time = to;
    loop {
        let page = get(c, symbol, res, from, to_time, None).await;
        let full = page.bars.len() == CAP;
        if let Some(first) = page.bars.first() {
            assert!(
                out.first()
                    .is_none_or(|o| page.bars.last().unwrap().time < o.time),
                "pages do not overlap"
            );
            to_time = first.time / 1000;
        }
        let mut bars = page.bars;
        bars.append(&mut out);
        out = bars;
        if !full {
            return out;
        }
    }
}

fn aggregate(bars: &[Bar]) -> Bar {
    Bar {
        time: bars[0].time,
        open: bars[0].open,
        high: bars.iter().map(|b| b.high).fold(f64::MIN, f64::max),
        low: bars.iter().map(|b| b.low).fold(f64::MAX, f64::min),
        close: bars[bars.len() - 1].close,
        volume: bars.iter().map(|b| b.volume).sum(),
    }
}

/// Whether `coarse` is built from `fine` bars.
fn divides(fine: &str, coarse: &str) -> bool {
    let minutes = |r: &str| r.parse::<u32>().ok();
    match (minutes(fine), minutes(coarse)) {
        (Some(f), Some(c)) => c > f && c % f == 0,
        (Some(_), None) => true,
        (None, None) => fine == "D" && coarse != "D",
        (None, Some(_)) => false,
    }
}

/// A series of bars and the range [from, to) (seconds) it covers.
struct Series {
    res: &'static str,
    from: i64,
    to: i64,
    bars: Vec<Bar>,
}

/// Where the trading day stamped `stamp` (00:00 UTC) starts, for grouping
/// intraday bars into D/W/M bars: forex sessions open at 17:00 New York the
/// evening before (21:00 UTC in summer time, 22:00 UTC in winter); stock and
/// crypto days start within their UTC date.
fn trading_day_start(symbol: &str, stamp: i64) -> i64 {
    const FOREX: [&str; 4] = ["EURUSD", "GBPUSD", "USDJPY", "AUDUSD"];
    const US_DST_2024_MS: i64 = 1_710_054_000_000; // 2024-03-10 07:00 UTC
    if !FOREX.contains(&symbol) {
        return stamp;
    }
    stamp - if stamp > US_DST_2024_MS { 3 } else { 2 } * 3_600_000
}

/// Every coarse bar whose whole interval the fine series covers equals the
/// exact aggregate of the fine bars in that interval. A coarse bar's interval
/// ends where the next one starts, so the last bar is never checked.
fn assert_aggregates(symbol: &str, fine: &Series, coarse: &Series) -> usize {
    let (fine_res, coarse_res) = (fine.res, coarse.res);
    let from_intraday = fine_res.parse::<u32>().is_ok() && coarse_res.parse::<u32>().is_err();
    let start = |b: &Bar| {
        if from_intraday {
            trading_day_start(symbol, b.time)
        } else {
            b.time
        }
    };
    let mut checked = 0;
    for w in coarse.bars.windows(2) {
        let (bar, next) = (&w[0], &w[1]);
        let (begin, end) = (start(bar), start(next));
        if begin < fine.from * 1000 || end > fine.to * 1000 {
            continue;
        }
        // Bars are sorted: the constituents are one contiguous slice.
        let lo = fine.bars.partition_point(|b| b.time < begin);
        let hi = fine.bars.partition_point(|b| b.time < end);
        let parts = &fine.bars[lo..hi];
        assert!(
            !parts.is_empty(),
            "{symbol} {coarse_res} bar at {} has no {fine_res} bars",
            bar.time
        );
        // Intraday bars and W/M (from D) are stamped with their first part;
        // D, W and M from intraday bars at 00:00 UTC of the trading day.
        let stamp = if from_intraday {
            bar.time
        } else {
            parts[0].time
        };
        assert_eq!(
            Bar {
                time: stamp,
                ..aggregate(parts)
            },
            *bar,
            "{symbol}: {coarse_res} bar vs its {fine_res} bars"
        );
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_coarser_bar_is_the_aggregate_of_finer_bars_for_every_symbol_and_pair() {
    let s = TestServer::frozen().await;
    let symbols = s.tickers().await;
    assert!(symbols.len() >= 20);
    let client = &s.client;
    let checked: Vec<usize> = stream::iter(symbols.iter())
        .map(|symbol| async move {
            let mut series = Vec::new();
            for res in RESOLUTIONS {
                // W and M need a longer span to have inner bars; D over it is cheap.
                let (from, to) = match res {
                    "D" | "W" | "M" => (WINDOW.0 - 90 * DAY_S, WINDOW.1 + 60 * DAY_S),
                    _ => WINDOW,
                };
                series.push(Series {
                    res,
                    from,
                    to,
                    bars: fetch_all(client, symbol, res, from, to).await,
                });
            }
            let mut checked = 0;
            for fine in &series {
                for coarse in &series {
                    if divides(fine.res, coarse.res) {
                        let n = assert_aggregates(symbol, fine, coarse);
                        assert!(
                            n > 0,
                            "{symbol}: no {} bar to check against {}",
                            coarse.res,
                            fine.res
                        );
                        checked += 1;
                    }
                }
            }
            checked
        })
        .buffer_unordered(4)
        .collect()
        .await;
    // 15 intraday pairs, 6 x (D, W, M), D -> W and D -> M.
    assert!(checked.iter().all(|&n| n == 35), "{checked:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_timestamps() {
    let s = TestServer::frozen().await;
    let c = &s.client;
    let ny_offset_h = |ms: i64| if ms >= 1_710_054_000_000 { 4 } else { 5 }; // DST from 2024-03-10 07:00 UTC
    let aapl = fetch_all(c, "AAPL", "1", WINDOW.0, WINDOW.1).await;
    for b in &aapl {
        let local = b.time / 1000 - ny_offset_h(b.time) * 3600;
        let minute_of_day = local.rem_euclid(DAY_S) / 60;
        let weekday = (local.div_euclid(DAY_S) + 3).rem_euclid(7); // 0 = Monday
        assert!(
            (570..960).contains(&minute_of_day),
            "AAPL bar at {} outside 09:30-16:00 NY",
            b.time
        );
        assert!(weekday < 5, "AAPL bar on a weekend: {}", b.time);
    }
    // 390 one-minute bars per stock day, every weekday.
    let days = fetch_all(c, "AAPL", "D", WINDOW.0, WINDOW.1).await;
    assert_eq!(aapl.len(), days.len() * 390);

    let btc = fetch_all(c, "BTCUSD", "1", WINDOW.0, WINDOW.0 + 7 * DAY_S).await;
    assert_eq!(btc.len(), 7 * 1440, "crypto trades every minute");

    let eur = fetch_all(c, "EURUSD", "1", WINDOW.0, WINDOW.1).await;
    for b in &eur {
        let local = b.time / 1000 - ny_offset_h(b.time) * 3600;
        let weekday = (local.div_euclid(DAY_S) + 3).rem_euclid(7);
        let hour = local.rem_euclid(DAY_S) / 3600;
        assert!(weekday != 5, "forex closed on Saturday");
        assert!(weekday != 6 || hour >= 17, "forex opens Sunday 17:00 NY");
        assert!(weekday != 4 || hour < 17, "forex closes Friday 17:00 NY");
    }
    for res in ["D", "W", "M"] {
        for sym in ["AAPL", "BTCUSD", "EURUSD"] {
            for b in fetch_all(c, sym, res, WINDOW.0, WINDOW.1).await {
                assert_eq!(
                    b.time % (DAY_S * 1000),
                    0,
                    "{sym} {res} bar stamped at 00:00 UTC"
                );
            }
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_bars_contract() {
    let s = TestServer::frozen().await;
    let c = &s.client;
    let now = FROZEN_NOW_S;

    // count_back: exactly n bars ending before to_time, even before from_time.
    let all = fetch_all(c, "AAPL", "D", now - 800 * DAY_S, now).await;
    let page = get(c, "AAPL", "D", now - DAY_S, now, Some(300)).await;
    assert_eq!(page.bars.len(), 300);
    assert_eq!(page.bars[..], all[all.len() - 300..]);
    assert_eq!(page.next_time, Some(all[all.len() - 301].time));
    assert!(!page.no_data);

    // Without count_back, the same range gives the bars in range only.
    let ranged = get(
        c,
        "AAPL",
        "D",
        (all[10].time) / 1000,
        (all[20].time) / 1000,
        None,
    )
    .await;
    assert_eq!(ranged.bars[..], all[10..20]);
    assert_eq!(ranged.next_time, Some(all[9].time));

    // Near the start of history count_back returns what exists.
    let early = get(c, "AAPL", "D", 1_546_300_800, 1_547_164_800, Some(100)).await; // 2019-01-01 .. 2019-01-11
    assert_eq!(early.bars.len(), 8);
    assert_eq!(early.next_time, None);
    assert!(!early.no_data);

    // Before history: no_data.
    let before = get(c, "AAPL", "D", 1_262_304_000, 1_514_764_800, None).await;
    assert!(before.no_data && before.bars.is_empty() && before.next_time.is_none());

    // A weekend: nothing in range, but older data exists.
    let (sat, sun) = (1_709_942_400, 1_710_028_800); // 2024-03-09, 2024-03-10
    let weekend = get(c, "AAPL", "1", sat, sun, None).await;
    assert!(weekend.bars.is_empty() && !weekend.no_data);
    let friday_close = 1_709_931_540_000; // 2024-03-08 15:59 NY (EST)
    assert_eq!(weekend.next_time, Some(friday_close));

    // The cap: a month of crypto minutes gives the newest 5000.
    // to_time is exclusive: `now + 1` takes in the (partial) minute starting at now.
    let capped = get(c, "BTCUSD", "1", now - 30 * DAY_S, now + 1, None).await;
    assert_eq!(capped.bars.len(), CAP);
    let last = capped.bars.last().unwrap().time;
    assert_eq!(
        last,
        (now * 1000).div_euclid(MINUTE_MS) * MINUTE_MS,
        "ends with the current minute"
    );
    assert_eq!(capped.next_time, Some(capped.bars[0].time - MINUTE_MS));

    // The future holds nothing, but the past does.
    let future = get(c, "BTCUSD", "60", now + DAY_S, now + 2 * DAY_S, None).await;
    assert!(future.bars.is_empty() && !future.no_data);
    assert_eq!(
        future.next_time,
        Some((now * 1000).div_euclid(3_600_000) * 3_600_000)
    );

    // An empty range with from == to is valid.
    let empty = get(c, "BTCUSD", "D", now, now, None).await;
    assert!(empty.bars.is_empty() && !empty.no_data);

    // Aliases give the same bars as canonical names.
    for (alias, canonical) in [("1D", "D"), ("1W", "W"), ("1M", "M")] {
        let a = get(c, "MSFT", alias, now - 400 * DAY_S, now, None).await;
        let b = get(c, "MSFT", canonical, now - 400 * DAY_S, now, None).await;
        assert_eq!(a, b);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_deterministic_per_seed_and_distinct_per_symbol() {
    let a = TestServer::start(&[
        "--seed",
        "7",
        "--clock-start",
        "1700000000",
        "--clock-speed",
        "0",
    ])
    .await;
    let b = TestServer::start(&[
        "--seed",
        "7",
        "--clock-start",
        "1700000000",
        "--clock-speed",
        "0",
    ])
    .await;
    let other = TestServer::start(&[
        "--seed",
        "8",
        "--clock-start",
        "1700000000",
        "--clock-speed",
        "0",
    ])
    .await;
    let range = (1_690_000_000, 1_700_000_000);
    let fetch = |s: &TestServer, sym: &'static str| {
        let c = s.client.clone();
        async move { get(&c, sym, "60", range.0, range.1, None).await.bars }
    };
    let first = fetch(&a, "AAPL").await;
    assert!(first.len() > 100);
    assert_eq!(first, fetch(&b, "AAPL").await, "same seed, same bars");
    assert_ne!(
        first,
        fetch(&other, "AAPL").await,
        "another seed, another path"
    );
    // Two symbols do not share a path (compare relative moves).
    let moves = |bars: &[Bar]| {
        bars.windows(2)
            .map(|w| (w[1].close / w[0].close * 1e4).round() as i64)
            .collect::<Vec<_>>()
    };
    assert_ne!(moves(&first), moves(&fetch(&a, "MSFT").await));
    for s in [a, b, other] {
        s.stop().await;
    }
}
