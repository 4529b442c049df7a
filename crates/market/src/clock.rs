//! The market's notion of "now".
//!
//! History, quotes and live bars all depend on the current time. A clock that
//! can start at a fixed instant and run at any speed (or stand still) makes
//! every run reproducible: tests freeze it, demos replay a day in minutes.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::calendar::civil::civil_from_days;

#[derive(Clone, Debug)]
pub struct Clock {
    start_real: Instant,
    start_ms: i64,
    speed: f64,
}

impl Clock {
    /// A clock that reads `start_ms` now and advances `speed` simulated
    /// milliseconds per real millisecond (0 freezes it).
    pub fn new(start_ms: Option<i64>, speed: f64) -> Clock {
        Clock {
            start_real: Instant::now(),
            start_ms: start_ms.unwrap_or_else(system_now_ms),
            speed,
        }
    }

    /// The wall clock.
    pub fn system() -> Clock {
        Clock::new(None, 1.0)
    }

    pub fn now_ms(&self) -> i64 {
        let elapsed = self.start_real.elapsed().as_secs_f64() * 1000.0 * self.speed;
        self.start_ms.saturating_add(elapsed as i64)
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }
}

pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix milliseconds (proleptic Gregorian, UTC).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199_000), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(-1000), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn frozen_clock_stands_still() {
        let c = Clock::new(Some(1_000), 0.0);
        assert_eq!(c.now_ms(), 1_000);
        assert_eq!(c.now_ms(), 1_000);
    }
}
