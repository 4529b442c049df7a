//! Live ingest against a store server: throughput with durable
//! acknowledgements, and the trade-to-WebSocket latency probe.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use trading_market::source::DataSource;
use trading_pro::types::SymbolInfo;
use trading_synthetic::Synthetic;

use crate::server::{self, Process, CLOCK_START};
use crate::stats::{self, int, Percentiles};
use crate::{http, Options};

use super::{register, Scratch, BATCH, PROBE_RATE, SENDERS, TOKEN};

/// Registers the ingest symbols in `store`: INGEST0.. (one per sender)
/// and LATENCY, 24x7 in UTC.
pub fn register_ingest_symbols(o: &Options, scratch: &Scratch, store: &str) -> Result<(), String> {
    let mut infos = Vec::new();
    let template = Synthetic::builtin(42)
        .catalog()
        .lookup("BTCUSD")
        .map(|s| s.info.clone())
        .ok_or("BTCUSD is in the catalog")?;
    for i in 0..=SENDERS {
        let ticker = if i == SENDERS {
            "LATENCY".to_string()
        } else {
            format!("INGEST{i}")
        };
        infos.push(SymbolInfo {
            name: ticker.clone(),
            ticker,
            volume_precision: 3,
            ..template.clone()
        });
    }
    let symbols = scratch.path("ingest-symbols.json");
    std::fs::write(
        &symbols,
        serde_json::to_string(&infos).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    register(&o.server, store, &symbols)?;
    Ok(())
}

/// A store server for ingest on the ingest symbols, a clock running from
/// CLOCK_START.
pub(super) async fn ingest_server(
    o: &Options,
    scratch: &Scratch,
    name: &str,
) -> Result<Process, String> {
    ingest_server_with(o, scratch, name, &[]).await
}

/// [`ingest_server`] with more flags.
pub async fn ingest_server_with(
    o: &Options,
    scratch: &Scratch,
    name: &str,
    extra: &[(&str, String)],
) -> Result<Process, String> {
    let store = scratch.path(&format!("{name}.db"));
    // A server before was killed: its log and the record beside it go too.
    for suffix in ["", "-wal", "-shm", "-walbase"] {
        let _ = std::fs::remove_file(scratch.path(&format!("{name}.db{suffix}")));
    }
    let store_arg = store.display().to_string();
    register_ingest_symbols(o, scratch, &store_arg)?;
    let mut flags = vec![
        ("--store", store_arg),
        ("--ingest-token", TOKEN.into()),
        ("--clock-speed", "1".into()),
    ];
    flags.extend(extra.iter().map(|(f, v)| (*f, v.clone())));
    server::trading_server(&o.server, &flags).await
}

fn trades_body(symbol: &str, first_ms: i64, seq: u64, n: usize) -> String {
    let mut body = String::with_capacity(n * 72 + 16);
    body.push_str("{\"trades\":[");
    for k in 0..n {
        if k > 0 {
            body.push(',');
        }
        let s = seq + k as u64;
        let price = 40_000.0 + (s % 2_000) as f64 * 0.25;
        let _ = write!(
            body,
            "{{\"symbol\":\"{symbol}\",\"time\":{},\"price\":{price},\"size\":0.{:03}}}",
            first_ms + k as i64,
            1 + s % 999
        );
    }
    body.push_str("]}");
    body
}

fn ingest_request(body: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/ingest/trades HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The ingest load beside the latency probe: none, the target rate, or as
/// fast as the senders go.
#[derive(Clone, Copy)]
enum Pace {
    ProbeOnly,
    Rate(f64),
    Unlimited,
}

/// What the throughput load did.
pub struct Load {
    pub trades: u64,
    pub requests: u64,
    pub latencies_us: Vec<u32>,
    pub elapsed: Duration,
    pub cpu_seconds: f64,
}

/// `SENDERS` connections (spread over `addresses` in turn), each sending
/// batches of `BATCH` trades of its own symbol, back to back or paced to
/// `rate` trades/s in all. The caller measures CPU.
pub async fn throughput(
    addresses: &[String],
    duration: Duration,
    rate: Option<f64>,
) -> Result<Load, String> {
    throughput_of(addresses, duration, rate, SENDERS, BATCH).await
}

/// [`throughput`] with `senders` connections (at most `SENDERS`: one
/// ingest symbol each) of `batch` trades per request.
pub async fn throughput_of(
    addresses: &[String],
    duration: Duration,
    rate: Option<f64>,
    senders: usize,
    batch: usize,
) -> Result<Load, String> {
    let mut conns = Vec::new();
    for i in 0..senders.min(SENDERS) {
        conns.push(
            http::connect(&addresses[i % addresses.len()])
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // Trades are a day old and a millisecond apart: far behind the clock,
    // and rolling over a minute bar every 60,000 trades.
    let first_ms = (CLOCK_START - 86_400) * 1000;
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            tokio::spawn(async move {
                let symbol = format!("INGEST{i}");
                let (mut seq, mut latencies) = (0u64, Vec::new());
                // Paced senders take turns (sender i starts i/SENDERS of an
                // interval late), as independent feeds would, instead of all
                // sending at the same instant.
                let mut pace = rate.map(|r| {
                    let every = Duration::from_secs_f64(senders as f64 * batch as f64 / r);
                    let offset = every.mul_f64(i as f64 / senders as f64);
                    tokio::time::interval_at(tokio::time::Instant::now() + offset, every)
                });
                while Instant::now() < deadline {
                    if let Some(pace) = &mut pace {
                        pace.tick().await;
                    }
                    let body = trades_body(&symbol, first_ms + seq as i64, seq, batch);
                    let t = Instant::now();
                    http::exchange(&mut conn, &ingest_request(&body))
                        .await
                        .map_err(|e| format!("ingest: {e}"))?;
                    latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    seq += batch as u64;
                }
                Ok::<_, String>((seq, latencies))
            })
        })
        .collect();
    let mut load = Load {
        trades: 0,
        requests: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        cpu_seconds: 0.0,
    };
    for t in tasks {
        let (trades, latencies) = t.await.map_err(|e| e.to_string())??;
        load.trades += trades;
        load.requests += latencies.len() as u64;
        load.latencies_us.extend(latencies);
    }
    load.elapsed = start.elapsed();
    Ok(load)
}

/// Single trades of LATENCY at [`PROBE_RATE`] per second sent to
/// `send_to`, each at a price of its own, while a WebSocket subscriber on
/// each of `watch` waits for the update showing it: for each subscriber,
/// the times from sending a request to receiving its update.
pub async fn probe(
    send_to: String,
    watch: Vec<String>,
    duration: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Vec<Vec<u32>>, String> {
    // Sent instants by price cents, read by the receivers.
    let sent: Arc<Mutex<std::collections::HashMap<u64, Instant>>> = Arc::default();
    let mut receivers = Vec::new();
    for address in &watch {
        let ws = subscriber(address).await?;
        receivers.push(tokio::spawn(receive(
            ws,
            Arc::clone(&sent),
            Arc::clone(&stop),
        )));
    }
    let mut conn = http::connect(&send_to).await.map_err(|e| e.to_string())?;
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / PROBE_RATE));
    let start = Instant::now();
    let deadline = start + duration;
    // The server's clock started at CLOCK_START a moment before this, at
    // real speed: each probe trade is at most "now" there, and later than
    // the one before, at a price no other probe has.
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        tick.tick().await;
        n += 1;
        let cents = 1_000_000 + n;
        let now_ms = CLOCK_START * 1000 + start.elapsed().as_millis() as i64;
        let body = format!(
            "{{\"trades\":[{{\"symbol\":\"LATENCY\",\"time\":{now_ms},\"price\":{}.{:02},\"size\":1}}]}}",
            cents / 100,
            cents % 100
        );
        sent.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(cents, Instant::now());
        http::exchange(&mut conn, &ingest_request(&body))
            .await
            .map_err(|e| format!("probe ingest: {e}"))?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for (receiver, address) in receivers.into_iter().zip(&watch) {
        let latencies = receiver.await.map_err(|e| e.to_string())?;
        if latencies.is_empty() {
            return Err(format!(
                "no probe trade reached the subscriber on {address} ({n} sent)"
            ));
        }
        out.push(latencies);
    }
    Ok(out)
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket on `address` following LATENCY's minute bars.
async fn subscriber(address: &str) -> Result<Ws, String> {
    let url = format!("ws://{address}/api/v1/ws");
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp)
        .await
        .map_err(|e| format!("websocket: {e}"))?;
    let subscribe = r#"{"type":"bars.subscribe","payload":{"symbol":"LATENCY","resolution":"1"}}"#;
    ws.send(Message::Text(subscribe.into()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// Reads updates until `stop`: the latency of each probe trade it sees (a
/// probe's instant stays for the other subscribers to read).
async fn receive(
    mut ws: Ws,
    sent: Arc<Mutex<std::collections::HashMap<u64, Instant>>>,
    stop: Arc<AtomicBool>,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let frame = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) | Err(_) => continue,
            Ok(Some(Err(_)) | None) => break,
        };
        let now = Instant::now();
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&frame) else {
            continue;
        };
        if v["type"] != "bars.update" {
            continue;
        }
        let Some(close) = v["payload"]["close"].as_f64() else {
            continue;
        };
        let cents = (close * 100.0).round() as u64;
        let at = sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&cents)
            .copied();
        if let Some(at) = at {
            latencies.push(now.duration_since(at).as_micros().min(u32::MAX as u128) as u32);
        }
    }
    latencies
}

