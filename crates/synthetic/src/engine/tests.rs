//! Property-style tests: deterministic loops over seeds, instruments and instants.

use super::closed_days::{self, Chunk, ChunkKey, ClosedDays};
use super::path::TickBar;
use super::series::{Instrument, IntradaySource};
use super::*;
use std::sync::Arc;
use trading_market::calendar::civil::{
    civil_from_days, days_from_civil, weekday, DAY_MS, MINUTE_MS,
};
use trading_market::calendar::{period_key, Session, Tz};

const HOUR_MS: i64 = 3_600_000;

fn spec(symbol: &str, session: &str, tz: &str, pricescale: u32, price: f64) -> InstrumentSpec {
    InstrumentSpec {
        symbol: symbol.to_string(),
        session: session.to_string(),
        timezone: tz.to_string(),
        pricescale,
        minmov: 1,
        initial_price: price,
        annual_volatility: 0.3,
        avg_daily_volume: 5_000_000.0,
    }
}

fn specs() -> Vec<InstrumentSpec> {
    vec![
        spec("AAPL", "0930-1600", "America/New_York", 100, 150.0),
        InstrumentSpec {
            annual_volatility: 0.6,
            avg_daily_volume: 30_000.0,
            ..spec("BTCUSD", "24x7", "Etc/UTC", 100, 40_000.0)
        },
        InstrumentSpec {
            annual_volatility: 0.08,
            ..spec(
                "EURUSD",
                "1700-1700:23456",
                "America/New_York",
                100_000,
                1.1,
            )
        },
        InstrumentSpec {
            minmov: 25,
            ..spec("VOD", "0800-1630", "Europe/London", 100, 72.5)
        },
        spec("7203", "0900-1500", "Asia/Tokyo", 1, 2_000.0),
        spec("LDN24", "24x7", "Europe/London", 100, 10.0),
    ]
}

const SYMBOLS: [&str; 6] = ["AAPL", "BTCUSD", "EURUSD", "VOD", "7203", "LDN24"];

fn market(seed: u64) -> Market {
    Market::new(seed, specs()).expect("valid specs")
}

/// Unix ms of a UTC wall-clock time.
fn utc(y: i64, mo: u32, d: u32, h: i64, mi: i64) -> i64 {
    (days_from_civil(y, mo, d) * 1_440 + h * 60 + mi) * MINUTE_MS
}

/// New York offset in hours, from the published 2019/2020 transition instants rather than
/// from the code under test.
fn ny_offset_hours(t: i64) -> i64 {
    let dst = [
        (utc(2019, 3, 10, 7, 0), utc(2019, 11, 3, 6, 0)),
        (utc(2020, 3, 8, 7, 0), utc(2020, 11, 1, 6, 0)),
    ];
    assert!((utc(2019, 1, 1, 0, 0)..utc(2021, 1, 1, 0, 0)).contains(&t));
    if dst.iter().any(|&(a, b)| (a..b).contains(&t)) {
        -4
    } else {
        -5
    }
}

/// Tiny deterministic generator for test inputs.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }
}

fn query(from_ms: i64, to_ms: i64, count_back: Option<usize>, limit: usize) -> BarQuery {
    BarQuery {
        from_s: from_ms.div_euclid(1_000),
        to_s: to_ms.div_euclid(1_000) + i64::from(to_ms.rem_euclid(1_000) != 0),
        count_back,
        limit,
    }
}

fn fetch(m: &Market, sym: &str, res: Resolution, from_ms: i64, to_ms: i64, now: i64) -> Vec<Bar> {
    let page = m
        .bars(sym, res, &query(from_ms, to_ms, None, MAX_LIMIT), now)
        .unwrap();
    assert!(page.bars.len() < MAX_LIMIT, "test window too large");
    page.bars
}

fn last_n(m: &Market, sym: &str, res: Resolution, n: usize, now: i64) -> Vec<Bar> {
    m.bars(sym, res, &query(0, now + 1, Some(n), MAX_LIMIT), now)
        .unwrap()
        .bars
}

fn merge(bars: &[Bar]) -> Bar {
    let mut acc = bars[0];
    for b in &bars[1..] {
        acc.high = acc.high.max(b.high);
        acc.low = acc.low.min(b.low);
        acc.close = b.close;
        acc.volume += b.volume;
    }
    acc
}

fn same_ohlcv(a: &Bar, b: &Bar) -> bool {
    a.open == b.open
        && a.high == b.high
        && a.low == b.low
        && a.close == b.close
        && a.volume == b.volume
}

fn inst<'a>(m: &'a Market, sym: &str) -> &'a Instrument {
    m.instrument(sym).unwrap()
}

fn trading_date(inst: &Instrument, t: i64) -> i64 {
    let day = inst.last_day_before(t + 1).expect("bar inside a session");
    assert!(t < day.end_ms(), "bar at {t} outside its session");
    day.date
}

fn divides(fine: Resolution, coarse: Resolution) -> bool {
    match (fine.intraday_minutes(), coarse.intraday_minutes()) {
        (Some(a), Some(b)) => a < b && b % a == 0,
        (Some(_), None) => true,
        (None, None) => fine == Resolution::Day && coarse != Resolution::Day,
        (None, Some(_)) => false,
    }
}

/// Groups `fine` bars by `key` (consecutive runs) and checks each group against the
/// matching `coarse` bar.
fn check_groups(coarse: &[Bar], fine: &[Bar], key: impl Fn(&Bar) -> i64, ctx: &str) {
    let mut groups: Vec<Vec<Bar>> = Vec::new();
    let mut last_key = None;
    for b in fine {
        let k = key(b);
        if last_key != Some(k) {
            groups.push(Vec::new());
            last_key = Some(k);
        }
        groups.last_mut().unwrap().push(*b);
    }
    assert_eq!(groups.len(), coarse.len(), "{ctx}: group count");
    for (c, g) in coarse.iter().zip(&groups) {
        let m = merge(g);
        assert!(same_ohlcv(c, &m), "{ctx}: coarse {c:?} != merged {m:?}");
    }
}

fn check_aggregation(m: &Market, sym: &str, now: i64) {
    let inst = inst(m, sym);
    for coarse in Resolution::ALL {
        let count = match coarse {
            Resolution::Min1 => continue,
            Resolution::Min5 => 40,
            Resolution::Min15 => 30,
            Resolution::Min30 => 20,
            Resolution::Min60 => 12,
            Resolution::Min240 => 6,
            Resolution::Day => 4,
            Resolution::Week => 2,
            Resolution::Month => 1,
        };
        let c = last_n(m, sym, coarse, count, now);
        assert!(!c.is_empty());
        for fine in Resolution::ALL.into_iter().filter(|&f| divides(f, coarse)) {
            let ctx = format!("{sym} {fine}->{coarse} now={now}");
            let start = if coarse.is_intraday() || fine == Resolution::Day {
                c[0].time
            } else {
                inst.day(c[0].time / DAY_MS).unwrap().start_ms
            };
            // Beyond now: a running forex day is stamped after now but already exists.
            let mut f = fetch(m, sym, fine, start, now + 10 * DAY_MS, now);
            if !coarse.is_intraday() {
                // A forex session opening in the evening runs before its daily stamp, so
                // drop fine bars of days whose coarse bar is not stamped yet.
                let last = c.last().unwrap().time / DAY_MS;
                let date_of = |b: &Bar| {
                    if fine.is_intraday() {
                        trading_date(inst, b.time)
                    } else {
                        b.time / DAY_MS
                    }
                };
                f.retain(|b| match coarse {
                    Resolution::Day => date_of(b) <= last,
                    _ => period_key(coarse, date_of(b)) <= period_key(coarse, last),
                });
            }
            match (coarse.is_intraday(), fine.is_intraday()) {
                (true, _) => check_groups(
                    &c,
                    &f,
                    |b| c.partition_point(|x| x.time <= b.time) as i64,
                    &ctx,
                ),
                (false, true) if coarse == Resolution::Day => {
                    check_groups(&c, &f, |b| trading_date(inst, b.time), &ctx)
                }
                (false, true) => check_groups(
                    &c,
                    &f,
                    |b| period_key(coarse, trading_date(inst, b.time)),
                    &ctx,
                ),
                (false, false) => {
                    check_groups(&c, &f, |b| period_key(coarse, b.time / DAY_MS), &ctx);
                    // Period bars carry the stamp of their first daily bar.
                    for w in &c {
                        assert!(f.iter().any(|d| d.time == w.time), "{ctx}: stamp");
                    }
                }
            }
        }
    }
}

