//! What an attacker with a token (or without one) could learn or keep,
//! through real servers: a store password in any output, live streams a
//! narrowed token no longer allows, whether a hidden symbol exists, metrics
//! series a client mints, answers a shared cache could hand to another
//! user, a WebSocket from a rebinding page, and tokens without a user or
//! with an endless life.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::faults::TcpProxy;
use crate::common::process::ServerProcess;
use crate::common::store::{
    cli, crypto_24x7, frozen_store_args, postgres_admin_url, register_symbols, Engine, Postgres,
    TempDir,
};
use crate::common::tokens::{handshake, hs256, now, refresh, token, SECRET};
use crate::common::ws::{recv, reply, send, Received};
use crate::common::{TestServer, FROZEN_NOW_S};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Long enough for anything that is going to happen on this machine.
const WAIT: Duration = Duration::from_secs(30);

/// Every text a client can read from `base`: the public and data
/// endpoints, whatever they answer.
async fn everything_served(base: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let to = FROZEN_NOW_S;
    let mut out = Vec::new();
    for path in [
        "/api/v1/health".to_string(),
        "/api/v1/ready".to_string(),
        "/api/v1/datafeed/health".to_string(),
        "/api/v1/datafeed/config".to_string(),
        format!(
            "/api/v1/datafeed/bars?symbol=PG&resolution=1&from_time=0&to_time={to}&count_back=10"
        ),
        format!(
            "/api/v1/datafeed/bars?symbol=PG&resolution=1&from_time=0&to_time={}",
            to - 86_400 * 30
        ),
        "/metrics".to_string(),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        out.push(format!("{path} {} {}", r.status(), r.text().await.unwrap()));
    }
    let quotes = http
        .post(format!("{base}/api/v1/datafeed/quotes"))
        .json(&json!({"symbols": ["PG"]}))
        .send()
        .await
        .unwrap();
    out.push(format!(
        "quotes {} {}",
        quotes.status(),
        quotes.text().await.unwrap()
    ));
    let ingest = http
        .post(format!("{base}/api/v1/ingest/trades"))
        .bearer_auth(crate::common::store::TOKEN)
        .json(&json!({"trades": [{"symbol": "PG", "time": to * 1000 - 60_000, "price": 1.0, "size": 1.0}]}))
        .send()
        .await
        .unwrap();
    out.push(format!(
        "ingest {} {}",
        ingest.status(),
        ingest.text().await.unwrap()
    ));
    out
}

/// `--store` URLs carrying a password in every form libpq and
/// tokio-postgres accept (the test database trusts every connection, so
/// any password will do): each holds "SECRET".
fn urls_with_passwords(proxy: SocketAddr, db: &str) -> [String; 5] {
    [
        format!("postgres://postgres:hunter2-SECRET-pw@{proxy}/{db}"),
        format!("postgres://postgres@{proxy}/{db}?password=hunter2-SECRET-pw"),
        format!("postgresql://postgres:pa/ss-SECRET@{proxy}/{db}"),
        format!("postgres://postgres:hunter2%2DSECRET%2Dpw@{proxy}/{db}"),
        format!(
            "postgres://postgres@{proxy}/{db}?sslmode=disable&password=SECRET&application_name=t"
        ),
    ]
}

