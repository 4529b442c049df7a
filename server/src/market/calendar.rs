//! Civil-calendar arithmetic and the few time zones the market supports.
//!
//! Everything is closed-form so that any instant maps to a date (and back) in O(1):
//! the series code skips non-trading time arithmetically and must never walk it.
//! Callers keep inputs inside the clamped market horizon, far from `i64` limits.

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const DAY_MINUTES: i64 = 1_440;
pub(crate) const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic-Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Counting the year from March moves the leap day to the year's end, which makes the
    // offset of every month start a fixed linear formula of the month number.
    let (y, m) = if month <= 2 {
        (year - 1, i64::from(month) + 9)
    } else {
        (year, i64::from(month) - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 days separate 0000-03-01 (start of era 0) from the Unix epoch.
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month 1..=12, day 1..=31).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    // Remove the leap days accumulated so far (every 4th year, except centuries, except
    // the era's last day) so that dividing by 365 yields the March-based year.
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// Day of week of a day number: 0 = Sunday .. 6 = Saturday (TradingView digit minus one).
pub(crate) fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7) as u32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tz {
    Utc,
    NewYork,
    London,
    Tokyo,
}

impl Tz {
    pub(crate) fn parse(name: &str) -> Option<Tz> {
        match name {
            "Etc/UTC" | "UTC" => Some(Tz::Utc),
            "America/New_York" => Some(Tz::NewYork),
            "Europe/London" => Some(Tz::London),
            "Asia/Tokyo" => Some(Tz::Tokyo),
            _ => None,
        }
    }

    /// Offset from UTC in minutes outside daylight-saving time.
    fn standard_offset(self) -> i64 {
        match self {
            Tz::Utc | Tz::London => 0,
            Tz::NewYork => -300,
            Tz::Tokyo => 540,
        }
    }

    /// Daylight-saving window of `year` as `[start, end)` in UTC minutes; the current rules
    /// are applied to every year because history starts in 2019.
    fn dst_window(self, year: i64) -> Option<(i64, i64)> {
        match self {
            Tz::NewYork => {
                // Second Sunday of March 02:00 EST (07:00 UTC) to first Sunday of
                // November 02:00 EDT (06:00 UTC).
                let march_1 = days_from_civil(year, 3, 1);
                let start_day = march_1 + i64::from((7 - weekday(march_1)) % 7) + 7;
                let november_1 = days_from_civil(year, 11, 1);
                let end_day = november_1 + i64::from((7 - weekday(november_1)) % 7);
                Some((start_day * DAY_MINUTES + 420, end_day * DAY_MINUTES + 360))
            }
            Tz::London => {
                // Last Sunday of March to last Sunday of October, both at 01:00 UTC.
                let march_31 = days_from_civil(year, 3, 31);
                let october_31 = days_from_civil(year, 10, 31);
                let start_day = march_31 - i64::from(weekday(march_31));
                let end_day = october_31 - i64::from(weekday(october_31));
                Some((start_day * DAY_MINUTES + 60, end_day * DAY_MINUTES + 60))
            }
            Tz::Utc | Tz::Tokyo => None,
        }
    }

    /// UTC offset in minutes in effect at the UTC minute `utc_min`.
    #[cfg(test)]
    pub(crate) fn offset_at_utc(self, utc_min: i64) -> i64 {
        let standard = self.standard_offset();
        match self.dst_window(year_of_minute(utc_min)) {
            Some((start, end)) if (start..end).contains(&utc_min) => standard + 60,
            _ => standard,
        }
    }

    /// UTC minute of a local wall-clock minute (minutes since 1970-01-01 00:00 local).
    ///
    /// Ambiguous times (autumn overlap) take the earlier instant and skipped times
    /// (spring gap) map to the transition instant, which keeps the mapping monotone:
    /// a session that starts before it ends locally never ends before it starts in UTC.
    pub(crate) fn local_to_utc(self, local_min: i64) -> i64 {
        let standard = self.standard_offset();
        let Some((start, end)) = self.dst_window(year_of_minute(local_min)) else {
            return local_min - standard;
        };
        let as_standard = local_min - standard;
        let as_daylight = local_min - standard - 60;
        let daylight_valid = (start..end).contains(&as_daylight);
        let standard_valid = !(start..end).contains(&as_standard);
        if daylight_valid {
            as_daylight
        } else if standard_valid {
            as_standard
        } else {
            start
        }
    }
}

fn year_of_minute(minute: i64) -> i64 {
    // DST transitions sit far from New Year, so the local and UTC year agree wherever it
    // matters and either may be used to pick the window.
    civil_from_days(minute.div_euclid(DAY_MINUTES)).0
}
