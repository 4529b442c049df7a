//! Abuse: what a well-behaved client sees while another misbehaves.
//!
//! A bystander polls `/api/v1/health` on a kept-alive connection, opens a
//! new connection now and then (is the server still accepting?), and
//! follows live bars over a WebSocket. Its figures are taken in a window
//! without an attack and then in one with it, on the same server; after
//! the attack ends the server's memory is read again, 30 s later.
//!
//! Attackers connect from other loopback addresses (127.0.0.2 and up; all
//! of 127/8 is loopback on Linux), as another host would, so per-address
//! limits apply to them and not to the bystander.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::server::{self, Process};
use crate::stats::{header, int, ms, percentile_ms, row};
use crate::{http, Options};

/// The server's default broadcast interval: the bystander's longest gap
/// is compared with it.
const BROADCAST_MS: u64 = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Attack {
    IdleFlood,
    Slowloris,
    ExpensiveBars,
    ExpensiveBarsNoRateLimit,
    SlowReaders,
    FragmentStorm,
}

impl Attack {
    fn label(self) -> &'static str {
        match self {
            Attack::IdleFlood => "idle flood: 12 addresses x 1,000 connections (cap 10,000)",
            Attack::Slowloris => "slowloris: 500 heads at 1 byte/s",
            Attack::ExpensiveBars => "64 connections of 240 x 5,000 getBars",
            Attack::ExpensiveBarsNoRateLimit => "the same, rate limits off",
            Attack::SlowReaders => "200 WebSockets x 100 topics never read",
            Attack::FragmentStorm => "fragment storm: 2 clients, empty continuations",
        }
    }

    fn server_flags(self) -> Vec<(&'static str, String)> {
        // The shipped defaults, which the bench's own defaults (made for
        // load from one address) loosen.
        let mut flags = vec![
            ("--rate-limit-rps", "100".to_string()),
            ("--max-connections-per-ip", "1000".to_string()),
            ("--max-inflight-per-ip", "4".to_string()),
            ("--clock-speed", "60".to_string()),
            ("--broadcast-interval-ms", BROADCAST_MS.to_string()),
        ];
        match self {
            Attack::IdleFlood => flags.push(("--max-connections", "10000".to_string())),
            Attack::ExpensiveBarsNoRateLimit => flags.push(("--rate-limit-rps", "0".to_string())),
            _ => {}
        }
        flags
    }
}

const ATTACKS: [Attack; 6] = [
    Attack::IdleFlood,
    Attack::Slowloris,
    Attack::ExpensiveBars,
    Attack::ExpensiveBarsNoRateLimit,
    Attack::SlowReaders,
    Attack::FragmentStorm,
];

/// What the bystander saw in one window.
#[derive(Default)]
struct Seen {
    health_us: Vec<u32>,
    health_errors: u64,
    probes_ok: u64,
    probes_failed: u64,
    longest_gap_ms: f64,
    updates: u64,
}