#[test]
fn market_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Market>();
    assert_send_sync::<std::sync::Arc<Market>>();
}

#[test]
fn calendar_roundtrip_and_known_dates() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(days_from_civil(2019, 1, 1), 17_897);
    assert_eq!(utc(2019, 1, 1, 0, 0), HISTORY_START_MS);
    assert_eq!(utc(2100, 1, 1, 0, 0), MAX_TIME_MS);
    assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    assert_eq!(weekday(17_897), 2, "2019-01-01 was a Tuesday");
    // Walk day by day against a naive calendar.
    let (mut y, mut mo, mut d) = (1960i64, 1u32, 1u32);
    for z in days_from_civil(1960, 1, 1)..days_from_civil(2110, 1, 1) {
        assert_eq!(civil_from_days(z), (y, mo, d));
        assert_eq!(days_from_civil(y, mo, d), z);
        let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let len = match mo {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        d += 1;
        if d > len {
            d = 1;
            mo += 1;
            if mo > 12 {
                mo = 1;
                y += 1;
            }
        }
    }
}

#[test]
fn timezones_follow_dst_rules() {
    // The rules the market's four original zones were written by hand with,
    // now read from the IANA database.
    let s = |t: i64| t / 1000;
    let ny = Tz::parse("America/New_York").unwrap();
    assert_eq!(ny.offset_at_utc(s(utc(2019, 3, 10, 6, 59))), -300 * 60);
    assert_eq!(ny.offset_at_utc(s(utc(2019, 3, 10, 7, 0))), -240 * 60);
    assert_eq!(ny.offset_at_utc(s(utc(2019, 11, 3, 5, 59))), -240 * 60);
    assert_eq!(ny.offset_at_utc(s(utc(2019, 11, 3, 6, 0))), -300 * 60);
    assert_eq!(ny.offset_at_utc(s(utc(2024, 3, 10, 7, 0))), -240 * 60);
    let ldn = Tz::parse("Europe/London").unwrap();
    assert_eq!(ldn.offset_at_utc(s(utc(2019, 3, 31, 0, 59))), 0);
    assert_eq!(ldn.offset_at_utc(s(utc(2019, 3, 31, 1, 0))), 3600);
    assert_eq!(ldn.offset_at_utc(s(utc(2019, 10, 27, 0, 59))), 3600);
    assert_eq!(ldn.offset_at_utc(s(utc(2019, 10, 27, 1, 0))), 0);
    let tokyo = Tz::parse("Asia/Tokyo").unwrap();
    assert_eq!(tokyo.offset_at_utc(s(utc(2019, 7, 1, 0, 0))), 540 * 60);
    assert_eq!(Tz::parse("UTC"), Tz::parse("UTC"));
    assert!(Tz::parse("Etc/UTC").is_some());
    assert!(Tz::parse("Europe/Paris").is_some());
    assert!(Tz::parse("Europe/Pariss").is_none());
}

#[test]
fn resolution_names() {
    for r in Resolution::ALL {
        assert_eq!(Resolution::parse(r.as_str()), Some(r));
        assert_eq!(r.to_string().parse::<Resolution>(), Ok(r));
    }
    assert_eq!(Resolution::parse("1D"), Some(Resolution::Day));
    assert_eq!(Resolution::parse("1W"), Some(Resolution::Week));
    assert_eq!(Resolution::parse("1M"), Some(Resolution::Month));
    for bad in ["d", "m", "2", "120", "", " 1", "1S", "12M"] {
        assert_eq!(Resolution::parse(bad), None);
        let err = bad.parse::<Resolution>().unwrap_err();
        assert!(err.to_string().contains("240, D, W, M"));
    }
    assert_eq!(Resolution::Min240.intraday_minutes(), Some(240));
    assert_eq!(Resolution::Week.intraday_minutes(), None);
    let mut sorted = Resolution::ALL;
    sorted.sort();
    assert_eq!(sorted, Resolution::ALL);
}

