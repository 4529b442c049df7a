//! The edge: every client connection is accepted, bounded and timed here
//! before a handler sees a request. It is the HTTP server: clients connect
//! to it, and what it admits goes to `routes` in the same task.
//!
//! * `admission`: connection caps (global and per client) and the bound on
//!   data requests in progress per client;
//! * `rate`: per-client request rate limits (429);
//! * `deadlines`: the deadline of every phase of a connection;
//! * `request`: one request: the early checks, then its handler;
//! * `websocket`: the handshake; the connection itself is `ws::connection`;
//! * `compress`: gzip or brotli for response bodies worth it;
//! * `stream`: plain TCP or TLS (`--tls-cert`), movable between runtimes;
//! * `files`: the open-files limit the caps are sized against.
//!
//! A connection over a cap is still accepted and read, so it can be told
//! why (503 with `Retry-After`) and so health checks get through while the
//! server is full; past a second, smaller allowance for those, a connection
//! gets a fixed 503 written at once and is closed.

mod admission;
pub mod client;
mod deadlines;
mod rate;
mod request;
mod websocket;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioIo, TokioTimer};
use slog::{debug, info, warn, Logger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch as signal;
use tokio::time::{sleep_until, Instant};

pub use admission::{ClientKey, ConnectionCaps, Inflight, Refusal};
pub use client::{Remote, TrustedProxies};
pub use deadlines::Timeouts;
pub use rate::RateLimits;
pub use request::{DEFAULT_BODY_LIMIT, METRICS_PATH, WS_PATH};

use crate::context::AppContext;
use crate::cors::CorsPolicy;
use crate::net::stream::{Stream, Tcp};
use crate::ws::WsState;
use deadlines::{ConnClock, Phase, Watched};
use request::Conn;

/// Over-cap connections read for a health check at once, in all and per
/// client.
const OVER_CAP_LANE: u32 = 256;
const OVER_CAP_LANE_PER_CLIENT: u32 = 8;
const OVER_CAP_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// What a connection gets when even the over-cap allowance is used up.
const FULL_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 76\r\n\r\n{\"request_id\":\"\",\"error_code\":\"TooManyConnections\",\"message\":\"Server full\"}";

pub struct EdgeConfig {
    pub max_connections: u32,
    pub max_connections_per_ip: u32,
    pub rate: Option<RateLimits>,
    pub max_inflight_per_ip: usize,
    pub max_inflight: usize,
    pub timeouts: Timeouts,
    pub ws_require_origin: bool,
    pub access_log: bool,
    /// Authentication, when on, and the limits kept per token's user.
    pub auth: Option<Arc<crate::auth::Auth>>,
    pub user_rate: Option<RateLimits>,
    pub max_websockets_per_user: u32,
    pub max_inflight_per_user: usize,
    /// `/metrics` is served on its own address instead of this one.
    pub metrics_elsewhere: bool,
    /// HTTPS and WSS instead of HTTP and WS.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trusted_proxies: TrustedProxies,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The origins of this server's own pages, whose WebSockets are let in
    /// (besides the CORS origins).
    pub own_origins: Vec<String>,
}

/// Shared state of the edge.
pub struct Edge {
    caps: Arc<ConnectionCaps>,
    lane: Arc<ConnectionCaps>,
    rate: Option<RateLimits>,
    inflight: Arc<Inflight>,
    auth: Option<Arc<crate::auth::Auth>>,
    user_rate: Option<RateLimits>,
    user_websockets: Arc<ConnectionCaps>,
    user_inflight: Arc<Inflight>,
    metrics_elsewhere: bool,
    tls: Option<tokio_rustls::TlsAcceptor>,
    trusted_proxies: TrustedProxies,
    proxy_protocol: bool,
    own_origins: Vec<String>,
    /// WebSockets per client address behind a trusted proxy, whose
    /// connections the per-address cap cannot count at accept.
    forwarded_websockets: Arc<ConnectionCaps>,
    /// What handlers see (the data source, the clock, the live hub).
    api: Arc<AppContext>,
    ws: Arc<WsState>,
    /// Where WebSocket connections run (see `server`).
    live: tokio::runtime::Handle,
    cors: CorsPolicy,
    timeouts: Timeouts,
    ws_require_origin: bool,
    access_log: bool,
    log: Logger,
    /// None while serving; the instant everything is closed once draining.
    drain: signal::Sender<Option<Instant>>,
    refused: AtomicU64,
    turned_away: AtomicU64,
    /// Browser origins the CORS policy refused, each warned about once.
    cors_warned: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Refused browser origins remembered for their one warning, at most.
const MAX_CORS_WARNINGS: usize = 256;

impl Edge {
    pub fn new(
        config: EdgeConfig,
        api: Arc<AppContext>,
        live: tokio::runtime::Handle,
        log: Logger,
    ) -> Result<Arc<Edge>, String> {
        Ok(Arc::new(Edge {
            caps: ConnectionCaps::new(config.max_connections, config.max_connections_per_ip),
            lane: ConnectionCaps::new(OVER_CAP_LANE, OVER_CAP_LANE_PER_CLIENT),
            rate: config.rate,
            inflight: Inflight::new(config.max_inflight_per_ip, config.max_inflight),
            auth: config.auth,
            user_rate: config.user_rate,
            user_websockets: ConnectionCaps::new(u32::MAX, config.max_websockets_per_user),
            user_inflight: Inflight::new(config.max_inflight_per_user, usize::MAX >> 4),
            metrics_elsewhere: config.metrics_elsewhere,
            tls: config.tls,
            trusted_proxies: config.trusted_proxies,
            proxy_protocol: config.proxy_protocol,
            own_origins: config.own_origins,
            forwarded_websockets: ConnectionCaps::new(u32::MAX, config.max_connections_per_ip),
            ws: Arc::clone(&api.ws),
            cors: api.cors.clone(),
            api,
            live,
            timeouts: config.timeouts,
            ws_require_origin: config.ws_require_origin,
            access_log: config.access_log,
            log,
            drain: signal::Sender::new(None),
            refused: AtomicU64::new(0),
            turned_away: AtomicU64::new(0),
            cors_warned: Default::default(),
        }))
    }

    /// The request's `Origin` when neither the CORS policy nor this
    /// server's own origins allow it.
    pub fn refused_origin(&self, request: &http::HeaderMap) -> Option<String> {
        let origin = request.get(http::header::ORIGIN)?.to_str().ok()?;
        let allowed = self.cors.allows(origin) || self.own_origins.iter().any(|o| o == origin);
        (!allowed).then(|| origin.to_string())
    }

    /// A browser page from a refused `origin` called the API: the browser
    /// hides the answer (the page only sees "Failed to fetch") while this
    /// side answered 200. Said once per origin, with the flag that allows
    /// it.
    pub fn warn_refused_origin(&self, origin: String) {
        let mut warned = self
            .cors_warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Bounded: a client sending a new Origin per request cannot grow it.
        if warned.len() >= MAX_CORS_WARNINGS || warned.contains(&origin) {
            return;
        }
        warn!(self.log, "a browser page called the API from an origin CORS does not allow; the browser hides every answer from it (the page sees \"Failed to fetch\"): start the server with --cors-origin for that origin to allow it (giving any --cors-origin replaces the default)";
            "origin" => &origin, "flag" => format!("--cors-origin {origin}"));
        warned.insert(origin);
    }

    pub fn is_draining(&self) -> bool {
        self.drain.borrow().is_some()
    }

    /// Connections open now (HTTP and WebSocket, over-cap ones included).
    pub fn open_connections(&self) -> u32 {
        self.caps.open() + self.lane.open()
    }

    /// Accepts until draining begins.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        let mut drain = self.drain.subscribe();
        let housekeeping = tokio::spawn(Arc::clone(&self).housekeeping());
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => self.admit(tcp, peer),
                    Err(e) => {
                        // Out of descriptors (the caps should prevent it) or
                        // a connection that died in the backlog: wait a
                        // moment rather than spin on the error.
                        warn!(self.log, "accept failed"; "error" => %e);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                _ = drain.changed() => break,
            }
        }
        housekeeping.abort();
        self.admit_backlog(listener);
    }

    /// Closing a listening socket resets every connection the kernel has
    /// completed but we have not accepted yet: a keep-alive client that was
    /// just told `Connection: close` and reconnected at once would lose the
    /// request it sent on it. So the backlog is accepted first (its requests
    /// are answered with `Connection: close` like any other while draining),
    /// then the listener is dropped, which refuses new connections from
    /// there on, so a client or load balancer moves on to another node.
    fn admit_backlog(self: &Arc<Self>, listener: TcpListener) {
        let Ok(listener) = listener.into_std() else {
            return;
        };
        // Still non-blocking, as tokio left it: the loop ends at EAGAIN.
        while let Ok((tcp, peer)) = listener.accept() {
            match tcp
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(tcp))
            {
                Ok(tcp) => self.admit(tcp, peer),
                Err(e) => warn!(self.log, "accept failed"; "error" => %e),
            }
        }
    }

    fn admit(self: &Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        if self.proxy_protocol {
            tokio::spawn(Arc::clone(self).admit_proxied(tcp, peer));
        } else {
            self.admit_from(tcp, peer, Remote::direct(peer));
        }
    }

    /// `--proxy-protocol`: the client is whom the connection's PROXY
    /// header names (the peer itself for the balancer's own checks).
    async fn admit_proxied(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        if !self.trusted_proxies.is_empty() && !self.trusted_proxies.contains(peer.ip()) {
            debug!(self.log, "connection refused: not from a trusted proxy"; "peer" => %peer);
            return;
        }
        let deadline = Instant::now() + self.timeouts.header;
        match client::read_proxy_header(&tcp, deadline).await {
            Ok(Some(source)) => {
                let remote = Remote {
                    via: Some(peer),
                    ..Remote::direct(source)
                };
                self.admit_from(tcp, peer, remote);
            }
            Ok(None) => self.admit_from(tcp, peer, Remote::direct(peer)),
            Err(e) => debug!(self.log, "connection refused"; "peer" => %peer, "error" => e),
        }
    }

    /// Whether requests on a connection from `peer` name their client in
    /// a header (it is a trusted proxy, not a PROXY protocol balancer).
    fn forwards(&self, peer: SocketAddr) -> bool {
        !self.proxy_protocol && self.trusted_proxies.contains(peer.ip())
    }

    fn admit_from(self: &Arc<Self>, tcp: TcpStream, peer: SocketAddr, remote: Remote) {
        let client = if self.forwards(peer) {
            ClientKey::Proxy
        } else {
            remote.key()
        };
        match self.caps.admit(client) {
            Ok(slot) => {
                tokio::spawn(Arc::clone(self).connection(tcp, peer, remote, None, Arc::new(slot)));
            }
            Err(refusal) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                match self.lane.admit(client) {
                    Ok(slot) => {
                        tokio::spawn(Arc::clone(self).connection(
                            tcp,
                            peer,
                            remote,
                            Some(refusal),
                            Arc::new(slot),
                        ));
                    }
                    Err(_) => {
                        self.turned_away.fetch_add(1, Ordering::Relaxed);
                        // A fresh socket's send buffer is empty, so this
                        // short write does not block; the close follows.
                        let _ = tcp.try_write(FULL_RESPONSE);
                    }
                }
            }
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        remote: Remote,
        refused: Option<Refusal>,
        slot: Arc<dyn Send + Sync>,
    ) {
        let _ = tcp.set_nodelay(true);
        let mut timeouts = self.timeouts;
        if refused.is_some() {
            // An over-cap connection holds a place in a small allowance:
            // it gets little time to say whether it is a health check.
            timeouts.header = timeouts.header.min(OVER_CAP_HEADER_TIMEOUT);
        }
        let clock = Arc::new(ConnClock::new(timeouts));
        // hyper allocates its read buffer (8 KiB) as soon as it is handed a
        // socket; a connection that sends nothing costs only its task until
        // it does (or is closed at the header deadline).
        let first_byte = clock.deadline().unwrap_or_else(Instant::now);
        if tokio::time::timeout_at(first_byte, tcp.readable())
            .await
            .is_err()
        {
            debug!(self.log, "connection timed out"; "remote" => %remote, "phase" => "first byte");
            return;
        }
        let stream = match &self.tls {
            None => Stream::Plain(Tcp::new(tcp)),
            // The TLS handshake has the header timeout too: a client that
            // starts one and stalls holds nothing past it.
            Some(acceptor) => {
                let handshake = acceptor.accept(Tcp::new(tcp));
                match tokio::time::timeout_at(first_byte, handshake).await {
                    Ok(Ok(tls)) => Stream::Tls(Box::new(tls)),
                    Ok(Err(e)) => {
                        debug!(self.log, "TLS handshake failed"; "remote" => %remote, "error" => %e);
                        return;
                    }
                    Err(_) => {
                        debug!(self.log, "connection timed out"; "remote" => %remote, "phase" => "TLS handshake");
                        return;
                    }
                }
            }
        };
        let conn = Arc::new(Conn {
            edge: Arc::clone(&self),
            clock: Arc::clone(&clock),
            forwarding: self.forwards(peer),
            peer,
            remote,
            refused,
            _slot: slot,
        });
        let service = service_fn(move |req| request::serve(Arc::clone(&conn), req));
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // `deadlines` keeps every deadline, this one included.
            .header_read_timeout(None)
            .keep_alive(refused.is_none())
            .max_buf_size(64 * 1024);
        let io = TokioIo::new(Watched::new(stream, Arc::clone(&clock)));
        let served = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(served);
        let mut drain = self.drain.subscribe();
        loop {
            let drain_at = *drain.borrow_and_update();
            let deadline = match (clock.deadline(), drain_at) {
                (Some(d), Some(end)) => Some(d.min(end)),
                (d, None) => d,
                (None, end) => end,
            };
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                result = served.as_mut() => {
                    if let Err(e) = result {
                        debug!(self.log, "connection ended"; "remote" => %remote, "error" => %e);
                    }
                    break;
                }
                _ = sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    let phase = clock.phase();
                    let now = Instant::now();
                    let passed = clock.deadline().is_some_and(|d| d <= now)
                        || drain_at.is_some_and(|d| d <= now);
                    if passed && phase != Phase::Upgraded {
                        debug!(self.log, "connection timed out"; "remote" => %remote,
                            "phase" => ?phase, "requests" => clock.requests());
                        break;
                    }
                }
                _ = drain.changed() => {}
            }
        }
    }

    /// Every few seconds: forget idle clients' budgets, and say what was
    /// refused (one line, not one per connection, which under a flood
    /// would be the flood).
    async fn housekeeping(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        loop {
            tick.tick().await;
            for rate in [&self.rate, &self.user_rate].into_iter().flatten() {
                rate.sweep();
            }
            self.inflight.sweep();
            self.user_inflight.sweep();
            let refused = self.refused.swap(0, Ordering::Relaxed);
            let turned_away = self.turned_away.swap(0, Ordering::Relaxed);
            if refused > 0 {
                warn!(self.log, "connections refused over the caps in the last 10 s";
                    "refused" => refused, "closed_unread" => turned_away,
                    "open" => self.caps.open(), "max" => self.caps.max_total(),
                    "clients" => self.caps.clients());
            }
            self.return_memory();
            let dropped = crate::logging::take_dropped();
            if dropped > 0 {
                warn!(self.log, "log records dropped (the log output could not keep up)"; "dropped" => dropped);
            }
        }
    }

    /// Gives freed memory back to the system. glibc's allocator keeps what
    /// a burst of connections or large responses freed (spread over its
    /// per-thread arenas) for reuse, so without this the process stays at
    /// its peak long after the burst: 148 MiB after 10,000 idle connections
    /// had come and gone, against 22 MiB before. Trimming walks the arenas'
    /// free lists, well under a millisecond at this size, on a blocking
    /// thread once per housekeeping tick.
    fn return_memory(&self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only walks the allocator's own state.
            unsafe { libc::malloc_trim(0) };
        });
    }

    /// Stops accepting, answers what arrives with `Connection: close`, and
    /// closes every HTTP connection still open after `grace`; returns once
    /// none is left (WebSockets are closed by `WsState::shutdown`).
    pub async fn drain(&self, grace: Duration) {
        let end = Instant::now() + grace;
        self.drain.send_replace(Some(end));
        info!(self.log, "draining"; "connections" => self.open_connections(), "grace" => ?grace);
        let margin = Duration::from_millis(200);
        while self.open_connections() > 0 && Instant::now() < end + margin {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// `--metrics-bind`: an address that answers `GET /metrics` and nothing
/// else (404), for a scraper on a private network; it has none of the
/// public edge's limits.
pub async fn serve_metrics(listener: TcpListener, api: Arc<AppContext>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let api = Arc::clone(&api);
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let reply = if req.uri().path() == METRICS_PATH && req.method() == http::Method::GET
                {
                    request::metrics(&api)
                } else {
                    let mut r = http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"only GET /metrics is served here\n"),
                    ));
                    *r.status_mut() = http::StatusCode::NOT_FOUND;
                    r
                };
                async move { Ok::<_, std::convert::Infallible>(reply) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// A completed WebSocket handshake: the socket leaves hyper for
/// `ws::connection`, keeping its connection slot.
async fn hand_over(
    conn: Arc<Conn>,
    remote: Remote,
    upgraded: Upgraded,
    principal: Option<Arc<crate::auth::Principal>>,
    slots: Vec<admission::ConnectionSlot>,
) {
    let parts = match upgraded.downcast::<TokioIo<Watched<Stream>>>() {
        Ok(parts) => parts,
        Err(_) => {
            warn!(conn.edge.log, "upgraded connection of an unexpected type");
            return;
        }
    };
    // The socket moves to the live runtime: registered with its reactor,
    // its readiness is seen there even while every request worker is busy.
    // (A TLS session moves with it, see `stream`.)
    let mut stream = parts.io.into_inner().into_inner();
    let tcp = match stream.tcp_mut().detach() {
        Ok(tcp) => tcp,
        Err(e) => {
            debug!(conn.edge.log, "websocket socket lost"; "error" => %e);
            return;
        }
    };
    let live = conn.edge.live.clone();
    live.spawn(async move {
        if let Err(e) = stream.tcp_mut().attach(tcp) {
            debug!(conn.edge.log, "websocket socket lost"; "error" => %e);
            return;
        }
        let socket = crate::ws::Socket::new(stream, parts.read_buf);
        let auth = conn.edge.auth.clone().zip(principal.map(|p| (*p).clone()));
        crate::ws::serve(socket, Arc::clone(&conn.edge.ws), remote.to_string(), auth).await;
        drop((conn, slots));
    });
}
