//! How a store keeps every coarser resolution the exact aggregate of its
//! base bars, at write time, so a read is a range scan of one resolution.
//!
//! Each served resolution is built from the next finer one that divides
//! it: 5 from 1, 15 from 5, 30 from 15, 60 from 30, 240 from 60, D from 240
//! (or from the base, if that is coarser), W and M from D. Aggregating an
//! aggregate is exact here (first, last, max, min and an exact volume sum),
//! so every level equals the aggregate of the base bars directly.
//!
//! A write records which base bars it touched ([`Dirty`]); each level then
//! rebuilds the buckets those cover from its children, and its own rebuilt
//! bars are what the next level rebuilds from.

use trading_market::calendar::civil::DAY_MS;
use trading_market::calendar::{
    period_end_date, period_key, period_start_date, Resolution, TradingCalendar, TradingDay,
};

use super::bar::StoredBar;

/// The resolutions served for a base resolution, finest first.
pub fn served(base: Resolution) -> impl Iterator<Item = Resolution> {
    Resolution::ALL.into_iter().filter(move |r| *r >= base)
}

/// Whether bars may be imported or ingested at `res` (W and M cannot be a
/// symbol's finest data: they are only ever aggregates).
pub fn is_base(res: Resolution) -> bool {
    !matches!(res, Resolution::Week | Resolution::Month)
}

/// The resolution `res` is built from, for a symbol whose base is `base`;
/// None for the base itself.
pub fn child_of(res: Resolution, base: Resolution) -> Option<Resolution> {
    if res <= base {
        return None;
    }
    match res {
        Resolution::Week | Resolution::Month => Some(Resolution::Day),
        // The next finer intraday resolution; every one divides the next.
        _ => Resolution::ALL
            .into_iter()
            .filter(|r| *r < res && *r >= base)
            .max(),
    }
}

/// Time ranges (inclusive, unix ms) of bars a write changed at one level,
/// sorted and disjoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dirty {
    ranges: Vec<(i64, i64)>,
}

impl Dirty {
    /// Records a changed bar. Bars written in time order (the common case)
    /// extend one range; a gap of more than a day starts another, so a
    /// sparse write does not rebuild everything in between.
    pub fn add(&mut self, time: i64) {
        if let Some(last) = self.ranges.last_mut() {
            if time >= last.0 && time <= last.1.saturating_add(DAY_MS) {
                last.1 = last.1.max(time);
                return;
            }
        }
        self.ranges.push((time, time));
    }

    /// The first and last changed times.
    pub fn first(&self) -> Option<i64> {
        self.ranges.iter().map(|r| r.0).min()
    }

    pub fn last(&self) -> Option<i64> {
        self.ranges.iter().map(|r| r.1).max()
    }

    /// Records every bar from `from` to `to` (inclusive) as changed.
    pub fn add_range(&mut self, from: i64, to: i64) {
        self.add(from);
        if let Some(last) = self.ranges.last_mut() {
            last.1 = last.1.max(to);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Sorted, overlapping ranges merged.
    pub fn ranges(&self) -> Vec<(i64, i64)> {
        let mut ranges = self.ranges.clone();
        ranges.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged
    }
}

/// The bucket of `res` a child bar at `child_time` belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    /// Same key, same bucket.
    key: i64,
    /// The span of child times it covers: `[start, end)`.
    start: i64,
    end: i64,
    /// The parent's stamp (W and M: the period's first trading day); None
    /// for a period without one, stamped at its first child.
    stamp: Option<i64>,
}

/// Maps child bars to their buckets at one resolution, remembering the last
/// trading day it looked up (children come in time order).
pub struct Buckets<'a> {
    calendar: &'a TradingCalendar,
    res: Resolution,
    day: Option<TradingDay>,
}

