//! Civil-calendar arithmetic: dates as days since 1970-01-01.
//!
//! Everything is closed-form so that any instant maps to a date (and back) in O(1):
//! the series code skips non-trading time arithmetically and must never walk it.
//! Callers keep inputs far from `i64` limits.

pub const MINUTE_MS: i64 = 60_000;
pub const DAY_MINUTES: i64 = 1_440;
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic-Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
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
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
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
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    (days + 4).rem_euclid(7) as u32
}
