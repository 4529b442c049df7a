//! The symbol catalog: what symbols exist, how they are described to the
//! chart (`SymbolInfo`), how their synthetic prices behave, and search.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use trading_pro::types::{DataStatus, PriceFormat, SymbolInfo, SymbolSearchResult};

use crate::market::{InstrumentSpec, Resolution};

/// One symbol: its wire description and its price model.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub info: SymbolInfo,
    pub model: InstrumentSpec,
    /// Upper-cased ticker, `EXCHANGE:TICKER` and description, for matching.
    ticker_key: String,
    full_name_key: String,
    description_key: String,
}

impl Symbol {
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.info.exchange, self.info.ticker)
    }
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

#[derive(Debug)]
pub struct CatalogError(pub String);

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CatalogError {}

#[derive(Debug)]
pub struct Catalog {
    symbols: Vec<Symbol>,
    by_ticker: HashMap<String, usize>,
}

pub const SUPPORTED_RESOLUTIONS: [&str; 9] = ["1", "5", "15", "30", "60", "240", "D", "W", "M"];
const INTRADAY: [&str; 6] = ["1", "5", "15", "30", "60", "240"];

impl Catalog {
    pub fn new(symbols: Vec<Symbol>) -> Result<Catalog, CatalogError> {
        let mut by_ticker = HashMap::new();
        for (i, s) in symbols.iter().enumerate() {
            if s.info.ticker.trim().is_empty() {
                return Err(CatalogError(format!("symbol #{i} has an empty ticker")));
            }
            if by_ticker.insert(s.ticker_key.clone(), i).is_some() {
                return Err(CatalogError(format!(
                    "duplicate ticker {:?}",
                    s.info.ticker
                )));
            }
        }
        Ok(Catalog { symbols, by_ticker })
    }

    /// The built-in catalog: US stocks on NASDAQ and NYSE, crypto and forex.
    pub fn default_catalog() -> Catalog {
        let symbols = DEFAULT_SYMBOLS
            .iter()
            .map(|d| {
                let kind = d.kind;
                let info = symbol_info(d.ticker, d.description, d.exchange, kind, d.price);
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
                Symbol::new(info, model)
            })
            .collect();
        Catalog::new(symbols).expect("the built-in catalog is valid")
    }

    /// Loads a JSON array of `SymbolInfo` objects (each optionally with
    /// `initial_price`, `annual_volatility`, `avg_daily_volume`).
    pub fn from_file(path: &Path) -> Result<Catalog, CatalogError> {
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
                Ok(Symbol::new(e.info, model))
            })
            .collect::<Result<Vec<_>, CatalogError>>()?;
        Catalog::new(symbols)
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Symbol> {
        self.symbols.iter()
    }

    /// Finds a symbol by ticker, case-insensitively; `EXCHANGE:TICKER` is
    /// accepted when the exchange matches.
    pub fn lookup(&self, name: &str) -> Option<&Symbol> {
        let upper = name.trim().to_ascii_uppercase();
        let (exchange, ticker) = match upper.split_once(':') {
            Some((ex, t)) => (Some(ex), t),
            None => (None, upper.as_str()),
        };
        let symbol = &self.symbols[*self.by_ticker.get(ticker)?];
        match exchange {
            Some(ex) if !ex.eq_ignore_ascii_case(&symbol.info.exchange) => None,
            _ => Some(symbol),
        }
    }

    /// Exact matches first, then prefix matches, then substring matches (of
    /// ticker, full name or description), each group in catalog order.
    pub fn search(
        &self,
        input: &str,
        exchange: Option<&str>,
        symbol_type: Option<&str>,
        max: usize,
    ) -> Vec<SymbolSearchResult> {
        let needle = input.trim().to_ascii_uppercase();
        let keep = |s: &&Symbol| {
            exchange.is_none_or(|e| e.is_empty() || e.eq_ignore_ascii_case(&s.info.exchange))
                && symbol_type.is_none_or(|t| t.is_empty() || t.eq_ignore_ascii_case(&s.info.type_))
        };
        let rank = |s: &Symbol| -> Option<u8> {
            if needle.is_empty() || s.ticker_key == needle || s.full_name_key == needle {
                Some(0)
            } else if s.ticker_key.starts_with(&needle) || s.full_name_key.starts_with(&needle) {
                Some(1)
            } else if s.ticker_key.contains(&needle)
                || s.full_name_key.contains(&needle)
                || s.description_key.contains(&needle)
            {
                Some(2)
            } else {
                None
            }
        };
        let mut hits: Vec<(u8, usize, &Symbol)> = self
            .symbols
            .iter()
            .enumerate()
            .filter(|(_, s)| keep(s))
            .filter_map(|(i, s)| rank(s).map(|r| (r, i, s)))
            .collect();
        hits.sort_by_key(|(r, i, _)| (*r, *i));
        hits.into_iter()
            .take(max)
            .map(|(_, _, s)| SymbolSearchResult {
                symbol: s.info.name.clone(),
                full_name: s.full_name(),
                description: s.info.description.clone(),
                exchange: s.info.exchange.clone(),
                ticker: s.info.ticker.clone(),
                type_: s.info.type_.clone(),
            })
            .collect()
    }

    /// Exchanges in catalog order, without duplicates.
    pub fn exchanges(&self) -> Vec<&str> {
        self.distinct(|s| &s.info.exchange)
    }

    /// Symbol types in catalog order, without duplicates.
    pub fn types(&self) -> Vec<&str> {
        self.distinct(|s| &s.info.type_)
    }

    fn distinct<'a>(&'a self, field: impl Fn(&'a Symbol) -> &'a String) -> Vec<&'a str> {
        let mut seen: Vec<&str> = Vec::new();
        for value in self.symbols.iter().map(field) {
            if !seen.contains(&value.as_str()) {
                seen.push(value);
            }
        }
        seen
    }
}

impl Symbol {
    fn new(info: SymbolInfo, model: InstrumentSpec) -> Symbol {
        let ticker_key = info.ticker.to_ascii_uppercase();
        let full_name_key = format!("{}:{}", info.exchange, info.ticker).to_ascii_uppercase();
        let description_key = info.description.to_ascii_uppercase();
        Symbol {
            info,
            model,
            ticker_key,
            full_name_key,
            description_key,
        }
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
        supported_resolutions: SUPPORTED_RESOLUTIONS
            .iter()
            .map(|r| r.to_string())
            .collect(),
        intraday_multipliers: INTRADAY.iter().map(|r| r.to_string()).collect(),
        volume_precision: 0,
        data_status: DataStatus::Streaming,
        currency_code: currency.to_string(),
    }
}

/// Resolutions this server builds, in the order TradingView lists them.
pub fn supported_resolutions() -> impl Iterator<Item = Resolution> {
    Resolution::ALL.into_iter()
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