impl<'a> Buckets<'a> {
    pub fn new(calendar: &'a TradingCalendar, res: Resolution) -> Buckets<'a> {
        Buckets {
            calendar,
            res,
            day: None,
        }
    }

    fn day_of(&mut self, t: i64) -> Option<TradingDay> {
        if let Some(day) = self.day.filter(|d| d.contains(t)) {
            return Some(day);
        }
        self.day = self.calendar.day_containing(t);
        self.day
    }

    fn bucket(&mut self, child_time: i64) -> Option<Bucket> {
        match self.res {
            Resolution::Week | Resolution::Month => {
                let date = child_time.div_euclid(DAY_MS);
                let (first, end) = (
                    period_start_date(self.res, date),
                    period_end_date(self.res, date),
                );
                // The period's first trading day, whichever day has data:
                // a late trade on an earlier day must not move the bar.
                let stamp = (first..end)
                    .find(|d| self.calendar.day(*d).is_some())
                    .map(|d| d * DAY_MS);
                Some(Bucket {
                    key: period_key(self.res, date),
                    start: first * DAY_MS,
                    end: end * DAY_MS,
                    stamp,
                })
            }
            Resolution::Day => {
                let day = self.day_of(child_time)?;
                Some(Bucket {
                    key: day.date,
                    start: day.start_ms,
                    end: day.end_ms(),
                    stamp: Some(day.stamp()),
                })
            }
            res => {
                let minutes = i64::from(res.intraday_minutes()?);
                let day = self.day_of(child_time)?;
                let start = day.bucket_start(minutes, child_time);
                Some(Bucket {
                    key: start,
                    start,
                    end: (start + minutes * 60_000).min(day.end_ms()),
                    stamp: Some(start),
                })
            }
        }
    }

    /// The child-time spans to rebuild at this resolution for children
    /// that changed in `dirty`: whole buckets, merged.
    pub fn spans(&mut self, dirty: &Dirty) -> Vec<(i64, i64)> {
        let mut spans: Vec<(i64, i64)> = Vec::new();
        for (lo, hi) in dirty.ranges() {
            let (Some(first), Some(last)) = (self.bucket(lo), self.bucket(hi)) else {
                continue;
            };
            match spans.last_mut() {
                Some(prev) if first.start <= prev.1 => prev.1 = prev.1.max(last.end),
                _ => spans.push((first.start, last.end)),
            }
        }
        spans
    }

    /// An aggregator of children, in time order, into bars of this
    /// resolution.
    pub fn aggregator(self) -> Aggregator<'a> {
        Aggregator {
            buckets: self,
            current: None,
        }
    }
}

/// Folds children (in time order) into the bars of one resolution.
pub struct Aggregator<'a> {
    buckets: Buckets<'a>,
    current: Option<(i64, StoredBar)>,
}

impl Aggregator<'_> {
    /// Adds a child; returns the previous bar when this child starts a new
    /// one. A child outside every session (which validation never lets in)
    /// is left out.
    pub fn push(&mut self, child: &StoredBar) -> Option<StoredBar> {
        let bucket = self.buckets.bucket(child.time)?;
        match &mut self.current {
            Some((key, bar)) if *key == bucket.key => {
                // An overflowing sum keeps the bar as it was: volumes that
                // large were refused at write time.
                let _ = bar.absorb(child);
                None
            }
            _ => {
                let bar = StoredBar {
                    time: bucket.stamp.unwrap_or(child.time),
                    ..*child
                };
                self.current
                    .replace((bucket.key, bar))
                    .map(|(_, done)| done)
            }
        }
    }

    /// The last bar.
    pub fn finish(self) -> Option<StoredBar> {
        self.current.map(|(_, bar)| bar)
    }
}

/// One level of a rebuild, planned before anything is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    pub res: Resolution,
    pub child: Resolution,
    /// The spans of child times to rebuild (see [`Buckets::spans`]).
    pub spans: Vec<(i64, i64)>,
}

/// Every level a write of base bars `dirty` rebuilds, finest first, with
/// its spans: what the level-by-level walk would find, but known up front,
/// so a store can read every level's children at once (one round trip)
/// instead of waiting for each level before reading the next.
///
/// A level's changed bars are those of the buckets its spans cover. Only
/// the ends of a changed range decide a span, and a range's ends are bars
/// that exist (a written child, or a bar built from one), so mapping each
/// range's ends to their buckets' stamps gives the level's changed ranges
/// without its bars. A range may then span buckets without children
/// between its ends; rebuilding such a bucket changes nothing.
pub fn plan(calendar: &TradingCalendar, base: Resolution, dirty: &Dirty) -> Vec<Level> {
    let mut changed: Vec<(Resolution, Dirty)> = vec![(base, dirty.clone())];
    let mut levels = Vec::new();
    for res in served(base).skip(1) {
        let Some(child) = child_of(res, base) else {
            continue;
        };
        let Some((_, below)) = changed.iter().find(|(r, _)| *r == child) else {
            continue;
        };
        let mut buckets = Buckets::new(calendar, res);
        let spans = buckets.spans(below);
        let mut mine = Dirty::default();
        for (lo, hi) in below.ranges() {
            if let (Some(first), Some(last)) = (buckets.bucket(lo), buckets.bucket(hi)) {
                if let (Some(from), Some(to)) = (first.stamp, last.stamp) {
                    mine.add_range(from, to);
                }
            }
        }
        changed.push((res, mine));
        levels.push(Level { res, child, spans });
    }
    levels
}