#[test]
fn session_strings() {
    assert_eq!(
        Session::parse("0930-1600").unwrap(),
        Session::parse("0930-1600:23456").unwrap()
    );
    assert!(Session::parse("24x7").unwrap().is_continuous());
    assert!(Session::parse("1700-1700:23456").unwrap().is_continuous());
    assert!(!Session::parse("0930-1600").unwrap().is_continuous());
    assert!(Session::parse("0000-2400:1234567").unwrap().is_continuous());
    for bad in [
        "",
        "24X7",
        "9:30-16:00",
        "930-1600",
        "0930-1600:",
        "0930-1600:8",
        "0930-1600:0",
        "0930-1600:22",
        "2500-1600",
        "0960-1000",
        "0930-2401",
        "2400-0100",
        "0930-1200,1300-1600",
        "0930-1600:23456|1000-1400:7",
        "0930_1600",
        "０９３０-1600",
    ] {
        assert!(Session::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn market_new_validates_specs() {
    let base = || spec("X", "0930-1600", "America/New_York", 100, 10.0);
    let cases: Vec<(InstrumentSpec, &str)> = vec![
        (
            InstrumentSpec {
                session: "nope".into(),
                ..base()
            },
            "session",
        ),
        (
            InstrumentSpec {
                timezone: "Mars/Base".into(),
                ..base()
            },
            "timezone",
        ),
        (
            InstrumentSpec {
                pricescale: 0,
                ..base()
            },
            "pricescale",
        ),
        (
            InstrumentSpec {
                minmov: 0,
                ..base()
            },
            "minmov",
        ),
        (
            InstrumentSpec {
                initial_price: 0.0,
                ..base()
            },
            "initial_price",
        ),
        (
            InstrumentSpec {
                initial_price: -1.0,
                ..base()
            },
            "initial_price",
        ),
        (
            InstrumentSpec {
                initial_price: f64::NAN,
                ..base()
            },
            "initial_price",
        ),
        (
            InstrumentSpec {
                initial_price: 0.001,
                ..base()
            },
            "one tick",
        ),
        (
            InstrumentSpec {
                initial_price: 1e11,
                ..base()
            },
            "1e12",
        ),
        (
            InstrumentSpec {
                annual_volatility: f64::INFINITY,
                ..base()
            },
            "volatility",
        ),
        (
            InstrumentSpec {
                annual_volatility: -0.1,
                ..base()
            },
            "volatility",
        ),
        (
            InstrumentSpec {
                avg_daily_volume: f64::NAN,
                ..base()
            },
            "volume",
        ),
        (
            InstrumentSpec {
                avg_daily_volume: 1e13,
                ..base()
            },
            "volume",
        ),
        (
            InstrumentSpec {
                symbol: " ".into(),
                ..base()
            },
            "empty",
        ),
    ];
    for (s, needle) in cases {
        let err = Market::new(1, vec![s.clone()]).unwrap_err();
        assert!(err.to_string().contains(needle), "{s:?}: {err}");
    }
    assert!(matches!(
        Market::new(
            1,
            vec![InstrumentSpec {
                timezone: "Mars/Base".into(),
                ..base()
            }]
        ),
        Err(MarketError::UnsupportedTimezone { .. })
    ));
    assert!(matches!(
        Market::new(
            1,
            vec![InstrumentSpec {
                session: "x".into(),
                ..base()
            }]
        ),
        Err(MarketError::InvalidSession { .. })
    ));
    assert_eq!(
        Market::new(1, vec![base(), base()]).unwrap_err(),
        MarketError::DuplicateSymbol("X".into())
    );
    let m = market(1);
    assert!(m.contains("AAPL") && !m.contains("aapl"));
    assert_eq!(m.history_start_ms(), HISTORY_START_MS);
    let q = query(0, 1_000, None, 10);
    assert!(matches!(
        m.bars("NOPE", Resolution::Day, &q, 0),
        Err(MarketError::UnknownSymbol(_))
    ));
    assert!(matches!(
        m.quote("AAPL", 0),
        Err(MarketError::NoData { .. })
    ));
    assert_eq!(m.current_bar("AAPL", Resolution::Min1, 0).unwrap(), None);
}

#[test]
fn stock_trades_only_in_session_across_dst() {
    let m = market(3);
    let now = utc(2019, 3, 20, 0, 0);
    let from = utc(2019, 3, 6, 0, 0);
    let to = utc(2019, 3, 16, 0, 0);
    let mut per_day = std::collections::BTreeMap::new();
    for b in fetch(&m, "AAPL", Resolution::Min1, from, to, now) {
        let local = b.time + ny_offset_hours(b.time) * HOUR_MS;
        let minute_of_day = local.rem_euclid(DAY_MS) / MINUTE_MS;
        let wd = weekday(local.div_euclid(DAY_MS));
        assert!((1..=5).contains(&wd), "weekend bar at {}", b.time);
        assert!(
            (570..960).contains(&minute_of_day),
            "bar at local minute {minute_of_day}"
        );
        *per_day.entry(local.div_euclid(DAY_MS)).or_insert(0) += 1;
    }
    assert_eq!(per_day.len(), 8);
    assert!(per_day.values().all(|&n| n == 390), "{per_day:?}");

    for (res, starts) in [
        (Resolution::Min60, vec![570, 630, 690, 750, 810, 870, 930]),
        (Resolution::Min240, vec![570, 810]),
    ] {
        let bars = fetch(&m, "AAPL", res, from, to, now);
        assert_eq!(bars.len(), 8 * starts.len());
        for b in bars {
            let local = b.time + ny_offset_hours(b.time) * HOUR_MS;
            assert!(starts.contains(&(local.rem_euclid(DAY_MS) / MINUTE_MS)));
        }
    }
    // Around the DST switch the session moves in UTC: 14:30 UTC before, 13:30 after.
    let opens: Vec<i64> = fetch(&m, "AAPL", Resolution::Min240, from, to, now)
        .iter()
        .map(|b| b.time)
        .filter(|t| t.rem_euclid(DAY_MS) < 14 * HOUR_MS + 31 * MINUTE_MS)
        .collect();
    assert!(opens.contains(&utc(2019, 3, 8, 14, 30)));
    assert!(opens.contains(&utc(2019, 3, 11, 13, 30)));
}

#[test]
fn forex_is_closed_on_weekends() {
    let m = market(5);
    let now = utc(2019, 3, 20, 0, 0);
    let from = utc(2019, 3, 6, 0, 0);
    let to = utc(2019, 3, 14, 0, 0);
    let bars = fetch(&m, "EURUSD", Resolution::Min1, from, to, now);
    let mut per_date = std::collections::BTreeMap::new();
    for b in &bars {
        let local = b.time + ny_offset_hours(b.time) * HOUR_MS;
        let wd = weekday(local.div_euclid(DAY_MS));
        let minute_of_day = local.rem_euclid(DAY_MS) / MINUTE_MS;
        assert_ne!(wd, 6, "Saturday bar at {}", b.time);
        assert!(!(wd == 5 && minute_of_day >= 1_020), "Friday evening bar");
        assert!(!(wd == 0 && minute_of_day < 1_020), "Sunday daytime bar");
        // Sessions open at 17:00 New York and belong to the next date.
        let date = (local + 7 * HOUR_MS).div_euclid(DAY_MS);
        *per_date.entry(date).or_insert(0) += 1;
    }
    let complete: Vec<_> = per_date.values().skip(1).take(per_date.len() - 2).collect();
    assert!(complete.iter().all(|&&n| n == 1_440), "{per_date:?}");
    // Friday ends 16:59 EST; Monday's session opens Sunday 17:00 EDT after the switch.
    assert!(bars.iter().any(|b| b.time == utc(2019, 3, 8, 21, 59)));
    assert!(!bars.iter().any(|b| b.time == utc(2019, 3, 8, 22, 0)));
    assert!(!bars.iter().any(|b| b.time == utc(2019, 3, 10, 20, 59)));
    assert!(bars.iter().any(|b| b.time == utc(2019, 3, 10, 21, 0)));

    let daily = fetch(&m, "EURUSD", Resolution::Day, from, to, now);
    let dates: Vec<_> = daily
        .iter()
        .map(|b| civil_from_days(b.time / DAY_MS))
        .collect();
    assert_eq!(
        dates,
        [
            (2019, 3, 6),
            (2019, 3, 7),
            (2019, 3, 8),
            (2019, 3, 11),
            (2019, 3, 12),
            (2019, 3, 13)
        ]
    );

    // A weekend query is empty but not "no data", and points at Friday's last bar.
    let weekend = m
        .bars(
            "EURUSD",
            Resolution::Min1,
            &query(utc(2019, 3, 9, 0, 0), utc(2019, 3, 10, 0, 0), None, 100),
            now,
        )
        .unwrap();
    assert!(weekend.bars.is_empty() && !weekend.no_data);
    assert_eq!(weekend.next_time, Some(utc(2019, 3, 8, 21, 59)));
    // While closed, the current bar is the last one of Friday, final.
    let sat = utc(2019, 3, 9, 12, 0);
    let cur = m
        .current_bar("EURUSD", Resolution::Min1, sat)
        .unwrap()
        .unwrap();
    let fri = bars
        .iter()
        .find(|b| b.time == utc(2019, 3, 8, 21, 59))
        .unwrap();
    assert_eq!(&cur, fri);
    // Sunday evening: the Monday session runs and its daily bar carries Monday's stamp.
    let sun = utc(2019, 3, 10, 23, 0);
    let day = m
        .current_bar("EURUSD", Resolution::Day, sun)
        .unwrap()
        .unwrap();
    assert_eq!(day.time, utc(2019, 3, 11, 0, 0));
    assert!(m.is_session_open("EURUSD", sun).unwrap());
    assert!(!m.is_session_open("EURUSD", sat).unwrap());
}

#[test]
fn crypto_trades_every_minute() {
    let m = market(9);
    let now = utc(2019, 2, 3, 10, 17) + 29_500;
    let bars = fetch(
        &m,
        "BTCUSD",
        Resolution::Min1,
        utc(2019, 1, 30, 0, 0),
        now + 1,
        now,
    );
    assert_eq!(bars[0].time, utc(2019, 1, 30, 0, 0));
    assert_eq!(bars.last().unwrap().time, utc(2019, 2, 3, 10, 17));
    assert!(bars.windows(2).all(|w| w[1].time - w[0].time == MINUTE_MS));
    // The first bar of history is the first minute of 2019.
    let first = fetch(
        &m,
        "BTCUSD",
        Resolution::Min1,
        0,
        HISTORY_START_MS + 120_000,
        now,
    );
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].time, HISTORY_START_MS);
    // Continuous sessions chain without gaps: each day opens at the previous close.
    let days = fetch(&m, "BTCUSD", Resolution::Day, 0, now, now);
    assert_eq!(days.len(), 34);
    assert!(days.windows(2).all(|w| w[1].open == w[0].close));
}

#[test]
fn other_time_zones() {
    let m = market(2);
    let now = utc(2019, 4, 3, 0, 0);
    // London 24x7: the spring-forward day has 23 hours.
    let day = |y, mo, d| {
        fetch(
            &m,
            "LDN24",
            Resolution::Min1,
            utc(y, mo, d, 0, 0) - 2 * HOUR_MS,
            utc(y, mo, d, 0, 0) + 26 * HOUR_MS,
            now,
        )
        .iter()
        .filter(|b| trading_date(inst(&m, "LDN24"), b.time) == days_from_civil(y, mo, d))
        .count()
    };
    assert_eq!(day(2019, 3, 30), 1_440);
    assert_eq!(day(2019, 3, 31), 1_380);
    // Tokyo 09:00-15:00 is 00:00-06:00 UTC all year.
    let tokyo = fetch(
        &m,
        "7203",
        Resolution::Min1,
        utc(2019, 4, 1, 0, 0),
        utc(2019, 4, 2, 0, 0),
        now,
    );
    assert_eq!(tokyo.len(), 360);
    assert_eq!(tokyo[0].time, utc(2019, 4, 1, 0, 0));
    assert_eq!(tokyo[359].time, utc(2019, 4, 1, 5, 59));
    // London equities 08:00-16:30: 07:00 UTC in summer time.
    let vod = fetch(
        &m,
        "VOD",
        Resolution::Min1,
        utc(2019, 4, 1, 0, 0),
        utc(2019, 4, 2, 0, 0),
        now,
    );
    assert_eq!(vod.len(), 510);
    assert_eq!(vod[0].time, utc(2019, 4, 1, 7, 0));
}

#[test]
fn daily_bars_are_stamped_at_utc_midnight_of_trading_days() {
    let m = market(4);
    let now = utc(2019, 2, 20, 15, 0);
    for sym in SYMBOLS {
        let days = fetch(&m, sym, Resolution::Day, 0, now + 3 * DAY_MS, now);
        assert!(days.len() > 30);
        for d in &days {
            assert_eq!(d.time.rem_euclid(DAY_MS), 0, "{sym}");
            assert!(d.time >= HISTORY_START_MS);
            let wd = weekday(d.time / DAY_MS);
            if !matches!(sym, "BTCUSD" | "LDN24") {
                assert!((1..=5).contains(&wd), "{sym} trades on weekday {wd}");
            }
        }
        assert!(days.windows(2).all(|w| w[0].time < w[1].time));
    }
}

#[test]
fn aggregation_is_exact_for_every_divisible_pair() {
    let mut rng = Lcg(11);
    for (i, seed) in [1u64, 77, 123_456_789].into_iter().enumerate() {
        let m = market(seed);
        for (j, sym) in SYMBOLS.into_iter().enumerate() {
            // Arbitrary instants, down to the millisecond, in and out of session.
            let now = match (i + j) % 3 {
                0 => rng.range(utc(2019, 1, 20, 0, 0), utc(2019, 3, 28, 0, 0)),
                1 => utc(2019, 2, 14, 15, 0) + rng.range(0, 60_000),
                _ => utc(2019, 3, 1, 21, 30) + rng.range(0, 4 * HOUR_MS),
            };
            check_aggregation(&m, sym, now);
        }
    }
    // Exact minute boundaries and the very first minutes of history.
    let m = market(5);
    check_aggregation(&m, "BTCUSD", utc(2019, 2, 1, 0, 0));
    check_aggregation(&m, "BTCUSD", HISTORY_START_MS + 61_000);
    check_aggregation(&m, "AAPL", utc(2019, 1, 2, 14, 30));
    check_aggregation(&m, "EURUSD", utc(2019, 3, 4, 22, 0));
}

#[test]
fn weekly_and_monthly_aggregate_daily_bars_over_longer_spans() {
    let m = market(8);
    let now = utc(2019, 7, 17, 18, 45) + 12_345;
    for sym in SYMBOLS {
        let days = fetch(&m, sym, Resolution::Day, 0, now + DAY_MS, now);
        for res in [Resolution::Week, Resolution::Month] {
            let periods = fetch(&m, sym, res, 0, now + DAY_MS, now);
            check_groups(&periods, &days, |b| period_key(res, b.time / DAY_MS), sym);
            for p in &periods {
                let first = days
                    .iter()
                    .find(|d| period_key(res, d.time / DAY_MS) == period_key(res, p.time / DAY_MS))
                    .unwrap();
                assert_eq!(first.time, p.time);
            }
        }
        // current_bar agrees with the last bar of each resolution.
        for res in Resolution::ALL {
            let cur = m.current_bar(sym, res, now).unwrap().unwrap();
            let last = *last_n(&m, sym, res, 1, now + 10 * DAY_MS).last().unwrap();
            let last_now = *fetch(&m, sym, res, cur.time, cur.time + 1, now)
                .last()
                .unwrap();
            assert_eq!(cur, last_now, "{sym} {res}");
            if res.is_intraday() {
                assert!(cur.time <= now);
            }
            assert!(last.time >= cur.time);
        }
    }
}

#[test]
fn bars_obey_ohlc_invariants_and_tick_grid() {
    let m = market(6);
    let now = utc(2019, 1, 18, 17, 0) + 31_234;
    for sym in SYMBOLS {
        let s = m.spec(sym).unwrap().clone();
        let tick = f64::from(s.minmov) / f64::from(s.pricescale);
        let on_grid = |p: f64| {
            let n = p / tick;
            (n - n.round()).abs() < 1e-6 && p > 0.0
        };
        for res in [Resolution::Min1, Resolution::Min60, Resolution::Day] {
            for b in fetch(&m, sym, res, 0, now + 1, now) {
                assert!(
                    b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close),
                    "{b:?}"
                );
                assert!(
                    [b.open, b.high, b.low, b.close].into_iter().all(on_grid),
                    "{sym} {b:?}"
                );
                assert!(b.volume >= 1.0 && b.volume.fract() == 0.0);
            }
        }
    }
}

