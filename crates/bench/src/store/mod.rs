//! Real data in the embedded store: import speed, ingest throughput with
//! durable acknowledgements, and trade-to-WebSocket latency. (getBars from
//! the store runs in the REST tables, side by side with the synthetic
//! source: see `rest.rs` and [`prepare`].)
//!
//! Data comes from the synthetic engine in-process, written out as CSV, so
//! the store holds exactly the bars the synthetic source serves and the two
//! answer the same requests with the same bars.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use trading_market::calendar::Resolution;
use trading_market::source::DataSource;
use trading_pro::types::SymbolInfo;
use trading_synthetic::engine::{BarQuery, Market, MAX_LIMIT};
use trading_synthetic::Synthetic;

use crate::server::CLOCK_START;
use crate::services::Database;
use crate::stats::{self, int};
use crate::Options;

mod ingest;
mod wal;

pub use ingest::*;

/// Symbols whose daily bars the REST store holds (the quotes scenario's).
pub const DAILY_SYMBOLS: [&str; 19] = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "NFLX", "AMD", "INTC", "JPM", "V",
    "WMT", "KO", "DIS", "IBM", "ETHUSD", "EURUSD", "GBPUSD",
];
/// BTCUSD's one-minute bars in the REST store: enough for 5,000-bar pages.
const MINUTE_DAYS: i64 = 8;
pub const TOKEN: &str = "bench-ingest-token";
/// Trades per ingest request, and connections sending them.
pub const BATCH: usize = 1_000;
pub const SENDERS: usize = 8;
/// Single-trade requests per second for the latency measurement.
pub const PROBE_RATE: u64 = 200;

/// A directory for the benchmark's stores and files, removed when dropped.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new() -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("trading-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every bar of `symbol` at `res` in `[from_s, to_s)`, ascending.
fn synthetic_bars(
    market: &Market,
    symbol: &str,
    res: Resolution,
    from_s: i64,
    to_s: i64,
) -> Vec<trading_market::source::Bar> {
    let now = CLOCK_START * 1000;
    let mut pages = Vec::new();
    let mut to = to_s;
    loop {
        let query = BarQuery {
            from_s,
            to_s: to,
            count_back: None,
            limit: MAX_LIMIT,
        };
        let page = market
            .bars(symbol, res, &query, now)
            .map(|p| p.bars)
            .unwrap_or_default();
        let full = page.len() == MAX_LIMIT;
        if let Some(first) = page.first() {
            to = first.time / 1000;
        }
        pages.push(page);
        if !full {
            break;
        }
    }
    pages.into_iter().rev().flatten().collect()
}

