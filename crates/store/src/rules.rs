//! The rules every ingested trade and bar must follow, and where in a
//! symbol's base series each lands. Every store applies requests through
//! these (`plan`), and the import checks rows with them, so they all
//! accept and refuse exactly the same things.

use trading_market::calendar::civil::DAY_MS;
use trading_market::calendar::{Resolution, TradingCalendar, TradingDay};
use trading_market::clock::rfc3339;
use trading_market::ingest::{BarIn, TradeIn};
use trading_market::volume::Volume;

use super::bar::StoredBar;

/// How far ahead of the server's clock a trade or bar may be.
pub const FUTURE_TOLERANCE_MS: i64 = 10_000;

/// The start of the `base` bar that contains the instant `t` (unix ms), or
/// why there is none.
pub fn bar_time(calendar: &TradingCalendar, base: Resolution, t: i64) -> Result<i64, String> {
    bar_time_in(calendar, base, t, &mut None)
}

/// [`bar_time`], remembering the trading day it found in `day`: the next
/// time asked is most likely in the same one.
pub fn bar_time_in(
    calendar: &TradingCalendar,
    base: Resolution,
    t: i64,
    day: &mut Option<TradingDay>,
) -> Result<i64, String> {
    let found = match day.filter(|d| d.contains(t)) {
        Some(d) => d,
        None => {
            *day = calendar.day_containing(t);
            day.ok_or_else(|| {
                format!(
                    "time {} is outside the session ({} {})",
                    rfc3339(t),
                    calendar.session_text(),
                    calendar.tz().name()
                )
            })?
        }
    };
    let day = found;
    Ok(match base.intraday_minutes() {
        Some(minutes) => day.bucket_start(i64::from(minutes), t),
        None => day.stamp(),
    })
}

/// Checks that `t` is the start of a `base` bar: on the grid of the
/// session (intraday), or 00:00 UTC of a trading date (D).
pub fn check_on_grid(calendar: &TradingCalendar, base: Resolution, t: i64) -> Result<(), String> {
    if base.intraday_minutes().is_none() {
        let date = t.div_euclid(DAY_MS);
        if t != date * DAY_MS {
            return Err(format!(
                "time {} is not a daily bar's time (00:00 UTC of the trading date)",
                rfc3339(t)
            ));
        }
        return match calendar.day(date) {
            Some(_) => Ok(()),
            None => Err(format!(
                "{} is not a trading day of the session {}",
                &rfc3339(t)[..10],
                calendar.session_text()
            )),
        };
    }
    let start = bar_time(calendar, base, t)?;
    if start != t {
        return Err(format!(
            "time {} is not on the {}-minute grid of the session (the bar containing it starts at {})",
            rfc3339(t),
            base.as_str(),
            rfc3339(start)
        ));
    }
    Ok(())
}

/// `v` as an exact decimal `m * 10^e`, from its shortest text (what a
/// feeder most likely wrote: `0.1`, not 0.1000000000000000055).
fn decimal(v: f64) -> Option<(i128, i32)> {
    let text = format!("{v:e}");
    let (mantissa, exponent) = text.split_once('e')?;
    let exponent: i32 = exponent.parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let negative = int.starts_with('-');
    let digits: i128 = format!("{}{frac}", int.trim_start_matches('-'))
        .parse()
        .ok()?;
    let m = if negative { -digits } else { digits };
    Some((m, exponent - frac.len() as i32))
}

/// Checks that `price` is a whole number of the symbol's ticks
/// (`minmov / pricescale`), exactly.
pub fn check_tick(what: &str, price: f64, pricescale: i64, minmov: i64) -> Result<(), String> {
    if pricescale <= 0 || minmov <= 0 {
        return Ok(());
    }
    let off = || {
        let tick = minmov as f64 / pricescale as f64;
        format!(
            "{what} {price} is not on the symbol's tick {tick} (minmov {minmov} / pricescale \
             {pricescale})"
        )
    };
    let (m, e) = decimal(price).ok_or_else(off)?;
    // price * pricescale / minmov is whole: m * pricescale * 10^e is a
    // multiple of minmov.
    let mut n = m.checked_mul(i128::from(pricescale)).ok_or_else(off)?;
    let mut divisor = i128::from(minmov);
    if e >= 0 {
        for _ in 0..e {
            n = n.checked_mul(10).ok_or_else(off)?;
        }
    } else {
        for _ in 0..-e {
            divisor = divisor.checked_mul(10).ok_or_else(off)?;
        }
    }
    if n % divisor == 0 {
        Ok(())
    } else {
        Err(off())
    }
}

