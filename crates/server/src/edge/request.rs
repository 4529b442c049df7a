//! One request through the edge: the checks that refuse it early and
//! cheaply, then the WebSocket handshake or the handler.
//!
//! In order: a connection over its cap may only ask for health; the
//! client's rate budget; the WebSocket handshake; the body, whose declared
//! size is checked before a byte of it is read (so no `100 Continue` is
//! sent for a body over the limit) and which must arrive within the body
//! timeout; then data requests wait for their client's turn (see
//! `admission::Inflight`) and everything goes to `routes`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use slog::{debug, info, warn};
use tokio::time::Instant;

use super::admission::{ClientKey, Refusal};
use super::client::{self, Remote};
use super::deadlines::{ConnClock, RequestGuard};
use super::rate::Verdict;
use super::{websocket, Edge};
use crate::auth::{Principal, Rejection};
use crate::context::AppContext;
use crate::net::compress;
use trading_pro::api::{Operation, ROUTES};
use trading_pro::service::{route, Route};

const HEALTH_PATH: &str = "/api/v1/health";
const READY_PATH: &str = "/api/v1/ready";
pub use crate::metrics::{METRICS_PATH, WS_PATH};

/// Largest body of a request whose operation sets no limit of its own.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// What the connection task knows of its connection.
pub struct Conn {
    pub edge: Arc<Edge>,
    pub clock: Arc<ConnClock>,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client (the peer, or whom a PROXY protocol header named).
    pub remote: Remote,
    /// The peer is a trusted proxy: each request names its client.
    pub forwarding: bool,
    /// Set for a connection over a cap: it may only ask for health.
    pub refused: Option<Refusal>,
    /// Held by the connection and, once upgraded, by its WebSocket.
    pub _slot: Arc<dyn Send + Sync>,
}

/// The body of every response the edge sends. It ends the request on the
/// connection clock when hyper is done with it (written out, or given up).
pub struct EdgeBody {
    inner: Full<Bytes>,
    _done: Option<RequestGuard>,
}

impl Conn {
    /// Who sent this request: behind a trusted proxy, whom its headers
    /// name; else the connection's client.
    fn remote_of(&self, headers: &http::HeaderMap) -> Remote {
        if self.forwarding {
            client::forwarded(headers, self.peer, &self.edge.trusted_proxies)
        } else {
            self.remote
        }
    }
}

impl Body for EdgeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

type Reply = Response<Full<Bytes>>;

