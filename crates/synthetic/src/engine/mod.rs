//! Deterministic synthetic market data.
//!
//! Every instrument has its own seeded price path. One-minute bars are the atom and every
//! coarser resolution is the exact aggregate of finer bars. All output is a pure function
//! of (seed, instrument spec, timestamp) and the `now_ms` argument: nothing here reads
//! the clock, so tests and replays are reproducible.
//!
//! Model summary:
//! - History starts 2019-01-01T00:00:00Z; a trading day exists when its date and its
//!   session start are both at or after that instant. Nothing exists after `now_ms`, and
//!   the bar containing `now_ms` is partial, down to the second.
//! - Sessions follow TradingView strings evaluated in the instrument's time zone.
//!   Exchange holidays are not modelled: every listed weekday trades.
//! - Intraday bars are stamped at their start and aligned to each session's start; a
//!   bucket never spans two trading days. Daily bars are stamped 00:00 UTC of the trading
//!   date (so a forex Monday session opening Sunday evening is stamped Monday 00:00 UTC),
//!   weekly (ISO week of the trading date) and monthly bars by their first daily bar.
//! - Prices are whole ticks and volumes whole units, so aggregation is exact in `f64`.
//! - Top-down generation: a trading day's complete bar is drawn directly (O(1) per day),
//!   and its one-minute bars are generated inside it so that they aggregate to it
//!   exactly. Daily, weekly and monthly history therefore never simulates minutes.
//! - `now_ms` is clamped to 2100-01-01 to bound cache growth.
//! - Coarse intraday bars of closed days are kept under a fixed byte budget
//!   (`closed_days`), so long 15- to 240-minute histories are generated once.

mod closed_days;
mod error;

mod path;
mod rng;
mod series;
mod spec;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

pub use error::MarketError;
pub use spec::InstrumentSpec;
pub use trading_market::calendar::Resolution;
pub use trading_market::source::{Bar, BarQuery, BarsPage, Quote};

use closed_days::ClosedDays;
use path::TickBar;
use rng::{draw, Stream};
use series::{aggregate_periods, period_end_ms, Instrument, IntradaySource};
use trading_market::paging::{self, select, SliceSource};

/// 2019-01-01T00:00:00Z in unix milliseconds.
pub const HISTORY_START_MS: i64 = series::HISTORY_START_MS;
/// `now_ms` values beyond this instant (2100-01-01T00:00:00Z) are treated as this instant.
pub const MAX_TIME_MS: i64 = series::MAX_TIME_MS;
/// Upper bound applied to `BarQuery::limit`, protecting memory against absurd limits.
pub const MAX_LIMIT: usize = 100_000;

/// The synthetic market. `Send + Sync`; share it in an `Arc`.
pub struct Market {
    seed: u64,
    instruments: Vec<Instrument>,
    index: HashMap<String, usize>,
    /// Every instrument's closed intraday days, under one budget.
    closed: ClosedDays,
}

impl fmt::Debug for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Market")
            .field("seed", &self.seed)
            .field("symbols", &self.symbols().collect::<Vec<_>>())
            .finish()
    }
}

impl Market {
    /// Validates every spec (session, time zone, tick size, prices, volatility, volume,
    /// duplicate symbols) and builds the market. Nothing is computed until first use.
    pub fn new(seed: u64, specs: Vec<InstrumentSpec>) -> Result<Market, MarketError> {
        Market::with_budget(seed, specs, closed_days::DEFAULT_BUDGET_BYTES)
    }

