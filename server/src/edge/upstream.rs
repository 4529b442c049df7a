//! The hop from the edge to the API server (dropshot) inside this process.
//!
//! dropshot owns its accept loop and gives no hook for connection caps,
//! deadlines or early rejection, so it listens on a loopback port of its own
//! and the edge forwards each admitted request to it. Requests reach it
//! complete (the edge has read and bounded the body), and responses come
//! back complete too: dropshot has made the whole body before it sends a
//! byte, so reading it off loopback is quick, and the connection is free
//! again however slowly the client then reads.
//!
//! The hop is HTTP/1.1 over kept-alive loopback connections: measured
//! against one HTTP/2 connection, it costs a third of the CPU per request
//! (hyper's HTTP/2 frames, windows and stream bookkeeping are dear next to
//! a health check). Each request in flight takes one connection, two
//! descriptors in this process, so the number in flight is bounded
//! ([`MAX_IN_FLIGHT`]); a request over it waits for a connection to come
//! free, which also bounds what the API server handles at once.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// Requests forwarded at once (each on its own loopback connection).
pub const MAX_IN_FLIGHT: usize = 128;

pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    authority: String,
    slots: tokio::sync::Semaphore,
}

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    headers.remove(header::EXPECT);
}

impl Upstream {
    pub fn new(addr: SocketAddr) -> Upstream {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(MAX_IN_FLIGHT)
            .build(connector);
        Upstream {
            client,
            authority: addr.to_string(),
            slots: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        }
    }

    /// Sends a request (its head as received, its body complete) and
    /// returns the response as it starts to arrive.
    pub async fn forward(
        &self,
        head: http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Bytes>, String> {
        let path = head
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let uri: Uri = format!("http://{}{}", self.authority, path)
            .parse()
            .map_err(|e| format!("bad upstream uri: {e}"))?;
        let mut request = Request::from_parts(head, Full::new(body));
        *request.uri_mut() = uri;
        *request.version_mut() = http::Version::HTTP_11;
        strip_hop_by_hop(request.headers_mut());
        request.headers_mut().remove(header::CONTENT_LENGTH);
        let _slot = self.slots.acquire().await.map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("API server unreachable: {e}"))?;
        let (mut head, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("API server response cut short: {e}"))?
            .to_bytes();
        strip_hop_by_hop(&mut head.headers);
        Ok(Response::from_parts(head, body))
    }
}