pub(super) async fn ingest_tables(o: &Options, scratch: &Scratch) -> Result<(), String> {
    println!(
        "Store ingest: {SENDERS} connections x {BATCH} trades per request, every answer durable \
         (synced to disk); trade-to-WebSocket latency from {PROBE_RATE} single-trade requests/s; \
         {} run(s) of {:?}, medians\n",
        o.runs, o.duration
    );
    stats::header(
        &[
            "load",
            "trades/s",
            "requests/s",
            "request p50 ms",
            "request p99 ms",
            "server CPU ms / 100k trades",
            "trade to update p50 ms",
            "p99 ms",
            "p999 ms",
        ],
        1,
    );
    for pace in [Pace::ProbeOnly, Pace::Rate(100_000.0), Pace::Unlimited] {
        let mut rows = Vec::new();
        for run in 0..o.runs {
            let server = ingest_server(o, scratch, &format!("ingest-{run}")).await?;
            let stop = Arc::new(AtomicBool::new(false));
            let address = server.address.clone();
            let probe_task = tokio::spawn(probe(
                address.clone(),
                vec![address.clone()],
                o.duration,
                Arc::clone(&stop),
            ));
            let cpu_before = server.cpu_seconds();
            let rate = match pace {
                Pace::ProbeOnly => {
                    tokio::time::sleep(o.duration).await;
                    None
                }
                Pace::Rate(rate) => Some(Some(rate)),
                Pace::Unlimited => Some(None),
            };
            let load = match rate {
                Some(rate) => {
                    let mut load =
                        throughput(std::slice::from_ref(&address), o.duration, rate).await?;
                    load.cpu_seconds = server.cpu_seconds() - cpu_before;
                    Some(load)
                }
                None => None,
            };
            let mut latencies = probe_task.await.map_err(|e| e.to_string())??;
            rows.push((load, Percentiles::of(&mut latencies[0])));
            server.stop().await;
        }
        let probe: Vec<_> = rows.iter().map(|r| r.1).collect();
        let [p50, p99, p999] = Percentiles::cells(Percentiles::median_of(&probe));
        let loads: Vec<&Load> = rows.iter().filter_map(|r| r.0.as_ref()).collect();
        let cells = if loads.is_empty() {
            [
                "-".to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]
        } else {
            let mut request_latency: Vec<Option<Percentiles>> = Vec::new();
            for l in &loads {
                let mut samples = l.latencies_us.clone();
                request_latency.push(Percentiles::of(&mut samples));
            }
            let [r50, r99, _] = Percentiles::cells(Percentiles::median_of(&request_latency));
            [
                int(stats::median(
                    loads
                        .iter()
                        .map(|l| l.trades as f64 / l.elapsed.as_secs_f64())
                        .collect(),
                )),
                int(stats::median(
                    loads
                        .iter()
                        .map(|l| l.requests as f64 / l.elapsed.as_secs_f64())
                        .collect(),
                )),
                r50,
                r99,
                format!(
                    "{:.1}",
                    stats::median(
                        loads
                            .iter()
                            .map(|l| l.cpu_seconds * 1000.0 / (l.trades.max(1) as f64 / 100_000.0))
                            .collect()
                    )
                ),
            ]
        };
        let name = match pace {
            Pace::ProbeOnly => "probe only".to_string(),
            Pace::Rate(rate) => format!("paced at {} trades/s", int(rate)),
            Pace::Unlimited => "as fast as it goes".to_string(),
        };
        let mut row = vec![name];
        row.extend(cells);
        row.extend([p50, p99, p999]);
        stats::row(&row);
    }
    println!();
    Ok(())
}