/// The bystander's record, read and reset per window.
#[derive(Default)]
struct Record {
    health_us: Mutex<Vec<u32>>,
    health_errors: AtomicU64,
    probes_ok: AtomicU64,
    probes_failed: AtomicU64,
    updates: Mutex<Vec<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Record {
    fn reset(&self) {
        lock(&self.health_us).clear();
        self.health_errors.store(0, Ordering::Relaxed);
        self.probes_ok.store(0, Ordering::Relaxed);
        self.probes_failed.store(0, Ordering::Relaxed);
        lock(&self.updates).clear();
    }

    /// The window that started at `from` and ends now.
    fn take(&self, from: Instant) -> Seen {
        let mut times: Vec<Instant> = std::mem::take(&mut *lock(&self.updates));
        times.push(Instant::now());
        let mut last = from;
        let mut longest = Duration::ZERO;
        for t in &times {
            longest = longest.max(t.saturating_duration_since(last));
            last = last.max(*t);
        }
        Seen {
            health_us: std::mem::take(&mut *lock(&self.health_us)),
            health_errors: self.health_errors.swap(0, Ordering::Relaxed),
            probes_ok: self.probes_ok.swap(0, Ordering::Relaxed),
            probes_failed: self.probes_failed.swap(0, Ordering::Relaxed),
            longest_gap_ms: longest.as_secs_f64() * 1000.0,
            updates: times.len() as u64 - 1,
        }
    }
}

/// Starts the bystander's three tasks.
fn bystander(address: &str, record: Arc<Record>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    let (a, r) = (address.to_string(), Arc::clone(&record));
    tasks.push(tokio::spawn(async move {
        let request = http::request("GET", "/api/v1/health", "");
        let mut conn = None;
        loop {
            if conn.is_none() {
                conn = http::connect(&a).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                let t = Instant::now();
                match http::exchange(c, &request).await {
                    Ok(_) => lock(&r.health_us).push(t.elapsed().as_micros() as u32),
                    Err(_) => {
                        r.health_errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }));
    let (a, r) = (address.to_string(), Arc::clone(&record));
    tasks.push(tokio::spawn(async move {
        loop {
            let ok = tokio::time::timeout(Duration::from_secs(2), http::get(&a, "/api/v1/health"))
                .await
                .is_ok_and(|r| r.is_ok());
            let counter = if ok { &r.probes_ok } else { &r.probes_failed };
            counter.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }));
    let (a, r) = (address.to_string(), record);
    tasks.push(tokio::spawn(async move {
        loop {
            let url = format!("ws://{a}/api/v1/ws");
            let connected = match TcpStream::connect(&a).await {
                Ok(tcp) => tokio_tungstenite::client_async(url, tcp).await.ok(),
                Err(_) => None,
            };
            let Some((mut ws, _)) = connected else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let sub = r#"{"type":"bars.subscribe","payload":{"symbol":"BTCUSD","resolution":"1"}}"#;
            if ws.send(Message::Text(sub.into())).await.is_err() {
                continue;
            }
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    if t.contains("\"bars.update\"") {
                        lock(&r.updates).push(Instant::now());
                    }
                }
            }
        }
    }));
    tasks
}

async fn connect_from(
    source: [u8; 4],
    to: SocketAddr,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n)?;
    }
    socket.connect(to).await
}

/// The attack's tasks; aborting them (and dropping what they hold) ends it.
fn attack(kind: Attack, to: SocketAddr, stop: Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    match kind {
        Attack::IdleFlood => {
            for ip in 0..12u8 {
                let stop = Arc::clone(&stop);
                tasks.push(tokio::spawn(async move {
                    let mut held = Vec::new();
                    while held.len() < 1000 && !stop.load(Ordering::Relaxed) {
                        match connect_from([127, 0, 10, ip + 1], to, None).await {
                            Ok(tcp) => held.push(tcp),
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }));
            }
        }
        Attack::Slowloris => {
            for i in 0..500u32 {
                let stop = Arc::clone(&stop);
                tasks.push(tokio::spawn(async move {
                    let source = [127, 0, 11, (i % 4) as u8 + 1];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut tcp) = connect_from(source, to, None).await else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        for b in b"GET /api/v1/health HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                            if stop.load(Ordering::Relaxed) || tcp.write_all(&[*b]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }));
            }
        }
        Attack::ExpensiveBars | Attack::ExpensiveBarsNoRateLimit => {
            let path = format!(
                "/api/v1/datafeed/bars?symbol=BTCUSD&resolution=240&from_time=0&to_time={}&count_back=5000",
                server::CLOCK_START
            );
            for _ in 0..64 {
                let stop = Arc::clone(&stop);
                let request = http::request("GET", &path, "");
                tasks.push(tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(tcp) = connect_from([127, 0, 12, 1], to, None).await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let mut conn = tokio::io::BufReader::new(tcp);
                        // A 429 is an answer too: keep asking, as a
                        // careless client would.
                        loop {
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            match http::exchange(&mut conn, &request).await {
                                Ok(_) => {}
                                Err(e) if e.kind() == std::io::ErrorKind::Other => {}
                                Err(_) => break,
                            }
                        }
                    }
                }));
            }
        }
        Attack::SlowReaders => {
            for i in 0..200u32 {
                let stop = Arc::clone(&stop);
                tasks.push(tokio::spawn(async move {
                    let source = [127, 0, 13, (i % 4) as u8 + 1];
                    let Ok(tcp) = connect_from(source, to, Some(crate::ws::STALLED_RCVBUF)).await else {
                        return;
                    };
                    let url = format!("ws://{to}/api/v1/ws");
                    let Ok((mut ws, _)) = tokio_tungstenite::client_async(url, tcp).await else {
                        return;
                    };
                    let symbols = ["AAPL", "MSFT", "GOOGL", "AMZN", "TSLA", "BTCUSD", "ETHUSD", "EURUSD", "GBPUSD", "SPY"];
                    let resolutions = ["1", "5", "15", "30", "60", "240", "D", "W", "M", "1"];
                    for s in symbols {
                        for r in resolutions {
                            let sub = format!(r#"{{"type":"bars.subscribe","payload":{{"symbol":"{s}","resolution":"{r}"}}}}"#);
                            if ws.send(Message::Text(sub.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Never read; hold the connection until the attack ends.
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }));
            }
        }
        Attack::FragmentStorm => {
            for i in 0..2u8 {
                let stop = Arc::clone(&stop);
                tasks.push(tokio::spawn(async move {
                    // Masked empty continuation frames, 6 bytes each.
                    let chunk: Vec<u8> = [0x00u8, 0x80, 1, 2, 3, 4].repeat(10_000);
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(mut tcp) = connect_from([127, 0, 14, i + 1], to, None).await else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        };
                        let handshake = format!(
                            "GET /api/v1/ws HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                        );
                        if tcp.write_all(handshake.as_bytes()).await.is_err() {
                            continue;
                        }
                        let mut buf = [0u8; 1024];
                        if tcp.read(&mut buf).await.unwrap_or(0) == 0 {
                            continue;
                        }
                        // Open a text message, then never finish it.
                        if tcp.write_all(&[0x01, 0x81, 1, 2, 3, 4, b'{' ^ 1]).await.is_err() {
                            continue;
                        }
                        while !stop.load(Ordering::Relaxed) {
                            if tcp.write_all(&chunk).await.is_err() {
                                break;
                            }
                        }
                    }
                }));
            }
        }
    }
    tasks
}

struct Outcome {
    kind: Attack,
    calm: Seen,
    under: Seen,
    rss_before: u64,
    rss_peak: u64,
    rss_after: u64,
}

async fn run_one(o: &Options, kind: Attack) -> Result<Outcome, String> {
    let window = if o.quick {
        Duration::from_millis(600)
    } else {
        o.duration * 2
    };
    let settle = if o.quick {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(30)
    };
    let p: Process = server::trading_server(&o.server, &kind.server_flags()).await?;
    let to: SocketAddr = p.address.parse().map_err(|e| format!("{e}"))?;
    let record = Arc::new(Record::default());
    let watchers = bystander(&p.address, Arc::clone(&record));
    // Let the bystander settle in (its WebSocket, the first requests).
    tokio::time::sleep(if o.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(3)
    })
    .await;
    record.reset();
    let from = Instant::now();
    tokio::time::sleep(window).await;
    let calm = record.take(from);
    let rss_before = p.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let attackers = attack(kind, to, Arc::clone(&stop));
    let from = Instant::now();
    let mut rss_peak = rss_before;
    while from.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss_peak = rss_peak.max(p.rss_kib());
    }
    let under = record.take(from);
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.abort();
        let _ = a.await;
    }
    tokio::time::sleep(settle).await;
    let rss_after = p.rss_kib();
    for w in watchers {
        w.abort();
    }
    p.stop().await;
    Ok(Outcome {
        kind,
        calm,
        under,
        rss_before,
        rss_peak,
        rss_after,
    })
}

fn p99(seen: &Seen) -> String {
    let mut v = seen.health_us.clone();
    v.sort_unstable();
    if v.is_empty() {
        return "-".into();
    }
    ms(percentile_ms(&v, 0.99))
}

pub async fn run_all(o: &Options) -> bool {
    let mut outcomes = Vec::new();
    for kind in ATTACKS {
        eprintln!("abuse: {}", kind.label());
        match run_one(o, kind).await {
            Ok(out) => outcomes.push(out),
            Err(e) => {
                eprintln!("abuse: {}: {e}", kind.label());
                return false;
            }
        }
    }
    println!("\n### Abuse: a well-behaved client while another attacks\n");
    println!(
        "Bystander: `/api/v1/health` every 20 ms on a kept-alive connection, a new connection \
         every 200 ms, a WebSocket on `bars:BTCUSD:1` (broadcast interval {BROADCAST_MS} ms, \
         clock speed 60). Each window lasts {:.0} s; memory is read again {} after the attack \
         ends.\n",
        if o.quick {
            0.6
        } else {
            o.duration.as_secs_f64() * 2.0
        },
        if o.quick { "0.1 s" } else { "30 s" },
    );
    header(
        &[
            "attack",
            "health p99 calm (ms)",
            "health p99 attacked (ms)",
            "longest WS gap calm (ms)",
            "longest WS gap attacked (ms)",
            "health errors",
            "new connections ok / failed",
            "RSS before / peak / after (MiB)",
        ],
        1,
    );
    let mut ok = true;
    for out in &outcomes {
        let mib = |k: u64| format!("{:.0}", k as f64 / 1024.0);
        row(&[
            out.kind.label().to_string(),
            p99(&out.calm),
            p99(&out.under),
            int(out.calm.longest_gap_ms),
            int(out.under.longest_gap_ms),
            out.under.health_errors.to_string(),
            format!("{} / {}", out.under.probes_ok, out.under.probes_failed),
            format!(
                "{} / {} / {}",
                mib(out.rss_before),
                mib(out.rss_peak),
                mib(out.rss_after)
            ),
        ]);
        // Behaviour, not timing: the bystander got answers and updates.
        ok &= !out.under.health_us.is_empty() && out.under.probes_ok > 0;
        ok &= out.calm.updates > 0 || o.quick;
    }
    if !ok {
        eprintln!("abuse: the bystander got nothing through in some attack");
    }
    ok
}
