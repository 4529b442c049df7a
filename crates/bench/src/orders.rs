//! The paper broker served from a SQLite store: `placeOrder` answered
//! once durable, paced at 1,000 orders/s (latency) and as fast as 32
//! connections go (throughput); and an ingested trade that fills a resting
//! order to the `executions.update` on the owner's WebSocket.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::server::{Process, CLOCK_START};
use crate::stats::{self, int, Percentiles};
use crate::store::{ingest_server_with, Scratch, SENDERS, TOKEN};
use crate::{http, Options};

/// Connections placing orders back to back in the throughput run.
const CONNECTIONS: usize = 32;
/// The paced run's rate.
const PACED_RATE: f64 = 1_000.0;
/// Fills measured by the latency probe per run.
const PROBES: usize = 200;

async fn broker_server(o: &Options, scratch: &Scratch, name: &str) -> Result<Process, String> {
    // Enough cash that no order is refused for buying power.
    let cash = [("--paper-cash", "1000000000000".to_string())];
    ingest_server_with(o, scratch, name, &cash).await
}

fn post(path: &str, body: &str, headers: &str) -> Vec<u8> {
    http::request_with("POST", path, body, headers)
}

fn trade(symbol: &str, time_ms: i64, price: &str) -> Vec<u8> {
    let body = format!(
        "{{\"trades\":[{{\"symbol\":\"{symbol}\",\"time\":{time_ms},\"price\":{price},\"size\":0.001}}]}}"
    );
    post(
        "/api/v1/ingest/trades",
        &body,
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
}

/// A resting limit buy of `symbol` well below its market.
fn resting_order(symbol: &str, n: u64) -> Vec<u8> {
    let price = 30_000.0 + (n % 4_000) as f64 * 0.25;
    let body = format!(
        "{{\"symbol\":\"{symbol}\",\"type\":1,\"side\":1,\"qty\":0.001,\"limitPrice\":{price}}}"
    );
    post("/api/v1/broker/orders", &body, "")
}

/// Gives every ingest symbol a market at 40,000.
async fn open_markets(address: &str) -> Result<(), String> {
    let mut conn = http::connect(address).await.map_err(|e| e.to_string())?;
    let t = (CLOCK_START - 3_600) * 1000;
    for i in 0..=SENDERS {
        let symbol = if i == SENDERS {
            "LATENCY".to_string()
        } else {
            format!("INGEST{i}")
        };
        http::exchange(&mut conn, &trade(&symbol, t, "40000"))
            .await
            .map_err(|e| format!("ingest: {e}"))?;
    }
    Ok(())
}

/// Orders placed over `connections`, paced to `rate` in all or back to
/// back, for `duration`: how many, and each one's latency (µs).
async fn place_load(
    address: &str,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<(u64, Vec<u32>, Duration), String> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let mut conn = http::connect(address).await.map_err(|e| e.to_string())?;
        let symbol = format!("INGEST{}", i % SENDERS);
        tasks.push(tokio::spawn(async move {
            let mut pace = rate.map(|r| {
                let every = Duration::from_secs_f64(connections as f64 / r);
                let offset = every.mul_f64(i as f64 / connections as f64);
                tokio::time::interval_at(tokio::time::Instant::now() + offset, every)
            });
            let mut latencies = Vec::new();
            let mut n = i as u64 * 1_000_000;
            while Instant::now() < deadline {
                if let Some(pace) = &mut pace {
                    pace.tick().await;
                }
                let t = Instant::now();
                http::exchange(&mut conn, &resting_order(&symbol, n))
                    .await
                    .map_err(|e| format!("placeOrder: {e}"))?;
                latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                n += 1;
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| e.to_string())??);
    }
    Ok((all.len() as u64, all, start.elapsed()))
}

/// `PROBES` times: a resting order, then a trade through it; the time from
/// sending the trade to its `executions.update` on the owner's socket.
async fn fill_latency(address: &str) -> Result<Vec<u32>, String> {
    let url = format!("ws://{address}/api/v1/ws");
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    ws.send(Message::Text(
        r#"{"type":"executions.subscribe","payload":{}}"#.into(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    next_of(&mut ws, "executions.subscribe.response").await?;
    let mut conn = http::connect(address).await.map_err(|e| e.to_string())?;
    let mut t_ms = (CLOCK_START - 1_800) * 1000;
    let mut latencies = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        // The market back above the order, the order, then the trade
        // that fills it.
        t_ms += 10;
        http::exchange(&mut conn, &trade("LATENCY", t_ms, "40000"))
            .await
            .map_err(|e| format!("ingest: {e}"))?;
        let body = r#"{"symbol":"LATENCY","type":1,"side":1,"qty":0.001,"limitPrice":35000}"#;
        http::exchange(&mut conn, &post("/api/v1/broker/orders", body, ""))
            .await
            .map_err(|e| format!("placeOrder: {e}"))?;
        t_ms += 10;
        let sent = Instant::now();
        http::exchange(&mut conn, &trade("LATENCY", t_ms, "34999.75"))
            .await
            .map_err(|e| format!("ingest: {e}"))?;
        next_of(&mut ws, "executions.update").await?;
        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }
    Ok(latencies)
}

async fn next_of(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    kind: &str,
) -> Result<(), String> {
    let wanted = format!("\"type\":\"{kind}\"");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .map_err(|_| format!("no {kind} within 10 s"))?;
        match frame {
            Some(Ok(Message::Text(t))) if t.contains(&wanted) => return Ok(()),
            Some(Ok(_)) => continue,
            other => return Err(format!("the socket ended: {other:?}")),
        }
    }
}

pub async fn run_all(o: &Options) -> bool {
    match run(o).await {
        Ok(()) => true,
        Err(e) => {
            eprintln!("broker served: {e}");
            false
        }
    }
}

async fn run(o: &Options) -> Result<(), String> {
    let runs = o.runs.max(1);
    let duration = o.duration;
    println!(
        "\nBroker served from a SQLite store (each placeOrder answered once durable); \
         {runs} run(s) of {:.0} s, medians\n",
        duration.as_secs_f64()
    );
    stats::header(
        &[
            "scenario",
            "orders/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "CPU s / 1k orders",
        ],
        1,
    );
    let scratch = Scratch::new()?;
    let (mut paced, mut flat, mut fills) = (Vec::new(), Vec::new(), Vec::new());
    let (mut paced_rate, mut flat_rate, mut flat_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let server = broker_server(o, &scratch, &format!("orders{run}")).await?;
        open_markets(&server.address).await?;
        let (n, mut lat, elapsed) =
            place_load(&server.address, 8, duration, Some(PACED_RATE)).await?;
        paced_rate.push(n as f64 / elapsed.as_secs_f64());
        paced.push(Percentiles::of(&mut lat));
        let cpu = server.cpu_seconds();
        let (n, mut lat, elapsed) =
            place_load(&server.address, CONNECTIONS, duration, None).await?;
        flat_rate.push(n as f64 / elapsed.as_secs_f64());
        flat_cpu.push((server.cpu_seconds() - cpu) / (n as f64 / 1_000.0));
        flat.push(Percentiles::of(&mut lat));
        let mut lat = fill_latency(&server.address).await?;
        fills.push(Percentiles::of(&mut lat));
        server.stop().await;
    }
    let row = |name: &str, rate: String, p: Option<Percentiles>, cpu: String| {
        let [p50, p99, p999] = Percentiles::cells(p);
        stats::row(&[name.to_string(), rate, p50, p99, p999, cpu]);
    };
    row(
        "placeOrder paced at 1,000/s (8 connections)",
        int(stats::median(paced_rate)),
        Percentiles::median_of(&paced),
        "-".into(),
    );
    row(
        &format!("placeOrder back to back ({CONNECTIONS} connections)"),
        int(stats::median(flat_rate)),
        Percentiles::median_of(&flat),
        format!("{:.3}", stats::median(flat_cpu)),
    );
    row(
        "ingested trade -> executions.update (one fill)",
        "-".into(),
        Percentiles::median_of(&fills),
        "-".into(),
    );
    Ok(())
}
