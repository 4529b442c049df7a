//! The TradingView `getBars` paging contract, independent of how bars are produced.
//!
//! A source only has to answer "newest bar strictly before t" and "the bar before this
//! one". Walking backwards from the end of the requested range means the cost is
//! proportional to the bars returned, never to the width of the requested range.

pub trait BarSource {
    type Pos: Copy;
    /// The newest existing bar whose time is `< t_ms`.
    fn last_before(&self, t_ms: i64) -> Option<Self::Pos>;
    /// The bar immediately older than `pos`.
    fn prev(&self, pos: Self::Pos) -> Option<Self::Pos>;
    fn time(&self, pos: Self::Pos) -> i64;
}

#[derive(Debug)]
pub struct Selection<P> {
    /// Ascending by time.
    pub positions: Vec<P>,
    pub no_data: bool,
    pub next_time: Option<i64>,
}

pub fn select<S: BarSource>(
    src: &S,
    from_ms: i64,
    to_ms: i64,
    count_back: Option<usize>,
    limit: usize,
) -> Selection<S::Pos> {
    let Some(newest) = src.last_before(to_ms) else {
        return Selection {
            positions: Vec::new(),
            no_data: true,
            next_time: None,
        };
    };
    // count_back wins over from: the chart wants exactly that many bars before `to`.
    let want = count_back.map_or(limit, |n| n.min(limit));
    let mut picked = Vec::with_capacity(want.min(4_096));
    let mut cursor = Some(newest);
    while let Some(pos) = cursor {
        if picked.len() >= want || (count_back.is_none() && src.time(pos) < from_ms) {
            break;
        }
        picked.push(pos);
        cursor = src.prev(pos);
    }
    let next_time = if picked.is_empty() {
        src.last_before(from_ms.min(to_ms)).map(|p| src.time(p))
    } else {
        // The loop stopped on exactly the bar just older than the oldest one returned.
        cursor.map(|p| src.time(p))
    };
    picked.reverse();
    Selection {
        positions: picked,
        no_data: false,
        next_time,
    }
}

/// A plain ascending slice of bars as a source.
pub struct SliceSource<'a, T> {
    pub items: &'a [T],
    pub time_of: fn(&T) -> i64,
}

impl<T> BarSource for SliceSource<'_, T> {
    type Pos = usize;

    fn last_before(&self, t_ms: i64) -> Option<usize> {
        self.items
            .partition_point(|b| (self.time_of)(b) < t_ms)
            .checked_sub(1)
    }

    fn prev(&self, pos: usize) -> Option<usize> {
        pos.checked_sub(1)
    }

    fn time(&self, pos: usize) -> i64 {
        self.items.get(pos).map_or(i64::MIN, |b| (self.time_of)(b))
    }
}
