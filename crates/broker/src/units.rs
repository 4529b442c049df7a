//! Exact amounts. Prices and quantities are fixed-point decimals with 8
//! places (what a symbol's `pricescale` and `volume_precision` allow at
//! most); cash is their product's scale, 16 places, so a notional, a
//! commission or a P&L is never rounded on the way.

use std::fmt;

use serde::{Deserialize, Serialize};

/// 10^8: one unit of a [`Price`] or a [`Qty`] is 10^-8.
pub const SCALE: i64 = 100_000_000;

/// A price: units of 10^-8 (stored as that integer).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Price(pub i64);

/// A quantity: units of 10^-8 (stored as that integer).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Qty(pub i64);

/// Cash: units of 10^-16 (a price times a quantity, exactly). Stored as
/// its exact decimal text: a JSON reader may not take a 128-bit integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cash(pub i128);

impl Serialize for Cash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cash, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Cash::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an amount of cash: {text}")))
    }
}

/// The exact decimal `text` (`123.45`, `-0.5`, `1e-3`) in units of
/// 10^-`places`; None when it has more places or does not fit.
fn parse_units(text: &str, places: u32) -> Option<i128> {
    let text = text.trim();
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (negative, digits) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let all: String = format!("{int}{frac}");
    let mut value: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    // value * 10^(exponent - frac.len()) in units of 10^-places.
    let shift = exponent - frac.len() as i32 + places as i32;
    if shift >= 0 {
        for _ in 0..shift {
            value = value.checked_mul(10)?;
        }
    } else {
        for _ in 0..(-shift) {
            if value % 10 != 0 {
                return None;
            }
            value /= 10;
        }
    }
    Some(if negative { -value } else { value })
}

/// `v` exactly, from its shortest text (what the client most likely
/// wrote: `0.1`, not 0.1000000000000000055).
fn units_of_f64(v: f64, places: u32) -> Option<i128> {
    if !v.is_finite() {
        return None;
    }
    parse_units(&format!("{v:e}"), places)
}

fn write_units(f: &mut fmt::Formatter<'_>, units: i128, places: u32) -> fmt::Result {
    let scale = 10i128.pow(places);
    let sign = if units < 0 { "-" } else { "" };
    let (int, frac) = (units.abs() / scale, units.abs() % scale);
    if frac == 0 {
        return write!(f, "{sign}{int}");
    }
    let frac = format!("{frac:0width$}", width = places as usize);
    write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
}

impl Price {
    /// The price `v` exactly, if it has at most 8 decimal places.
    pub fn from_f64(v: f64) -> Option<Price> {
        i64::try_from(units_of_f64(v, 8)?).ok().map(Price)
    }

    pub fn parse(text: &str) -> Option<Price> {
        i64::try_from(parse_units(text, 8)?).ok().map(Price)
    }

    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

impl Qty {
    pub const ZERO: Qty = Qty(0);

    pub fn from_f64(v: f64) -> Option<Qty> {
        i64::try_from(units_of_f64(v, 8)?).ok().map(Qty)
    }

    pub fn parse(text: &str) -> Option<Qty> {
        i64::try_from(parse_units(text, 8)?).ok().map(Qty)
    }

    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl Cash {
    pub const ZERO: Cash = Cash(0);

    /// `price * qty`, exactly.
    pub fn notional(price: Price, qty: Qty) -> Cash {
        Cash(i128::from(price.0) * i128::from(qty.0))
    }

    pub fn from_f64(v: f64) -> Option<Cash> {
        units_of_f64(v, 16).map(Cash)
    }

    pub fn parse(text: &str) -> Option<Cash> {
        parse_units(text, 16).map(Cash)
    }

    /// For the wire, where JSON numbers are doubles: the nearest double to
    /// the exact amount (its text is exact; this is the one rounding).
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// `self * ratio` for a ratio in basis points (1/10,000), rounded
    /// toward zero at 10^-16: a margin at a leverage.
    pub fn times_bp(self, bp: i64) -> Cash {
        Cash(self.0 * i128::from(bp) / 10_000)
    }
}

impl std::ops::Add for Cash {
    type Output = Cash;
    fn add(self, o: Cash) -> Cash {
        Cash(self.0 + o.0)
    }
}

impl std::ops::Sub for Cash {
    type Output = Cash;
    fn sub(self, o: Cash) -> Cash {
        Cash(self.0 - o.0)
    }
}

impl std::ops::Neg for Cash {
    type Output = Cash;
    fn neg(self) -> Cash {
        Cash(-self.0)
    }
}

impl std::ops::Add for Qty {
    type Output = Qty;
    fn add(self, o: Qty) -> Qty {
        Qty(self.0 + o.0)
    }
}

impl std::ops::Sub for Qty {
    type Output = Qty;
    fn sub(self, o: Qty) -> Qty {
        Qty(self.0 - o.0)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_units(f, i128::from(self.0), 8)
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_units(f, i128::from(self.0), 8)
    }
}

impl fmt::Display for Cash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_units(f, self.0, 16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_and_written_exactly() {
        assert_eq!(Price::from_f64(0.1), Some(Price(10_000_000)));
        assert_eq!(Price::from_f64(98_100.25), Some(Price(9_810_025_000_000)));
        assert_eq!(Price::from_f64(1e-9), None, "more than 8 places");
        assert_eq!(Price::parse("-0.5"), Some(Price(-50_000_000)));
        assert_eq!(Price::parse("1.2.3"), None);
        assert_eq!(Qty::from_f64(0.00000001), Some(Qty(1)));
        assert_eq!(Price(9_810_025_000_000).to_string(), "98100.25");
        assert_eq!(Qty(1).to_string(), "0.00000001");
        assert_eq!(Price::from_f64(f64::NAN), None);
    }

    #[test]
    fn cash_is_a_product_with_nothing_rounded() {
        // 0.1 * 0.3 is 0.03 exactly, not 0.030000000000000002.
        let n = Cash::notional(Price::from_f64(0.1).unwrap(), Qty::from_f64(0.3).unwrap());
        assert_eq!(n.to_string(), "0.03");
        let sum = (0..10).fold(Cash::ZERO, |acc, _| acc + n);
        assert_eq!(sum.to_string(), "0.3");
        let big = Cash::notional(
            Price::from_f64(98765.4321).unwrap(),
            Qty::from_f64(12.34567891).unwrap(),
        );
        assert_eq!(big.to_string(), "1219326.312114007011");
        assert_eq!(Cash::parse("1219326.312114007011"), Some(big));
    }
}
