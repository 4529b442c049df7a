//! Trading calendars: when a symbol trades and how its time is cut into
//! bars. Every data source (the synthetic market and the stores) uses this
//! one module, so a bar means the same whichever source answers.
//!
//! * `civil`: dates as days since 1970-01-01, weekdays;
//! * `tz`: IANA time zones (jiff's bundled database) as offset tables;
//! * `session`: TradingView session strings;
//! * `resolution`: chart resolutions;
//! * here: [`TradingCalendar`] (the trading days of a session in a zone)
//!   and the buckets of every resolution.
//!
//! The bucketing rules: intraday bars start at the session start plus a
//! whole number of bar lengths and never span two trading days; a daily bar
//! is stamped 00:00 UTC of its trading date; weekly bars group the trading
//! dates of an ISO week (Monday first), monthly bars those of a calendar
//! month, and both are stamped at their first trading day.

pub mod civil;
mod resolution;
mod session;
mod tz;

use std::fmt;

pub use resolution::{ParseResolutionError, Resolution};
pub use session::Session;
pub use tz::Tz;

use civil::{civil_from_days, days_from_civil, DAY_MS, MINUTE_MS};

/// One trading day: its date and its session in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradingDay {
    /// Days since 1970-01-01 of the trading date.
    pub date: i64,
    pub start_ms: i64,
    /// Length of the session.
    pub minutes: i64,
}

impl TradingDay {
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.minutes * MINUTE_MS
    }

    /// Daily bars are stamped at 00:00 UTC of the trading date.
    pub fn stamp(&self) -> i64 {
        self.date * DAY_MS
    }

    pub fn contains(&self, t_ms: i64) -> bool {
        (self.start_ms..self.end_ms()).contains(&t_ms)
    }

    /// Start of the intraday bar of `minutes` that contains `t_ms` (which
    /// must lie in the session): aligned to the session start.
    pub fn bucket_start(&self, minutes: i64, t_ms: i64) -> i64 {
        let width = minutes * MINUTE_MS;
        self.start_ms + (t_ms - self.start_ms).div_euclid(width) * width
    }
}

/// Why a session or time zone cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarError {
    Session { session: String, reason: String },
    Timezone(String),
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalendarError::Session { session, reason } => {
                write!(f, "invalid session {session:?}: {reason}")
            }
            CalendarError::Timezone(tz) => write!(
                f,
                "unknown timezone {tz:?} (expected an IANA name such as America/New_York, \
                 Europe/Berlin or Etc/UTC)"
            ),
        }
    }
}

impl std::error::Error for CalendarError {}

/// The trading days of a session in a time zone. Exchange holidays are not
/// modelled: every listed weekday is a trading day.
#[derive(Clone, Debug)]
pub struct TradingCalendar {
    session: Session,
    /// The session as written, for messages.
    session_text: String,
    tz: Tz,
}

impl TradingCalendar {
    pub fn new(session_text: &str, timezone: &str) -> Result<TradingCalendar, CalendarError> {
        let tz = Tz::parse(timezone).ok_or_else(|| CalendarError::Timezone(timezone.into()))?;
        let session = Session::parse(session_text).map_err(|reason| CalendarError::Session {
            session: session_text.into(),
            reason,
        })?;
        Ok(TradingCalendar {
            session,
            session_text: session_text.into(),
            tz,
        })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn session_text(&self) -> &str {
        &self.session_text
    }

    pub fn tz(&self) -> &Tz {
        &self.tz
    }

    /// The trading day of `date`, if it is one.
    pub fn day(&self, date: i64) -> Option<TradingDay> {
        let (start_ms, end_ms) = self.session.bounds(&self.tz, date)?;
        Some(TradingDay {
            date,
            start_ms,
            minutes: (end_ms - start_ms) / MINUTE_MS,
        })
    }

    /// The newest trading day whose session starts strictly before
    /// `bound_ms`, among the two weeks of dates before it.
    pub fn last_day_starting_before(&self, bound_ms: i64) -> Option<TradingDay> {
        // A session opens at most a day plus a time-zone offset (14 h)
        // before its date, so starting three dates later cannot miss one;
        // and every session trades at least once a week.
        let top = (bound_ms - 1).div_euclid(DAY_MS) + 3;
        (top - 17..=top)
            .rev()
            .filter_map(|date| self.day(date))
            .find(|day| day.start_ms < bound_ms)
    }

    /// The trading day whose session contains `t_ms`, if any.
    pub fn day_containing(&self, t_ms: i64) -> Option<TradingDay> {
        self.last_day_starting_before(t_ms.saturating_add(1))
            .filter(|day| day.contains(t_ms))
    }
}

/// Identifies the week (ISO, Monday-based) or month of a trading date.
pub fn period_key(res: Resolution, date: i64) -> i64 {
    match res {
        Resolution::Month => {
            let (y, m, _) = civil_from_days(date);
            y * 12 + i64::from(m)
        }
        // 1970-01-01 was a Thursday: shifting by 3 makes weeks start on Monday.
        _ => (date + 3).div_euclid(7),
    }
}

/// First calendar date of the week or month containing `date`.
pub fn period_start_date(res: Resolution, date: i64) -> i64 {
    match res {
        Resolution::Month => {
            let (y, m, _) = civil_from_days(date);
            days_from_civil(y, m, 1)
        }
        _ => (date + 3).div_euclid(7) * 7 - 3,
    }
}

/// First calendar date after the week or month containing `date`.
pub fn period_end_date(res: Resolution, date: i64) -> i64 {
    match res {
        Resolution::Month => {
            let (y, m, _) = civil_from_days(date);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1)
        }
        _ => period_start_date(res, date) + 7,
    }
}
