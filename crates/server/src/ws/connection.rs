//! One WebSocket connection: reads requests, writes replies and updates,
//! pings, and enforces the heartbeat, the lifespan and the size limits.
//!
//! A single task owns the socket and selects over the next incoming frame,
//! queued output, the ping timer, the deadlines and shutdown, so nothing else
//! ever waits on this client's socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use slog::{debug, info};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use trading_pro::messages::{
    AuthRefreshResponse, BarsSubscriptionRequest, ClientMessage, QuotesSubscriptionRequest,
    QuotesSubscriptionResponse, ServerMessage, SubscriptionResponse, SubscriptionStatus,
};

use super::hub::{ConnId, Cursor, TopicKey};
use super::outbox::Outbox;
use super::socket::{FrameLimit, Socket};
use super::WsState;
use crate::auth::{Auth, Principal};
use trading_market::calendar::Resolution;
use trading_market::catalog::{Catalog, Symbol};

/// The close code of a connection whose token expired unrefreshed
/// (documented in specs/asyncapi.yaml).
pub const TOKEN_EXPIRED: u16 = 4001;

/// Largest frame or message a client may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// How often a client that is behind is looked at again.
const BEHIND_RECHECK: Duration = Duration::from_millis(250);

/// Why a connection ends: each server-side reason has its documented close
/// code.
enum Ending {
    /// The client closed (with its code, if it sent one) or went away.
    ClientLeft(Option<u16>),
    Close(CloseCode, String),
}

/// `remote` is the client's address as the edge sees it (for the log);
/// `auth` is the server's verifier and the handshake token's bearer, when
/// authentication is on.
pub async fn serve(
    socket: Socket,
    state: Arc<WsState>,
    peer: String,
    auth: Option<(Arc<Auth>, Principal)>,
) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        // Small buffers keep idle connections cheap; frames here are small.
        // Writes are buffered up to 4 KiB so a batch of queued frames goes
        // out in one syscall (`send_all` flushes at its end).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024);
    let ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
    let mut conn = Connection {
        id: state.hub.connection_id(),
        outbox: Arc::new(Outbox::default()),
        subscriptions: HashMap::new(),
        state: Arc::clone(&state),
        auth,
        expiry_moved: false,
        quotes: HashMap::new(),
        quotes_due: false,
        looked: None,
    };
    state.connection_opened();
    let opened = Instant::now();
    let ending = conn.run(ws).await;
    let topics = conn.subscriptions.len();
    for key in conn.subscriptions.keys() {
        state.hub.unsubscribe(key, conn.id);
    }
    state.metrics.subscribed("bars", -(topics as i64));
    state
        .metrics
        .subscribed("quotes", -(conn.quotes.len() as i64));
    state.metrics.closed(match &ending {
        Ending::ClientLeft(code) => *code,
        Ending::Close(code, _) => Some(u16::from(*code)),
    });
    state.connection_closed();
    let seconds = opened.elapsed().as_secs_f64();
    match ending {
        Ending::ClientLeft(code) => debug!(state.log, "websocket closed by the client";
            "code" => code, "remote" => %peer, "seconds" => seconds, "subscriptions" => topics),
        // Shutdown closes every connection at once: the shutdown log line
        // counts them instead.
        Ending::Close(CloseCode::Away, _) => {}
        Ending::Close(code, reason) => info!(state.log, "websocket closed";
            "code" => u16::from(code), "reason" => reason, "remote" => %peer,
            "seconds" => seconds, "subscriptions" => topics),
    }
}

/// The close code and reason for a failed read, or None when the client
/// simply went away.
fn read_failure(e: WsError) -> Option<(CloseCode, String)> {
    match e {
        WsError::Capacity(e) => Some((
            CloseCode::Size,
            format!("Message too big: {e} (limit {MAX_MESSAGE_BYTES} bytes)"),
        )),
        WsError::Utf8(_) => Some((CloseCode::Invalid, "Invalid UTF-8 in a text message".into())),
        WsError::Protocol(e) => Some((CloseCode::Protocol, format!("Protocol error: {e}"))),
        WsError::Io(e) => e
            .get_ref()
            .and_then(|e| e.downcast_ref::<FrameLimit>())
            .map(|limit| (CloseCode::Size, format!("Message too big: {limit}"))),
        _ => None,
    }
}