/// A server on a PostgreSQL store whose URL holds a password, then the
/// database goes away under it: no endpoint and no log line shows the
/// password, whatever the URL's form; public endpoints say only that the
/// store is unavailable. A server that cannot reach the database at start
/// says so without it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_password_never_leaves_the_process() {
    let dir = TempDir::new("secret-store");
    let store = Postgres.fresh(&dir);
    register_symbols(&dir, &store, &crypto_24x7(&["PG"]));
    let db = store.rsplit('/').next().unwrap().to_string();
    let admin = postgres_admin_url();
    let postgres: SocketAddr = admin
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    for form in 0..5 {
        let proxy = TcpProxy::start(postgres).await;
        let url = urls_with_passwords(proxy.addr, &db)[form].clone();
        let mut args = frozen_store_args(&url);
        args.extend(["--log-level", "debug"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut server = ServerProcess::start(&args).await;
        let mut seen = everything_served(&server.base).await;
        proxy.cut();
        // The store notices (within a quarter of a second) and says so.
        let deadline = tokio::time::Instant::now() + WAIT;
        let health = loop {
            let h: Value = reqwest::get(format!("{}/api/v1/health", server.base))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if h["store"]["status"] == "unavailable" {
                break h;
            }
            assert!(tokio::time::Instant::now() < deadline, "{h}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            health["store"]["message"], "store unavailable: the data store cannot be reached now",
            "{health}"
        );
        assert_eq!(health["store"]["reason"], "unavailable", "{health}");
        seen.extend(everything_served(&server.base).await);
        let ready = reqwest::get(format!("{}/api/v1/ready", server.base))
            .await
            .unwrap();
        assert_eq!(ready.status(), 503);
        assert_eq!(server.terminate().await, Some(0));
        seen.extend(server.log_lines(""));
        // A start while the database is down.
        let mut start_args = frozen_store_args(&url);
        start_args.extend(["--bind", "127.0.0.1:0", "--drain-delay", "0"].map(String::from));
        let started: Vec<&str> = start_args.iter().map(String::as_str).collect();
        let run = cli(&started);
        assert!(!run.ok, "{run:?}");
        seen.push(run.stderr.clone());
        seen.push(run.stdout);
        assert!(
            run.stderr.contains("store postgres://postgres@"),
            "{}",
            run.stderr
        );
        // The store is named by its user, host and database only.
        assert!(seen.len() > 20);
        for text in &seen {
            assert!(!text.contains("SECRET"), "the password of {url} in: {text}");
            assert!(
                !text.contains("hunter2"),
                "the password of {url} in: {text}"
            );
        }
    }
}

/// Connected with every exchange, then refreshed to a token for NASDAQ
/// only: every bars topic and every quote the new token does not allow
/// stops, the reply names them, and nothing of them arrives afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_narrowed_token_loses_every_stream_it_may_no_longer_see() {
    // A Thursday's market hours, a minute a second: every symbol moves.
    let start = FROZEN_NOW_S.to_string();
    let s = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--clock-start",
        &start,
        "--clock-speed",
        "60",
        "--broadcast-interval-ms",
        "50",
    ])
    .await;
    let wide = token("narrow", Some(&["*"]));
    let mut socket = handshake(&s.base, "", Some(&wide)).await.unwrap();
    for symbol in ["IBM", "BTCUSD", "AAPL"] {
        send(
            &mut socket,
            json!({"type": "bars.subscribe", "id": symbol, "payload": {"symbol": symbol, "resolution": "1"}}),
        )
        .await;
        assert_eq!(reply(&mut socket).await["payload"]["status"], "ok");
    }
    send(
        &mut socket,
        json!({"type": "quotes.subscribe", "id": "q", "payload": {"symbols": ["EURUSD", "IBM", "AAPL"], "fast_symbols": ["BTCUSD"]}}),
    )
    .await;
    assert_eq!(reply(&mut socket).await["payload"]["status"], "ok");
    let narrow = token("narrow", Some(&["NASDAQ"]));
    let answer = refresh(&mut socket, &narrow).await;
    assert_eq!(answer["status"], "ok", "{answer}");
    let message = answer["message"].as_str().unwrap();
    for gone in [
        "bars:IBM:1",
        "bars:BTCUSD:1",
        "quotes:BTCUSD",
        "quotes:EURUSD",
        "quotes:IBM",
    ] {
        assert!(message.contains(gone), "{gone} not in {message:?}");
    }
    assert!(!message.contains("AAPL"), "{message}");
    // From here on only AAPL (NASDAQ) may arrive: read until it has sent
    // a good number of quotes and bars (BTCUSD's fast quotes would have
    // come far more often).
    let (mut quotes, mut bars) = (0, 0);
    tokio::time::timeout(WAIT * 2, async {
        while quotes < 5 || bars < 5 {
            match recv(&mut socket).await {
                Received::Frame(f) => {
                    let symbol = match f["type"].as_str() {
                        Some("quotes.update") => {
                            quotes += 1;
                            f["payload"]["n"].clone()
                        }
                        Some("bars.update") => {
                            bars += 1;
                            f["payload"]["symbol"].clone()
                        }
                        _ => continue,
                    };
                    assert_eq!(symbol, "AAPL", "after the refresh: {f}");
                }
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .expect("AAPL keeps coming");
    s.stop().await;
}

/// With a NASDAQ token: configuration, search and health show only
/// NASDAQ's symbols, types and resolutions, and nothing reveals the
/// synthetic market's seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_learns_nothing_of_what_it_may_not_see() {
    let s = TestServer::start(&["--auth-jwt-secret", SECRET]).await;
    let client = reqwest::Client::new();
    let get = |path: &str, bearer: String| {
        let req = client.get(s.url(path)).bearer_auth(bearer);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let all = token("seer", Some(&["*"]));
    let nasdaq = token("seer", Some(&["NASDAQ"]));
    let everything = get(
        "/api/v1/datafeed/search?user_input=&max_results=100",
        all.clone(),
    )
    .await;
    let mine: Vec<&Value> = everything
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["exchange"] == "NASDAQ")
        .collect();
    assert!(mine.len() < everything.as_array().unwrap().len());
    let health = get("/api/v1/datafeed/health", nasdaq.clone()).await;
    assert_eq!(health["symbols"], mine.len(), "{health}");
    assert!(health.get("seed").is_none(), "{health}");
    let wide = get("/api/v1/datafeed/health", all.clone()).await;
    assert!(wide.get("seed").is_none(), "{wide}");
    assert_eq!(wide["symbols"], everything.as_array().unwrap().len());
    let config = get("/api/v1/datafeed/config", nasdaq.clone()).await;
    let types: Vec<&str> = config["symbols_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["value"].as_str().unwrap())
        .collect();
    let expected: std::collections::BTreeSet<&str> = mine
        .iter()
        .map(|h| h["type"].as_str().unwrap())
        .chain([""])
        .collect();
    assert_eq!(
        types
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        expected,
        "{config}"
    );
    assert!(
        !types.contains(&"crypto") && !types.contains(&"forex"),
        "{config}"
    );
    // Unsubscribing from a hidden symbol on the WebSocket answers as for
    // an unknown one too.
    let mut socket = handshake(&s.base, "", Some(&nasdaq)).await.unwrap();
    let mut answers = Vec::new();
    for symbol in ["IBM", "NOSUCH"] {
        send(
            &mut socket,
            json!({"type": "bars.unsubscribe", "id": symbol, "payload": {"symbol": symbol, "resolution": "1"}}),
        )
        .await;
        answers.push(reply(&mut socket).await["payload"]["message"].clone());
    }
    assert_eq!(
        answers[0].as_str().unwrap().replace("IBM", "NOSUCH"),
        answers[1],
        "{answers:?}"
    );
    s.stop().await;
}

/// 1,000 WebSocket closes with codes a client picks add no series to
/// /metrics; with authentication on, /metrics needs a token on the public
/// address and stays public on --metrics-bind's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_mint_metrics_series_and_metrics_need_a_token() {
    // One user opens 1,000 sockets one after another: the per-user rate
    // limit is not what this is about.
    let s = TestServer::start(&["--auth-jwt-secret", SECRET, "--token-rate-limit-rps", "0"]).await;
    let bearer = token("metrics", Some(&["*"]));
    let metrics = || async {
        reqwest::Client::new()
            .get(s.url("/metrics"))
            .bearer_auth(token("metrics", Some(&["*"])))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let close_with = |code: u16| {
        let (base, bearer) = (s.base.clone(), bearer.clone());
        async move {
            let mut socket = handshake(&base, "", Some(&bearer)).await.unwrap();
            socket
                .close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: "".into(),
                }))
                .await
                .unwrap();
            // The server's echo, then the end.
            while let Some(Ok(_)) = futures::StreamExt::next(&mut socket).await {}
        }
    };
    // A first close of each kind, so every series there is exists.
    close_with(3000).await;
    close_with(4000).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !metrics().await.contains("code=\"4xxx\"") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first closes not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ws_series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("trading_ws_"))
            .count()
    };
    let before = ws_series(&metrics().await);
    for code in (3001..3500).chain(4001..4500) {
        close_with(code).await;
    }
    // Every close is counted before the metrics are read again.
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        let text = metrics().await;
        let counted: f64 = text
            .lines()
            .filter(|l| l.starts_with("trading_ws_closes_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        if counted >= 1000.0 {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "closes not counted: {counted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let labels: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("trading_ws_closes_total{"))
        .collect();
    // 1,000 codes, three series: the ranges, and 4001, which the spec
    // defines (the server's own close for an expired token).
    let codes: Vec<&str> = labels
        .iter()
        .filter_map(|l| l.split("code=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(codes, ["3xxx", "4001", "4xxx"], "{labels:?}");
    assert_eq!(ws_series(&text), before + 1, "{labels:?}");
    // Without a token, or with a bad one: 401.
    assert_eq!(reqwest::get(s.url("/metrics")).await.unwrap().status(), 401);
    let forged = hs256(
        "another-secret-0123456789",
        json!({"sub": "x", "exp": now() + 60}),
    );
    let r = reqwest::Client::new()
        .get(s.url("/metrics"))
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;

    // On --metrics-bind's private address, a scraper needs no token (and
    // the public address has no /metrics).
    let private = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--metrics-bind",
        &private.to_string(),
    ])
    .await;
    let r = reqwest::get(format!("http://{private}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(reqwest::get(s.url("/metrics")).await.unwrap().status(), 404);
    s.stop().await;
}

/// What depends on the token is never for a shared cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_depend_on_the_token_are_private() {
    let s = TestServer::start(&["--auth-jwt-secret", SECRET]).await;
    let bearer = token("cache", Some(&["NASDAQ"]));
    let to = FROZEN_NOW_S;
    for path in [
        "/api/v1/datafeed/config".to_string(),
        "/api/v1/datafeed/search?user_input=a".to_string(),
        format!("/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=0&to_time={to}"),
        format!("/api/v1/datafeed/bars?symbol=IBM&resolution=D&from_time=0&to_time={to}"),
    ] {
        let r = reqwest::Client::new()
            .get(s.url(&path))
            .bearer_auth(&bearer)
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["cache-control"], "private, no-store", "{path}");
        let vary: Vec<String> = h
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect();
        let vary = vary.join(",");
        for name in ["authorization", "cookie", "origin"] {
            assert!(vary.contains(name), "{path}: vary {vary}");
        }
    }
    // Public answers stay cacheable as before.
    let r = reqwest::get(s.url("/api/v1/health")).await.unwrap();
    assert!(r.headers().get("cache-control").is_none());
    s.stop().await;
}

/// A page on another name that resolves to this server (DNS rebinding)
/// sends its own name as both `Origin` and `Host`: refused. The server's
/// own origin and `--public-origin` are let in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_origin_check_never_trusts_the_host_header() {
    let s = TestServer::start(&["--public-origin", "https://trading.example.com"]).await;
    let port = s.server.local_addr().port();
    let attempt = |origin: String, host: String| {
        let url = format!("{}/api/v1/ws", s.base.replacen("http://", "ws://", 1));
        async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut().insert("origin", origin.parse().unwrap());
            req.headers_mut().insert("host", host.parse().unwrap());
            match tokio_tungstenite::connect_async(req).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    let evil = format!("evil.example:{port}");
    assert_eq!(attempt(format!("http://{evil}"), evil.clone()).await, 403);
    assert_eq!(
        attempt(
            format!("http://127.0.0.1:{port}"),
            format!("127.0.0.1:{port}")
        )
        .await,
        101
    );
    assert_eq!(
        attempt(format!("http://localhost:{port}"), evil.clone()).await,
        101
    );
    assert_eq!(
        attempt(
            "https://trading.example.com".into(),
            "trading.example.com".into()
        )
        .await,
        101
    );
    s.stop().await;
}

/// Tokens must name their user and live at most a day (the default);
/// `exp` with a fraction means the same over REST and the WebSocket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_need_a_user_a_bounded_life_and_read_alike_everywhere() {
    let s = TestServer::start(&["--auth-jwt-secret", SECRET]).await;
    let config = s.url("/api/v1/datafeed/config");
    let status = |token: String| {
        let req = reqwest::Client::new().get(&config).bearer_auth(token);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let exchanges = json!(["*"]);
    for (claims, why) in [
        (
            json!({"exp": now() + 600, "exchanges": exchanges}),
            "no sub claim",
        ),
        (
            json!({"sub": "", "exp": now() + 600, "exchanges": exchanges}),
            "no sub claim",
        ),
        (
            json!({"sub": "old", "exp": now() + 2 * 86_400, "exchanges": exchanges}),
            "valid for longer than this server accepts",
        ),
        (
            json!({"sub": "old", "exp": 1_000_000_000_000_i64, "exchanges": exchanges}),
            "valid for longer",
        ),
    ] {
        let bad = hs256(SECRET, claims.clone());
        let (code, body) = status(bad.clone()).await;
        assert_eq!(code, 401, "{claims}: {body}");
        assert!(body.contains(why), "{claims}: {body}");
        assert_eq!(
            handshake(&s.base, "", Some(&bad)).await.err().map(|e| e.0),
            Some(401)
        );
    }
    // A sub-less token cannot widen a connection either.
    let fine = token("sub", Some(&["NASDAQ"]));
    let mut socket = handshake(&s.base, "", Some(&fine)).await.unwrap();
    let anonymous = hs256(SECRET, json!({"exp": now() + 600, "exchanges": ["*"]}));
    assert_eq!(refresh(&mut socket, &anonymous).await["status"], "error");
    // A fractional exp: accepted over REST and the WebSocket alike, and
    // the socket lives (a subscription answers, no 4001).
    let fractional = hs256(
        SECRET,
        json!({"sub": "f", "exp": now() as f64 + 600.5, "exchanges": ["*"]}),
    );
    assert_eq!(status(fractional.clone()).await.0, 200);
    let mut socket = handshake(&s.base, "", Some(&fractional)).await.unwrap();
    send(
        &mut socket,
        json!({"type": "bars.subscribe", "id": "1", "payload": {"symbol": "AAPL", "resolution": "1"}}),
    )
    .await;
    let answer = tokio::time::timeout(WAIT, reply(&mut socket))
        .await
        .unwrap();
    assert_eq!(answer["payload"]["status"], "ok", "{answer}");
    socket.send(Message::Close(None)).await.unwrap();
    s.stop().await;
    // The longest life is the operator's to set.
    let s = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-max-token-lifetime",
        "172800",
    ])
    .await;
    let long = hs256(
        SECRET,
        json!({"sub": "old", "exp": now() + 86_400 + 3_600, "exchanges": ["*"]}),
    );
    let r = reqwest::Client::new()
        .get(s.url("/api/v1/datafeed/config"))
        .bearer_auth(long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop().await;
}
