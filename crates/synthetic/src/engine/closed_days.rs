//! Coarse intraday bars of closed trading days, kept under a byte budget.
//!
//! A coarse intraday request (thousands of 60- or 240-minute bars) spans hundreds of
//! trading days, and generating a day's minute path costs far more than the few bars
//! the request wants from it. A closed day's bars never change, so its bars at a base
//! width (60 minutes, or 15 for 15- and 30-minute requests) are kept here once a request
//! has generated them. A requested bucket is then the exact aggregate of the base bars
//! it spans: both are aligned to the session start, the requested width is a multiple
//! of the base, and folding bars with [`TickBar::absorb`] is associative, so the result
//! is the very bar the minutes would give.
//!
//! Days are kept in chunks of [`CHUNK_DAYS`] consecutive dates per instrument and base,
//! so an entry is worth its bookkeeping and a request looks up a few dozen entries
//! rather than hundreds. The newest chunk grows as days close: it is replaced by a copy
//! holding more days. Once the chunks' bytes exceed the budget, the least recently used
//! are dropped; whatever symbols, resolutions and ranges clients ask for, the cache
//! never holds more than its budget (readers still using a dropped chunk keep it alive
//! until they finish, one chunk each at most).
//!
//! Like the instrument's other caches, a chunk only memoises a pure function of (seed,
//! spec, date): it is valid for every `now`, and whether a day has closed as of a
//! request's `now` is decided by the reader, which computes the running day from its
//! minute path as before.

use std::collections::HashMap;
use std::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};

use super::path::TickBar;

/// Consecutive calendar dates per chunk: 16 days of 24-hour sessions are about 18 KB at
/// the 60-minute base, and a cold request computes at most 15 days it did not ask for.
pub(crate) const CHUNK_DAYS: i64 = 16;

/// Bytes the market's chunks may hold together. Every closed day of the built-in
/// catalog (18 stocks, 4 forex pairs, 4 cryptocurrencies) from 2019 to the end of 2025
/// takes about 32 MB at the 60-minute base (a 24x7 symbol 2.9 MB, a stock 0.6 MB),
/// growing by about 4.5 MB a year, so 60- and 240-minute history stays whole for years;
/// the 15-minute base would take four times that, and is shared least recently used.
/// The largest single 240-minute request (5,000 bars of a 24x7 symbol: 833 days) needs
/// about 1 MB.
pub(crate) const DEFAULT_BUDGET_BYTES: usize = 48 << 20;

/// What an entry costs beyond its vectors' contents: the map slot, the `Arc`'s counts
/// and the chunk's own fields, rounded up.
const ENTRY_OVERHEAD_BYTES: usize = 128;

/// Base width (minutes) whose bars are kept for requests of `minutes`, if any. One-
/// and five-minute requests span at most a few weeks of minutes and are served from the
/// minute paths directly.
pub(crate) fn base_minutes(minutes: i64) -> Option<i64> {
    [60, 15].into_iter().find(|&base| minutes % base == 0)
}

/// One chunk: the dates `index * CHUNK_DAYS ..` of one instrument at one base width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ChunkKey {
    pub instrument: usize,
    pub base_minutes: i64,
    pub index: i64,
}

impl ChunkKey {
    /// The chunk holding `date`.
    pub(crate) fn of(instrument: usize, base_minutes: i64, date: i64) -> ChunkKey {
        ChunkKey {
            instrument,
            base_minutes,
            index: date.div_euclid(CHUNK_DAYS),
        }
    }

    pub(crate) fn first_date(&self) -> i64 {
        self.index * CHUNK_DAYS
    }

    pub(crate) fn last_date(&self) -> i64 {
        self.first_date() + CHUNK_DAYS - 1
    }
}

/// The complete base bars of the dates `first_date..=through` of one chunk (none for a
/// date that does not trade).
#[derive(Debug)]
pub(crate) struct Chunk {
    first_date: i64,
    through: i64,
    /// The bars of date `first_date + i` are `bars[starts[i]..starts[i + 1]]`.
    starts: Vec<u32>,
    bars: Vec<TickBar>,
}

