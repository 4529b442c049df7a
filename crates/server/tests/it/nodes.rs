//! Several nodes, one market: real `trading-server` processes sharing one
//! PostgreSQL database (each test its own) and one NATS JetStream stream
//! (each test its own; a test that stops NATS runs a NATS of its own).
//!
//! What a user of N nodes behind a load balancer relies on: a trade sent
//! to any node reaches every node's subscribers with the same payload and
//! lands in the same history; a node killed or a NATS restarted loses no
//! acknowledged trade and applies none twice; a node that comes back
//! catches up before it says it is ready.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::nats::{self, Throwaway};
use crate::common::process::ServerProcess;
use crate::common::store::{
    crypto_24x7, frozen_store_args, register_symbols, Engine, Postgres, TempDir, TOKEN,
};
use crate::common::ws as raw;
use crate::common::FROZEN_NOW_S;
use serde_json::{json, Value};

/// The market's symbols: 24x7, with minute bars.
fn symbols() -> String {
    crypto_24x7(&["NODE", "PAIR"])
}

const MINUTE: i64 = 60_000;

/// (symbol, time, price, size).
type Trade<'a> = (&'a str, i64, f64, f64);
/// Long enough for anything that is going to happen on this machine.
const WAIT: Duration = Duration::from_secs(30);

/// An hour before the frozen clock: every test trade is in the past.
fn t0() -> i64 {
    FROZEN_NOW_S * 1000 - 60 * MINUTE
}

/// One market: a database with the symbols, a stream, the NATS it is on.
struct Market {
    /// Holds the database and the stream until the test ends.
    _dir: TempDir,
    store: String,
    nats: String,
    stream: String,
}

impl Market {
    fn new(label: &str, nats: &str) -> Market {
        let dir = TempDir::new(label);
        let store = Postgres.fresh(&dir);
        register_symbols(&dir, &store, &symbols());
        let stream = nats::stream(&dir, nats, label);
        Market {
            _dir: dir,
            store,
            nats: nats.to_string(),
            stream,
        }
    }

    /// A node of this market, ready (caught up with the bus).
    async fn node(&self) -> ServerProcess {
        let node = self.start().await;
        ready(&node.base).await;
        node
    }

