//! `GET /metrics`: parsed with a Prometheus text-format parser, its
//! counters checked against the traffic the test itself generated.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::ws as raw;
use crate::common::TestServer;
use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Every sample of the server's metrics: (name, sorted labels) -> value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

async fn scrape(s: &TestServer) -> Samples {
    let r = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scraped = prometheus_parse::Scrape::parse(lines).expect("the text format parses");
    scraped
        .samples
        .into_iter()
        .filter_map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => return None,
            };
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            Some(((s.metric, labels), value))
        })
        .collect()
}

fn get(m: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    m.get(&(name.to_string(), labels)).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_the_server_saw() {
    let s = TestServer::frozen().await;
    let c = &s.client;
    let before = scrape(&s).await;
    assert_eq!(get(&before, "trading_ws_connections", &[]), 0.0);
    assert!(
        get(&before, "process_resident_memory_bytes", &[]) > 0.0,
        "process metrics are there"
    );

    for _ in 0..3 {
        c.get_bars()
            .symbol("AAPL")
            .resolution("D")
            .from_time(0)
            .to_time(crate::common::FROZEN_NOW_S)
            .count_back(10)
            .send()
            .await
            .unwrap();
    }
    let bad =
        reqwest::get(s.url("/api/v1/datafeed/bars?symbol=AAPL&resolution=7&from_time=0&to_time=1"))
            .await
            .unwrap();
    assert_eq!(bad.status(), 400);
    c.resolve_symbol().symbol("AAPL").send().await.unwrap();
    // A path the spec does not have is "other", whatever it is.
    let r = reqwest::get(s.url("/no/such/path/42")).await.unwrap();
    assert_eq!(r.status(), 404);

    // A WebSocket: subscribe, get the reply and the first update, close.
    let mut ws = raw::connect(&s.base).await;
    raw::send(
        &mut ws,
        json!({"type": "bars.subscribe", "payload": {"symbol": "BTCUSD", "resolution": "1"}}),
    )
    .await;
    raw::reply(&mut ws).await;
    raw::update(&mut ws).await;
    let during = scrape(&s).await;
    assert_eq!(get(&during, "trading_ws_connections", &[]), 1.0);
    assert_eq!(
        get(&during, "trading_ws_subscriptions", &[("channel", "bars")]),
        1.0
    );
    ws.send(tokio_tungstenite::tungstenite::Message::Close(Some(
        CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        },
    )))
    .await
    .unwrap();
    let _ = raw::expect_close(&mut ws).await;

    // The server notices the close on its own task: wait until it has,
    // then check everything at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let after = loop {
        let m = scrape(&s).await;
        if get(&m, "trading_ws_closes_total", &[("code", "1000")]) >= 1.0
            || tokio::time::Instant::now() > deadline
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let requests = |op: &str, status: &str| {
        get(
            &after,
            "trading_http_requests_total",
            &[("operation", op), ("status", status)],
        ) - get(
            &before,
            "trading_http_requests_total",
            &[("operation", op), ("status", status)],
        )
    };
    let seen: Vec<_> = after
        .keys()
        .filter(|(name, _)| name == "trading_http_requests_total")
        .collect();
    assert_eq!(requests("getBars", "200"), 3.0, "{seen:?}");
    assert_eq!(requests("getBars", "400"), 1.0, "{seen:?}");
    assert_eq!(requests("resolveSymbol", "200"), 1.0);
    assert_eq!(requests("other", "404"), 1.0);
    assert_eq!(requests("websocket", "101"), 1.0);
    // The histogram counted the same requests.
    let latency_count = get(
        &after,
        "trading_http_request_duration_seconds_count",
        &[("operation", "getBars")],
    );
    assert_eq!(latency_count, 4.0);
    assert_eq!(get(&after, "trading_ws_connections", &[]), 0.0);
    assert_eq!(
        get(&after, "trading_ws_subscriptions", &[("channel", "bars")]),
        0.0
    );
    assert_eq!(
        get(&after, "trading_ws_closes_total", &[("code", "1000")]),
        1.0
    );
    // The reply and at least the first update.
    assert!(get(&after, "trading_ws_messages_sent_total", &[]) >= 2.0);
    assert!(get(&after, "trading_ws_sent_bytes_total", &[]) > 100.0);
    s.stop().await;
}

#[tokio::test]
async fn metrics_bind_moves_metrics_off_the_public_address() {
    // A free port for the metrics address (the server binds it again).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let s = TestServer::start(&["--metrics-bind", &metrics_addr]).await;
    let public = reqwest::get(s.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), 404, "not on the public address");
    assert_eq!(
        reqwest::get(s.url("/api/v1/datafeed/config"))
            .await
            .unwrap()
            .status(),
        200
    );
    let private = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(private.status(), 200);
    let text = private.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scraped = prometheus_parse::Scrape::parse(lines).expect("the text format parses");
    let config_requests = scraped.samples.iter().any(|m| {
        m.metric == "trading_http_requests_total" && m.labels.get("operation") == Some("getConfig")
    });
    assert!(config_requests, "the public traffic is counted");
    let other = reqwest::get(format!("http://{metrics_addr}/api/v1/health"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "nothing but metrics there");
    s.stop().await;
}
