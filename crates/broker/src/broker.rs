//! The broker as a state machine: commands (place, cancel, close) and the
//! market's prints in, events (order updates, executions, positions) out,
//! with nothing else deciding anything. Each account's events carry the
//! account's own sequence number, so a client that sees a gap knows to
//! read the state again.
//!
//! Brackets: an order's take-profit and stop-loss are orders of their own,
//! on the other side and of the same quantity, inactive until their parent
//! fills, then working, one-cancels-other; cancelled with their parent.
//! A position's brackets likewise, for its whole quantity; every bracket
//! of a symbol goes when the account's position in it closes.
//!
//! DAY orders end at the `expires_at_ms` they were given (the session's
//! close): a print or a clock tick at or after it cancels them before
//! anything else, so an expired order never fills.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::account::{Account, Position};
use crate::matcher::{Book, Fill, Print, Resting};
use crate::order::{Duration, Order, OrderId, OrderRequest, OrderType, Parent, Side, Status};
use crate::rules::{Refusal, SymbolRules};
use crate::units::{Cash, Price, Qty};

mod restore;

/// Whose account: the token's `sub`, or the local demo account.
pub type AccountId = String;

/// One fill as the account sees it, linked to its order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub order: OrderId,
    pub symbol: String,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub time_ms: i64,
    pub commission: Cash,
}

/// What changed, for one account. Each carries the whole new state of
/// what it names, so the account can be rebuilt from its events alone
/// ([`Broker::restore`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    Order(Order),
    Execution(Execution),
    /// A position as it is now (qty 0: closed).
    Position {
        symbol: String,
        position: Position,
    },
    /// The account's cash and what it realized, after a fill or a reset.
    Balance(Balance),
    /// The leverage the account trades `symbol` at.
    Leverage {
        symbol: String,
        leverage: u32,
    },
}

/// An account's cash figures (the position-dependent ones, equity and
/// unrealized P&L, are marked at the market when asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub cash: Cash,
    pub realized: Cash,
    pub commission_paid: Cash,
}

/// The leverage an account trades a symbol at, and its range (step 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leverage {
    pub leverage: u32,
    pub min: u32,
    pub max: u32,
}

/// A change and the account's sequence number for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub account: AccountId,
    pub seq: u64,
    pub change: Change,
}

/// Why a command was not carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerError {
    /// The order breaks a rule (400): the field and why.
    Refused(Refusal),
    /// No such order in this account (404): another account's order is
    /// not found either.
    NotFound(OrderId),
    /// The order is filled, cancelled or rejected already (409).
    Final(OrderId, Status),
    /// The account holds no position in the symbol (404).
    NoPosition(String),
    /// An unknown symbol, or one that does not trade (404).
    UnknownSymbol(String),
}

struct Kept {
    owner: AccountId,
    order: Order,
    /// Its brackets (an order's own; a bracket's parent is in the order).
    children: Vec<OrderId>,
}

struct AccountState {
    account: Account,
    seq: u64,
    /// The brackets attached to each position, by symbol.
    position_brackets: BTreeMap<String, Vec<OrderId>>,
    /// Brackets that started working (an order's, once it filled, or a
    /// position's), by symbol: what goes when the position closes. Ended
    /// ones are dropped when next looked at.
    working_brackets: BTreeMap<String, Vec<OrderId>>,
    /// Leverage chosen per symbol (others trade at the symbol's margin
    /// rate).
    leverage: BTreeMap<String, u32>,
    /// Its fills, oldest first.
    executions: Vec<Execution>,
}

pub struct Broker {
    rules: HashMap<String, SymbolRules>,
    books: HashMap<String, Book>,
    orders: BTreeMap<OrderId, Kept>,
    accounts: BTreeMap<AccountId, AccountState>,
    next_id: OrderId,
    starting_cash: Cash,
    commission: Cash,
    /// DAY orders by when they expire, soonest first (ended ones are
    /// skipped when reached).
    expiries: std::collections::BTreeSet<(i64, OrderId)>,
    /// Working trailing stops by symbol: each print of the symbol looks at
    /// these (and only these) to move their stops.
    trailing: HashMap<String, Vec<OrderId>>,
}

impl Broker {
    /// A broker whose accounts start with `starting_cash` and pay
    /// `commission` per fill.
    pub fn new(starting_cash: Cash, commission: Cash) -> Broker {
        Broker {
            rules: HashMap::new(),
            books: HashMap::new(),
            orders: BTreeMap::new(),
            accounts: BTreeMap::new(),
            next_id: 1,
            starting_cash,
            commission,
            expiries: std::collections::BTreeSet::new(),
            trailing: HashMap::new(),
        }
    }

    /// Makes `symbol` tradable under `rules`.
    pub fn list(&mut self, symbol: &str, rules: SymbolRules) {
        self.rules.insert(symbol.to_string(), rules);
        self.books.entry(symbol.to_string()).or_default();
    }

    /// The account, created with the starting cash on first use.
    pub fn account(&mut self, id: &str) -> &Account {
        &self.state(id).account
    }

    fn state(&mut self, id: &str) -> &mut AccountState {
        let cash = self.starting_cash;
        self.accounts
            .entry(id.to_string())
            .or_insert_with(|| AccountState {
                account: Account::new(cash),
                seq: 0,
                position_brackets: BTreeMap::new(),
                working_brackets: BTreeMap::new(),
                leverage: BTreeMap::new(),
                executions: Vec::new(),
            })
    }

    /// The symbol's rules, if it trades.
    pub fn rules(&self, symbol: &str) -> Option<&SymbolRules> {
        self.rules.get(symbol)
    }

    /// The last price `symbol` printed (None before the first).
    pub fn last(&self, symbol: &str) -> Option<Price> {
        self.books.get(symbol).and_then(Book::last)
    }

    /// Where `symbol`'s market is, for a book that has seen no print yet
    /// (a desk rebuilt after a restart): its last price, matching nothing.
    pub fn seed(&mut self, symbol: &str, last: Price) {
        if let Some(book) = self.books.get_mut(symbol) {
            book.seed(last);
        }
    }

    /// The market's bid and ask for `symbol`, when its source quotes them:
    /// market orders fill at these (see [`Book::market`]).
    pub fn on_quote(&mut self, symbol: &str, bid: Price, ask: Price) {
        if let Some(book) = self.books.get_mut(symbol) {
            book.set_quote(bid, ask);
        }
    }