    /// `new` with `budget_bytes` for the closed intraday days (tests use small ones).
    fn with_budget(
        seed: u64,
        specs: Vec<InstrumentSpec>,
        budget_bytes: usize,
    ) -> Result<Market, MarketError> {
        let mut instruments = Vec::with_capacity(specs.len());
        let mut index = HashMap::with_capacity(specs.len());
        for spec in specs {
            let valid = spec::validate(&spec)?;
            if index.contains_key(&spec.symbol) {
                return Err(MarketError::DuplicateSymbol(spec.symbol));
            }
            index.insert(spec.symbol.clone(), instruments.len());
            instruments.push(Instrument::new(instruments.len(), seed, spec, valid));
        }
        Ok(Market {
            seed,
            instruments,
            index,
            closed: ClosedDays::new(budget_bytes),
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn history_start_ms(&self) -> i64 {
        HISTORY_START_MS
    }

    pub fn contains(&self, symbol: &str) -> bool {
        self.index.contains_key(symbol)
    }

    /// Symbols in configuration order.
    pub fn symbols(&self) -> impl Iterator<Item = &str> + '_ {
        self.instruments.iter().map(|i| i.spec.symbol.as_str())
    }

    pub fn spec(&self, symbol: &str) -> Option<&InstrumentSpec> {
        self.instrument(symbol).ok().map(|i| &i.spec)
    }

    /// Whether the instrument's session is open at `now_ms`.
    pub fn is_session_open(&self, symbol: &str, now_ms: i64) -> Result<bool, MarketError> {
        Ok(self.instrument(symbol)?.is_open(clamp_now(now_ms)))
    }

    fn instrument(&self, symbol: &str) -> Result<&Instrument, MarketError> {
        self.index
            .get(symbol)
            .and_then(|&i| self.instruments.get(i))
            .ok_or_else(|| MarketError::UnknownSymbol(symbol.to_string()))
    }

    /// Bars for a TradingView `getBars` request, as of `now_ms`.
    pub fn bars(
        &self,
        symbol: &str,
        res: Resolution,
        q: &BarQuery,
        now_ms: i64,
    ) -> Result<BarsPage, MarketError> {
        let inst = self.instrument(symbol)?;
        let now = clamp_now(now_ms);
        let from_ms = q.from_s.saturating_mul(1_000);
        let to_ms = q.to_s.saturating_mul(1_000);
        let limit = q.limit.min(MAX_LIMIT);
        let (bars, no_data, next_time) = match res.intraday_minutes() {
            Some(minutes) => {
                let src = IntradaySource {
                    inst,
                    bucket_minutes: i64::from(minutes),
                    now_ms: now,
                };
                let sel = select(&src, from_ms, to_ms, q.count_back, limit);
                let bars =
                    inst.intraday_bars(&self.closed, &sel.positions, i64::from(minutes), now);
                (bars, sel.no_data, sel.next_time)
            }
            None if res == Resolution::Day => {
                let view = inst.daily_view(now, to_ms);
                let sel = select(&view, from_ms, to_ms, q.count_back, limit);
                let bars = sel.positions.iter().filter_map(|&i| view.get(i)).collect();
                (bars, sel.no_data, sel.next_time)
            }
            None => {
                let view = inst.daily_view(now, period_end_ms(res, to_ms));
                let periods = aggregate_periods(res, view.iter());
                let src = SliceSource {
                    items: &periods,
                    time_of: |b: &TickBar| b.time,
                };
                let sel = select(&src, from_ms, to_ms, q.count_back, limit);
                let bars = sel
                    .positions
                    .iter()
                    .filter_map(|&i| periods.get(i).copied())
                    .collect();
                (bars, sel.no_data, sel.next_time)
            }
        };
        Ok(BarsPage {
            bars: bars.iter().map(|b| inst.to_bar(b)).collect(),
            no_data,
            next_time,
        })
    }

    /// The bar containing `now_ms` (partial as of now), else the most recent bar before
    /// it; `None` only before history starts. For D/W/M this is the bar of the current
    /// (or last) trading day, even when its stamp lies after `now_ms` (forex sessions
    /// open the evening before their date).
    pub fn current_bar(
        &self,
        symbol: &str,
        res: Resolution,
        now_ms: i64,
    ) -> Result<Option<Bar>, MarketError> {
        let inst = self.instrument(symbol)?;
        Ok(current_tick_bar(&self.closed, inst, res, clamp_now(now_ms)).map(|b| inst.to_bar(&b)))
    }

    /// Quote as of `now_ms`, consistent with `bars`/`current_bar` at the same instant.
    pub fn quote(&self, symbol: &str, now_ms: i64) -> Result<Quote, MarketError> {
        let inst = self.instrument(symbol)?;
        let now = clamp_now(now_ms);
        let no_data = || MarketError::NoData {
            symbol: symbol.to_string(),
        };
        let minute =
            current_tick_bar(&self.closed, inst, Resolution::Min1, now).ok_or_else(no_data)?;
        let day = inst
            .last_day_before(now.saturating_add(1))
            .ok_or_else(no_data)?;
        let daily = inst.day_bar(day, now).ok_or_else(no_data)?;
        let prev_close = inst
            .last_day_before(day.start_ms)
            .and_then(|prev| inst.day_bar(prev, now))
            .map_or(daily.open, |b| b.close);
        // A spread of 2-6 ticks that varies by minute but is stable within it.
        let half_spread = 1 + (draw(inst.model.key(), Stream::Spread, minute.time, 0) % 3) as i64;
        let last = minute.close;
        let prev = inst.price(prev_close);
        let change = inst.price(last - prev_close);
        Ok(Quote {
            last: inst.price(last),
            bid: Some(inst.price((last - half_spread).max(1))),
            ask: Some(inst.price(last + half_spread)),
            open: inst.price(daily.open),
            high: inst.price(daily.high),
            low: inst.price(daily.low),
            prev_close: prev,
            volume: daily.volume as f64,
            change,
            change_percent: change / prev * 100.0,
        })
    }

    /// Precomputes the daily bars of every instrument up to `now_ms` and today's minute
    /// path. Optional and cheap (daily bars cost O(1) per day: well under a millisecond
    /// per instrument for 2019..now in release builds); requests fill any gap themselves.
    pub fn warm_up(&self, now_ms: i64) {
        let now = clamp_now(now_ms);
        for inst in &self.instruments {
            inst.warm_up(now);
        }
    }
}

fn clamp_now(now_ms: i64) -> i64 {
    now_ms.min(MAX_TIME_MS)
}

fn current_tick_bar(
    closed: &ClosedDays,
    inst: &Instrument,
    res: Resolution,
    now: i64,
) -> Option<TickBar> {
    match res.intraday_minutes() {
        Some(minutes) => {
            let src = IntradaySource {
                inst,
                bucket_minutes: i64::from(minutes),
                now_ms: now,
            };
            let slot = paging::BarSource::last_before(&src, i64::MAX)?;
            inst.intraday_bars(closed, &[slot], i64::from(minutes), now)
                .into_iter()
                .next()
        }
        None if res == Resolution::Day => {
            let day = inst.last_day_before(now.saturating_add(1))?;
            inst.day_bar(day, now)
        }
        None => inst.current_period_bar(res, now),
    }
}
