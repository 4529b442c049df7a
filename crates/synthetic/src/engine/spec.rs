//! Instrument configuration and its validation.

use super::error::MarketError;
use trading_market::calendar::{CalendarError, TradingCalendar};

/// Largest `price * pricescale` accepted for the initial price. With the chain bounded to
/// about 20x the initial price (plus intraday headroom), tick counts times `minmov` stay
/// far below 2^53, so every price converts to `f64` exactly-rounded and monotonically.
const MAX_PRICE_UNITS: f64 = 1e12;
/// Largest average daily volume; keeps monthly volume sums far below 2^53.
const MAX_DAILY_VOLUME: f64 = 1e12;
const MAX_ANNUAL_VOLATILITY: f64 = 5.0;

#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentSpec {
    pub symbol: String,
    /// TradingView session string: `24x7`, `HHMM-HHMM` or `HHMM-HHMM:DAYS`.
    pub session: String,
    /// IANA time zone name, such as `Etc/UTC`, `America/New_York` or `Asia/Kolkata`.
    pub timezone: String,
    /// Price tick is `minmov / pricescale`.
    pub pricescale: u32,
    pub minmov: u32,
    /// Price at the start of history.
    pub initial_price: f64,
    /// e.g. 0.30 for a stock, 0.6 for crypto, 0.08 for forex.
    pub annual_volatility: f64,
    pub avg_daily_volume: f64,
}

pub(crate) struct ValidSpec {
    pub calendar: TradingCalendar,
    /// Initial price in ticks (>= 1).
    pub initial_ticks: f64,
}

pub(crate) fn validate(spec: &InstrumentSpec) -> Result<ValidSpec, MarketError> {
    let invalid = |reason: &str| MarketError::InvalidSpec {
        symbol: spec.symbol.clone(),
        reason: reason.to_string(),
    };
    if spec.symbol.trim().is_empty() {
        return Err(invalid("symbol must not be empty"));
    }
    let calendar = TradingCalendar::new(&spec.session, &spec.timezone).map_err(|e| match e {
        CalendarError::Session { session, reason } => MarketError::InvalidSession {
            symbol: spec.symbol.clone(),
            session,
            reason,
        },
        CalendarError::Timezone(tz) => MarketError::UnsupportedTimezone {
            symbol: spec.symbol.clone(),
            tz,
        },
    })?;
    if spec.pricescale == 0 {
        return Err(invalid("pricescale must be positive"));
    }
    if spec.minmov == 0 {
        return Err(invalid("minmov must be positive"));
    }
    if !spec.initial_price.is_finite() || spec.initial_price <= 0.0 {
        return Err(invalid("initial_price must be a positive finite number"));
    }
    let initial_ticks = spec.initial_price * f64::from(spec.pricescale) / f64::from(spec.minmov);
    if initial_ticks < 1.0 {
        return Err(invalid(
            "initial_price must be at least one tick (minmov / pricescale)",
        ));
    }
    if spec.initial_price * f64::from(spec.pricescale) > MAX_PRICE_UNITS {
        return Err(invalid(
            "initial_price * pricescale must not exceed 1e12 (exact tick arithmetic)",
        ));
    }
    if !spec.annual_volatility.is_finite()
        || !(0.0..=MAX_ANNUAL_VOLATILITY).contains(&spec.annual_volatility)
    {
        return Err(invalid("annual_volatility must be finite and within 0..=5"));
    }
    if !spec.avg_daily_volume.is_finite()
        || !(0.0..=MAX_DAILY_VOLUME).contains(&spec.avg_daily_volume)
    {
        return Err(invalid(
            "avg_daily_volume must be finite and within 0..=1e12",
        ));
    }
    Ok(ValidSpec {
        calendar,
        initial_ticks,
    })
}
