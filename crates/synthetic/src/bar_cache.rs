//! The encoded JSON of closed daily, weekly and monthly bars, per symbol.
//!
//! A chart opens with a few hundred daily bars, and most of its requests
//! after that are for the same closed history. Closed bars never change, so
//! their JSON is written once and copied into every response that contains
//! them. The cache only ever saves time: `bars_json` compares each cached
//! bar with the one the market returned before using its bytes, so a
//! missing, old or even wrong entry cannot change a response.
//!
//! Coarse resolutions only: since 2019 they are a few thousand bars a symbol
//! (about 0.3 MB), where minute bars would be millions.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::engine::{BarQuery, Market, Resolution, MAX_LIMIT};
use trading_market::bars_json::{EncodedRun, PriceFormat};

/// Market time after which an entry is rebuilt, so the bars that closed
/// since are copied too instead of written each time (a week of them).
const REBUILD_AFTER_MS: i64 = 7 * 86_400_000;

struct Entry {
    built_at_ms: i64,
    run: Arc<EncodedRun>,
}

#[derive(Default)]
pub struct BarCache {
    /// By resolution, then symbol, so a lookup needs no owned key.
    entries: RwLock<HashMap<Resolution, HashMap<String, Entry>>>,
}

impl BarCache {
    /// The encoded closed bars of `symbol` at `resolution` as of `now_ms`,
    /// built on first use; None for intraday resolutions.
    pub fn get(
        &self,
        market: &Market,
        symbol: &str,
        resolution: Resolution,
        prices: Option<PriceFormat>,
        now_ms: i64,
    ) -> Option<Arc<EncodedRun>> {
        if resolution.intraday_minutes().is_some() {
            return None;
        }
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(e) = entries.get(&resolution).and_then(|m| m.get(symbol)) {
                if now_ms.saturating_sub(e.built_at_ms) < REBUILD_AFTER_MS {
                    return Some(Arc::clone(&e.run));
                }
            }
        }
        let run = Arc::new(closed_bars(market, symbol, resolution, prices, now_ms)?);
        let entry = Entry {
            built_at_ms: now_ms,
            run: Arc::clone(&run),
        };
        self.entries
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(resolution)
            .or_default()
            .insert(symbol.to_string(), entry);
        Some(run)
    }
}

/// Every bar of the symbol before the one in progress at `now_ms`.
fn closed_bars(
    market: &Market,
    symbol: &str,
    resolution: Resolution,
    prices: Option<PriceFormat>,
    now_ms: i64,
) -> Option<EncodedRun> {
    let current = market.current_bar(symbol, resolution, now_ms).ok()?;
    let query = BarQuery {
        from_s: market.history_start_ms().div_euclid(1000),
        to_s: now_ms.div_euclid(1000) + 1,
        count_back: None,
        limit: MAX_LIMIT,
    };
    let mut bars = market.bars(symbol, resolution, &query, now_ms).ok()?.bars;
    if let Some(current) = current {
        bars.retain(|b| b.time < current.time);
    }
    Some(EncodedRun::new(bars, prices))
}
