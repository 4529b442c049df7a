//! The private channels (`orders`, `positions`, `executions`, `equity`,
//! `notifications`): the connection's paper-trading account, the token's
//! `sub` (or the demo account without authentication). Subscribing follows
//! the account in the feed (`ws::accounts`) first, then reads the state the
//! reply carries: a change that lands in between is either in the state or
//! sent after it, never both, never neither.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use trading_broker::desk::Desk;
use trading_pro::messages::ClientMessage;

use super::{Channel, Overflowed, Session};
use crate::broker::wire::{wire_account, wire_execution, wire_order, wire_position, DEMO_ACCOUNT};
use crate::ws::accounts::{equity_values, value, Follower, Kind};

/// Fills a snapshot of `executions` carries at most.
const RECENT_FILLS: usize = 100;

/// The connection's private channels: one object for the five, so their
/// updates share one queue and go out in the order they happened.
#[derive(Default)]
pub struct AccountChannel {
    /// Following: the account and the connection's place in the feed.
    following: Option<(String, Arc<Follower>)>,
}

/// Which private channel `message` is for, and whether it subscribes.
fn which(message: &ClientMessage) -> Option<(Kind, bool)> {
    use ClientMessage as M;
    Some(match message {
        M::OrdersSubscribe(_) => (Kind::Orders, true),
        M::PositionsSubscribe(_) => (Kind::Positions, true),
        M::ExecutionsSubscribe(_) => (Kind::Executions, true),
        M::EquitySubscribe(_) => (Kind::Equity, true),
        M::NotificationsSubscribe(_) => (Kind::Notifications, true),
        M::OrdersUnsubscribe(_) => (Kind::Orders, false),
        M::PositionsUnsubscribe(_) => (Kind::Positions, false),
        M::ExecutionsUnsubscribe(_) => (Kind::Executions, false),
        M::EquityUnsubscribe(_) => (Kind::Equity, false),
        M::NotificationsUnsubscribe(_) => (Kind::Notifications, false),
        _ => return None,
    })
}

fn reply(
    session: &Session<'_>,
    id: Option<&str>,
    kind: Kind,
    what: &str,
    payload: Value,
) -> Result<(), Overflowed> {
    let mut frame = json!({
        "type": format!("{}.{what}", kind.name()),
        "payload": payload,
    });
    if let Some(id) = id {
        frame["id"] = json!(id);
    }
    session.push(frame.to_string())
}

impl AccountChannel {
    async fn subscribe(
        &mut self,
        kind: Kind,
        session: &Session<'_>,
        id: Option<&str>,
    ) -> Result<(), Overflowed> {
        let refused = |message: String| json!({ "status": "error", "message": message, "seq": 0 });
        let Some(feed) = &session.state.accounts else {
            let why = session
                .state
                .broker_off
                .clone()
                .unwrap_or_else(|| "the paper broker is not served here".into());
            return reply(session, id, kind, "subscribe.response", refused(why));
        };
        let account = session
            .principal
            .map_or_else(|| DEMO_ACCOUNT.to_string(), |p| p.subject.clone());
        let follower = match &self.following {
            Some((_, f)) => Arc::clone(f),
            None => {
                let f = feed.follow(&account, session.id, session.outbox);
                self.following = Some((account.clone(), Arc::clone(&f)));
                f
            }
        };
        if !follower.follows(kind) {
            session.state.metrics.subscribed(kind.name(), 1);
        }
        // Followed before the state is read: a change that lands between
        // is in the state or queued after it (and dropped if in the state).
        follower.add(kind);
        let cash = feed.trading.config().starting_cash;
        let snapshot = feed
            .trading
            .read(|desk| {
                (
                    desk.broker().seq(&account),
                    snapshot(desk, &account, kind, cash),
                )
            })
            .await;
        match snapshot {
            Ok((seq, mut payload)) => {
                follower.snapshot_at(kind, seq);
                payload["status"] = json!("ok");
                payload["message"] = json!(format!("Following the {} of {account}", kind.name()));
                payload["seq"] = json!(seq);
                reply(session, id, kind, "subscribe.response", payload)
            }
            Err(e) => {
                self.leave(kind, session);
                let why = format!("the account cannot be read now ({e:?}); retry");
                reply(session, id, kind, "subscribe.response", refused(why))
            }
        }
    }

    /// Stops following `kind`; false if it was not followed.
    fn leave(&mut self, kind: Kind, session: &Session<'_>) -> bool {
        let Some((account, follower)) = &self.following else {
            return false;
        };
        let was = follower.follows(kind);
        if was {
            session.state.metrics.subscribed(kind.name(), -1);
        }
        if follower.remove(kind) {
            if let Some(feed) = &session.state.accounts {
                feed.unfollow(account, session.id);
            }
            self.following = None;
        }
        was
    }
}

/// The state a subscribe reply carries.
fn snapshot(desk: &Desk, account: &str, kind: Kind, cash: trading_broker::units::Cash) -> Value {
    let b = desk.broker();
    match kind {
        Kind::Orders => {
            let open: Vec<Value> = b
                .orders(account)
                .into_iter()
                .filter(|o| !o.status.is_final())
                .map(|o| value(&wire_order(o, b.rules(&o.request.symbol))))
                .collect();
            json!({ "orders": open })
        }
        Kind::Positions => {
            let held: Vec<Value> = b
                .peek_account(account)
                .positions
                .keys()
                .map(|s| value(&wire_position(desk, account, s)))
                .collect();
            json!({ "positions": held })
        }
        Kind::Executions => {
            let all = b.executions(account, None);
            let recent: Vec<Value> = all[all.len().saturating_sub(RECENT_FILLS)..]
                .iter()
                .map(|x| value(&wire_execution(x)))
                .collect();
            json!({ "executions": recent })
        }
        Kind::Equity => json!({ "equity": equity_values(&wire_account(desk, account, cash)) }),
        Kind::Notifications => json!({}),
    }
}

#[async_trait]
impl Channel for AccountChannel {
    fn name(&self) -> &'static str {
        "account"
    }

    fn subscriptions(&self) -> usize {
        self.following.as_ref().map_or(0, |(_, f)| f.count())
    }

    async fn handle(
        &mut self,
        id: Option<&str>,
        message: ClientMessage,
        session: &Session<'_>,
    ) -> Result<Result<(), Overflowed>, ClientMessage> {
        Ok(match which(&message) {
            None => return Err(message),
            Some((kind, true)) => self.subscribe(kind, session, id).await,
            Some((kind, false)) => {
                let message = if self.leave(kind, session) {
                    format!("Stopped following the {}", kind.name())
                } else {
                    format!("Not following the {}", kind.name())
                };
                reply(
                    session,
                    id,
                    kind,
                    "unsubscribe.response",
                    json!({ "status": "ok", "message": message }),
                )
            }
        })
    }

    fn take_updates(&mut self, _session: &Session<'_>, frames: &mut Vec<Utf8Bytes>) -> u64 {
        if let Some((_, follower)) = &self.following {
            frames.extend(follower.take().into_iter().map(Utf8Bytes::from));
        }
        0
    }

    /// The account is the token's `sub`, which a refresh keeps: nothing
    /// to drop.
    fn narrow(&mut self, _session: &Session<'_>) -> Vec<String> {
        Vec::new()
    }

    fn close(&mut self, session: &Session<'_>) {
        for kind in [
            Kind::Orders,
            Kind::Positions,
            Kind::Executions,
            Kind::Equity,
            Kind::Notifications,
        ] {
            self.leave(kind, session);
        }
    }
}