/// Checks that `volume` has no more decimals than the symbol's volume
/// precision.
pub fn check_step(what: &str, volume: Volume, precision: i64) -> Result<(), String> {
    let precision = precision.clamp(0, i64::from(trading_market::volume::DECIMALS)) as u32;
    let unit = 10i128.pow(trading_market::volume::DECIMALS - precision);
    if volume.units() % unit == 0 {
        Ok(())
    } else {
        Err(format!(
            "{what} {volume} is finer than the symbol's volume precision ({precision} decimal \
             places)"
        ))
    }
}

/// A trade checked against its symbol: the bar it lands in and its size.
/// `day` remembers the trading day of the symbol's previous trade.
pub fn check_trade(
    t: &TradeIn,
    calendar: &TradingCalendar,
    base: Resolution,
    now_ms: i64,
    day: &mut Option<TradingDay>,
) -> Result<(i64, Volume), String> {
    if !(t.price.is_finite() && t.price > 0.0) {
        return Err(format!("price must be positive, got {}", t.price));
    }
    let size = Volume::from_f64(t.size).map_err(|e| format!("size {e}"))?;
    if size.is_negative() {
        return Err(format!("size must not be negative, got {}", t.size));
    }
    check_time(t.time, now_ms)?;
    Ok((bar_time_in(calendar, base, t.time, day)?, size))
}

/// A bar checked against its symbol, as the store keeps it.
pub fn check_bar(
    b: &BarIn,
    calendar: &TradingCalendar,
    base: Resolution,
    now_ms: i64,
) -> Result<StoredBar, String> {
    for (name, v) in [
        ("open", b.open),
        ("high", b.high),
        ("low", b.low),
        ("close", b.close),
    ] {
        if !v.is_finite() {
            return Err(format!("{name} is not a finite number"));
        }
    }
    check_ohlc(b.open, b.high, b.low, b.close)?;
    let volume = Volume::from_f64(b.volume).map_err(|e| format!("volume {e}"))?;
    if volume.is_negative() {
        return Err(format!("volume must not be negative, got {}", b.volume));
    }
    check_time(b.time, now_ms)?;
    check_on_grid(calendar, base, b.time)?;
    Ok(whole_bar(
        calendar,
        base,
        b.time,
        [b.open, b.high, b.low, b.close],
        volume,
    ))
}

/// A bar given whole (imported or ingested as a bar): its open and close
/// count as trades at its start and its end.
pub fn whole_bar(
    calendar: &TradingCalendar,
    base: Resolution,
    time: i64,
    [open, high, low, close]: [f64; 4],
    volume: Volume,
) -> StoredBar {
    let end = match (base.intraday_minutes(), calendar.day_containing(time)) {
        (Some(m), Some(day)) => (time + i64::from(m) * 60_000).min(day.end_ms()),
        (None, _) => calendar
            .day(time.div_euclid(DAY_MS))
            .map_or(time + DAY_MS, |d| d.end_ms()),
        (Some(m), None) => time + i64::from(m) * 60_000,
    };
    StoredBar {
        time,
        open,
        high,
        low,
        close,
        volume,
        first_ms: time,
        last_ms: end - 1,
    }
}

/// `high` is the highest price and `low` the lowest.
pub fn check_ohlc(open: f64, high: f64, low: f64, close: f64) -> Result<(), String> {
    if high < open.max(close).max(low) {
        return Err(format!(
            "high {high} is below the open, close or low (open {open}, low {low}, close {close})"
        ));
    }
    if low > open.min(close) {
        return Err(format!(
            "low {low} is above the open or close (open {open}, close {close})"
        ));
    }
    Ok(())
}

/// The earliest time a trade or bar may have: 1900-01-01T00:00:00Z. Older
/// is a mistake (seconds or microseconds taken for milliseconds, a sign
/// lost), not market data.
pub const EARLIEST_MS: i64 = -2_208_988_800_000;

