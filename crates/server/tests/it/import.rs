//! `trading-server import` and `trading-server export` end to end: the real
//! binary run as a process on a SQLite store of its own per test, checked
//! through `export` (CSV back out) and, where it matters, the REST API of a
//! server on the same store.
//!
//! Covered:
//! * every validation error fails the whole file with `FILE:LINE: reason`
//!   and stores nothing; each file is its own transaction;
//! * `--skip-invalid` stores the valid rows and reports each skipped line;
//! * time zones: naive local times across the Europe/Berlin fall-back and
//!   spring-forward, and a Chicago session across the US DST change with its
//!   60-minute and daily aggregates;
//! * gzip, and the CSV dialects vendors write (BOM, CRLF, `;` and tab
//!   delimiters, any header case, extra columns, an unnamed time column,
//!   unix seconds and milliseconds, separate date and time columns);
//! * idempotent re-import, and an overlapping import replacing only its bars;
//! * a daily-only symbol: what it serves, by export and by REST, and its
//!   weekly and monthly aggregates;
//! * export -> import -> export is byte-identical;
//! * symbol registration: inferred and overridden fields, base-resolution
//!   mismatch, `--symbols FILE.json`, unknown time zones, missing columns.
//!
//! Expected bars are computed here from the rows written (own calendar
//! arithmetic, own aggregation), never by asking the server.

use std::fmt::Write as _;
use std::io::Write as _;

use crate::common::error_of;
use crate::common::store::{cli, cli_ok, store_server, Run, TempDir};

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;
const EXPORT_HEADER: &str = "time,open,high,low,close,volume\n";
/// A US stock's session, for `import` flags.
const NEW_YORK: [&str; 4] = ["--session", "0930-1600", "--timezone", "America/New_York"];

