//! Chart resolutions in TradingView notation.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Min1,
    Min5,
    Min15,
    Min30,
    Min60,
    Min240,
    Day,
    Week,
    Month,
}

impl Resolution {
    pub const ALL: [Resolution; 9] = [
        Resolution::Min1,
        Resolution::Min5,
        Resolution::Min15,
        Resolution::Min30,
        Resolution::Min60,
        Resolution::Min240,
        Resolution::Day,
        Resolution::Week,
        Resolution::Month,
    ];

    /// Parses the canonical names and the `1D`/`1W`/`1M` aliases. Case-sensitive like
    /// TradingView, where `1M` is a month and minutes are bare numbers.
    pub fn parse(s: &str) -> Option<Resolution> {
        Some(match s {
            "1" => Resolution::Min1,
            "5" => Resolution::Min5,
            "15" => Resolution::Min15,
            "30" => Resolution::Min30,
            "60" => Resolution::Min60,
            "240" => Resolution::Min240,
            "D" | "1D" => Resolution::Day,
            "W" | "1W" => Resolution::Week,
            "M" | "1M" => Resolution::Month,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Min1 => "1",
            Resolution::Min5 => "5",
            Resolution::Min15 => "15",
            Resolution::Min30 => "30",
            Resolution::Min60 => "60",
            Resolution::Min240 => "240",
            Resolution::Day => "D",
            Resolution::Week => "W",
            Resolution::Month => "M",
        }
    }

    /// Bar length in minutes for intraday resolutions; `None` for D, W and M.
    pub fn intraday_minutes(self) -> Option<u32> {
        match self {
            Resolution::Min1 => Some(1),
            Resolution::Min5 => Some(5),
            Resolution::Min15 => Some(15),
            Resolution::Min30 => Some(30),
            Resolution::Min60 => Some(60),
            Resolution::Min240 => Some(240),
            Resolution::Day | Resolution::Week | Resolution::Month => None,
        }
    }

    pub fn is_intraday(self) -> bool {
        self.intraday_minutes().is_some()
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned by `Resolution::from_str` for names outside the supported set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseResolutionError {
    pub input: String,
}

impl fmt::Display for ParseResolutionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unsupported resolution {:?} (supported: 1, 5, 15, 30, 60, 240, D, W, M; \
             aliases 1D, 1W, 1M)",
            self.input
        )
    }
}

impl std::error::Error for ParseResolutionError {}

impl FromStr for Resolution {
    type Err = ParseResolutionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Resolution::parse(s).ok_or_else(|| ParseResolutionError {
            input: s.to_string(),
        })
    }
}
