//! Behind a real load balancer, configured as `docs/DEPLOYMENT.md` tells
//! operators to (the tests read the configuration from that page): nginx
//! as an HTTP proxy with `X-Forwarded-For`, HAProxy as a TCP balancer with
//! PROXY protocol v2. Clients come from different loopback addresses
//! (127.0.0.2, 127.0.0.3, ...), as they would from different machines.
//!
//! What an operator relies on: each client has its own limits and its own
//! address in the access log; a client cannot pick its address; the
//! readiness probe is never limited, however busy a client or however many
//! sockets are open; a drain turns the probe 503 before the node stops
//! accepting.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::common::process::ServerProcess;
use crate::common::proxies;
use crate::common::store::TempDir;
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Long enough for anything that is going to happen on this machine.
const WAIT: Duration = Duration::from_secs(30);

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// An HTTP client whose connections come from `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip(from))
        .build()
        .unwrap()
}

fn server_addr(server: &ServerProcess) -> SocketAddr {
    server.base.trim_start_matches("http://").parse().unwrap()
}

/// The statuses of `n` GETs of `path`, one after another.
async fn statuses(client: &reqwest::Client, base: &str, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        out.push(r.status().as_u16());
    }
    out
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// The access log's client addresses of requests for `path`.
fn logged_remotes(server: &ServerProcess, path: &str) -> Vec<String> {
    server
        .log_lines("\"msg\":\"request\"")
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["path"] == path)
        .map(|v| v["remote"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Waits until the access log has seen `path` from `remote`.
async fn wait_logged(server: &ServerProcess, path: &str, remote: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !logged_remotes(server, path)
        .iter()
        .any(|r| r.starts_with(remote))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request for {path} from {remote} in the access log: {:?}",
            logged_remotes(server, path)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A WebSocket to `base` (through whatever listens there) from `from`:
/// its handshake status, and the socket when it was accepted.
async fn websocket_from(
    base: &str,
    from: &str,
) -> (u16, Option<tokio_tungstenite::WebSocketStream<TcpStream>>) {
    let addr: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/api/v1/ws");
    match tokio_tungstenite::client_async(url, tcp).await {
        Ok((ws, response)) => (response.status().as_u16(), Some(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status().as_u16(), None)
        }
        Err(e) => panic!("websocket handshake from {from}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_each_client_has_its_own_limits_and_address() {
    let dir = TempDir::new("deploy-nginx");
    // A small budget per address: 20 at once, refilled at 1 a second.
    let server = ServerProcess::start(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--rate-limit-rps",
        "1",
        "--rate-limit-burst",
        "20",
    ])
    .await;
    let nginx = proxies::nginx(&dir, &[server_addr(&server)]);
    let base = nginx.base();
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let config = "/api/v1/datafeed/config";

    // A floods: refused once its own budget is spent.
    let flood = statuses(&a, &base, config, 40).await;
    assert!(count(&flood, 429) >= 10, "{flood:?}");
    assert!(count(&flood, 200) >= 15, "{flood:?}");
    // Its probe is never limited, whatever its budget.
    assert_eq!(statuses(&a, &base, "/api/v1/ready", 5).await, [200; 5]);
    // B, through the same nginx, has a budget of its own.
    assert_eq!(statuses(&b, &base, config, 10).await, [200; 10]);
    // A cannot borrow B's budget by claiming B's address: nginx appends
    // the address it saw, and that one counts.
    let spoofed = a
        .get(format!("{base}{config}"))
        .header("x-forwarded-for", "127.0.0.3")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), 429);

    // Straight to the node from an address it does not trust, a forwarded
    // header changes nothing: C is C, with a budget of its own.
    let c = client_from("127.0.0.4");
    let direct = c
        .get(format!("{}{config}", server.base))
        .header("x-forwarded-for", "127.0.0.2")
        .header("forwarded", "for=127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);

    // The access log names each client, never the proxy.
    wait_logged(&server, config, "127.0.0.4").await;
    let remotes = logged_remotes(&server, config);
    for client in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        assert!(
            remotes.iter().any(|r| r.starts_with(client)),
            "{client} not in {remotes:?}"
        );
    }
    assert!(
        !remotes.iter().any(|r| r.starts_with("127.0.0.1")),
        "the proxy's address in the access log: {remotes:?}"
    );
    // /metrics stays inside: nginx does not route it.
    let metrics = b.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 404);
}

/// 1,000 WebSockets from one client through nginx: the probe stays 200,
/// that client is held to its own cap, and another client still connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_sockets_count_per_client_and_the_probe_stays_ready() {
    let dir = TempDir::new("deploy-sockets");
    let server = ServerProcess::start(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--max-connections-per-ip",
        "1000",
    ])
    .await;
    let nginx = proxies::nginx(&dir, &[server_addr(&server)]);
    let base = nginx.base();
    let mut open = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let (status, ws) = websocket_from(&base, "127.0.0.2").await;
        assert_eq!(status, 101, "socket {} refused", open.len());
        open.push(ws.unwrap());
    }
    let b = client_from("127.0.0.3");
    assert_eq!(statuses(&b, &base, "/api/v1/ready", 3).await, [200; 3]);
    let a = client_from("127.0.0.2");
    assert_eq!(statuses(&a, &base, "/api/v1/ready", 3).await, [200; 3]);
    // The 1,001st from the same client is over its cap...
    let (status, _) = websocket_from(&base, "127.0.0.2").await;
    assert_eq!(status, 503);
    // ...and another client is not.
    let (status, ws) = websocket_from(&base, "127.0.0.3").await;
    assert_eq!(status, 101);
    // The sockets work: one of them subscribes and gets its reply.
    let mut ws = ws.unwrap();
    ws.send(Message::Text(
        r#"{"type":"bars.subscribe","id":"1","payload":{"symbol":"BTCUSD","resolution":"1"}}"#
            .into(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Ok(Message::Text(text))) = ws.next().await {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == "bars.subscribe.response" {
                    return v;
                }
            }
        }
    })
    .await
    .expect("a subscribe reply");
    assert_eq!(reply["payload"]["status"], "ok");
    // Closing some frees the client's slots.
    open.truncate(990);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, ws) = websocket_from(&base, "127.0.0.2").await;
        if status == 101 {
            drop(ws);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slots never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// SIGTERM: the probe answers 503 for the drain delay while everything
/// else is still served, then the node stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_is_visible_to_the_probe_before_the_node_stops_accepting() {
    let dir = TempDir::new("deploy-drain");
    let mut server =
        ServerProcess::start(&["--trusted-proxies", "127.0.0.1", "--drain-delay", "3"]).await;
    let nginx = proxies::nginx(&dir, &[server_addr(&server)]);
    let base = nginx.base();
    let client = client_from("127.0.0.2");
    assert_eq!(statuses(&client, &base, "/api/v1/ready", 1).await, [200]);
    let pid = server.pid();
    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    // The probe turns 503 with the reason, while data is still served.
    let deadline = tokio::time::Instant::now() + WAIT;
    let reason = loop {
        let r = client
            .get(format!("{base}/api/v1/ready"))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break r.text().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready never turned 503"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(reason.contains("shutting down"), "{reason}");
    let data = client
        .get(format!("{base}/api/v1/datafeed/config"))
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 200);
    // Straight to the node too: it still accepts connections now.
    let direct = client_from("127.0.0.3")
        .get(format!("{}/api/v1/ready", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 503);
    // Then it drains and exits.
    let code = server.wait_exit().await;
    assert_eq!(code, Some(0));
    let lines = server.log_lines("leaving rotation");
    assert_eq!(lines.len(), 1, "{lines:?}");
}

/// Sends one HTTP/1.1 request on `tcp` (after `prefix`) and returns the
/// status and body of the answer.
async fn raw_get(mut tcp: TcpStream, prefix: &[u8], path: &str) -> (u16, String) {
    let mut request = prefix.to_vec();
    request.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    tcp.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

async fn connect_from(to: SocketAddr, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(ip(from), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// HAProxy in TCP mode with PROXY protocol v2, as DEPLOYMENT.md shows it:
/// the same per-client limits and log, its readiness checks (which carry
/// the header too) succeed, WebSockets pass; a connection without the
/// header is closed; a v1 (text) header is understood as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_haproxy_with_proxy_protocol_each_client_is_itself() {
    let dir = TempDir::new("deploy-haproxy");
    let server = ServerProcess::start(&[
        "--proxy-protocol",
        "--trusted-proxies",
        "127.0.0.1",
        "--rate-limit-rps",
        "1",
        "--rate-limit-burst",
        "20",
    ])
    .await;
    let node = server_addr(&server);
    let haproxy = proxies::haproxy(&dir, &[node]);
    let base = haproxy.base();
    let (a, b) = (client_from("127.0.0.2"), client_from("127.0.0.3"));
    let config = "/api/v1/datafeed/config";
    let flood = statuses(&a, &base, config, 40).await;
    assert!(count(&flood, 429) >= 10, "{flood:?}");
    assert_eq!(statuses(&a, &base, "/api/v1/ready", 3).await, [200; 3]);
    assert_eq!(statuses(&b, &base, config, 10).await, [200; 10]);
    wait_logged(&server, config, "127.0.0.3").await;
    let remotes = logged_remotes(&server, config);
    assert!(
        remotes.iter().any(|r| r.starts_with("127.0.0.2:")),
        "{remotes:?}"
    );
    assert!(
        !remotes.iter().any(|r| r.starts_with("127.0.0.1")),
        "{remotes:?}"
    );
    // HAProxy's own checks reach /api/v1/ready (with a PROXY header).
    wait_logged(&server, "/api/v1/ready", "127.0.0.1").await;
    // A WebSocket through it.
    let (status, _ws) = websocket_from(&base, "127.0.0.3").await;
    assert_eq!(status, 101);

    // A connection without the header is closed unanswered.
    let (status, _) = raw_get(connect_from(node, "127.0.0.1").await, b"", config).await;
    assert_eq!(status, 0);
    // A v1 header names its client: the client's budget, its address.
    let v1 = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 80\r\n";
    let (status, body) = raw_get(connect_from(node, "127.0.0.1").await, v1, config).await;
    assert_eq!(status, 200, "{body}");
    wait_logged(&server, config, "192.0.2.7:40000").await;
    // From a peer it does not trust, nothing is accepted, header or not.
    let (status, _) = raw_get(connect_from(node, "127.0.0.5").await, v1, config).await;
    assert_eq!(status, 0);
}