struct Connection {
    id: ConnId,
    outbox: Arc<Outbox>,
    /// Followed topics, each with what this client has been sent of it.
    subscriptions: HashMap<TopicKey, Cursor>,
    state: Arc<WsState>,
    auth: Option<(Arc<Auth>, Principal)>,
    /// Set by a refresh: the token deadline must be moved.
    expiry_moved: bool,
    /// Followed quote symbols, by ticker.
    quotes: HashMap<String, QuoteFollow>,
    /// Set by a quotes subscription: its new symbols' quotes go out now.
    quotes_due: bool,
    /// When the client's unread bytes were last asked of the kernel, and
    /// how many there were (see `is_behind`).
    looked: Option<(Instant, usize)>,
}

/// How long a look at a client's unread bytes stands while they are
/// under half the send backlog. The look is an ioctl, and a connection
/// following several busy topics flushes dozens of times a second: asking
/// before every flush cost 9-11% of the server's CPU per message at 10,000
/// connections of 10 topics (docs/BENCHMARKS.md, "WebSocket").
/// Between looks a client can fall at most this much further behind,
/// which its kernel buffer holds; a socket that then stops taking bytes
/// still meets the slow-client timeout in `flush`.
const LOOK_STANDS: Duration = Duration::from_millis(50);

/// A followed quote symbol: its rate, and the version of its quote this
/// client was last sent (0: none yet).
struct QuoteFollow {
    fast: bool,
    sent: u64,
}