/// The JSON error body every API error has (`Error` in the spec).
pub fn error_reply(
    edge: &Edge,
    request: &http::HeaderMap,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Reply {
    let id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({ "request_id": id, "error_code": code, "message": message });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        "api-version",
        HeaderValue::from_static(trading_pro::API_VERSION),
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    edge.cors.decorate(request, h);
    r
}

/// Whose budget a request's `RateLimit-*` headers report: its address's,
/// or (with authentication on) its user's when that is nearer its end.
enum Budget {
    Address(Verdict),
    User(Verdict),
}

pub async fn serve(
    conn: Arc<Conn>,
    request: Request<Incoming>,
) -> Result<Response<EdgeBody>, Infallible> {
    let started = Instant::now();
    conn.clock.request_began();
    let guard = RequestGuard(Arc::clone(&conn.clock));
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let edge = Arc::clone(&conn.edge);
    let remote = conn.remote_of(request.headers());
    // Routed once: the operation's facts decide the checks below, and the
    // handler is called with the same route.
    let found = route(&ROUTES, &method, &path);
    let operation = match &found {
        Route::Found { op, .. } => Some(*op),
        _ => None,
    };
    // Kept only when CORS refuses it (most requests have no Origin or an
    // allowed one). A WebSocket handshake checks its origin itself.
    let refused_origin = (path != WS_PATH)
        .then(|| edge.refused_origin(request.headers()))
        .flatten();
    let (mut reply, budget) = admit(&conn, remote, request, found).await;
    let upgraded = reply.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let Some(origin) = refused_origin {
        edge.warn_refused_origin(origin);
    }
    match (&budget, &edge.rate, &edge.user_rate) {
        (Some(Budget::Address(v)), Some(rate), _) | (Some(Budget::User(v)), _, Some(rate)) => {
            rate.headers(v, reply.headers_mut())
        }
        _ => {}
    }
    if edge.is_draining() || conn.refused.is_some() {
        // hyper closes the connection after this response; saying so lets
        // a keep-alive client send its next request elsewhere instead of
        // losing it to a close it did not expect.
        reply
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = reply.status().as_u16();
    edge.api.metrics.request(
        crate::metrics::operation_label(operation, &method, &path),
        status,
        started.elapsed(),
    );
    if edge.access_log {
        // The path only: a query may carry an access_token.
        info!(edge.log, "request";
            "method" => method.as_str(), "path" => &path, "status" => status,
            "latency_us" => started.elapsed().as_micros() as u64, "remote" => %remote);
    }
    if status >= 500 {
        warn!(edge.log, "request failed"; "path" => &path, "status" => status, "remote" => %remote);
    }
    Ok(reply.map(|inner| EdgeBody {
        inner,
        _done: (!upgraded).then_some(guard),
    }))
}

/// The checks a request passes before its handler (or the handshake).
async fn admit(
    conn: &Arc<Conn>,
    remote: Remote,
    request: Request<Incoming>,
    found: Route<Operation>,
) -> (Reply, Option<Budget>) {
    let edge = &conn.edge;
    let path = request.uri().path();
    // Health, readiness and metrics are for load balancers and monitors
    // polling often: cheap, answered even to a connection over a cap, and
    // never counted against a client's budget (a balancer's probes come
    // from its own address, which its clients' traffic may have used up).
    let is_get = request.method() == Method::GET;
    if path == METRICS_PATH && is_get && !edge.metrics_elsewhere {
        // With authentication on, what every client does is for those
        // with a token (or a scraper on --metrics-bind's private address).
        if let Some(auth) = &edge.auth {
            if let Err(rejection) = auth.authenticate(request.headers(), request.uri().query()) {
                return (unauthorized(edge, request.headers(), &rejection), None);
            }
        }
        return (metrics(&edge.api), None);
    }
    let is_probe = is_get && (path == HEALTH_PATH || path == READY_PATH);
    if let Some(refusal) = conn.refused {
        if !is_probe {
            return (over_cap(edge, request.headers(), refusal), None);
        }
        return (forward(conn, remote, request, found, None).await, None);
    }
    let mut budget = None;
    if let (Some(rate), false) = (&edge.rate, is_probe) {
        let v = rate.check(remote.key());
        if !v.allowed {
            let message = format!(
                "Too many requests from your address (limit {}); retry after the number of \
                 seconds in Retry-After",
                rate.describe()
            );
            return (
                rate_limited(edge, request.headers(), &message),
                Some(Budget::Address(v)),
            );
        }
        budget = Some(Budget::Address(v));
    }
    let is_ws = path == WS_PATH;
    let protected = matches!(&found, Route::Found { op, .. } if crate::auth::requires_token(*op));
    let principal = match &edge.auth {
        Some(auth) if is_ws || protected => {
            match auth.authenticate(request.headers(), request.uri().query()) {
                Ok(p) => Some(Arc::new(p)),
                Err(rejection) => {
                    return (unauthorized(edge, request.headers(), &rejection), budget)
                }
            }
        }
        _ => None,
    };
    if let (Some(p), Some(rate)) = (&principal, &edge.user_rate) {
        let v = rate.check(ClientKey::User(p.user));
        let nearer = match &budget {
            Some(Budget::Address(a)) => v.remaining() < a.remaining(),
            _ => true,
        };
        if !v.allowed {
            let message = format!(
                "Too many requests with your token (limit {} per user); retry after the number \
                 of seconds in Retry-After",
                rate.describe()
            );
            return (
                rate_limited(edge, request.headers(), &message),
                Some(Budget::User(v)),
            );
        }
        if nearer {
            budget = Some(Budget::User(v));
        }
    }
    if is_ws {
        return (upgrade(conn, remote, request, principal), budget);
    }
    (
        forward(conn, remote, request, found, principal).await,
        budget,
    )
}

fn over_cap(edge: &Edge, headers: &http::HeaderMap, refusal: Refusal) -> Reply {
    let mut r = error_reply(
        edge,
        headers,
        StatusCode::SERVICE_UNAVAILABLE,
        "TooManyConnections",
        &refusal.message(),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn rate_limited(edge: &Edge, headers: &http::HeaderMap, message: &str) -> Reply {
    error_reply(
        edge,
        headers,
        StatusCode::TOO_MANY_REQUESTS,
        "RateLimited",
        message,
    )
}

/// 401 with the RFC 6750 challenge. The message says what was wrong with
/// the token, never what it was.
fn unauthorized(edge: &Edge, headers: &http::HeaderMap, rejection: &Rejection) -> Reply {
    let mut r = error_reply(
        edge,
        headers,
        StatusCode::UNAUTHORIZED,
        "Unauthenticated",
        &rejection.message(),
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, rejection.challenge());
    r
}

/// `GET /metrics`: every metric in Prometheus's text format.
pub fn metrics(api: &AppContext) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(api.metrics.render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    r
}

fn upgrade(
    conn: &Arc<Conn>,
    remote: Remote,
    mut request: Request<Incoming>,
    principal: Option<Arc<Principal>>,
) -> Reply {
    let edge = &conn.edge;
    if edge.is_draining() {
        return error_reply(
            edge,
            request.headers(),
            StatusCode::SERVICE_UNAVAILABLE,
            "ShuttingDown",
            "Server shutting down; connect to another node",
        );
    }
    let accept = match websocket::check(
        request.method(),
        request.version(),
        request.headers(),
        &edge.cors,
        &edge.own_origins,
        edge.ws_require_origin,
    ) {
        Ok(accept) => accept,
        Err(refused) => {
            debug!(edge.log, "websocket handshake refused"; "status" => refused.status.as_u16(), "reason" => &refused.message, "remote" => %remote);
            let mut r = error_reply(
                edge,
                request.headers(),
                refused.status,
                "BadHandshake",
                &refused.message,
            );
            if let Some((name, value)) = refused.header {
                r.headers_mut().insert(name, value);
            }
            return r;
        }
    };
    // Behind a trusted proxy the connection cap could not count this
    // client at accept: its WebSockets are counted here, by the address
    // its handshake names. A user's WebSockets are counted however many
    // addresses they come from. The slots live as long as the connection.
    let mut slots = Vec::new();
    if conn.forwarding {
        match edge.forwarded_websockets.admit(remote.key()) {
            Ok(slot) => slots.push(slot),
            Err(refusal) => return over_cap(edge, request.headers(), refusal),
        }
    }
    if let Some(p) = &principal {
        match edge.user_websockets.admit(ClientKey::User(p.user)) {
            Ok(slot) => slots.push(slot),
            Err(refusal) => return over_cap(edge, request.headers(), refusal),
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    conn.clock.upgraded();
    let conn = Arc::clone(conn);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => super::hand_over(conn, remote, upgraded, principal, slots).await,
            Err(e) => debug!(conn.edge.log, "websocket upgrade failed"; "error" => %e),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    r
}

/// Reads the body (bounded in size and time), waits for the client's turn
/// if this is a data request, and hands the request to its handler.
async fn forward(
    conn: &Arc<Conn>,
    remote: Remote,
    request: Request<Incoming>,
    found: Route<Operation>,
    principal: Option<Arc<Principal>>,
) -> Reply {
    let edge = &conn.edge;
    let (mut head, body) = request.into_parts();
    let facts = match &found {
        Route::Found { op, .. } => Some(op.facts()),
        _ => None,
    };
    let limit = facts
        .and_then(|f| f.body_max_bytes)
        .unwrap_or(DEFAULT_BODY_LIMIT);
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 {
            return too_large(edge, &head.headers, limit);
        }
    }
    let deadline = Instant::now() + conn.clock.timeouts().body;
    let body = match tokio::time::timeout_at(deadline, collect(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(Collect::TooLarge)) => return too_large(edge, &head.headers, limit),
        Ok(Err(Collect::Broken(e))) => {
            return error_reply(
                edge,
                &head.headers,
                StatusCode::BAD_REQUEST,
                "BadBody",
                &format!("Could not read the request body: {e}"),
            )
        }
        Err(_) => {
            let message = format!(
                "Request body not received within {:?}",
                conn.clock.timeouts().body
            );
            return error_reply(
                edge,
                &head.headers,
                StatusCode::REQUEST_TIMEOUT,
                "BodyTimeout",
                &message,
            );
        }
    };
    let is_data = facts.is_some_and(|f| f.data_request);
    let permit = if is_data {
        Some(edge.inflight.acquire(remote.key()).await)
    } else {
        None
    };
    let user_permit = match (&principal, is_data) {
        (Some(p), true) => Some(edge.user_inflight.acquire(ClientKey::User(p.user)).await),
        _ => None,
    };
    let personal = principal.is_some();
    if let Some(p) = principal {
        // What the handlers filter by (`api::entitled`).
        head.extensions.insert(p);
    }
    let coding = compress::negotiate(&head.headers);
    // The handler's answer must be written before the connection's clock
    // cuts it off: past this the client gets a 503 instead of silence.
    let answer_by = conn.clock.answer_by();
    head.extensions
        .insert(crate::handlers::AnswerBy(answer_by.into_std()));
    // What a timeout answer needs of the request (its CORS headers): the
    // origin, not a copy of every header of every request.
    let origin = head.headers.get(header::ORIGIN).cloned();
    let handled = tokio::time::timeout_at(
        answer_by,
        crate::routes::handle(&edge.api, head, body, found, &edge.log),
    )
    .await;
    drop((permit, user_permit));
    let Ok(answer) = handled else {
        let mut request = http::HeaderMap::new();
        if let Some(origin) = origin {
            request.insert(header::ORIGIN, origin);
        }
        return timed_out(edge, &request, conn.clock.timeouts().request);
    };
    let mut response = answer.response;
    if personal {
        // The answer depends on the token (its entitlements): no shared
        // cache may keep it or give it to another user.
        let h = response.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
        compress::vary_on(h, "Authorization, Cookie");
    }
    compress::apply(&mut response, coding);
    response.map(Full::new)
}

/// A request whose handler did not answer in time: said so, with what to
/// do, rather than a closed connection.
fn timed_out(edge: &Edge, headers: &http::HeaderMap, limit: std::time::Duration) -> Reply {
    let message = format!(
        "The request was not answered within the request timeout ({} s). An ingest request \
         may or may not have been applied: retry it with the same Idempotency-Key, which \
         applies it at most once and answers as the first time",
        limit.as_secs_f64()
    );
    warn!(edge.log, "request timed out"; "timeout_s" => limit.as_secs_f64());
    let mut r = error_reply(
        edge,
        headers,
        StatusCode::SERVICE_UNAVAILABLE,
        "Timeout",
        &message,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn too_large(edge: &Edge, headers: &http::HeaderMap, limit: usize) -> Reply {
    let message = format!("Request body too large: the limit here is {limit} bytes");
    let mut r = error_reply(
        edge,
        headers,
        StatusCode::PAYLOAD_TOO_LARGE,
        "BodyTooLarge",
        &message,
    );
    // The rest of the body is never read, so the connection cannot carry
    // another request.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

enum Collect {
    TooLarge,
    Broken(hyper::Error),
}

async fn collect(mut body: Incoming, limit: usize) -> Result<Bytes, Collect> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Collect::Broken)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Collect::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
