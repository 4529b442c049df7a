//! The private channels' side of the paper broker: who follows which
//! account on which channel, and the task that turns the broker's durable
//! records into their frames, in ledger order.
//!
//! A record's events go to the followers of their account: an order's new
//! state on `orders` (and, when it ended with a reason, on
//! `notifications`), a fill on `executions`, a position on `positions`, the
//! cash figures and a leverage on `equity`. Each follower queues its frames
//! (bounded: a client that leaves more unread is closed as too slow) and
//! wakes its connection, which takes them when it writes. Between records,
//! `equity` follows the market: once per broadcast interval, each followed
//! account that holds positions gets its figures again if they changed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use trading_broker::broker::{Change, Event};
use trading_broker::desk::{Desk, Record};
use trading_broker::order::Status;
use trading_broker::units::Cash;
use trading_store::trading::Trading;

use super::hub::ConnId;
use super::outbox::Outbox;
use crate::broker::wire::{wire_account, wire_execution, wire_order, wire_position_at};

/// Private frames one follower may leave unread before its connection is
/// closed as too slow (they are changes, not states: none may be dropped).
pub const MAX_UNREAD: usize = 10_000;

/// The five private channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Orders,
    Positions,
    Executions,
    Equity,
    Notifications,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Orders => "orders",
            Kind::Positions => "positions",
            Kind::Executions => "executions",
            Kind::Equity => "equity",
            Kind::Notifications => "notifications",
        }
    }
}

/// One connection following one account, on the private channels it
/// subscribed to. One queue for all of them, so a connection gets the
/// account's changes in the order they happened whatever their channels.
pub struct Follower {
    pub conn: ConnId,
    outbox: Arc<Outbox>,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// The channels followed, each with the sequence number its snapshot
    /// was as of: updates at or below it are in the snapshot, not sent.
    kinds: HashMap<Kind, u64>,
    frames: VecDeque<(Kind, u64, String)>,
    /// The equity figures last sent: a market tick that changes nothing
    /// sends nothing.
    last_equity: Option<Value>,
}

impl Follower {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn follows(&self, kind: Kind) -> bool {
        self.lock().kinds.contains_key(&kind)
    }

    /// Starts following `kind` (its snapshot not read yet: every update
    /// queues until [`Follower::snapshot_at`] says which it already has).
    pub fn add(&self, kind: Kind) {
        self.lock().kinds.entry(kind).or_insert(0);
    }

    /// Stops following `kind`; true when it followed nothing else.
    pub fn remove(&self, kind: Kind) -> bool {
        let mut q = self.lock();
        q.kinds.remove(&kind);
        q.frames.retain(|(k, _, _)| *k != kind);
        if kind == Kind::Equity {
            q.last_equity = None;
        }
        q.kinds.is_empty()
    }

    pub fn count(&self) -> usize {
        self.lock().kinds.len()
    }

    /// Queues a frame of `kind` and wakes the connection; a follower that
    /// has left too many unread ends its connection.
    fn push(&self, kind: Kind, seq: u64, frame: String) {
        let mut q = self.lock();
        match q.kinds.get(&kind) {
            None => return,
            Some(after) if seq != 0 && seq <= *after => return,
            Some(_) => {}
        }
        if q.frames.len() >= MAX_UNREAD {
            drop(q);
            self.outbox.overflow();
            return;
        }
        q.frames.push_back((kind, seq, frame));
        drop(q);
        self.outbox.wake();
    }

    /// The snapshot of `kind` the reply carries is as of `seq`.
    pub fn snapshot_at(&self, kind: Kind, seq: u64) {
        let mut q = self.lock();
        q.kinds.insert(kind, seq);
        q.frames
            .retain(|(k, s, _)| *k != kind || *s == 0 || *s > seq);
    }

    /// The queued frames, oldest first.
    pub fn take(&self) -> Vec<String> {
        self.lock().frames.drain(..).map(|(_, _, f)| f).collect()
    }
}

