//! The `bars` channel: live bars of (symbol, resolution) topics. A
//! subscription is a cursor on the topic in the hub (`hub`): the hub wakes
//! the connection's outbox when a topic changes, and the connection pulls
//! every state its client has not been sent yet.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use trading_market::calendar::Resolution;
use trading_pro::messages::{
    BarsSubscriptionRequest, ClientMessage, ServerMessage, SubscriptionResponse, SubscriptionStatus,
};

use super::{Channel, Overflowed, Session};
use crate::ws::hub::{Cursor, TopicKey};

/// Followed topics, each with what this client has been sent of it.
#[derive(Default)]
pub struct BarsChannel {
    subscriptions: HashMap<TopicKey, Cursor>,
}

#[async_trait]
impl Channel for BarsChannel {
    fn name(&self) -> &'static str {
        "bars"
    }

    fn subscriptions(&self) -> usize {
        self.subscriptions.len()
    }

    async fn handle(
        &mut self,
        id: Option<&str>,
        message: ClientMessage,
        session: &Session<'_>,
    ) -> Result<Result<(), Overflowed>, ClientMessage> {
        Ok(match message {
            ClientMessage::BarsSubscribe(req) => {
                let (reply, joined) = self.subscribe(&req, session);
                // The reply is queued before the subscription's first update.
                match session.reply(ServerMessage::BarsSubscribeResponse(reply), id) {
                    Ok(()) => {
                        if let Some(key) = joined {
                            self.join(key, session).await;
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            ClientMessage::BarsUnsubscribe(req) => {
                let reply = self.unsubscribe(&req, session);
                session.reply(ServerMessage::BarsUnsubscribeResponse(reply), id)
            }
            other => return Err(other),
        })
    }

    fn take_updates(&mut self, session: &Session<'_>, frames: &mut Vec<Utf8Bytes>) -> u64 {
        let mut coalesced = 0;
        // Entitlements are checked on the way out too (a symbol whose
        // exchange changed since it was subscribed); with authentication
        // off there is nothing to check.
        let catalog = session.principal.map(|_| session.state.source.catalog());
        for (key, cursor) in self.subscriptions.iter_mut() {
            if let Some(catalog) = &catalog {
                let allowed = catalog
                    .lookup(&key.symbol)
                    .is_some_and(|s| session.may_see(s));
                if !allowed {
                    continue;
                }
            }
            coalesced += cursor.take_new(frames);
        }
        coalesced
    }

    fn narrow(&mut self, session: &Session<'_>) -> Vec<String> {
        let catalog = session.state.source.catalog();
        let mut lost: Vec<TopicKey> = self
            .subscriptions
            .keys()
            .filter(|k| {
                catalog
                    .lookup(&k.symbol)
                    .is_none_or(|s| !session.may_see(s))
            })
            .cloned()
            .collect();
        lost.sort_by_key(TopicKey::name);
        for key in &lost {
            self.subscriptions.remove(key);
            session.state.hub.unsubscribe(key, session.id);
            session.state.metrics.subscribed("bars", -1);
        }
        lost.iter().map(TopicKey::name).collect()
    }

    fn close(&mut self, session: &Session<'_>) {
        let name = self.name();
        for key in self.subscriptions.keys() {
            session.state.hub.unsubscribe(key, session.id);
        }
        session
            .state
            .metrics
            .subscribed(name, -(self.subscriptions.len() as i64));
        self.subscriptions.clear();
    }
}

impl BarsChannel {
    /// Validates a request into a topic, or the error message for the reply.
    fn topic(
        &self,
        req: &BarsSubscriptionRequest,
        session: &Session<'_>,
    ) -> Result<TopicKey, String> {
        let catalog = session.state.source.catalog();
        let symbol = session.entitled(&catalog, &req.symbol)?;
        let resolution = Resolution::parse(&req.resolution).ok_or_else(|| {
            format!(
                "Unsupported resolution {:?}; supported: 1, 5, 15, 30, 60, 240, D, W, M",
                req.resolution
            )
        })?;
        if let Some(why) = symbol.unserved_reason(resolution) {
            return Err(format!(
                "Unsupported resolution {:?}: {why}",
                req.resolution
            ));
        }
        Ok(TopicKey {
            symbol: symbol.info.ticker.clone(),
            resolution,
        })
    }

    /// The reply, and the topic when this request newly joined one.
    fn subscribe(
        &mut self,
        req: &BarsSubscriptionRequest,
        session: &Session<'_>,
    ) -> (SubscriptionResponse, Option<TopicKey>) {
        let key = match self.topic(req, session) {
            Ok(key) => key,
            Err(message) => {
                return (
                    response(req, SubscriptionStatus::Error, message, String::new()),
                    None,
                )
            }
        };
        let topic = key.name();
        if self.subscriptions.contains_key(&key) {
            let message = format!("Already subscribed to {topic}");
            return (response(req, SubscriptionStatus::Ok, message, topic), None);
        }
        let max = session.state.limits.max_subscriptions;
        if self.subscriptions.len() + session.others >= max {
            let message = format!("Too many subscriptions: at most {max} per connection");
            return (
                response(req, SubscriptionStatus::Error, message, topic),
                None,
            );
        }
        (
            response(
                req,
                SubscriptionStatus::Ok,
                format!("Subscribed to {topic}"),
                topic,
            ),
            Some(key),
        )
    }

    fn unsubscribe(
        &mut self,
        req: &BarsSubscriptionRequest,
        session: &Session<'_>,
    ) -> SubscriptionResponse {
        let key = match self.topic(req, session) {
            Ok(key) => key,
            Err(message) => {
                return response(req, SubscriptionStatus::Error, message, String::new())
            }
        };
        let topic = key.name();
        if self.subscriptions.remove(&key).is_some() {
            session.state.hub.unsubscribe(&key, session.id);
            session.state.metrics.subscribed("bars", -1);
            response(
                req,
                SubscriptionStatus::Ok,
                format!("Unsubscribed from {topic}"),
                topic,
            )
        } else {
            response(
                req,
                SubscriptionStatus::Ok,
                format!("Not subscribed to {topic}"),
                topic,
            )
        }
    }

    /// Follows the topic, starting from its current bar: the last one
    /// published, or (for a topic nobody followed) the source's current
    /// bar. That read happens after the topic exists, so whatever a pushing
    /// source publishes meanwhile is not lost, and `init` never overwrites
    /// it with the older state read here.
    async fn join(&mut self, key: TopicKey, session: &Session<'_>) {
        let state = session.state;
        let cursor = state.hub.subscribe(&key, session.id, session.outbox);
        if cursor.topic.last_bar().is_none() {
            let now = state.clock.now_ms();
            let catalog = state.source.catalog();
            if let Some(symbol) = catalog.lookup(&key.symbol) {
                if let Ok(Some(bar)) = state.source.current_bar(symbol, key.resolution, now).await {
                    cursor.topic.init(bar);
                }
            }
        }
        if self.subscriptions.insert(key, cursor).is_none() {
            state.metrics.subscribed("bars", 1);
        }
    }
}

fn response(
    req: &BarsSubscriptionRequest,
    status: SubscriptionStatus,
    message: String,
    topic: String,
) -> SubscriptionResponse {
    SubscriptionResponse {
        status,
        symbol: req.symbol.clone(),
        message,
        topic,
    }
}
