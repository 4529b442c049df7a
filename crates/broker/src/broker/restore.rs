//! Rebuilding a broker from its events: what the ledger keeps is every
//! account's events in the order they happened, and each carries the whole
//! new state of what it names (an order, a position, the balance, a
//! leverage), so the last event of each thing is the thing. Everything
//! else the broker keeps (an order's brackets, the brackets of positions,
//! the book, the DAY expiries, the trailing stops) follows from the orders.

use std::collections::HashMap;

use super::{AccountState, Broker, Change, Event, Kept};
use crate::order::{OrderId, OrderType, Parent, Status};
use crate::rules::SymbolRules;
use crate::units::Cash;

impl Broker {
    /// The broker that `events` (every account's, in the order they
    /// happened) leave, trading `rules`. Its book has no market yet: the
    /// next print sets it. Orders at one price keep the order in which
    /// they last entered the book.
    pub fn restore(
        starting_cash: Cash,
        commission: Cash,
        rules: impl IntoIterator<Item = (String, SymbolRules)>,
        events: impl IntoIterator<Item = Event>,
    ) -> Broker {
        let mut b = Broker::new(starting_cash, commission);
        for (symbol, r) in rules {
            b.list(&symbol, r);
        }
        // Where each order's newest event stands: the order the book had.
        let mut touched: HashMap<OrderId, usize> = HashMap::new();
        for (
            at,
            Event {
                account,
                seq,
                change,
            },
        ) in events.into_iter().enumerate()
        {
            let state = b.state(&account);
            state.seq = state.seq.max(seq);
            match change {
                Change::Order(order) => {
                    touched.insert(order.id, at);
                    b.next_id = b.next_id.max(order.id + 1);
                    b.orders.insert(
                        order.id,
                        Kept {
                            owner: account,
                            order,
                            children: Vec::new(),
                        },
                    );
                }
                Change::Execution(x) => state.executions.push(x),
                Change::Position { symbol, position } => {
                    if position.qty == 0 {
                        state.account.positions.remove(&symbol);
                    } else {
                        state.account.positions.insert(symbol, position);
                    }
                }
                Change::Balance(balance) => {
                    state.account.cash = balance.cash;
                    state.account.realized = balance.realized;
                    state.account.commission_paid = balance.commission_paid;
                }
                Change::Leverage { symbol, leverage } => {
                    state.leverage.insert(symbol, leverage);
                }
            }
        }
        b.link(touched);
        b
    }

