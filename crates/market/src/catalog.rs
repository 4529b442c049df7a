//! The symbols a data source serves: their wire description (`SymbolInfo`),
//! which resolutions each one serves, lookup and search. The same for every
//! source; each source builds its catalog from its own symbols.

use std::collections::HashMap;

use trading_pro::types::{SymbolInfo, SymbolSearchResult};

use crate::calendar::Resolution;

/// One symbol: its wire description, and what the API matches it by.
#[derive(Clone, Debug)]
pub struct Symbol {
    pub info: SymbolInfo,
    /// Bit `r as usize` set for each resolution served (from
    /// `info.supported_resolutions`).
    served: u16,
    /// Upper-cased ticker, `EXCHANGE:TICKER` and description, for matching.
    ticker_key: String,
    full_name_key: String,
    description_key: String,
}

impl Symbol {
    pub fn new(info: SymbolInfo) -> Symbol {
        let served = info
            .supported_resolutions
            .iter()
            .filter_map(|r| Resolution::parse(r))
            .fold(0u16, |mask, r| mask | (1 << r as usize));
        let ticker_key = info.ticker.to_ascii_uppercase();
        let full_name_key = format!("{}:{}", info.exchange, info.ticker).to_ascii_uppercase();
        let description_key = info.description.to_ascii_uppercase();
        Symbol {
            info,
            served,
            ticker_key,
            full_name_key,
            description_key,
        }
    }

    pub fn ticker(&self) -> &str {
        &self.info.ticker
    }

    pub fn full_name(&self) -> String {
        format!("{}:{}", self.info.exchange, self.info.ticker)
    }

    /// Whether bars of `res` are served for this symbol.
    pub fn serves(&self, res: Resolution) -> bool {
        self.served & (1 << res as usize) != 0
    }

    /// The resolutions served, finest first.
    pub fn resolutions(&self) -> impl Iterator<Item = Resolution> + '_ {
        Resolution::ALL.into_iter().filter(|r| self.serves(*r))
    }

    /// Why `res` is not served, for an error message; None when it is.
    pub fn unserved_reason(&self, res: Resolution) -> Option<String> {
        if self.serves(res) {
            return None;
        }
        let served: Vec<&str> = self.resolutions().map(Resolution::as_str).collect();
        Some(if served.is_empty() {
            format!("{} has no bars yet", self.info.ticker)
        } else {
            format!(
                "{} is served at {} only: its data is no finer than {} \
                 (coarser resolutions are aggregated, finer ones cannot be)",
                self.info.ticker,
                served.join(", "),
                served[0]
            )
        })
    }
}

#[derive(Debug)]
pub struct CatalogError(pub String);

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CatalogError {}

#[derive(Debug, Default)]
pub struct Catalog {
    symbols: Vec<Symbol>,
    by_ticker: HashMap<String, usize>,
}

impl Catalog {
    pub fn new(infos: Vec<SymbolInfo>) -> Result<Catalog, CatalogError> {
        let symbols: Vec<Symbol> = infos.into_iter().map(Symbol::new).collect();
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
        visible: impl Fn(&Symbol) -> bool,
    ) -> Vec<SymbolSearchResult> {
        let needle = input.trim().to_ascii_uppercase();
        let keep = |s: &&Symbol| {
            visible(s)
                && exchange.is_none_or(|e| e.is_empty() || e.eq_ignore_ascii_case(&s.info.exchange))
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

/// The resolution fields of a `SymbolInfo` for a symbol whose finest data
/// is `base` (None: no data yet): every resolution from `base` up is
/// served, as the exact aggregate of the base bars.
pub fn set_resolutions(info: &mut SymbolInfo, base: Option<Resolution>) {
    let served: Vec<Resolution> = match base {
        Some(base) => Resolution::ALL.into_iter().filter(|r| *r >= base).collect(),
        None => Vec::new(),
    };
    info.has_intraday = served.iter().any(|r| r.is_intraday());
    info.has_daily = served.contains(&Resolution::Day);
    info.has_weekly_and_monthly = served.contains(&Resolution::Week);
    info.supported_resolutions = served.iter().map(|r| r.as_str().to_string()).collect();
    info.intraday_multipliers = served
        .iter()
        .filter(|r| r.is_intraday())
        .map(|r| r.as_str().to_string())
        .collect();
}
