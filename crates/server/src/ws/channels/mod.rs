//! The channels of `/api/v1/ws`, one module each, behind one small
//! interface ([`Channel`]) and a registry ([`Channels`]). The connection
//! (`connection`) owns the socket, the heartbeat, the limits and the token;
//! a channel owns its subscriptions: it answers its own messages
//! (`<channel>.subscribe`, `.unsubscribe`), hands over what it has to send,
//! and drops what a narrower token no longer allows. A new channel is a
//! module here and a line in [`Channels::new`].
//!
//! * `bars`: live bars of (symbol, resolution) topics, pulled from the hub;
//! * `quotes`: watchlist quotes, pulled from the quote board on a tick;
//! * `account`: the five private channels of the paper-trading account,
//!   fed by `ws::accounts`.

mod account;
mod bars;
mod quotes;

use std::sync::Arc;

use async_trait::async_trait;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use trading_market::catalog::{Catalog, Symbol};
use trading_pro::messages::{ClientMessage, ServerMessage};

use super::hub::ConnId;
use super::outbox::Outbox;
use super::WsState;
use crate::auth::Principal;

/// The client leaves too many replies unread: the connection ends (1008).
#[derive(Debug)]
pub struct Overflowed;

/// What a channel may use of its connection.
#[derive(Clone, Copy)]
pub struct Session<'a> {
    pub state: &'a Arc<WsState>,
    pub id: ConnId,
    pub outbox: &'a Arc<Outbox>,
    /// The token's bearer, with authentication on.
    pub principal: Option<&'a Principal>,
    /// Subscriptions the connection's other channels hold: the limit
    /// counts them all.
    pub others: usize,
}

impl Session<'_> {
    /// Whether the token entitles the client to `symbol`'s exchange
    /// (always, without authentication).
    pub fn may_see(&self, symbol: &Symbol) -> bool {
        self.principal
            .is_none_or(|principal| principal.allows(&symbol.info.exchange))
    }

    /// A symbol this client may follow, or why not. One its token may not
    /// see does not exist for it: the same answer as an unknown symbol.
    pub fn entitled<'c>(&self, catalog: &'c Catalog, name: &str) -> Result<&'c Symbol, String> {
        catalog
            .lookup(name)
            .filter(|s| self.may_see(s))
            .ok_or_else(|| format!("Unknown symbol {name:?}"))
    }

    /// Queues a reply (before anything the request starts sending).
    pub fn reply(&self, message: ServerMessage, id: Option<&str>) -> Result<(), Overflowed> {
        self.push(message.encode(id))
    }

    /// Queues an encoded frame.
    pub fn push(&self, frame: String) -> Result<(), Overflowed> {
        if self.outbox.push_reply(frame) {
            Ok(())
        } else {
            Err(Overflowed)
        }
    }
}

/// One channel of the WebSocket protocol.
#[async_trait]
pub trait Channel: Send {
    /// Its name: the prefix of its messages' types, and its metrics label.
    fn name(&self) -> &'static str;

    /// How many subscriptions it holds (the limit counts every channel's).
    fn subscriptions(&self) -> usize;

    /// Answers `message` if it is this channel's (queueing the reply and
    /// whatever follows it); gives it back if not.
    async fn handle(
        &mut self,
        id: Option<&str>,
        message: ClientMessage,
        session: &Session<'_>,
    ) -> Result<Result<(), Overflowed>, ClientMessage>;

    /// What changed since it last said, as frames (pulled when the outbox
    /// is woken); how many intermediate states were coalesced.
    fn take_updates(&mut self, _session: &Session<'_>, _frames: &mut Vec<Utf8Bytes>) -> u64 {
        0
    }

    /// Whether it wants the connection's periodic pass ([`Channel::tick`]).
    fn ticking(&self) -> bool {
        false
    }

    /// The periodic pass: `all` every second, else only what is fast.
    async fn tick(&mut self, _all: bool, _session: &Session<'_>) -> Result<(), Overflowed> {
        Ok(())
    }

    /// After a token change: drops every subscription `session` may no
    /// longer see, naming each (`bars:IBM:1`, `quotes:IBM`).
    fn narrow(&mut self, session: &Session<'_>) -> Vec<String>;

    /// The connection ended: every subscription goes.
    fn close(&mut self, session: &Session<'_>);
}

/// A connection's channels.
pub struct Channels(Vec<Box<dyn Channel>>);

impl Channels {
    pub fn new() -> Channels {
        Channels(vec![
            Box::new(bars::BarsChannel::default()),
            Box::new(quotes::QuotesChannel::default()),
            Box::new(account::AccountChannel::default()),
        ])
    }

    /// Subscriptions of every channel.
    pub fn subscriptions(&self) -> usize {
        self.0.iter().map(|c| c.subscriptions()).sum()
    }

    /// Hands `message` to the channel whose it is; gives it back if none.
    pub async fn handle(
        &mut self,
        id: Option<&str>,
        mut message: ClientMessage,
        session: Session<'_>,
    ) -> Result<Result<(), Overflowed>, ClientMessage> {
        let total = self.subscriptions();
        for channel in &mut self.0 {
            let session = Session {
                others: total - channel.subscriptions(),
                ..session
            };
            match channel.handle(id, message, &session).await {
                Ok(done) => return Ok(done),
                Err(back) => message = back,
            }
        }
        Err(message)
    }

    /// Every channel's updates, and how many were coalesced.
    pub fn take_updates(&mut self, session: &Session<'_>, frames: &mut Vec<Utf8Bytes>) -> u64 {
        self.0
            .iter_mut()
            .map(|c| c.take_updates(session, frames))
            .sum()
    }

    pub fn ticking(&self) -> bool {
        self.0.iter().any(|c| c.ticking())
    }

    pub async fn tick(&mut self, all: bool, session: &Session<'_>) -> Result<(), Overflowed> {
        for channel in self.0.iter_mut().filter(|c| c.ticking()) {
            channel.tick(all, session).await?;
        }
        Ok(())
    }

    pub fn narrow(&mut self, session: &Session<'_>) -> Vec<String> {
        self.0.iter_mut().flat_map(|c| c.narrow(session)).collect()
    }

    pub fn close(&mut self, session: &Session<'_>) {
        for channel in &mut self.0 {
            channel.close(session);
        }
    }
}
