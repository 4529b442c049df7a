//! One WebSocket connection: reads requests, writes replies and updates,
//! pings, and enforces the heartbeat, the lifespan and the size limits.
//!
//! A single task owns the socket and selects over the next incoming frame,
//! queued output, the ping timer, the deadlines and shutdown, so nothing else
//! ever waits on this client's socket.

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
    AuthRefreshResponse, ClientMessage, ServerMessage, SubscriptionStatus,
};

use super::channels::{Channels, Overflowed, Session};
use super::hub::ConnId;
use super::outbox::Outbox;
use super::socket::{FrameLimit, Socket};
use super::WsState;
use crate::auth::{Auth, Principal};

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
        channels: Channels::new(),
        state: Arc::clone(&state),
        auth,
        expiry_moved: false,
        looked: None,
    };
    state.connection_opened();
    let opened = Instant::now();
    let ending = conn.run(ws).await;
    let topics = conn.channels.subscriptions();
    let session = session_of(&conn.state, conn.id, &conn.outbox, &conn.auth);
    conn.channels.close(&session);
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
    /// What the client follows, channel by channel.
    channels: Channels,
    state: Arc<WsState>,
    auth: Option<(Arc<Auth>, Principal)>,
    /// Set by a refresh: the token deadline must be moved.
    expiry_moved: bool,
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
                _ = quote_tick.tick(), if self.channels.ticking() => {
                    quote_ticks += 1;
                    // A client that is behind gets the newest quotes once
                    // it catches up, not a backlog.
                    if behind_since.is_none() && !self.is_behind(&ws) {
                        let all = quote_ticks.is_multiple_of(slow_every);
                        let session = session_of(&self.state, self.id, &self.outbox, &self.auth);
                        if self.channels.tick(all, &session).await.is_err() {
                            break too_many_replies();
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
        let expires_at = fresh.expires_at;
        *current = fresh;
        self.expiry_moved = true;
        let session = session_of(&self.state, self.id, &self.outbox, &self.auth);
        let names = self.channels.narrow(&session);
        let mut message = "Token refreshed".to_string();
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
            let session = session_of(&self.state, self.id, &self.outbox, &self.auth);
            let coalesced = self.channels.take_updates(&session, &mut updates);
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
    /// 1003 and the protocol's reason. The token's refresh is the
    /// connection's; every other message is its channel's.
    async fn handle(&mut self, text: &str) -> Result<(), Ending> {
        let (id, message) = ClientMessage::decode(text)
            .map_err(|e| Ending::Close(CloseCode::Unsupported, e.reason().into()))?;
        let handled = match message {
            ClientMessage::AuthRefresh(req) => {
                let reply = ServerMessage::AuthRefreshResponse(self.refresh(&req.token));
                self.session().reply(reply, id.as_deref())
            }
            message => {
                let session = session_of(&self.state, self.id, &self.outbox, &self.auth);
                match self.channels.handle(id.as_deref(), message, session).await {
                    Ok(done) => done,
                    // Every message type has a channel (`channels`); one
                    // without would be a bug, never the client's doing.
                    Err(message) => {
                        debug!(self.state.log, "a message no channel answers"; "message" => ?message);
                        Ok(())
                    }
                }
            }
        };
        handled.map_err(|Overflowed| too_many_replies())
    }

    /// What the channels may use of this connection.
    fn session(&self) -> Session<'_> {
        session_of(&self.state, self.id, &self.outbox, &self.auth)
    }
}

/// A connection's session from its fields, so its channels (another
/// field) can be borrowed beside it.
fn session_of<'a>(
    state: &'a Arc<WsState>,
    id: ConnId,
    outbox: &'a Arc<Outbox>,
    auth: &'a Option<(Arc<Auth>, Principal)>,
) -> Session<'a> {
    Session {
        state,
        id,
        outbox,
        principal: auth.as_ref().map(|(_, p)| p),
        others: 0,
    }
}

fn too_many_replies() -> Ending {
    Ending::Close(
        CloseCode::Policy,
        "Client too slow: too many unread replies".into(),
    )
}
