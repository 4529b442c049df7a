//! Live bars over WebSocket, through the typed client and through raw frames,
//! against real servers on ephemeral ports.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::ws::{self as raw, Received};
use crate::common::{TestServer, FROZEN_NOW_S};
use futures::SinkExt;
use serde_json::json;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use trading_pro_client::messages::{BarUpdate, SubscriptionStatus};
use trading_pro_client::ws::WsClient;

/// Bounds every wait so a broken server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

/// A market clock running 60x (a minute per second) with fast broadcasts.
async fn live_server(extra: &[&str]) -> TestServer {
    let start = FROZEN_NOW_S.to_string();
    let mut args = vec![
        "--clock-start",
        &start,
        "--clock-speed",
        "60",
        "--broadcast-interval-ms",
        "50",
    ];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

fn wall_clock_us() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.unwrap().as_micros() as i64
}

async fn next(c: &mut WsClient) -> BarUpdate {
    timeout(WAIT, c.next_update())
        .await
        .expect("an update in time")
        .expect("connection open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_replies_with_topic_and_sends_the_current_bar() {
    let s = TestServer::frozen().await;
    let mut c = WsClient::connect(&s.base).await.unwrap();

    let before = wall_clock_us();
    let r = c.subscribe("aapl", "1").await.unwrap();
    assert_eq!(
        (r.status, r.symbol.as_str(), r.topic.as_str()),
        (SubscriptionStatus::Ok, "aapl", "bars:AAPL:1")
    );
    assert!(r.message.contains("bars:AAPL:1"), "{}", r.message);
    let first = next(&mut c).await;
    assert_eq!(
        (
            first.topic.as_str(),
            first.symbol.as_str(),
            first.resolution.as_str()
        ),
        ("bars:AAPL:1", "AAPL", "1")
    );
    // Stamped with the wall-clock instant it was published.
    assert!(
        (before..=wall_clock_us()).contains(&first.published_us),
        "published_us {} outside [{before}, now]",
        first.published_us
    );
    // A later subscriber to the unchanged (frozen) topic gets that same state.
    let mut late = WsClient::connect(&s.base).await.unwrap();
    late.subscribe("AAPL", "1").await.unwrap();
    assert_eq!(next(&mut late).await, first);
    // The current bar is the one REST has for now.
    let rest = s
        .client
        .get_bars()
        .symbol("AAPL")
        .resolution("1")
        .from_time(FROZEN_NOW_S)
        .to_time(FROZEN_NOW_S + 1)
        .send()
        .await
        .unwrap();
    let b = &rest.bars[0];
    assert_eq!(
        (
            first.time,
            first.open,
            first.high,
            first.low,
            first.close,
            first.volume
        ),
        (b.time, b.open, b.high, b.low, b.close, b.volume)
    );

    // Aliases map to the canonical topic; subscribing twice is one subscription.
    assert_eq!(
        c.subscribe("NASDAQ:MSFT", "1D").await.unwrap().topic,
        "bars:MSFT:D"
    );
    assert_eq!(next(&mut c).await.topic, "bars:MSFT:D");
    let again = c.subscribe("MSFT", "D").await.unwrap();
    assert_eq!(
        (again.status, again.topic.as_str()),
        (SubscriptionStatus::Ok, "bars:MSFT:D")
    );
    assert!(again.message.contains("Already"), "{}", again.message);

    // Errors are replies; the connection stays usable.
    let bad = c.subscribe("NOPE", "1").await.unwrap();
    assert_eq!(
        (bad.status, bad.topic.as_str()),
        (SubscriptionStatus::Error, "")
    );
    assert!(bad.message.contains("NOPE"), "{}", bad.message);
    let bad = c.subscribe("AAPL", "7").await.unwrap();
    assert_eq!(bad.status, SubscriptionStatus::Error);
    assert!(bad.message.contains("resolution"), "{}", bad.message);

    // Unsubscribe is idempotent.
    for _ in 0..2 {
        let u = c.unsubscribe("AAPL", "1").await.unwrap();
        assert_eq!(
            (u.status, u.topic.as_str()),
            (SubscriptionStatus::Ok, "bars:AAPL:1")
        );
    }
    assert!(c.subscribe("BTCUSD", "5").await.unwrap().status == SubscriptionStatus::Ok);
    assert_eq!(
        next(&mut c).await.topic,
        "bars:BTCUSD:5",
        "no stray update from the dropped or duplicate topics"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_only_for_subscribed_topics_and_none_after_unsubscribe() {
    let s = live_server(&[]).await;
    let mut c = WsClient::connect(&s.base).await.unwrap();
    let mut other = WsClient::connect(&s.base).await.unwrap();
    for (sym, res) in [("BTCUSD", "1"), ("ETHUSD", "5"), ("EURUSD", "1")] {
        assert_eq!(
            c.subscribe(sym, res).await.unwrap().status,
            SubscriptionStatus::Ok
        );
    }
    assert_eq!(
        other.subscribe("SOLUSD", "1").await.unwrap().status,
        SubscriptionStatus::Ok
    );

    let wanted: HashSet<&str> = ["bars:BTCUSD:1", "bars:ETHUSD:5", "bars:EURUSD:1"].into();
    let mut seen = HashSet::new();
    while seen.len() < 3 {
        let u = next(&mut c).await;
        assert!(wanted.contains(u.topic.as_str()), "unexpected {}", u.topic);
        seen.insert(u.topic);
    }
    // Another client gets only its own topic.
    for _ in 0..20 {
        assert_eq!(next(&mut other).await.topic, "bars:SOLUSD:1");
    }

    c.unsubscribe("ETHUSD", "5").await.unwrap();
    s.stop().await;
}

/// On the wire, no update of a topic follows the reply to its unsubscribe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_follows_an_unsubscribe_reply() {
    let s = live_server(&[]).await;
    let mut ws = raw::connect(&s.base).await;
    for (sym, res) in [("BTCUSD", "1"), ("ETHUSD", "1")] {
        raw::send(
            &mut ws,
            json!({"type": "bars.subscribe", "payload": {"symbol": sym, "resolution": res}}),
        )
        .await;
    }
    let mut eth_updates = 0;
    while eth_updates < 5 {
        if let Received::Frame(f) = raw::recv(&mut ws).await {
            eth_updates +=
                usize::from(f["payload"]["topic"] == "bars:ETHUSD:1" && f["type"] == "bars.update");
        }
    }
    raw::send(&mut ws, json!({"type": "bars.unsubscribe", "id": "u", "payload": {"symbol": "ETHUSD", "resolution": "1"}})).await;
    loop {
        let Received::Frame(f) = raw::recv(&mut ws).await else {
            panic!("closed")
        };
        if f["id"] == "u" {
            break;
        }
    }
    let mut after = 0;
    while after < 40 {
        let Received::Frame(f) = timeout(WAIT, raw::recv(&mut ws)).await.unwrap() else {
            panic!("closed")
        };
        assert_eq!(
            f["payload"]["topic"], "bars:BTCUSD:1",
            "only the remaining topic after the reply"
        );
        after += 1;
    }
    s.stop().await;
}

/// Once a bar closes, REST returns exactly the last update sent for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_agrees_with_rest_history_across_rollovers() {
    let s = live_server(&[]).await;
    let mut c = WsClient::connect(&s.base).await.unwrap();
    for (sym, res) in [("BTCUSD", "1"), ("AAPL", "1"), ("EURUSD", "5")] {
        c.subscribe(sym, res).await.unwrap();
    }
    let mut last: std::collections::HashMap<String, BarUpdate> = Default::default();
    let mut checked = HashSet::new();
    while checked.len() < 3 {
        let u = next(&mut c).await;
        if let Some(prev) = last.get(&u.topic) {
            assert!(u.time >= prev.time, "bar times never go back");
            if u.time > prev.time {
                let bars = s
                    .client
                    .get_bars()
                    .symbol(&prev.symbol)
                    .resolution(prev.resolution.as_str())
                    .from_time(prev.time / 1000)
                    .to_time(prev.time / 1000 + 1)
                    .send()
                    .await
                    .unwrap()
                    .into_inner()
                    .bars;
                let b = &bars[0];
                assert_eq!(
                    (b.time, b.open, b.high, b.low, b.close, b.volume),
                    (
                        prev.time,
                        prev.open,
                        prev.high,
                        prev.low,
                        prev.close,
                        prev.volume
                    ),
                    "{}: the closed bar's last update equals its history",
                    u.topic
                );
                checked.insert(u.topic.clone());
            }
        }
        last.insert(u.topic.clone(), u);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_live_clients_and_closes_silent_ones() {
    let s = TestServer::start(&["--heartbeat-interval", "0.5"]).await;
    // The typed client answers pings, so it outlives several heartbeat intervals.
    let c = WsClient::connect(&s.base).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(
        c.subscribe("AAPL", "D").await.unwrap().status,
        SubscriptionStatus::Ok
    );

    // A raw client that never reads never answers a ping.
    let mut silent = raw::connect(&s.base).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (code, reason) = timeout(WAIT, raw::expect_close(&mut silent)).await.unwrap();
    assert_eq!(
        (code, &reason[..18.min(reason.len())]),
        (1008, "Heartbeat timeout:"),
        "{reason}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_end_at_their_maximum_lifespan() {
    let s = TestServer::start(&["--max-connection-lifespan", "1"]).await;
    let mut c = WsClient::connect(&s.base).await.unwrap();
    let closed = timeout(WAIT, c.wait_closed()).await.unwrap().unwrap();
    assert_eq!(closed.code, 1000);
    assert!(closed.reason.contains("lifespan"), "{}", closed.reason);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_with_1003_and_the_reason() {
    let s = TestServer::frozen().await;
    // A bystander keeps working through every bad client below.
    let bystander = WsClient::connect(&s.base).await.unwrap();
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("not json".into()), "Could not decode message"),
        (Message::Text("[1, 2]".into()), "Could not decode message"),
        (
            Message::Text(r#"{"payload": {}}"#.into()),
            "Could not decode message",
        ),
        (
            Message::Binary(vec![1, 2, 3].into()),
            "Could not decode message",
        ),
        (
            Message::Text(r#"{"type": "bars.publish", "payload": {}}"#.into()),
            "No matching type",
        ),
        (
            Message::Text(r#"{"type": "bars.update", "payload": {}}"#.into()),
            "No matching type",
        ),
        (
            Message::Text(r#"{"type": "bars.subscribe"}"#.into()),
            "Could not validate payload",
        ),
        (
            Message::Text(r#"{"type": "bars.subscribe", "payload": {"symbol": 5}}"#.into()),
            "Could not validate payload",
        ),
        (
            Message::Text(
                r#"{"type": "bars.subscribe", "payload": {"symbol": "A", "extra": 1}}"#.into(),
            ),
            "Could not validate payload",
        ),
        (
            Message::Text(
                format!(
                    r#"{{"type": "bars.subscribe", "id": "{}", "payload": {{"symbol": "A"}}}}"#,
                    "x".repeat(65)
                )
                .into(),
            ),
            "Could not validate payload",
        ),
    ];
    for (frame, reason) in cases {
        let mut ws = raw::connect(&s.base).await;
        ws.send(frame.clone()).await.unwrap();
        let (code, got) = timeout(WAIT, raw::expect_close(&mut ws)).await.unwrap();
        assert_eq!((code, got.as_str()), (1003, reason), "frame {frame:?}");
    }
    // A text frame whose bytes are not UTF-8: 1007 (RFC 6455 §7.4.1).
    let mut ws = raw::connect(&s.base).await;
    ws.send(Message::Frame(invalid_utf8_text_frame()))
        .await
        .unwrap();
    let (code, reason) = timeout(WAIT, raw::expect_close(&mut ws)).await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (1007, "Invalid UTF-8 in a text message")
    );
    // Over the size limit.
    let mut ws = raw::connect(&s.base).await;
    let big = json!({"type": "bars.subscribe", "payload": {"symbol": "A".repeat(70_000)}});
    let _ = ws.send(Message::Text(big.to_string().into())).await;
    let (code, reason) = timeout(WAIT, raw::expect_close(&mut ws)).await.unwrap();
    assert_eq!(code, 1009);
    assert!(reason.contains("65536"), "{reason}");

    assert_eq!(
        bystander.subscribe("AAPL", "1").await.unwrap().status,
        SubscriptionStatus::Ok
    );
    s.stop().await;
}

/// A final text frame carrying bytes that are not UTF-8.
fn invalid_utf8_text_frame() -> tokio_tungstenite::tungstenite::protocol::frame::Frame {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    tokio_tungstenite::tungstenite::protocol::frame::Frame::message(
        vec![0xff, 0xfe, 0x7b],
        OpCode::Data(Data::Text),
        true,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_echo_request_ids_and_validate_against_the_spec() {
    let s = TestServer::frozen().await;
    let mut ws = raw::connect(&s.base).await;
    raw::send(
        &mut ws,
        json!({"type": "bars.subscribe", "id": "req-1", "payload": {"symbol": "ETHUSD"}}),
    )
    .await;
    let r = raw::reply(&mut ws).await;
    assert_eq!(r["type"], "bars.subscribe.response");
    assert_eq!(r["id"], "req-1");
    assert_eq!(
        r["payload"]["topic"], "bars:ETHUSD:1",
        "resolution defaults to 1"
    );
    let Received::Frame(update) = raw::recv(&mut ws).await else {
        panic!("expected the current bar")
    };
    assert_eq!(update["type"], "bars.update");
    assert_eq!(update["payload"]["topic"], "bars:ETHUSD:1");
    assert!(update.get("id").is_none());

    raw::send(
        &mut ws,
        json!({"type": "bars.subscribe", "payload": {"symbol": "NOPE", "resolution": "1"}}),
    )
    .await;
    let r = raw::reply(&mut ws).await;
    assert_eq!(r["payload"]["status"], "error");
    assert!(r.get("id").is_none(), "no id asked, none echoed");

    raw::send(&mut ws, json!({"type": "bars.unsubscribe", "id": "7", "payload": {"symbol": "ETHUSD", "resolution": "1"}})).await;
    let r = raw::reply(&mut ws).await;
    assert_eq!(
        (r["type"].as_str(), r["id"].as_str()),
        (Some("bars.unsubscribe.response"), Some("7"))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_per_connection_are_limited() {
    let s = TestServer::start(&["--max-subscriptions", "3", "--clock-speed", "0"]).await;
    let c = WsClient::connect(&s.base).await.unwrap();
    for sym in ["AAPL", "MSFT", "KO"] {
        assert_eq!(
            c.subscribe(sym, "D").await.unwrap().status,
            SubscriptionStatus::Ok
        );
    }
    let r = c.subscribe("IBM", "D").await.unwrap();
    assert_eq!(r.status, SubscriptionStatus::Error);
    assert!(r.message.contains("at most 3"), "{}", r.message);
    // Freeing one makes room again.
    c.unsubscribe("KO", "D").await.unwrap();
    assert_eq!(
        c.subscribe("IBM", "D").await.unwrap().status,
        SubscriptionStatus::Ok
    );
    s.stop().await;
}

/// A client that never reads is closed once its socket stops accepting data;
/// meanwhile everybody else keeps getting updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_does_not_hold_up_others() {
    let s = live_server(&[
        "--slow-client-timeout",
        "1",
        "--max-subscriptions",
        "300",
        "--heartbeat-interval",
        "600",
    ])
    .await;
    let mut healthy = WsClient::connect(&s.base).await.unwrap();
    healthy.subscribe("BTCUSD", "1").await.unwrap();

    // The stalled client subscribes to every topic (lots of traffic) and then never reads.
    let mut stalled = raw::connect(&s.base).await;
    let symbols = s.tickers().await;
    for sym in &symbols {
        for res in ["1", "5", "15", "30", "60", "240", "D", "W", "M"] {
            raw::send(
                &mut stalled,
                json!({"type": "bars.subscribe", "payload": {"symbol": sym, "resolution": res}}),
            )
            .await;
        }
    }
    let mut received = 0;
    let closed = loop {
        assert_eq!(next(&mut healthy).await.topic, "bars:BTCUSD:1");
        received += 1;
        if received % 20 == 0 && s.server.context().ws.open_connections() == 1 {
            break true;
        }
        if received > 20_000 {
            break false;
        }
    };
    assert!(closed, "the stalled client was never closed");
    let (code, reason) = timeout(WAIT, raw::expect_close(&mut stalled))
        .await
        .unwrap();
    assert!(
        code == 1008 && reason.contains("too slow") || code == 1006,
        "{code} {reason}"
    );
    // The healthy client is still served.
    for _ in 0..5 {
        next(&mut healthy).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection_with_1001() {
    let s = TestServer::frozen().await;
    let mut a = WsClient::connect(&s.base).await.unwrap();
    let mut b = WsClient::connect(&s.base).await.unwrap();
    a.subscribe("AAPL", "1").await.unwrap();
    b.subscribe("AAPL", "1").await.unwrap();
    s.server.context().ws.shutdown(Duration::from_secs(5)).await;
    for c in [&mut a, &mut b] {
        let closed = timeout(WAIT, c.wait_closed()).await.unwrap().unwrap();
        assert_eq!(
            (closed.code, closed.reason.as_str()),
            (1001, "Server shutting down")
        );
    }
    assert_eq!(s.server.context().ws.open_connections(), 0);
    s.stop().await;
}

/// A connection the WebSocket side takes in after its shutdown began (a
/// handshake that completed just before, handed over just after) is
/// closed with 1001 too, not left open until the process exits under it.
/// (The edge refuses new handshakes while draining; here the WebSocket
/// side shuts down alone, so one still arrives.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_arriving_during_shutdown_is_closed_with_1001() {
    let s = TestServer::frozen().await;
    let ws_state = std::sync::Arc::clone(&s.server.context().ws);
    let mut early = WsClient::connect(&s.base).await.unwrap();
    // `early` getting its 1001 shows the shutdown has begun.
    let shutdown = tokio::spawn(async move { ws_state.shutdown(Duration::from_secs(5)).await });
    let closed = timeout(WAIT, early.wait_closed()).await.unwrap().unwrap();
    assert_eq!(closed.code, 1001);
    let mut late = WsClient::connect(&s.base).await.unwrap();
    let closed = timeout(WAIT, late.wait_closed())
        .await
        .expect("a late connection is closed, not kept")
        .unwrap();
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "Server shutting down")
    );
    timeout(WAIT, shutdown).await.unwrap().unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_asyncapi_spec() {
    let s = TestServer::frozen().await;
    let http = reqwest::Client::new();
    let json: serde_json::Value = http
        .get(s.url("/api/v1/ws/asyncapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&json, crate::common::asyncapi());
    // (The page rendering it is tested in pages.rs and in the browser.)
    s.stop().await;
}

/// The next `quotes.update` payload (skipping bar updates and replies).
async fn next_quote(ws: &mut raw::Raw) -> serde_json::Value {
    loop {
        match timeout(WAIT, raw::recv(ws))
            .await
            .expect("a quote within 30 s")
        {
            Received::Frame(f) if f["type"] == "quotes.update" => return f["payload"].clone(),
            Received::Frame(_) => continue,
            other => panic!("expected a quote, got {other:?}"),
        }
    }
}

async fn quotes_request(
    ws: &mut raw::Raw,
    kind: &str,
    payload: serde_json::Value,
) -> serde_json::Value {
    raw::send(ws, json!({"type": kind, "id": "q", "payload": payload})).await;
    loop {
        let r = raw::reply(ws).await;
        if r["type"] != "quotes.update" {
            assert_eq!(r["type"], format!("{kind}.response"));
            assert_eq!(r["id"], "q");
            return r["payload"].clone();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_come_over_the_websocket_as_post_quotes_has_them() {
    let s = TestServer::frozen().await;
    let mut ws = raw::connect(&s.base).await;
    let r = quotes_request(
        &mut ws,
        "quotes.subscribe",
        json!({"symbols": ["aapl", "NASDAQ:MSFT"], "fast_symbols": ["BTCUSD", "AAPL"]}),
    )
    .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["symbols"], json!(["MSFT"]));
    assert_eq!(
        r["fast_symbols"],
        json!(["AAPL", "BTCUSD"]),
        "fast wins for a symbol in both"
    );
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 3 {
        let q = next_quote(&mut ws).await;
        seen.insert(q["n"].as_str().unwrap().to_string(), q);
    }
    let rest: serde_json::Value = reqwest::Client::new()
        .post(s.url("/api/v1/datafeed/quotes"))
        .json(&json!({"symbols": ["AAPL", "BTCUSD", "MSFT"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for q in rest.as_array().unwrap() {
        assert_eq!(
            &seen[q["n"].as_str().unwrap()],
            q,
            "the same values as POST /quotes"
        );
    }
    // The clock stands still: nothing changes, so nothing more comes; the
    // next frame is the reply to this.
    let r = quotes_request(
        &mut ws,
        "quotes.unsubscribe",
        json!({"symbols": ["MSFT", "IBM"]}),
    )
    .await;
    assert_eq!(r["status"], "ok");
    assert_eq!(r["symbols"], json!(["MSFT"]));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_quotes_move_every_interval_and_slow_ones_once_a_second() {
    // Ten market minutes a second, a broadcast every 100 ms: a crypto
    // quote changes at every tick.
    let start = FROZEN_NOW_S.to_string();
    let s = TestServer::start(&[
        "--clock-start",
        &start,
        "--clock-speed",
        "600",
        "--broadcast-interval-ms",
        "100",
    ])
    .await;
    let mut ws = WsClient::connect(&s.base).await.unwrap();
    let r = ws.subscribe_quotes(&["ETHUSD"], &["BTCUSD"]).await.unwrap();
    assert_eq!(r.status, SubscriptionStatus::Ok, "{}", r.message);
    // Between two slow (ETHUSD) updates come several fast ones: slow
    // symbols are looked at every tenth tick, fast ones at every tick.
    let mut fast_between = Vec::new();
    let mut fast = 0;
    let mut slow_seen = 0;
    let mut last_fast = None;
    while slow_seen < 3 {
        let q = timeout(WAIT, ws.next_quote())
            .await
            .expect("quotes")
            .expect("open");
        match q.n.as_str() {
            "BTCUSD" => {
                assert_ne!(last_fast, q.v.lp, "an update is a change");
                last_fast = q.v.lp;
                fast += 1;
            }
            "ETHUSD" => {
                slow_seen += 1;
                fast_between.push(fast);
                fast = 0;
            }
            other => panic!("a quote for {other}, which nobody asked for"),
        }
    }
    assert!(
        fast_between[1..].iter().all(|&n| n >= 3),
        "fast updates between slow ones: {fast_between:?}"
    );
    // Unsubscribed, BTCUSD stops.
    let r = ws.unsubscribe_quotes(&["BTCUSD"]).await.unwrap();
    assert_eq!(r.fast_symbols, vec!["BTCUSD".to_string()]);
    let mut after = 0;
    while after < 2 {
        let q = timeout(WAIT, ws.next_quote())
            .await
            .expect("quotes")
            .expect("open");
        // Quotes queued before the reply may still be read first.
        if q.n == "ETHUSD" {
            after += 1;
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_quotes_request_changes_nothing_and_says_why() {
    let s = TestServer::start(&["--max-subscriptions", "3", "--clock-speed", "0"]).await;
    let mut ws = raw::connect(&s.base).await;
    let r = quotes_request(&mut ws, "quotes.subscribe", json!({})).await;
    assert_eq!(r["status"], "error");
    assert!(r["message"]
        .as_str()
        .unwrap()
        .contains("at least one symbol"));
    let r = quotes_request(
        &mut ws,
        "quotes.subscribe",
        json!({"symbols": ["AAPL", "NOPE"]}),
    )
    .await;
    assert_eq!(r["status"], "error");
    assert!(r["message"].as_str().unwrap().contains("NOPE"), "{r}");
    assert_eq!(r["symbols"], json!([]));
    // Nothing of that request was followed: AAPL counts as new below.
    raw::send(
        &mut ws,
        json!({"type": "bars.subscribe", "payload": {"symbol": "MSFT", "resolution": "D"}}),
    )
    .await;
    assert_eq!(raw::reply(&mut ws).await["payload"]["status"], "ok");
    let r = quotes_request(
        &mut ws,
        "quotes.subscribe",
        json!({"symbols": ["AAPL", "GOOGL", "AMZN"]}),
    )
    .await;
    assert_eq!(r["status"], "error", "1 bar topic + 3 quote symbols > 3");
    assert!(r["message"].as_str().unwrap().contains("at most 3"));
    let r = quotes_request(
        &mut ws,
        "quotes.subscribe",
        json!({"symbols": ["AAPL", "GOOGL"]}),
    )
    .await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(next_quote(&mut ws).await["s"], "ok");
    // A frame that breaks the schema closes as for bars.
    raw::send(
        &mut ws,
        json!({"type": "quotes.subscribe", "payload": {"symbols": "AAPL"}}),
    )
    .await;
    let (code, reason) = raw::expect_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (1003, "Could not validate payload")
    );
    s.stop().await;
}