    /// The symbols whose market matters now: those with resting orders or
    /// an open position in some account (what a market that must be
    /// asked for its prices is asked for).
    pub fn active_symbols(&self) -> std::collections::BTreeSet<String> {
        let mut symbols: std::collections::BTreeSet<String> = self
            .books
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(s, _)| s.clone())
            .collect();
        for state in self.accounts.values() {
            symbols.extend(state.account.positions.keys().cloned());
        }
        symbols
    }

    /// The account as it is (a new one: the starting cash, nothing else).
    pub fn peek_account(&self, id: &str) -> Account {
        self.accounts
            .get(id)
            .map_or_else(|| Account::new(self.starting_cash), |a| a.account.clone())
    }

    /// The working take-profit and stop-loss orders that protect the
    /// account's position in `symbol` (its own, or an order's that filled).
    pub fn position_brackets(&self, account: &str, symbol: &str) -> Vec<&Order> {
        self.orders
            .values()
            .filter(|k| {
                k.owner == account
                    && k.order.request.symbol == symbol
                    && k.order.parent.is_some()
                    && k.order.status == Status::Working
            })
            .map(|k| &k.order)
            .collect()
    }

    /// The margin rate `account` trades `symbol` at, in basis points.
    pub fn margin_rate_bp(&self, account: &str, symbol: &str) -> i64 {
        self.margin_bp(account, symbol)
    }

    /// The margin the account's positions hold, marked at the market.
    pub fn margin_used(&self, account: &str) -> Cash {
        let account_state = self.peek_account(account);
        let mark = |s: &str| self.books.get(s).and_then(Book::last);
        let rate = |s: &str| self.margin_bp(account, s);
        account_state.margin(&mark, &rate)
    }

    /// The price an order of `side` would trade `symbol` at now: the ask
    /// or the bid when quoted, else the last print.
    pub fn market_price(&self, symbol: &str, side: Side) -> Option<Price> {
        self.books.get(symbol).and_then(|b| b.market(side))
    }

    /// Whether placing `request` now would be accepted (the symbol's
    /// rules, then the account's buying power), changing nothing.
    pub fn check_order(&self, account: &str, request: &OrderRequest) -> Result<(), BrokerError> {
        let rules = self
            .rules
            .get(&request.symbol)
            .ok_or_else(|| BrokerError::UnknownSymbol(request.symbol.clone()))?;
        rules
            .check(request, self.books[&request.symbol].last())
            .map_err(BrokerError::Refused)?;
        self.check_buying_power(account, request)
    }

    /// The account's sequence number: that of its newest event (0: none).
    pub fn seq(&self, account: &str) -> u64 {
        self.accounts.get(account).map_or(0, |a| a.seq)
    }

    /// The account's fills of `symbol` (every symbol: None), oldest first.
    pub fn executions(&self, account: &str, symbol: Option<&str>) -> Vec<&Execution> {
        self.accounts.get(account).map_or_else(Vec::new, |a| {
            a.executions
                .iter()
                .filter(|x| symbol.is_none_or(|s| x.symbol == s))
                .collect()
        })
    }

    /// The account's order `id` (another account's is not found).
    pub fn order(&self, account: &str, id: OrderId) -> Option<&Order> {
        self.orders
            .get(&id)
            .filter(|k| k.owner == account)
            .map(|k| &k.order)
    }

    /// The account's orders, oldest first.
    pub fn orders(&self, account: &str) -> Vec<&Order> {
        self.orders
            .values()
            .filter(|k| k.owner == account)
            .map(|k| &k.order)
            .collect()
    }

    fn event(&mut self, account: &str, change: Change, out: &mut Vec<Event>) {
        let state = self.state(account);
        state.seq += 1;
        out.push(Event {
            account: account.to_string(),
            seq: state.seq,
            change,
        });
    }

    fn order_event(&mut self, id: OrderId, out: &mut Vec<Event>) {
        let kept = &self.orders[&id];
        let (owner, order) = (kept.owner.clone(), kept.order.clone());
        self.event(&owner, Change::Order(order), out);
    }

    /// Places an order: checked, then filled at once (a market order, a
    /// marketable limit), cancelled (an IOC or FOK that is not
    /// marketable), or working in the book.
    pub fn place(
        &mut self,
        account: &str,
        request: OrderRequest,
        now_ms: i64,
    ) -> Result<(OrderId, Vec<Event>), BrokerError> {
        let rules = self
            .rules
            .get(&request.symbol)
            .ok_or_else(|| BrokerError::UnknownSymbol(request.symbol.clone()))?;
        let book = &self.books[&request.symbol];
        rules
            .check(&request, book.last())
            .map_err(BrokerError::Refused)?;
        self.check_buying_power(account, &request)?;
        let id = self.take_id();
        let mut out = Vec::new();
        let brackets = self.brackets_of(account, id, &request);
        self.orders.insert(
            id,
            Kept {
                owner: account.to_string(),
                order: Order::new(id, request),
                children: brackets.clone(),
            },
        );
        if let Some(at) = self.orders[&id].order.request.expires_at_ms {
            self.expiries.insert((at, id));
        }
        // The brackets as they start (inactive), then the order's fate,
        // which may start them.
        for child in brackets {
            self.order_event(child, &mut out);
        }
        self.work(id, now_ms, &mut out);
        Ok((id, out))
    }

    fn take_id(&mut self) -> OrderId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The take-profit and stop-loss of `parent`, inactive until it fills.
    fn brackets_of(&mut self, account: &str, parent: OrderId, r: &OrderRequest) -> Vec<OrderId> {
        let mut ids = Vec::new();
        let legs = [
            r.take_profit.map(|p| (OrderType::Limit, Some(p), None)),
            r.stop_loss.map(|p| (OrderType::Stop, None, Some(p))),
        ];
        for (order_type, limit_price, stop_price) in legs.into_iter().flatten() {
            // The stop-loss trails when the order asks for it.
            let trailing_stop = r.trailing_stop.filter(|_| order_type == OrderType::Stop);
            let id = self.take_id();
            let mut order = Order::new(
                id,
                OrderRequest {
                    limit_price,
                    stop_price,
                    trailing_stop,
                    ..OrderRequest::new(&r.symbol, order_type, r.side.opposite(), r.qty)
                },
            );
            order.status = Status::Inactive;
            order.parent = Some(Parent::Order(parent));
            self.orders.insert(
                id,
                Kept {
                    owner: account.to_string(),
                    order,
                    children: Vec::new(),
                },
            );
            ids.push(id);
        }
        ids
    }

    /// An accepted order starts working: filled at once if it can be,
    /// else resting (or cancelled, for IOC and FOK).
    fn work(&mut self, id: OrderId, now_ms: i64, out: &mut Vec<Event>) {
        let request = self.orders[&id].order.request.clone();
        let book = self.books.get_mut(&request.symbol).expect("listed");
        let at_once = match request.order_type {
            OrderType::Market => book.market(request.side),
            OrderType::Limit => {
                book.marketable(request.side, request.limit_price.expect("checked"))
            }
            OrderType::Stop | OrderType::StopLimit => None,
        };
        if let Some(price) = at_once {
            let fill = Fill {
                order: id,
                side: request.side,
                price,
                qty: request.qty,
                time_ms: now_ms,
            };
            self.filled(&request.symbol, fill, out);
            return;
        }
        if matches!(request.duration, Duration::Ioc | Duration::Fok) {
            self.end(id, Status::Canceled, out);
            return;
        }
        let resting = match request.order_type {
            OrderType::Limit => Resting::Limit(request.limit_price.expect("checked")),
            OrderType::Stop => Resting::Stop(request.stop_price.expect("checked")),
            OrderType::StopLimit => Resting::StopLimit {
                stop: request.stop_price.expect("checked"),
                limit: request.limit_price.expect("checked"),
            },
            OrderType::Market => unreachable!("a market order fills at once"),
        };
        book.rest(id, request.side, resting, request.qty);
        if request.trailing_stop.is_some() && request.order_type == OrderType::Stop {
            self.trailing
                .entry(request.symbol.clone())
                .or_default()
                .push(id);
        }
        let kept = self.orders.get_mut(&id).expect("kept");
        kept.order.status = Status::Working;
        if kept.order.parent.is_some() {
            let owner = kept.owner.clone();
            self.state(&owner)
                .working_brackets
                .entry(request.symbol.clone())
                .or_default()
                .push(id);
        }
        self.order_event(id, out);
    }

    /// A print of `symbol`: the orders it fills, and what follows.
    pub fn on_print(&mut self, symbol: &str, print: Print) -> Vec<Event> {
        let mut out = self.on_time(print.time_ms);
        self.trail(symbol, print.price, &mut out);
        let Some(book) = self.books.get_mut(symbol) else {
            return out;
        };
        let fills = book.on_print(print);
        for id in book.take_triggered() {
            self.orders.get_mut(&id).expect("kept").order.triggered = true;
            self.order_event(id, &mut out);
        }
        for fill in fills {
            // A sibling cancelled by an earlier fill of this print is not
            // in the book any more; its fill cannot be here.
            if let Some(kept) = self.orders.get_mut(&fill.order) {
                kept.order.triggered |= kept.order.request.order_type == OrderType::StopLimit;
            }
            self.filled(symbol, fill, &mut out);
        }
        out
    }

    /// Moves the symbol's trailing stops after a print at `price`: a sell
    /// stop up to `price - distance`, a buy stop down to `price +
    /// distance`, never back. (A print below a sell stop triggers it in
    /// the book; this only ever raises a stop below the print.)
    fn trail(&mut self, symbol: &str, price: Price, out: &mut Vec<Event>) {
        let Some(ids) = self.trailing.get_mut(symbol) else {
            return;
        };
        let orders = &self.orders;
        ids.retain(|id| orders[id].order.status == Status::Working);
        let ids = ids.clone();
        for id in ids {
            let request = &self.orders[&id].order.request;
            let (side, qty) = (request.side, request.qty);
            let (Some(stop), Some(distance)) = (request.stop_price, request.trailing_stop) else {
                continue;
            };
            let moved = match side {
                Side::Sell => Price(price.0 - distance.0),
                Side::Buy => Price(price.0 + distance.0),
            };
            let better = match side {
                Side::Sell => moved > stop,
                Side::Buy => moved < stop,
            };
            if !better {
                continue;
            }
            let book = self.books.get_mut(symbol).expect("listed");
            book.cancel(id);
            book.rest(id, side, Resting::Stop(moved), qty);
            self.orders
                .get_mut(&id)
                .expect("kept")
                .order
                .request
                .stop_price = Some(moved);
            self.order_event(id, out);
        }
    }

    /// The clock reached `now_ms`: DAY orders whose session closed end.
    pub fn on_time(&mut self, now_ms: i64) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now_ms {
                break;
            }
            self.expiries.pop_first();
            if !self.orders[&id].order.status.is_final() {
                self.end_with(id, "expired at the close of its session", &mut out);
            }
        }
        out
    }

    /// Books a fill: the order, the execution, the position; then its
    /// brackets start working, or its sibling is cancelled.
    fn filled(&mut self, symbol: &str, fill: Fill, out: &mut Vec<Event>) {
        let commission = self.commission;
        let kept = self.orders.get_mut(&fill.order).expect("kept");
        kept.order.status = Status::Filled;
        kept.order.filled_qty = fill.qty;
        kept.order.avg_price = Some(fill.price);
        let owner = kept.owner.clone();
        let (children, parent) = (kept.children.clone(), kept.order.parent.clone());
        self.order_event(fill.order, out);
        let state = self.state(&owner);
        let before = state.account.positions.get(symbol).map_or(0, |p| p.qty);
        state.account.apply(symbol, &fill, commission);
        let position = state
            .account
            .positions
            .get(symbol)
            .copied()
            .unwrap_or_default();
        let execution = Execution {
            order: fill.order,
            symbol: symbol.to_string(),
            side: fill.side,
            price: fill.price,
            qty: fill.qty,
            time_ms: fill.time_ms,
            commission,
        };
        let account = &state.account;
        let balance = Balance {
            cash: account.cash,
            realized: account.realized,
            commission_paid: account.commission_paid,
        };
        state.executions.push(execution.clone());
        self.event(&owner, Change::Execution(execution), out);
        self.event(&owner, Change::Balance(balance), out);
        self.event(
            &owner,
            Change::Position {
                symbol: symbol.to_string(),
                position,
            },
            out,
        );
        // One-cancels-other: an order's brackets, or a position's.
        let siblings = match parent {
            Some(Parent::Order(parent)) => self.orders[&parent].children.clone(),
            _ => self
                .state(&owner)
                .position_brackets
                .get(symbol)
                .filter(|b| b.contains(&fill.order))
                .cloned()
                .unwrap_or_default(),
        };
        for sibling in siblings.into_iter().filter(|s| *s != fill.order) {
            if !self.orders[&sibling].order.status.is_final() {
                self.end_with(sibling, "its other bracket filled", out);
            }
        }
        let after = position.qty;
        if after == 0 || after.signum() == -before.signum() {
            // Flat, or turned around: every working bracket of the symbol
            // goes with the position it protected (inactive ones wait for
            // an order that has not filled; this fill's own start working
            // below, for the new position).
            let state = self.state(&owner);
            state.position_brackets.remove(symbol);
            let left = state.working_brackets.remove(symbol).unwrap_or_default();
            for id in left {
                if self.orders[&id].order.status == Status::Working {
                    self.end_with(id, "the position closed", out);
                }
            }
        } else if after.abs() < before.abs() {
            // Reduced: no working bracket may close more than is left.
            let left = Qty(after.abs());
            let working = self
                .state(&owner)
                .working_brackets
                .get(symbol)
                .cloned()
                .unwrap_or_default();
            for id in working {
                let order = &self.orders[&id].order;
                if order.status == Status::Working && order.request.qty > left {
                    self.resize(id, left, out);
                }
            }
        }
        for child in children {
            self.work(child, fill.time_ms, out);
        }
    }

    /// A working order's quantity changed (a bracket of a position that
    /// was reduced): it keeps its place in the book, with the new quantity.
    fn resize(&mut self, id: OrderId, qty: Qty, out: &mut Vec<Event>) {
        let kept = self.orders.get_mut(&id).expect("kept");
        kept.order.request.qty = qty;
        let order = kept.order.clone();
        if let (Some(book), Some(how)) = (
            self.books.get_mut(&order.request.symbol),
            resting_of(&order),
        ) {
            if book.cancel(id) {
                book.rest(id, order.request.side, how, qty);
            }
        }
        self.order_event(id, out);
    }

    fn end_with(&mut self, id: OrderId, why: &str, out: &mut Vec<Event>) {
        self.orders.get_mut(&id).expect("kept").order.message = Some(why.to_string());
        self.end(id, Status::Canceled, out);
    }

    /// Ends an order that did not fill, taking it out of the book.
    fn end(&mut self, id: OrderId, status: Status, out: &mut Vec<Event>) {
        let kept = self.orders.get_mut(&id).expect("kept");
        kept.order.status = status;
        let symbol = kept.order.request.symbol.clone();
        if let Some(book) = self.books.get_mut(&symbol) {
            book.cancel(id);
        }
        self.order_event(id, out);
    }

    /// Cancels an order of `account` and its inactive or working brackets.
    pub fn cancel(&mut self, account: &str, id: OrderId) -> Result<Vec<Event>, BrokerError> {
        let kept = self
            .orders
            .get(&id)
            .filter(|k| k.owner == account)
            .ok_or(BrokerError::NotFound(id))?;
        if kept.order.status.is_final() {
            return Err(BrokerError::Final(id, kept.order.status));
        }
        let children = kept.children.clone();
        let mut out = Vec::new();
        self.end(id, Status::Canceled, &mut out);
        for child in children {
            if !self.orders[&child].order.status.is_final() {
                self.end(child, Status::Canceled, &mut out);
            }
        }
        Ok(out)
    }

    /// Closes `amount` of the account's position in `symbol` (all of it
    /// when None) with a market order.
    pub fn close_position(
        &mut self,
        account: &str,
        symbol: &str,
        amount: Option<Qty>,
        now_ms: i64,
    ) -> Result<(OrderId, Vec<Event>), BrokerError> {
        let held = self.position(account, symbol)?;
        let amount = amount.unwrap_or(Qty(held.qty.abs()));
        if amount.0 <= 0 || amount.0 > held.qty.abs() {
            return Err(BrokerError::Refused(Refusal {
                field: "amount",
                message: format!(
                    "amount must be more than 0 and at most the position's {}, got {amount}",
                    Qty(held.qty.abs())
                ),
            }));
        }
        let side = if held.qty > 0 { Side::Sell } else { Side::Buy };
        self.place(account, market(symbol, side, amount), now_ms)
    }

    /// Turns the position in `symbol` around: a market order of twice its
    /// quantity.
    pub fn reverse_position(
        &mut self,
        account: &str,
        symbol: &str,
        now_ms: i64,
    ) -> Result<(OrderId, Vec<Event>), BrokerError> {
        let held = self.position(account, symbol)?;
        let side = if held.qty > 0 { Side::Sell } else { Side::Buy };
        self.place(
            account,
            market(symbol, side, Qty(held.qty.abs() * 2)),
            now_ms,
        )
    }

    /// Sets the position's take-profit and stop-loss (None removes one),
    /// for its whole quantity, one-cancels-other; replaces those it had.
    pub fn edit_position_brackets(
        &mut self,
        account: &str,
        symbol: &str,
        take_profit: Option<Price>,
        stop_loss: Option<Price>,
        now_ms: i64,
    ) -> Result<Vec<Event>, BrokerError> {
        let held = self.position(account, symbol)?;
        let side = if held.qty > 0 { Side::Sell } else { Side::Buy };
        let rules = self.rules[symbol].clone();
        let last = self.books[symbol].last();
        // Checked as the closing order's brackets would be: on the tick,
        // on the right side of the market.
        let probe = OrderRequest {
            take_profit,
            stop_loss,
            ..market(symbol, side.opposite(), Qty(held.qty.abs()))
        };
        rules.check(&probe, last).map_err(BrokerError::Refused)?;
        let mut out = Vec::new();
        let old = self
            .state(account)
            .position_brackets
            .remove(symbol)
            .unwrap_or_default();
        for id in old {
            if !self.orders[&id].order.status.is_final() {
                self.end_with(id, "replaced", &mut out);
            }
        }
        let legs = [
            take_profit.map(|p| (OrderType::Limit, Some(p), None)),
            stop_loss.map(|p| (OrderType::Stop, None, Some(p))),
        ];
        let mut ids = Vec::new();
        for (order_type, limit_price, stop_price) in legs.into_iter().flatten() {
            let id = self.take_id();
            let mut order = Order::new(
                id,
                OrderRequest {
                    order_type,
                    limit_price,
                    stop_price,
                    ..market(symbol, side, Qty(held.qty.abs()))
                },
            );
            order.parent = Some(Parent::Position(symbol.to_string()));
            self.orders.insert(
                id,
                Kept {
                    owner: account.to_string(),
                    order,
                    children: Vec::new(),
                },
            );
            ids.push(id);
        }
        self.state(account)
            .position_brackets
            .insert(symbol.to_string(), ids.clone());
        for id in ids {
            if !self.orders[&id].order.status.is_final() {
                self.work(id, now_ms, &mut out);
            }
        }
        Ok(out)
    }

    fn position(&mut self, account: &str, symbol: &str) -> Result<Position, BrokerError> {
        self.state(account)
            .account
            .positions
            .get(symbol)
            .copied()
            .ok_or_else(|| BrokerError::NoPosition(symbol.to_string()))
    }

    /// Changes a working (or inactive) order's quantity and prices: checked
    /// as a new order, then put back in the book (behind others at its
    /// price). Its brackets follow its quantity.
    pub fn modify(
        &mut self,
        account: &str,
        id: OrderId,
        qty: Qty,
        limit_price: Option<Price>,
        stop_price: Option<Price>,
        now_ms: i64,
    ) -> Result<Vec<Event>, BrokerError> {
        let kept = self
            .orders
            .get(&id)
            .filter(|k| k.owner == account)
            .ok_or(BrokerError::NotFound(id))?;
        if kept.order.status.is_final() {
            return Err(BrokerError::Final(id, kept.order.status));
        }
        let request = OrderRequest {
            qty,
            limit_price,
            stop_price,
            ..kept.order.request.clone()
        };
        let (status, children) = (kept.order.status, kept.children.clone());
        let rules = &self.rules[&request.symbol];
        // The order's own brackets are checked against its new entry.
        rules
            .check(&request, self.books[&request.symbol].last())
            .map_err(BrokerError::Refused)?;
        let mut out = Vec::new();
        if let Some(book) = self.books.get_mut(&request.symbol) {
            book.cancel(id);
        }
        self.orders.get_mut(&id).expect("kept").order.request = request;
        for child in &children {
            self.orders.get_mut(child).expect("kept").order.request.qty = qty;
            if self.orders[child].order.status == Status::Inactive {
                self.order_event(*child, &mut out);
            }
        }
        if status == Status::Inactive {
            self.order_event(id, &mut out);
        } else {
            self.work(id, now_ms, &mut out);
        }
        Ok(out)
    }

    /// Cancels the account's working and inactive orders of `symbol` (of
    /// `side`, if given; only `ids`, if given): all that match, and says
    /// nothing of those that do not.
    pub fn cancel_orders(
        &mut self,
        account: &str,
        symbol: &str,
        side: Option<Side>,
        ids: Option<&[OrderId]>,
    ) -> Vec<Event> {
        let chosen: Vec<OrderId> = self
            .orders
            .values()
            .filter(|k| {
                k.owner == account
                    && k.order.request.symbol == symbol
                    && !k.order.status.is_final()
                    && side.is_none_or(|s| k.order.request.side == s)
                    && ids.is_none_or(|ids| ids.contains(&k.order.id))
            })
            .map(|k| k.order.id)
            .collect();
        let mut out = Vec::new();
        for id in chosen {
            // A bracket may have gone with its parent a moment ago.
            if !self.orders[&id].order.status.is_final() {
                self.end(id, Status::Canceled, &mut out);
            }
        }
        out
    }

    /// Starts the account over: every open order cancelled, every position
    /// gone, the starting cash back (the sequence goes on, so a client sees
    /// the reset as updates).
    pub fn reset(&mut self, account: &str) -> Vec<Event> {
        let open: Vec<OrderId> = self
            .orders
            .values()
            .filter(|k| k.owner == account && !k.order.status.is_final())
            .map(|k| k.order.id)
            .collect();
        let mut out = Vec::new();
        for id in open {
            self.end_with(id, "the account was reset", &mut out);
        }
        let cash = self.starting_cash;
        let state = self.state(account);
        let symbols: Vec<String> = state.account.positions.keys().cloned().collect();
        state.account = Account::new(cash);
        state.position_brackets.clear();
        state.working_brackets.clear();
        for symbol in symbols {
            self.event(
                account,
                Change::Position {
                    symbol,
                    position: Position::default(),
                },
                &mut out,
            );
        }
        let balance = Balance {
            cash,
            realized: Cash::ZERO,
            commission_paid: Cash::ZERO,
        };
        self.event(account, Change::Balance(balance), &mut out);
        out
    }

    /// The margin rate `account` trades `symbol` at, in basis points: 1 /
    /// its chosen leverage (rounded up), else the symbol's.
    fn margin_bp(&self, account: &str, symbol: &str) -> i64 {
        let chosen = self
            .accounts
            .get(account)
            .and_then(|a| a.leverage.get(symbol).copied());
        match (chosen, self.rules.get(symbol)) {
            (Some(l), _) => (10_000 + i64::from(l) - 1) / i64::from(l),
            (None, Some(rules)) => rules.margin_bp,
            (None, None) => 10_000,
        }
    }

    /// The leverage `account` trades `symbol` at and what it may choose.
    pub fn leverage(&self, account: &str, symbol: &str) -> Result<Leverage, BrokerError> {
        let rules = self
            .rules
            .get(symbol)
            .ok_or_else(|| BrokerError::UnknownSymbol(symbol.to_string()))?;
        let chosen = self
            .accounts
            .get(account)
            .and_then(|a| a.leverage.get(symbol).copied());
        let default = u32::try_from(10_000 / rules.margin_bp.max(1))
            .unwrap_or(1)
            .max(1);
        Ok(Leverage {
            leverage: chosen.unwrap_or(default),
            min: 1,
            max: rules.max_leverage.max(1),
        })
    }

    /// Sets the leverage `account` trades `symbol` at: refused (naming
    /// `leverage`) out of range, or when the margin its positions would
    /// then hold is more than its equity.
    pub fn set_leverage(
        &mut self,
        account: &str,
        symbol: &str,
        leverage: u32,
    ) -> Result<Vec<Event>, BrokerError> {
        let range = self.leverage(account, symbol)?;
        if leverage < range.min || leverage > range.max {
            return Err(BrokerError::Refused(Refusal {
                field: "leverage",
                message: format!(
                    "leverage must be between {} and {} for {symbol}, got {leverage}",
                    range.min, range.max
                ),
            }));
        }
        let before = self
            .state(account)
            .leverage
            .insert(symbol.to_string(), leverage);
        let state = &self.accounts[account];
        let mark = |s: &str| self.books.get(s).and_then(Book::last);
        let rate = |s: &str| self.margin_bp(account, s);
        let (equity, used) = (
            state.account.equity(&mark),
            state.account.margin(&mark, &rate),
        );
        if used > equity {
            let state = self.state(account);
            match before {
                Some(l) => state.leverage.insert(symbol.to_string(), l),
                None => state.leverage.remove(symbol),
            };
            return Err(BrokerError::Refused(Refusal {
                field: "leverage",
                message: format!(
                    "at {leverage}x the positions would hold {used} of margin; the account's \
                     equity is {equity}"
                ),
            }));
        }
        let mut out = Vec::new();
        let change = Change::Leverage {
            symbol: symbol.to_string(),
            leverage,
        };
        self.event(account, change, &mut out);
        Ok(out)
    }

    /// Refuses an order whose margin would take the account's margin past
    /// its equity, at the price it would fill at (its limit or stop, else
    /// the market). Orders that only reduce a position always pass.
    fn check_buying_power(&self, account: &str, r: &OrderRequest) -> Result<(), BrokerError> {
        let margin_bp = self.margin_bp(account, &r.symbol);
        let book = &self.books[&r.symbol];
        let Some(price) = r.limit_price.or(r.stop_price).or(book.market(r.side)) else {
            return Ok(());
        };
        let added = Cash::notional(price, r.qty).times_bp(margin_bp);
        // An account not used yet has its starting cash and nothing else.
        let (equity, used) = match self.accounts.get(account) {
            None => (self.starting_cash, Cash::ZERO),
            Some(state) => {
                let held = state.account.positions.get(&r.symbol).map_or(0, |p| p.qty);
                let signed = r.qty.0 * r.side.sign();
                if held != 0 && held.signum() != signed.signum() && signed.abs() <= held.abs() {
                    return Ok(());
                }
                let mark = |s: &str| self.books.get(s).and_then(Book::last);
                let rate = |s: &str| self.margin_bp(account, s);
                (
                    state.account.equity(&mark),
                    state.account.margin(&mark, &rate),
                )
            }
        };
        let available = equity - used;
        if added > available {
            return Err(BrokerError::Refused(Refusal {
                field: "qty",
                message: format!(
                    "{} {} at {price} needs {added} of margin; the account has {available} \
                     available",
                    r.qty, r.symbol
                ),
            }));
        }
        Ok(())
    }
}