/// The children of one span of a level once the level below is rebuilt:
/// the stored children read in the span (`stored`, in time order), less
/// those the level below replaces (inside its spans `below`, or at the time
/// of one of its rebuilt bars), plus its rebuilt bars (`rebuilt`, in time
/// order) that fall in the span.
pub fn children_after(
    stored: Vec<StoredBar>,
    below: &[(i64, i64)],
    rebuilt: &[StoredBar],
    span: (i64, i64),
) -> Vec<StoredBar> {
    let replaced = |t: i64| {
        below.iter().any(|(from, to)| (*from..*to).contains(&t))
            || rebuilt.binary_search_by_key(&t, |b| b.time).is_ok()
    };
    let first = rebuilt.partition_point(|b| b.time < span.0);
    let last = rebuilt.partition_point(|b| b.time < span.1);
    let mut out: Vec<StoredBar> = stored.into_iter().filter(|b| !replaced(b.time)).collect();
    out.extend_from_slice(&rebuilt[first..last]);
    out.sort_by_key(|b| b.time);
    out
}

/// Every level's new bars, finest first, from the children read in each of
/// its spans (`read`: one list a span, in the plan's order, as stored
/// before the rebuild): what a store then writes over those spans.
pub fn build<'a>(
    calendar: &TradingCalendar,
    levels: &'a [Level],
    read: Vec<Vec<StoredBar>>,
) -> Vec<(&'a Level, Vec<StoredBar>)> {
    let mut read = read.into_iter();
    let mut built: Vec<(&Level, Vec<StoredBar>)> = Vec::with_capacity(levels.len());
    for level in levels {
        let below = built.iter().find(|(l, _)| l.res == level.child);
        let mut bars = Vec::new();
        for span in &level.spans {
            let stored = read.next().unwrap_or_default();
            let children = match below {
                Some((l, rebuilt)) => children_after(stored, &l.spans, rebuilt, *span),
                None => stored,
            };
            let mut aggregator = Buckets::new(calendar, level.res).aggregator();
            for child in &children {
                bars.extend(aggregator.push(child));
            }
            bars.extend(aggregator.finish());
        }
        built.push((level, bars));
    }
    built
}

#[cfg(test)]
mod tests {
    use super::*;
    use trading_market::volume::Volume;

    #[test]
    fn every_level_is_built_from_the_next_finer() {
        let r = |s| Resolution::parse(s).unwrap();
        let one = r("1");
        let chain: Vec<_> = served(one)
            .map(|res| (res.as_str(), child_of(res, one).map(Resolution::as_str)))
            .collect();
        assert_eq!(
            chain,
            [
                ("1", None),
                ("5", Some("1")),
                ("15", Some("5")),
                ("30", Some("15")),
                ("60", Some("30")),
                ("240", Some("60")),
                ("D", Some("240")),
                ("W", Some("D")),
                ("M", Some("D")),
            ]
        );
        assert_eq!(child_of(r("D"), r("240")), Some(r("240")));
        assert_eq!(child_of(r("D"), r("D")), None);
        assert_eq!(child_of(r("M"), r("D")), Some(r("D")));
        assert_eq!(served(r("D")).count(), 3);
    }

    #[test]
    fn buckets_align_to_the_session_and_never_span_two_days() {
        let cal = TradingCalendar::new("0930-1600", "America/New_York").unwrap();
        // 2024-07-01 (Monday) 13:30 UTC is 09:30 in New York.
        let open = 1_719_840_600_000;
        let minute = 60_000;
        let bar = |i: i64| StoredBar {
            time: open + i * minute,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: Volume::parse("1").unwrap(),
            first_ms: open + i * minute,
            last_ms: open + i * minute,
        };
        let mut agg = Buckets::new(&cal, Resolution::Min240).aggregator();
        let mut out = Vec::new();
        for i in 0..390 {
            out.extend(agg.push(&bar(i)));
        }
        out.extend(agg.finish());
        // 09:30-13:30 and the short 13:30-16:00.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].time, open);
        assert_eq!(out[1].time, open + 240 * minute);
        assert_eq!(out[0].volume, Volume::parse("240").unwrap());
        assert_eq!(out[1].volume, Volume::parse("150").unwrap());

        let mut day = Buckets::new(&cal, Resolution::Day);
        let mut dirty = Dirty::default();
        dirty.add(open + 5 * minute);
        assert_eq!(day.spans(&dirty), [(open, open + 390 * minute)]);
    }

