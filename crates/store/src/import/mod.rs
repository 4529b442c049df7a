//! `trading-server import` and `trading-server export`: real bars into a
//! store from CSV files, and back out in the same format.
//!
//! Each file is imported in one transaction: an invalid row fails the whole
//! file (`FILE:LINE: reason`) and nothing of it is stored, unless
//! `--skip-invalid` stores the valid rows and reports every skipped line.
//! Re-importing bars at times already stored replaces them, so importing a
//! file twice changes nothing. A running server on the same store serves
//! what an import commits without a restart.

pub mod csv;
mod export;
mod symbols;

pub use export::export;
use symbols::register;

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use jiff::tz::TimeZone;
use trading_pro::types::{DataStatus, PriceFormat, SymbolInfo};

use crate::rules::{check_ohlc, check_on_grid, whole_bar};
use crate::{Store, StoreError, StoredBar, SymbolRecord};
use trading_market::calendar::{Resolution, TradingCalendar};
use trading_market::clock::rfc3339;
use trading_market::volume::{decimals_in, Volume, DECIMALS};

use self::csv::{daily_date, days_of, local_instant, parse_price, parse_time, CsvBars, TimeValue};

/// A command failed; what went wrong has been printed.
#[derive(Debug)]
pub struct Failed;

/// Prints `e` for `command` and gives the failure.
fn fail(command: &str, e: impl std::fmt::Display) -> Failed {
    eprintln!("trading-server {command}: {e}");
    Failed
}

/// Decimal places inferred from data are capped here (pricescale 10^8).
const MAX_INFERRED_DECIMALS: u32 = 8;

#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// The store: a file path or sqlite:PATH (created if missing), or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "TRADING_STORE")]
    pub store: String,

    /// Register or update the symbols of this JSON file (an array of SymbolInfo
    /// objects, the shape --symbols takes).
    #[arg(long, value_name = "FILE.json")]
    pub symbols: Option<PathBuf>,

    /// The symbol the files' bars belong to.
    #[arg(long, requires = "resolution")]
    pub symbol: Option<String>,

    /// The files' bar resolution: 1, 5, 15, 30, 60, 240 or D.
    #[arg(long, value_parser = parse_resolution, requires = "symbol")]
    pub resolution: Option<Resolution>,

    /// Time zone of date-times written without an offset (default: the symbol's).
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,

    /// Store the valid rows and report each invalid one, instead of failing the file.
    #[arg(long)]
    pub skip_invalid: bool,

    /// Field delimiter: `,` (default), `;`, `tab` or any single character.
    #[arg(long, default_value = ",", value_parser = parse_delimiter)]
    pub delimiter: u8,

    /// For a new symbol, or to change one: its exchange (default LOCAL).
    #[arg(long)]
    pub exchange: Option<String>,

    /// Its type, e.g. stock, crypto, forex, futures, index (default stock).
    #[arg(long = "type", value_name = "TYPE")]
    pub symbol_type: Option<String>,

    /// Its description (default: the ticker).
    #[arg(long)]
    pub description: Option<String>,

    /// Its trading session, TradingView style: 24x7, 0930-1600, 1700-1700:23456 (default 24x7).
    #[arg(long)]
    pub session: Option<String>,

    /// Its IANA time zone (default: --tz, else Etc/UTC).
    #[arg(long)]
    pub timezone: Option<String>,

    /// Its pricescale: 100 for two decimals (default: from the decimals in the file).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000_000))]
    pub pricescale: Option<u64>,

    /// CSV files (`.csv.gz` is read directly).
    pub files: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// The store: a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "TRADING_STORE")]
    pub store: String,

    #[arg(long)]
    pub symbol: String,

    /// 1, 5, 15, 30, 60, 240, D, W or M (any the symbol serves).
    #[arg(long, value_parser = parse_resolution)]
    pub resolution: Resolution,

    /// First bar time to write: unix seconds or ms, a date or a date-time (UTC).
    #[arg(long, value_parser = parse_bound)]
    pub from: Option<i64>,

    /// Write bars before this time.
    #[arg(long, value_parser = parse_bound)]
    pub to: Option<i64>,

    /// Write here instead of to standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

