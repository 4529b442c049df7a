//! Closed daily, weekly and monthly bars, in memory and already encoded.
//!
//! A chart opens with a few hundred daily bars, and most requests after
//! that ask for the same closed history again. Reading it from the file
//! and encoding it each time costs several times what the synthetic market
//! spends, so each (symbol, resolution) keeps its bars before the newest
//! one here, with their JSON (`EncodedRun`, as `bar_cache` does for the
//! synthetic source); a request reads only the bars from there on.
//!
//! An entry stays valid while its symbol's history has not been amended:
//! the writer bumps a symbol's generation when a write changes a bar older
//! than the newest (a late trade, a re-imported range), and the epoch of
//! every symbol when another process (an import) wrote. A write that only
//! changes the newest bars or adds new ones leaves the entry valid: those
//! bars are never in it. They are kept too, as the entry's tail, for as
//! long as the symbol has not been written at all; after a write they are
//! read from the file (a few rows) until the entry is rebuilt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::bars_json::EncodedRun;
use crate::calendar::Resolution;
use crate::paging::BarSource;
use crate::source::{Bar, BarQuery, BarsPage};

/// Entries kept; beyond it the oldest built is dropped. A daily history
/// since 2019 is about 0.3 MB with its JSON.
const MAX_ENTRIES: usize = 512;
/// Bars after an entry's cutoff read from the file before the entry is
/// rebuilt to include them.
pub const MAX_TAIL: usize = 64;

/// Whether `res` is kept here: the coarse resolutions, small per symbol.
pub fn is_kept(res: Resolution) -> bool {
    !res.is_intraday()
}

/// What an entry was built from: (epoch, the symbol's generation).
pub type Stamp = (u64, u64);

pub struct Entry {
    stamp: Stamp,
    /// Every bar older than `cutoff`, ascending.
    pub bars: Vec<Bar>,
    /// The newest bar's time when the entry was built.
    pub cutoff: i64,
    pub run: Arc<EncodedRun>,
    /// The bars from `cutoff` on, as of write `written`.
    tail: Vec<Bar>,
    written: u64,
}

impl Entry {
    /// The bars from the cutoff on, if no write since the entry was built
    /// can have changed them.
    pub fn tail(&self, written: u64) -> Option<&[Bar]> {
        (self.written == written).then_some(&self.tail[..])
    }
}

/// A symbol's write counters: every write, and writes that amended history.
#[derive(Clone, Copy, Default)]
struct Generations {
    written: u64,
    amended: u64,
}

/// The entries, and the order they were built in (for eviction).
#[derive(Default)]
struct Entries {
    map: HashMap<(i64, Resolution), Arc<Entry>>,
    order: std::collections::VecDeque<(i64, Resolution)>,
}

#[derive(Default)]
pub struct History {
    entries: Mutex<Entries>,
    generations: Mutex<HashMap<i64, Generations>>,
    epoch: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl History {
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
        entries
            .map
            .get(&(symbol, res))
            .filter(|e| e.stamp == stamp)
            .cloned()
    }

    /// Keeps `bars` (ascending, all of them) as the entry at `stamp` and
    /// write `written`: all but the newest, encoded by `encode`, and the
    /// newest as the tail.
    pub fn put(
        &self,
        symbol: i64,
        res: Resolution,
        (stamp, written): (Stamp, u64),
        mut bars: Vec<Bar>,
        encode: impl FnOnce(Vec<Bar>) -> EncodedRun,
    ) -> Arc<Entry> {
        let tail: Vec<Bar> = bars.pop().into_iter().collect();
        let cutoff = tail.first().map_or(i64::MIN, |b| b.time);
        let run = Arc::new(encode(bars.clone()));
        let entry = Arc::new(Entry {
            stamp,
            bars,
            cutoff,
            run,
            tail,
            written,
        });
        let mut entries = lock(&self.entries);
        if entries
            .map
            .insert((symbol, res), Arc::clone(&entry))
            .is_none()
        {
            entries.order.push_back((symbol, res));
            if entries.order.len() > MAX_ENTRIES {
                if let Some(oldest) = entries.order.pop_front() {
                    entries.map.remove(&oldest);
                }
            }
        }
        entry
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
pub struct Joined<'a> {
    pub head: &'a [Bar],
    pub tail: &'a [Bar],
}

impl Joined<'_> {
    /// The page `query` asks for, by the paging contract.
    pub fn page(&self, query: &BarQuery) -> BarsPage {
        let selection = crate::paging::select(
            self,
            query.from_s.saturating_mul(1000),
            query.to_s.saturating_mul(1000),
            query.count_back,
            query.limit,
        );
        BarsPage {
            bars: selection
                .positions
                .iter()
                .filter_map(|&i| self.get(i))
                .collect(),
            no_data: selection.no_data,
            next_time: selection.next_time,
        }
    }

    pub fn get(&self, i: usize) -> Option<Bar> {
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