    /// The walk the stores used to make, a level at a time, over a table
    /// held in memory: the reference `plan` must agree with.
    fn walk(
        table: &mut std::collections::BTreeMap<(Resolution, i64), StoredBar>,
        cal: &TradingCalendar,
        base: Resolution,
        dirty: &Dirty,
    ) {
        let mut changed = vec![(base, dirty.clone())];
        for res in served(base).skip(1) {
            let Some(child) = child_of(res, base) else {
                continue;
            };
            let Some((_, below)) = changed.iter().find(|(r, _)| *r == child).cloned() else {
                continue;
            };
            let mut rebuilt = Dirty::default();
            for (from, to) in Buckets::new(cal, res).spans(&below) {
                table.retain(|(r, t), _| !(*r == res && (from..to).contains(t)));
                let children: Vec<StoredBar> = table
                    .range((child, from)..(child, to))
                    .map(|(_, b)| *b)
                    .collect();
                let mut aggregator = Buckets::new(cal, res).aggregator();
                for c in &children {
                    if let Some(done) = aggregator.push(c) {
                        table.insert((res, done.time), done);
                        rebuilt.add(done.time);
                    }
                }
                if let Some(done) = aggregator.finish() {
                    table.insert((res, done.time), done);
                    rebuilt.add(done.time);
                }
            }
            changed.push((res, rebuilt));
        }
    }

    /// The rebuild as the stores make it now (`plan`, then `build`): every
    /// read first, from the table as it was, then every level's deletes
    /// and writes.
    fn planned(
        table: &mut std::collections::BTreeMap<(Resolution, i64), StoredBar>,
        cal: &TradingCalendar,
        base: Resolution,
        dirty: &Dirty,
    ) {
        let levels = plan(cal, base, dirty);
        let reads: Vec<Vec<StoredBar>> = levels
            .iter()
            .flat_map(|l| {
                l.spans.iter().map(|(from, to)| {
                    table
                        .range((l.child, *from)..(l.child, *to))
                        .map(|(_, b)| *b)
                        .collect()
                })
            })
            .collect();
        let built = build(cal, &levels, reads);
        for (level, bars) in built {
            for (from, to) in &level.spans {
                table.retain(|(r, t), _| !(*r == level.res && (*from..*to).contains(t)));
            }
            for bar in bars {
                table.insert((level.res, bar.time), bar);
            }
        }
    }

    #[test]
    fn a_planned_rebuild_equals_the_walk_a_level_at_a_time() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: i64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as i64).rem_euclid(n)
        };
        let calendars = [
            TradingCalendar::new("0930-1600", "America/New_York").unwrap(),
            TradingCalendar::new("24x7", "Etc/UTC").unwrap(),
            TradingCalendar::new("1800-1700", "America/New_York").unwrap(),
        ];
        let start = 1_719_792_000_000; // 2024-07-01 00:00 UTC
        for cal in &calendars {
            for base in [Resolution::Min1, Resolution::Min5, Resolution::Min60] {
                let step = i64::from(base.intraday_minutes().unwrap()) * 60_000;
                let mut walked = std::collections::BTreeMap::new();
                let mut plans = std::collections::BTreeMap::new();
                for round in 0..12 {
                    // Writes of a few bars to a whole run of them, over
                    // about seven weeks, some far apart.
                    let mut dirty = Dirty::default();
                    let mut written = Vec::new();
                    let count = if round == 0 { 3_000 } else { 1 + next(40) };
                    let mut t = start + next(70 * 1440) * 60_000;
                    for _ in 0..count {
                        let gap = if next(10) == 0 { 3_000 } else { 3 };
                        t += step * (1 + next(gap));
                        // Placed as a bar of the session would be.
                        let Some(day) = cal.day_containing(t) else {
                            continue;
                        };
                        let t = day.bucket_start(step / 60_000, t);
                        let price = 100.0 + next(1000) as f64 / 10.0;
                        written.push(StoredBar {
                            time: t,
                            open: price,
                            high: price + 1.0,
                            low: price - 1.0,
                            close: price + 0.5,
                            volume: Volume::parse(&format!("{}", 1 + next(99))).unwrap(),
                            first_ms: t,
                            last_ms: t,
                        });
                    }
                    written.sort_by_key(|b| b.time);
                    written.dedup_by_key(|b| b.time);
                    for bar in &written {
                        walked.insert((base, bar.time), *bar);
                        plans.insert((base, bar.time), *bar);
                        dirty.add(bar.time);
                    }
                    walk(&mut walked, cal, base, &dirty);
                    planned(&mut plans, cal, base, &dirty);
                    assert!(
                        walked == plans,
                        "base {} round {round}: the planned rebuild differs",
                        base.as_str()
                    );
                }
                // Every level was rebuilt, a month's bar included.
                assert!(
                    walked.keys().any(|(r, _)| *r == Resolution::Month),
                    "base {}: no bar reached M",
                    base.as_str()
                );
            }
        }
    }
}
