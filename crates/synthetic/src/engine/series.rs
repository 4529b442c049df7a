//! Per-instrument bar series: trading-day calendar, caches, and the bar sources that the
//! paging code walks.
//!
//! Caches only ever memoise pure functions of (seed, spec, date), so a cached value is
//! valid for every `now`; "as of now" filtering is applied on top at read time. Shared
//! state is published as immutable `Arc` snapshots: readers take a read lock just long
//! enough to clone the `Arc`, and extensions are computed outside the `RwLock`, with a
//! separate mutex so that concurrent requests do not duplicate the work.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::closed_days::{self, Chunk, ChunkKey, ClosedDays};
use super::path::{ChainDay, PathModel, TickBar};
use super::rng::{hash_str, mix64};
use super::spec::{InstrumentSpec, ValidSpec};
use super::Bar;
use trading_market::calendar::civil::{DAY_MS, MINUTE_MS};
use trading_market::calendar::{
    period_end_date, period_key, period_start_date, Resolution, TradingCalendar, TradingDay,
};
use trading_market::paging::BarSource;

/// 2019-01-01T00:00:00Z.
pub(crate) const HISTORY_START_MS: i64 = 1_546_300_800_000;
pub(crate) const HISTORY_START_DAY: i64 = HISTORY_START_MS / DAY_MS;
/// 2100-01-01T00:00:00Z: `now` is clamped here so absurd clocks cannot make the caches
/// grow without bound.
pub(crate) const MAX_TIME_MS: i64 = 4_102_444_800_000;
/// Minute paths kept per instrument; the current day is almost always among them.
const PATH_CACHE_DAYS: usize = 12;
/// The chain is cheap, so extend it ahead in chunks to avoid a copy per new day.
const CHAIN_CHUNK_DAYS: i64 = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded value is replaced wholesale, never left half-updated, so a panic in
    // another thread cannot leave it inconsistent: poisoning carries no information.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn snapshot<T>(l: &RwLock<Arc<T>>) -> Arc<T> {
    Arc::clone(&l.read().unwrap_or_else(PoisonError::into_inner))
}

fn publish<T>(l: &RwLock<Arc<T>>, value: Arc<T>) {
    *l.write().unwrap_or_else(PoisonError::into_inner) = value;
}

/// The complete minute path of one trading day.
#[derive(Debug)]
pub(crate) struct DayPath {
    pub day: TradingDay,
    pub minutes: Vec<TickBar>,
}

impl DayPath {
    /// The complete bars of `base` minutes of the day, aligned to its start: what
    /// `aggregate` returns for each of them once the session has ended.
    pub(crate) fn complete_buckets(&self, base: usize) -> impl Iterator<Item = TickBar> + '_ {
        self.minutes.chunks(base.max(1)).filter_map(|minutes| {
            let (head, tail) = minutes.split_first()?;
            let mut acc = *head;
            for bar in tail {
                acc.absorb(bar);
            }
            Some(acc)
        })
    }

    /// Aggregate of minutes `[m0, m1)` as of `now_ms`: minutes not yet started are left
    /// out and the running one is replaced by its partial state at the current second.
    pub(crate) fn aggregate(
        &self,
        model: &PathModel,
        m0: usize,
        m1: usize,
        now_ms: i64,
    ) -> Option<TickBar> {
        if now_ms < self.day.start_ms {
            return None;
        }
        let started = ((now_ms - self.day.start_ms) / MINUTE_MS).saturating_add(1);
        let started = usize::try_from(started).unwrap_or(usize::MAX);
        let end = m1.min(started).min(self.minutes.len());
        if m0 >= end {
            return None;
        }
        let mut acc = self.minute_as_of(model, m0, now_ms)?;
        for m in m0 + 1..end {
            acc.absorb(&self.minute_as_of(model, m, now_ms)?);
        }
        Some(acc)
    }

    fn minute_as_of(&self, model: &PathModel, m: usize, now_ms: i64) -> Option<TickBar> {
        let bar = self.minutes.get(m)?;
        if now_ms >= bar.time + MINUTE_MS {
            return Some(*bar);
        }
        let second = usize::try_from((now_ms - bar.time) / 1_000).unwrap_or(0);
        Some(model.partial_minute(self.day.date, m, bar, second))
    }
}

/// Completed daily bars for every trading day with date `<= through`.
#[derive(Debug)]
pub(crate) struct DayCache {
    through: i64,
    bars: Vec<TickBar>,
}