fn parse_resolution(s: &str) -> Result<Resolution, String> {
    s.parse::<Resolution>().map_err(|e| e.to_string())
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() => Ok(s.as_bytes()[0]),
        _ => Err(format!("{s:?}: a single ASCII character, or `tab`")),
    }
}

fn parse_bound(s: &str) -> Result<i64, String> {
    match parse_time(s)? {
        TimeValue::Instant(ms) => Ok(ms),
        TimeValue::Date(d) => Ok(days_of(d) * 86_400_000),
        TimeValue::Local(dt) => local_instant(dt, &TimeZone::UTC, None),
    }
}

/// Runs `import`; Err when anything failed (each failure already printed).
pub fn import(args: &ImportArgs) -> Result<(), Failed> {
    if args.symbols.is_none() && args.symbol.is_none() {
        return Err(fail(
            "import",
            "give --symbols FILE.json, or --symbol SYM --resolution R and CSV files",
        ));
    }
    if args.symbol.is_some() && args.files.is_empty() {
        return Err(fail("import", "--symbol needs at least one CSV file"));
    }
    if args.symbol.is_none() && !args.files.is_empty() {
        return Err(fail("import", "CSV files need --symbol SYM --resolution R"));
    }
    let store = crate::open(&args.store, true).map_err(|e| fail("import", e))?;
    if let Some(path) = &args.symbols {
        register(store.as_ref(), path)?;
    }
    let (Some(symbol), Some(resolution)) = (&args.symbol, args.resolution) else {
        return Ok(());
    };
    let mut ok = true;
    for file in &args.files {
        if let Err(e) = import_file(store.as_ref(), args, symbol, resolution, file) {
            eprintln!("{e}");
            ok = false;
        }
    }
    ok.then_some(()).ok_or(Failed)
}

/// What importing one file did.
#[derive(Default)]
struct Summary {
    rows: u64,
    stored: u64,
    rejected: Vec<(u64, String)>,
    price_decimals: u32,
    volume_decimals: u32,
}

fn import_file(
    store: &dyn Store,
    args: &ImportArgs,
    symbol: &str,
    resolution: Resolution,
    file: &Path,
) -> Result<(), String> {
    let shown = file.display().to_string();
    let records = store.records().map_err(|e| e.to_string())?;
    let existing = records.lookup(symbol);
    let mut info = symbol_info(existing, args, symbol);
    let calendar = TradingCalendar::new(&info.session, &info.timezone)
        .map_err(|e| format!("{symbol}: {e}"))?;
    let tz_name = args.tz.clone().unwrap_or_else(|| info.timezone.clone());
    let tz = TimeZone::get(&tz_name).map_err(|_| {
        format!("--tz {tz_name:?}: unknown time zone (expected an IANA name such as Europe/Berlin)")
    })?;
    let mut bars = CsvBars::open(file, args.delimiter)?;
    let mut sink = store
        .begin_import(&info, resolution)
        .map_err(|e| format!("{shown}: {e}"))?;
    let progress = progress_bar(file, &bars);
    let read = bars.progress.clone();
    let mut summary = Summary::default();
    // Reading and checking rows runs on a thread of its own, ahead of the
    // store's writes: the two halves of an import take about as long each.
    let (chunks, parsed) = std::sync::mpsc::sync_channel::<Vec<Parsed>>(8);
    let outcome = std::thread::scope(|scope| {
        let reader = scope.spawn(|| parse_rows(&mut bars, &calendar, &tz, resolution, chunks));
        let stored = store_rows(&mut *sink, &parsed, args, resolution, &mut summary, || {
            if let Some(bar) = &progress {
                bar.set_position(read.bytes());
            }
        });
        // Stops the reader if the store gave up first.
        drop(parsed);
        let seen = reader.join().unwrap_or_default();
        summary.rows = seen.rows;
        summary.price_decimals = seen.price_decimals;
        summary.volume_decimals = seen.volume_decimals;
        stored
    });
    if let Err(e) = outcome {
        if let Some(bar) = &progress {
            bar.finish_and_clear();
        }
        return Err(match e {
            Stop::Row(line, reason) => format!(
                "{shown}:{line}: {reason}\n{shown}: nothing stored (fix the line, or pass \
                 --skip-invalid to store the valid rows)"
            ),
            Stop::Store(e) => format!("{shown}: {e}"),
        });
    }
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    if summary.stored == 0 {
        report(&shown, &summary);
        if summary.rows == 0 {
            // No rows, no change: committing would register the symbol
            // (pricescale 1) and fix its base resolution without any bars.
            return Ok(());
        }
        return Err(format!("{shown}: no valid rows, nothing stored"));
    }
    let new = existing.is_none();
    if new {
        if args.pricescale.is_none() {
            let decimals = summary.price_decimals.min(MAX_INFERRED_DECIMALS);
            info.pricescale = 10i64.pow(decimals);
        }
        info.volume_precision = i64::from(summary.volume_decimals.min(DECIMALS));
    }
    sink.commit(info.clone()).map_err(|e| match e {
        StoreError::Invalid(m) | StoreError::Failed(m) => format!("{shown}: {m}"),
    })?;
    report(&shown, &summary);
    if new {
        println!(
            "registered new symbol {} (exchange {}, type {}, session {}, timezone {}, pricescale \
             {}, volume_precision {}); change these with --symbols FILE.json or --exchange, \
             --type, --description, --session, --timezone, --pricescale",
            info.ticker,
            info.exchange,
            info.type_,
            info.session,
            info.timezone,
            info.pricescale,
            info.volume_precision
        );
    }
    Ok(())
}