#[test]
fn get_bars_contract_matches_reference() {
    let mut rng = Lcg(99);
    let m = market(21);
    let now = utc(2019, 1, 13, 14, 37) + 17_000;
    for sym in SYMBOLS {
        for res in Resolution::ALL {
            let all = fetch(
                &m,
                sym,
                res,
                HISTORY_START_MS - 10 * DAY_MS,
                now + 40 * DAY_MS,
                now,
            );
            assert!(all.windows(2).all(|w| w[0].time < w[1].time));
            for case in 0..60 {
                let lo = HISTORY_START_MS / 1_000 - 3 * 86_400;
                let hi = now / 1_000 + 3 * 86_400;
                let (mut from_s, mut to_s) = (rng.range(lo, hi), rng.range(lo, hi));
                if from_s > to_s {
                    std::mem::swap(&mut from_s, &mut to_s);
                }
                if case % 10 == 0 {
                    // Bar-aligned bounds exercise the inclusive/exclusive edges.
                    let b = all[rng.range(0, all.len() as i64) as usize].time / 1_000;
                    (from_s, to_s) = (b.min(to_s), b.max(to_s));
                }
                let count_back = (case % 3 == 0).then(|| rng.range(0, 40) as usize);
                let limit = if case % 4 == 0 {
                    rng.range(0, 30) as usize
                } else {
                    MAX_LIMIT
                };
                let q = BarQuery {
                    from_s,
                    to_s,
                    count_back,
                    limit,
                };
                let page = m.bars(sym, res, &q, now).unwrap();
                let (from_ms, to_ms) = (from_s * 1_000, to_s * 1_000);
                let before_to: Vec<Bar> = all.iter().copied().filter(|b| b.time < to_ms).collect();
                let mut expect: Vec<Bar> = match count_back {
                    Some(n) => before_to[before_to.len().saturating_sub(n)..].to_vec(),
                    None => before_to
                        .iter()
                        .copied()
                        .filter(|b| b.time >= from_ms)
                        .collect(),
                };
                if expect.len() > limit {
                    expect.drain(..expect.len() - limit);
                }
                let older_than = expect.first().map_or(from_ms, |b| b.time);
                let next = all
                    .iter()
                    .rev()
                    .find(|b| b.time < older_than)
                    .map(|b| b.time);
                let ctx = format!("{sym} {res} {q:?}");
                assert_eq!(page.bars, expect, "{ctx}");
                assert_eq!(page.no_data, before_to.is_empty(), "{ctx}");
                assert_eq!(
                    page.next_time,
                    if before_to.is_empty() { None } else { next },
                    "{ctx}"
                );
            }
        }
    }
}

