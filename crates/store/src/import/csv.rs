//! Reading bars from a vendor's CSV file, one row at a time.
//!
//! What a file may look like:
//! * a header row; column names are matched case-insensitively;
//! * UTF-8 with or without a BOM, LF or CRLF line ends, any delimiter;
//! * gzip-compressed (recognised by its first bytes, whatever the name);
//! * the time in a column named `time`, `timestamp`, `date` or `datetime`,
//!   else in the first column (even with an empty header); a `date` column
//!   next to a `time` column holding times of day are read together;
//! * `open`, `high`, `low`, `close`, and optionally `volume`; any other
//!   column is ignored.
//!
//! Times may be unix seconds, milliseconds, microseconds or nanoseconds
//! (told apart by size), ISO 8601 dates (`2024-01-31`, or MetaTrader's
//! `2024.01.31`) or date-times (`2024-01-31T14:30:00`, a space for the `T`
//! is fine) with or without a `Z` or `±HH:MM` offset. A date-time without an
//! offset is wall-clock time in the import's time zone.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

use trading_market::calendar::civil::DAY_MS;

/// A time as written in a file, before it is placed on a grid.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeValue {
    /// An instant: unix time, or a date-time with an offset.
    Instant(i64),
    /// A wall-clock date-time without an offset.
    Local(DateTime),
    /// A date alone.
    Date(Date),
}

/// One data row: its line, and the text of its fields.
pub struct Row {
    pub line: u64,
    pub time: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: Option<String>,
}

/// Bytes read so far from the file (compressed bytes for a gzip file), for
/// the progress bar.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct Counting<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Where each value is in a row.
struct Columns {
    time: usize,
    /// A separate time-of-day column, read after the date.
    time_of_day: Option<usize>,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
    volume: Option<usize>,
}

pub struct CsvBars {
    reader: csv::Reader<Box<dyn Read + Send>>,
    columns: Columns,
    record: csv::StringRecord,
    pub progress: Progress,
}

impl CsvBars {
    /// Opens `path` and reads its header. Errors name the file and what is
    /// wrong with it.
    pub fn open(path: &Path, delimiter: u8) -> Result<CsvBars, String> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| format!("{shown}: cannot open: {e}"))?;
        let progress = Progress::default();
        let mut raw = BufReader::new(Counting {
            inner: file,
            progress: progress.clone(),
        });
        // gzip starts with 1f 8b.
        let gzip = {
            let head = io::BufRead::fill_buf(&mut raw).map_err(|e| format!("{shown}: {e}"))?;
            head.starts_with(&[0x1f, 0x8b])
        };
        let input: Box<dyn Read + Send> = if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(raw))
        } else {
            Box::new(raw)
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(input);
        let header = reader
            .headers()
            .map_err(|e| format!("{shown}: cannot read the header row: {}", describe(&e)))?
            .clone();
        let columns = columns(&header).map_err(|e| format!("{shown}: {e}"))?;
        Ok(CsvBars {
            reader,
            columns,
            record: csv::StringRecord::new(),
            progress,
        })
    }

    /// The next data row, None at the end. A row that cannot be read at all
    /// (not UTF-8, a broken quote) is an error for its line.
    pub fn next_row(&mut self) -> Option<Result<Row, (u64, String)>> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => None,
            Ok(true) => Some(Ok(self.row())),
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                Some(Err((line, describe(&e))))
            }
        }
    }

    fn row(&self) -> Row {
        let r = &self.record;
        let field = |i: usize| r.get(i).unwrap_or("").to_string();
        let time = match self.columns.time_of_day {
            Some(t) => format!("{} {}", field(self.columns.time), field(t)),
            None => field(self.columns.time),
        };
        Row {
            line: r.position().map_or(0, |p| p.line()),
            time,
            open: field(self.columns.open),
            high: field(self.columns.high),
            low: field(self.columns.low),
            close: field(self.columns.close),
            volume: self.columns.volume.map(field),
        }
    }
}

fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "the line is not valid UTF-8".into(),
        csv::ErrorKind::Io(e) => format!("cannot read: {e}"),
        _ => e.to_string(),
    }
}