    /// A node of this market, as soon as it listens.
    async fn start(&self) -> ServerProcess {
        let mut args = frozen_store_args(&self.store);
        args.extend(["--bus", &self.nats, "--bus-stream", &self.stream].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServerProcess::start(&args).await
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("a client")
}

/// Waits until `base` answers 200 on the readiness endpoint.
async fn ready(base: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match http().get(format!("{base}/api/v1/ready")).send().await {
            Ok(r) if r.status() == 200 => return,
            Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} not ready within {WAIT:?}: {last}");
}

/// Sends trades (symbol, time, price, size) to `base` with `key`: the
/// status and body.
async fn send(base: &str, key: &str, trades: &[Trade<'_>]) -> (u16, Value) {
    let body = json!({"trades": trades.iter().map(|(s, t, p, z)| json!({
        "symbol": s, "time": t, "price": p, "size": z
    })).collect::<Vec<_>>()});
    match http()
        .post(format!("{base}/api/v1/ingest/trades"))
        .bearer_auth(TOKEN)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        // A node killed mid-request: nothing acknowledged.
        Err(_) => (0, Value::Null),
    }
}

/// Sends until a node acknowledges, moving to the next node after a
/// failure: a client behind a load balancer retrying with its key.
/// How many tries it took.
async fn send_until_acknowledged(bases: &[String], key: &str, trades: &[Trade<'_>]) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    loop {
        let (status, body) = send(&bases[i % bases.len()], key, trades).await;
        if status == 200 {
            assert_eq!(body["applied"], trades.len(), "{body}");
            return i + 1;
        }
        assert!(
            status == 0 || status == 503,
            "only an unavailable node may refuse a valid trade: {status} {body}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} never acknowledged: {body}"
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `getBars` as the node answers it (the raw JSON).
async fn bars(base: &str, symbol: &str, res: &str) -> Value {
    let from = t0() / 1000 - 40 * 86_400;
    let to = FROZEN_NOW_S + 86_400;
    let url = format!(
        "{base}/api/v1/datafeed/bars?symbol={symbol}&resolution={res}&from_time={from}&to_time={to}"
    );
    let r = http().get(url).send().await.expect("getBars");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

/// Every resolution's history of both symbols, on one node.
async fn history(base: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for symbol in ["NODE", "PAIR"] {
        for res in ["1", "5", "60", "D", "W"] {
            all.push(bars(base, symbol, res).await);
        }
    }
    all
}

async fn subscribe(base: &str, symbol: &str, res: &str) -> raw::Raw {
    let mut ws = raw::connect(base).await;
    let reply = tokio::time::timeout(WAIT, raw::subscribe(&mut ws, symbol, res))
        .await
        .expect("a subscribe reply");
    assert_eq!(reply["status"], "ok", "{reply}");
    ws
}

/// Updates until one for the bar at `time` with `volume`; all of them.
async fn updates_until(ws: &mut raw::Raw, time: i64, volume: f64) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let u = raw::update(ws).await;
        let done = u["time"] == time && u["volume"].as_f64() == Some(volume);
        seen.push(u);
        if done {
            return seen;
        }
    }
}

/// The minute bars in a `getBars` answer, as (time, volume).
fn minutes(answer: &Value) -> Vec<(i64, f64)> {
    answer["bars"]
        .as_array()
        .map(|bars| {
            bars.iter()
                .map(|b| (b["time"].as_i64().unwrap(), b["volume"].as_f64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trade_on_one_node_reaches_every_node_with_the_same_payload_and_history() {
    let market = Market::new("nodes-fanout", &nats::shared_url());
    let nodes = [
        market.node().await,
        market.node().await,
        market.node().await,
    ];
    let mut subscribers = Vec::new();
    for node in &nodes {
        subscribers.push(subscribe(&node.base, "NODE", "1").await);
    }
    let t = t0();
    let steps: [(&str, Vec<Trade>); 3] = [
        ("fanout-1", vec![("NODE", t + 1_000, 100.0, 1.0)]),
        ("fanout-2", vec![("NODE", t + 30_000, 101.5, 2.0)]),
        // The next minute: the first bar closes.
        ("fanout-3", vec![("NODE", t + MINUTE + 1_000, 99.0, 0.5)]),
    ];
    for (key, trades) in &steps {
        let (status, body) = send(&nodes[0].base, key, trades).await;
        assert_eq!(status, 200, "{body}");
        // Every node's subscriber gets the same update (but for the time
        // its own node sent it).
        let mut seen = Vec::new();
        for ws in &mut subscribers {
            let mut u = raw::update(ws).await;
            assert!(u["published_us"].as_i64().is_some(), "{u}");
            u.as_object_mut().unwrap().remove("published_us");
            seen.push(u);
        }
        assert!(seen.iter().all(|u| *u == seen[0]), "{seen:#?}");
        let (_, time, price, _) = trades[0];
        assert_eq!(seen[0]["close"], price, "{}", seen[0]);
        assert_eq!(seen[0]["time"], (time - time % MINUTE), "{}", seen[0]);
    }
    // The closed bar, identical in REST on every node.
    let answers = [
        bars(&nodes[0].base, "NODE", "1").await,
        bars(&nodes[1].base, "NODE", "1").await,
        bars(&nodes[2].base, "NODE", "1").await,
    ];
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
    let closed = &answers[0]["bars"][0];
    let ohlcv: Vec<f64> = ["open", "high", "low", "close", "volume"]
        .iter()
        .map(|k| closed[k].as_f64().unwrap())
        .collect();
    assert_eq!(closed["time"], t, "{}", answers[0]);
    assert_eq!(ohlcv, [100.0, 101.5, 100.0, 101.5, 3.0], "{}", answers[0]);
    for node in &nodes {
        let health: Value = http()
            .get(format!("{}/api/v1/health", node.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["bus"]["status"], "ok", "{health}");
        assert_eq!(health["bus"]["applied"], 3, "{health}");
        assert_eq!(health["bus"]["lag"], 0, "{health}");
        assert_eq!(health["store"]["status"], "ok", "{health}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_during_ingest_catches_up_and_its_subscribers_see_no_gap() {
    let market = Market::new("nodes-kill", &nats::shared_url());
    let first = market.node().await;
    let mut second = Some(market.node().await);
    let third = market.node().await;
    let mut watcher = subscribe(&third.base, "NODE", "1").await;
    let t = t0();
    // Three trades a minute, each of size 1, one request each, sent to the
    // first and second node in turn; the second is killed at trade 30 and
    // started again at trade 60.
    let trade = |i: i64| ("NODE", t + i * 20_000 + 1_000, 100.0 + i as f64, 1.0);
    let pending = ("NODE", t + 1_500, 50.0, 7.0);
    let total = 90;
    for i in 0..total {
        if i == 30 {
            // Killed with a request of its own in flight.
            let killed = second.take().unwrap();
            let base = killed.base.clone();
            let in_flight =
                tokio::spawn(async move { send(&base, "kill-pending", &[pending]).await });
            tokio::time::sleep(Duration::from_millis(5)).await;
            killed.kill_9().await;
            let (status, _) = in_flight.await.unwrap();
            assert!(matches!(status, 0 | 200), "{status}");
        }
        if i == 60 {
            // It catches up before it says it is ready (`node` waits).
            second = Some(market.node().await);
            // The client whose request died with the node retries it
            // elsewhere: applied once, whether or not it had been.
            send_until_acknowledged(
                std::slice::from_ref(&first.base),
                "kill-pending",
                &[pending],
            )
            .await;
        }
        let mut bases = vec![first.base.clone()];
        bases.extend(second.as_ref().map(|s| s.base.clone()));
        if i % 2 == 1 {
            bases.reverse();
        }
        send_until_acknowledged(&bases, &format!("kill-{i}"), &[trade(i)]).await;
    }
    let second = second.unwrap();
    // The subscriber on the third node saw every minute close, in order.
    let last_minute = t + (total / 3 - 1) * MINUTE;
    let seen = updates_until(&mut watcher, last_minute, 3.0).await;
    let mut finals: Vec<i64> = Vec::new();
    for u in &seen {
        let time = u["time"].as_i64().unwrap();
        if finals.last() != Some(&time) {
            finals.push(time);
        }
    }
    for pair in finals.windows(2) {
        assert_eq!(pair[1] - pair[0], MINUTE, "a gap: {finals:?}");
    }
    // A subscriber of the restarted node gets its live bars too.
    let mut late = subscribe(&second.base, "NODE", "1").await;
    send_until_acknowledged(
        std::slice::from_ref(&first.base),
        "kill-last",
        &[("NODE", last_minute + MINUTE + 1_000, 1.0, 1.0)],
    )
    .await;
    updates_until(&mut late, last_minute + MINUTE, 1.0).await;
    // Identical history everywhere, every trade once.
    let histories = [
        history(&first.base).await,
        history(&second.base).await,
        history(&third.base).await,
    ];
    assert!(histories.iter().all(|h| *h == histories[0]));
    let node_minutes = minutes(&histories[0][0]);
    assert_eq!(
        node_minutes.len(),
        (total / 3 + 1) as usize,
        "{node_minutes:?}"
    );
    for (k, (time, volume)) in node_minutes.iter().enumerate().take((total / 3) as usize) {
        assert_eq!(*time, t + k as i64 * MINUTE);
        let expected = if k == 0 { 10.0 } else { 3.0 };
        assert_eq!(*volume, expected, "minute {k}: {node_minutes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_during_ingest_loses_no_acknowledged_trade() {
    let dir = TempDir::new("nodes-nats");
    let mut server = Throwaway::start(&dir);
    let market = Market::new("nodes-nats", &server.url());
    let nodes = [market.node().await, market.node().await];
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let t = t0();
    let total = 150;
    let acked = Arc::new(AtomicUsize::new(0));
    let feeder = tokio::spawn({
        let (bases, acked) = (bases.clone(), Arc::clone(&acked));
        async move {
            for i in 0..total {
                let trade = ("PAIR", t + i * 20_000 + 1_000, 200.0 + i as f64, 1.0);
                send_until_acknowledged(&bases, &format!("nats-{i}"), &[trade]).await;
                acked.fetch_add(1, Ordering::Relaxed);
                // A feed's pace: the trades still coming when NATS stops.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    // Stop NATS while the feeder runs, and start it again.
    while acked.load(Ordering::Relaxed) < 30 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| server.stop());
    // While it is down, every node says it is not ready, and why.
    let deadline = tokio::time::Instant::now() + WAIT;
    for base in &bases {
        loop {
            let r = http()
                .get(format!("{base}/api/v1/ready"))
                .send()
                .await
                .unwrap();
            if r.status() == 503 {
                let body: Value = r.json().await.unwrap();
                assert!(
                    body["message"].as_str().unwrap_or("").contains("bus"),
                    "{body}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{base} still ready without NATS"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A trade sent now is refused, naming the bus, and never applied (it
    // is not retried; the history below has no NODE bar). The feeder's
    // own requests may be refused too, or held by the client until NATS
    // is back and then acknowledged: either keeps every acknowledged
    // trade, which is what the end of the test checks.
    let (status, body) = send(&bases[1], "nats-refused", &[("NODE", t + 1_000, 1.0, 1.0)]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("bus"),
        "{body}"
    );
    // A node started while NATS is down serves history, and says it is
    // not ready.
    let late = market.start().await;
    let r = http()
        .get(format!("{}/api/v1/ready", late.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    bars(&late.base, "PAIR", "1").await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    tokio::task::block_in_place(|| server.resume());
    tokio::time::timeout(Duration::from_secs(120), feeder)
        .await
        .expect("every trade acknowledged after NATS came back")
        .unwrap();
    for base in &bases {
        ready(base).await;
    }
    ready(&late.base).await;
    // Each trade applied exactly once, on every node alike.
    let a = history(&bases[0]).await;
    assert_eq!(a, history(&bases[1]).await);
    assert_eq!(a, history(&late.base).await);
    assert!(
        minutes(&a[0]).is_empty(),
        "the refused trade was applied: {}",
        a[0]
    );
    let pair_minutes = minutes(&a[5]);
    assert_eq!(pair_minutes.len(), (total / 3) as usize, "{pair_minutes:?}");
    assert!(
        pair_minutes.iter().all(|(_, v)| *v == 3.0),
        "{pair_minutes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_spread_over_three_nodes_give_the_history_of_one_node() {
    let url = nats::shared_url();
    let spread = Market::new("nodes-spread", &url);
    let nodes = [
        spread.node().await,
        spread.node().await,
        spread.node().await,
    ];
    // Distinct times, so the order they are applied in does not matter to
    // any open or close.
    let t = t0();
    let trades: Vec<Trade> = (0..120)
        .map(|i: i64| {
            let symbol = if i % 3 == 0 { "PAIR" } else { "NODE" };
            let price = 100.0 + ((i * 37) % 23) as f64 / 4.0;
            (
                symbol,
                t + i * 7_000 + 500,
                price,
                0.25 * (1 + i % 4) as f64,
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        let base = node.base.clone();
        let mine: Vec<_> = trades
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 == k)
            .map(|(i, t)| (i, *t))
            .collect();
        tasks.push(tokio::spawn(async move {
            for (i, trade) in mine {
                let (status, body) = send(&base, &format!("spread-{i}"), &[trade]).await;
                assert_eq!(status, 200, "{body}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // The same trades on one node alone, without a bus.
    let one = TempDir::new("nodes-one");
    let store = Postgres.fresh(&one);
    register_symbols(&one, &store, &symbols());
    let args = frozen_store_args(&store);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let alone = ServerProcess::start(&args).await;
    for (i, trade) in trades.iter().enumerate() {
        let (status, body) = send(&alone.base, &format!("one-{i}"), &[*trade]).await;
        assert_eq!(status, 200, "{body}");
    }
    let expected = history(&alone.base).await;
    assert!(!minutes(&expected[0]).is_empty());
    for node in &nodes {
        assert_eq!(history(&node.base).await, expected, "{}", node.base);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_created_anew_is_applied_from_its_start() {
    let url = nats::shared_url();
    let market = Market::new("nodes-anew", &url);
    let nodes = [market.node().await, market.node().await];
    let t = t0();
    let first = ("NODE", t + 1_000, 100.0, 1.0);
    send_until_acknowledged(std::slice::from_ref(&nodes[0].base), "anew-1", &[first]).await;
    // An operator deletes the stream; the nodes create it again, and its
    // entries start from 1 while the store has applied entry 1 of the old
    // one. The new entries must still be applied, once.
    tokio::task::block_in_place(|| nats::delete_stream(&url, &market.stream));
    let second = ("NODE", t + 2_000, 101.0, 2.0);
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    send_until_acknowledged(&bases, "anew-2", &[second]).await;
    for node in &nodes {
        ready(&node.base).await;
    }
    let expected = [(t, 3.0)];
    for node in &nodes {
        let answer = bars(&node.base, "NODE", "1").await;
        assert_eq!(minutes(&answer), expected, "{answer}");
    }
}

/// One stream per market: a node whose stream holds another market's
/// entries, or whose store follows another stream, refuses to start and
/// says which; the market that owns the stream goes on undisturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_and_a_store_of_two_markets_cannot_be_combined() {
    let url = nats::shared_url();
    let ours = Market::new("nodes-owner-a", &url);
    let node = ours.node().await;
    let trade = ("NODE", t0() + 1_000, 100.0, 1.0);
    send_until_acknowledged(std::slice::from_ref(&node.base), "owner-1", &[trade]).await;

    // Another market's fresh database, started on our stream's name (as
    // the default TRADING_INGEST would for everyone).
    let theirs = Market::new("nodes-owner-b", &url);
    let refused = start_refused(&theirs.store, &url, &ours.stream).await;
    assert!(
        refused.contains(&format!("the stream {} on", ours.stream))
            && refused.contains("holds entries of another market"),
        "{refused}"
    );
    // Once a store follows a stream, it follows no other.
    let refused = start_refused(&ours.store, &url, &theirs.stream).await;
    assert!(
        refused.contains(&format!("belongs to the stream {}", ours.stream))
            && refused.contains(&format!("--bus-stream {}", ours.stream)),
        "{refused}"
    );
    // Nothing of theirs entered our history; our node still serves.
    ready(&node.base).await;
    let answer = bars(&node.base, "NODE", "1").await;
    assert_eq!(minutes(&answer), [(t0(), 1.0)], "{answer}");
    // Their own stream is theirs to start.
    let their_node = theirs.node().await;
    assert_eq!(minutes(&bars(&their_node.base, "NODE", "1").await), []);
}

/// Runs a node that should refuse to start: what it said.
async fn start_refused(store: &str, nats: &str, stream: &str) -> String {
    let mut args = frozen_store_args(store);
    args.extend(
        [
            "--bus",
            nats,
            "--bus-stream",
            stream,
            "--bind",
            "127.0.0.1:0",
        ]
        .map(String::from),
    );
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::common::store::cli(&args)
    })
    .await
    .unwrap();
    assert!(!run.ok, "the node started: {run:?}");
    run.stderr
}

/// Two markets that claimed one empty stream at once: each node applies
/// only its own market's entries; the first entry of the other market
/// stops it (unready, saying why) before anything of it is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_never_applies_another_markets_entry() {
    let url = nats::shared_url();
    let ours = Market::new("nodes-foreign-a", &url);
    let theirs = Market::new("nodes-foreign-b", &url);
    let node = ours.node().await;
    // Their node on our (still empty) stream: nothing tells them apart yet.
    let mut args = frozen_store_args(&theirs.store);
    args.extend(["--bus", &url, "--bus-stream", &ours.stream].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let intruder = ServerProcess::start(&args).await;
    ready(&intruder.base).await;
    let trade = ("NODE", t0() + 1_000, 100.0, 1.0);
    send_until_acknowledged(std::slice::from_ref(&node.base), "foreign-1", &[trade]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let reason = loop {
        let r = http()
            .get(format!("{}/api/v1/ready", intruder.base))
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            break r.text().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other market's node stayed ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(reason.contains("names another market's store"), "{reason}");
    assert_eq!(minutes(&bars(&intruder.base, "NODE", "1").await), []);
    let (status, body) = send(&intruder.base, "foreign-2", &[trade]).await;
    assert_eq!(status, 503, "{body}");
    // Said once in its log (written within moments).
    let deadline = tokio::time::Instant::now() + WAIT;
    while intruder
        .log_lines("the stream is another market's")
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refusal was not logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        intruder.log_lines("the stream is another market's").len(),
        1
    );
    // Ours applied it.
    assert_eq!(minutes(&bars(&node.base, "NODE", "1").await), [(t0(), 1.0)]);
}
