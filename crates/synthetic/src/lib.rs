//! The synthetic market as a data source: the built-in catalog (or a
//! `--symbols` file), the seeded price engine (`engine`), and the cache of
//! encoded closed D/W/M bars (`bar_cache`). Its bars change with the clock
//! alone, so the broadcaster polls it ([`Live::Clock`]). The zero-setup
//! default of trading-pro: no file, no database.
//!
//! This is the one crate built with optimisation in development: the
//! engine simulates years of minutes per symbol, and unoptimised that turns
//! a test run from seconds into minutes.

pub mod bar_cache;
pub mod engine;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use trading_pro::types::{DataStatus, PriceFormat, SymbolInfo};

use crate::bar_cache::BarCache;
use crate::engine::{InstrumentSpec, Market};
use trading_market::bars_json::{self, EncodedRun};
use trading_market::calendar::Resolution;
use trading_market::catalog::{Catalog, CatalogError, Symbol};
use trading_market::source::{Bar, BarQuery, BarsPage, DataSource, Live, Quote, SourceError};

pub struct Synthetic {
    catalog: Arc<Catalog>,
    market: Arc<Market>,
    /// Encoded closed D/W/M bars, shared by every getBars.
    bar_cache: BarCache,
}

/// An entry of a `--symbols` file: a `SymbolInfo` plus optional price-model
/// parameters (sensible defaults are derived from the symbol type).
#[derive(Deserialize)]
struct SymbolFileEntry {
    #[serde(flatten)]
    info: SymbolInfo,
    initial_price: Option<f64>,
    annual_volatility: Option<f64>,
    avg_daily_volume: Option<f64>,
}

impl Synthetic {
    /// The built-in 26 symbols: US stocks on NASDAQ and NYSE, crypto and forex.
    pub fn builtin(seed: u64) -> Synthetic {
        let symbols = DEFAULT_SYMBOLS
            .iter()
            .map(|d| {
                let info = symbol_info(d.ticker, d.description, d.exchange, d.kind, d.price);
                let model = InstrumentSpec {
                    symbol: d.ticker.to_string(),
                    session: info.session.clone(),
                    timezone: info.timezone.clone(),
                    pricescale: info.pricescale as u32,
                    minmov: info.minmov as u32,
                    initial_price: d.price,
                    annual_volatility: d.volatility,
                    avg_daily_volume: d.volume,
                };
                (info, model)
            })
            .collect();
        Synthetic::new(seed, symbols).expect("the built-in catalog is valid")
    }

    /// The symbols of a JSON array of `SymbolInfo` objects (each optionally
    /// with `initial_price`, `annual_volatility`, `avg_daily_volume`).
    pub fn from_file(seed: u64, path: &Path) -> Result<Synthetic, CatalogError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CatalogError(format!("cannot read {}: {e}", path.display())))?;
        let entries: Vec<SymbolFileEntry> = serde_json::from_str(&text).map_err(|e| {
            CatalogError(format!(
                "{} is not a JSON array of symbol infos: {e}",
                path.display()
            ))
        })?;
        if entries.is_empty() {
            return Err(CatalogError(format!("{} lists no symbols", path.display())));
        }
        let symbols = entries
            .into_iter()
            .map(|e| {
                let defaults = Kind::from_type(&e.info.type_).defaults();
                let to_u32 = |v: i64, what: &str| {
                    u32::try_from(v).ok().filter(|v| *v > 0).ok_or_else(|| {
                        CatalogError(format!(
                            "{}: {what} must be a positive integer",
                            e.info.ticker
                        ))
                    })
                };
                let model = InstrumentSpec {
                    symbol: e.info.ticker.clone(),
                    session: e.info.session.clone(),
                    timezone: e.info.timezone.clone(),
                    pricescale: to_u32(e.info.pricescale, "pricescale")?,
                    minmov: to_u32(e.info.minmov, "minmov")?,
                    initial_price: e.initial_price.unwrap_or(100.0),
                    annual_volatility: e.annual_volatility.unwrap_or(defaults.0),
                    avg_daily_volume: e.avg_daily_volume.unwrap_or(defaults.1),
                };
                Ok((e.info, model))
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        Synthetic::new(seed, symbols)
    }

    fn new(
        seed: u64,
        symbols: Vec<(SymbolInfo, InstrumentSpec)>,
    ) -> Result<Synthetic, CatalogError> {
        let (infos, specs): (Vec<_>, Vec<_>) = symbols.into_iter().unzip();
        let catalog = Catalog::new(infos)?;
        let market = Market::new(seed, specs)
            .map_err(|e| CatalogError(format!("invalid symbol catalog: {e}")))?;
        Ok(Synthetic {
            catalog: Arc::new(catalog),
            market: Arc::new(market),
            bar_cache: BarCache::default(),
        })
    }

    /// The price engine, for benchmarks and warm-up.
    pub fn market(&self) -> &Arc<Market> {
        &self.market
    }
}