impl Connection {
    async fn run(&mut self, mut ws: WebSocketStream<Socket>) -> Ending {
        let limits = self.state.limits.clone();
        let mut shutdown = self.state.shutdown.subscribe();
        // A connection handed over while shutdown began subscribed after
        // it: `changed` would never fire, and the client would lose the
        // socket at exit without the 1001 that tells it to go elsewhere.
        if *shutdown.borrow() {
            shutdown.mark_changed();
        }
        let open_message = ws.get_ref().open_message();
        // Both deadlines live across iterations: a sleep made anew in every
        // `select!` would re-register a timer for every frame sent.
        let lifespan_end = sleep_until(Instant::now() + limits.max_lifespan);
        let heartbeat = sleep_until(Instant::now() + limits.heartbeat);
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        let token_end = sleep_until(self.token_deadline().unwrap_or(far));
        tokio::pin!(lifespan_end, heartbeat, token_end);
        // Fast quote symbols are looked at every tick, the others every
        // `slow_every`-th (at least a second apart).
        let mut quote_tick = tokio::time::interval(limits.quote_interval);
        quote_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let slow_every = Duration::from_secs(1)
            .as_micros()
            .div_ceil(limits.quote_interval.as_micros().max(1))
            .max(1) as u64;
        let mut quote_ticks = 0u64;
        let mut ping =
            tokio::time::interval_at(Instant::now() + limits.heartbeat / 3, limits.heartbeat / 3);
        // Since when the client has left more than the send backlog unread
        // (its updates wait, coalescing, until it catches up).
        let mut behind_since: Option<Instant> = None;
        let ending = loop {
            let recheck = Instant::now() + BEHIND_RECHECK;
            tokio::select! {
                frame = ws.next() => {
                    heartbeat.as_mut().reset(Instant::now() + limits.heartbeat);
                    match frame {
                        None | Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => break Ending::ClientLeft(None),
                        Some(Err(e)) => match read_failure(e) {
                            Some((code, reason)) => break Ending::Close(code, reason),
                            None => break Ending::ClientLeft(None),
                        },
                        Some(Ok(Message::Text(text))) => {
                            if let Err(ending) = self.handle(&text).await {
                                break ending;
                            }
                            if std::mem::take(&mut self.expiry_moved) {
                                token_end.as_mut().reset(self.token_deadline().unwrap_or(far));
                            }
                            if std::mem::take(&mut self.quotes_due) {
                                if let Err(ending) = self.pass_quotes(QuotePass::New).await {
                                    break ending;
                                }
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            break Ending::Close(CloseCode::Unsupported, "Could not decode message".into())
                        }
                        // tungstenite queues the pong; flushing sends it now.
                        Some(Ok(Message::Ping(_))) => {
                            if ws.flush().await.is_err() { break Ending::ClientLeft(None) }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            // tungstenite has queued the echo of the client's
                            // close (the closing handshake); send it before
                            // the TCP connection goes.
                            let _ = timeout(Duration::from_secs(1), ws.flush()).await;
                            return Ending::ClientLeft(frame.map(|f| u16::from(f.code)));
                        }
                        Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                    }
                }
                _ = self.outbox.ready(), if behind_since.is_none() => {
                    if self.outbox.overflowed() {
                        break Ending::Close(CloseCode::Policy, "Client too slow: too many unread replies".into());
                    }
                    if self.is_behind(&ws) {
                        behind_since = Some(Instant::now());
                        continue;
                    }
                    if let Err(ending) = self.flush(&mut ws).await {
                        break ending;
                    }
                }
                _ = sleep_until(recheck), if behind_since.is_some() => {
                    if self.outbox.overflowed() {
                        break Ending::Close(CloseCode::Policy, "Client too slow: too many unread replies".into());
                    }
                    if !self.is_behind(&ws) {
                        behind_since = None;
                        // Everything that changed meanwhile, coalesced.
                        if let Err(ending) = self.flush(&mut ws).await {
                            break ending;
                        }
                    } else if behind_since.is_some_and(|t| t.elapsed() >= limits.slow_client) {
                        break Ending::Close(CloseCode::Policy, format!(
                            "Client too slow: more than {} bytes left unread for {:?}",
                            limits.send_backlog, limits.slow_client
                        ));
                    }
                }
                _ = ping.tick() => {
                    if open_message.began().is_some_and(|t| t.elapsed() >= limits.heartbeat) {
                        break Ending::Close(CloseCode::Policy, format!(
                            "Message not completed within {:?}", limits.heartbeat
                        ));
                    }
                    let sent = timeout(limits.slow_client, ws.send(Message::Ping(Default::default()))).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break Ending::Close(CloseCode::Policy, self.too_slow());
                    }
                }
                _ = &mut heartbeat => break Ending::Close(
                    CloseCode::Policy,
                    format!("Heartbeat timeout: no frame received within {:?}", limits.heartbeat),
                ),
                _ = &mut lifespan_end => break Ending::Close(
                    CloseCode::Normal,
                    format!("Connection lifespan of {:?} ended", limits.max_lifespan),
                ),
                _ = quote_tick.tick(), if !self.quotes.is_empty() => {
                    quote_ticks += 1;
                    // A client that is behind gets the newest quotes once
                    // it catches up, not a backlog.
                    if behind_since.is_none() && !self.is_behind(&ws) {
                        let pass = if quote_ticks.is_multiple_of(slow_every) { QuotePass::All } else { QuotePass::Fast };
                        if let Err(ending) = self.pass_quotes(pass).await {
                            break ending;
                        }
                    }
                }
                _ = &mut token_end, if self.auth.is_some() => break Ending::Close(
                    CloseCode::from(TOKEN_EXPIRED),
                    "Token expired".into(),
                ),
                _ = shutdown.changed() => break Ending::Close(CloseCode::Away, "Server shutting down".into()),
            }
        };
        if let Ending::Close(code, reason) = &ending {
            let frame = CloseFrame {
                code: *code,
                reason: reason.as_str().into(),
            };
            // Send our Close and wait (briefly) for the peer's, so the TCP
            // connection is not torn down under a client still reading; a
            // client that stopped reading may never see it.
            let _ = timeout(Duration::from_secs(1), async {
                if ws.close(Some(frame)).await.is_ok() {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
            .await;
        }
        ending
    }

    /// When the connection's token runs out (with the leeway), if it has one.
    fn token_deadline(&self) -> Option<Instant> {
        self.auth
            .as_ref()
            .map(|(auth, principal)| auth.deadline(principal.expires_at))
    }

    /// Takes a fresh token for the same user: the connection then lives to
    /// its expiry, with its entitlements (a followed topic it no longer
    /// entitles to is dropped). A token that does not verify changes
    /// nothing.
    fn refresh(&mut self, token: &str) -> AuthRefreshResponse {
        let refused = |message: String| AuthRefreshResponse {
            status: SubscriptionStatus::Error,
            message,
            expires_at: None,
        };
        let Some((auth, current)) = &mut self.auth else {
            return refused("This server does not use tokens: there is nothing to refresh".into());
        };
        let fresh = match auth.verify(token) {
            Ok(fresh) => fresh,
            Err(rejection) => {
                return refused(format!(
                    "{}; the connection keeps its current token",
                    rejection.message()
                ))
            }
        };
        if fresh.subject != current.subject {
            return refused(
                "The fresh token is for another user (its sub differs); the connection keeps \
                 its current token"
                    .into(),
            );
        }
        // Every live stream of every channel is checked against the fresh
        // token: what it does not entitle to is dropped.
        let catalog = self.state.source.catalog();
        let hidden = |symbol: &str| {
            catalog
                .lookup(symbol)
                .is_none_or(|s| !fresh.allows(&s.info.exchange))
        };
        let lost: Vec<TopicKey> = self
            .subscriptions
            .keys()
            .filter(|k| hidden(&k.symbol))
            .cloned()
            .collect();
        for key in &lost {
            self.subscriptions.remove(key);
            self.state.hub.unsubscribe(key, self.id);
            self.state.metrics.subscribed("bars", -1);
        }
        let mut lost_quotes: Vec<String> =
            self.quotes.keys().filter(|t| hidden(t)).cloned().collect();
        lost_quotes.sort();
        for ticker in &lost_quotes {
            self.quotes.remove(ticker);
            self.state.metrics.subscribed("quotes", -1);
        }
        let expires_at = fresh.expires_at;
        *current = fresh;
        self.expiry_moved = true;
        let mut message = "Token refreshed".to_string();
        let names: Vec<String> = lost
            .iter()
            .map(TopicKey::name)
            .chain(lost_quotes.iter().map(|t| format!("quotes:{t}")))
            .collect();
        if !names.is_empty() {
            message.push_str(&format!(
                "; unsubscribed from {} (not entitled by the fresh token)",
                names.join(", ")
            ));
        }
        AuthRefreshResponse {
            status: SubscriptionStatus::Ok,
            message,
            expires_at: Some(expires_at),
        }
    }

    /// Whether the client has left more than the send backlog unread.
    fn is_behind(&mut self, ws: &WebSocketStream<Socket>) -> bool {
        let backlog = self.state.limits.send_backlog;
        let now = Instant::now();
        if let Some((at, unsent)) = self.looked {
            if unsent <= backlog / 2 && now.duration_since(at) < LOOK_STANDS {
                return false;
            }
        }
        let unsent = ws.get_ref().unsent();
        self.looked = unsent.map(|n| (now, n));
        unsent.is_some_and(|n| n > backlog)
    }

    fn too_slow(&self) -> String {
        format!(
            "Client too slow: socket accepted nothing for {:?}",
            self.state.limits.slow_client
        )
    }

    /// Writes the queued replies, then every followed topic's states this
    /// client has not been sent yet; a socket that accepts nothing for the
    /// slow-client timeout ends the connection.
    async fn flush(&mut self, ws: &mut WebSocketStream<Socket>) -> Result<(), Ending> {
        let (replies, updated) = self.outbox.take();
        let mut updates = Vec::new();
        if updated {
            let mut coalesced = 0;
            // Entitlements are checked on the way out too (a symbol whose
            // exchange changed since it was subscribed); with
            // authentication off there is nothing to check.
            let seen = self
                .auth
                .as_ref()
                .map(|(_, p)| (p, self.state.source.catalog()));
            for (key, cursor) in self.subscriptions.iter_mut() {
                if let Some((principal, catalog)) = &seen {
                    let allowed = catalog
                        .lookup(&key.symbol)
                        .is_some_and(|s| principal.allows(&s.info.exchange));
                    if !allowed {
                        continue;
                    }
                }
                coalesced += cursor.take_new(&mut updates);
            }
            if coalesced > 0 {
                self.state.metrics.ws_coalesced.inc_by(coalesced);
            }
        }
        let metrics = &self.state.metrics;
        metrics
            .ws_messages
            .inc_by((replies.len() + updates.len()) as u64);
        metrics.ws_bytes.inc_by(
            (replies.iter().map(|r| r.len()).sum::<usize>()
                + updates.iter().map(|u| u.len()).sum::<usize>()) as u64,
        );
        let messages = replies
            .into_iter()
            .map(|r| Message::Text(r.into()))
            .chain(updates.into_iter().map(Message::Text));
        let mut stream = futures_util::stream::iter(messages.map(Ok));
        match timeout(self.state.limits.slow_client, ws.send_all(&mut stream)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::ClientLeft(None)),
            Err(_) => Err(Ending::Close(CloseCode::Policy, self.too_slow())),
        }
    }

    /// Handles one text frame; an undecodable frame ends the connection with
    /// 1003 and the protocol's reason.
    async fn handle(&mut self, text: &str) -> Result<(), Ending> {
        let (id, message) = ClientMessage::decode(text)
            .map_err(|e| Ending::Close(CloseCode::Unsupported, e.reason().into()))?;
        let (reply, joined) = match message {
            ClientMessage::BarsSubscribe(req) => {
                let (reply, joined) = self.subscribe(&req);
                (ServerMessage::BarsSubscribeResponse(reply), joined)
            }
            ClientMessage::BarsUnsubscribe(req) => (
                ServerMessage::BarsUnsubscribeResponse(self.unsubscribe(&req)),
                None,
            ),
            ClientMessage::AuthRefresh(req) => (
                ServerMessage::AuthRefreshResponse(self.refresh(&req.token)),
                None,
            ),
            ClientMessage::QuotesSubscribe(req) => (
                ServerMessage::QuotesSubscribeResponse(self.subscribe_quotes(&req)),
                None,
            ),
            ClientMessage::QuotesUnsubscribe(req) => (
                ServerMessage::QuotesUnsubscribeResponse(self.unsubscribe_quotes(&req)),
                None,
            ),
        };
        // The reply is queued before the subscription's first update.
        if !self.outbox.push_reply(reply.encode(id.as_deref())) {
            return Err(Ending::Close(
                CloseCode::Policy,
                "Client too slow: too many unread replies".into(),
            ));
        }
        if let Some(key) = joined {
            self.join(key).await;
        }
        Ok(())
    }

    /// A symbol this client may follow, or why not. One its token may not
    /// see does not exist for it: the same answer as an unknown symbol.
    fn entitled<'a>(&self, catalog: &'a Catalog, name: &str) -> Result<&'a Symbol, String> {
        catalog
            .lookup(name)
            .filter(|s| self.may_see(s))
            .ok_or_else(|| format!("Unknown symbol {name:?}"))
    }