/// How a working order waits in the book (None: an order that cannot rest).
fn resting_of(order: &Order) -> Option<Resting> {
    let r = &order.request;
    match (r.order_type, r.limit_price, r.stop_price) {
        (OrderType::Limit, Some(limit), _) => Some(Resting::Limit(limit)),
        (OrderType::Stop, _, Some(stop)) => Some(Resting::Stop(stop)),
        (OrderType::StopLimit, Some(limit), _) if order.triggered => Some(Resting::Limit(limit)),
        (OrderType::StopLimit, Some(limit), Some(stop)) => Some(Resting::StopLimit { stop, limit }),
        _ => None,
    }
}

fn market(symbol: &str, side: Side, qty: Qty) -> OrderRequest {
    OrderRequest::new(symbol, OrderType::Market, side, qty)
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

    fn broker() -> Broker {
        let mut b = Broker::new(Cash::parse("100000").unwrap(), Cash::parse("1").unwrap());
        b.list(
            "BTCUSD",
            SymbolRules {
                tick: px("0.01"),
                qty_min: q("0.001"),
                qty_max: q("100"),
                qty_step: q("0.001"),
                margin_bp: 10_000,
                max_leverage: 1,
            },
        );
        b
    }

    fn print(b: &mut Broker, price: &str, t: i64) -> Vec<Event> {
        b.on_print(
            "BTCUSD",
            Print {
                price: px(price),
                time_ms: t,
                opens_bar: false,
            },
        )
    }

    fn request(order_type: OrderType, side: Side, qty: &str) -> OrderRequest {
        OrderRequest::new("BTCUSD", order_type, side, q(qty))
    }

    fn statuses(b: &Broker, account: &str) -> Vec<(OrderId, Status)> {
        b.orders(account).iter().map(|o| (o.id, o.status)).collect()
    }

    #[test]
    fn a_market_buy_fills_at_the_last_print_and_every_event_is_numbered() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let (id, events) = b
            .place("alice", request(OrderType::Market, Side::Buy, "0.5"), 2)
            .unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        match &events[1].change {
            Change::Execution(x) => {
                assert_eq!((x.order, x.price, x.qty), (id, px("1000"), q("0.5")))
            }
            other => panic!("{other:?}"),
        }
        let balance = Balance {
            cash: Cash::parse("99499").unwrap(),
            realized: Cash::parse("-1").unwrap(),
            commission_paid: Cash::parse("1").unwrap(),
        };
        assert_eq!(events[2].change, Change::Balance(balance));
        let account = b.account("alice").clone();
        // 500 paid and 1 of commission.
        assert_eq!(account.cash, Cash::parse("99499").unwrap());
        assert_eq!(account.positions["BTCUSD"].qty, q("0.5").0);
    }

    #[test]
    fn a_limit_with_brackets_fills_then_the_take_profit_cancels_the_stop_loss() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let r = OrderRequest {
            limit_price: Some(px("990")),
            take_profit: Some(px("1010")),
            stop_loss: Some(px("980")),
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        let (parent, _) = b.place("alice", r, 2).unwrap();
        let (tp, sl) = (parent + 1, parent + 2);
        assert_eq!(
            statuses(&b, "alice"),
            [
                (parent, Status::Working),
                (tp, Status::Inactive),
                (sl, Status::Inactive)
            ]
        );
        // Through the limit: filled at 990; the brackets start working.
        print(&mut b, "989", 3);
        assert_eq!(
            statuses(&b, "alice"),
            [
                (parent, Status::Filled),
                (tp, Status::Working),
                (sl, Status::Working)
            ]
        );
        // Up through the take-profit: it fills at 1010, the stop-loss goes.
        let events = print(&mut b, "1011", 4);
        assert_eq!(
            statuses(&b, "alice"),
            [
                (parent, Status::Filled),
                (tp, Status::Filled),
                (sl, Status::Canceled)
            ]
        );
        assert!(events.iter().any(|e| matches!(
            &e.change,
            Change::Position { position, .. } if position.qty == 0
        )));
        let account = b.account("alice").clone();
        assert!(account.positions.is_empty());
        // +20 on the round trip, less two commissions.
        assert_eq!(account.realized, Cash::parse("18").unwrap());
        // Nothing moves a final order; the stop-loss never fills.
        assert_eq!(
            b.cancel("alice", tp),
            Err(BrokerError::Final(tp, Status::Filled))
        );
        assert!(print(&mut b, "970", 5).is_empty());
    }

    #[test]
    fn accounts_are_apart_and_refusals_change_nothing() {
        let mut b = broker();
        print(&mut b, "1001", 1);
        let r = OrderRequest {
            limit_price: Some(px("900")),
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        let (id, _) = b.place("alice", r, 2).unwrap();
        assert_eq!(b.cancel("bob", id), Err(BrokerError::NotFound(id)));
        assert!(b.orders("bob").is_empty());
        // 100 BTC at 1001 needs 100,100 of margin; bob has 100,000.
        let too_big = request(OrderType::Market, Side::Buy, "100");
        let refused = b.place("bob", too_big, 3).unwrap_err();
        assert!(matches!(
            refused,
            BrokerError::Refused(Refusal { field: "qty", .. })
        ));
        assert!(b.orders("bob").is_empty());
        assert_eq!(b.account("bob").cash, Cash::parse("100000").unwrap());
        let unknown = OrderRequest {
            symbol: "NOPE".into(),
            ..request(OrderType::Market, Side::Buy, "1")
        };
        assert_eq!(
            b.place("bob", unknown, 4).unwrap_err(),
            BrokerError::UnknownSymbol("NOPE".into())
        );
        let events = b.cancel("alice", id).unwrap();
        assert_eq!(events.len(), 1);
        assert!(
            print(&mut b, "800", 5).is_empty(),
            "a cancelled order never fills"
        );
    }

    #[test]
    fn an_ioc_limit_that_is_not_marketable_is_cancelled_at_once() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let r = OrderRequest {
            limit_price: Some(px("999")),
            duration: Duration::Ioc,
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        let (id, events) = b.place("alice", r.clone(), 2).unwrap();
        assert_eq!(statuses(&b, "alice"), [(id, Status::Canceled)]);
        assert_eq!(events.len(), 1);
        let marketable = OrderRequest {
            limit_price: Some(px("1001")),
            ..r
        };
        let (id, _) = b.place("alice", marketable, 3).unwrap();
        let order = b.orders("alice")[1].clone();
        assert_eq!(
            (order.id, order.status, order.avg_price),
            (id, Status::Filled, Some(px("1000")))
        );
    }

    #[test]
    fn the_same_prints_and_orders_give_the_same_events() {
        let run = || {
            let mut b = broker();
            let mut all = Vec::new();
            print(&mut b, "1000", 0);
            for i in 0..50i64 {
                let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
                let limit = Price(px("1000").0 + (i % 7 - 3) * px("1").0);
                let r = OrderRequest {
                    limit_price: Some(limit),
                    ..request(OrderType::Limit, side, "0.01")
                };
                if let Ok((_, events)) = b.place(&format!("u{}", i % 3), r, i) {
                    all.extend(events);
                }
                let price = Price(px("1000").0 + ((i * 37) % 11 - 5) * px("1").0);
                all.extend(b.on_print(
                    "BTCUSD",
                    Print {
                        price,
                        time_ms: i,
                        opens_bar: false,
                    },
                ));
            }
            all
        };
        let (a, b) = (run(), run());
        assert!(a.len() > 50);
        assert_eq!(a, b);
    }

    fn buy_at_market(b: &mut Broker, account: &str, qty: &str, t: i64) {
        b.place(account, request(OrderType::Market, Side::Buy, qty), t)
            .unwrap();
    }

    fn held(b: &mut Broker, account: &str) -> i64 {
        b.account(account)
            .positions
            .get("BTCUSD")
            .map_or(0, |p| p.qty)
    }

    #[test]
    fn positions_close_in_part_or_whole_and_reverse() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        assert_eq!(
            b.close_position("alice", "BTCUSD", None, 2).unwrap_err(),
            BrokerError::NoPosition("BTCUSD".into())
        );
        buy_at_market(&mut b, "alice", "2", 2);
        let too_much = b.close_position("alice", "BTCUSD", Some(q("3")), 3);
        assert!(matches!(
            too_much,
            Err(BrokerError::Refused(Refusal {
                field: "amount",
                ..
            }))
        ));
        b.close_position("alice", "BTCUSD", Some(q("0.5")), 3)
            .unwrap();
        assert_eq!(held(&mut b, "alice"), q("1.5").0);
        b.reverse_position("alice", "BTCUSD", 4).unwrap();
        assert_eq!(held(&mut b, "alice"), -q("1.5").0);
        let (_, events) = b.close_position("alice", "BTCUSD", None, 5).unwrap();
        assert_eq!(held(&mut b, "alice"), 0);
        // A closed position is reported with quantity 0.
        assert!(events.iter().any(|e| matches!(
            &e.change,
            Change::Position { position, .. } if position.qty == 0
        )));
    }

    #[test]
    fn a_positions_brackets_are_one_cancels_other_and_go_with_the_position() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        buy_at_market(&mut b, "alice", "1", 2);
        let wrong_side = b.edit_position_brackets("alice", "BTCUSD", Some(px("990")), None, 3);
        assert!(matches!(
            wrong_side,
            Err(BrokerError::Refused(Refusal {
                field: "takeProfit",
                ..
            }))
        ));
        b.edit_position_brackets("alice", "BTCUSD", Some(px("1010")), Some(px("990")), 3)
            .unwrap();
        let working: Vec<Status> = b.orders("alice").iter().map(|o| o.status).collect();
        assert_eq!(working, [Status::Filled, Status::Working, Status::Working]);
        // Gapped below the stop-loss: filled at the print, the take-profit
        // cancelled, the position flat.
        print(&mut b, "985", 4);
        let ended: Vec<(Status, Option<Price>)> = b
            .orders("alice")
            .iter()
            .map(|o| (o.status, o.avg_price))
            .collect();
        assert_eq!(
            ended,
            [
                (Status::Filled, Some(px("1000"))),
                (Status::Canceled, None),
                (Status::Filled, Some(px("985")))
            ]
        );
        assert_eq!(held(&mut b, "alice"), 0);

        // Closed by hand: the working brackets go too; an order's own
        // brackets that wait for it do not.
        buy_at_market(&mut b, "alice", "1", 5);
        b.edit_position_brackets("alice", "BTCUSD", Some(px("1010")), Some(px("900")), 5)
            .unwrap();
        let waiting = OrderRequest {
            limit_price: Some(px("950")),
            take_profit: Some(px("960")),
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        let (parent, _) = b.place("alice", waiting, 6).unwrap();
        b.close_position("alice", "BTCUSD", None, 7).unwrap();
        let open: Vec<OrderId> = b
            .orders("alice")
            .iter()
            .filter(|o| !o.status.is_final())
            .map(|o| o.id)
            .collect();
        assert_eq!(open, [parent, parent + 1]);
    }

    #[test]
    fn a_reduced_positions_brackets_shrink_and_a_reversed_ones_go() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        buy_at_market(&mut b, "alice", "2", 2);
        b.edit_position_brackets("alice", "BTCUSD", Some(px("1010")), Some(px("900")), 3)
            .unwrap();
        let working = |b: &Broker| -> Vec<(OrderType, Qty)> {
            b.orders("alice")
                .iter()
                .filter(|o| o.status == Status::Working)
                .map(|o| (o.request.order_type, o.request.qty))
                .collect()
        };
        // Half closed: the brackets close no more than is left.
        b.close_position("alice", "BTCUSD", Some(q("1")), 4)
            .unwrap();
        assert_eq!(
            working(&b),
            [(OrderType::Limit, q("1")), (OrderType::Stop, q("1"))]
        );
        // The take-profit then closes exactly the position, not beyond.
        print(&mut b, "1011", 5);
        assert_eq!(held(&mut b, "alice"), 0);
        assert!(working(&b).is_empty());
        // Turned around through zero: the long's brackets go.
        buy_at_market(&mut b, "alice", "1", 6);
        b.edit_position_brackets("alice", "BTCUSD", Some(px("1020")), Some(px("900")), 7)
            .unwrap();
        b.reverse_position("alice", "BTCUSD", 8).unwrap();
        assert_eq!(held(&mut b, "alice"), -q("1").0);
        assert!(working(&b).is_empty());
    }

    #[test]
    fn a_modified_order_fills_at_its_new_price_and_a_final_one_cannot_change() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let r = OrderRequest {
            limit_price: Some(px("900")),
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        let (id, _) = b.place("alice", r, 2).unwrap();
        let off_tick = b.modify("alice", id, q("1"), Some(px("950.001")), None, 3);
        assert!(matches!(
            off_tick,
            Err(BrokerError::Refused(Refusal {
                field: "limitPrice",
                ..
            }))
        ));
        assert_eq!(b.orders("alice")[0].request.limit_price, Some(px("900")));
        assert_eq!(
            b.modify("bob", id, q("1"), Some(px("950")), None, 3),
            Err(BrokerError::NotFound(id))
        );
        b.modify("alice", id, q("2"), Some(px("950")), None, 3)
            .unwrap();
        assert!(print(&mut b, "960", 4).is_empty());
        print(&mut b, "949", 5);
        let order = b.orders("alice")[0].clone();
        assert_eq!(
            (order.status, order.filled_qty, order.avg_price),
            (Status::Filled, q("2"), Some(px("950")))
        );
        assert_eq!(
            b.modify("alice", id, q("1"), Some(px("940")), None, 6),
            Err(BrokerError::Final(id, Status::Filled))
        );
    }

    #[test]
    fn a_day_order_expires_at_its_sessions_close_and_never_fills_after() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let r = OrderRequest {
            limit_price: Some(px("990")),
            duration: Duration::Day,
            expires_at_ms: Some(100),
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        let (id, _) = b.place("alice", r, 2).unwrap();
        assert!(b.on_time(99).is_empty());
        // A print through the limit at the close: expired first.
        let events = print(&mut b, "980", 100);
        assert_eq!(events.len(), 1);
        let order = b.orders("alice")[0].clone();
        assert_eq!((order.id, order.status), (id, Status::Canceled));
        assert!(order.message.unwrap().contains("expired"));
        assert_eq!(held(&mut b, "alice"), 0);
    }

    #[test]
    fn a_trailing_stop_loss_follows_the_market_up_and_never_down() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let r = OrderRequest {
            stop_loss: Some(px("990")),
            trailing_stop: Some(px("10")),
            ..request(OrderType::Market, Side::Buy, "1")
        };
        let (parent, _) = b.place("alice", r, 2).unwrap();
        let sl = parent + 1;
        let stop_of = |b: &Broker| b.orders("alice")[1].request.stop_price;
        assert_eq!(stop_of(&b), Some(px("990")));
        print(&mut b, "1015", 3);
        assert_eq!(stop_of(&b), Some(px("1005")));
        // Down again: the stop stays.
        print(&mut b, "1008", 4);
        assert_eq!(stop_of(&b), Some(px("1005")));
        // Through the trailed stop: filled at the print.
        print(&mut b, "1004", 5);
        let order = b.orders("alice")[1].clone();
        assert_eq!(
            (order.id, order.status, order.avg_price),
            (sl, Status::Filled, Some(px("1004")))
        );
        assert_eq!(held(&mut b, "alice"), 0);
        // A trailing distance where there is no stop to trail is refused.
        let stray = OrderRequest {
            limit_price: Some(px("900")),
            trailing_stop: Some(px("10")),
            ..request(OrderType::Limit, Side::Buy, "1")
        };
        assert!(matches!(
            b.place("alice", stray, 6),
            Err(BrokerError::Refused(Refusal {
                field: "trailingStopPips",
                ..
            }))
        ));
    }

    #[test]
    fn cancelling_several_orders_and_resetting_an_account() {
        let mut b = broker();
        print(&mut b, "1000", 1);
        let limit = |side, price: &str| OrderRequest {
            limit_price: Some(px(price)),
            ..request(OrderType::Limit, side, "1")
        };
        let (a, _) = b.place("alice", limit(Side::Buy, "900"), 2).unwrap();
        let (c, _) = b.place("alice", limit(Side::Buy, "901"), 2).unwrap();
        let (d, _) = b.place("alice", limit(Side::Sell, "1100"), 2).unwrap();
        let (e, _) = b.place("bob", limit(Side::Buy, "900"), 2).unwrap();
        let events = b.cancel_orders("alice", "BTCUSD", Some(Side::Buy), Some(&[a, d, e]));
        assert_eq!(events.len(), 1, "only alice's buy {a} matches");
        assert_eq!(
            statuses(&b, "alice"),
            [
                (a, Status::Canceled),
                (c, Status::Working),
                (d, Status::Working)
            ]
        );
        b.cancel_orders("alice", "BTCUSD", None, None);
        assert!(b.orders("alice").iter().all(|o| o.status.is_final()));
        assert_eq!(statuses(&b, "bob"), [(e, Status::Working)]);

        buy_at_market(&mut b, "alice", "3", 3);
        b.place("alice", limit(Side::Sell, "1200"), 3).unwrap();
        let events = b.reset("alice");
        assert!(b.orders("alice").iter().all(|o| o.status.is_final()));
        let account = b.account("alice").clone();
        assert_eq!(account, Account::new(Cash::parse("100000").unwrap()));
        assert!(events.iter().any(|e| matches!(
            &e.change,
            Change::Position { position, .. } if position.qty == 0
        )));
        // The sequence goes on.
        let last = events.last().unwrap().seq;
        assert!(last > 10, "{last}");
    }
}