#[async_trait]
impl DataSource for Synthetic {
    fn kind(&self) -> &'static str {
        "synthetic"
    }

    fn describe(&self) -> String {
        format!("synthetic market of {} symbols", self.catalog.len())
    }

    fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog)
    }

    fn live(&self) -> Live {
        Live::Clock
    }

    async fn bars(
        &self,
        symbol: &Symbol,
        res: Resolution,
        query: &BarQuery,
        now_ms: i64,
    ) -> Result<BarsPage, SourceError> {
        let compute = || {
            self.market
                .bars(symbol.ticker(), res, query, now_ms)
                .unwrap_or(BarsPage {
                    bars: Vec::new(),
                    no_data: true,
                    next_time: None,
                })
        };
        Ok(if spans_long_history(res, query) {
            off_the_request_workers(compute)
        } else {
            compute()
        })
    }

    fn encoded_history(
        &self,
        symbol: &Symbol,
        res: Resolution,
        now_ms: i64,
    ) -> Option<Arc<EncodedRun>> {
        let prices = bars_json::PriceFormat::for_pricescale(symbol.info.pricescale);
        self.bar_cache
            .get(&self.market, symbol.ticker(), res, prices, now_ms)
    }

    async fn current_bar(
        &self,
        symbol: &Symbol,
        res: Resolution,
        now_ms: i64,
    ) -> Result<Option<Bar>, SourceError> {
        Ok(self
            .market
            .current_bar(symbol.ticker(), res, now_ms)
            .ok()
            .flatten())
    }

    async fn quote(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<Quote>, SourceError> {
        // The engine's only error for a catalog symbol is "no data yet"
        // (before history starts).
        Ok(self.market.quote(symbol.ticker(), now_ms).ok())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stock,
    Crypto,
    Forex,
}

impl Kind {
    fn from_type(t: &str) -> Kind {
        match t {
            "crypto" => Kind::Crypto,
            "forex" => Kind::Forex,
            _ => Kind::Stock,
        }
    }

    /// (annual volatility, average daily volume) when a file gives none.
    fn defaults(self) -> (f64, f64) {
        match self {
            Kind::Stock => (0.30, 20_000_000.0),
            Kind::Crypto => (0.65, 50_000.0),
            Kind::Forex => (0.08, 1_000_000.0),
        }
    }
}

fn symbol_info(
    ticker: &str,
    description: &str,
    exchange: &str,
    kind: Kind,
    price: f64,
) -> SymbolInfo {
    // Enough decimals for four or five significant digits at any price.
    let crypto_scale = if price < 10.0 { 10_000 } else { 100 };
    let (type_, session, timezone, pricescale, currency) = match kind {
        Kind::Stock => ("stock", "0930-1600", "America/New_York", 100, "USD"),
        Kind::Crypto => ("crypto", "24x7", "Etc/UTC", crypto_scale, "USD"),
        Kind::Forex => {
            let scale = if ticker.ends_with("JPY") {
                1000
            } else {
                100_000
            };
            (
                "forex",
                "1700-1700:23456",
                "America/New_York",
                scale,
                &ticker[3..],
            )
        }
    };
    SymbolInfo {
        name: ticker.to_string(),
        ticker: ticker.to_string(),
        description: description.to_string(),
        type_: type_.to_string(),
        session: session.to_string(),
        timezone: timezone.to_string(),
        exchange: exchange.to_string(),
        listed_exchange: exchange.to_string(),
        format: PriceFormat::Price,
        pricescale,
        minmov: 1,
        has_intraday: true,
        has_daily: true,
        has_weekly_and_monthly: true,
        supported_resolutions: Resolution::ALL
            .iter()
            .map(|r| r.as_str().to_string())
            .collect(),
        intraday_multipliers: Resolution::ALL
            .iter()
            .filter(|r| r.is_intraday())
            .map(|r| r.as_str().to_string())
            .collect(),
        volume_precision: 0,
        data_status: DataStatus::Streaming,
        currency_code: currency.to_string(),
    }
}

struct DefaultSymbol {
    ticker: &'static str,
    description: &'static str,
    exchange: &'static str,
    kind: Kind,
    price: f64,
    volatility: f64,
    volume: f64,
}

const fn sym(
    ticker: &'static str,
    description: &'static str,
    exchange: &'static str,
    kind: Kind,
    price: f64,
    volatility: f64,
    volume: f64,
) -> DefaultSymbol {
    DefaultSymbol {
        ticker,
        description,
        exchange,
        kind,
        price,
        volatility,
        volume,
    }
}

const DEFAULT_SYMBOLS: &[DefaultSymbol] = &[
    sym(
        "AAPL",
        "Apple Inc.",
        "NASDAQ",
        Kind::Stock,
        150.0,
        0.28,
        60_000_000.0,
    ),
    sym(
        "MSFT",
        "Microsoft Corporation",
        "NASDAQ",
        Kind::Stock,
        300.0,
        0.26,
        25_000_000.0,
    ),
    sym(
        "GOOGL",
        "Alphabet Inc. Class A",
        "NASDAQ",
        Kind::Stock,
        130.0,
        0.30,
        30_000_000.0,
    ),
    sym(
        "AMZN",
        "Amazon.com, Inc.",
        "NASDAQ",
        Kind::Stock,
        140.0,
        0.33,
        45_000_000.0,
    ),
    sym(
        "NVDA",
        "NVIDIA Corporation",
        "NASDAQ",
        Kind::Stock,
        120.0,
        0.50,
        250_000_000.0,
    ),
    sym(
        "META",
        "Meta Platforms, Inc.",
        "NASDAQ",
        Kind::Stock,
        320.0,
        0.38,
        18_000_000.0,
    ),
    sym(
        "TSLA",
        "Tesla, Inc.",
        "NASDAQ",
        Kind::Stock,
        220.0,
        0.60,
        100_000_000.0,
    ),
    sym(
        "NFLX",
        "Netflix, Inc.",
        "NASDAQ",
        Kind::Stock,
        450.0,
        0.40,
        5_000_000.0,
    ),
    sym(
        "AMD",
        "Advanced Micro Devices, Inc.",
        "NASDAQ",
        Kind::Stock,
        110.0,
        0.50,
        55_000_000.0,
    ),
    sym(
        "INTC",
        "Intel Corporation",
        "NASDAQ",
        Kind::Stock,
        35.0,
        0.35,
        40_000_000.0,
    ),
    sym(
        "JPM",
        "JPMorgan Chase & Co.",
        "NYSE",
        Kind::Stock,
        150.0,
        0.24,
        9_000_000.0,
    ),
    sym(
        "V",
        "Visa Inc.",
        "NYSE",
        Kind::Stock,
        240.0,
        0.22,
        6_000_000.0,
    ),
    sym(
        "WMT",
        "Walmart Inc.",
        "NYSE",
        Kind::Stock,
        60.0,
        0.18,
        15_000_000.0,
    ),
    sym(
        "KO",
        "The Coca-Cola Company",
        "NYSE",
        Kind::Stock,
        60.0,
        0.15,
        12_000_000.0,
    ),
    sym(
        "DIS",
        "The Walt Disney Company",
        "NYSE",
        Kind::Stock,
        100.0,
        0.30,
        10_000_000.0,
    ),
    sym(
        "IBM",
        "International Business Machines Corporation",
        "NYSE",
        Kind::Stock,
        140.0,
        0.22,
        4_000_000.0,
    ),
    sym(
        "BA",
        "The Boeing Company",
        "NYSE",
        Kind::Stock,
        200.0,
        0.40,
        7_000_000.0,
    ),
    sym(
        "XOM",
        "Exxon Mobil Corporation",
        "NYSE",
        Kind::Stock,
        100.0,
        0.27,
        16_000_000.0,
    ),
    sym(
        "BTCUSD",
        "Bitcoin / US Dollar",
        "CRYPTO",
        Kind::Crypto,
        40_000.0,
        0.65,
        30_000.0,
    ),
    sym(
        "ETHUSD",
        "Ethereum / US Dollar",
        "CRYPTO",
        Kind::Crypto,
        2_500.0,
        0.75,
        400_000.0,
    ),
    sym(
        "SOLUSD",
        "Solana / US Dollar",
        "CRYPTO",
        Kind::Crypto,
        100.0,
        0.95,
        3_000_000.0,
    ),
    sym(
        "XRPUSD",
        "XRP / US Dollar",
        "CRYPTO",
        Kind::Crypto,
        0.60,
        0.85,
        900_000_000.0,
    ),
    sym(
        "EURUSD",
        "Euro / US Dollar",
        "FOREX",
        Kind::Forex,
        1.10,
        0.07,
        1_500_000.0,
    ),
    sym(
        "GBPUSD",
        "British Pound / US Dollar",
        "FOREX",
        Kind::Forex,
        1.27,
        0.08,
        1_000_000.0,
    ),
    sym(
        "USDJPY",
        "US Dollar / Japanese Yen",
        "FOREX",
        Kind::Forex,
        145.0,
        0.09,
        1_200_000.0,
    ),
    sym(
        "AUDUSD",
        "Australian Dollar / US Dollar",
        "FOREX",
        Kind::Forex,
        0.66,
        0.10,
        700_000.0,
    ),
];

/// Intraday spans longer than this many minutes (about five weeks) may
/// have to build their minute history the first time they are asked: tens
/// of milliseconds in one go.
const LONG_SPAN_MINUTES: i64 = 50_000;

fn spans_long_history(res: Resolution, query: &BarQuery) -> bool {
    let Some(minutes) = res.intraday_minutes() else {
        // Daily and coarser bars come from the daily caches.
        return false;
    };
    let span = match query.count_back {
        Some(n) => (n as i64).saturating_mul(i64::from(minutes)),
        None => query.to_s.saturating_sub(query.from_s) / 60,
    };
    span > LONG_SPAN_MINUTES
}

/// Runs `f` so that the request worker's other tasks (health checks,
/// cheap requests queued behind this one) move to another worker while it
/// runs: handlers run in their connection's task, and without this a
/// worker busy with a long computation holds everything queued on it. Used
/// only where the work may be long: the hand-over costs microseconds, and
/// moving every data request to other threads halved the throughput of
/// cheap ones (docs/BENCHMARKS.md, "REST through the edge").
fn off_the_request_workers<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