fn check_time(t: i64, now_ms: i64) -> Result<(), String> {
    if t < EARLIEST_MS {
        return Err(format!(
            "time {t} (unix ms) is before 1900-01-01T00:00:00Z, the earliest a store takes"
        ));
    }
    if t > now_ms.saturating_add(FUTURE_TOLERANCE_MS) {
        return Err(format!(
            "time {} is more than {} s ahead of the server's clock ({})",
            rfc3339(t),
            FUTURE_TOLERANCE_MS / 1000,
            rfc3339(now_ms)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_on_the_tick_and_sizes_on_the_step_exactly() {
        // Ticks of 0.01: what floats cannot say exactly still counts.
        for ok in [250.12, 0.01, 0.07, 98100.5, 1e6, 123456789.99, 0.3] {
            assert!(check_tick("price", ok, 100, 1).is_ok(), "{ok}");
        }
        for off in [250.125, 0.001, 98100.505, 1e-9] {
            let e = check_tick("price", off, 100, 1).unwrap_err();
            assert!(e.contains("not on the symbol's tick 0.01"), "{e}");
        }
        // Ticks of 0.25 (minmov 25, pricescale 100), and whole numbers.
        assert!(check_tick("price", 4012.75, 100, 25).is_ok());
        assert!(check_tick("price", 4012.7, 100, 25).is_err());
        assert!(check_tick("price", 17.0, 1, 1).is_ok());
        assert!(check_tick("price", 17.5, 1, 1).is_err());
        // Eight decimals.
        assert!(check_tick("price", 0.00012345, 100_000_000, 1).is_ok());
        assert!(check_tick("price", 0.000123451, 100_000_000, 1).is_err());
        let v = |text: &str| trading_market::volume::Volume::parse(text).unwrap();
        assert!(check_step("size", v("12"), 0).is_ok());
        assert!(check_step("size", v("0.25"), 2).is_ok());
        assert!(check_step("size", v("0.001"), 8).is_ok());
        let e = check_step("size", v("0.125"), 2).unwrap_err();
        assert!(
            e.contains("size 0.125 is finer than the symbol's volume precision (2"),
            "{e}"
        );
        assert!(check_step("size", v("1.5"), 0).is_err());
    }

    #[test]
    fn trades_land_in_their_bar_or_say_why_not() {
        let cal = TradingCalendar::new("0930-1600", "America/New_York").unwrap();
        let five = Resolution::Min5;
        // 2024-07-01 13:37:12 UTC = 09:37:12 New York: the 09:35 bar.
        let t = 1_719_841_032_000;
        let trade = |price, size, time| TradeIn {
            symbol: "X".into(),
            time,
            price,
            size,
        };
        let now = t + 60_000;
        let (bar, size) = check_trade(&trade(10.0, 2.5, t), &cal, five, now, &mut None).unwrap();
        assert_eq!(bar, 1_719_840_900_000);
        assert_eq!(size.to_string(), "2.5");
        let err = |tr: TradeIn| check_trade(&tr, &cal, five, now, &mut None).unwrap_err();
        assert!(err(trade(0.0, 1.0, t)).contains("price must be positive"));
        assert!(err(trade(1.0, -1.0, t)).contains("size must not be negative"));
        assert!(err(trade(1.0, 0.123456789, t)).contains("more than 8 decimal places"));
        assert!(err(trade(1.0, 1.0, t + 3_600_000)).contains("ahead of the server's clock"));
        assert!(err(trade(1.0, 1.0, EARLIEST_MS - 1)).contains("before 1900-01-01"));
        let night = t + 12 * 3_600_000;
        let e = check_trade(&trade(1.0, 1.0, night), &cal, five, night, &mut None).unwrap_err();
        assert!(e.contains("outside the session"), "{e}");
    }

    #[test]
    fn bars_must_be_on_the_grid_and_consistent() {
        let cal = TradingCalendar::new("0930-1600", "America/New_York").unwrap();
        let open = 1_719_840_600_000; // 09:30 New York
        assert!(check_on_grid(&cal, Resolution::Min5, open + 300_000).is_ok());
        let e = check_on_grid(&cal, Resolution::Min5, open + 60_000).unwrap_err();
        assert!(e.contains("not on the 5-minute grid"), "{e}");
        let monday = 1_719_792_000_000; // 2024-07-01 00:00 UTC
        assert!(check_on_grid(&cal, Resolution::Day, monday).is_ok());
        let e = check_on_grid(&cal, Resolution::Day, monday - 2 * DAY_MS).unwrap_err();
        assert!(e.contains("not a trading day"), "{e}");
        assert!(check_ohlc(10.0, 9.0, 8.0, 9.5)
            .unwrap_err()
            .contains("high 9 is below"));
        assert!(check_ohlc(10.0, 12.0, 10.5, 11.0)
            .unwrap_err()
            .contains("low 10.5 is above"));
    }
}