#[derive(Debug)]
pub(crate) struct Instrument {
    /// Position in the market: this instrument's part of the closed-days cache.
    id: usize,
    pub spec: InstrumentSpec,
    calendar: TradingCalendar,
    pub model: PathModel,
    /// Indexed by `date - HISTORY_START_DAY`.
    chain: RwLock<Arc<Vec<ChainDay>>>,
    chain_extend: Mutex<()>,
    days: RwLock<Arc<DayCache>>,
    days_extend: Mutex<()>,
    /// Most recently used first.
    paths: Mutex<VecDeque<Arc<DayPath>>>,
    /// Held while generating chunks of closed days, so that concurrent cold requests
    /// for the same range wait for one another instead of each generating it.
    closed_extend: Mutex<()>,
}

impl Instrument {
    pub(crate) fn new(id: usize, seed: u64, spec: InstrumentSpec, valid: ValidSpec) -> Instrument {
        let key = mix64(mix64(seed) ^ hash_str(&spec.symbol));
        let model = PathModel::new(
            key,
            valid.initial_ticks,
            spec.annual_volatility,
            spec.avg_daily_volume,
            valid.calendar.session().days_per_week(),
            valid.calendar.session().is_continuous(),
        );
        Instrument {
            id,
            spec,
            calendar: valid.calendar,
            model,
            chain: RwLock::new(Arc::new(Vec::new())),
            chain_extend: Mutex::new(()),
            days: RwLock::new(Arc::new(DayCache {
                through: HISTORY_START_DAY - 1,
                bars: Vec::new(),
            })),
            days_extend: Mutex::new(()),
            paths: Mutex::new(VecDeque::with_capacity(PATH_CACHE_DAYS)),
            closed_extend: Mutex::new(()),
        }
    }

    pub(crate) fn price(&self, ticks: i64) -> f64 {
        ticks as f64 * f64::from(self.spec.minmov) / f64::from(self.spec.pricescale)
    }

    pub(crate) fn to_bar(&self, b: &TickBar) -> Bar {
        Bar {
            time: b.time,
            open: self.price(b.open),
            high: self.price(b.high),
            low: self.price(b.low),
            close: self.price(b.close),
            volume: b.volume as f64,
        }
    }

    /// The trading day of `date`, if it is one and lies entirely inside history.
    pub(crate) fn day(&self, date: i64) -> Option<TradingDay> {
        if !(HISTORY_START_DAY..=MAX_TIME_MS / DAY_MS + 8).contains(&date) {
            return None;
        }
        self.calendar
            .day(date)
            .filter(|day| day.start_ms >= HISTORY_START_MS)
    }

    /// The newest trading day whose session starts strictly before `bound_ms`.
    pub(crate) fn last_day_before(&self, bound_ms: i64) -> Option<TradingDay> {
        if bound_ms <= HISTORY_START_MS {
            return None;
        }
        // Days that start before history are not in it, and neither is any
        // earlier one.
        self.calendar
            .last_day_starting_before(bound_ms.min(MAX_TIME_MS + DAY_MS))
            .filter(|day| day.start_ms >= HISTORY_START_MS)
    }

    /// Whether the session is open at `now_ms`.
    pub(crate) fn is_open(&self, now_ms: i64) -> bool {
        self.last_day_before(now_ms.saturating_add(1))
            .is_some_and(|d| now_ms < d.end_ms())
    }

    fn chain_through(&self, date: i64) -> Arc<Vec<ChainDay>> {
        let needed = usize::try_from(date - HISTORY_START_DAY + 1).unwrap_or(0);
        let current = snapshot(&self.chain);
        if current.len() >= needed {
            return current;
        }
        let _guard = lock(&self.chain_extend);
        let current = snapshot(&self.chain);
        if current.len() >= needed {
            return current;
        }
        let target = date + CHAIN_CHUNK_DAYS;
        let mut chain =
            Vec::with_capacity(usize::try_from(target - HISTORY_START_DAY + 1).unwrap_or(0));
        chain.extend_from_slice(&current);
        let mut prev = chain.last().map_or(self.model.initial_ln(), |c| c.close_ln);
        let mut d = HISTORY_START_DAY + chain.len() as i64;
        while d <= target {
            let day = self
                .model
                .chain_step(prev, d, self.calendar.session().trades_on(d));
            prev = day.close_ln;
            chain.push(day);
            d += 1;
        }
        let chain = Arc::new(chain);
        publish(&self.chain, Arc::clone(&chain));
        chain
    }

