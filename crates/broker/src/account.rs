//! What fills do to an account: cash, positions netted per symbol (long or
//! short), their cost, realized P&L on reductions, unrealized P&L and
//! equity marked at the market, margin and buying power.
//!
//! Cash moves by each fill's notional (a buy pays it, a sell receives it,
//! also when it opens a short) and its commission. A position keeps its
//! signed quantity and its cost (the signed notional of what is open), so
//! nothing is rounded: the average price is cost / quantity, shown to 8
//! places; a reduction realizes the fill's proceeds less the reduced
//! share of the cost (that share rounded toward zero at 10^-16).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::matcher::Fill;
use crate::order::Side;
use crate::units::{Cash, Price, Qty};

/// One symbol's net position: `qty` > 0 long, < 0 short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub qty: i64,
    /// The signed notional of what is open (positive for a long).
    pub cost: Cash,
}

impl Position {
    /// The average price, to 8 places (None when flat).
    pub fn avg_price(&self) -> Option<Price> {
        (self.qty != 0).then(|| {
            // cost is in 10^-16, qty in 10^-8: cost / qty is in 10^-8.
            Price((self.cost.0 / i128::from(self.qty)) as i64)
        })
    }

    pub fn side(&self) -> Option<Side> {
        match self.qty {
            0 => None,
            q if q > 0 => Some(Side::Buy),
            _ => Some(Side::Sell),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub cash: Cash,
    pub realized: Cash,
    pub commission_paid: Cash,
    pub positions: BTreeMap<String, Position>,
}

impl Account {
    pub fn new(cash: Cash) -> Account {
        Account {
            cash,
            realized: Cash::ZERO,
            commission_paid: Cash::ZERO,
            positions: BTreeMap::new(),
        }
    }

    /// Books a fill of `symbol` with its `commission`.
    pub fn apply(&mut self, symbol: &str, fill: &Fill, commission: Cash) {
        let signed = fill.qty.0 * fill.side.sign();
        let notional = Cash::notional(fill.price, Qty(signed));
        self.cash = self.cash - notional - commission;
        self.commission_paid = self.commission_paid + commission;
        self.realized = self.realized - commission;
        let position = self.positions.entry(symbol.to_string()).or_default();
        let before = position.qty;
        let after = before + signed;
        if before == 0 || before.signum() == signed.signum() {
            // Opening or adding.
            position.cost = position.cost + notional;
        } else {
            // Reducing, closing, or reversing: the closed part realizes.
            let closed = signed.abs().min(before.abs());
            let share = Cash(position.cost.0 * i128::from(closed) / i128::from(before.abs()));
            let proceeds = Cash::notional(fill.price, Qty(closed * before.signum()));
            self.realized = self.realized + proceeds - share;
            position.cost = position.cost - share;
            if after != 0 && after.signum() != before.signum() {
                // Reversed: what is left of the fill opens the other way.
                position.cost = Cash::notional(fill.price, Qty(after));
            }
        }
        position.qty = after;
        if after == 0 {
            position.cost = Cash::ZERO;
            self.positions.remove(symbol);
        }
    }

    /// Unrealized P&L of the positions at `marks` (a symbol without a mark
    /// counts at its cost).
    pub fn unrealized(&self, marks: &impl Fn(&str) -> Option<Price>) -> Cash {
        self.positions
            .iter()
            .map(|(symbol, p)| match marks(symbol) {
                Some(mark) => Cash::notional(mark, Qty(p.qty)) - p.cost,
                None => Cash::ZERO,
            })
            .fold(Cash::ZERO, |a, b| a + b)
    }

    /// Cash plus what the positions are worth at `marks`.
    pub fn equity(&self, marks: &impl Fn(&str) -> Option<Price>) -> Cash {
        let value = self
            .positions
            .iter()
            .map(|(symbol, p)| match marks(symbol) {
                Some(mark) => Cash::notional(mark, Qty(p.qty)),
                None => p.cost,
            })
            .fold(Cash::ZERO, |a, b| a + b);
        self.cash + value
    }

    /// The margin the positions hold: each one's absolute value at its
    /// mark times its symbol's margin rate (basis points).
    pub fn margin(
        &self,
        marks: &impl Fn(&str) -> Option<Price>,
        margin_bp: &impl Fn(&str) -> i64,
    ) -> Cash {
        self.positions
            .iter()
            .map(|(symbol, p)| {
                let value = match marks(symbol) {
                    Some(mark) => Cash::notional(mark, Qty(p.qty.abs())),
                    None => Cash(p.cost.0.abs()),
                };
                value.times_bp(margin_bp(symbol))
            })
            .fold(Cash::ZERO, |a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(side: Side, price: &str, qty: &str) -> Fill {
        Fill {
            order: 1,
            side,
            price: Price::parse(price).unwrap(),
            qty: Qty::parse(qty).unwrap(),
            time_ms: 0,
        }
    }

    fn cash(s: &str) -> Cash {
        Cash::parse(s).unwrap()
    }

    #[test]
    fn buying_adding_and_selling_realize_exactly() {
        let mut a = Account::new(cash("100000"));
        a.apply("BTC", &fill(Side::Buy, "100.1", "0.3"), Cash::ZERO);
        a.apply("BTC", &fill(Side::Buy, "100.2", "0.7"), Cash::ZERO);
        let p = a.positions["BTC"];
        assert_eq!(p.qty, Qty::parse("1").unwrap().0);
        assert_eq!(p.cost, cash("100.17"));
        assert_eq!(p.avg_price(), Some(Price::parse("100.17").unwrap()));
        assert_eq!(a.cash, cash("99899.83"));
        // Sell 0.4 at 101: realizes 0.4 * (101 - 100.17) = 0.332.
        a.apply("BTC", &fill(Side::Sell, "101", "0.4"), Cash::ZERO);
        assert_eq!(a.realized, cash("0.332"));
        let mark = |_: &str| Some(Price::parse("102").unwrap());
        // 0.6 left at 100.17 each, marked at 102: 1.098.
        assert_eq!(a.unrealized(&mark), cash("1.098"));
        assert_eq!(
            a.equity(&mark),
            a.cash + Cash::notional(Price::parse("102").unwrap(), Qty::parse("0.6").unwrap())
        );
        assert_eq!(a.equity(&mark), cash("100001.43"));
        // Close the rest: flat, and equity is cash.
        a.apply("BTC", &fill(Side::Sell, "99", "0.6"), Cash::ZERO);
        assert!(a.positions.is_empty());
        assert_eq!(a.realized, cash("0.332") + cash("-0.702"));
        assert_eq!(a.cash, cash("100000") + a.realized);
    }

    #[test]
    fn a_sell_through_zero_reverses_into_a_short_and_commission_is_charged() {
        let mut a = Account::new(cash("1000"));
        let fee = cash("0.5");
        a.apply("X", &fill(Side::Buy, "10", "2"), fee);
        a.apply("X", &fill(Side::Sell, "12", "5"), fee);
        // 2 closed at +2 each, less two fees.
        assert_eq!(a.realized, cash("3"));
        let p = a.positions["X"];
        assert_eq!((p.qty, p.cost), (Qty::parse("-3").unwrap().0, cash("-36")));
        assert_eq!(p.side(), Some(Side::Sell));
        assert_eq!(p.avg_price(), Some(Price::parse("12").unwrap()));
        // The short gains when the price falls.
        let mark = |_: &str| Some(Price::parse("11").unwrap());
        assert_eq!(a.unrealized(&mark), cash("3"));
        assert_eq!(a.commission_paid, cash("1"));
        assert_eq!(a.equity(&mark), cash("1000") + cash("3") + cash("3"));
        // Half margin on its value at 11: 3 * 11 / 2.
        assert_eq!(a.margin(&mark, &|_| 5_000), cash("16.5"));
    }
}
