//! Errors of the market module.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketError {
    /// The symbol is not configured.
    UnknownSymbol(String),
    /// The session string could not be parsed.
    InvalidSession {
        symbol: String,
        session: String,
        reason: String,
    },
    /// The time zone is not in the IANA time-zone database.
    UnsupportedTimezone { symbol: String, tz: String },
    /// A numeric field of the spec is out of range.
    InvalidSpec { symbol: String, reason: String },
    /// Two specs share a symbol.
    DuplicateSymbol(String),
    /// No bar exists yet at the requested time (before history start).
    NoData { symbol: String },
}

impl fmt::Display for MarketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MarketError::UnknownSymbol(symbol) => write!(f, "unknown symbol {symbol:?}"),
            MarketError::InvalidSession {
                symbol,
                session,
                reason,
            } => write!(f, "invalid session {session:?} for {symbol:?}: {reason}"),
            MarketError::UnsupportedTimezone { symbol, tz } => write!(
                f,
                "unknown timezone {tz:?} for {symbol:?} (expected an IANA name such as \
                 America/New_York, Europe/Berlin or Etc/UTC)"
            ),
            MarketError::InvalidSpec { symbol, reason } => {
                write!(f, "invalid instrument spec for {symbol:?}: {reason}")
            }
            MarketError::DuplicateSymbol(symbol) => {
                write!(f, "symbol {symbol:?} is configured more than once")
            }
            MarketError::NoData { symbol } => {
                write!(f, "no market data for {symbol:?} at the requested time")
            }
        }
    }
}

impl std::error::Error for MarketError {}
