//! A typed client for the live-bars WebSocket (`/api/v1/ws`).
//!
//! A background task owns the socket: it answers pings, routes each reply to
//! the request that carries its id, and forwards `bars.update` frames to the
//! [`WsClient`] stream. Updates are buffered up to a bound; a consumer that
//! stops reading stops the task reading the socket, so the server (not this
//! process) absorbs the backlog, as its protocol intends.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{self, Message};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::messages::{
    AuthRefreshRequest, AuthRefreshResponse, BarUpdate, BarsSubscriptionRequest, ClientMessage,
    EquityChange, EquitySnapshot, ExecutionsChange, ExecutionsSnapshot, NotificationsChange,
    NotificationsSnapshot, OrdersChange, OrdersSnapshot, PositionsChange, PositionsSnapshot,
    PrivateSubscriptionRequest, PrivateUnsubscribeResponse, QuoteData, QuotesSubscriptionRequest,
    QuotesSubscriptionResponse, ServerMessage, SubscriptionResponse,
};

/// A change of the connection's paper-trading account, from one of its
/// private channels, in the order the server sent them (the account's
/// sequence number, `seq`, in each; see [`WsClient::next_account_update`]).
#[derive(Clone, Debug, PartialEq)]
pub enum AccountUpdate {
    Order(OrdersChange),
    Position(PositionsChange),
    Execution(ExecutionsChange),
    Equity(EquityChange),
    Notification(NotificationsChange),
}

impl AccountUpdate {
    /// The account's sequence number of this change.
    pub fn seq(&self) -> i64 {
        match self {
            AccountUpdate::Order(c) => c.seq,
            AccountUpdate::Position(c) => c.seq,
            AccountUpdate::Execution(c) => c.seq,
            AccountUpdate::Equity(c) => c.seq,
            AccountUpdate::Notification(c) => c.seq,
        }
    }
}

/// A private channel, to stop following with
/// [`WsClient::unsubscribe_account`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Private {
    Orders,
    Positions,
    Executions,
    Equity,
    Notifications,
}

/// Updates held for a consumer that is not reading yet.
const UPDATE_BUFFER: usize = 4096;
/// Quote updates held for a consumer that is not reading; past it new ones
/// are dropped until it reads (a quote is a state, and the server sends
/// the next change anyway), so bars never wait on unread quotes.
const QUOTE_BUFFER: usize = 1024;

/// How a connection ended, as the server's close frame said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

#[derive(Debug)]
pub enum WsError {
    /// The connection could not be opened.
    Connect(tungstenite::Error),
    /// The connection ended (with the server's close frame, when it sent one).
    Closed(Option<Closed>),
    /// The server sent a reply of the wrong kind.
    UnexpectedReply(String),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Connect(e) => write!(f, "cannot connect: {e}"),
            WsError::Closed(Some(c)) => write!(f, "connection closed: {} {}", c.code, c.reason),
            WsError::Closed(None) => write!(f, "connection closed"),
            WsError::UnexpectedReply(r) => write!(f, "unexpected reply: {r}"),
        }
    }
}

impl std::error::Error for WsError {}

struct Request {
    message: ClientMessage,
    reply: oneshot::Sender<ServerMessage>,
}

/// A connection to `/api/v1/ws`; also a [`Stream`] of bar updates.
pub struct WsClient {
    requests: mpsc::Sender<Request>,
    updates: mpsc::Receiver<BarUpdate>,
    quotes: mpsc::Receiver<QuoteData>,
    account: mpsc::Receiver<AccountUpdate>,
    closed: watch::Receiver<Option<Closed>>,
}

impl WsClient {
    /// Connects to the server at `base_url` (`http://host:port` or `ws://host:port`).
    pub async fn connect(base_url: &str) -> Result<WsClient, WsError> {
        Self::open(base_url, None).await
    }

    /// Connects with a token (`Authorization: Bearer`), for a server that
    /// runs with authentication. Before the token expires, send a fresh one
    /// with [`WsClient::refresh_token`] or the server closes the
    /// connection with 4001.
    pub async fn connect_with_token(base_url: &str, token: &str) -> Result<WsClient, WsError> {
        Self::open(base_url, Some(token)).await
    }

