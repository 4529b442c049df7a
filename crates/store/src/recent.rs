//! The newest bars of each series a store serves, in memory and already
//! encoded.
//!
//! A chart opens on the newest bars: a few hundred daily ones, or up to
//! 5,000 one-minute ones, and most requests after that ask for the same
//! bars again. Reading 5,000 rows and encoding them each time costs
//! several times what the synthetic market spends (PostgreSQL, whose every
//! row is a tuple to visit, most of all), so each (symbol, resolution)
//! keeps here its newest [`WINDOW`] bars but the newest one, with their
//! JSON (`EncodedRun`, as `bar_cache` does for the synthetic source). A
//! request reads only the bars from there on, and goes to the store only
//! when its answer reaches back before the kept bars.
//!
//! An entry stays valid while its symbol's history has not been amended:
//! the writer bumps a symbol's generation when a write changes a bar older
//! than the newest (a late trade, a re-imported range), and the epoch of
//! every symbol when another process (an import) wrote. A write that only
//! changes the newest bars or adds new ones leaves the entry valid: those
//! bars are never in it. They are kept too, as the entry's tail, for as
//! long as the symbol has not been written at all; after a write they are
//! read from the store (a few rows) until the entry is rebuilt.
//!
//! Memory is bounded by bars, not entries: the least recently used entries
//! go once more than [`MAX_KEPT_BARS`] are kept (about 80 MB with their
//! JSON), or more than [`MAX_ENTRIES`] entries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use trading_market::bars_json::{EncodedRun, PriceFormat};
use trading_market::calendar::Resolution;
use trading_market::paging::BarSource;
use trading_market::source::{Bar, BarQuery, BarsPage};

/// Bars read to build an entry: the newest this many of the series. More
/// than a page (`api::MAX_BARS`, 5,000) and the bar before it, so the page
/// a chart opens on, and the one before it at most resolutions, come from
/// memory; a daily series since 1990 fits whole.
pub const WINDOW: usize = 8192;
/// Bars kept in all entries together, before the least recently used go.
const MAX_KEPT_BARS: usize = 1 << 19;
/// Entries kept, however small.
const MAX_ENTRIES: usize = 512;
/// Bars after an entry's cutoff read from the store before the entry is
/// rebuilt to include them.
pub const MAX_TAIL: usize = 64;

/// What an entry was built from: (epoch, the symbol's generation).
pub type Stamp = (u64, u64);

pub struct Entry {
    stamp: Stamp,
    /// The kept bars before `cutoff`, ascending, with their JSON.
    pub run: Arc<EncodedRun>,
    /// Whether the kept bars start at the series' first bar; else older
    /// ones are in the store only.
    complete: bool,
    /// The newest bar's time when the entry was built.
    pub cutoff: i64,
    /// The bars from `cutoff` on, as of write `written`.
    tail: Vec<Bar>,
    written: u64,
    /// When a request last used the entry (`RecentBars::clock`).
    used: AtomicU64,
}

impl Entry {
    /// The kept bars before the cutoff, ascending.
    pub fn bars(&self) -> &[Bar] {
        self.run.bars()
    }

    /// The bars from the cutoff on, if no write since the entry was built
    /// can have changed them.
    pub fn tail(&self, written: u64) -> Option<&[Bar]> {
        (self.written == written).then_some(&self.tail[..])
    }

    /// The page `query` asks for, from the kept bars and `tail` (the bars
    /// from the cutoff on); None when the answer may need older bars than
    /// the kept ones, which only the store has.
    pub fn page(&self, tail: &[Bar], query: &BarQuery) -> Option<BarsPage> {
        Joined {
            head: self.bars(),
            tail,
            complete: self.complete,
        }
        .page(query)
    }

    fn size(&self) -> usize {
        self.bars().len() + self.tail.len()
    }
}

/// A symbol's write counters: every write, and writes that amended history.
#[derive(Clone, Copy, Default)]
struct Generations {
    written: u64,
    amended: u64,
}

#[derive(Default)]
struct Entries {
    map: HashMap<(i64, Resolution), Arc<Entry>>,
    /// Bars in all entries.
    bars: usize,
}

impl Entries {
    fn remove(&mut self, key: &(i64, Resolution)) {
        if let Some(old) = self.map.remove(key) {
            self.bars -= old.size();
        }
    }

    /// Drops the least recently used entries but `keep` until both bounds
    /// hold. A scan of at most `MAX_ENTRIES`, only when an entry is built.
    fn evict(&mut self, keep: (i64, Resolution)) {
        while self.map.len() > 1 && (self.bars > MAX_KEPT_BARS || self.map.len() > MAX_ENTRIES) {
            let oldest = self
                .map
                .iter()
                .filter(|(key, _)| **key != keep)
                .min_by_key(|(_, e)| e.used.load(Ordering::Relaxed))
                .map(|(key, _)| *key);
            match oldest {
                Some(key) => self.remove(&key),
                None => return,
            }
        }
    }
}

