//! The price model: a chain of daily (open, close) pairs, a Brownian bridge of one-minute
//! bars inside each trading day, and a per-second path inside a running minute.
//!
//! Prices are integers counted in ticks (`minmov / pricescale`), which makes every
//! aggregate exact: max, min, first and last of integers convert to the same `f64` as the
//! bar they came from, and integer volume sums cannot round.

use super::rng::{draw, normal, unit, Stream};

/// How far (in natural-log units) the daily chain may wander from the initial price.
/// About a factor of 20 either way: prices stay plausible over decades of history.
const MAX_LOG_DEVIATION: f64 = 3.0;
/// Extra headroom for intraday excursions beyond the chain's bounds.
const INTRADAY_LOG_HEADROOM: f64 = 2.0;
/// Years for a deviation from the initial price to halve under mean reversion.
const REVERSION_HALF_LIFE_YEARS: f64 = 3.0;
/// Intraday noise relative to the daily volatility; above 1 so that the day's high-low
/// range is realistic rather than just the straight line from open to close.
const INTRADAY_NOISE: f64 = 1.2;
/// Size of minute wicks relative to the per-minute volatility.
const WICK_SCALE: f64 = 0.8;
/// Overnight gap relative to the daily volatility for sessions with a break.
const GAP_SCALE: f64 = 0.25;

/// A bar in integer units: prices in ticks, volume in whole units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TickBar {
    pub time: i64,
    pub open: i64,
    pub high: i64,
    pub low: i64,
    pub close: i64,
    pub volume: u64,
}

impl TickBar {
    /// Extends `self` by a later bar of the same period.
    pub(crate) fn absorb(&mut self, later: &TickBar) {
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.volume = self.volume.saturating_add(later.volume);
    }
}

/// Open and close of one calendar date, in log ticks. Non-trading dates carry the
/// previous close forward unchanged so the chain can be indexed by date.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ChainDay {
    pub open_ln: f64,
    pub close_ln: f64,
}

#[derive(Debug)]
pub(crate) struct PathModel {
    key: u64,
    anchor_ln: f64,
    min_ln: f64,
    max_ln: f64,
    sigma_day: f64,
    reversion: f64,
    gap_sigma: f64,
    avg_daily_volume: f64,
    u_shaped_volume: bool,
}

impl PathModel {
    /// `initial_ticks` must be at least 1 and `days_per_week` at least 1 (validated by
    /// the caller).
    pub(crate) fn new(
        key: u64,
        initial_ticks: f64,
        annual_volatility: f64,
        avg_daily_volume: f64,
        days_per_week: u32,
        continuous: bool,
    ) -> PathModel {
        // 5 trading days a week gives ~261 days a year, 7 gives 365.25.
        let days_per_year = f64::from(days_per_week.max(1)) * 365.25 / 7.0;
        let sigma_day = annual_volatility / days_per_year.sqrt();
        let anchor_ln = initial_ticks.max(1.0).ln();
        PathModel {
            key,
            anchor_ln,
            min_ln: (anchor_ln - MAX_LOG_DEVIATION).max(0.0),
            max_ln: anchor_ln + MAX_LOG_DEVIATION,
            sigma_day,
            reversion: std::f64::consts::LN_2 / (REVERSION_HALF_LIFE_YEARS * days_per_year),
            gap_sigma: if continuous {
                0.0
            } else {
                GAP_SCALE * sigma_day
            },
            avg_daily_volume,
            u_shaped_volume: !continuous,
        }
    }

    pub(crate) fn key(&self) -> u64 {
        self.key
    }

    /// Log price the chain starts from, the day before history begins.
    pub(crate) fn initial_ln(&self) -> f64 {
        self.anchor_ln
    }

    /// Next element of the daily chain.
    pub(crate) fn chain_step(&self, prev_close_ln: f64, date: i64, trades: bool) -> ChainDay {
        if !trades {
            return ChainDay {
                open_ln: prev_close_ln,
                close_ln: prev_close_ln,
            };
        }
        let gap = self.gap_sigma * normal(draw(self.key, Stream::DayGap, date, 0));
        let open_ln = (prev_close_ln + gap).clamp(self.min_ln, self.max_ln);
        // Soft pull towards the initial price keeps multi-year paths plausible without
        // visibly distorting a single day.
        let pull = -self.reversion * (open_ln - self.anchor_ln);
        let shock = self.sigma_day * normal(draw(self.key, Stream::DayReturn, date, 0));
        let close_ln = (open_ln + pull + shock).clamp(self.min_ln, self.max_ln);
        ChainDay { open_ln, close_ln }
    }

    pub(crate) fn ticks(&self, ln: f64) -> i64 {
        let ln = ln.clamp(0.0, self.max_ln + INTRADAY_LOG_HEADROOM);
        (ln.exp().round() as i64).max(1)
    }

