//! A bar as a store keeps it.
//!
//! Prices are kept as given (`f64`: aggregation only takes the first, last,
//! highest and lowest, which is exact for any float). Volume is an exact
//! decimal (see `volume`), so sums do not depend on the order trades came
//! in. Each bar also remembers when its first and last trade happened, so a
//! late trade becomes the open or the close only if it really was the
//! earliest or the latest.

use trading_market::calendar::Resolution;
use trading_market::source::Bar;
use trading_market::volume::Volume;

/// The `resolution` column: minutes for intraday, then D, W and M as the
/// minutes of a day, a week and 30 days: a code every engine stores, readable
/// in its tables.
pub fn code(res: Resolution) -> i64 {
    match res.intraday_minutes() {
        Some(m) => i64::from(m),
        None => match res {
            Resolution::Day => 1_440,
            Resolution::Week => 10_080,
            _ => 43_200,
        },
    }
}

pub fn from_code(code: i64) -> Option<Resolution> {
    Resolution::ALL.into_iter().find(|r| self::code(*r) == code)
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredBar {
    /// Start of the bar, unix ms (00:00 UTC of the trading date for D/W/M).
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: Volume,
    /// Unix ms of the trade that set the open, and of the one that set the
    /// close. An imported or ingested bar spans its whole interval.
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Bytes of an encoded bar: four prices, the volume, the two trade times.
pub const ENCODED_LEN: usize = 4 * 8 + 16 + 2 * 8;

impl StoredBar {
    /// The bar of a single trade.
    pub fn of_trade(time: i64, at_ms: i64, price: f64, size: Volume) -> StoredBar {
        StoredBar {
            time,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: size,
            first_ms: at_ms,
            last_ms: at_ms,
        }
    }

    /// Adds a trade. None when the volume would overflow.
    pub fn add_trade(&mut self, at_ms: i64, price: f64, size: Volume) -> Option<()> {
        self.volume = self.volume.checked_add(size)?;
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        // Equal times: the trade applied last sets the open as it sets the
        // close (the spec's rule for ties).
        if at_ms <= self.first_ms {
            self.open = price;
            self.first_ms = at_ms;
        }
        if at_ms >= self.last_ms {
            self.close = price;
            self.last_ms = at_ms;
        }
        Some(())
    }

    /// Extends `self` by the next bar of the same coarser bar. None when the
    /// volume would overflow.
    pub fn absorb(&mut self, later: &StoredBar) -> Option<()> {
        self.volume = self.volume.checked_add(later.volume)?;
        self.high = self.high.max(later.high);
        self.low = self.low.min(later.low);
        self.close = later.close;
        self.last_ms = later.last_ms;
        Some(())
    }

    pub fn to_bar(&self) -> Bar {
        Bar {
            time: self.time,
            open: self.open,
            high: self.high,
            low: self.low,
            close: self.close,
            volume: self.volume.to_f64(),
        }
    }

    /// Little-endian: open, high, low, close (f64), volume (i128), first
    /// and last trade (i64). The time is the row's key, not stored here.
    pub fn encode(&self) -> [u8; ENCODED_LEN] {
        let mut out = [0u8; ENCODED_LEN];
        out[0..8].copy_from_slice(&self.open.to_le_bytes());
        out[8..16].copy_from_slice(&self.high.to_le_bytes());
        out[16..24].copy_from_slice(&self.low.to_le_bytes());
        out[24..32].copy_from_slice(&self.close.to_le_bytes());
        out[32..48].copy_from_slice(&self.volume.units().to_le_bytes());
        out[48..56].copy_from_slice(&self.first_ms.to_le_bytes());
        out[56..64].copy_from_slice(&self.last_ms.to_le_bytes());
        out
    }

    pub fn decode(time: i64, bytes: &[u8]) -> Option<StoredBar> {
        let bytes: &[u8; ENCODED_LEN] = bytes.try_into().ok()?;
        let f = |i: usize| f64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        let i = |i: usize| i64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or_default());
        let volume = i128::from_le_bytes(bytes[32..48].try_into().unwrap_or_default());
        Some(StoredBar {
            time,
            open: f(0),
            high: f(8),
            low: f(16),
            close: f(24),
            volume: Volume::from_units(volume),
            first_ms: i(48),
            last_ms: i(56),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Volume {
        Volume::parse(s).unwrap()
    }

    #[test]
    fn trades_in_any_order_give_the_same_bar() {
        let trades = [
            (1_000, 10.0, "1.5"),
            (5_000, 12.0, "0.1"),
            (3_000, 9.0, "2"),
        ];
        let fold = |order: &[usize]| {
            let (t, p, s) = trades[order[0]];
            let mut bar = StoredBar::of_trade(0, t, p, v(s));
            for &k in &order[1..] {
                let (t, p, s) = trades[k];
                bar.add_trade(t, p, v(s)).unwrap();
            }
            bar
        };
        let a = fold(&[0, 1, 2]);
        assert_eq!(a, fold(&[2, 1, 0]));
        assert_eq!(a, fold(&[1, 0, 2]));
        assert_eq!((a.open, a.high, a.low, a.close), (10.0, 12.0, 9.0, 12.0));
        assert_eq!(a.volume, v("3.6"));
        assert_eq!(StoredBar::decode(0, &a.encode()), Some(a));
    }

    #[test]
    fn between_trades_at_the_same_time_the_last_applied_sets_open_and_close() {
        let mut bar = StoredBar::of_trade(0, 2_000, 10.0, v("1"));
        bar.add_trade(2_000, 11.0, v("1")).unwrap();
        assert_eq!((bar.open, bar.close), (11.0, 11.0));
        bar.add_trade(2_000, 9.5, v("1")).unwrap();
        assert_eq!((bar.open, bar.close), (9.5, 9.5));
        // An earlier trade still opens, a later one still closes.
        bar.add_trade(1_000, 8.0, v("1")).unwrap();
        bar.add_trade(3_000, 12.0, v("1")).unwrap();
        assert_eq!((bar.open, bar.close), (8.0, 12.0));
        assert_eq!((bar.low, bar.high), (8.0, 12.0));
    }
}