#[derive(Default)]
pub struct RecentBars {
    entries: Mutex<Entries>,
    generations: Mutex<HashMap<i64, Generations>>,
    epoch: AtomicU64,
    /// Counts uses, to find the least recently used entry.
    clock: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RecentBars {
    /// What an entry of `symbol` must have been built at to be valid, and
    /// the symbol's write counter.
    pub fn stamp(&self, symbol: i64) -> (Stamp, u64) {
        let g = lock(&self.generations)
            .get(&symbol)
            .copied()
            .unwrap_or_default();
        ((self.epoch.load(Ordering::Acquire), g.amended), g.written)
    }

    /// The entry of `symbol` at `res`, if it was built at `stamp`.
    pub fn get(&self, symbol: i64, res: Resolution, stamp: Stamp) -> Option<Arc<Entry>> {
        let entries = lock(&self.entries);
        let entry = entries
            .map
            .get(&(symbol, res))
            .filter(|e| e.stamp == stamp)?;
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        entry.used.store(now, Ordering::Relaxed);
        Some(Arc::clone(entry))
    }

    /// Keeps `bars`, the newest [`WINDOW`] of the series (ascending; all of
    /// it when there are fewer), as the entry at `stamp` and write
    /// `written`: all but the newest, encoded with `prices`, and the newest
    /// as the tail. Returns the entry and its tail.
    pub fn put(
        &self,
        symbol: i64,
        res: Resolution,
        (stamp, written): (Stamp, u64),
        mut bars: Vec<Bar>,
        prices: Option<PriceFormat>,
    ) -> (Arc<Entry>, Vec<Bar>) {
        let complete = bars.len() < WINDOW;
        let tail: Vec<Bar> = bars.pop().into_iter().collect();
        let cutoff = tail.first().map_or(i64::MIN, |b| b.time);
        let entry = Arc::new(Entry {
            stamp,
            run: Arc::new(EncodedRun::new(bars, prices)),
            complete,
            cutoff,
            tail: tail.clone(),
            written,
            used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed)),
        });
        let key = (symbol, res);
        let mut entries = lock(&self.entries);
        entries.remove(&key);
        entries.bars += entry.size();
        entries.map.insert(key, Arc::clone(&entry));
        entries.evict(key);
        (entry, tail)
    }

    /// A write changed bars of `symbol`; `amended` when one of them is
    /// older than its newest.
    pub fn written(&self, symbol: i64, amended: bool) {
        let mut generations = lock(&self.generations);
        let g = generations.entry(symbol).or_default();
        g.written += 1;
        if amended {
            g.amended += 1;
        }
    }

    /// Another process wrote: nothing kept can be trusted.
    pub fn external_change(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// An entry's bars followed by the ones read after its cutoff, as one
/// ascending series for the paging code.
struct Joined<'a> {
    head: &'a [Bar],
    tail: &'a [Bar],
    /// Whether `head` starts at the series' first bar.
    complete: bool,
}

impl Joined<'_> {
    /// The page `query` asks for, by the paging contract; None when the
    /// series may go on before `head` and the answer could depend on it.
    fn page(&self, query: &BarQuery) -> Option<BarsPage> {
        let selection = trading_market::paging::select(
            self,
            query.from_s.saturating_mul(1000),
            query.to_s.saturating_mul(1000),
            query.count_back,
            query.limit,
        );
        // The kept bars are contiguous: an answer is exact unless the walk
        // ran into the oldest kept bar (the next older one, and so
        // `next_time`, may exist), or found nothing before `to` at all.
        let reaches_start = selection.no_data || selection.positions.first() == Some(&0);
        if reaches_start && !self.complete {
            return None;
        }
        Some(BarsPage {
            bars: selection
                .positions
                .iter()
                .filter_map(|&i| self.get(i))
                .collect(),
            no_data: selection.no_data,
            next_time: selection.next_time,
        })
    }

    fn get(&self, i: usize) -> Option<Bar> {
        match i.checked_sub(self.head.len()) {
            None => self.head.get(i).copied(),
            Some(j) => self.tail.get(j).copied(),
        }
    }
}