    /// Whether the connection's token entitles it to `symbol`'s exchange
    /// (always, without authentication).
    fn may_see(&self, symbol: &Symbol) -> bool {
        self.auth
            .as_ref()
            .is_none_or(|(_, principal)| principal.allows(&symbol.info.exchange))
    }

    /// Follows the request's symbols (a symbol in `fast_symbols` at the
    /// fast rate), all or none: the reply names the first symbol that
    /// cannot be followed.
    fn subscribe_quotes(&mut self, req: &QuotesSubscriptionRequest) -> QuotesSubscriptionResponse {
        let refused = |message: String| QuotesSubscriptionResponse {
            status: SubscriptionStatus::Error,
            message,
            symbols: vec![],
            fast_symbols: vec![],
        };
        if req.symbols.is_empty() && req.fast_symbols.is_empty() {
            return refused("Name at least one symbol in symbols or fast_symbols".into());
        }
        let catalog = self.state.source.catalog();
        let mut wanted: Vec<(String, bool)> = Vec::new();
        let named = req
            .symbols
            .iter()
            .map(|n| (n, false))
            .chain(req.fast_symbols.iter().map(|n| (n, true)));
        for (name, fast) in named {
            match self
                .entitled(&catalog, name)
                .map(|s| s.ticker().to_string())
            {
                Ok(ticker) => match wanted.iter_mut().find(|(t, _)| *t == ticker) {
                    Some(w) => w.1 |= fast,
                    None => wanted.push((ticker, fast)),
                },
                Err(message) => return refused(message),
            }
        }
        let added = wanted
            .iter()
            .filter(|(t, _)| !self.quotes.contains_key(t))
            .count();
        let max = self.state.limits.max_subscriptions;
        if self.subscriptions.len() + self.quotes.len() + added > max {
            return refused(format!(
                "Too many subscriptions: at most {max} per connection (bar topics and quote \
                 symbols together)"
            ));
        }
        let (mut symbols, mut fast_symbols) = (Vec::new(), Vec::new());
        for (ticker, fast) in wanted {
            let follow = self
                .quotes
                .entry(ticker.clone())
                .or_insert(QuoteFollow { fast, sent: 0 });
            follow.fast = fast;
            if fast {
                fast_symbols.push(ticker);
            } else {
                symbols.push(ticker);
            }
        }
        self.state.metrics.subscribed("quotes", added as i64);
        self.quotes_due = true;
        QuotesSubscriptionResponse {
            status: SubscriptionStatus::Ok,
            message: format!("Following the quotes of {} symbols", self.quotes.len()),
            symbols,
            fast_symbols,
        }
    }