#[test]
fn absurd_ranges_and_clocks_are_handled() {
    let m = market(13);
    let now = utc(2019, 2, 1, 12, 0);
    let started = std::time::Instant::now();
    for sym in SYMBOLS {
        for res in Resolution::ALL {
            for (from_s, to_s) in [
                (i64::MIN / 2, i64::MAX / 2),
                (i64::MIN, i64::MAX),
                (i64::MIN, i64::MIN),
                (i64::MAX, i64::MAX),
                (0, 1),
            ] {
                for count_back in [None, Some(3), Some(0)] {
                    for limit in [0, 5, usize::MAX] {
                        let q = BarQuery {
                            from_s,
                            to_s,
                            count_back,
                            limit: limit.min(50),
                        };
                        let page = m.bars(sym, res, &q, now).unwrap();
                        assert!(page.bars.windows(2).all(|w| w[0].time < w[1].time));
                        assert!(page.bars.iter().all(|b| b.time >= HISTORY_START_MS));
                        if to_s <= 1 {
                            assert!(
                                page.no_data && page.bars.is_empty() && page.next_time.is_none()
                            );
                        }
                    }
                }
            }
            let wide = BarQuery {
                from_s: i64::MIN / 2,
                to_s: i64::MAX / 2,
                count_back: None,
                limit: 5,
            };
            let page = m.bars(sym, res, &wide, now).unwrap();
            assert!(!page.no_data);
            if res.is_intraday() || res == Resolution::Day {
                assert_eq!(page.bars.len(), 5);
                assert!(page.next_time.is_some());
            }
            for clock in [
                i64::MIN,
                -1,
                0,
                HISTORY_START_MS - 1,
                HISTORY_START_MS,
                i64::MAX,
            ] {
                let page = m
                    .bars(
                        sym,
                        res,
                        &query(0, HISTORY_START_MS + DAY_MS, None, 10),
                        clock,
                    )
                    .unwrap();
                assert!(page
                    .bars
                    .iter()
                    .all(|b| b.time <= clock.clamp(HISTORY_START_MS, MAX_TIME_MS) + 3 * DAY_MS));
                let _ = m.current_bar(sym, res, clock).unwrap();
                if clock < HISTORY_START_MS {
                    assert!(m.quote(sym, clock).is_err());
                }
            }
        }
    }
    // Far in the past with a distant "now": nothing is iterated between them.
    let late = utc(2099, 12, 31, 23, 59);
    let q = query(utc(2019, 6, 3, 0, 0), utc(2019, 6, 4, 0, 0), None, 10_000);
    let page = m.bars("AAPL", Resolution::Min1, &q, late).unwrap();
    assert_eq!(page.bars.len(), 390);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn partial_minute_converges_to_final_bar() {
    let m = market(31);
    for (sym, minute_start) in [
        ("BTCUSD", utc(2019, 1, 10, 10, 0)),
        ("AAPL", utc(2019, 1, 10, 15, 7)),
        ("EURUSD", utc(2019, 1, 13, 22, 0)),
        ("VOD", utc(2019, 1, 10, 16, 29)),
    ] {
        let later = minute_start + 5 * DAY_MS;
        let final_bar = fetch(
            &m,
            sym,
            Resolution::Min1,
            minute_start,
            minute_start + 1,
            later,
        )[0];
        assert_eq!(final_bar.time, minute_start);
        let mut prev: Option<Bar> = None;
        for s in 0..60 {
            for ms in [0, 499, 999] {
                let now = minute_start + s * 1_000 + ms;
                let p = m.current_bar(sym, Resolution::Min1, now).unwrap().unwrap();
                assert_eq!(p.time, minute_start);
                assert_eq!(p.open, final_bar.open);
                assert!(p.high <= final_bar.high && p.low >= final_bar.low);
                assert!(p.volume <= final_bar.volume);
                assert!(p.low <= p.close && p.close <= p.high);
                if let Some(q) = prev {
                    assert!(p.high >= q.high && p.low <= q.low && p.volume >= q.volume);
                }
                prev = Some(p);
                // The coarser bars contain the partial minute as of the same instant.
                let five = m.current_bar(sym, Resolution::Min5, now).unwrap().unwrap();
                assert_eq!(five.close, p.close);
                assert!(five.high >= p.high && five.low <= p.low);
                if s == 59 {
                    assert_eq!(p, final_bar, "{sym} at second 59");
                }
            }
        }
        // The partial minute is the same whether asked via bars() or current_bar().
        let now = minute_start + 20_500;
        let page = fetch(
            &m,
            sym,
            Resolution::Min1,
            minute_start - 60_000,
            now + 1,
            now,
        );
        assert_eq!(
            Some(page.last().unwrap()),
            m.current_bar(sym, Resolution::Min1, now).unwrap().as_ref()
        );
    }
}

#[test]
fn deterministic_per_seed_and_symbol() {
    let now = utc(2019, 2, 6, 16, 0) + 4_321;
    let window = |m: &Market, sym: &str, res| fetch(m, sym, res, now - 3 * DAY_MS, now + 1, now);
    let a = market(42);
    let b = market(42);
    let c = market(43);
    b.warm_up(now);
    for sym in SYMBOLS {
        for res in [
            Resolution::Min1,
            Resolution::Min15,
            Resolution::Day,
            Resolution::Week,
        ] {
            assert_eq!(window(&a, sym, res), window(&b, sym, res), "{sym} {res}");
            let (x, y) = (window(&a, sym, res), window(&c, sym, res));
            let differ = x.iter().zip(&y).filter(|(p, q)| p.close != q.close).count();
            assert!(differ * 2 > x.len(), "{sym} {res}: seeds barely differ");
        }
        assert_eq!(a.quote(sym, now).unwrap(), b.quote(sym, now).unwrap());
    }
    // Same parameters under another name follow another path.
    let twin = Market::new(
        42,
        vec![
            spec("AAA", "0930-1600", "America/New_York", 100, 150.0),
            spec("BBB", "0930-1600", "America/New_York", 100, 150.0),
        ],
    )
    .unwrap();
    let (x, y) = (
        window(&twin, "AAA", Resolution::Min1),
        window(&twin, "BBB", Resolution::Min1),
    );
    assert_eq!(x.len(), y.len());
    assert!(x.iter().zip(&y).filter(|(p, q)| p.close != q.close).count() * 2 > x.len());
}

#[test]
fn cache_state_does_not_change_results() {
    let early = utc(2019, 1, 22, 15, 3) + 7_777;
    let late = utc(2019, 3, 5, 19, 59);
    let fresh = market(17);
    let used = market(17);
    for sym in SYMBOLS {
        used.warm_up(late);
        for res in Resolution::ALL {
            let q = query(HISTORY_START_MS, early + 5 * DAY_MS, Some(30), 1_000);
            let _ = used
                .bars(sym, res, &query(0, late + 1, Some(50), 1_000), late)
                .unwrap();
            assert_eq!(
                used.bars(sym, res, &q, early).unwrap(),
                fresh.bars(sym, res, &q, early).unwrap(),
                "{sym} {res}"
            );
            assert_eq!(
                used.current_bar(sym, res, early).unwrap(),
                fresh.current_bar(sym, res, early).unwrap()
            );
        }
        assert_eq!(
            used.quote(sym, early).unwrap(),
            fresh.quote(sym, early).unwrap()
        );
    }
}

#[test]
fn concurrent_cold_requests_agree() {
    let now = utc(2019, 5, 15, 15, 0) + 1_234;
    let shared = std::sync::Arc::new(market(64));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let m = std::sync::Arc::clone(&shared);
            std::thread::spawn(move || {
                let res = [
                    Resolution::Day,
                    Resolution::Week,
                    Resolution::Month,
                    Resolution::Min30,
                ][i];
                SYMBOLS.map(|sym| fetch(&m, sym, res, 0, now + 1, now))
            })
        })
        .collect();
    let fresh = market(64);
    for (i, h) in handles.into_iter().enumerate() {
        let res = [
            Resolution::Day,
            Resolution::Week,
            Resolution::Month,
            Resolution::Min30,
        ][i];
        let got = h.join().expect("worker");
        for (sym, bars) in SYMBOLS.iter().zip(got) {
            assert_eq!(
                bars,
                fetch(&fresh, sym, res, 0, now + 1, now),
                "{sym} {res}"
            );
        }
    }
}