    /// Complete bar of `day`, stamped; O(1) given a chain that reaches its date.
    fn full_day_bar(&self, day: TradingDay, chain: &[ChainDay]) -> TickBar {
        let link = usize::try_from(day.date - HISTORY_START_DAY)
            .ok()
            .and_then(|i| chain.get(i))
            .copied()
            .unwrap_or(ChainDay {
                open_ln: self.model.initial_ln(),
                close_ln: self.model.initial_ln(),
            });
        let bar = self.model.day_bar(
            day.date,
            self.model.ticks(link.open_ln),
            self.model.ticks(link.close_ln),
        );
        TickBar {
            time: day.stamp(),
            ..bar
        }
    }

    fn compute_path(&self, day: TradingDay, chain: &[ChainDay]) -> DayPath {
        let bar = self.full_day_bar(day, chain);
        let minutes = self.model.day_minutes(
            day.date,
            day.start_ms,
            &bar,
            usize::try_from(day.minutes).unwrap_or(0),
        );
        DayPath { day, minutes }
    }

    /// Minute path of `day`, through a small LRU cache.
    pub(crate) fn day_path(&self, day: TradingDay) -> Arc<DayPath> {
        {
            let mut paths = lock(&self.paths);
            if let Some(i) = paths.iter().position(|p| p.day.date == day.date) {
                if let Some(path) = paths.remove(i) {
                    paths.push_front(Arc::clone(&path));
                    return path;
                }
            }
        }
        let chain = self.chain_through(day.date);
        let path = Arc::new(self.compute_path(day, &chain));
        let mut paths = lock(&self.paths);
        if !paths.iter().any(|p| p.day.date == day.date) {
            paths.push_front(Arc::clone(&path));
            paths.truncate(PATH_CACHE_DAYS);
        }
        path
    }

    /// Daily-bar cache covering every trading day with date `<= through`. Callers only
    /// ask for days that have completed as of their `now`.
    fn days_through(&self, through: i64) -> Arc<DayCache> {
        let current = snapshot(&self.days);
        if current.through >= through {
            return current;
        }
        let _guard = lock(&self.days_extend);
        let current = snapshot(&self.days);
        if current.through >= through {
            return current;
        }
        let chain = self.chain_through(through);
        let mut bars = Vec::with_capacity(
            current.bars.len() + usize::try_from(through - current.through).unwrap_or(0),
        );
        bars.extend_from_slice(&current.bars);
        // O(1) per day: a cold fill of decades takes about a millisecond, so holding
        // the extension mutex meanwhile only spares concurrent callers duplicate work.
        bars.extend(
            (current.through + 1..=through)
                .filter_map(|date| self.day(date))
                .map(|day| self.full_day_bar(day, &chain)),
        );
        let cache = Arc::new(DayCache { through, bars });
        publish(&self.days, Arc::clone(&cache));
        cache
    }

    /// Daily bar of `day` as of `now_ms`. While its session runs it is the aggregate of
    /// the minute path so far, which converges to the complete bar at the session end.
    pub(crate) fn day_bar(&self, day: TradingDay, now_ms: i64) -> Option<TickBar> {
        if day.end_ms() <= now_ms {
            return Some(self.completed_day_bar(day));
        }
        let path = self.day_path(day);
        path.aggregate(&self.model, 0, path.minutes.len(), now_ms)
            .map(|bar| TickBar {
                time: day.stamp(),
                ..bar
            })
    }

    fn cached_day_bar(&self, day: TradingDay) -> Option<TickBar> {
        let cache = snapshot(&self.days);
        if cache.through < day.date {
            return None;
        }
        let i = cache
            .bars
            .binary_search_by_key(&day.stamp(), |b| b.time)
            .ok()?;
        cache.bars.get(i).copied()
    }

    /// Complete daily bar of `day`, from the cache or drawn directly.
    fn completed_day_bar(&self, day: TradingDay) -> TickBar {
        self.cached_day_bar(day)
            .unwrap_or_else(|| self.full_day_bar(day, &self.chain_through(day.date)))
    }

    /// Daily bars existing as of `now_ms` whose stamp is `< stamp_lt`.
    pub(crate) fn daily_view(&self, now_ms: i64, stamp_lt: i64) -> DailyView {
        let Some(last) = self.last_day_before(now_ms.saturating_add(1)) else {
            return DailyView {
                cache: snapshot(&self.days),
                len: 0,
                partial: None,
            };
        };
        let (complete_through, running) = if last.end_ms() <= now_ms {
            (last.date, None)
        } else {
            (last.date - 1, Some(last))
        };
        let stamp_limit = stamp_lt.saturating_sub(1).div_euclid(DAY_MS);
        let through = complete_through.min(stamp_limit).max(HISTORY_START_DAY - 1);
        let cache = self.days_through(through);
        let len = cache.bars.partition_point(|b| b.time <= through * DAY_MS);
        let partial = running
            .filter(|d| d.stamp() < stamp_lt)
            .and_then(|d| self.day_bar(d, now_ms));
        DailyView {
            cache,
            len,
            partial,
        }
    }

