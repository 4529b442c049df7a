//! Volumes as exact decimals.
//!
//! A coarser bar's volume is the sum of its finer bars' volumes, and the
//! stores keep it up to date as trades arrive, in whatever order they come.
//! Summing floats would make the result depend on that order (0.1 + 0.2 is
//! not 0.3), so a daily bar would not equal the aggregate of its minutes.
//! Volumes are therefore counted in units of 10^-8 (a satoshi), in an
//! `i128`: sums are exact in any order, and nothing real overflows.

use std::fmt;

/// Decimal places a volume may have.
pub const DECIMALS: u32 = 8;
const SCALE: i128 = 100_000_000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Volume(i128);

impl Volume {
    pub const ZERO: Volume = Volume(0);

    pub fn from_units(units: i128) -> Volume {
        Volume(units)
    }

    pub fn units(self) -> i128 {
        self.0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn checked_add(self, other: Volume) -> Option<Volume> {
        self.0.checked_add(other.0).map(Volume)
    }

    /// Parses decimal text: `1200`, `0.25`, `+3`, `-1.5`, `1.5e3`. At most
    /// eight decimal places (after the exponent is applied).
    pub fn parse(text: &str) -> Result<Volume, String> {
        let bad = || format!("{text:?} is not a number");
        let t = text.trim();
        let (negative, t) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        let (mantissa, exponent) = match t.find(['e', 'E']) {
            Some(i) => {
                let e: i32 = t[i + 1..].parse().map_err(|_| bad())?;
                (&t[..i], e)
            }
            None => (t, 0),
        };
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        if int.is_empty() && frac.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        // digits * 10^(exponent - frac.len()), in units of 10^-8.
        let shift = exponent as i64 - frac.len() as i64 + i64::from(DECIMALS);
        let too_large = || format!("{text:?} is too large for a volume");
        let mut units: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(i128::from(b - b'0')))
                .ok_or_else(too_large)?;
        }
        if shift >= 0 {
            for _ in 0..shift {
                if units == 0 {
                    break;
                }
                units = units.checked_mul(10).ok_or_else(too_large)?;
            }
        } else {
            for _ in 0..-shift {
                if units == 0 {
                    break;
                }
                if units % 10 != 0 {
                    return Err(format!("{text:?} has more than {DECIMALS} decimal places"));
                }
                units /= 10;
            }
        }
        Ok(Volume(if negative { -units } else { units }))
    }

    /// The volume a JSON number stands for. A float's shortest decimal text
    /// is what a feeder most likely wrote (`0.1` for 0.1000000000000000055),
    /// so that is what is parsed.
    pub fn from_f64(v: f64) -> Result<Volume, String> {
        if !v.is_finite() {
            return Err(format!("{v} is not a finite number"));
        }
        // The common case without text: below 2^50 units two 8-decimal
        // numbers never round to the same float, so a whole number of units
        // that converts back to exactly `v` is the one its text stands for.
        let units = (v * SCALE as f64).round();
        if units.abs() < (1u64 << 50) as f64 && units / SCALE as f64 == v {
            return Ok(Volume(units as i128));
        }
        Volume::parse(&v.to_string())
    }

    /// The nearest `f64`, exactly as parsing the decimal text would give.
    pub fn to_f64(self) -> f64 {
        const EXACT: i128 = 1 << 53;
        if self.0.abs() < EXACT {
            // An exact integer over an exact power of ten: one rounding.
            return self.0 as f64 / SCALE as f64;
        }
        if self.0 % SCALE == 0 && (self.0 / SCALE).abs() < EXACT {
            return (self.0 / SCALE) as f64;
        }
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

impl fmt::Display for Volume {
    /// Plain decimal text without trailing zeros: `1200`, `0.25`, `-3.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let int = abs / SCALE as u128;
        let frac = abs % SCALE as u128;
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:08}");
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

/// Decimal places as written in `text` (`1.50` has two), for inferring a
/// symbol's precision from its data; 0 for exponent forms and integers.
pub fn decimals_in(text: &str) -> u32 {
    let t = text.trim();
    if t.contains(['e', 'E']) {
        return 0;
    }
    t.split_once('.').map_or(0, |(_, frac)| frac.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_exactly() {
        for (text, units, shown) in [
            ("0", 0, "0"),
            ("1200", 120_000_000_000, "1200"),
            ("0.1", 10_000_000, "0.1"),
            ("0.00000001", 1, "0.00000001"),
            ("+2.50", 250_000_000, "2.5"),
            ("-1.5", -150_000_000, "-1.5"),
            ("1.5e3", 150_000_000_000, "1500"),
            ("25E-2", 25_000_000, "0.25"),
            (".5", 50_000_000, "0.5"),
            ("7.", 700_000_000, "7"),
        ] {
            let v = Volume::parse(text).unwrap();
            assert_eq!(v.units(), units, "{text}");
            assert_eq!(v.to_string(), shown, "{text}");
            assert_eq!(Volume::parse(shown).unwrap(), v);
        }
        assert_eq!(
            Volume::parse("1e-999999999").unwrap_err(),
            "\"1e-999999999\" has more than 8 decimal places"
        );
        assert_eq!(Volume::parse("0e-999999999"), Ok(Volume::ZERO));
        assert!(Volume::parse("1e999999999")
            .unwrap_err()
            .contains("too large"));
        for bad in ["", ".", "1.2.3", "abc", "1e", "0x10", "1 000", "nan", "inf"] {
            assert!(Volume::parse(bad).is_err(), "{bad:?}");
        }
        let err = Volume::parse("0.123456789").unwrap_err();
        assert!(err.contains("more than 8 decimal places"), "{err}");
    }

    #[test]
    fn sums_are_exact_in_any_order() {
        let parts = ["0.1", "0.2", "0.3", "1e-8", "123456.78"];
        let sum = |order: &[usize]| {
            order.iter().fold(Volume::ZERO, |acc, &i| {
                acc.checked_add(Volume::parse(parts[i]).unwrap()).unwrap()
            })
        };
        assert_eq!(sum(&[0, 1, 2, 3, 4]), sum(&[4, 3, 2, 1, 0]));
        assert_eq!(sum(&[0, 1, 2, 3, 4]).to_string(), "123457.38000001");
    }

    #[test]
    fn converts_to_the_nearest_float() {
        for text in [
            "0.1",
            "0.3",
            "123.45",
            "250000000",
            "9007199254740993",
            "12345678901.2345678",
        ] {
            let v = Volume::parse(text).unwrap();
            assert_eq!(v.to_f64(), text.parse::<f64>().unwrap(), "{text}");
        }
        for x in [
            0.1,
            1e-8,
            42.0,
            1234.5678,
            1e15,
            0.3,
            2.675,
            123456.78901234,
        ] {
            assert_eq!(Volume::from_f64(x).unwrap().to_f64(), x);
            // The fast path and the text agree.
            assert_eq!(Volume::from_f64(x), Volume::parse(&x.to_string()), "{x}");
        }
        assert!(Volume::from_f64(0.123456789).is_err());
        assert_eq!(decimals_in("1.50"), 2);
        assert_eq!(decimals_in("100"), 0);
    }
}
