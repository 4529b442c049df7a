//! Resting orders and the prints that fill them: one book per symbol.
//!
//! A book keeps four ordered sets (buy limits best first, sell limits best
//! first, buy stops lowest first, sell stops highest first), so a print
//! looks only at the orders it fills: O(log n) per order it touches, and
//! nothing for the rest. Equal prices keep their arrival order.
//!
//! The fill rules (`docs/BROKER.md`):
//! * a market order fills at once at the ask (buy) or bid (sell) when the
//!   market quotes them, else at the last print;
//! * a limit order fills at once at the market when it is marketable
//!   (never beyond its limit); otherwise it rests until a print at or
//!   through the limit, and fills at the limit, or at the print's price
//!   when that print opens a bar (the market opened through the limit);
//! * a stop triggers on the first print at or through the stop and fills
//!   at that print's price (a gap fills at the gapped price, not at the
//!   stop); a stop-limit then becomes a limit at its limit price;
//! * every order fills whole (no partial fills, no queue position, no
//!   market impact).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::order::{OrderId, Side};
use crate::units::{Price, Qty};

/// A trade the market printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Print {
    pub price: Price,
    pub time_ms: i64,
    /// The first print of its bar: the market may have moved past prices
    /// that never printed since the previous one (a gap).
    pub opens_bar: bool,
}

/// An order filled: at `price`, all of its quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fill {
    pub order: OrderId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub time_ms: i64,
}

/// How an order waits in the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resting {
    Limit(Price),
    Stop(Price),
    StopLimit { stop: Price, limit: Price },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    side: Side,
    resting: Resting,
    qty: Qty,
    seq: u64,
}

/// One symbol's resting orders and its market.
#[derive(Default)]
pub struct Book {
    last: Option<Price>,
    quote: Option<(Price, Price)>,
    entries: HashMap<OrderId, Entry>,
    buy_limits: BTreeSet<(Reverse<Price>, u64, OrderId)>,
    sell_limits: BTreeSet<(Price, u64, OrderId)>,
    buy_stops: BTreeSet<(Price, u64, OrderId)>,
    sell_stops: BTreeSet<(Reverse<Price>, u64, OrderId)>,
    seq: u64,
    /// Stop-limits the last print turned into limits without filling
    /// them (see [`Book::take_triggered`]).
    triggered: Vec<OrderId>,
}

impl Book {
    /// The last print's price.
    pub fn last(&self) -> Option<Price> {
        self.last
    }

    /// The last price, known without a print (matching nothing).
    pub fn seed(&mut self, last: Price) {
        self.last.get_or_insert(last);
    }

    /// The market's bid and ask, when a source quotes them.
    pub fn set_quote(&mut self, bid: Price, ask: Price) {
        self.quote = Some((bid, ask));
    }

    /// The price an order of `side` trades at now: the ask for a buy, the
    /// bid for a sell, else the last print.
    pub fn market(&self, side: Side) -> Option<Price> {
        match (self.quote, side) {
            (Some((_, ask)), Side::Buy) => Some(ask),
            (Some((bid, _)), Side::Sell) => Some(bid),
            (None, _) => self.last,
        }
    }

    /// Where a limit of `side` at `limit` fills now, if it is marketable:
    /// at the market, which is at or better than the limit.
    pub fn marketable(&self, side: Side, limit: Price) -> Option<Price> {
        let market = self.market(side)?;
        let crosses = match side {
            Side::Buy => market <= limit,
            Side::Sell => market >= limit,
        };
        crosses.then_some(market)
    }

    /// Puts an order in the book.
    pub fn rest(&mut self, id: OrderId, side: Side, resting: Resting, qty: Qty) {
        self.seq += 1;
        let entry = Entry {
            side,
            resting,
            qty,
            seq: self.seq,
        };
        self.index(id, &entry, true);
        self.entries.insert(id, entry);
    }