/// A row read from the file: its line, and its bar or why it has none.
struct Parsed {
    line: u64,
    bar: Result<StoredBar, String>,
}

/// What the reader saw of the file.
#[derive(Default)]
struct Seen {
    rows: u64,
    price_decimals: u32,
    volume_decimals: u32,
}

/// Why an import stopped before its end.
enum Stop {
    /// A row that breaks a rule, without `--skip-invalid`.
    Row(u64, String),
    Store(StoreError),
}

/// Reads and checks every row, sending them on in chunks; stops early when
/// nobody listens any more.
fn parse_rows(
    bars: &mut CsvBars,
    calendar: &TradingCalendar,
    tz: &TimeZone,
    resolution: Resolution,
    chunks: std::sync::mpsc::SyncSender<Vec<Parsed>>,
) -> Seen {
    const CHUNK: usize = 4096;
    let mut seen = Seen::default();
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut previous: Option<i64> = None;
    while let Some(row) = bars.next_row() {
        seen.rows += 1;
        let parsed = match row {
            Ok(row) => Parsed {
                line: row.line,
                bar: bar_of(&row, calendar, tz, resolution, previous, &mut seen),
            },
            Err((line, reason)) => Parsed {
                line,
                bar: Err(reason),
            },
        };
        if let Ok(bar) = &parsed.bar {
            previous = Some(bar.time);
        }
        chunk.push(parsed);
        if chunk.len() == CHUNK
            && chunks
                .send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)))
                .is_err()
        {
            return seen;
        }
    }
    let _ = chunks.send(chunk);
    seen
}

/// Stores the rows as they come; a bad row stops everything unless
/// `--skip-invalid`, which records it instead.
fn store_rows(
    sink: &mut dyn crate::ImportSink,
    parsed: &std::sync::mpsc::Receiver<Vec<Parsed>>,
    args: &ImportArgs,
    resolution: Resolution,
    summary: &mut Summary,
    mut tick: impl FnMut(),
) -> Result<(), Stop> {
    for chunk in parsed {
        tick();
        for row in chunk {
            let problem = match row.bar {
                Ok(bar) => match sink.put(&bar) {
                    Ok(true) => {
                        summary.stored += 1;
                        continue;
                    }
                    Ok(false) => format!(
                        "duplicate time {} (an earlier line has the same time)",
                        shown_time(bar.time, resolution)
                    ),
                    Err(e) => return Err(Stop::Store(e)),
                },
                Err(reason) => reason,
            };
            if !args.skip_invalid {
                return Err(Stop::Row(row.line, problem));
            }
            summary.rejected.push((row.line, problem));
        }
    }
    Ok(())
}

