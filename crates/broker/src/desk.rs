//! The broker as a service sees it: commands in, each answered and leaving
//! one [`Record`] for the ledger; prints of the market in, leaving a record
//! when they changed anything. A record is what the ledger stores (JSON),
//! in order, and [`Desk::restore`] rebuilds the same desk from the records
//! alone: the broker (its events, see [`Broker::restore`]) and the
//! idempotency keys of placed orders.
//!
//! Still no I/O: where the desk lives (in memory for the synthetic market,
//! in the store's writer for a store, so a trade and the fills it causes
//! commit together) is the caller's choice.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::broker::{AccountId, Broker, BrokerError, Event};
use crate::matcher::Print;
use crate::order::{OrderId, OrderRequest, Side};
use crate::rules::SymbolRules;
use crate::units::{Cash, Price, Qty};

/// How long a placed order's idempotency key is remembered (the ingest
/// operations keep theirs as long).
pub const KEY_RETENTION_MS: i64 = 24 * 3_600_000;

/// What an account asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Place {
        request: OrderRequest,
        /// The `Idempotency-Key`, if the client sent one.
        key: Option<String>,
    },
    Modify {
        id: OrderId,
        qty: Qty,
        limit_price: Option<Price>,
        stop_price: Option<Price>,
    },
    Cancel {
        id: OrderId,
    },
    CancelMany {
        symbol: String,
        side: Option<Side>,
        ids: Option<Vec<OrderId>>,
    },
    Close {
        symbol: String,
        amount: Option<Qty>,
    },
    Reverse {
        symbol: String,
    },
    Brackets {
        symbol: String,
        take_profit: Option<Price>,
        stop_loss: Option<Price>,
    },
    Reset,
    Leverage {
        symbol: String,
        leverage: u32,
    },
}

/// A command: whose, when, what, and the market as the server saw it when
/// it took the command (a price newer than the last print is a print).
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub account: AccountId,
    pub now_ms: i64,
    pub action: Action,
    /// The symbol's rules, to list a symbol the desk has not traded yet.
    pub rules: Option<(String, SymbolRules)>,
    pub market: Option<Market>,
}

/// A symbol's market: its last price, and its bid and ask when the source
/// quotes them.
#[derive(Clone, Debug, PartialEq)]
pub struct Market {
    pub symbol: String,
    /// When it printed `last`, for a market that prints as time passes
    /// (the synthetic one: now). None for a store's, whose prints the desk
    /// sees as they are ingested: its last price only tells a desk that
    /// has seen none yet (after a restart) where the market is.
    pub time_ms: Option<i64>,
    pub last: Price,
    pub quote: Option<(Price, Price)>,
}

/// What a command answered: what the caller reads back from the desk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The order placed, modified, cancelled, or the one that closed or
    /// reversed a position.
    Order(OrderId),
    /// The orders cancelled.
    Orders(Vec<OrderId>),
    /// The position whose brackets changed.
    Position(String),
    /// The account (after a reset).
    Account,
    /// The leverage set.
    Leverage,
}

/// Why a command did nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeskError {
    Broker(BrokerError),
    /// The key placed an order with another body (422).
    KeyReused(String),
}

impl From<BrokerError> for DeskError {
    fn from(e: BrokerError) -> DeskError {
        DeskError::Broker(e)
    }
}

/// What a command answered, and the records the ledger must keep for it,
/// in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub answer: Result<Answer, DeskError>,
    pub records: Vec<Record>,
}

type Carried = (Result<(Answer, Option<Record>), DeskError>, Option<Record>);

/// A placed order's idempotency key as the ledger keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    pub account: AccountId,
    pub key: String,
    pub fingerprint: u64,
    pub order: OrderId,
}

/// One entry of the ledger: what one command or one print changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyUse>,
    pub events: Vec<Event>,
}

/// The broker, the keys of placed orders, and where each symbol's market
/// last printed.
pub struct Desk {
    broker: Broker,
    keys: HashMap<(AccountId, String), (u64, OrderId, i64)>,
    /// When old keys were last dropped.
    keys_pruned_ms: i64,
    /// Each symbol's newest print: older prices (history amended by a late
    /// trade) do not trade.
    printed: HashMap<String, i64>,
}

impl Desk {
    pub fn new(broker: Broker) -> Desk {
        Desk {
            broker,
            keys: HashMap::new(),
            keys_pruned_ms: i64::MIN,
            printed: HashMap::new(),
        }
    }