#[test]
fn quote_is_consistent_with_bars() {
    let m = market(55);
    let mut rng = Lcg(5);
    for sym in SYMBOLS {
        let s = m.spec(sym).unwrap().clone();
        let tick = f64::from(s.minmov) / f64::from(s.pricescale);
        for _ in 0..12 {
            let now = rng.range(utc(2019, 1, 3, 0, 0), utc(2019, 4, 30, 0, 0));
            let qt = m.quote(sym, now).unwrap();
            let minute = m.current_bar(sym, Resolution::Min1, now).unwrap().unwrap();
            let day = m.current_bar(sym, Resolution::Day, now).unwrap().unwrap();
            assert_eq!(qt.last, minute.close);
            assert_eq!(
                (qt.open, qt.high, qt.low, qt.volume),
                (day.open, day.high, day.low, day.volume)
            );
            let days = m
                .bars(
                    sym,
                    Resolution::Day,
                    &query(0, day.time + 1, Some(2), 10),
                    now,
                )
                .unwrap()
                .bars;
            assert_eq!(days.last(), Some(&day));
            let prev_close = if days.len() == 2 {
                days[0].close
            } else {
                day.open
            };
            assert_eq!(qt.prev_close, prev_close);
            assert!((qt.change - (qt.last - qt.prev_close)).abs() <= 1e-9 * qt.last.abs().max(1.0));
            assert!((qt.change_percent - qt.change / qt.prev_close * 100.0).abs() < 1e-9);
            let (bid, ask) = (qt.bid.unwrap(), qt.ask.unwrap());
            assert!(bid < qt.last && qt.last < ask);
            let spread_ticks = ((ask - bid) / tick).round();
            assert!(
                (2.0..=6.0).contains(&spread_ticks),
                "{sym} spread {spread_ticks}"
            );
        }
    }
}

#[test]
fn long_history_stays_plausible() {
    let m = market(2024);
    let now = utc(2026, 6, 1, 12, 0);
    for (sym, n_months) in [("AAPL", 89), ("EURUSD", 90)] {
        let initial = m.spec(sym).unwrap().initial_price;
        let days = fetch(&m, sym, Resolution::Day, 0, now, now);
        assert!(days.len() > 1_800);
        for d in &days {
            assert!(
                d.low > initial / 25.0 && d.high < initial * 25.0,
                "{sym} {d:?}"
            );
        }
        let months = fetch(&m, sym, Resolution::Month, 0, now, now);
        // 2019-01..2026-05, plus June for forex whose Monday session opened on Sunday.
        assert_eq!(months.len(), n_months, "{sym}");
        check_groups(
            &months,
            &days,
            |b| period_key(Resolution::Month, b.time / DAY_MS),
            sym,
        );
        // Daily volatility in the right ballpark: mean |log return| ~ 0.8 sigma.
        let s = m.spec(sym).unwrap();
        let sigma = s.annual_volatility / (261f64).sqrt();
        let mean_abs = days
            .windows(2)
            .map(|w| (w[1].close / w[0].close).ln().abs())
            .sum::<f64>()
            / (days.len() - 1) as f64;
        assert!(
            mean_abs > 0.4 * sigma && mean_abs < 2.0 * sigma,
            "{sym} {mean_abs} vs {sigma}"
        );
    }
}

/// Run with `cargo test --release -- --ignored --nocapture timing`.
#[test]
#[ignore]
fn timing_report() {
    use std::time::Instant;
    let m = market(1);
    let now = utc(2026, 5, 20, 15, 12) + 34_567;
    let t = Instant::now();
    m.warm_up(now);
    println!("warm_up (6 instruments, 2019..2026): {:?}", t.elapsed());
    let time = |label: &str, f: &dyn Fn() -> usize| {
        let n = f();
        let reps = 200;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(f());
        }
        println!("{label}: {} bars, {:?} per call", n, t.elapsed() / reps);
    };
    for sym in ["AAPL", "BTCUSD", "EURUSD"] {
        let q = |n| query(0, now + 1, Some(n), MAX_LIMIT);
        time(&format!("{sym} D x400"), &|| {
            m.bars(sym, Resolution::Day, &q(400), now)
                .unwrap()
                .bars
                .len()
        });
        time(&format!("{sym} 1 x5000"), &|| {
            m.bars(sym, Resolution::Min1, &q(5_000), now)
                .unwrap()
                .bars
                .len()
        });
        time(&format!("{sym} 60 x2000"), &|| {
            m.bars(sym, Resolution::Min60, &q(2_000), now)
                .unwrap()
                .bars
                .len()
        });
        time(&format!("{sym} W x300"), &|| {
            m.bars(sym, Resolution::Week, &q(300), now)
                .unwrap()
                .bars
                .len()
        });
        time(&format!("{sym} M all"), &|| {
            m.bars(sym, Resolution::Month, &q(1_000), now)
                .unwrap()
                .bars
                .len()
        });
        time(&format!("{sym} quote"), &|| {
            m.quote(sym, now).map(|_| 1).unwrap()
        });
        time(&format!("{sym} current 1"), &|| {
            m.current_bar(sym, Resolution::Min1, now)
                .unwrap()
                .map_or(0, |_| 1)
        });
        let old = query(
            utc(2020, 3, 2, 0, 0) / 1_000 * 1_000,
            utc(2020, 3, 9, 0, 0),
            None,
            MAX_LIMIT,
        );
        let fresh = Market::new(1, specs()).unwrap();
        let t = Instant::now();
        let n = fresh
            .bars(sym, Resolution::Min1, &old, now)
            .unwrap()
            .bars
            .len();
        println!(
            "{sym} cold 1-min week in 2020: {n} bars in {:?}",
            t.elapsed()
        );
        let fresh = Market::new(1, specs()).unwrap();
        let t = Instant::now();
        let n = fresh
            .bars(sym, Resolution::Day, &q(400), now)
            .unwrap()
            .bars
            .len();
        println!(
            "{sym} cold D x400 (builds the 2019..2026 daily cache): {n} bars in {:?}",
            t.elapsed()
        );
    }
}

