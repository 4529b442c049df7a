//! The hop from the edge to the API server (dropshot) inside this process.
//!
//! dropshot owns its accept loop and gives no hook for connection caps,
//! deadlines or early rejection, so it listens on a loopback port of its own
//! and the edge forwards each admitted request to it. Requests reach it
//! complete (the edge has read and bounded the body), and the response
//! streams back unbuffered.
//!
//! The hop is one HTTP/2 connection (dropshot accepts HTTP/2 with prior
//! knowledge): every request in flight is a stream on it. With HTTP/1.1
//! each concurrent request would need a connection of its own, two
//! descriptors in this process, so ten thousand clients asking for health
//! at once would take twenty thousand descriptors; here they take two, and
//! the API server's stream limit bounds how many it handles at once (the
//! others wait for a stream).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

pub struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    authority: String,
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
            .http2_only(true)
            .timer(TokioTimer::new())
            // Large windows: a 5,000-bar response is about 300 KB, and the
            // default 64 KiB window would make it wait for window updates.
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .build(connector);
        Upstream {
            client,
            authority: addr.to_string(),
        }
    }

    /// Sends a request (its head as received, its body complete) and
    /// returns the response as it starts to arrive.
    pub async fn forward(
        &self,
        head: http::request::Parts,
        body: Bytes,
    ) -> Result<Response<Incoming>, String> {
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
        *request.version_mut() = http::Version::HTTP_2;
        strip_hop_by_hop(request.headers_mut());
        request.headers_mut().remove(header::CONTENT_LENGTH);
        let mut response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("API server unreachable: {e}"))?;
        strip_hop_by_hop(response.headers_mut());
        Ok(response)
    }
}