fn columns(header: &csv::StringRecord) -> Result<Columns, String> {
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |name: &str| names.iter().position(|n| n == name);
    let required = |name: &str| {
        find(name).ok_or_else(|| {
            format!(
                "no {name:?} column (the header has: {})",
                header.iter().collect::<Vec<_>>().join(", ")
            )
        })
    };
    let open = required("open")?;
    let high = required("high")?;
    let low = required("low")?;
    let close = required("close")?;
    let (time, time_of_day) = match (find("date"), find("time")) {
        // MetaTrader and friends: the date and the time of day apart.
        (Some(date), Some(time)) => (date, Some(time)),
        _ => {
            let named = names
                .iter()
                .position(|n| matches!(n.as_str(), "time" | "timestamp" | "date" | "datetime"));
            (named.unwrap_or(0), None)
        }
    };
    if [open, high, low, close].contains(&time) {
        return Err("no time column: name one time, timestamp, date or datetime".into());
    }
    Ok(Columns {
        time,
        time_of_day,
        open,
        high,
        low,
        close,
        volume: find("volume"),
    })
}

/// Reads a time value; the error says what was expected.
pub fn parse_time(text: &str) -> Result<TimeValue, String> {
    let t = text.trim();
    let unparsable = || {
        format!(
            "unparsable time {t:?}: expected unix seconds or milliseconds, a date (2024-01-31) \
             or a date-time (2024-01-31T14:30:00, optionally with Z or an offset like +01:00)"
        )
    };
    if t.is_empty() {
        return Err("missing time".into());
    }
    // MetaTrader writes dates as 2024.01.31.
    let dotted;
    let t = if t.len() >= 10 && t.as_bytes()[4] == b'.' && t.as_bytes()[7] == b'.' {
        dotted = format!("{}-{}-{}", &t[..4], &t[5..7], &t[8..]);
        dotted.as_str()
    } else {
        t
    };
    if let Some(digits) = t.strip_prefix('-').or(Some(t)) {
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            let v: i64 = t.parse().map_err(|_| unparsable())?;
            // Unix seconds reach 1e11 only in the year 5138; milliseconds
            // since 1973 are above it; and so on up.
            let magnitude = v.unsigned_abs();
            let ms = if magnitude >= 100_000_000_000_000_000 {
                v / 1_000_000
            } else if magnitude >= 100_000_000_000_000 {
                v / 1_000
            } else if magnitude >= 100_000_000_000 {
                v
            } else {
                v.saturating_mul(1000)
            };
            return Ok(TimeValue::Instant(ms));
        }
    }
    if let Ok(date) = t.parse::<Date>() {
        if t.len() <= 10 {
            return Ok(TimeValue::Date(date));
        }
    }
    if let Ok(ts) = t.parse::<Timestamp>() {
        return Ok(TimeValue::Instant(ts.as_millisecond()));
    }
    if let Ok(dt) = t.parse::<DateTime>() {
        return Ok(TimeValue::Local(dt));
    }
    Err(unparsable())
}

/// An instant for a wall-clock time in `tz`. A time that happens twice
/// (clocks going back) is the earlier instant unless that is not after
/// `after` (the file's previous row), so a series written in local time
/// steps through both; a time that never happens is an error.
pub fn local_instant(dt: DateTime, tz: &TimeZone, after: Option<i64>) -> Result<i64, String> {
    let ambiguous = tz.to_ambiguous_timestamp(dt);
    let at = |offset: jiff::tz::Offset| -> Result<i64, String> {
        dt.to_zoned_datetime(TimeZone::fixed(offset))
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| e.to_string())
    };
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { offset } => at(offset),
        AmbiguousOffset::Fold {
            before,
            after: later,
        } => {
            let earlier = at(before)?;
            match after {
                Some(prev) if earlier <= prev => at(later),
                _ => Ok(earlier),
            }
        }
        AmbiguousOffset::Gap { .. } => Err(format!(
            "{dt} does not exist in {} (the clocks moved forward over it)",
            tz.iana_name().unwrap_or("the time zone")
        )),
    }
}