    /// Weekly or monthly bar containing the newest trading day as of `now_ms`.
    pub(crate) fn current_period_bar(&self, res: Resolution, now_ms: i64) -> Option<TickBar> {
        let last = self.last_day_before(now_ms.saturating_add(1))?;
        // Completed days are drawn straight from the chain (O(1) each) rather than
        // through the daily cache, which a far-future clock could make costly to extend.
        let chain = self.chain_through(last.date);
        let mut acc: Option<TickBar> = None;
        for date in period_start_date(res, last.date)..=last.date {
            let Some(day) = self.day(date) else { continue };
            let bar = if day.end_ms() <= now_ms {
                Some(self.full_day_bar(day, &chain))
            } else {
                self.day_bar(day, now_ms)
            };
            let Some(bar) = bar else { continue };
            match acc.as_mut() {
                Some(a) => a.absorb(&bar),
                None => acc = Some(bar),
            }
        }
        acc
    }

    /// Bars of the given intraday slots (ascending), as of `now_ms`. Closed days come
    /// from `closed` when the width has a base there, the others from their minute path.
    pub(crate) fn intraday_bars(
        &self,
        closed: &ClosedDays,
        slots: &[Slot],
        bucket_minutes: i64,
        now_ms: i64,
    ) -> Vec<TickBar> {
        let width = usize::try_from(bucket_minutes).unwrap_or(1);
        let base = closed_days::base_minutes(bucket_minutes);
        let mut out = Vec::with_capacity(slots.len());
        let mut chunk: Option<Arc<Chunk>> = None;
        for group in slots.chunk_by(|a, b| a.day.date == b.day.date) {
            let day = group[0].day;
            if let Some(base) = base.filter(|_| day.end_ms() <= now_ms) {
                let held = chunk.take().filter(|c| c.day(day.date).is_some());
                let current =
                    held.unwrap_or_else(|| self.closed_chunk(closed, base, day.date, now_ms));
                // A slot's day always has minutes: should the chunk hold none for it,
                // the two disagree about the calendar and the minute path decides.
                if let Some(bars) = current.day(day.date).filter(|b| !b.is_empty()) {
                    out.extend(group.iter().filter_map(|slot| {
                        closed_days::bucket(bars, base, bucket_minutes, slot.bucket)
                    }));
                    chunk = Some(current);
                    continue;
                }
            }
            let path = self.day_path(day);
            for slot in group {
                let m0 = usize::try_from(slot.bucket).unwrap_or(0) * width;
                if let Some(bar) = path.aggregate(&self.model, m0, m0 + width, now_ms) {
                    out.push(bar);
                }
            }
        }
        out
    }

    /// The newest trading date whose session has ended by `now_ms` (or an earlier date
    /// that is not a trading day); before history, the day before it.
    fn last_closed_date(&self, now_ms: i64) -> i64 {
        match self.last_day_before(now_ms.saturating_add(1)) {
            Some(last) if last.end_ms() <= now_ms => last.date,
            Some(last) => last.date - 1,
            None => HISTORY_START_DAY - 1,
        }
    }

    /// The chunk of closed days holding `date` at `base` minutes, generated as far as
    /// the days closed by `now_ms` (and at least through `date`) if it does not hold
    /// `date` yet.
    fn closed_chunk(&self, closed: &ClosedDays, base: i64, date: i64, now_ms: i64) -> Arc<Chunk> {
        let key = ChunkKey::of(self.id, base, date);
        let held = closed.get(key);
        if let Some(chunk) = held.as_ref().filter(|c| c.through() >= date) {
            return Arc::clone(chunk);
        }
        let _guard = lock(&self.closed_extend);
        let held = closed.get(key);
        if let Some(chunk) = held.as_ref().filter(|c| c.through() >= date) {
            return Arc::clone(chunk);
        }
        // The days after `date` that have closed are generated now too, so a request
        // walking forward through the chunk generates it once.
        let through = self.last_closed_date(now_ms).max(date).min(key.last_date());
        let chain = self.chain_through(through);
        let width = usize::try_from(base).unwrap_or(1);
        let chunk = Arc::new(Chunk::extend(key, held.as_deref(), through, |d, out| {
            if let Some(day) = self.day(d) {
                out.extend(self.compute_path(day, &chain).complete_buckets(width));
            }
        }));
        closed.insert(key, Arc::clone(&chunk));
        chunk
    }