impl BarSource for Joined<'_> {
    type Pos = usize;

    fn last_before(&self, t_ms: i64) -> Option<usize> {
        let in_tail = self.tail.partition_point(|b| b.time < t_ms);
        if in_tail > 0 {
            return Some(self.head.len() + in_tail - 1);
        }
        self.head.partition_point(|b| b.time < t_ms).checked_sub(1)
    }

    fn prev(&self, pos: usize) -> Option<usize> {
        pos.checked_sub(1)
    }

    fn time(&self, pos: usize) -> i64 {
        self.get(pos).map_or(i64::MIN, |b| b.time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trading_market::paging::{select, SliceSource};

    const MINUTE: i64 = 60_000;

    /// `n` minutes with a gap of an hour after every 1,000th, so ranges
    /// can fall between bars.
    fn series(n: usize) -> Vec<Bar> {
        (0..n)
            .map(|i| {
                let time = (i as i64 + (i as i64 / 1000) * 60) * MINUTE;
                let price = 100.0 + i as f64;
                Bar {
                    time,
                    open: price,
                    high: price + 1.0,
                    low: price - 1.0,
                    close: price + 0.5,
                    volume: i as f64,
                }
            })
            .collect()
    }

    /// The page from the whole series: what every answer must equal.
    fn truth(all: &[Bar], q: &BarQuery) -> BarsPage {
        let src = SliceSource {
            items: all,
            time_of: |b: &Bar| b.time,
        };
        let s = select(&src, q.from_s * 1000, q.to_s * 1000, q.count_back, q.limit);
        BarsPage {
            bars: s.positions.iter().map(|&i| all[i]).collect(),
            no_data: s.no_data,
            next_time: s.next_time,
        }
    }

    fn entry(history: &RecentBars, all: &[Bar], id: i64) -> Arc<Entry> {
        let newest = all[all.len().saturating_sub(WINDOW)..].to_vec();
        history
            .put(id, Resolution::Min1, ((0, 0), 0), newest, None)
            .0
    }

    fn query(to_ms: i64, from_ms: i64, count_back: Option<usize>) -> BarQuery {
        BarQuery {
            from_s: from_ms.div_euclid(1000),
            to_s: to_ms.div_euclid(1000),
            count_back,
            limit: 5000,
        }
    }

    #[test]
    fn a_window_answers_exactly_or_not_at_all() {
        let history = RecentBars::default();
        let all = series(20_000);
        let e = entry(&history, &all, 1);
        assert!(!e.complete);
        let tail = e.tail(0).unwrap().to_vec();
        let (first, last) = (all[0].time, all[all.len() - 1].time);
        let mut answered = 0;
        let mut asked = 0;
        // Every `to` from before the first bar to past the last, with
        // count_back and with ranges, some of them inside gaps.
        let mut to = first - 7 * MINUTE;
        while to < last + 10 * MINUTE {
            for q in [
                query(to, 0, Some(1)),
                query(to, 0, Some(300)),
                query(to, 0, Some(5000)),
                query(to, to - 30 * MINUTE, None),
                query(to, to - 4000 * MINUTE, None),
                query(to, to + MINUTE, None),
            ] {
                asked += 1;
                if let Some(page) = e.page(&tail, &q) {
                    answered += 1;
                    assert_eq!(page, truth(&all, &q), "to {to} {q:?}");
                }
            }
            to += 97 * MINUTE + 13_000;
        }
        // The window answers what lies inside it, and only that.
        assert!(
            answered > asked / 4 && answered < asked,
            "{answered}/{asked}"
        );
        // The page a chart opens on comes from memory, with its next_time.
        let open = query(last + MINUTE, 0, Some(5000));
        assert_eq!(e.page(&tail, &open), Some(truth(&all, &open)));
    }

    #[test]
    fn a_whole_series_answers_everything() {
        let history = RecentBars::default();
        let all = series(3_000);
        let e = entry(&history, &all, 1);
        let tail = e.tail(0).unwrap().to_vec();
        for to in [
            all[0].time - MINUTE,
            all[0].time,
            all[1500].time,
            all[2999].time + 1,
        ] {
            for q in [query(to, 0, Some(5000)), query(to, to - 10 * MINUTE, None)] {
                assert_eq!(e.page(&tail, &q), Some(truth(&all, &q)), "{q:?}");
            }
        }
    }

    #[test]
    fn memory_stays_bounded_and_the_used_entries_stay() {
        let history = RecentBars::default();
        let all = series(WINDOW);
        let hot = 1_000;
        entry(&history, &all, hot);
        for id in 0..(MAX_KEPT_BARS / WINDOW) as i64 * 2 {
            entry(&history, &all, id);
            assert!(history.get(hot, Resolution::Min1, (0, 0)).is_some());
            let entries = lock(&history.entries);
            assert!(entries.bars <= MAX_KEPT_BARS, "{} bars kept", entries.bars);
        }
        assert!(history.get(0, Resolution::Min1, (0, 0)).is_none());
    }
}