/// Writes bars as the CSV `import` reads: unix seconds, or dates for D.
fn write_csv(path: &Path, bars: &[trading_market::source::Bar], daily: bool) -> Result<(), String> {
    let mut out = String::with_capacity(bars.len() * 64 + 64);
    out.push_str("time,open,high,low,close,volume\n");
    for b in bars {
        if daily {
            let text = trading_market::clock::rfc3339(b.time);
            out.push_str(&text[..10]);
        } else {
            let _ = write!(out, "{}", b.time / 1000);
        }
        let _ = writeln!(
            out,
            ",{},{},{},{},{}",
            b.open, b.high, b.low, b.close, b.volume
        );
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

fn run_server_command(server: &str, args: &[&str]) -> Result<Duration, String> {
    let start = Instant::now();
    let out = Command::new(server)
        .args(args)
        .output()
        .map_err(|e| format!("{server}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{server} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(start.elapsed())
}

/// `trading-server import --symbols FILE` into `store`.
pub(crate) fn register(server: &str, store: &str, symbols: &Path) -> Result<Duration, String> {
    let file = symbols.display().to_string();
    run_server_command(server, &["import", "--store", store, "--symbols", &file])
}

/// The synthetic catalog's descriptions of `tickers`, as a symbols file.
pub(crate) fn symbols_file(path: &Path, tickers: &[&str]) -> Result<(), String> {
    let catalog = Synthetic::builtin(42).catalog();
    let infos: Vec<SymbolInfo> = tickers
        .iter()
        .filter_map(|t| catalog.lookup(t).map(|s| s.info.clone()))
        .collect();
    let json = serde_json::to_string(&infos).map_err(|e| e.to_string())?;
    std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))
}

/// The store the REST tables read: the synthetic market's daily bars of
/// [`DAILY_SYMBOLS`] since 2019 and BTCUSD's minutes of the last days.
pub fn prepare(o: &Options, scratch: &Scratch, store_arg: &str) -> Result<(), String> {
    let store_arg = store_arg.to_string();
    let synthetic = Synthetic::builtin(42);
    let market = synthetic.market();
    let mut tickers: Vec<&str> = DAILY_SYMBOLS.to_vec();
    tickers.push("BTCUSD");
    let symbols = scratch.path("symbols.json");
    symbols_file(&symbols, &tickers)?;
    register(&o.server, &store_arg, &symbols)?;
    let history_start = market.history_start_ms() / 1000;
    for ticker in DAILY_SYMBOLS {
        let bars = synthetic_bars(
            market,
            ticker,
            Resolution::Day,
            history_start,
            CLOCK_START + 86_400,
        );
        let file = scratch.path(&format!("{ticker}.csv"));
        write_csv(&file, &bars, true)?;
        run_server_command(
            &o.server,
            &[
                "import",
                "--store",
                &store_arg,
                "--symbol",
                ticker,
                "--resolution",
                "D",
                &file.display().to_string(),
            ],
        )?;
    }
    let from = CLOCK_START - MINUTE_DAYS * 86_400;
    let bars = synthetic_bars(market, "BTCUSD", Resolution::Min1, from, CLOCK_START + 1);
    let file = scratch.path("BTCUSD.csv");
    write_csv(&file, &bars, false)?;
    run_server_command(
        &o.server,
        &[
            "import",
            "--store",
            &store_arg,
            "--symbol",
            "BTCUSD",
            "--resolution",
            "1",
            &file.display().to_string(),
        ],
    )?;
    Ok(())
}

/// Runs the import, ingest and latency tables; false if any failed.
pub async fn run_all(o: &Options) -> bool {
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("store: {e}");
            return false;
        }
    };
    let mut ok = true;
    if let Err(e) = import_table(o, &scratch) {
        eprintln!("store import: {e}");
        ok = false;
    }
    if let Err(e) = ingest_tables(o, &scratch).await {
        eprintln!("store ingest: {e}");
        ok = false;
    }
    if let Err(e) = wal::wal_table(o, &scratch).await {
        eprintln!("store log: {e}");
        ok = false;
    }
    ok
}

/// The write-ahead log table alone.
pub async fn wal_only(o: &Options) -> bool {
    let result = match Scratch::new() {
        Ok(scratch) => wal::wal_table(o, &scratch).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        eprintln!("store log: {e}");
    }
    result.is_ok()
}

/// `trading-server import` of one big one-minute file into a new store.
fn import_table(o: &Options, scratch: &Scratch) -> Result<(), String> {
    let bars_wanted: i64 = if o.quick { 20_000 } else { 2_000_000 };
    let synthetic = Synthetic::builtin(42);
    let from = CLOCK_START - bars_wanted * 60;
    let bars = synthetic_bars(
        synthetic.market(),
        "BTCUSD",
        Resolution::Min1,
        from,
        CLOCK_START,
    );
    let file = scratch.path("import.csv");
    write_csv(&file, &bars, false)?;
    let bytes = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    println!(
        "Store import: {} one-minute bars ({:.1} MB of CSV) into a new store (an embedded SQLite \
         file, a PostgreSQL database), {} run(s), medians\n",
        int(bars.len() as f64),
        bytes as f64 / 1e6,
        o.runs
    );
    stats::header(&["store", "bars", "seconds", "bars/s", "MB/s"], 1);
    for engine in ["sqlite", "postgres"] {
        let mut seconds = Vec::new();
        for run in 0..o.runs {
            let (store, db) = match engine {
                "sqlite" => (
                    scratch
                        .path(&format!("import-{run}.db"))
                        .display()
                        .to_string(),
                    None,
                ),
                _ => {
                    let db = block_on(Database::create())?;
                    (db.url.clone(), Some(db))
                }
            };
            let elapsed = run_server_command(
                &o.server,
                &[
                    "import",
                    "--store",
                    &store,
                    "--symbol",
                    "BTCBIG",
                    "--resolution",
                    "1",
                    &file.display().to_string(),
                ],
            );
            match db {
                Some(db) => block_on(db.remove()),
                None => {
                    let _ = std::fs::remove_file(&store);
                }
            }
            seconds.push(elapsed?.as_secs_f64());
        }
        let s = stats::median(seconds);
        stats::row(&[
            engine.into(),
            int(bars.len() as f64),
            format!("{s:.2}"),
            int(bars.len() as f64 / s),
            format!("{:.1}", bytes as f64 / 1e6 / s),
        ]);
    }
    println!();
    if bars.is_empty() {
        return Err("the engine produced no bars to import".into());
    }
    Ok(())
}

/// Runs `work` to completion from synchronous code inside the runtime.
pub(crate) fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work))
}