/// Top-down generation: every day's minutes aggregate to exactly its daily bar, the bar
/// drawn without them, for days long ago, recent days and the running day.
#[test]
fn daily_bar_equals_aggregate_of_its_minutes() {
    let m = market(808);
    let now = utc(2026, 3, 11, 15, 42) + 17_321;
    let mut rng = Lcg(808);
    for sym in SYMBOLS {
        let inst = inst(&m, sym);
        let daily = fetch(&m, sym, Resolution::Day, 0, now + 2 * DAY_MS, now);
        let mut dates = Vec::new();
        for (y0, m0, d0, y1, m1, d1, count) in [
            (2019, 1, 1, 2019, 12, 31, 25),
            (2021, 1, 1, 2021, 12, 31, 25),
            (2026, 1, 1, 2026, 3, 10, 10),
        ] {
            for _ in 0..count {
                dates.push(rng.range(days_from_civil(y0, m0, d0), days_from_civil(y1, m1, d1)));
            }
        }
        dates.extend(days_from_civil(2019, 1, 1)..days_from_civil(2019, 1, 8));
        let mut checked = 0;
        for date in dates {
            let Some(day) = inst.day(date) else { continue };
            let bar = *daily
                .iter()
                .find(|b| b.time == date * DAY_MS)
                .expect("daily bar of a trading day");
            let minutes = fetch(&m, sym, Resolution::Min1, day.start_ms, day.end_ms(), now);
            assert_eq!(minutes.len() as i64, day.minutes, "{sym} {date}");
            let merged = merge(&minutes);
            assert!(
                same_ohlcv(&bar, &merged),
                "{sym} {date}: {bar:?} != {merged:?}"
            );
            // The extremes are touched by distinct minutes, and minutes trade when the
            // day has volume enough for all of them.
            let touch = |f: &dyn Fn(&Bar) -> bool| -> Vec<usize> {
                (0..minutes.len()).filter(|&i| f(&minutes[i])).collect()
            };
            let highs = touch(&|b| b.high == bar.high);
            let lows = touch(&|b| b.low == bar.low);
            assert!(
                highs.iter().any(|h| lows.iter().any(|l| l != h)) || minutes.len() < 2,
                "{sym} {date}: high and low only touched by one minute"
            );
            if bar.volume >= minutes.len() as f64 {
                assert!(minutes.iter().all(|b| b.volume >= 1.0), "{sym} {date}");
            }
            // Unchanged by the cache: drawn directly on a fresh market too.
            let fresh = market(808);
            let direct = fresh
                .bars(
                    sym,
                    Resolution::Day,
                    &query(0, bar.time + 1, Some(1), 1),
                    now,
                )
                .unwrap();
            assert_eq!(direct.bars, vec![bar], "{sym} {date}");
            checked += 1;
        }
        assert!(checked >= 30, "{sym}: only {checked} days");

        // The running day, as of several instants inside its session: partial daily bar
        // == aggregate of the minutes so far, the partial minute included.
        let last = inst.last_day_before(now + 1).unwrap();
        for k in 0..6 {
            let at = last.start_ms + (now - last.start_ms) * k / 5 + k * 997;
            let at = at.min(now);
            if at >= last.end_ms() {
                continue;
            }
            let day = m.current_bar(sym, Resolution::Day, at).unwrap().unwrap();
            let minutes = fetch(&m, sym, Resolution::Min1, last.start_ms, at + 1, at);
            let merged = merge(&minutes);
            assert!(
                same_ohlcv(&day, &merged),
                "{sym} at {at}: {day:?} != {merged:?}"
            );
            assert_eq!(
                m.current_bar(sym, Resolution::Min1, at).unwrap().as_ref(),
                minutes.last(),
            );
        }
    }
}

/// Daily bars drawn top-down keep realistic ranges and volumes.
#[test]
fn daily_ranges_and_volumes_are_realistic() {
    let m = market(99);
    let now = utc(2024, 1, 1, 0, 0);
    for sym in SYMBOLS {
        let s = m.spec(sym).unwrap().clone();
        let days = fetch(&m, sym, Resolution::Day, 0, now, now);
        let per_year = if s.session == "24x7" { 365.25 } else { 261.0 };
        let sigma = s.annual_volatility / f64::sqrt(per_year);
        let n = days.len() as f64;
        let mean_range = days.iter().map(|d| (d.high / d.low).ln()).sum::<f64>() / n;
        // A Brownian session's expected range is about 1.6 of its volatility.
        assert!(
            mean_range > 1.0 * sigma && mean_range < 4.0 * sigma,
            "{sym}: mean range {mean_range} vs sigma {sigma}"
        );
        let mean_volume = days.iter().map(|d| d.volume).sum::<f64>() / n;
        assert!(
            (mean_volume / s.avg_daily_volume - 1.0).abs() < 0.15,
            "{sym}: mean volume {mean_volume}"
        );
        for d in &days {
            assert!(d.low <= d.open.min(d.close) && d.high >= d.open.max(d.close));
        }
        // Not every day's extreme is its open or close.
        let wicks = days
            .iter()
            .filter(|d| d.high > d.open.max(d.close) && d.low < d.open.min(d.close))
            .count();
        assert!(
            wicks as f64 > 0.5 * n,
            "{sym}: {wicks} of {n} days with both wicks"
        );
    }
}

/// Thin instruments: minute volumes still sum exactly, zeros only when unavoidable.
#[test]
fn thin_volume_splits_exactly() {
    for volume in [0.0, 7.0, 900.0, 2_000.0] {
        let m = Market::new(
            3,
            vec![
                InstrumentSpec {
                    avg_daily_volume: volume,
                    ..spec("THIN", "24x7", "Etc/UTC", 100, 10.0)
                },
                InstrumentSpec {
                    avg_daily_volume: volume,
                    ..spec("SHORT", "1000-1003", "Etc/UTC", 100, 10.0)
                },
            ],
        )
        .unwrap();
        let now = utc(2020, 6, 1, 12, 0);
        for (sym, n) in [("THIN", 1_440usize), ("SHORT", 3)] {
            for date in days_from_civil(2020, 5, 1)..days_from_civil(2020, 5, 31) {
                let Some(day) = inst(&m, sym).day(date) else {
                    continue;
                };
                let bar = fetch(
                    &m,
                    sym,
                    Resolution::Day,
                    date * DAY_MS,
                    date * DAY_MS + 1,
                    now,
                )[0];
                let minutes = fetch(&m, sym, Resolution::Min1, day.start_ms, day.end_ms(), now);
                assert_eq!(minutes.len(), n);
                assert!(same_ohlcv(&bar, &merge(&minutes)), "{sym} {volume} {date}");
                if bar.volume >= n as f64 {
                    assert!(minutes.iter().all(|b| b.volume >= 1.0));
                }
            }
        }
    }
}

/// Intraday bars as every request computed them before closed days were cached: each
/// day's minute path, aggregated as of `now`.
fn from_minute_paths(m: &Market, sym: &str, res: Resolution, q: &BarQuery, now: i64) -> Vec<Bar> {
    let inst = inst(m, sym);
    let minutes = i64::from(res.intraday_minutes().expect("intraday"));
    let src = IntradaySource {
        inst,
        bucket_minutes: minutes,
        now_ms: now,
    };
    let sel = trading_market::paging::select(
        &src,
        q.from_s * 1_000,
        q.to_s * 1_000,
        q.count_back,
        q.limit.min(MAX_LIMIT),
    );
    let width = usize::try_from(minutes).unwrap();
    sel.positions
        .iter()
        .filter_map(|slot| {
            let path = inst.day_path(slot.day);
            let m0 = usize::try_from(slot.bucket).unwrap() * width;
            path.aggregate(&inst.model, m0, m0 + width, now)
        })
        .map(|b| inst.to_bar(&b))
        .collect()
}

const CACHED: [Resolution; 4] = [
    Resolution::Min15,
    Resolution::Min30,
    Resolution::Min60,
    Resolution::Min240,
];

/// Checks one request against the minute paths of a market that never used its cache.
fn check_cached(
    m: &Market,
    reference: &Market,
    sym: &str,
    res: Resolution,
    q: &BarQuery,
    now: i64,
) {
    let page = m.bars(sym, res, q, now).unwrap();
    let expected = from_minute_paths(reference, sym, res, q, now);
    assert!(
        !expected.is_empty(),
        "{sym} {res} now={now}: nothing to compare"
    );
    assert_eq!(page.bars, expected, "{sym} {res} now={now} {q:?}");
}

