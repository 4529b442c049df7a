//! TradingView session strings and the trading-day calendar they define.
//!
//! A trading day is identified by its calendar date (days since 1970-01-01). Its session
//! is a single contiguous interval of local wall-clock time which, for overnight
//! sessions, starts on the previous calendar day. No exchange holidays are modelled.

use super::civil::{weekday, DAY_MINUTES};
use super::tz::Tz;

/// Monday..Friday as weekday bits (bit 0 = Sunday).
const WEEKDAYS: u8 = 0b011_1110;
const ALL_DAYS: u8 = 0b111_1111;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    /// Local minutes from 00:00 of the trading date to the session start; negative when
    /// the session opens on the previous calendar day.
    start_off: i64,
    /// Local minutes from 00:00 of the trading date to the session end (exclusive).
    end_off: i64,
    /// Bit `w` set when dates with weekday `w` (0 = Sunday) are trading days.
    days: u8,
}

impl Session {
    /// Accepts `24x7`, `HHMM-HHMM` (Monday to Friday) and `HHMM-HHMM:DAYS` with DAYS the
    /// TradingView digits 1 = Sunday .. 7 = Saturday. Multi-range sessions
    /// (`0930-1200,1300-1600`, `...|...`) are rejected rather than half-supported.
    pub fn parse(text: &str) -> Result<Session, String> {
        if text == "24x7" {
            return Ok(Session {
                start_off: 0,
                end_off: DAY_MINUTES,
                days: ALL_DAYS,
            });
        }
        if text.contains(',') || text.contains('|') {
            return Err("multiple session ranges are not supported".to_string());
        }
        let (range, days) = match text.split_once(':') {
            Some((range, digits)) => (range, parse_days(digits)?),
            None => (text, WEEKDAYS),
        };
        let (start, end) = range
            .split_once('-')
            .ok_or_else(|| "expected HHMM-HHMM[:DAYS] or 24x7".to_string())?;
        let start = parse_hhmm(start, false)?;
        let end = parse_hhmm(end, true)?;
        let (start_off, end_off) = if start == 0 && (end == 0 || end == DAY_MINUTES) {
            // Midnight to midnight is the whole calendar day, not an overnight session
            // belonging to the next date.
            (0, DAY_MINUTES)
        } else if start < end {
            (start, end)
        } else {
            (start - DAY_MINUTES, end)
        };
        Ok(Session {
            start_off,
            end_off,
            days,
        })
    }

    pub fn trades_on(&self, date: i64) -> bool {
        self.days & (1 << weekday(date)) != 0
    }

    pub fn days_per_week(&self) -> u32 {
        self.days.count_ones()
    }

    /// Sessions that span the full 24 hours leave no overnight break, so consecutive
    /// trading days chain without an opening gap.
    pub fn is_continuous(&self) -> bool {
        self.end_off - self.start_off == DAY_MINUTES
    }

    /// `[start, end)` in UTC milliseconds of the session of trading date `date`, or
    /// `None` when the date is not a trading day or the session vanishes in a DST gap.
    pub fn bounds(&self, tz: &Tz, date: i64) -> Option<(i64, i64)> {
        if !self.trades_on(date) {
            return None;
        }
        let midnight = date * DAY_MINUTES * 60;
        let start = tz.local_to_utc(midnight + self.start_off * 60);
        let end = tz.local_to_utc(midnight + self.end_off * 60);
        (end > start).then_some((start * 1000, end * 1000))
    }
}

fn parse_hhmm(text: &str, allow_2400: bool) -> Result<i64, String> {
    let bad = || format!("invalid time {text:?}, expected HHMM");
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let value: i64 = text.parse().map_err(|_| bad())?;
    let (hours, minutes) = (value / 100, value % 100);
    if allow_2400 && value == 2400 {
        return Ok(DAY_MINUTES);
    }
    if hours > 23 || minutes > 59 {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

fn parse_days(digits: &str) -> Result<u8, String> {
    if digits.is_empty() {
        return Err("empty day list after ':'".to_string());
    }
    let mut mask = 0u8;
    for c in digits.chars() {
        let bit = match c {
            '1'..='7' => 1u8 << (c as u8 - b'1'),
            _ => {
                return Err(format!(
                    "invalid day {c:?}, expected digits 1 (Sunday) to 7"
                ))
            }
        };
        if mask & bit != 0 {
            return Err(format!("day {c:?} listed twice"));
        }
        mask |= bit;
    }
    Ok(mask)
}
