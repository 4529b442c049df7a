//! The edge against misbehaving clients, over raw sockets: deadlines,
//! connection caps, early rejection of bodies, rate limits, the WebSocket
//! handshake and protocol violations, slow readers, and a shutdown that
//! loses no request.
//!
//! No timing assertions: a deadline is checked as "closed within the
//! configured deadline plus a generous margin", never as "took N ms".

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::process::ServerProcess;
use crate::common::ws as raw;
use crate::common::TestServer;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Margin over a configured deadline before a test calls it missed.
const MARGIN: Duration = Duration::from_secs(5);

fn addr(s: &TestServer) -> SocketAddr {
    s.server.local_addr()
}

/// A connection from a chosen loopback source address (all of 127/8 is
/// loopback on Linux), so a test can be several clients.
async fn connect_from(source: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    socket.connect(to).await.expect("connect")
}

/// Reads until the server closes the connection (or `limit` passes);
/// returns what was read and whether it was closed in time.
async fn read_to_close(tcp: &mut TcpStream, limit: Duration) -> (String, bool) {
    let (bytes, closed) = read_bytes_to_close(tcp, limit).await;
    (String::from_utf8_lossy(&bytes).into(), closed)
}

async fn read_bytes_to_close(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Reads one response head (and a small body) without waiting for close.
async fn read_response(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"))
}

fn header_of<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn body_of(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body in {response:?}: {e}"))
}

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_slow_and_idle_connections_are_closed_at_their_deadlines() {
    let s = TestServer::start(&[
        "--header-timeout",
        "0.5",
        "--keepalive-timeout",
        "1",
        "--body-timeout",
        "0.5",
    ])
    .await;
    // Never sends a byte.
    let mut silent = TcpStream::connect(addr(&s)).await.unwrap();
    let (got, closed) = read_to_close(&mut silent, Duration::from_millis(500) + MARGIN).await;
    assert!(closed && got.is_empty(), "silent connection: {got:?}");

    // Trickles a head, one byte at a time, never finishing it.
    let mut slow = TcpStream::connect(addr(&s)).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for b in b"GET /api/v1/health HTTP/1.1\r\nX-Slow: ".iter().cycle() {
        if slow.write_all(&[*b]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_millis(500) + MARGIN {
            break;
        }
    }
    if !closed {
        closed = read_to_close(&mut slow, Duration::from_millis(100)).await.1;
    }
    assert!(closed, "a head trickled forever must be cut off");

    // A keep-alive connection that goes idle after one request.
    let mut idle = TcpStream::connect(addr(&s)).await.unwrap();
    idle.write_all(HEALTH).await.unwrap();
    let response = read_response(&mut idle).await;
    assert_eq!(status_of(&response), 200);
    let (_, closed) = read_to_close(&mut idle, Duration::from_secs(1) + MARGIN).await;
    assert!(closed, "idle keep-alive connection must be closed");

    // A body that never arrives: 408, not a connection held open.
    let mut body = TcpStream::connect(addr(&s)).await.unwrap();
    body.write_all(
        b"POST /api/v1/datafeed/quotes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sym",
    )
    .await
    .unwrap();
    let (got, closed) = read_to_close(&mut body, Duration::from_millis(500) + MARGIN).await;
    assert!(closed, "{got:?}");
    assert_eq!(status_of(&got), 408, "{got}");
    assert!(body_of(&got)["message"].as_str().unwrap().contains("body"));

    // The server is fine throughout.
    assert_eq!(
        s.client.get_health_status().send().await.unwrap().status(),
        200
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_get_413_before_they_are_read() {
    let s = TestServer::frozen().await;
    // A declared 100 MB body that asks for `100 Continue`: refused at once,
    // and no `100 Continue` is ever sent.
    let mut tcp = TcpStream::connect(addr(&s)).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/datafeed/quotes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\nExpect: 100-continue\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, closed) = read_to_close(&mut tcp, MARGIN).await;
    assert!(closed, "{got}");
    assert!(!got.contains("100 Continue"), "{got}");
    assert_eq!(status_of(&got), 413, "{got}");
    assert_eq!(header_of(&got, "connection"), Some("close"));
    assert_eq!(header_of(&got, "api-version"), Some("v1"));
    assert!(body_of(&got)["message"]
        .as_str()
        .unwrap()
        .contains("65536 bytes"));

    // A chunked body that goes past the limit: 413 as soon as it does.
    let mut tcp = TcpStream::connect(addr(&s)).await.unwrap();
    tcp.write_all(
        b"POST /api/v1/datafeed/quotes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "a".repeat(16 * 1024));
    let mut refused = None;
    for _ in 0..64 {
        if tcp.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = timeout(Duration::from_millis(20), tcp.read(&mut buf)).await {
            refused = Some(String::from_utf8_lossy(&buf[..n]).to_string());
            break;
        }
    }
    let got = match refused {
        Some(got) => got,
        None => read_to_close(&mut tcp, MARGIN).await.0,
    };
    assert_eq!(status_of(&got), 413, "{got}");

    // Ingest allows 4 MiB (x-body-max-bytes in the spec): a 1 MiB declared
    // body is not refused for its size (it gets 403: ingest is off here).
    let mut tcp = TcpStream::connect(addr(&s)).await.unwrap();
    let body = format!("{{\"trades\": [], \"pad\": \"{}\"}}", "x".repeat(1 << 20));
    let head = format!(
        "POST /api/v1/ingest/trades HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let got = read_response(&mut tcp).await;
    assert_ne!(status_of(&got), 413, "{got}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_refuse_cleanly_and_health_still_answers() {
    let s = TestServer::start(&["--max-connections", "20", "--max-connections-per-ip", "4"]).await;
    let to = addr(&s);
    // One client at its cap of 4 idle connections.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from([127, 0, 0, 2], to).await);
    }
    // Its fifth connection is answered 503 with Retry-After and closed...
    let mut fifth = connect_from([127, 0, 0, 2], to).await;
    fifth
        .write_all(b"GET /api/v1/datafeed/config HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, closed) = read_to_close(&mut fifth, MARGIN).await;
    assert!(closed);
    assert_eq!(status_of(&got), 503, "{got}");
    assert_eq!(header_of(&got, "retry-after"), Some("1"));
    assert!(body_of(&got)["message"]
        .as_str()
        .unwrap()
        .contains("Too many connections from your address (limit 4)"));
    // ...but a health check on it is answered.
    let mut probe = connect_from([127, 0, 0, 2], to).await;
    probe.write_all(HEALTH).await.unwrap();
    let (got, _) = read_to_close(&mut probe, MARGIN).await;
    assert_eq!(status_of(&got), 200, "{got}");
    // Other clients are not affected.
    let mut other = connect_from([127, 0, 0, 3], to).await;
    other
        .write_all(b"GET /api/v1/datafeed/config HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut other).await), 200);
    drop(other);

    // Many clients fill the server's cap of 20: the next one gets a 503
    // saying so, and WebSocket handshakes count the same.
    for i in 0..16u8 {
        held.push(connect_from([127, 0, 1, i / 4 + 1], to).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = connect_from([127, 0, 2, 1], to).await;
    over.write_all(
        b"GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let (got, _) = read_to_close(&mut over, MARGIN).await;
    assert_eq!(status_of(&got), 503, "{got}");
    assert!(got.contains("connection limit (20)"), "{got}");
    let mut probe = connect_from([127, 0, 2, 2], to).await;
    probe.write_all(HEALTH).await.unwrap();
    assert_eq!(status_of(&read_to_close(&mut probe, MARGIN).await.0), 200);

    // Freed slots are usable again.
    drop(held);
    let deadline = Instant::now() + MARGIN;
    loop {
        let mut again = connect_from([127, 0, 0, 2], to).await;
        again
            .write_all(b"GET /api/v1/datafeed/config HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_response(&mut again).await;
        if status_of(&got) == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_the_ratelimit_headers() {
    let s = TestServer::start(&["--rate-limit-rps", "1", "--rate-limit-burst", "3"]).await;
    let http = reqwest::Client::new();
    let url = s.url("/api/v1/datafeed/config");
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-limit"], "3");
        assert_eq!(r.headers()["ratelimit-policy"], "3;w=3");
        remaining.push(
            r.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    // The bucket refills at 1/s: a slow machine may have earned one more.
    assert_eq!(remaining[0], "2");
    let mut refused = None;
    for _ in 0..3 {
        let r = http.get(&url).send().await.unwrap();
        if r.status() == 429 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a 429 once the burst is spent");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry), "{retry}");
    assert_eq!(r.headers()["ratelimit-remaining"], "0");
    assert_eq!(r.headers()["api-version"], "v1");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error_code"], "RateLimited");
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("1 requests/s, burst 3"));
    // Health is never limited; another address has its own budget.
    for _ in 0..10 {
        let r = http.get(s.url("/api/v1/health")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let mut other = connect_from([127, 0, 0, 9], addr(&s)).await;
    other
        .write_all(b"GET /api/v1/datafeed/config HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(status_of(&read_response(&mut other).await), 200);
    s.stop().await;
}

fn handshake(extra: &str) -> String {
    format!(
        "GET /api/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_are_checked_in_full() {
    let s = TestServer::frozen().await;
    let cases: Vec<(String, u16, &str)> = vec![
        (handshake(""), 400, "Sec-WebSocket-Key is missing"),
        (handshake("Sec-WebSocket-Key: \r\n"), 400, "16 random bytes"),
        (
            handshake("Sec-WebSocket-Key: c2hvcnQ=\r\n"),
            400,
            "16 random bytes",
        ),
        (
            handshake("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!!!\r\n"),
            400,
            "16 random bytes",
        ),
        (
            handshake(&format!("{KEY}Origin: http://evil.example\r\n")),
            403,
            "Origin \"http://evil.example\" may not open a WebSocket",
        ),
        (
            handshake(KEY).replace("HTTP/1.1", "HTTP/1.0"),
            400,
            "needs HTTP/1.1",
        ),
        (
            handshake(KEY).replace("Version: 13", "Version: 8"),
            426,
            "Sec-WebSocket-Version must be 13",
        ),
        (
            format!("GET /api/v1/ws HTTP/1.1\r\nHost: x\r\n{KEY}\r\n"),
            426,
            "Upgrade: websocket",
        ),
        (
            handshake(KEY).replacen("GET", "POST", 1),
            405,
            "must be a GET",
        ),
    ];
    for (request, status, message) in cases {
        let mut tcp = TcpStream::connect(addr(&s)).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let got = read_response(&mut tcp).await;
        assert_eq!(status_of(&got), status, "{request}\n{got}");
        let e = body_of(&got);
        assert!(
            e["message"].as_str().unwrap().contains(message),
            "{request}: {e}"
        );
    }
    // Allowed: no Origin (not a browser), a CORS origin, the server's own.
    for extra in [
        String::new(),
        "Origin: http://localhost:5173\r\n".to_string(),
        format!("Origin: http://{}\r\n", addr(&s)),
    ] {
        let mut tcp = TcpStream::connect(addr(&s)).await.unwrap();
        let request = handshake(&format!("{KEY}{extra}"))
            .replace("Host: 127.0.0.1", &format!("Host: {}", addr(&s)));
        tcp.write_all(request.as_bytes()).await.unwrap();
        let got = read_response(&mut tcp).await;
        assert_eq!(status_of(&got), 101, "{extra}: {got}");
        assert_eq!(
            header_of(&got, "sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
    }
    s.stop().await;

    // With --ws-require-origin, a handshake without one is refused.
    let s = TestServer::start(&["--ws-require-origin"]).await;
    let mut tcp = TcpStream::connect(addr(&s)).await.unwrap();
    tcp.write_all(handshake(KEY).as_bytes()).await.unwrap();
    let got = read_response(&mut tcp).await;
    assert_eq!(status_of(&got), 403, "{got}");
    s.stop().await;
}

/// A WebSocket opened by hand on a raw socket, for frames no client
/// library will send.
async fn open_raw_ws(s: &TestServer) -> TcpStream {
    let mut tcp = TcpStream::connect(addr(s)).await.unwrap();
    tcp.write_all(handshake(KEY).as_bytes()).await.unwrap();
    let got = read_response(&mut tcp).await;
    assert_eq!(status_of(&got), 101, "{got}");
    tcp
}

/// A client frame: masked unless `unmasked`, with the given first byte.
fn frame(first: u8, payload: &[u8], unmasked: bool) -> Vec<u8> {
    let mut f = vec![first];
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let bit = if unmasked { 0 } else { 0x80 };
    assert!(payload.len() < 126);
    f.push(bit | payload.len() as u8);
    if !unmasked {
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// The close frame the server sent (code, reason), skipping other frames.
async fn server_close(tcp: &mut TcpStream) -> Option<(u16, String)> {
    let (bytes, _) = read_bytes_to_close(tcp, MARGIN).await;
    let mut i = 0;
    while i + 2 <= bytes.len() {
        let opcode = bytes[i] & 0x0f;
        let mut len = usize::from(bytes[i + 1] & 0x7f);
        let mut at = i + 2;
        if len == 126 {
            len = usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
            at += 2;
        } else if len == 127 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            len = u64::from_be_bytes(b) as usize;
            at += 8;
        }
        if opcode == 8 && len >= 2 && at + len <= bytes.len() {
            let code = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            let reason = String::from_utf8_lossy(&bytes[at + 2..at + len]).to_string();
            return Some((code, reason));
        }
        i = at + len;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_protocol_violations_get_their_close_codes() {
    let s = TestServer::frozen().await;
    let bystander = trading_pro_client::ws::WsClient::connect(&s.base)
        .await
        .unwrap();
    let close = |code: u16| {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        p
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("unmasked", frame(0x81, b"{}", true), 1002, "Protocol error"),
        (
            "RSV1 set",
            frame(0xC1, b"{}", false),
            1002,
            "Protocol error",
        ),
        (
            "reserved opcode",
            frame(0x83, b"", false),
            1002,
            "Protocol error",
        ),
        (
            "reserved control opcode",
            frame(0x8B, b"", false),
            1002,
            "Protocol error",
        ),
        (
            "fragmented ping",
            frame(0x09, b"", false),
            1002,
            "Protocol error",
        ),
        (
            "lone continuation",
            frame(0x80, b"x", false),
            1002,
            "Protocol error",
        ),
        (
            "invalid close code",
            frame(0x88, &close(1005), false),
            1002,
            "",
        ),
        (
            "a client's close",
            frame(0x88, &close(1000), false),
            1000,
            "bye",
        ),
    ];
    for (what, bytes, code, reason) in cases {
        let mut tcp = open_raw_ws(&s).await;
        tcp.write_all(&bytes).await.unwrap();
        let got = server_close(&mut tcp).await;
        let (got_code, got_reason) = got.unwrap_or_else(|| panic!("{what}: no close frame"));
        assert_eq!(got_code, code, "{what}: {got_reason}");
        assert!(got_reason.contains(reason), "{what}: {got_reason}");
    }

    // A message that never ends: empty continuation frames without FIN.
    let mut tcp = open_raw_ws(&s).await;
    let mut storm = frame(0x01, b"{", false);
    for _ in 0..2_000 {
        storm.extend(frame(0x00, b"", false));
    }
    let _ = tcp.write_all(&storm).await;
    let (code, reason) = server_close(&mut tcp).await.expect("a close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("1024 frames"), "{reason}");

    assert_eq!(
        bystander.subscribe("AAPL", "1").await.unwrap().status,
        trading_pro_client::messages::SubscriptionStatus::Ok
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_message_is_closed_after_the_heartbeat_interval() {
    let s = TestServer::start(&["--heartbeat-interval", "1"]).await;
    let mut tcp = open_raw_ws(&s).await;
    tcp.write_all(&frame(0x01, b"{\"type\"", false))
        .await
        .unwrap();
    // Keep the connection otherwise alive with pings between fragments.
    let started = Instant::now();
    let mut closed = None;
    while started.elapsed() < Duration::from_secs(1) + MARGIN {
        if tcp.write_all(&frame(0x89, b"", false)).await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        if let Ok(Ok(n)) = timeout(Duration::from_millis(200), tcp.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.contains("Message not completed") {
                closed = Some(text);
                break;
            }
        }
    }
    let text = closed.expect("closed for the unfinished message");
    assert!(text.contains("Message not completed within 1s"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_coalesced_then_closed_with_1008() {
    let s = TestServer::start(&[
        "--clock-speed",
        "600",
        "--broadcast-interval-ms",
        "10",
        "--ws-send-backlog",
        "4096",
        "--slow-client-timeout",
        "1",
        "--heartbeat-interval",
        "60",
    ])
    .await;
    // A small receive buffer, so the server's unread bytes grow quickly.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr(&s)).await.unwrap();
    let url = format!("{}/api/v1/ws", s.base.replacen("http://", "ws://", 1));
    let (mut ws, _) = timeout(MARGIN, tokio_tungstenite::client_async(url, tcp))
        .await
        .expect("handshake in time")
        .unwrap();
    let tickers = timeout(MARGIN, s.tickers()).await.expect("tickers in time");
    for (i, symbol) in tickers.iter().enumerate() {
        for res in ["1", "5"] {
            let sub = json!({"type": "bars.subscribe", "id": format!("{i}{res}"),
                "payload": {"symbol": symbol, "resolution": res}});
            // Every step is bounded: a stuck step fails with its name.
            match timeout(MARGIN, ws.send(Message::Text(sub.to_string().into()))).await {
                Ok(Ok(())) => {}
                // Closed as too slow while still subscribing: what follows
                // still checks the close.
                Ok(Err(_)) => break,
                Err(_) => panic!("subscription {i}{res} not sent in time"),
            }
        }
    }
    // Stop reading until the server has given up on this client: its
    // close counted with 1008. (Not "no connection open": the server may
    // not have taken the connection in yet when this starts waiting, and
    // reading at once then reads a live stream, not the buffered one.)
    let metrics = std::sync::Arc::clone(&s.server.context().metrics);
    let deadline = Instant::now() + Duration::from_secs(1) + MARGIN + MARGIN;
    while !metrics
        .render()
        .contains("trading_ws_closes_total{code=\"1008\"} 1")
    {
        assert!(Instant::now() < deadline, "a stuck reader must be closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Reading again finds the updates sent before, then the 1008.
    let mut updates = 0;
    let reading = Instant::now() + MARGIN + MARGIN;
    let close = loop {
        assert!(
            Instant::now() < reading,
            "the close frame must follow the buffered updates ({updates} read)"
        );
        match timeout(MARGIN, ws.next()).await.expect("frames in time") {
            Some(Ok(Message::Text(_))) => updates += 1,
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(u16::from(close.code), 1008);
    assert!(close.reason.contains("Client too slow"), "{}", close.reason);
    assert!(updates > 0);
    timeout(MARGIN + MARGIN, s.stop())
        .await
        .expect("stopped in time");
}

/// SIGTERM while keep-alive clients send requests: every request sent is
/// answered (those in the grace period with `Connection: close`); a client
/// is only ever refused a new connection, which it can take elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_every_request_it_accepted() {
    let mut server = ServerProcess::start(&["--shutdown-grace", "2"]).await;
    let base = server.base.clone();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .unwrap();
            let (mut answered, mut closes, mut lost) = (0, 0, Vec::new());
            loop {
                match http
                    .get(format!("{base}/api/v1/datafeed/config"))
                    .send()
                    .await
                {
                    Ok(r) => {
                        answered += 1;
                        if r.headers().get("connection").is_some_and(|v| v == "close") {
                            closes += 1;
                        }
                        let _ = r.bytes().await;
                    }
                    Err(e) if e.is_connect() => break,
                    Err(e) => {
                        lost.push(e.to_string());
                        break;
                    }
                }
            }
            (answered, closes, lost)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let code = server.terminate().await;
    assert_eq!(code, Some(0));
    let (mut answered, mut closes) = (0, 0);
    for c in clients {
        let (a, c, lost) = c.await.unwrap();
        assert!(lost.is_empty(), "requests lost at shutdown: {lost:?}");
        answered += a;
        closes += c;
    }
    assert!(answered > 0);
    assert!(closes > 0, "draining answers carry Connection: close");
    // The access log has every request.
    let logged = server.log_lines("\"msg\":\"request\"").len();
    assert!(
        logged >= answered,
        "{logged} access log lines for {answered} requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_closes_are_logged_with_code_and_reason() {
    let server = ServerProcess::start(&[]).await;
    let mut ws = raw::connect(&server.base).await;
    ws.send(Message::Text("not json".into())).await.unwrap();
    let (code, _) = raw::expect_close(&mut ws).await;
    assert_eq!(code, 1003);
    let deadline = Instant::now() + MARGIN;
    loop {
        let lines = server.log_lines("websocket closed");
        if let Some(line) = lines.first() {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["code"], 1003);
            assert_eq!(v["reason"], "Could not decode message");
            break;
        }
        assert!(Instant::now() < deadline, "no close logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A getBars page of 5,000 one-minute bars as raw bytes, asking for
/// `accept` (no decoding by the HTTP client): status, content-encoding,
/// vary and body.
async fn bars_as(s: &TestServer, accept: &str) -> (u16, Option<String>, String, Vec<u8>) {
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    let to = crate::common::FROZEN_NOW_S.to_string();
    let r = raw
        .get(s.url("/api/v1/datafeed/bars"))
        .query(&[
            ("symbol", "BTCUSD"),
            ("resolution", "1"),
            ("from_time", "0"),
            ("to_time", to.as_str()),
            ("count_back", "5000"),
        ])
        .header("accept-encoding", accept)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    let (status, coding) = (r.status().as_u16(), header("content-encoding"));
    let vary = header("vary").unwrap_or_default();
    (status, coding, vary, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_compressed_when_the_client_accepts_it() {
    use std::io::Read;
    let s = TestServer::frozen().await;
    let (status, coding, vary, plain) = bars_as(&s, "identity").await;
    assert_eq!((status, coding), (200, None));
    assert!(
        vary.to_ascii_lowercase().contains("accept-encoding"),
        "vary: {vary}"
    );
    let page: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(page["bars"].as_array().unwrap().len(), 5000);

    // gzip, decoded by flate2: the same bytes, several times smaller
    // (about four at the fastest level).
    let (status, coding, _, gz) = bars_as(&s, "gzip").await;
    assert_eq!((status, coding.as_deref()), (200, Some("gzip")));
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain);
    assert!(
        gz.len() * 3 < plain.len(),
        "gzip {} of {}",
        gz.len(),
        plain.len()
    );

    // gzip when both are accepted equally (it costs less); brotli when
    // the client prefers it.
    let (_, coding, _, _) = bars_as(&s, "gzip, deflate, br").await;
    assert_eq!(coding.as_deref(), Some("gzip"));
    let (status, coding, _, br) = bars_as(&s, "gzip;q=0.8, br").await;
    assert_eq!((status, coding.as_deref()), (200, Some("br")));
    let mut unpacked = Vec::new();
    brotli::Decompressor::new(&br[..], 4096)
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, plain);
    assert!(
        br.len() * 3 < plain.len(),
        "br {} of {}",
        br.len(),
        plain.len()
    );

    // Weights decide; q=0 refuses a coding; unknown codings get identity.
    let (_, coding, _, _) = bars_as(&s, "br;q=0.5, gzip;q=0.9").await;
    assert_eq!(coding.as_deref(), Some("gzip"));
    let (_, coding, _, _) = bars_as(&s, "*;q=0, gzip;q=0").await;
    assert_eq!(coding, None);
    let (_, coding, _, body) = bars_as(&s, "compress").await;
    assert_eq!((coding, body.len()), (None, plain.len()));

    // A small body is not worth it.
    let raw = reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap();
    let r = raw
        .get(s.url("/api/v1/datafeed/time"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());

    // The generated client asks for compression and decodes it: it reads
    // exactly the bars the identity response holds.
    let decoded = s
        .client
        .get_bars()
        .symbol("BTCUSD")
        .resolution("1")
        .from_time(0)
        .to_time(crate::common::FROZEN_NOW_S)
        .count_back(5000)
        .send()
        .await
        .unwrap()
        .into_inner();
    let plain_bars = page["bars"].as_array().unwrap();
    assert_eq!(decoded.bars.len(), plain_bars.len());
    for (got, want) in decoded.bars.iter().zip(plain_bars) {
        assert_eq!(got.time, want["time"].as_i64().unwrap());
        assert_eq!(got.close, want["close"].as_f64().unwrap());
        assert_eq!(got.volume, want["volume"].as_f64().unwrap());
    }
    s.stop().await;
}

/// A TLS client that trusts exactly `cert` (PEM), for `localhost`.
fn tls_connector(cert: &str) -> tokio_rustls::TlsConnector {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[tokio::test]
async fn tls_serves_https_and_wss_with_a_certificate_made_here() {
    let dir = crate::common::store::TempDir::new("tls");
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = made.cert.pem();
    let cert_file = dir.file("cert.pem", &cert);
    let key_file = dir.file("key.pem", &made.signing_key.serialize_pem());
    let s = TestServer::start(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ])
    .await;
    let connector = tls_connector(&cert);
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();

    // HTTPS: a request and its answer, encrypted.
    let tcp = TcpStream::connect(addr(&s)).await.unwrap();
    let mut tls = connector
        .connect(name.clone(), tcp)
        .await
        .expect("TLS handshake");
    tls.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(MARGIN, tls.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");

    // Plain HTTP to the TLS port gets no answer in the clear, and harms
    // nobody.
    let mut plain = TcpStream::connect(addr(&s)).await.unwrap();
    plain
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = timeout(MARGIN, plain.read_to_end(&mut got)).await;
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"));

    // WSS: the WebSocket (which moves to the live runtime under its TLS
    // session) subscribes and receives live bars.
    let tcp = TcpStream::connect(addr(&s)).await.unwrap();
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let url = format!("wss://localhost:{}/api/v1/ws", addr(&s).port());
    let (mut socket, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WSS handshake");
    socket
        .send(Message::Text(
            json!({"type": "bars.subscribe", "id": "1", "payload": {"symbol": "BTCUSD", "resolution": "1"}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let mut types = Vec::new();
    while types.len() < 2 {
        match timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let frame: Value = serde_json::from_str(&t).unwrap();
                types.push(frame["type"].as_str().unwrap().to_string());
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("the WSS connection ended: {other:?}"),
        }
    }
    assert_eq!(types, vec!["bars.subscribe.response", "bars.update"]);
    socket.close(None).await.unwrap();
    s.stop().await;
}