/// Cached closed days give exactly the minute paths' bars, with the running day (and
/// the running bucket, down to the second) still computed as of `now`, at every cached
/// width and for sessions whose length is not a multiple of the base (AAPL's 390
/// minutes, VOD's 510).
#[test]
fn closed_days_match_minute_paths() {
    let m = market(91);
    let reference = market(91);
    // AAPL, VOD, 7203 mid-session on a Tuesday; the same day later and earlier (after
    // the chunks hold the days closed by the later instant); then a Saturday, when
    // every session but the 24x7 ones has closed.
    let tuesday = utc(2019, 5, 14, 13, 47) + 23_456;
    for now in [
        tuesday,
        tuesday + 3 * HOUR_MS + 61_001,
        tuesday - 2 * HOUR_MS,
        utc(2019, 5, 18, 12, 0) + 999,
    ] {
        for sym in SYMBOLS {
            for res in CACHED {
                for q in [
                    query(0, now + 1, Some(5_000), MAX_LIMIT),
                    query(0, now + 1, Some(7), MAX_LIMIT),
                    query(
                        utc(2019, 2, 27, 7, 0),
                        utc(2019, 3, 13, 16, 31),
                        None,
                        1_000,
                    ),
                ] {
                    check_cached(&m, &reference, sym, res, &q, now);
                }
                assert_eq!(
                    m.current_bar(sym, res, now).unwrap().as_ref(),
                    from_minute_paths(&reference, sym, res, &query(0, now + 1, Some(1), 1), now)
                        .last(),
                    "{sym} {res} now={now}"
                );
            }
        }
    }
    assert!(m.closed.bytes() <= closed_days::DEFAULT_BUDGET_BYTES);
}

/// The chunk of the running day holds the days closed before it and grows as they
/// close, never holding a day before it has closed; requests with an earlier `now`,
/// once the chunk has grown past it, still get only what existed then.
#[test]
fn closed_chunks_grow_as_days_close() {
    let m = market(12);
    let reference = market(12);
    // A Monday, 11:00 in New York.
    let start = utc(2019, 7, 1, 15, 0) + 4_321;
    for (sym, res) in [("BTCUSD", Resolution::Min60), ("AAPL", Resolution::Min240)] {
        let id = m.index[sym];
        let mut latest = i64::MIN;
        for step in [0, 1, 2, 5, 9, 2, 0] {
            let now = start + step * DAY_MS;
            let q = query(0, now + 1, Some(300), MAX_LIMIT);
            check_cached(&m, &reference, sym, res, &q, now);
            if now < latest {
                continue;
            }
            latest = now;
            let today = inst(&m, sym).last_day_before(now + 1).unwrap();
            let open = now < today.end_ms();
            let newest_closed = if open { today.date - 1 } else { today.date };
            let held = m
                .closed
                .get(ChunkKey::of(id, 60, newest_closed))
                .expect("a chunk holding the newest closed day");
            assert_eq!(held.through(), newest_closed, "{sym} step {step}");
            if open {
                let running = m.closed.get(ChunkKey::of(id, 60, today.date));
                assert!(running.is_none_or(|c| c.day(today.date).is_none()));
            }
        }
    }
}

/// Under a budget far below what the requests touch, chunks are dropped and generated
/// again without changing a bar, and the cache never holds more than its budget.
#[test]
fn closed_days_evicted_within_budget() {
    let budget = 96 * 1024;
    let m = Market::with_budget(5, specs(), budget).unwrap();
    let reference = market(5);
    let now = utc(2019, 9, 10, 14, 30) + 5_555;
    let mut rng = Lcg(3);
    let btc = m.index["BTCUSD"];
    let first_key = |q: &BarQuery| {
        let first = m.bars("BTCUSD", Resolution::Min60, q, now).unwrap().bars[0].time;
        ChunkKey::of(btc, 60, first.div_euclid(DAY_MS))
    };
    for round in 0..2 {
        for sym in SYMBOLS {
            for res in CACHED {
                let n = usize::try_from(rng.range(100, 4_000)).unwrap();
                let q = query(0, now + 1, Some(n), MAX_LIMIT);
                check_cached(&m, &reference, sym, res, &q, now);
                assert!(m.closed.bytes() <= budget, "round {round} {sym} {res}");
            }
        }
    }
    // 3,000 hours of BTCUSD span 8 chunks of about 18 KB: the oldest is gone by the
    // time the request has read the newest, and comes back the same.
    let q = query(0, now + 1, Some(3_000), MAX_LIMIT);
    check_cached(&m, &reference, "BTCUSD", Resolution::Min60, &q, now);
    assert!(m.closed.get(first_key(&q)).is_none());
    check_cached(&m, &reference, "BTCUSD", Resolution::Min60, &q, now);
    assert!(m.closed.bytes() <= budget);
    assert!(m.closed.len() >= 2);
}

fn chunk(index: i64, days: i64, bars_per_day: usize) -> Arc<Chunk> {
    let key = ChunkKey {
        instrument: 0,
        base_minutes: 60,
        index,
    };
    let bar = TickBar {
        time: 0,
        open: 1,
        high: 1,
        low: 1,
        close: 1,
        volume: 1,
    };
    Arc::new(Chunk::extend(
        key,
        None,
        key.first_date() + days - 1,
        |_, out| out.extend(std::iter::repeat_n(bar, bars_per_day)),
    ))
}

/// The cache's accounting and eviction order, on chunks of known size.
#[test]
fn closed_days_budget_and_lru_order() {
    let size = chunk(0, 16, 24).bytes();
    assert!(size >= 16 * 24 * std::mem::size_of::<TickBar>());
    let cache = ClosedDays::new(3 * size);
    let key = |index| ChunkKey {
        instrument: 0,
        base_minutes: 60,
        index,
    };
    for i in 0..3 {
        cache.insert(key(i), chunk(i, 16, 24));
    }
    assert_eq!((cache.len(), cache.bytes()), (3, 3 * size));
    // Chunk 0 is used again, so chunk 1 is the least recently used.
    assert!(cache.get(key(0)).is_some());
    cache.insert(key(3), chunk(3, 16, 24));
    assert!(cache.get(key(1)).is_none());
    assert_eq!((cache.len(), cache.bytes()), (3, 3 * size));
    // Replacing a chunk by a grown copy of itself counts the copy only.
    cache.insert(key(4), chunk(4, 2, 24));
    assert_eq!(cache.len(), 3);
    cache.insert(key(4), chunk(4, 3, 24));
    assert!(cache.bytes() <= cache.budget_bytes());
    assert_eq!(
        cache.get(key(4)).unwrap().through(),
        key(4).first_date() + 2
    );
    // A chunk larger than the whole budget is not kept, and costs nothing.
    let tiny = ClosedDays::new(size / 2);
    tiny.insert(key(9), chunk(9, 16, 24));
    assert_eq!((tiny.len(), tiny.bytes()), (0, 0));
    // Reading buckets: aligned groups of base bars, the last one short.
    let day: Vec<TickBar> = (0..7)
        .map(|i| TickBar {
            time: i * 60,
            open: 10 + i,
            high: 20 + i,
            low: 5 - i,
            close: 11 + i,
            volume: 1 << i,
        })
        .collect();
    let b = closed_days::bucket(&day, 60, 240, 1).unwrap();
    assert_eq!(
        (b.time, b.open, b.high, b.low, b.close, b.volume),
        (240, 14, 26, -1, 17, 16 + 32 + 64)
    );
    assert!(closed_days::bucket(&day, 60, 240, 2).is_none());
    assert_eq!(closed_days::bucket(&day, 60, 60, 6), Some(day[6]));
}