/// The trading date a daily bar's time means: a date; a date-time at
/// midnight (wall-clock in `tz`, or UTC); else not a daily time.
pub fn daily_date(value: TimeValue, tz: &TimeZone) -> Result<Date, String> {
    let not_daily = |shown: String| {
        format!("time {shown} is not a date: daily bars need a date (or a time at midnight)")
    };
    match value {
        TimeValue::Date(d) => Ok(d),
        TimeValue::Local(dt) if dt.time() == jiff::civil::Time::midnight() => Ok(dt.date()),
        TimeValue::Local(dt) => Err(not_daily(dt.to_string())),
        TimeValue::Instant(ms) => {
            let ts = Timestamp::from_millisecond(ms).map_err(|e| e.to_string())?;
            if ms.rem_euclid(DAY_MS) == 0 {
                return Ok(ts.to_zoned_datetime(TimeZone::UTC).date());
            }
            let local = ts.to_zoned_datetime(tz.clone());
            if local.time() == jiff::civil::Time::midnight() {
                return Ok(local.date());
            }
            Err(not_daily(ts.to_string()))
        }
    }
}

/// Days since 1970-01-01 of a date.
pub fn days_of(date: Date) -> i64 {
    trading_market::calendar::civil::days_from_civil(
        i64::from(date.year()),
        date.month() as u32,
        date.day() as u32,
    )
}

/// A price field: a finite number.
pub fn parse_price(name: &str, text: &str) -> Result<f64, String> {
    if text.is_empty() {
        return Err(format!("missing {name}"));
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("unparsable number in column {name:?}: {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_values() {
        let ms = |t| match parse_time(t).unwrap() {
            TimeValue::Instant(ms) => ms,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(ms("1704067200"), 1_704_067_200_000);
        assert_eq!(ms("1704067200000"), 1_704_067_200_000);
        assert_eq!(ms("1704067200000000"), 1_704_067_200_000);
        assert_eq!(ms("1704067200000000000"), 1_704_067_200_000);
        assert_eq!(ms("2024-01-01T00:00:00Z"), 1_704_067_200_000);
        assert_eq!(ms("2024-01-01T01:00:00+01:00"), 1_704_067_200_000);
        assert_eq!(ms("2024-01-01 00:00:00Z"), 1_704_067_200_000);
        assert!(matches!(parse_time("2024-01-31"), Ok(TimeValue::Date(_))));
        assert!(matches!(
            parse_time("2024-01-31 14:30"),
            Ok(TimeValue::Local(_))
        ));
        assert!(matches!(
            parse_time("2024-01-31T14:30:00.5"),
            Ok(TimeValue::Local(_))
        ));
        for bad in ["", "yesterday", "31/01/2024", "2024-13-01", "12:30"] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wall_clock_times_across_dst() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let dt = |s: &str| s.parse::<DateTime>().unwrap();
        // 02:30 on 2024-10-27 happens twice: first the summer-time one, then
        // (after a row at that instant) the winter-time one.
        let first = local_instant(dt("2024-10-27T02:30"), &berlin, None).unwrap();
        assert_eq!(first, 1_729_989_000_000);
        let second = local_instant(dt("2024-10-27T02:30"), &berlin, Some(first)).unwrap();
        assert_eq!(second - first, 3_600_000);
        let e = local_instant(dt("2024-03-31T02:30"), &berlin, None).unwrap_err();
        assert!(e.contains("does not exist in Europe/Berlin"), "{e}");
    }

    #[test]
    fn daily_times() {
        let ny = TimeZone::get("America/New_York").unwrap();
        let date = |v| daily_date(parse_time(v).unwrap(), &ny).map(|d| d.to_string());
        assert_eq!(date("2024-01-02").unwrap(), "2024-01-02");
        assert_eq!(date("2024-01-02 00:00:00").unwrap(), "2024-01-02");
        assert_eq!(date("1704153600").unwrap(), "2024-01-02"); // 00:00 UTC
        assert_eq!(date("1704171600").unwrap(), "2024-01-02"); // 00:00 New York
        assert!(date("2024-01-02T15:00:00")
            .unwrap_err()
            .contains("is not a date"));
    }
}