    async fn open(base_url: &str, token: Option<&str>) -> Result<WsClient, WsError> {
        let base = base_url.trim_end_matches('/');
        let base = base
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
        let mut request = format!("{base}/api/v1/ws")
            .into_client_request()
            .map_err(WsError::Connect)?;
        if let Some(token) = token {
            let mut value = tungstenite::http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| WsError::Connect(tungstenite::Error::HttpFormat(e.into())))?;
            value.set_sensitive(true);
            request
                .headers_mut()
                .insert(tungstenite::http::header::AUTHORIZATION, value);
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(WsError::Connect)?;
        let (requests, request_rx) = mpsc::channel(64);
        let (update_tx, updates) = mpsc::channel(UPDATE_BUFFER);
        let (quote_tx, quotes) = mpsc::channel(QUOTE_BUFFER);
        let (account_tx, account) = mpsc::channel(UPDATE_BUFFER);
        let (closed_tx, closed) = watch::channel(None);
        let feeds = Feeds {
            updates: update_tx,
            quotes: quote_tx,
            account: account_tx,
        };
        tokio::spawn(run(socket, request_rx, feeds, closed_tx));
        Ok(WsClient {
            requests,
            updates,
            quotes,
            account,
            closed,
        })
    }

    /// Subscribes to `bars:{symbol}:{resolution}`; the reply says whether it worked.
    pub async fn subscribe(
        &self,
        symbol: &str,
        resolution: &str,
    ) -> Result<SubscriptionResponse, WsError> {
        let req = BarsSubscriptionRequest {
            symbol: symbol.into(),
            resolution: resolution.into(),
        };
        subscription_reply(self.request(ClientMessage::BarsSubscribe(req)).await?)
    }

    /// Unsubscribes; unsubscribing from a topic not subscribed is fine.
    pub async fn unsubscribe(
        &self,
        symbol: &str,
        resolution: &str,
    ) -> Result<SubscriptionResponse, WsError> {
        let req = BarsSubscriptionRequest {
            symbol: symbol.into(),
            resolution: resolution.into(),
        };
        subscription_reply(self.request(ClientMessage::BarsUnsubscribe(req)).await?)
    }