    /// The desk that `records` (the ledger, in order) leave.
    pub fn restore(
        starting_cash: Cash,
        commission: Cash,
        rules: impl IntoIterator<Item = (String, SymbolRules)>,
        records: impl IntoIterator<Item = Record>,
    ) -> Desk {
        let mut keys = HashMap::new();
        let mut events = Vec::new();
        for record in records {
            if let Some(k) = record.key {
                keys.insert((k.account, k.key), (k.fingerprint, k.order, record.time_ms));
            }
            events.extend(record.events);
        }
        let broker = Broker::restore(starting_cash, commission, rules, events);
        Desk {
            broker,
            keys,
            keys_pruned_ms: i64::MIN,
            printed: HashMap::new(),
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Makes `symbol` tradable (again: rules change with the catalog).
    pub fn list(&mut self, symbol: &str, rules: SymbolRules) {
        if self.broker.rules(symbol) != Some(&rules) {
            self.broker.list(symbol, rules);
        }
    }

    /// Carries out `command`: its answer, and what the ledger must keep
    /// (the print its market was, if that changed anything, then what the
    /// command changed; nothing for a replayed key). A refused command
    /// changes nothing but that print.
    pub fn apply(&mut self, command: Command) -> Applied {
        let (answer, printed) = self.carry_out(command);
        let mut records: Vec<Record> = printed.into_iter().collect();
        let answer = answer.map(|(answer, record)| {
            records.extend(record);
            answer
        });
        Applied { answer, records }
    }

    /// The command's answer with its own record, and its market's print.
    fn carry_out(&mut self, command: Command) -> Carried {
        let Command {
            account,
            now_ms,
            action,
            rules,
            market,
        } = command;
        if let Some((symbol, rules)) = rules {
            self.list(&symbol, rules);
        }
        let printed = market.and_then(|m| self.observe(m));
        let a = account.as_str();
        let b = &mut self.broker;
        let mut key_use = None;
        let done: Result<(Answer, Vec<Event>), DeskError> = match action {
            Action::Place { request, key } => {
                let fingerprint = fingerprint(&request);
                if let Some(key) = &key {
                    self.forget_old_keys(now_ms);
                    let remembered = self
                        .keys
                        .get(&(account.clone(), key.clone()))
                        .filter(|(_, _, at)| *at >= now_ms - KEY_RETENTION_MS);
                    if let Some((seen, order, _)) = remembered {
                        let answer = if *seen == fingerprint {
                            Ok((Answer::Order(*order), None))
                        } else {
                            Err(DeskError::KeyReused(format!(
                                "the Idempotency-Key {key:?} placed order {order} with another \
                                 body; use a new key for a new order"
                            )))
                        };
                        return (answer, printed);
                    }
                }
                let b = &mut self.broker;
                b.place(a, request, now_ms)
                    .map(|(id, events)| {
                        key_use = key.map(|key| KeyUse {
                            account: account.clone(),
                            key,
                            fingerprint,
                            order: id,
                        });
                        (Answer::Order(id), events)
                    })
                    .map_err(DeskError::from)
            }
            Action::Modify {
                id,
                qty,
                limit_price,
                stop_price,
            } => b
                .modify(a, id, qty, limit_price, stop_price, now_ms)
                .map(|e| (Answer::Order(id), e))
                .map_err(DeskError::from),
            Action::Cancel { id } => b
                .cancel(a, id)
                .map(|e| (Answer::Order(id), e))
                .map_err(DeskError::from),
            Action::CancelMany { symbol, side, ids } => {
                let events = b.cancel_orders(a, &symbol, side, ids.as_deref());
                let mut ended: Vec<OrderId> = events
                    .iter()
                    .filter_map(|e| match &e.change {
                        crate::broker::Change::Order(o) => Some(o.id),
                        _ => None,
                    })
                    .collect();
                ended.dedup();
                Ok((Answer::Orders(ended), events))
            }
            Action::Close { symbol, amount } => b
                .close_position(a, &symbol, amount, now_ms)
                .map(|(id, e)| (Answer::Order(id), e))
                .map_err(DeskError::from),
            Action::Reverse { symbol } => b
                .reverse_position(a, &symbol, now_ms)
                .map(|(id, e)| (Answer::Order(id), e))
                .map_err(DeskError::from),
            Action::Brackets {
                symbol,
                take_profit,
                stop_loss,
            } => b
                .edit_position_brackets(a, &symbol, take_profit, stop_loss, now_ms)
                .map(|e| (Answer::Position(symbol), e))
                .map_err(DeskError::from),
            Action::Reset => Ok((Answer::Account, b.reset(a))),
            Action::Leverage { symbol, leverage } => b
                .set_leverage(a, &symbol, leverage)
                .map(|e| (Answer::Leverage, e))
                .map_err(DeskError::from),
        };
        let answer = done.map(|(answer, events)| {
            if let Some(k) = &key_use {
                self.keys.insert(
                    (k.account.clone(), k.key.clone()),
                    (k.fingerprint, k.order, now_ms),
                );
            }
            let record = (!events.is_empty() || key_use.is_some()).then_some(Record {
                time_ms: now_ms,
                key: key_use,
                events,
            });
            (answer, record)
        });
        (answer, printed)
    }

    /// Drops keys past their retention, at most once a minute (a key is
    /// also checked for its age when looked up), so a placement with a
    /// key does not walk every key.
    fn forget_old_keys(&mut self, now_ms: i64) {
        if now_ms.saturating_sub(self.keys_pruned_ms) < 60_000 {
            return;
        }
        self.keys_pruned_ms = now_ms;
        self.keys
            .retain(|_, (_, _, at)| *at >= now_ms - KEY_RETENTION_MS);
    }

    /// A price the market printed: the orders it fills, what follows. A
    /// print older than the symbol's newest (history amended late) changes
    /// nothing; the first of a new minute opens a bar (a gap may lie
    /// before it).
    pub fn print(&mut self, symbol: &str, price: Price, time_ms: i64) -> Option<Record> {
        let before = self.printed.get(symbol).copied();
        if before.is_some_and(|t| time_ms < t) {
            return None;
        }
        self.printed.insert(symbol.to_string(), time_ms);
        let opens_bar = before.is_none_or(|t| t.div_euclid(60_000) != time_ms.div_euclid(60_000));
        let print = Print {
            price,
            time_ms,
            opens_bar,
        };
        let events = self.broker.on_print(symbol, print);
        (!events.is_empty()).then_some(Record {
            time_ms,
            key: None,
            events,
        })
    }

    /// The market as the server sees it (with a command, or as a source
    /// that is asked for its prices moves): its quote; its price, a print
    /// when it has a time newer than the last print's. A price without a
    /// time only sets where the market is when the desk knows nothing of
    /// it yet: it fills nothing and moves no watermark.
    pub fn observe(&mut self, m: Market) -> Option<Record> {
        if let Some((bid, ask)) = m.quote {
            self.broker.on_quote(&m.symbol, bid, ask);
        }
        match m.time_ms {
            Some(t) if self.printed.get(&m.symbol).is_none_or(|last| t > *last) => {
                self.print(&m.symbol, m.last, t)
            }
            Some(_) => None,
            None => {
                if self.broker.last(&m.symbol).is_none() {
                    self.broker.seed(&m.symbol, m.last);
                }
                None
            }
        }
    }

    /// The clock reached `now_ms`: DAY orders whose session closed end.
    pub fn tick(&mut self, now_ms: i64) -> Option<Record> {
        let events = self.broker.on_time(now_ms);
        (!events.is_empty()).then_some(Record {
            time_ms: now_ms,
            key: None,
            events,
        })
    }
}

/// A stable fingerprint of what an order asks (FNV-1a over its JSON), to
/// tell a retry from another order reusing the key.
fn fingerprint(request: &OrderRequest) -> u64 {
    let text = serde_json::to_string(request).unwrap_or_default();
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::OrderType;

    fn rules() -> SymbolRules {
        SymbolRules::for_symbol(100, 1, 3, 10_000).unwrap()
    }

    fn cash(s: &str) -> Cash {
        Cash::parse(s).unwrap()
    }

    fn command(action: Action, t: i64) -> Command {
        Command {
            account: "alice".into(),
            now_ms: t,
            action,
            rules: Some(("BTCUSD".into(), rules())),
            market: Some(Market {
                symbol: "BTCUSD".into(),
                time_ms: Some(t),
                last: Price::parse("100").unwrap(),
                quote: None,
            }),
        }
    }

    fn buy(qty: &str, key: Option<&str>) -> Action {
        let q = Qty::parse(qty).unwrap();
        Action::Place {
            request: OrderRequest::new("BTCUSD", OrderType::Market, Side::Buy, q),
            key: key.map(str::to_string),
        }
    }

    #[test]
    fn a_key_places_once_and_refuses_another_body_even_after_a_restore() {
        let mut desk = Desk::new(Broker::new(cash("1000"), Cash::ZERO));
        let first = desk.apply(command(buy("1", Some("k1")), 1));
        let Ok(Answer::Order(id)) = first.answer else {
            panic!("placed")
        };
        let keyed = first.records.last().and_then(|r| r.key.as_ref());
        assert_eq!(keyed.map(|k| k.order), Some(id));
        let ledger = first.records;
        // The same key and body: the same order, nothing new to keep.
        let again = desk.apply(command(buy("1", Some("k1")), 2));
        assert_eq!(
            (again.answer, again.records),
            (Ok(Answer::Order(id)), Vec::new())
        );
        let mut rebuilt = Desk::restore(
            cash("1000"),
            Cash::ZERO,
            [("BTCUSD".to_string(), rules())],
            ledger,
        );
        for d in [&mut desk, &mut rebuilt] {
            let other = d.apply(command(buy("2", Some("k1")), 3)).answer;
            assert!(matches!(other, Err(DeskError::KeyReused(_))), "{other:?}");
            let same = d.apply(command(buy("1", Some("k1")), 3)).answer;
            assert_eq!(same, Ok(Answer::Order(id)));
            assert_eq!(d.broker().orders("alice").len(), 1);
        }
        // A day later the key is forgotten: a new order.
        let later = desk.apply(command(buy("1", Some("k1")), KEY_RETENTION_MS + 10));
        assert_ne!(later.answer, Ok(Answer::Order(id)));
    }
}