    /// Takes an order out of the book; false if it was not there.
    pub fn cancel(&mut self, id: OrderId) -> bool {
        match self.entries.remove(&id) {
            Some(entry) => {
                self.index(id, &entry, false);
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn index(&mut self, id: OrderId, e: &Entry, insert: bool) {
        macro_rules! put {
            ($set:expr, $key:expr) => {{
                if insert {
                    $set.insert($key);
                } else {
                    $set.remove(&$key);
                }
            }};
        }
        match (e.side, e.resting) {
            (Side::Buy, Resting::Limit(p)) => put!(self.buy_limits, (Reverse(p), e.seq, id)),
            (Side::Sell, Resting::Limit(p)) => put!(self.sell_limits, (p, e.seq, id)),
            (Side::Buy, Resting::Stop(s) | Resting::StopLimit { stop: s, .. }) => {
                put!(self.buy_stops, (s, e.seq, id))
            }
            (Side::Sell, Resting::Stop(s) | Resting::StopLimit { stop: s, .. }) => {
                put!(self.sell_stops, (Reverse(s), e.seq, id))
            }
        }
    }

    /// A print: the stops it triggers, then the limits it reaches, filled
    /// in price priority (then arrival).
    pub fn on_print(&mut self, print: Print) -> Vec<Fill> {
        self.last = Some(print.price);
        let mut fills = Vec::new();
        let p = print.price;
        let fill = |id, e: &Entry, price| Fill {
            order: id,
            side: e.side,
            price,
            qty: e.qty,
            time_ms: print.time_ms,
        };
        // Stops touched: a stop fills at this print; a stop-limit becomes
        // a limit (filled below if this print reaches it).
        let mut triggered = Vec::new();
        while let Some(&(stop, _, id)) = self.buy_stops.first() {
            if stop > p {
                break;
            }
            triggered.push(id);
            self.buy_stops.pop_first();
        }
        while let Some(&(Reverse(stop), _, id)) = self.sell_stops.first() {
            if stop < p {
                break;
            }
            triggered.push(id);
            self.sell_stops.pop_first();
        }
        // Triggered in arrival order, whichever side.
        triggered.sort_by_key(|id| self.entries[id].seq);
        // Stop-limits this print converts: not in the book before it, so
        // the market did not pass their limits on the way; one this print
        // reaches fills at the print, as any marketable limit.
        let mut converted = Vec::new();
        for id in triggered {
            let entry = self.entries[&id];
            match entry.resting {
                Resting::Stop(_) => {
                    self.entries.remove(&id);
                    fills.push(fill(id, &entry, p));
                }
                Resting::StopLimit { limit, .. } => {
                    let converted_entry = Entry {
                        resting: Resting::Limit(limit),
                        ..entry
                    };
                    self.index(id, &converted_entry, true);
                    self.entries.insert(id, converted_entry);
                    converted.push(id);
                }
                Resting::Limit(_) => unreachable!("a limit is not in the stop sets"),
            }
        }
        // Limits reached: at the limit, or at the print when it opens the
        // bar through the limit.
        while let Some(&(Reverse(limit), _, id)) = self.buy_limits.first() {
            if limit < p {
                break;
            }
            self.buy_limits.pop_first();
            let entry = self.entries.remove(&id).expect("indexed orders are kept");
            let price = if print.opens_bar || converted.contains(&id) {
                p
            } else {
                limit
            };
            fills.push(fill(id, &entry, price));
        }
        while let Some(&(limit, _, id)) = self.sell_limits.first() {
            if limit > p {
                break;
            }
            self.sell_limits.pop_first();
            let entry = self.entries.remove(&id).expect("indexed orders are kept");
            let price = if print.opens_bar || converted.contains(&id) {
                p
            } else {
                limit
            };
            fills.push(fill(id, &entry, price));
        }
        converted.retain(|id| self.entries.contains_key(id));
        self.triggered = converted;
        fills
    }

    /// The stop-limits the last print triggered that rest now as limits:
    /// a change of the order its owner is told of, and what a rebuilt book
    /// must know ([`Book::rest`] them as [`Resting::Limit`]).
    pub fn take_triggered(&mut self) -> Vec<OrderId> {
        std::mem::take(&mut self.triggered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn px(s: &str) -> Price {
        Price::parse(s).unwrap()
    }

    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }

    fn print(price: &str, time_ms: i64) -> Print {
        Print {
            price: px(price),
            time_ms,
            opens_bar: false,
        }
    }

    #[test]
    fn a_resting_limit_fills_at_its_limit_when_the_market_trades_through_it() {
        let mut book = Book::default();
        book.on_print(print("101", 1));
        book.rest(1, Side::Buy, Resting::Limit(px("100")), q("1"));
        assert!(book.on_print(print("100.5", 2)).is_empty());
        let fills = book.on_print(print("99.5", 3));
        assert_eq!(
            fills,
            [Fill {
                order: 1,
                side: Side::Buy,
                price: px("100"),
                qty: q("1"),
                time_ms: 3
            }]
        );
        assert!(book.is_empty());
    }

    #[test]
    fn a_limit_the_market_opens_through_fills_at_the_opening_print() {
        let mut book = Book::default();
        book.on_print(print("101", 1));
        book.rest(1, Side::Sell, Resting::Limit(px("102")), q("1"));
        let open = Print {
            opens_bar: true,
            ..print("103.25", 2)
        };
        assert_eq!(book.on_print(open)[0].price, px("103.25"));
    }

    #[test]
    fn a_stop_fills_at_the_print_that_touches_it_and_a_gap_at_the_gapped_price() {
        let mut book = Book::default();
        book.on_print(print("100", 1));
        book.rest(1, Side::Sell, Resting::Stop(px("98")), q("1"));
        book.rest(2, Side::Buy, Resting::Stop(px("102")), q("2"));
        assert!(book.on_print(print("99", 2)).is_empty());
        // Gapped down from 99 to 97: filled at 97, not at the stop.
        let fills = book.on_print(print("97", 3));
        assert_eq!(
            (fills.len(), fills[0].order, fills[0].price),
            (1, 1, px("97"))
        );
        let fills = book.on_print(print("102", 4));
        assert_eq!((fills[0].order, fills[0].price), (2, px("102")));
    }

    #[test]
    fn a_stop_limit_becomes_a_limit_when_touched() {
        let mut book = Book::default();
        book.on_print(print("100", 1));
        let resting = Resting::StopLimit {
            stop: px("102"),
            limit: px("102.5"),
        };
        book.rest(1, Side::Buy, resting, q("1"));
        // Gapped over the limit: triggered, not filled (never beyond it).
        assert!(book.on_print(print("103", 2)).is_empty());
        assert_eq!(book.len(), 1);
        // Back at 102.4: filled at the limit, the market having traded
        // through it.
        let fills = book.on_print(print("102.4", 3));
        assert_eq!(fills[0].price, px("102.5"));
        // Triggered and reached by one print: filled at that print.
        book.rest(2, Side::Buy, resting, q("1"));
        let fills = book.on_print(print("102.25", 4));
        assert_eq!((fills[0].order, fills[0].price), (2, px("102.25")));
    }

    #[test]
    fn best_price_first_then_arrival_and_a_cancel_takes_an_order_out() {
        let mut book = Book::default();
        book.on_print(print("100", 1));
        book.rest(1, Side::Buy, Resting::Limit(px("99")), q("1"));
        book.rest(2, Side::Buy, Resting::Limit(px("99.5")), q("1"));
        book.rest(3, Side::Buy, Resting::Limit(px("99")), q("1"));
        book.rest(4, Side::Buy, Resting::Limit(px("98")), q("1"));
        assert!(book.cancel(3));
        assert!(!book.cancel(3));
        let order: Vec<OrderId> = book
            .on_print(print("98.5", 2))
            .iter()
            .map(|f| f.order)
            .collect();
        assert_eq!(order, [2, 1]);
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn marketable_limits_fill_at_the_market_never_beyond_the_limit() {
        let mut book = Book::default();
        book.on_print(print("100", 1));
        assert_eq!(book.marketable(Side::Buy, px("101")), Some(px("100")));
        assert_eq!(book.marketable(Side::Buy, px("99")), None);
        book.set_quote(px("99.9"), px("100.1"));
        assert_eq!(book.market(Side::Buy), Some(px("100.1")));
        assert_eq!(book.market(Side::Sell), Some(px("99.9")));
        assert_eq!(book.marketable(Side::Buy, px("100")), None);
        assert_eq!(book.marketable(Side::Sell, px("99.9")), Some(px("99.9")));
    }

    #[test]
    fn a_print_costs_only_the_orders_it_fills() {
        // 100,000 resting orders: a print that fills none looks at none.
        let mut book = Book::default();
        book.on_print(print("1000", 0));
        for i in 0..100_000u64 {
            let price = Price(px("500").0 + (i as i64 % 400) * px("0.01").0);
            book.rest(i, Side::Buy, Resting::Limit(price), q("1"));
        }
        assert!(book.on_print(print("999", 1)).is_empty());
        let fills = book.on_print(print("503.99", 2));
        assert_eq!(fills.len(), 250);
        assert!(fills.iter().all(|f| f.price == px("503.99")));
        assert_eq!(book.len(), 100_000 - 250);
    }
}