    /// Follows the quotes of `symbols` (at most once a second) and
    /// `fast_symbols` (every broadcast interval); read them with
    /// [`WsClient::next_quote`].
    pub async fn subscribe_quotes(
        &self,
        symbols: &[&str],
        fast_symbols: &[&str],
    ) -> Result<QuotesSubscriptionResponse, WsError> {
        let req = quotes_request(symbols, fast_symbols);
        match self.request(ClientMessage::QuotesSubscribe(req)).await? {
            ServerMessage::QuotesSubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// Stops following these symbols' quotes.
    pub async fn unsubscribe_quotes(
        &self,
        symbols: &[&str],
    ) -> Result<QuotesSubscriptionResponse, WsError> {
        let req = quotes_request(symbols, &[]);
        match self.request(ClientMessage::QuotesUnsubscribe(req)).await? {
            ServerMessage::QuotesUnsubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// The next quote update; `None` once the connection has ended.
    pub async fn next_quote(&mut self) -> Option<QuoteData> {
        self.quotes.recv().await
    }

    /// Follows the account's orders: the open ones now, then every change
    /// ([`WsClient::next_account_update`]).
    pub async fn subscribe_orders(&self) -> Result<OrdersSnapshot, WsError> {
        let m = ClientMessage::OrdersSubscribe(PrivateSubscriptionRequest {});
        match self.request(m).await? {
            ServerMessage::OrdersSubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// Follows the account's positions: the open ones now, then every
    /// change (a closed position with qty 0).
    pub async fn subscribe_positions(&self) -> Result<PositionsSnapshot, WsError> {
        let m = ClientMessage::PositionsSubscribe(PrivateSubscriptionRequest {});
        match self.request(m).await? {
            ServerMessage::PositionsSubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// Follows the account's fills: the latest now, then each new one.
    pub async fn subscribe_executions(&self) -> Result<ExecutionsSnapshot, WsError> {
        let m = ClientMessage::ExecutionsSubscribe(PrivateSubscriptionRequest {});
        match self.request(m).await? {
            ServerMessage::ExecutionsSubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// Follows the account's equity, cash and P&L.
    pub async fn subscribe_equity(&self) -> Result<EquitySnapshot, WsError> {
        let m = ClientMessage::EquitySubscribe(PrivateSubscriptionRequest {});
        match self.request(m).await? {
            ServerMessage::EquitySubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// Follows what the account should be told (orders that ended with a
    /// reason; a `resync` when updates were missed).
    pub async fn subscribe_notifications(&self) -> Result<NotificationsSnapshot, WsError> {
        let m = ClientMessage::NotificationsSubscribe(PrivateSubscriptionRequest {});
        match self.request(m).await? {
            ServerMessage::NotificationsSubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// Stops following one private channel.
    pub async fn unsubscribe_account(
        &self,
        channel: Private,
    ) -> Result<PrivateUnsubscribeResponse, WsError> {
        let r = PrivateSubscriptionRequest {};
        let m = match channel {
            Private::Orders => ClientMessage::OrdersUnsubscribe(r),
            Private::Positions => ClientMessage::PositionsUnsubscribe(r),
            Private::Executions => ClientMessage::ExecutionsUnsubscribe(r),
            Private::Equity => ClientMessage::EquityUnsubscribe(r),
            Private::Notifications => ClientMessage::NotificationsUnsubscribe(r),
        };
        match self.request(m).await? {
            ServerMessage::OrdersUnsubscribeResponse(r)
            | ServerMessage::PositionsUnsubscribeResponse(r)
            | ServerMessage::ExecutionsUnsubscribeResponse(r)
            | ServerMessage::EquityUnsubscribeResponse(r)
            | ServerMessage::NotificationsUnsubscribeResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    /// The next change of the account on the channels followed, in the
    /// order the server sent them; `None` once the connection has ended.
    /// A `seq` more than one above the last one seen means changes were
    /// missed: read the state again over REST.
    pub async fn next_account_update(&mut self) -> Option<AccountUpdate> {
        self.account.recv().await
    }

    /// Hands the server a fresh token for this connection (same user);
    /// the reply says until when the connection may stay open.
    pub async fn refresh_token(&self, token: &str) -> Result<AuthRefreshResponse, WsError> {
        let req = AuthRefreshRequest {
            token: token.into(),
        };
        match self.request(ClientMessage::AuthRefresh(req)).await? {
            ServerMessage::AuthRefreshResponse(r) => Ok(r),
            other => Err(WsError::UnexpectedReply(other.type_name().into())),
        }
    }

    async fn request(&self, message: ClientMessage) -> Result<ServerMessage, WsError> {
        let (reply, rx) = oneshot::channel();
        if self
            .requests
            .send(Request { message, reply })
            .await
            .is_err()
        {
            return Err(WsError::Closed(self.closed()));
        }
        rx.await.map_err(|_| WsError::Closed(self.closed()))
    }

    /// The next bar update; `None` once the connection has ended.
    pub async fn next_update(&mut self) -> Option<BarUpdate> {
        self.updates.recv().await
    }

    /// The server's close frame, once the connection has ended.
    pub fn closed(&self) -> Option<Closed> {
        self.closed.borrow().clone()
    }

    /// Waits until the connection ends and returns the server's close frame.
    pub async fn wait_closed(&mut self) -> Option<Closed> {
        let _ = self.closed.wait_for(Option::is_some).await;
        self.closed()
    }
}

impl Stream for WsClient {
    type Item = BarUpdate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BarUpdate>> {
        self.updates.poll_recv(cx)
    }
}

fn quotes_request(symbols: &[&str], fast_symbols: &[&str]) -> QuotesSubscriptionRequest {
    QuotesSubscriptionRequest {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        fast_symbols: fast_symbols.iter().map(|s| s.to_string()).collect(),
    }
}

/// The subscription reply inside a server message (both kinds share its shape).
fn subscription_reply(reply: ServerMessage) -> Result<SubscriptionResponse, WsError> {
    match reply {
        ServerMessage::BarsSubscribeResponse(r) | ServerMessage::BarsUnsubscribeResponse(r) => {
            Ok(r)
        }
        other => Err(WsError::UnexpectedReply(other.type_name().into())),
    }
}

/// Where the socket task hands what it receives.
struct Feeds {
    updates: mpsc::Sender<BarUpdate>,
    quotes: mpsc::Sender<QuoteData>,
    account: mpsc::Sender<AccountUpdate>,
}

async fn run<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    mut requests: mpsc::Receiver<Request>,
    feeds: Feeds,
    closed: watch::Sender<Option<Closed>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut pending: HashMap<String, oneshot::Sender<ServerMessage>> = HashMap::new();
    let mut next_id = 0u64;
    let mut close = None;
    loop {
        tokio::select! {
            request = requests.recv() => {
                // The client was dropped: say goodbye.
                let Some(Request { message, reply }) = request else {
                    let _ = socket.close(None).await;
                    break;
                };
                next_id += 1;
                let id = next_id.to_string();
                if socket.send(Message::Text(message.encode(Some(&id)).into())).await.is_err() {
                    break;
                }
                pending.insert(id, reply);
            }
            frame = socket.next() => match frame {
                Some(Ok(Message::Text(text))) => match ServerMessage::decode(&text) {
                    Ok((_, ServerMessage::BarsUpdate(update))) => {
                        if feeds.updates.send(update).await.is_err() {
                            // Nobody reads updates any more; replies still matter.
                        }
                    }
                    Ok((_, ServerMessage::QuotesUpdate(quote))) => {
                        // Full or unread: this quote is dropped (see QUOTE_BUFFER).
                        let _ = feeds.quotes.try_send(quote);
                    }
                    Ok((None, message)) if private(&message) => {
                        let change = match message {
                            ServerMessage::OrdersUpdate(c) => AccountUpdate::Order(c),
                            ServerMessage::PositionsUpdate(c) => AccountUpdate::Position(c),
                            ServerMessage::ExecutionsUpdate(c) => AccountUpdate::Execution(c),
                            ServerMessage::EquityUpdate(c) => AccountUpdate::Equity(c),
                            ServerMessage::NotificationsUpdate(c) => AccountUpdate::Notification(c),
                            _ => unreachable!("a private update"),
                        };
                        // Changes are never dropped: an unread backlog holds
                        // the socket, and the server closes a client too slow.
                        let _ = feeds.account.send(change).await;
                    }
                    Ok((Some(id), reply)) => {
                        if let Some(tx) = pending.remove(&id) {
                            let _ = tx.send(reply);
                        }
                    }
                    Ok((None, _)) | Err(_) => {}
                },
                Some(Ok(Message::Ping(_))) => {
                    // tungstenite queued the pong; flushing sends it.
                    if socket.flush().await.is_err() { break; }
                }
                Some(Ok(Message::Close(frame))) => {
                    close = Some(frame.map_or(Closed { code: 1005, reason: String::new() }, |f| Closed {
                        code: f.code.into(),
                        reason: f.reason.to_string(),
                    }));
                    // Complete the closing handshake.
                    let _ = socket.flush().await;
                    while let Some(Ok(_)) = socket.next().await {}
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
    let _ = closed.send(Some(close.unwrap_or(Closed {
        code: 1006,
        reason: "connection lost".into(),
    })));
}

/// Whether `message` is a change on a private channel.
fn private(message: &ServerMessage) -> bool {
    matches!(
        message,
        ServerMessage::OrdersUpdate(_)
            | ServerMessage::PositionsUpdate(_)
            | ServerMessage::ExecutionsUpdate(_)
            | ServerMessage::EquityUpdate(_)
            | ServerMessage::NotificationsUpdate(_)
    )
}