/// Followers by account, and the broker they follow.
pub struct AccountFeed {
    pub trading: Arc<Trading>,
    followers: Mutex<HashMap<String, Vec<Arc<Follower>>>>,
}

impl AccountFeed {
    pub fn new(trading: Arc<Trading>) -> Arc<AccountFeed> {
        Arc::new(AccountFeed {
            trading,
            followers: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<Arc<Follower>>>> {
        self.followers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The follower of `account` on connection `conn` (made on first use).
    pub fn follow(&self, account: &str, conn: ConnId, outbox: &Arc<Outbox>) -> Arc<Follower> {
        let mut all = self.lock();
        let list = all.entry(account.to_string()).or_default();
        if let Some(f) = list.iter().find(|f| f.conn == conn) {
            return Arc::clone(f);
        }
        let follower = Arc::new(Follower {
            conn,
            outbox: Arc::clone(outbox),
            queue: Mutex::new(Queue::default()),
        });
        list.push(Arc::clone(&follower));
        follower
    }

    /// Connection `conn` follows nothing of `account` any more.
    pub fn unfollow(&self, account: &str, conn: ConnId) {
        let mut all = self.lock();
        if let Some(list) = all.get_mut(account) {
            list.retain(|f| f.conn != conn);
            if list.is_empty() {
                all.remove(account);
            }
        }
    }

    /// Runs the feed until shutdown: records as they become durable, and
    /// the market's moves on `equity` every `interval`.
    pub async fn run(self: Arc<Self>, interval: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut updates = self.trading.updates();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                got = updates.recv() => match got {
                    Ok(records) => self.dispatch(&records).await,
                    Err(RecvError::Lagged(_)) => self.resync(),
                    Err(RecvError::Closed) => return,
                },
                _ = ticks.tick() => self.market_moved().await,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// The followers of each account the records touch, by account.
    fn touched(&self, records: &[Record]) -> HashMap<String, Vec<Arc<Follower>>> {
        let all = self.lock();
        let mut out: HashMap<String, Vec<Arc<Follower>>> = HashMap::new();
        for e in records.iter().flat_map(|r| &r.events) {
            if out.contains_key(&e.account) {
                continue;
            }
            if let Some(list) = all.get(&e.account) {
                out.insert(e.account.clone(), list.clone());
            }
        }
        out
    }

    async fn dispatch(&self, records: &[Record]) {
        let touched = self.touched(records);
        if touched.is_empty() {
            return;
        }
        // What each event shows, read once the records are durable (they
        // are: the ledger publishes only then).
        let events: Vec<&Event> = records
            .iter()
            .flat_map(|r| &r.events)
            .filter(|e| touched.contains_key(&e.account))
            .collect();
        let cash = self.trading.config().starting_cash;
        let frames = self
            .trading
            .read(|desk| {
                events
                    .iter()
                    .map(|e| (e, frames_of(desk, e, cash)))
                    .collect::<Vec<_>>()
            })
            .await;
        let Ok(frames) = frames else {
            return;
        };
        for (e, frames) in frames {
            for (kind, frame, equity) in frames {
                for f in &touched[&e.account] {
                    if let Some(values) = &equity {
                        f.lock().last_equity = Some(values.clone());
                    }
                    f.push(kind, e.seq, frame.clone());
                }
            }
        }
    }

    async fn send_equity(&self, account: &str, seq: u64, followers: &[&Arc<Follower>]) {
        let cash = self.trading.config().starting_cash;
        let Ok(info) = self
            .trading
            .read(|desk| wire_account(desk, account, cash))
            .await
        else {
            return;
        };
        let values = equity_values(&info);
        for f in followers {
            {
                let mut q = f.lock();
                if q.last_equity.as_ref() == Some(&values) {
                    continue;
                }
                q.last_equity = Some(values.clone());
            }
            f.push(
                Kind::Equity,
                seq,
                update("equity", seq, "equity", values.clone()),
            );
        }
    }

    /// Each followed account holding a position: its figures at the
    /// market now, sent when they changed.
    async fn market_moved(&self) {
        let followed: Vec<(String, Vec<Arc<Follower>>)> = self
            .lock()
            .iter()
            .map(|(a, list)| {
                let equity: Vec<Arc<Follower>> = list
                    .iter()
                    .filter(|f| f.follows(Kind::Equity))
                    .cloned()
                    .collect();
                (a.clone(), equity)
            })
            .filter(|(_, list)| !list.is_empty())
            .collect();
        if followed.is_empty() {
            return;
        }
        let holding = self
            .trading
            .read(|desk| {
                followed
                    .iter()
                    .filter(|(a, _)| !desk.broker().peek_account(a).positions.is_empty())
                    .map(|(a, _)| (a.clone(), desk.broker().seq(a)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
        for (account, seq) in holding {
            if let Some((_, list)) = followed.iter().find(|(a, _)| *a == account) {
                let list: Vec<&Arc<Follower>> = list.iter().collect();
                self.send_equity(&account, seq, &list).await;
            }
        }
    }

    /// The feed fell behind the broker: every follower of `notifications`
    /// is told to read the state again.
    fn resync(&self) {
        let all = self.lock();
        for f in all.values().flatten() {
            let note = json!({
                "kind": "resync",
                "text": "updates were missed: read the account's state again over REST",
            });
            f.push(
                Kind::Notifications,
                0,
                update("notifications", 0, "notification", note),
            );
        }
    }
}

fn update(channel: &str, seq: u64, field: &str, value: Value) -> String {
    json!({
        "type": format!("{channel}.update"),
        "payload": { "seq": seq, field: value },
    })
    .to_string()
}

pub fn equity_values(info: &trading_pro::types::AccountInfo) -> Value {
    json!({
        "equity": info.equity,
        "balance": info.balance,
        "unrealizedPl": info.unrealized_pl,
        "realizedPl": info.realized_pl,
        "marginUsed": info.margin_used,
        "buyingPower": info.buying_power,
    })
}

/// The frames one event makes, by channel, in order (an `equity` frame
/// with the figures it carries).
fn frames_of(desk: &Desk, e: &Event, cash: Cash) -> Vec<(Kind, String, Option<Value>)> {
    match &e.change {
        Change::Order(o) => {
            let rules = desk.broker().rules(&o.request.symbol);
            let order = wire_order(o, rules);
            let mut out = vec![(
                Kind::Orders,
                update("orders", e.seq, "order", value(&order)),
                None,
            )];
            let ended = matches!(o.status, Status::Canceled | Status::Rejected);
            if let (true, Some(text)) = (ended, &o.message) {
                let kind = if o.status == Status::Rejected {
                    "rejected"
                } else {
                    "canceled"
                };
                let note = json!({ "kind": kind, "text": text, "orderId": o.id.to_string() });
                out.push((
                    Kind::Notifications,
                    update("notifications", e.seq, "notification", note),
                    None,
                ));
            }
            out
        }
        Change::Execution(x) => vec![(
            Kind::Executions,
            update("executions", e.seq, "execution", value(&wire_execution(x))),
            None,
        )],
        Change::Position { symbol, position } => {
            let p = wire_position_at(desk, &e.account, symbol, *position);
            vec![(
                Kind::Positions,
                update("positions", e.seq, "position", value(&p)),
                None,
            )]
        }
        // The figures as they are now (every fill and reset is followed by
        // one of these, so none is skipped).
        Change::Balance(_) | Change::Leverage { .. } => {
            let values = equity_values(&wire_account(desk, &e.account, cash));
            let frame = update("equity", e.seq, "equity", values.clone());
            vec![(Kind::Equity, frame, Some(values))]
        }
    }
}

/// A wire type as a JSON value.
pub(crate) fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}