    /// Derives from the orders what the broker keeps beside them.
    fn link(&mut self, touched: HashMap<OrderId, usize>) {
        let ids: Vec<OrderId> = self.orders.keys().copied().collect();
        let mut resting = Vec::new();
        for id in ids {
            let kept = &self.orders[&id];
            let (owner, order) = (kept.owner.clone(), kept.order.clone());
            let symbol = order.request.symbol.clone();
            let open = !order.status.is_final();
            match &order.parent {
                Some(Parent::Order(parent)) => {
                    if let Some(p) = self.orders.get_mut(parent) {
                        p.children.push(id);
                    }
                }
                Some(Parent::Position(of)) if open => {
                    let state: &mut AccountState = self.state(&owner);
                    state
                        .position_brackets
                        .entry(of.clone())
                        .or_default()
                        .push(id);
                }
                _ => {}
            }
            if !open {
                continue;
            }
            if let Some(at) = order.request.expires_at_ms {
                self.expiries.insert((at, id));
            }
            if order.status != Status::Working {
                continue;
            }
            if order.parent.is_some() {
                self.state(&owner)
                    .working_brackets
                    .entry(symbol.clone())
                    .or_default()
                    .push(id);
            }
            let r = &order.request;
            // A working order that cannot rest (a market order) would have
            // filled or ended: nothing to put back.
            let Some(how) = super::resting_of(&order) else {
                continue;
            };
            if r.order_type == OrderType::Stop && r.trailing_stop.is_some() {
                self.trailing.entry(symbol.clone()).or_default().push(id);
            }
            resting.push((touched.get(&id).copied().unwrap_or(0), id, how));
        }
        resting.sort_by_key(|(at, id, _)| (*at, *id));
        for (_, id, how) in resting {
            let r = &self.orders[&id].order.request;
            let (symbol, side, qty) = (r.symbol.clone(), r.side, r.qty);
            if let Some(book) = self.books.get_mut(&symbol) {
                book.rest(id, side, how, qty);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Print;
    use crate::order::{Duration, OrderRequest, Side};
    use crate::units::{Price, Qty};

    fn px(units: i64) -> Price {
        Price(units * 1_000_000) // 0.01 steps
    }

    fn rules() -> Vec<(String, SymbolRules)> {
        let r = SymbolRules {
            tick: Price(1_000_000),
            qty_min: Qty(100_000),
            qty_max: Qty(100 * crate::units::SCALE),
            qty_step: Qty(100_000),
            margin_bp: 10_000,
            max_leverage: 5,
        };
        vec![("BTCUSD".into(), r.clone()), ("ETHUSD".into(), r)]
    }

    fn fresh() -> Broker {
        Broker::restore(
            Cash::parse("100000").unwrap(),
            Cash::parse("0.5").unwrap(),
            rules(),
            Vec::new(),
        )
    }

    /// The market's price at step `i`: a walk around 1000 in both symbols.
    fn price(i: u64, symbol: &str) -> Price {
        let wobble = ((i * 7919 + symbol.len() as u64 * 31) % 41) as i64 - 20;
        px(100_000 + wobble * 37 + ((i / 10) as i64 % 9) * 50)
    }

    /// Step `i` of a long, varied session: every kind of order, bracket
    /// and command, decided by `i` alone, so two brokers in the same state
    /// given the same steps must answer alike.
    fn step(b: &mut Broker, i: u64) -> Vec<Event> {
        let symbol = if i.is_multiple_of(5) {
            "ETHUSD"
        } else {
            "BTCUSD"
        };
        let account = ["alice", "bob", "carol"][(i % 3) as usize];
        let side = if (i / 3).is_multiple_of(2) {
            Side::Buy
        } else {
            Side::Sell
        };
        let market = b.last(symbol).unwrap_or(px(100_000));
        let away = |ticks: i64, toward: Side| Price(market.0 + toward.sign() * ticks * 1_000_000);
        let qty = Qty(100_000 * (1 + (i % 4) as i64));
        let now = i as i64 * 1_000;
        let result = match i % 13 {
            0 | 7 => b
                .place(
                    account,
                    OrderRequest::new(symbol, OrderType::Market, side, qty),
                    now,
                )
                .map(|r| r.1),
            1 | 8 => {
                let mut r = OrderRequest::new(symbol, OrderType::Limit, side, qty);
                let entry = away(300, side.opposite());
                r.limit_price = Some(entry);
                r.take_profit = Some(Price(entry.0 + side.sign() * 200_000_000));
                r.stop_loss = Some(Price(entry.0 - side.sign() * 200_000_000));
                r.trailing_stop = i.is_multiple_of(2).then_some(px(15_000));
                b.place(account, r, now).map(|r| r.1)
            }
            2 => {
                let mut r = OrderRequest::new(symbol, OrderType::Stop, side, qty);
                r.stop_price = Some(away(400, side));
                r.trailing_stop = (i % 4 == 2).then_some(px(40_000));
                b.place(account, r, now).map(|r| r.1)
            }
            3 => {
                let mut r = OrderRequest::new(symbol, OrderType::StopLimit, side, qty);
                r.stop_price = Some(away(200, side));
                r.limit_price = Some(away(250, side));
                r.duration = Duration::Day;
                r.expires_at_ms = Some(now + 40_000);
                b.place(account, r, now).map(|r| r.1)
            }
            4 => {
                let open: Vec<OrderId> = b
                    .orders(account)
                    .iter()
                    .filter(|o| o.status == Status::Working && o.request.limit_price.is_some())
                    .map(|o| o.id)
                    .collect();
                match open.get((i as usize / 13) % open.len().max(1)) {
                    Some(&id) => {
                        let o = b.order(account, id).unwrap().clone();
                        let q = Qty(o.request.qty.0 + 100_000);
                        b.modify(
                            account,
                            id,
                            q,
                            o.request.limit_price,
                            o.request.stop_price,
                            now,
                        )
                    }
                    None => Ok(Vec::new()),
                }
            }
            5 => match b
                .orders(account)
                .iter()
                .rev()
                .find(|o| !o.status.is_final())
            {
                Some(o) => {
                    let id = o.id;
                    b.cancel(account, id)
                }
                None => Ok(Vec::new()),
            },
            6 => b
                .close_position(account, symbol, Some(Qty(100_000)), now)
                .map(|r| r.1),
            9 => b.reverse_position(account, symbol, now).map(|r| r.1),
            10 => {
                let tp = away(500, Side::Buy);
                let sl = away(500, Side::Sell);
                let long = b
                    .account(account)
                    .positions
                    .get(symbol)
                    .is_some_and(|p| p.qty > 0);
                let (tp, sl) = if long { (tp, sl) } else { (sl, tp) };
                b.edit_position_brackets(account, symbol, Some(tp), Some(sl), now)
            }
            11 => b.set_leverage(account, symbol, 1 + (i % 5) as u32),
            _ if i % 91 == 12 => Ok(b.reset(account)),
            _ => Ok(b.cancel_orders(account, symbol, Some(side), None)),
        };
        let mut out = result.unwrap_or_default();
        for s in ["BTCUSD", "ETHUSD"] {
            let print = Print {
                price: price(i, s),
                time_ms: now + 500,
                opens_bar: i.is_multiple_of(6),
            };
            out.extend(b.on_print(s, print));
        }
        out
    }

    /// Through JSON and back, as the ledger keeps them.
    fn stored(events: &[Event]) -> Vec<Event> {
        let text = serde_json::to_string(events).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_broker_rebuilt_from_its_events_goes_on_exactly_as_the_original() {
        let mut original = fresh();
        let mut ledger = Vec::new();
        for i in 0..400u64 {
            ledger.extend(step(&mut original, i));
        }
        let kinds = |f: fn(&Change) -> bool| ledger.iter().filter(|e| f(&e.change)).count();
        assert!(kinds(|c| matches!(c, Change::Execution(_))) > 50);
        assert!(kinds(|c| matches!(c, Change::Order(o) if o.triggered)) > 0);
        assert!(kinds(|c| matches!(c, Change::Order(o) if o.parent.is_some())) > 20);
        assert!(kinds(|c| matches!(c, Change::Leverage { .. })) > 5);
        assert!(
            kinds(
                |c| matches!(c, Change::Order(o) if o.message.as_deref() == Some("expired at the close of its session"))
            ) > 0
        );

        let mut rebuilt = Broker::restore(
            Cash::parse("100000").unwrap(),
            Cash::parse("0.5").unwrap(),
            rules(),
            stored(&ledger),
        );
        for account in ["alice", "bob", "carol"] {
            assert_eq!(rebuilt.seq(account), original.seq(account));
            assert_eq!(rebuilt.account(account), original.account(account));
            let (a, b) = (rebuilt.orders(account), original.orders(account));
            assert_eq!(a, b);
            assert_eq!(
                rebuilt.executions(account, None),
                original.executions(account, None)
            );
        }
        // The rebuilt book learns the market from the next print; the
        // original has seen that price already, so the print changes
        // nothing in either.
        for s in ["BTCUSD", "ETHUSD"] {
            let print = Print {
                price: original.last(s).unwrap(),
                time_ms: 399_500,
                opens_bar: false,
            };
            assert_eq!(original.on_print(s, print), Vec::new());
            assert_eq!(rebuilt.on_print(s, print), Vec::new());
        }
        // From here on both answer every step alike, fills included.
        let mut compared = 0;
        for i in 400..800u64 {
            let (a, b) = (step(&mut original, i), step(&mut rebuilt, i));
            compared += a.len();
            assert_eq!(a, b, "step {i}");
        }
        assert!(compared > 200);
    }
}