// ---------------------------------------------------------------------------
// Calendar arithmetic (UTC, proleptic Gregorian), independent of the server.

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
fn days(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// Unix ms of a UTC date and time of day.
fn utc(y: i64, m: i64, d: i64, hh: i64, mm: i64) -> i64 {
    days(y, m, d) * DAY + hh * HOUR + mm * MINUTE
}

/// Monday = 0 .. Sunday = 6 (1970-01-01 was a Thursday).
fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// `2024-07-01`.
fn date_text(ms: i64) -> String {
    let (y, m, d) = civil(ms.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2024-07-01T13:30:00Z`, as export writes intraday times.
fn iso(ms: i64) -> String {
    let sod = ms.rem_euclid(DAY) / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        date_text(ms),
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `2024-07-01 09:30`: a wall-clock time, given unix ms shifted by the
/// zone's offset.
fn wall(shifted_ms: i64) -> String {
    let sod = shifted_ms.rem_euclid(DAY) / 1000;
    format!(
        "{} {:02}:{:02}",
        date_text(shifted_ms),
        sod / 3600,
        sod % 3600 / 60
    )
}

/// Europe/Berlin's UTC offset in autumn 2024: CEST until 01:00 UTC on
/// 2024-10-27, CET after.
fn berlin_autumn_offset(ms: i64) -> i64 {
    if ms < utc(2024, 10, 27, 1, 0) {
        2 * HOUR
    } else {
        HOUR
    }
}

/// America/Chicago's UTC offset in March 2024: CST until 08:00 UTC on
/// 2024-03-10, CDT after.
fn chicago_offset(ms: i64) -> i64 {
    if ms < utc(2024, 3, 10, 8, 0) {
        -6 * HOUR
    } else {
        -5 * HOUR
    }
}

// ---------------------------------------------------------------------------
// Bars: generated from a fixed LCG, written as CSV, aggregated, expected back.

#[derive(Clone, Debug, PartialEq)]
struct Bar {
    time: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: u64,
}

/// A fixed linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n) as i64
    }
}

/// One bar per time: a random walk in ticks of 10^-decimals from 100,
/// with low <= open, close <= high.
fn walk(times: &[i64], seed: u64, decimals: u32) -> Vec<Bar> {
    let mut rng = Lcg(seed);
    let scale = 10f64.powi(decimals as i32);
    let mut price = 100 * 10i64.pow(decimals);
    times
        .iter()
        .map(|&time| {
            let open = price;
            let close = open + rng.below(41) - 20;
            let high = open.max(close) + rng.below(11);
            let low = open.min(close) - rng.below(11);
            price = close;
            Bar {
                time,
                open: open as f64 / scale,
                high: high as f64 / scale,
                low: low as f64 / scale,
                close: close as f64 / scale,
                volume: 100 + rng.below(900) as u64,
            }
        })
        .collect()
}

/// `TIME,O,H,L,C,V` with the prices at `decimals` places.
fn row(time: &str, b: &Bar, decimals: usize) -> String {
    format!(
        "{time},{:.p$},{:.p$},{:.p$},{:.p$},{}",
        b.open,
        b.high,
        b.low,
        b.close,
        b.volume,
        p = decimals
    )
}

/// A CSV file: the header, then one row per bar with its time as `time_of`
/// writes it.
fn csv(header: &str, bars: &[Bar], decimals: usize, time_of: impl Fn(i64) -> String) -> String {
    let mut text = format!("{header}\n");
    for b in bars {
        writeln!(text, "{}", row(&time_of(b.time), b, decimals)).unwrap();
    }
    text
}

/// The CSV `export` writes for these bars: RFC 3339 UTC times for intraday
/// bars, dates for daily and coarser ones, numbers in their shortest form.
fn expected_export(bars: &[Bar], daily: bool) -> String {
    let mut text = EXPORT_HEADER.to_string();
    for b in bars {
        let time = if daily {
            date_text(b.time)
        } else {
            iso(b.time)
        };
        writeln!(
            text,
            "{time},{},{},{},{},{}",
            b.open, b.high, b.low, b.close, b.volume
        )
        .unwrap();
    }
    text
}

/// Consecutive bars with the same bucket key folded into one (first open,
/// max high, min low, last close, summed volume), stamped with the stamp
/// `bucket` gives its first bar. `bucket(time) -> (key, stamp)`.
fn aggregate_by(bars: &[Bar], bucket: impl Fn(i64) -> (i64, i64)) -> Vec<Bar> {
    let mut out: Vec<(i64, Bar)> = Vec::new();
    for b in bars {
        let (key, stamp) = bucket(b.time);
        match out.last_mut() {
            Some((k, agg)) if *k == key => {
                agg.high = agg.high.max(b.high);
                agg.low = agg.low.min(b.low);
                agg.close = b.close;
                agg.volume += b.volume;
            }
            _ => out.push((
                key,
                Bar {
                    time: stamp,
                    ..b.clone()
                },
            )),
        }
    }
    out.into_iter().map(|(_, b)| b).collect()
}

/// Weekday daily bars grouped by ISO week (Monday to Sunday), stamped at
/// its Monday, the week's first trading day by the session (holidays are
/// not the session's), whichever day has data.
fn weekly(daily: &[Bar]) -> Vec<Bar> {
    aggregate_by(daily, |t| {
        let monday = t.div_euclid(DAY) - weekday(t.div_euclid(DAY));
        (monday, monday * DAY)
    })
}

/// Weekday daily bars grouped by calendar month, stamped at its first
/// weekday.
fn monthly(daily: &[Bar]) -> Vec<Bar> {
    aggregate_by(daily, |t| {
        let day = t.div_euclid(DAY);
        let (y, m, d) = civil(day);
        let mut first = day - (d - 1);
        while weekday(first) >= 5 {
            first += 1;
        }
        (y * 12 + m, first * DAY)
    })
}

/// Every `step` from `start` (inclusive) to `end` (exclusive).
fn times(start: i64, end: i64, step: i64) -> Vec<i64> {
    (0..)
        .map(|i| start + i * step)
        .take_while(|t| *t < end)
        .collect()
}

// ---------------------------------------------------------------------------
// A store in a directory of its own, and the commands on it.

struct Fixture {
    dir: TempDir,
    store: String,
}

impl Fixture {
    /// A new store: `sqlite:PATH`.
    fn new(label: &str) -> Fixture {
        let dir = TempDir::new(label);
        let store = format!("sqlite:{}", dir.path().join("store.db").display());
        Fixture { dir, store }
    }

    /// Writes a file next to the store; its path.
    fn file(&self, name: &str, text: &str) -> String {
        self.dir.file(name, text).display().to_string()
    }

    /// Writes a gzip-compressed file; its path.
    fn gzip_file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        path.display().to_string()
    }

    fn args<'a>(&'a self, command: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![command, "--store", self.store.as_str()];
        args.extend_from_slice(rest);
        args
    }

    /// `import --store STORE ARGS`.
    fn import(&self, rest: &[&str]) -> Run {
        cli(&self.args("import", rest))
    }

    fn import_ok(&self, rest: &[&str]) -> Run {
        cli_ok(&self.args("import", rest))
    }

    /// `export --store STORE --symbol SYMBOL --resolution RES ARGS`.
    fn export(&self, symbol: &str, resolution: &str, rest: &[&str]) -> Run {
        let mut args = vec!["--symbol", symbol, "--resolution", resolution];
        args.extend_from_slice(rest);
        cli(&self.args("export", &args))
    }

    /// The CSV export writes; panics if it fails.
    fn exported(&self, symbol: &str, resolution: &str) -> String {
        let run = self.export(symbol, resolution, &[]);
        assert!(run.ok, "export {symbol} {resolution} failed: {run:?}");
        run.stdout
    }

    /// Asserts that `symbol` is not registered in the store at all.
    fn assert_unknown(&self, symbol: &str) {
        let run = self.export(symbol, "D", &[]);
        assert!(!run.ok, "{symbol} should not exist: {run:?}");
        assert!(
            run.stderr.contains(&format!("unknown symbol \"{symbol}\"")),
            "{run:?}"
        );
    }
}

/// Asserts the run failed on `file` at `line` for `reason`, and said that
/// nothing of the file was stored.
fn assert_fails_at(run: &Run, file: &str, line: u64, reason: &str) {
    assert!(!run.ok, "expected a failure at {file}:{line}: {run:?}");
    assert_eq!(run.code, Some(1), "{run:?}");
    let prefix = format!("{file}:{line}: ");
    let reported = run
        .stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} on stderr: {run:?}"));
    assert!(
        reported.contains(reason),
        "{reported:?} should contain {reason:?}"
    );
    assert!(
        run.stderr
            .contains(&format!("{file}: nothing stored (fix the line")),
        "{run:?}"
    );
}

/// The rows of `export` output, header excluded.
fn export_rows(csv: &str) -> Vec<&str> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(EXPORT_HEADER.trim_end()));
    lines.collect()
}

// ---------------------------------------------------------------------------
// 1. Validation: an invalid row fails the whole file.

/// 5-minute New York bars of 2024-07-02 written in wall-clock time, with
/// `bad` as line 5 (the header is line 1) between valid rows.
fn file_with_bad_line_5(bad: &str) -> String {
    let day = utc(2024, 7, 2, 13, 30);
    let bars = walk(&times(day, day + 6 * 5 * MINUTE, 5 * MINUTE), 7, 2);
    let ny = |t: i64| wall(t - 4 * HOUR);
    let mut lines: Vec<String> = bars.iter().map(|b| row(&ny(b.time), b, 2)).collect();
    lines.insert(3, bad.to_string());
    format!("time,open,high,low,close,volume\n{}\n", lines.join("\n"))
}

#[test]
fn every_invalid_row_fails_its_whole_file_with_its_line_and_reason() {
    // (what, line 5, a recognisable part of the reason)
    let cases: [(&str, &str, &str); 16] = [
        (
            "number",
            "2024-07-02 09:45,100.5,12.5x,99,100",
            "unparsable number in column \"high\": \"12.5x\"",
        ),
        (
            "missing",
            "2024-07-02 09:45,100.5,101,99,,10",
            "missing close",
        ),
        (
            "time",
            "2024-07-02 9h45,100.5,101,99,100,10",
            "unparsable time \"2024-07-02 9h45\"",
        ),
        (
            "date-only",
            "2024-07-02,100.5,101,99,100,10",
            "is a date without a time",
        ),
        (
            "high-below-open",
            "2024-07-02 09:45,101,100.5,99,100,10",
            "high 100.5 is below the open, close or low",
        ),
        (
            "high-below-close",
            "2024-07-02 09:45,100,100.5,99,101,10",
            "high 100.5 is below the open, close or low",
        ),
        (
            "high-below-low",
            "2024-07-02 09:45,100,99,99.5,100,10",
            "high 99 is below the open, close or low",
        ),
        (
            "low-above-open",
            "2024-07-02 09:45,100,102,100.5,101,10",
            "low 100.5 is above the open or close",
        ),
        (
            "low-above-close",
            "2024-07-02 09:45,101,102,100.5,100,10",
            "low 100.5 is above the open or close",
        ),
        (
            "negative-volume",
            "2024-07-02 09:45,100,101,99,100,-5",
            "negative volume -5",
        ),
        ("volume", "2024-07-02 09:45,100,101,99,100,12a", "volume"),
        (
            "off-grid",
            "2024-07-02 09:46,100,101,99,100,10",
            "time 2024-07-02T13:46:00Z is not on the 5-minute grid of the session \
             (the bar containing it starts at 2024-07-02T13:45:00Z)",
        ),
        (
            "before-open",
            "2024-07-02 09:25,100,101,99,100,10",
            "time 2024-07-02T13:25:00Z is outside the session (0930-1600 America/New_York)",
        ),
        (
            "at-close",
            "2024-07-02 16:00,100,101,99,100,10",
            "time 2024-07-02T20:00:00Z is outside the session",
        ),
        (
            "saturday",
            "2024-07-06 10:00,100,101,99,100,10",
            "time 2024-07-06T14:00:00Z is outside the session",
        ),
        (
            "duplicate",
            "2024-07-02 09:35,100,101,99,100,10",
            "duplicate time 2024-07-02T13:35:00Z (an earlier line has the same time)",
        ),
    ];

    // A store where ACME already has 2024-07-01.
    let f = Fixture::new("import-invalid");
    let monday = utc(2024, 7, 1, 13, 30);
    let first = walk(&times(monday, monday + 390 * MINUTE, 5 * MINUTE), 1, 2);
    let good = f.file(
        "monday.csv",
        &csv("time,open,high,low,close,volume", &first, 2, |t| {
            wall(t - 4 * HOUR)
        }),
    );
    let mut flags = vec!["--symbol", "ACME", "--resolution", "5"];
    flags.extend_from_slice(&NEW_YORK);
    f.import_ok(&[flags.as_slice(), &[good.as_str()]].concat());
    let before: Vec<String> = ["5", "60", "D"]
        .iter()
        .map(|r| f.exported("ACME", r))
        .collect();
    assert_eq!(before[0], expected_export(&first, false));

    for (what, bad, reason) in cases {
        let text = file_with_bad_line_5(bad);
        let file = f.file(&format!("{what}.csv"), &text);
        let args = [flags.as_slice(), &[file.as_str()]].concat();

        // Into the store with bars: nothing of the file lands.
        let run = f.import(&args);
        assert_fails_at(&run, &file, 5, reason);
        let after: Vec<String> = ["5", "60", "D"]
            .iter()
            .map(|r| f.exported("ACME", r))
            .collect();
        assert_eq!(after, before, "{what}: the store changed");

        // Into a fresh store: not even the symbol is registered.
        let fresh = Fixture::new("import-invalid-fresh");
        let run = fresh.import(&args);
        assert_fails_at(&run, &file, 5, reason);
        fresh.assert_unknown("ACME");
    }
}

#[test]
fn each_file_is_its_own_transaction() {
    let f = Fixture::new("import-per-file");
    let start = utc(2024, 7, 1, 0, 0);
    let bars = walk(&times(start, start + 30 * MINUTE, MINUTE), 3, 2);
    let good = f.file(
        "good.csv",
        &csv("time,open,high,low,close,volume", &bars, 2, iso),
    );
    let bad = f.file(
        "bad.csv",
        "time,open,high,low,close,volume\n2024-07-02T00:00:00Z,1,2,0.5,1.5,3\n\
         2024-07-02T00:01:00Z,1,0.9,0.5,1.5,3\n",
    );
    let run = f.import(&["--symbol", "MIX", "--resolution", "1", &bad, &good]);
    assert_fails_at(&run, &bad, 3, "high 0.9 is below");
    assert!(
        run.stdout
            .contains(&format!("{good}: 30 rows read, 30 bars stored, 0 rejected")),
        "{run:?}"
    );
    assert_eq!(f.exported("MIX", "1"), expected_export(&bars, false));
}

// ---------------------------------------------------------------------------
// 2. --skip-invalid.

#[test]
fn skip_invalid_stores_the_valid_rows_and_reports_each_skipped_line() {
    let f = Fixture::new("import-skip");
    let open = utc(2024, 7, 1, 13, 30);
    let bars = walk(&times(open, open + 390 * MINUTE, 5 * MINUTE), 11, 2);
    let ny = |t: i64| wall(t - 4 * HOUR);
    let mut lines: Vec<String> = bars.iter().map(|b| row(&ny(b.time), b, 2)).collect();
    // Bad rows, inserted (in this order) so that they end up at these lines.
    let bad: [(usize, &str, &str); 5] = [
        (
            3,
            "2024-07-01 09:32,100,101,99,100,1",
            "not on the 5-minute grid",
        ),
        (10, "2024-07-01 10:05,100,99,98,100,1", "high 99 is below"),
        (
            20,
            "2024-07-01 17:00,100,101,99,100,1",
            "outside the session",
        ),
        (
            30,
            "2024-07-01 09:40,1,1,1,1,1",
            "duplicate time 2024-07-01T13:40:00Z",
        ),
        (40, "not a time,100,101,99,100,1", "unparsable time"),
    ];
    for (line, text, _) in &bad {
        lines.insert(line - 2, text.to_string());
    }
    let file = f.file(
        "day.csv",
        &format!("time,open,high,low,close,volume\n{}\n", lines.join("\n")),
    );

    let run = f.import_ok(
        &[
            &["--symbol", "SKIP", "--resolution", "5", "--skip-invalid"],
            &NEW_YORK[..],
            &[&file],
        ]
        .concat(),
    );
    assert!(
        run.stdout.contains(&format!(
            "{file}: {} rows read, {} bars stored, 5 rejected",
            bars.len() + 5,
            bars.len()
        )),
        "{run:?}"
    );
    let skipped: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains(": skipped: "))
        .collect();
    assert_eq!(skipped.len(), bad.len(), "{run:?}");
    for ((line, _, reason), reported) in bad.iter().zip(&skipped) {
        let prefix = format!("  {file}:{line}: skipped: ");
        assert!(
            reported.starts_with(&prefix) && reported.contains(reason),
            "{reported:?} should start with {prefix:?} and name {reason:?}"
        );
    }
    // The duplicate's first row (the valid 09:40 bar) is the one kept.
    assert_eq!(f.exported("SKIP", "5"), expected_export(&bars, false));

    // A file with no valid row at all is a failure, and stores nothing.
    let none = f.file(
        "none.csv",
        "time,open,high,low,close\n2024-07-08 08:00,1,2,0.5,1\n2024-07-08 09:31,1,2,0.5,1\n",
    );
    let run = f.import(
        &[
            &["--symbol", "NONE", "--resolution", "5", "--skip-invalid"],
            &NEW_YORK[..],
            &[&none],
        ]
        .concat(),
    );
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("{none}: no valid rows, nothing stored")),
        "{run:?}"
    );
    assert!(run.stdout.contains(&format!("  {none}:2: skipped: ")));
    assert!(run.stdout.contains(&format!("  {none}:3: skipped: ")));
    f.assert_unknown("NONE");
}

// ---------------------------------------------------------------------------
// 3. Time zones and DST.

#[test]
fn berlin_wall_clock_times_step_through_the_repeated_autumn_hour() {
    let f = Fixture::new("import-berlin-autumn");
    // 01:50 CEST (23:50 UTC the day before) to 03:10 CET: 141 minutes in UTC,
    // whose wall-clock times run 01:50..02:59, 02:00..02:59, 03:00..03:10.
    let start = utc(2024, 10, 26, 23, 50);
    let bars = walk(&times(start, start + 141 * MINUTE, MINUTE), 5, 2);
    let local = |t: i64| wall(t + berlin_autumn_offset(t));
    let text = csv("time,open,high,low,close,volume", &bars, 2, local);
    assert_eq!(
        text.matches("2024-10-27 02:00,").count(),
        2,
        "the file has 02:00 twice"
    );
    let file = f.file("autumn.csv", &text);

    let run = f.import_ok(&[
        "--symbol",
        "BERLIN",
        "--resolution",
        "1",
        "--timezone",
        "Europe/Berlin",
        &file,
    ]);
    assert!(
        run.stdout
            .contains("141 rows read, 141 bars stored, 0 rejected"),
        "{run:?}"
    );
    let exported = f.exported("BERLIN", "1");
    assert_eq!(exported, expected_export(&bars, false));

    // Strictly increasing UTC times, no duplicates, and where the clocks
    // went back the two 02:00s are an hour apart.
    let stamps: Vec<&str> = export_rows(&exported)
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(stamps.len(), 141);
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    let at = |s: &str| stamps.iter().position(|x| *x == s).unwrap();
    let local_0159 = at("2024-10-26T23:59:00Z");
    let first_0200 = at("2024-10-27T00:00:00Z");
    let second_0200 = at("2024-10-27T01:00:00Z");
    let local_0300 = at("2024-10-27T02:00:00Z");
    assert_eq!(first_0200 - local_0159, 1, "01:59 CEST -> 02:00 CEST");
    assert_eq!(second_0200 - first_0200, 60, "02:00 CEST -> 02:00 CET");
    assert_eq!(local_0300 - second_0200, 60, "02:00 CET -> 03:00 CET");

    // All of it is one (25-hour) trading day, 2024-10-27 in Berlin.
    let day = aggregate_by(&bars, |_| (0, days(2024, 10, 27) * DAY));
    assert_eq!(f.exported("BERLIN", "D"), expected_export(&day, true));

    // --tz alone (the symbol's time zone follows it) reads the same file
    // into the same bars.
    f.import_ok(&[
        "--symbol",
        "BERLIN2",
        "--resolution",
        "1",
        "--tz",
        "Europe/Berlin",
        &file,
    ]);
    assert_eq!(f.exported("BERLIN2", "1"), exported);
}

#[test]
fn berlin_spring_forward_gap_time_does_not_exist() {
    let f = Fixture::new("import-berlin-spring");
    let flags = [
        "--symbol",
        "SPRING",
        "--resolution",
        "1",
        "--timezone",
        "Europe/Berlin",
    ];
    let gap = f.file(
        "gap.csv",
        "time,open,high,low,close\n2024-03-31 01:58,1,2,0.5,1\n2024-03-31 01:59,1,2,0.5,1\n\
         2024-03-31 02:30,1,2,0.5,1\n2024-03-31 03:00,1,2,0.5,1\n",
    );
    let run = f.import(&[&flags[..], &[&gap]].concat());
    assert_fails_at(
        &run,
        &gap,
        4,
        "2024-03-31T02:30:00 does not exist in Europe/Berlin",
    );
    f.assert_unknown("SPRING");

    // Around the gap: 01:59 CET and 03:00 CEST are a minute apart.
    let start = utc(2024, 3, 31, 0, 55);
    let bars = walk(&times(start, start + 10 * MINUTE, MINUTE), 9, 2);
    let local = |t: i64| {
        let offset = if t < utc(2024, 3, 31, 1, 0) {
            HOUR
        } else {
            2 * HOUR
        };
        wall(t + offset)
    };
    let text = csv("time,open,high,low,close,volume", &bars, 2, local);
    assert!(text.contains("\n2024-03-31 01:59,") && text.contains("\n2024-03-31 03:00,"));
    let around = f.file("around.csv", &text);
    f.import_ok(&[&flags[..], &[&around]].concat());
    assert_eq!(f.exported("SPRING", "1"), expected_export(&bars, false));
}

/// Session 08:30-15:00 America/Chicago, in UTC, for a March 2024 date.
fn chicago_session(day: i64) -> (i64, i64) {
    let open_local = day * DAY + 8 * HOUR + 30 * MINUTE;
    let open = open_local - chicago_offset(open_local + 6 * HOUR);
    (open, open + 390 * MINUTE)
}

#[test]
fn chicago_session_moves_in_utc_across_us_dst_and_aggregates_by_trading_day() {
    let f = Fixture::new("import-chicago");
    let dates = [
        days(2024, 3, 7),
        days(2024, 3, 8),
        days(2024, 3, 11),
        days(2024, 3, 12),
    ];
    let mut slots = Vec::new();
    for &d in &dates {
        let (open, close) = chicago_session(d);
        slots.extend(times(open, close, 5 * MINUTE));
    }
    let bars = walk(&slots, 13, 2);
    assert_eq!(bars.len(), 4 * 78);
    // The open in UTC: 14:30 in CST, 13:30 in CDT.
    assert_eq!(iso(chicago_session(dates[1]).0), "2024-03-08T14:30:00Z");
    assert_eq!(iso(chicago_session(dates[2]).0), "2024-03-11T13:30:00Z");

    let flags = |symbol: &'static str| {
        vec![
            "--symbol",
            symbol,
            "--resolution",
            "5",
            "--session",
            "0830-1500",
            "--timezone",
            "America/Chicago",
        ]
    };
    // Written as UTC instants.
    let file = f.file(
        "utc.csv",
        &csv("Datetime,Open,High,Low,Close,Volume", &bars, 2, iso),
    );
    f.import_ok(&[flags("CME").as_slice(), &[&file]].concat());
    let exported = f.exported("CME", "5");
    assert_eq!(exported, expected_export(&bars, false));
    let rows = export_rows(&exported);
    for (i, first) in ["2024-03-07T14:30", "2024-03-08T14:30", "2024-03-11T13:30"]
        .iter()
        .enumerate()
    {
        assert!(rows[i * 78].starts_with(first), "{}", rows[i * 78]);
    }

    // Written as Chicago wall-clock times: the same bars.
    let local = f.file(
        "local.csv",
        &csv("time,open,high,low,close,volume", &bars, 2, |t| {
            wall(t + chicago_offset(t))
        }),
    );
    f.import_ok(&[flags("CME2").as_slice(), &[&local]].concat());
    assert_eq!(f.exported("CME2", "5"), exported);

    // Hourly bars align to the session open (the last is 14:30-15:00).
    let hourly = aggregate_by(&bars, |t| {
        let (open, _) = chicago_session(t.div_euclid(DAY));
        let start = open + (t - open) / HOUR * HOUR;
        (start, start)
    });
    assert_eq!(hourly.len(), 4 * 7);
    assert_eq!(f.exported("CME", "60"), expected_export(&hourly, false));

    // Daily bars: 00:00 UTC of the trading date, the aggregate of its bars.
    let daily = aggregate_by(&bars, |t| {
        let d = t.div_euclid(DAY);
        (d, d * DAY)
    });
    assert_eq!(daily.len(), 4);
    assert_eq!(f.exported("CME", "D"), expected_export(&daily, true));
    assert!(f.exported("CME", "D").contains("\n2024-03-11,"));

    // 13:30 UTC, the open after the change, is 07:30 CST before it:
    // outside the session. So is 15:00 CDT (20:00 UTC) after it.
    let early = f.file(
        "early.csv",
        "time,open,high,low,close\n2024-03-08T14:30:00Z,1,2,0.5,1\n\
         2024-03-08T13:30:00Z,1,2,0.5,1\n",
    );
    let run = f.import(&[flags("CME").as_slice(), &[&early]].concat());
    assert_fails_at(
        &run,
        &early,
        3,
        "time 2024-03-08T13:30:00Z is outside the session (0830-1500 America/Chicago)",
    );
    let late = f.file(
        "late.csv",
        "time,open,high,low,close\n2024-03-11T19:55:00Z,1,2,0.5,1\n\
         2024-03-11T20:00:00Z,1,2,0.5,1\n",
    );
    let run = f.import(&[flags("CME").as_slice(), &[&late]].concat());
    assert_fails_at(&run, &late, 3, "outside the session");
    assert_eq!(f.exported("CME", "5"), exported);
}

// ---------------------------------------------------------------------------
// 4. gzip.

#[test]
fn gzip_file_imports_the_same_bars_as_the_plain_one() {
    let f = Fixture::new("import-gzip");
    let start = utc(2024, 7, 1, 0, 0);
    let bars = walk(&times(start, start + 2 * DAY, 15 * MINUTE), 17, 2);
    let text = csv("time,open,high,low,close,volume", &bars, 2, iso);
    let plain = f.file("bars.csv", &text);
    let gz = f.gzip_file("bars.csv.gz", &text);
    assert_ne!(
        std::fs::read(&gz).unwrap(),
        text.as_bytes(),
        "the file is compressed"
    );

    f.import_ok(&["--symbol", "PLAIN", "--resolution", "15", &plain]);
    let run = f.import_ok(&["--symbol", "GZ", "--resolution", "15", &gz]);
    assert!(
        run.stdout
            .contains(&format!("{gz}: 192 rows read, 192 bars stored, 0 rejected")),
        "{run:?}"
    );
    for res in ["15", "60", "240", "D"] {
        assert_eq!(f.exported("GZ", res), f.exported("PLAIN", res), "{res}");
    }
    assert_eq!(f.exported("GZ", "15"), expected_export(&bars, false));
}

// ---------------------------------------------------------------------------
// 5. CSV dialects.

#[test]
fn vendor_csv_dialects_import_the_same_bars() {
    let f = Fixture::new("import-dialects");
    let start = utc(2024, 7, 1, 9, 0);
    let bars = walk(&times(start, start + 30 * MINUTE, MINUTE), 19, 2);
    let expected = expected_export(&bars, false);
    let import = |symbol: &str, extra: &[&str], file: &str| {
        let run =
            f.import_ok(&[&["--symbol", symbol, "--resolution", "1"], extra, &[file]].concat());
        assert!(
            run.stdout
                .contains("30 rows read, 30 bars stored, 0 rejected"),
            "{symbol}: {run:?}"
        );
    };

    // A BOM, CRLF line ends, `;`, headers in any case and an extra
    // `Adj Close` column (different from Close, and ignored).
    let mut text = String::from("\u{feff}Timestamp;OPEN;High;low;CLOSE;Adj Close;VoLuMe\r\n");
    for b in &bars {
        write!(
            text,
            "{};{:.2};{:.2};{:.2};{:.2};{:.2};{}\r\n",
            wall(b.time),
            b.open,
            b.high,
            b.low,
            b.close,
            b.close * 0.98,
            b.volume
        )
        .unwrap();
    }
    let excel = f.file("excel.csv", &text);
    import("EXCEL", &["--delimiter", ";"], &excel);
    assert_eq!(f.exported("EXCEL", "1"), expected);

    // pandas' `to_csv()`: an unnamed first column holding unix seconds.
    let pandas = f.file(
        "pandas.csv",
        &csv(",open,high,low,close,volume", &bars, 2, |t| {
            (t / 1000).to_string()
        }),
    );
    import("PANDAS", &[], &pandas);
    assert_eq!(f.exported("PANDAS", "1"), expected);

    // Unix milliseconds.
    let millis = f.file(
        "millis.csv",
        &csv("timestamp,open,high,low,close,volume", &bars, 2, |t| {
            t.to_string()
        }),
    );
    import("MILLIS", &[], &millis);
    assert_eq!(f.exported("MILLIS", "1"), expected);

    // MetaTrader-style: the date (with dots) and the time of day in
    // separate columns, tab-separated.
    let mut text = String::from("Date\tTime\tOpen\tHigh\tLow\tClose\tVolume\n");
    for b in &bars {
        let local = wall(b.time);
        let (date, hm) = local.split_once(' ').unwrap();
        let date = date.replace('-', ".");
        writeln!(
            text,
            "{date}\t{hm}\t{:.2}\t{:.2}\t{:.2}\t{:.2}\t{}",
            b.open, b.high, b.low, b.close, b.volume
        )
        .unwrap();
    }
    let mt = f.file("mt.csv", &text);
    import("MT", &["--delimiter", "tab"], &mt);
    assert_eq!(f.exported("MT", "1"), expected);
}

// ---------------------------------------------------------------------------
// 6. Re-import.

#[test]
fn reimport_is_idempotent_and_an_overlap_replaces_only_its_bars() {
    let f = Fixture::new("import-again");
    let start = utc(2024, 7, 1, 0, 0);
    let a = walk(&times(start, start + 180 * MINUTE, MINUTE), 23, 2);
    let file_a = f.file("a.csv", &csv("time,open,high,low,close,volume", &a, 2, iso));
    let flags = ["--symbol", "AGAIN", "--resolution", "1"];
    let exports = || -> Vec<String> {
        ["1", "5", "60", "D"]
            .iter()
            .map(|r| f.exported("AGAIN", r))
            .collect()
    };

    f.import_ok(&[&flags[..], &[&file_a]].concat());
    let first = exports();
    assert_eq!(first[0], expected_export(&a, false));
    let run = f.import_ok(&[&flags[..], &[&file_a]].concat());
    assert!(
        run.stdout
            .contains("180 rows read, 180 bars stored, 0 rejected"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("registered new symbol"), "{run:?}");
    assert_eq!(
        exports(),
        first,
        "importing the same file again changes nothing"
    );

    // B overlaps A's last 30 minutes with other values and goes on for an
    // hour after it.
    let b = walk(
        &times(start + 150 * MINUTE, start + 240 * MINUTE, MINUTE),
        29,
        2,
    );
    assert_ne!(a[150], b[0]);
    let file_b = f.file("b.csv", &csv("time,open,high,low,close,volume", &b, 2, iso));
    f.import_ok(&[&flags[..], &[&file_b]].concat());
    let merged: Vec<Bar> = a[..150].iter().chain(&b).cloned().collect();
    assert_eq!(f.exported("AGAIN", "1"), expected_export(&merged, false));
    // Coarser resolutions are rebuilt from the merged bars.
    let hourly = aggregate_by(&merged, |t| (t / HOUR, t / HOUR * HOUR));
    assert_eq!(f.exported("AGAIN", "60"), expected_export(&hourly, false));
    let five = aggregate_by(&merged, |t| {
        (t / (5 * MINUTE), t / (5 * MINUTE) * 5 * MINUTE)
    });
    assert_eq!(f.exported("AGAIN", "5"), expected_export(&five, false));
    let daily = aggregate_by(&merged, |t| (t / DAY, t / DAY * DAY));
    assert_eq!(f.exported("AGAIN", "D"), expected_export(&daily, true));
    // The first two hours were not touched.
    assert_eq!(
        export_rows(&f.exported("AGAIN", "60"))[..2],
        export_rows(&first[2])[..2]
    );
}

// ---------------------------------------------------------------------------
// 7. A daily-only symbol.

/// Weekdays from 2024-01-02 to 2024-04-05 without New Year, Martin Luther
/// King Day, Presidents' Day and Good Friday (which the session does not
/// know: they are simply missing from the file).
fn trading_dates() -> Vec<i64> {
    let holidays = [
        days(2024, 1, 1),
        days(2024, 1, 15),
        days(2024, 2, 19),
        days(2024, 3, 29),
    ];
    (days(2024, 1, 1)..=days(2024, 4, 5))
        .filter(|d| weekday(*d) < 5 && !holidays.contains(d))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_only_symbol_serves_d_w_m_built_from_its_days() {
    let f = Fixture::new("import-daily");
    let dates: Vec<i64> = trading_dates().iter().map(|d| d * DAY).collect();
    let daily = walk(&dates, 31, 2);
    let file = f.file(
        "daily.csv",
        &csv("Date,Open,High,Low,Close,Volume", &daily, 2, date_text),
    );
    f.import_ok(
        &[
            &["--symbol", "DLY", "--resolution", "D"],
            &NEW_YORK[..],
            &[&file],
        ]
        .concat(),
    );

    assert_eq!(f.exported("DLY", "D"), expected_export(&daily, true));
    let week = weekly(&daily);
    let month = monthly(&daily);
    assert_eq!(f.exported("DLY", "W"), expected_export(&week, true));
    assert_eq!(f.exported("DLY", "M"), expected_export(&month, true));
    // Weeks and months start at their first trading day by the session,
    // also where a holiday leaves it without data (2024-01-01, -01-15,
    // -02-19 are Mondays without bars).
    let w = f.exported("DLY", "W");
    assert!(
        w.contains("\n2024-01-01,") && w.contains("\n2024-01-15,") && w.contains("\n2024-02-19,")
    );
    let m = f.exported("DLY", "M");
    assert_eq!(
        export_rows(&m).iter().map(|l| &l[..10]).collect::<Vec<_>>(),
        ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]
    );

    for res in ["60", "1", "240"] {
        let run = f.export("DLY", res, &[]);
        assert!(!run.ok, "{res}: {run:?}");
        assert!(
            run.stderr.contains(
                "DLY is served at D, W, M only: its data is no finer than D \
                 (coarser resolutions are aggregated, finer ones cannot be)"
            ),
            "{run:?}"
        );
        assert!(run.stdout.is_empty(), "nothing written: {run:?}");
    }

    let server = store_server(&f.store, &[]).await;
    let c = &server.client;
    let info = c
        .resolve_symbol()
        .symbol("DLY")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.supported_resolutions, ["D", "W", "M"]);
    assert!(!info.has_intraday && info.has_daily && info.has_weekly_and_monthly);
    assert!(info.intraday_multipliers.is_empty());
    assert_eq!(
        (info.session.as_str(), info.timezone.as_str()),
        ("0930-1600", "America/New_York")
    );

    let (from, to) = (days(2024, 1, 1) * 86_400, days(2024, 5, 1) * 86_400);
    let (status, message) = error_of(
        c.get_bars()
            .symbol("DLY")
            .resolution("60")
            .from_time(from)
            .to_time(to)
            .send()
            .await,
    );
    assert_eq!(status, 400);
    assert!(
        message.contains("resolution \"60\" is not available")
            && message.contains("DLY is served at D, W, M only"),
        "{message}"
    );

    for (res, expected) in [("D", &daily), ("W", &week), ("M", &month)] {
        let page = c
            .get_bars()
            .symbol("DLY")
            .resolution(res)
            .from_time(from)
            .to_time(to)
            .send()
            .await
            .unwrap()
            .into_inner();
        let served: Vec<(i64, f64, f64, f64, f64)> = page
            .bars
            .iter()
            .map(|b| (b.time, b.open, b.high, b.low, b.close))
            .collect();
        let want: Vec<(i64, f64, f64, f64, f64)> = expected
            .iter()
            .map(|b| (b.time, b.open, b.high, b.low, b.close))
            .collect();
        assert_eq!(served, want, "{res}");
        let volumes: Vec<f64> = page.bars.iter().map(|b| b.volume).collect();
        let want: Vec<f64> = expected.iter().map(|b| b.volume as f64).collect();
        assert_eq!(volumes, want, "{res}");
    }
    server.stop().await;
}

#[test]
fn daily_rows_must_be_trading_dates() {
    let f = Fixture::new("import-daily-invalid");
    let flags = [&["--symbol", "DAYS", "--resolution", "D"], &NEW_YORK[..]].concat();
    for (text, line, reason) in [
        (
            "date,open,high,low,close\n2024-01-05,1,2,0.5,1\n2024-01-06,1,2,0.5,1\n",
            3,
            "2024-01-06 is not a trading day of the session 0930-1600",
        ),
        (
            "date,open,high,low,close\n2024-01-05T15:00:00,1,2,0.5,1\n",
            2,
            "is not a date: daily bars need a date",
        ),
    ] {
        let file = f.file(&format!("d{line}.csv"), text);
        let run = f.import(&[flags.as_slice(), &[&file]].concat());
        assert_fails_at(&run, &file, line, reason);
    }
    f.assert_unknown("DAYS");
    // Midnight (wall clock or UTC) means the date.
    let ok = f.file(
        "ok.csv",
        "date,open,high,low,close\n2024-01-04 00:00:00,1,2,0.5,1\n2024-01-05T00:00:00Z,1,3,0.5,2\n",
    );
    f.import_ok(&[flags.as_slice(), &[&ok]].concat());
    assert_eq!(
        f.exported("DAYS", "D"),
        format!("{EXPORT_HEADER}2024-01-04,1,2,0.5,1,0\n2024-01-05,1,3,0.5,2,0\n")
    );
}

// ---------------------------------------------------------------------------
// 8. Export round trip.

#[test]
fn export_then_import_into_a_new_store_round_trips_byte_for_byte() {
    let f = Fixture::new("import-roundtrip");
    let mut slots = Vec::new();
    for day in [days(2024, 7, 1), days(2024, 7, 2)] {
        let open = day * DAY + 13 * HOUR + 30 * MINUTE;
        slots.extend(times(open, open + 390 * MINUTE, MINUTE));
    }
    let bars = walk(&slots, 37, 4);
    // Four-decimal prices and volumes with decimals, in New York wall time.
    let mut text = String::from("time,open,high,low,close,volume\n");
    for (i, b) in bars.iter().enumerate() {
        writeln!(
            text,
            "{},{:.4},{:.4},{:.4},{:.4},{}.{}",
            wall(b.time - 4 * HOUR),
            b.open,
            b.high,
            b.low,
            b.close,
            b.volume,
            i % 4 * 25
        )
        .unwrap();
    }
    let file = f.file("orig.csv", &text);
    f.import_ok(
        &[
            &["--symbol", "ORIG", "--resolution", "1"],
            &NEW_YORK[..],
            &[&file],
        ]
        .concat(),
    );

    let out = f.dir.path().join("export.csv").display().to_string();
    let run = cli_ok(&f.args(
        "export",
        &["--symbol", "ORIG", "--resolution", "1", "--output", &out],
    ));
    assert!(
        run.stderr.contains(&format!("{} bars written", bars.len())),
        "{run:?}"
    );
    let exported = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        exported,
        f.exported("ORIG", "1"),
        "--output writes what stdout gets"
    );
    assert_eq!(export_rows(&exported).len(), bars.len());

    // A new store (a bare path this time), a new symbol.
    let copy_dir = TempDir::new("import-roundtrip-copy");
    let copy = Fixture {
        store: copy_dir.path().join("copy.db").display().to_string(),
        dir: copy_dir,
    };
    let run = copy.import_ok(
        &[
            &["--symbol", "COPY", "--resolution", "1"],
            &NEW_YORK[..],
            &[&out],
        ]
        .concat(),
    );
    assert!(run.stdout.contains("registered new symbol COPY"), "{run:?}");
    assert!(
        run.stdout.contains("pricescale 10000, volume_precision 2"),
        "{run:?}"
    );
    assert_eq!(copy.exported("COPY", "1"), exported);
    for res in ["5", "30", "240", "D", "W", "M"] {
        assert_eq!(copy.exported("COPY", res), f.exported("ORIG", res), "{res}");
    }

    // --from and --to select [from, to) in UTC.
    let run = f.export(
        "ORIG",
        "1",
        &["--from", "2024-07-02", "--to", "2024-07-02T14:00:00Z"],
    );
    assert!(run.ok, "{run:?}");
    let window: Vec<&str> = export_rows(&exported)
        .into_iter()
        .filter(|l| l.starts_with("2024-07-02T13:"))
        .collect();
    assert_eq!(window.len(), 30);
    assert_eq!(export_rows(&run.stdout), window);

    // Daily bars round-trip too: exported as dates, imported as dates.
    let daily_out = f.dir.path().join("daily.csv").display().to_string();
    cli_ok(&f.args(
        "export",
        &[
            "--symbol",
            "ORIG",
            "--resolution",
            "D",
            "--output",
            &daily_out,
        ],
    ));
    copy.import_ok(
        &[
            &["--symbol", "DCOPY", "--resolution", "D"],
            &NEW_YORK[..],
            &[&daily_out],
        ]
        .concat(),
    );
    assert_eq!(
        copy.exported("DCOPY", "D"),
        std::fs::read_to_string(&daily_out).unwrap()
    );
}

// ---------------------------------------------------------------------------
// 9. Registration.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_symbols_are_registered_with_inferred_or_given_fields() {
    let f = Fixture::new("import-register");
    let start = utc(2024, 7, 1, 0, 0);
    let bars = walk(&times(start, start + 20 * MINUTE, MINUTE), 41, 4);
    let text = csv("time,open,high,low,close,volume", &bars, 4, iso);
    assert!(
        text.lines().nth(1).unwrap().contains(",100.0000,"),
        "{text}"
    );
    let file = f.file("fx.csv", &text);

    let run = f.import_ok(&["--symbol", "EURX", "--resolution", "1", &file]);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("registered new symbol"))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(
        line.starts_with(
            "registered new symbol EURX (exchange LOCAL, type stock, session 24x7, \
             timezone Etc/UTC, pricescale 10000, volume_precision 0)"
        ),
        "{line}"
    );
    // Known now: a second import registers nothing.
    let run = f.import_ok(&["--symbol", "EURX", "--resolution", "1", &file]);
    assert!(!run.stdout.contains("registered new symbol"), "{run:?}");

    // The flags win over what the data suggests.
    let run = f.import_ok(&[
        "--symbol",
        "EURY",
        "--resolution",
        "1",
        "--pricescale",
        "100000",
        "--exchange",
        "FX",
        "--type",
        "forex",
        "--description",
        "Euro / Y",
        &file,
    ]);
    assert!(
        run.stdout.contains(
            "registered new symbol EURY (exchange FX, type forex, session 24x7, \
             timezone Etc/UTC, pricescale 100000, volume_precision 0)"
        ),
        "{run:?}"
    );

    // Another resolution than the symbol's base: refused, naming the base.
    let five = f.file(
        "five.csv",
        &csv("time,open,high,low,close,volume", &bars[..5], 4, |t| {
            iso(start + (t - start) * 5)
        }),
    );
    let before = f.exported("EURX", "1");
    let run = f.import(&["--symbol", "EURX", "--resolution", "5", &five]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr.contains(
            "EURX has 1 bars: its data is at resolution 1, so bars are imported at 1 (not 5)"
        ),
        "{run:?}"
    );
    assert_eq!(f.exported("EURX", "1"), before);

    // Unknown time zones.
    let run = f.import(&[
        "--symbol",
        "MARS",
        "--resolution",
        "1",
        "--timezone",
        "Mars/Olympus",
        &file,
    ]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("unknown timezone \"Mars/Olympus\" (expected an IANA name"),
        "{run:?}"
    );
    f.assert_unknown("MARS");
    let run = f.import(&[
        "--symbol",
        "EURX",
        "--resolution",
        "1",
        "--tz",
        "Mars/Olympus",
        &file,
    ]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr
            .contains("--tz \"Mars/Olympus\": unknown time zone (expected an IANA name"),
        "{run:?}"
    );

    // A missing column, named with what the header has.
    let no_high = f.file(
        "nohigh.csv",
        "time,open,low,close,volume\n2024-07-01T00:00:00Z,1,0.5,1,1\n",
    );
    let run = f.import(&["--symbol", "NOHIGH", "--resolution", "1", &no_high]);
    assert!(!run.ok, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "{no_high}: no \"high\" column (the header has: time, open, low, close, volume)"
        )),
        "{run:?}"
    );
    f.assert_unknown("NOHIGH");

    // A symbols file registers symbols; running it again changes nothing.
    let symbols = f.file("symbols.json", &symbols_json());
    let run = f.import_ok(&["--symbols", &symbols]);
    assert!(
        run.stdout.contains(&format!(
            "{symbols}: 2 symbols registered, 0 updated, 0 unchanged"
        )),
        "{run:?}"
    );
    let run = f.import_ok(&["--symbols", &symbols]);
    assert!(
        run.stdout.contains(&format!(
            "{symbols}: 0 symbols registered, 0 updated, 2 unchanged"
        )),
        "{run:?}"
    );
    // Before its first bar it serves what its registration declares, with
    // nothing in it yet.
    let run = f.export("ACME", "D", &[]);
    assert!(run.ok && run.stdout == EXPORT_HEADER, "{run:?}");
    // Its bars follow its registered session: 13:30 UTC is 09:30 in New York.
    let acme = f.file(
        "acme.csv",
        "time,open,high,low,close\n2024-07-01T13:30:00Z,1,2,0.5,1\n2024-07-01T13:25:00Z,1,2,0.5,1\n",
    );
    let run = f.import(&["--symbol", "ACME", "--resolution", "5", &acme]);
    assert_fails_at(
        &run,
        &acme,
        3,
        "outside the session (0930-1600 America/New_York)",
    );
    let run = f.import(&[
        "--symbol",
        "ACME",
        "--resolution",
        "5",
        "--skip-invalid",
        &acme,
    ]);
    assert!(
        run.ok && !run.stdout.contains("registered new symbol"),
        "{run:?}"
    );
    // Importing bars kept the registration as it was given.
    let run = f.import_ok(&["--symbols", &symbols]);
    assert!(
        run.stdout.contains(&format!(
            "{symbols}: 0 symbols registered, 0 updated, 2 unchanged"
        )),
        "{run:?}"
    );

    // What the server says about them.
    let server = store_server(&f.store, &[]).await;
    let c = &server.client;
    let resolve = |s: &'static str| async move {
        c.resolve_symbol()
            .symbol(s)
            .send()
            .await
            .unwrap()
            .into_inner()
    };
    let eurx = resolve("EURX").await;
    assert_eq!((eurx.pricescale, eurx.exchange.as_str()), (10_000, "LOCAL"));
    let eury = resolve("FX:EURY").await;
    assert_eq!(
        (
            eury.pricescale,
            eury.exchange.as_str(),
            eury.type_.as_str(),
            eury.description.as_str()
        ),
        (100_000, "FX", "forex", "Euro / Y")
    );
    let acme = resolve("ACME").await;
    assert_eq!(acme.description, "Acme Corp");
    assert_eq!(acme.supported_resolutions[0], "5");
    // Registered and never given bars: it serves what it declared (from 5
    // minutes up), empty until its first bar.
    let empty = resolve("EMPTY").await;
    assert_eq!(empty.supported_resolutions[0], "5", "{empty:?}");
    let page = c
        .get_bars()
        .symbol("EMPTY")
        .resolution("5")
        .from_time(0)
        .to_time(2_000_000_000)
        .send()
        .await
        .unwrap();
    assert!(page.no_data && page.bars.is_empty());
    server.stop().await;
}

/// Two symbols in the `resolveSymbol` shape.
fn symbols_json() -> String {
    let info = |ticker: &str, description: &str| {
        format!(
            r#"{{"name":"{ticker}","ticker":"{ticker}","description":"{description}","type":"stock",
            "session":"0930-1600","timezone":"America/New_York","exchange":"NYSE",
            "listed_exchange":"NYSE","format":"price","pricescale":100,"minmov":1,
            "has_intraday":true,"has_daily":true,"has_weekly_and_monthly":true,
            "supported_resolutions":["5","D","W","M"],"intraday_multipliers":["5"],
            "volume_precision":0,"data_status":"streaming","currency_code":"USD"}}"#
        )
    };
    format!(
        "[{}, {}]",
        info("ACME", "Acme Corp"),
        info("EMPTY", "Nothing yet")
    )
}

#[test]
fn a_file_without_rows_changes_nothing() {
    let f = Fixture::new("import-empty");
    let empty = f.file("empty.csv", "time,open,high,low,close,volume\n");
    let run = f.import_ok(&["--symbol", "LATER", "--resolution", "5", &empty]);
    assert!(
        run.stdout
            .contains(&format!("{empty}: 0 rows read, 0 bars stored, 0 rejected")),
        "{run:?}"
    );
    assert!(!run.stdout.contains("registered new symbol"), "{run:?}");
    f.assert_unknown("LATER");

    // The symbol's first real bars decide its base resolution and pricescale.
    let start = utc(2024, 7, 1, 0, 0);
    let bars = walk(&times(start, start + 10 * MINUTE, MINUTE), 43, 3);
    let file = f.file(
        "bars.csv",
        &csv("time,open,high,low,close,volume", &bars, 3, iso),
    );
    let run = f.import_ok(&["--symbol", "LATER", "--resolution", "1", &file]);
    assert!(run.stdout.contains("pricescale 1000,"), "{run:?}");
    assert_eq!(f.exported("LATER", "1"), expected_export(&bars, false));
}

/// A symbols file needs only what a symbol cannot do without (the README's
/// minimal file); a bad one is refused whole, naming every problem of
/// every entry at once.
#[tokio::test]
async fn a_minimal_symbols_file_registers_and_a_bad_one_names_every_problem() {
    let f = Fixture::new("import-minimal-symbols");
    let minimal = f.file(
        "symbols.json",
        r#"[{"name": "ACME", "type": "stock", "session": "0930-1600",
             "timezone": "America/New_York", "exchange": "NYSE", "pricescale": 100, "minmov": 1},
            {"name": "BTCEUR", "type": "crypto", "session": "24x7", "timezone": "Etc/UTC",
             "exchange": "KRAKEN", "pricescale": 10, "minmov": 5, "description": "Bitcoin / Euro",
             "volume_precision": 8}]"#,
    );
    let run = f.import_ok(&["--symbols", &minimal]);
    assert!(
        run.stdout.contains(&format!(
            "{minimal}: 2 symbols registered, 0 updated, 0 unchanged"
        )),
        "{run:?}"
    );
    let bad = f.file(
        "bad.json",
        r#"[{"name": "OK1", "type": "stock", "session": "24x7", "timezone": "Etc/UTC",
             "exchange": "X", "pricescale": 100, "minmov": 1},
            {"name": "NOTZ", "type": "stock", "session": "24x7", "exchange": "X",
             "pricescale": 0, "minmov": 1},
            {"type": "stock", "session": "0930-1600", "timezone": "Mars/Olympus",
             "exchange": "X", "pricescale": 100, "minmov": 1},
            {"name": "TYPED", "type": "stock", "session": "24x7", "timezone": "Etc/UTC",
             "exchange": "X", "pricescale": 100, "minmov": 1, "volume_precision": "two"}]"#,
    );
    let run = f.import(&["--symbols", &bad]);
    assert!(!run.ok, "{run:?}");
    for expected in [
        format!(r#"{bad}: entry 1 ("NOTZ"): "timezone" is missing; "pricescale" must be a positive integer, got 0"#),
        format!(r#"{bad}: entry 2: "name" is missing"#),
        "Mars/Olympus".to_string(),
        format!(r#"{bad}: entry 3 ("TYPED"): "volume_precision""#),
        format!("{bad}: nothing registered (3 entries with problems; each entry needs name, type, session"),
    ] {
        assert!(run.stderr.contains(&expected), "{expected}\n{run:?}");
    }
    f.assert_unknown("OK1");

    let server = store_server(&f.store, &[]).await;
    let acme = server
        .client
        .resolve_symbol()
        .symbol("ACME")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            acme.ticker.as_str(),
            acme.description.as_str(),
            acme.listed_exchange.as_str()
        ),
        ("ACME", "ACME", "NYSE")
    );
    assert_eq!(
        (acme.pricescale, acme.minmov, acme.volume_precision),
        (100, 1, 0)
    );
    let btc = server
        .client
        .resolve_symbol()
        .symbol("BTCEUR")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            btc.description.as_str(),
            btc.minmov,
            btc.volume_precision,
            btc.type_.as_str()
        ),
        ("Bitcoin / Euro", 5, 8, "crypto")
    );
    server.stop().await;
}