    /// The `n` one-minute bars of trading date `date`, from `open` to `close` (ticks).
    pub(crate) fn day_minutes(
        &self,
        date: i64,
        start_ms: i64,
        open: i64,
        close: i64,
        n: usize,
    ) -> Vec<TickBar> {
        let mut bars = Vec::with_capacity(n);
        if n == 0 {
            return bars;
        }
        let nf = n as f64;
        let step = INTRADAY_NOISE * self.sigma_day / nf.sqrt();

        // Brownian bridge: a random walk minus the straight line to its own endpoint is
        // pinned to zero at both ends, so adding it to the open->close line keeps the
        // day's open and close exactly those of the daily chain.
        let mut walk = Vec::with_capacity(n + 1);
        let mut w = 0.0;
        walk.push(w);
        for i in 0..n {
            w += normal(draw(self.key, Stream::Walk, date, i as i64));
            walk.push(w);
        }
        let total = w;
        let a = (open.max(1) as f64).ln();
        let b = (close.max(1) as f64).ln();

        let day_factor = 0.7 + 0.6 * unit(draw(self.key, Stream::DayVolume, date, 0));
        let per_minute = self.avg_daily_volume * day_factor / nf;

        let mut prev = open.max(1);
        for i in 0..n {
            let k = i + 1;
            let frac = k as f64 / nf;
            let c = if k == n {
                close.max(1)
            } else {
                self.ticks(a + frac * (b - a) + step * (walk[k] - frac * total))
            };
            let o = prev;
            prev = c;

            let wick_bits = draw(self.key, Stream::Wick, date, i as i64);
            let (up, down) = (
                (wick_bits >> 32) as f64 / 4_294_967_296.0,
                (wick_bits & 0xFFFF_FFFF) as f64 / 4_294_967_296.0,
            );
            let top = o.max(c);
            let bottom = o.min(c);
            // Squared uniforms make most wicks short and a few long.
            let high = top + (top as f64 * step * WICK_SCALE * up * up).round() as i64;
            let low =
                (bottom - (bottom as f64 * step * WICK_SCALE * down * down).round() as i64).max(1);

            let x = (i as f64 + 0.5) / nf;
            let profile = if self.u_shaped_volume {
                // Busy open and close, quiet lunch; normalised to a mean of 1.
                (1.0 + 2.0 * (2.0 * x - 1.0).powi(2)) / (5.0 / 3.0)
            } else {
                1.0
            };
            let noise = 0.5 + unit(draw(self.key, Stream::Volume, date, i as i64));
            let volume = ((per_minute * profile * noise).round() as u64).max(1);

            bars.push(TickBar {
                time: start_ms + i as i64 * 60_000,
                open: o,
                high,
                low,
                close: c,
                volume,
            });
        }
        bars
    }

    /// Minute `minute` of date `date` as observed at second `second` (0..=59) of that
    /// minute: the aggregate of its per-second path up to and including that second.
    /// At second 59 it equals `bar`.
    pub(crate) fn partial_minute(
        &self,
        date: i64,
        minute: usize,
        bar: &TickBar,
        second: usize,
    ) -> TickBar {
        let s = second.min(59);
        let (prices, volumes) = self.second_path(date, minute as i64, bar);
        let mut partial = TickBar {
            time: bar.time,
            open: bar.open,
            high: bar.open,
            low: bar.open,
            close: prices[s],
            volume: volumes[s],
        };
        for &p in &prices[..=s] {
            partial.high = partial.high.max(p);
            partial.low = partial.low.min(p);
        }
        partial
    }

    /// Price at each second and cumulative volume through each second of one minute.
    fn second_path(&self, date: i64, minute: i64, bar: &TickBar) -> ([i64; 60], [u64; 60]) {
        // Open at second 0, close at second 59, and the high and low touched at two
        // distinct interior seconds: the final bar is reproduced exactly at second 59.
        let bits = draw(self.key, Stream::SecondAnchor, date, minute);
        let high_at = 1 + (bits % 58) as usize;
        let mut low_at = 1 + ((bits >> 32) % 57) as usize;
        if low_at >= high_at {
            low_at += 1;
        }
        let mut anchors = [
            (0, bar.open),
            (high_at, bar.high),
            (low_at, bar.low),
            (59, bar.close),
        ];
        anchors.sort_unstable_by_key(|&(at, _)| at);

        let mut prices = [bar.close; 60];
        let noise_scale = (bar.high - bar.low) as f64 * 0.15;
        for pair in anchors.windows(2) {
            let ((s0, p0), (s1, p1)) = (pair[0], pair[1]);
            prices[s0] = p0;
            for (s, slot) in prices.iter_mut().enumerate().take(s1).skip(s0 + 1) {
                let frac = (s - s0) as f64 / (s1 - s0) as f64;
                let line = p0 as f64 + (p1 - p0) as f64 * frac;
                let noise = noise_scale
                    * normal(draw(
                        self.key,
                        Stream::SecondNoise,
                        date,
                        minute * 60 + s as i64,
                    ));
                *slot = ((line + noise).round() as i64).clamp(bar.low, bar.high);
            }
        }
        prices[59] = bar.close;

        let mut weights = [0.0f64; 60];
        let mut acc = 0.0;
        for (s, w) in weights.iter_mut().enumerate() {
            acc += 0.25
                + unit(draw(
                    self.key,
                    Stream::SecondVolume,
                    date,
                    minute * 60 + s as i64,
                ));
            *w = acc;
        }
        let mut volumes = [bar.volume; 60];
        for (v, w) in volumes.iter_mut().zip(weights.iter()).take(59) {
            // Floor of a monotone fraction: non-decreasing and never above the total,
            // and the last second is pinned to the exact minute volume.
            *v = ((bar.volume as f64 * (w / acc)).floor() as u64).min(bar.volume);
        }
        (prices, volumes)
    }
}