fn report(shown: &str, s: &Summary) {
    println!(
        "{shown}: {} rows read, {} bars stored, {} rejected",
        s.rows,
        s.stored,
        s.rejected.len()
    );
    for (line, reason) in &s.rejected {
        println!("  {shown}:{line}: skipped: {reason}");
    }
}

/// One row as a bar of the import's resolution.
fn bar_of(
    row: &csv::Row,
    calendar: &TradingCalendar,
    tz: &TimeZone,
    resolution: Resolution,
    previous: Option<i64>,
    seen: &mut Seen,
) -> Result<StoredBar, String> {
    let value = parse_time(&row.time)?;
    let time = match resolution {
        Resolution::Day => days_of(daily_date(value, tz)?) * 86_400_000,
        _ => match value {
            TimeValue::Instant(ms) => ms,
            TimeValue::Local(dt) => local_instant(dt, tz, previous)?,
            TimeValue::Date(d) => {
                return Err(format!(
                    "{d} is a date without a time: {}-minute bars need a time of day",
                    resolution.as_str()
                ))
            }
        },
    };
    check_on_grid(calendar, resolution, time)?;
    let open = parse_price("open", &row.open)?;
    let high = parse_price("high", &row.high)?;
    let low = parse_price("low", &row.low)?;
    let close = parse_price("close", &row.close)?;
    check_ohlc(open, high, low, close)?;
    let volume = match row.volume.as_deref() {
        None | Some("") => Volume::ZERO,
        Some(text) => {
            let v = Volume::parse(text).map_err(|e| format!("volume {e}"))?;
            if v.is_negative() {
                return Err(format!("negative volume {text}"));
            }
            seen.volume_decimals = seen.volume_decimals.max(decimals_in(text));
            v
        }
    };
    for text in [&row.open, &row.high, &row.low, &row.close] {
        seen.price_decimals = seen.price_decimals.max(decimals_in(text));
    }
    Ok(whole_bar(
        calendar,
        resolution,
        time,
        [open, high, low, close],
        volume,
    ))
}

/// The symbol as it will be registered: the stored one with the flags'
/// changes, or a new one from the flags and defaults.
fn symbol_info(existing: Option<&SymbolRecord>, args: &ImportArgs, symbol: &str) -> SymbolInfo {
    let mut info = match existing {
        Some(record) => record.registered.clone(),
        None => SymbolInfo {
            name: symbol.to_string(),
            ticker: symbol.to_string(),
            description: symbol.to_string(),
            type_: "stock".into(),
            session: "24x7".into(),
            timezone: args.tz.clone().unwrap_or_else(|| "Etc/UTC".into()),
            exchange: "LOCAL".into(),
            listed_exchange: "LOCAL".into(),
            format: PriceFormat::Price,
            pricescale: 100,
            minmov: 1,
            has_intraday: false,
            has_daily: false,
            has_weekly_and_monthly: false,
            supported_resolutions: Vec::new(),
            intraday_multipliers: Vec::new(),
            volume_precision: 0,
            data_status: DataStatus::Streaming,
            currency_code: String::new(),
        },
    };
    if let Some(v) = &args.exchange {
        info.exchange = v.clone();
        info.listed_exchange = v.clone();
    }
    if let Some(v) = &args.symbol_type {
        info.type_ = v.clone();
    }
    if let Some(v) = &args.description {
        info.description = v.clone();
    }
    if let Some(v) = &args.session {
        info.session = v.clone();
    }
    if let Some(v) = &args.timezone {
        info.timezone = v.clone();
    }
    if let Some(v) = args.pricescale {
        info.pricescale = v as i64;
    }
    info
}

fn progress_bar(file: &Path, bars: &CsvBars) -> Option<indicatif::ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        )
        .ok()?
        .progress_chars("=> "),
    );
    bar.set_message(file.display().to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_position(bars.progress.bytes());
    Some(bar)
}

/// How export writes a bar's time: a date for daily and coarser bars, an
/// RFC 3339 UTC instant for intraday ones. Both import back as the same bar.
fn shown_time(ms: i64, resolution: Resolution) -> String {
    let text = rfc3339(ms);
    if resolution.is_intraday() {
        text
    } else {
        text[..10].to_string()
    }
}
