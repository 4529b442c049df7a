//! What a source answers with: bars, a page of them for a `getBars`
//! request, and quotes. Plain values, below everything that makes or
//! encodes them.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    /// Unix milliseconds of the bar start (00:00 UTC of the trading date for D/W/M).
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// A TradingView `getBars` request. The caller validates `from_s <= to_s` and the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarQuery {
    /// Inclusive range start, unix seconds.
    pub from_s: i64,
    /// Exclusive range end, unix seconds.
    pub to_s: i64,
    /// When set, return the last `n` bars before `to_s`, ignoring `from_s`.
    pub count_back: Option<usize>,
    /// Maximum bars returned (the newest are kept).
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BarsPage {
    /// Ascending by time, without duplicates.
    pub bars: Vec<Bar>,
    /// True only when no bar exists before `to_s` at all.
    pub no_data: bool,
    /// Unix ms of the newest bar older than the first returned bar (or older than
    /// `from_s` when `bars` is empty); `None` when there is none.
    pub next_time: Option<i64>,
}

/// A quote: the last price and the current trading day. Bid and ask only
/// where the source has them (a store of trades and bars does not).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quote {
    pub last: f64,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub prev_close: f64,
    pub volume: f64,
    pub change: f64,
    pub change_percent: f64,
}