impl Chunk {
    /// The dates of `prefix` (an earlier state of the same chunk, if any), then those
    /// after it through `through`, whose bars `day_bars(date, out)` appends to `out`.
    pub(crate) fn extend(
        key: ChunkKey,
        prefix: Option<&Chunk>,
        through: i64,
        mut day_bars: impl FnMut(i64, &mut Vec<TickBar>),
    ) -> Chunk {
        let first_date = key.first_date();
        let through = through.clamp(first_date - 1, key.last_date());
        let days = usize::try_from(through - first_date + 1).unwrap_or(0);
        let mut starts = Vec::with_capacity(days + 1);
        let mut bars = Vec::new();
        let mut next = first_date;
        match prefix {
            Some(p) if p.first_date == first_date && p.through <= through => {
                starts.extend_from_slice(&p.starts);
                bars.extend_from_slice(&p.bars);
                next = p.through + 1;
            }
            _ => starts.push(0),
        }
        for date in next..=through {
            day_bars(date, &mut bars);
            // A chunk holds at most 16 days of 1,440 minutes.
            starts.push(u32::try_from(bars.len()).unwrap_or(u32::MAX));
        }
        bars.shrink_to_fit();
        Chunk {
            first_date,
            through,
            starts,
            bars,
        }
    }

    /// The last date held.
    pub(crate) fn through(&self) -> i64 {
        self.through
    }

    /// The base bars of `date`, or `None` when the chunk does not hold it.
    pub(crate) fn day(&self, date: i64) -> Option<&[TickBar]> {
        if date < self.first_date || date > self.through {
            return None;
        }
        let i = usize::try_from(date - self.first_date).ok()?;
        let (start, end) = (*self.starts.get(i)?, *self.starts.get(i + 1)?);
        self.bars.get(start as usize..end as usize)
    }

    /// What the chunk costs the budget.
    pub(crate) fn bytes(&self) -> usize {
        self.bars.capacity() * size_of::<TickBar>()
            + self.starts.capacity() * size_of::<u32>()
            + ENTRY_OVERHEAD_BYTES
    }
}

/// Bucket `bucket` of `width` minutes of a closed day whose base bars of `base` minutes
/// are `day`: the aggregate of the base bars it spans, `None` past the session's end.
pub(crate) fn bucket(day: &[TickBar], base: i64, width: i64, bucket: i64) -> Option<TickBar> {
    let per = usize::try_from(width / base).unwrap_or(1).max(1);
    let first = usize::try_from(bucket).unwrap_or(0).saturating_mul(per);
    let parts = day.get(first..day.len().min(first.saturating_add(per)))?;
    let (head, tail) = parts.split_first()?;
    let mut acc = *head;
    for bar in tail {
        acc.absorb(bar);
    }
    Some(acc)
}

/// The market's chunks, least recently used first out.
#[derive(Debug)]
pub(crate) struct ClosedDays {
    budget_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    chunks: HashMap<ChunkKey, Entry>,
    /// Sum of the chunks' `bytes()`; at most the budget between calls.
    bytes: usize,
    /// Bumped by every use: an entry's `used` orders it for eviction.
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    chunk: Arc<Chunk>,
    used: u64,
}

impl ClosedDays {
    pub(crate) fn new(budget_bytes: usize) -> ClosedDays {
        ClosedDays {
            budget_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every call leaves the state consistent before anything can panic (a map
        // operation at worst), so poisoning carries no information.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The chunk of `key`, if held; marks it used.
    pub(crate) fn get(&self, key: ChunkKey) -> Option<Arc<Chunk>> {
        let mut state = self.state();
        state.clock += 1;
        let now = state.clock;
        let entry = state.chunks.get_mut(&key)?;
        entry.used = now;
        Some(Arc::clone(&entry.chunk))
    }

    /// Holds `chunk` as `key` (replacing an earlier state of it), then drops the least
    /// recently used chunks until the total is within the budget again, the new one
    /// last: a chunk larger than the whole budget is not kept at all.
    pub(crate) fn insert(&self, key: ChunkKey, chunk: Arc<Chunk>) {
        let mut state = self.state();
        state.clock += 1;
        let used = state.clock;
        state.bytes += chunk.bytes();
        if let Some(old) = state.chunks.insert(key, Entry { chunk, used }) {
            state.bytes -= old.chunk.bytes();
        }
        while state.bytes > self.budget_bytes {
            // A linear scan: evictions follow a chunk's generation, which costs far
            // more than looking at the few thousand entries a budget holds.
            let Some(oldest) = state
                .chunks
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some(old) = state.chunks.remove(&oldest) {
                state.bytes -= old.chunk.bytes();
            }
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.state().bytes
    }

    /// Chunks held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().chunks.len()
    }

    #[cfg(test)]
    pub(crate) fn budget_bytes(&self) -> usize {
        self.budget_bytes
    }
}
