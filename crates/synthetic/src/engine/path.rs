//! The price model, top-down: a chain of daily (open, close) pairs; each trading day's
//! complete bar drawn from its chain link and its own random stream (high and low from
//! the closed-form law of a Brownian bridge's extremes, volume around the average); the
//! day's one-minute bars generated inside that bar; and a per-second path inside a
//! running minute, generated inside the minute's bar the same way.
//!
//! Daily bars therefore cost O(1) per day, and the minutes of a day aggregate to its
//! daily bar by construction rather than the daily bar being computed from them.
//!
//! Prices are integers counted in ticks (`minmov / pricescale`), which makes every
//! aggregate exact: max, min, first and last of integers convert to the same `f64` as the
//! bar they came from, and integer volume sums cannot round.

use super::rng::{draw, normal, unit, Draws, Stream};

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
/// Log-scale spread of the day-to-day volatility regime (quiet versus busy days).
const VOL_REGIME: f64 = 0.25;

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

    /// Volatility of the session of `date` (log units over the whole session) and the
    /// activity factor it implies. Days differ in how busy they are; a busy day has both
    /// a wider range and more volume.
    fn session_sigma(&self, date: i64) -> (f64, f64) {
        let regime = (VOL_REGIME * normal(draw(self.key, Stream::DayVolatility, date, 0))).exp();
        (INTRADAY_NOISE * self.sigma_day * regime, regime)
    }

    /// The complete bar of trading date `date` from the chain's `open` and `close`
    /// (ticks), drawn without generating its minutes; `time` is left at 0 for the caller.
    pub(crate) fn day_bar(&self, date: i64, open: i64, close: i64) -> TickBar {
        let (open, close) = (open.max(1), close.max(1));
        let (sigma, regime) = self.session_sigma(date);
        let (a, b) = ((open as f64).ln(), (close as f64).ln());
        let gap = (b - a).abs();
        let up = bridge_excursion(gap, sigma, draw(self.key, Stream::DayHigh, date, 0));
        let down = bridge_excursion(gap, sigma, draw(self.key, Stream::DayLow, date, 0));
        let high = self.ticks(a.max(b) + up).max(open.max(close));
        let low = self.ticks(a.min(b) - down).clamp(1, open.min(close));
        let activity = 0.7 + 0.6 * unit(draw(self.key, Stream::DayVolume, date, 0));
        // The square root damps the link to the range: volume varies less than range.
        let volume = (self.avg_daily_volume * activity * regime.sqrt()).round() as u64;
        TickBar {
            time: 0,
            open,
            high,
            low,
            close,
            volume,
        }
    }

    /// Where the day's high and low are touched, as minute indices. With three or more
    /// minutes they are distinct interior minute boundaries (the minute starting there
    /// opens at the extreme), so the bridge can be pinned to them; with two minutes
    /// they are the two minutes; with one minute both are minute 0.
    fn extreme_minutes(&self, date: i64, day: &TickBar, n: usize) -> (usize, usize) {
        let hi_bits = draw(self.key, Stream::ExtremeAt, date, 0);
        let lo_bits = draw(self.key, Stream::ExtremeAt, date, 1);
        match n {
            0 | 1 => (0, 0),
            2 => {
                let hi = extreme_slot(hi_bits, day.high - day.open, day.high - day.close, 2);
                (hi, 1 - hi)
            }
            _ => {
                let slots = n - 1;
                let hi =
                    1 + extreme_slot(hi_bits, day.high - day.open, day.high - day.close, slots);
                let mut lo =
                    1 + extreme_slot(lo_bits, day.open - day.low, day.close - day.low, slots);
                if lo == hi {
                    lo = if hi < slots { hi + 1 } else { hi - 1 };
                }
                (hi, lo)
            }
        }
    }

    /// The `n` one-minute bars of trading date `date`, generated inside its complete bar
    /// `day`: they aggregate to exactly `day` (open, high, low, close and volume).
    pub(crate) fn day_minutes(
        &self,
        date: i64,
        start_ms: i64,
        day: &TickBar,
        n: usize,
    ) -> Vec<TickBar> {
        let mut bars = Vec::with_capacity(n);
        if n == 0 {
            return bars;
        }
        let (high, low) = (day.high, day.low);
        let (hi_at, lo_at) = self.extreme_minutes(date, day, n);
        let (sigma, _) = self.session_sigma(date);
        // Per-minute move in ticks: the session's volatility spread over its minutes, at
        // the day's price level (a day is too short for log and linear to differ).
        let step = sigma / (n as f64).sqrt() * (high + low) as f64 / 2.0;

        // Minute-boundary prices: Brownian-bridge segments between the pinned anchors
        // (open, the two extremes, close, in time order), so a segment's random walk
        // minus its own chord is zero at both anchors.
        let mut walk = Vec::with_capacity(n + 1);
        let mut w = 0.0;
        walk.push(w);
        let steps = Draws::new(self.key, Stream::Walk, date);
        for i in 0..n {
            w += normal(steps.at(i as i64));
            walk.push(w);
        }
        let mut anchors = [(0, day.open), (hi_at, high), (lo_at, low), (n, day.close)];
        let pinned = if n >= 3 { 4 } else { 2 };
        if pinned == 2 {
            anchors[1] = anchors[3];
        }
        let anchors = &mut anchors[..pinned];
        anchors.sort_unstable_by_key(|&(at, _)| at);
        let mut points = vec![day.close; n + 1];
        for pair in anchors.windows(2) {
            let ((k0, p0), (k1, p1)) = (pair[0], pair[1]);
            points[k0] = p0;
            let span = (k1 - k0) as f64;
            for k in k0 + 1..k1 {
                let frac = (k - k0) as f64 / span;
                let line = p0 as f64 + (p1 - p0) as f64 * frac;
                let bridge = walk[k] - walk[k0] - frac * (walk[k1] - walk[k0]);
                points[k] = fold_into(line + step * bridge, low, high);
            }
        }
        points[n] = day.close;

        let weights = self.minute_weights(date, n);
        let total_weight = weights.last().copied().unwrap_or(1.0);
        // Every minute trades at least one unit when the day has enough volume; the rest
        // is split by cumulative rounding, so the minutes sum to the day exactly.
        let base = u64::from(day.volume >= n as u64);
        let spread = day.volume - base * n as u64;
        let mut allocated = 0u64;
        let wicks = Draws::new(self.key, Stream::Wick, date);

        for i in 0..n {
            let (o, c) = (points[i], points[i + 1]);
            let wick_bits = wicks.at(i as i64);
            let (up, down) = (
                (wick_bits >> 32) as f64 / 4_294_967_296.0,
                (wick_bits & 0xFFFF_FFFF) as f64 / 4_294_967_296.0,
            );
            // Squared uniforms make most wicks short and a few long.
            let mut bar_high = (o.max(c) + round_nonneg(step * WICK_SCALE * up * up)).min(high);
            let mut bar_low = (o.min(c) - round_nonneg(step * WICK_SCALE * down * down)).max(low);
            if i == hi_at {
                bar_high = high;
            }
            if i == lo_at {
                bar_low = low;
            }

            let through = if i + 1 == n {
                spread
            } else {
                // Truncation is the floor of a non-negative value.
                ((spread as f64 * (weights[i] / total_weight)) as u64).min(spread)
            };
            let volume = base + through.saturating_sub(allocated);
            allocated = allocated.max(through);

            bars.push(TickBar {
                time: start_ms + i as i64 * 60_000,
                open: o,
                high: bar_high,
                low: bar_low,
                close: c,
                volume,
            });
        }
        bars
    }

    /// Cumulative volume weights of the `n` minutes of `date`: the intraday profile times
    /// per-minute noise. Strictly increasing, so cumulative rounding never goes back.
    fn minute_weights(&self, date: i64, n: usize) -> Vec<f64> {
        let nf = n as f64;
        let noise = Draws::new(self.key, Stream::Volume, date);
        let mut acc = 0.0;
        (0..n)
            .map(|i| {
                let x = (i as f64 + 0.5) / nf;
                let profile = if self.u_shaped_volume {
                    // Busy open and close, quiet lunch; normalised to a mean of 1.
                    (1.0 + 2.0 * (2.0 * x - 1.0).powi(2)) / (5.0 / 3.0)
                } else {
                    1.0
                };
                acc += profile * (0.5 + unit(noise.at(i as i64)));
                acc
            })
            .collect()
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

/// Excursion of a Brownian bridge with variance `sigma^2` beyond the higher of its two
/// endpoints, which lie `gap` apart (log units). Its law is known in closed form,
/// `P(M > m) = exp(-2 m (m + gap) / sigma^2)`, so it is sampled by inversion: one draw
/// gives a day's high (or low) with the range a full minute path would have produced.
fn bridge_excursion(gap: f64, sigma: f64, bits: u64) -> f64 {
    // 1 - unit is in (0, 1], so the logarithm is finite.
    let e = -(1.0 - unit(bits)).ln();
    0.5 * ((gap * gap + 2.0 * sigma * sigma * e).sqrt() - gap)
}

/// Slot (`0..slots`) of a day's extreme that lies `to_open` ticks from the open and
/// `to_close` ticks from the close. Extremes cluster near the session's ends (the
/// arcsine law of Brownian extremes, and real markets' busy open and close), and more
/// often near the end whose price is closer: an up day tends to make its low early and
/// its high late.
fn extreme_slot(bits: u64, to_open: i64, to_close: i64, slots: usize) -> usize {
    let (to_open, to_close) = (to_open.max(0) as f64, to_close.max(0) as f64);
    let near_open_p = (to_close + 1.0) / (to_open + to_close + 2.0);
    let near_open = ((bits >> 32) as f64 / 4_294_967_296.0) < near_open_p;
    let u = (bits & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
    // Folded arcsine: distance from the nearer end, dense near 0, below one half.
    let t = (std::f64::consts::FRAC_PI_4 * u).sin().powi(2);
    let f = if near_open { t } else { 1.0 - t };
    ((f * slots as f64) as usize).min(slots.saturating_sub(1))
}

/// `v` reflected back into `[low, high]` and rounded to a tick. Reflection rather than
/// a bare clamp keeps a bridge that overshoots the day's range from sticking to it.
fn fold_into(v: f64, low: i64, high: i64) -> i64 {
    let (lo, hi) = (low as f64, high as f64);
    // Cheap common cases first: inside, or overshooting by less than the range.
    let folded = if (lo..=hi).contains(&v) {
        v
    } else if v > hi && v <= 2.0 * hi - lo {
        2.0 * hi - v
    } else if v < lo && v >= 2.0 * lo - hi {
        2.0 * lo - v
    } else if hi > lo && v.is_finite() {
        let width = hi - lo;
        let x = (v - lo).rem_euclid(2.0 * width);
        lo + if x > width { 2.0 * width - x } else { x }
    } else {
        lo
    };
    round_nonneg(folded).max(low).min(high)
}

/// Nearest integer of a non-negative value. `f64::round` is a libm call on the baseline
/// x86-64 target, and a day's path rounds a few thousand times.
fn round_nonneg(x: f64) -> i64 {
    (x + 0.5) as i64
}