    /// Stops following the request's symbols (from either list); names
    /// that are not followed, or not symbols at all, are simply not there.
    fn unsubscribe_quotes(
        &mut self,
        req: &QuotesSubscriptionRequest,
    ) -> QuotesSubscriptionResponse {
        let (mut symbols, mut fast_symbols) = (Vec::new(), Vec::new());
        for name in req.symbols.iter().chain(&req.fast_symbols) {
            let ticker = self
                .state
                .source
                .catalog()
                .lookup(name)
                .map(|s| s.ticker().to_string());
            if let Some(follow) = ticker.as_ref().and_then(|t| self.quotes.remove(t)) {
                self.state.metrics.subscribed("quotes", -1);
                let ticker = ticker.unwrap_or_default();
                if follow.fast {
                    fast_symbols.push(ticker);
                } else {
                    symbols.push(ticker);
                }
            }
        }
        QuotesSubscriptionResponse {
            status: SubscriptionStatus::Ok,
            message: format!(
                "Stopped {} quote symbols; following {}",
                symbols.len() + fast_symbols.len(),
                self.quotes.len()
            ),
            symbols,
            fast_symbols,
        }
    }

    /// Queues the quotes that changed since this client was last sent them
    /// (for `QuotePass::New`, the first quote of newly followed symbols).
    async fn pass_quotes(&mut self, pass: QuotePass) -> Result<(), Ending> {
        let now_ms = self.state.clock.now_ms();
        let catalog = self.state.source.catalog();
        let interval = self.state.limits.quote_interval;
        for (ticker, follow) in self.quotes.iter_mut() {
            let look = match pass {
                QuotePass::New => follow.sent == 0,
                QuotePass::Fast => follow.fast,
                QuotePass::All => true,
            };
            let allowed = |s: &&Symbol| {
                self.auth
                    .as_ref()
                    .is_none_or(|(_, p)| p.allows(&s.info.exchange))
            };
            let Some(symbol) = catalog.lookup(ticker).filter(|_| look).filter(allowed) else {
                continue;
            };
            let quote = self
                .state
                .quotes
                .current(self.state.source.as_ref(), symbol, now_ms, interval)
                .await;
            if quote.version != follow.sent {
                follow.sent = quote.version;
                if !self.outbox.push_reply(quote.frame.to_string()) {
                    return Err(Ending::Close(
                        CloseCode::Policy,
                        "Client too slow: too many unread replies".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Validates a request into a topic, or the error message for the reply.
    fn topic(&self, req: &BarsSubscriptionRequest) -> Result<TopicKey, String> {
        let catalog = self.state.source.catalog();
        let symbol = self.entitled(&catalog, &req.symbol)?;
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
    ) -> (SubscriptionResponse, Option<TopicKey>) {
        let key = match self.topic(req) {
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
        let max = self.state.limits.max_subscriptions;
        if self.subscriptions.len() >= max {
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

    fn unsubscribe(&mut self, req: &BarsSubscriptionRequest) -> SubscriptionResponse {
        let key = match self.topic(req) {
            Ok(key) => key,
            Err(message) => {
                return response(req, SubscriptionStatus::Error, message, String::new())
            }
        };
        let topic = key.name();
        if self.subscriptions.remove(&key).is_some() {
            self.state.hub.unsubscribe(&key, self.id);
            self.state.metrics.subscribed("bars", -1);
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
    async fn join(&mut self, key: TopicKey) {
        let cursor = self.state.hub.subscribe(&key, self.id, &self.outbox);
        if cursor.topic.last_bar().is_none() {
            let now = self.state.clock.now_ms();
            let catalog = self.state.source.catalog();
            if let Some(symbol) = catalog.lookup(&key.symbol) {
                if let Ok(Some(bar)) = self
                    .state
                    .source
                    .current_bar(symbol, key.resolution, now)
                    .await
                {
                    cursor.topic.init(bar);
                }
            }
        }
        if self.subscriptions.insert(key, cursor).is_none() {
            self.state.metrics.subscribed("bars", 1);
        }
    }
}

/// Which followed quote symbols a pass looks at.
#[derive(Clone, Copy)]
enum QuotePass {
    /// Those not sent a quote yet (just subscribed).
    New,
    /// The fast ones (every tick).
    Fast,
    /// All of them (every second).
    All,
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