    /// Precomputes the daily cache (O(days), about a millisecond for a decade) and
    /// today's minute path. Optional: every request computes what it lacks cheaply.
    pub(crate) fn warm_up(&self, now_ms: i64) {
        let view = self.daily_view(now_ms, i64::MAX);
        drop(view);
        if let Some(day) = self.last_day_before(now_ms.saturating_add(1)) {
            self.day_path(day);
        }
    }
}

/// Daily bars as of some `now`: a prefix of the cache plus the running day, if any.
pub(crate) struct DailyView {
    cache: Arc<DayCache>,
    len: usize,
    partial: Option<TickBar>,
}

impl DailyView {
    pub(crate) fn get(&self, i: usize) -> Option<TickBar> {
        if i < self.len {
            self.cache.bars.get(i).copied()
        } else if i == self.len {
            self.partial
        } else {
            None
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = TickBar> + '_ {
        self.cache.bars[..self.len.min(self.cache.bars.len())]
            .iter()
            .copied()
            .chain(self.partial)
    }
}

impl BarSource for DailyView {
    type Pos = usize;

    fn last_before(&self, t_ms: i64) -> Option<usize> {
        if self.partial.is_some_and(|p| p.time < t_ms) {
            return Some(self.len);
        }
        let complete = &self.cache.bars[..self.len.min(self.cache.bars.len())];
        complete.partition_point(|b| b.time < t_ms).checked_sub(1)
    }

    fn prev(&self, pos: usize) -> Option<usize> {
        pos.checked_sub(1)
    }

    fn time(&self, pos: usize) -> i64 {
        self.get(pos).map_or(i64::MIN, |b| b.time)
    }
}

/// One intraday bar position: bucket `bucket` of a trading day.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub day: TradingDay,
    pub bucket: i64,
}

/// Intraday buckets existing as of `now_ms`, aligned to each session's start.
pub(crate) struct IntradaySource<'a> {
    pub inst: &'a Instrument,
    pub bucket_minutes: i64,
    pub now_ms: i64,
}

impl BarSource for IntradaySource<'_> {
    type Pos = Slot;

    fn last_before(&self, t_ms: i64) -> Option<Slot> {
        // A bucket exists once it has started, i.e. its start is <= now.
        let bound = t_ms.min(self.now_ms.saturating_add(1));
        let day = self.inst.last_day_before(bound)?;
        let width = self.bucket_minutes * MINUTE_MS;
        let last_bucket = (day.minutes - 1) / self.bucket_minutes;
        let bucket = ((bound - 1 - day.start_ms) / width).min(last_bucket);
        Some(Slot { day, bucket })
    }

    fn prev(&self, slot: Slot) -> Option<Slot> {
        if slot.bucket > 0 {
            Some(Slot {
                bucket: slot.bucket - 1,
                ..slot
            })
        } else {
            self.last_before(slot.day.start_ms)
        }
    }

    fn time(&self, slot: Slot) -> i64 {
        slot.day.start_ms + slot.bucket * self.bucket_minutes * MINUTE_MS
    }
}

/// Exclusive stamp bound that covers every trading day of every week or month whose bar
/// is stamped before `to_ms`.
pub(crate) fn period_end_ms(res: Resolution, to_ms: i64) -> i64 {
    if to_ms <= HISTORY_START_MS {
        return to_ms;
    }
    let last_date = (to_ms.min(MAX_TIME_MS + 62 * DAY_MS) - 1).div_euclid(DAY_MS);
    period_end_date(res, last_date) * DAY_MS
}

/// Groups ascending daily bars into week or month bars stamped by their first day.
pub(crate) fn aggregate_periods(
    res: Resolution,
    days: impl Iterator<Item = TickBar>,
) -> Vec<TickBar> {
    let mut out: Vec<TickBar> = Vec::new();
    let mut current_key = None;
    for bar in days {
        let key = period_key(res, bar.time.div_euclid(DAY_MS));
        match out.last_mut() {
            Some(last) if current_key == Some(key) => last.absorb(&bar),
            _ => {
                out.push(bar);
                current_key = Some(key);
            }
        }
    }
    out
}
