//! trading-bench: starts `trading-server` itself, drives it over loopback
//! sockets at fixed concurrency and prints a table of medians.
//!
//! The load generator is a plain HTTP/1.1 keep-alive client (one request in
//! flight per connection, like a browser tab) so that what is measured is the
//! server, not a client library. Benchmarks report; they never assert.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A fixed market instant (Thursday 2025-11-20 15:30 UTC, US market open)
/// and a frozen clock: every run asks for exactly the same bars.
const CLOCK_START: i64 = 1_763_652_600;

struct Options {
    server: String,
    quick: bool,
    runs: usize,
    duration: Duration,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        server: "target/release/trading-server".into(),
        quick: false,
        runs: 3,
        duration: Duration::from_secs(5),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--server" => o.server = value("--server")?,
            "--quick" => o.quick = true,
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--seconds" => {
                let s: f64 = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
                o.duration = Duration::from_secs_f64(s);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: trading-bench [--server PATH] [--quick] [--runs N] [--seconds S]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.quick {
        o.runs = 1;
        o.duration = Duration::from_millis(300);
    }
    Ok(o)
}

struct Scenario {
    name: &'static str,
    method: &'static str,
    path: String,
    body: String,
}

fn scenarios() -> Vec<Scenario> {
    let get = |name, path: String| Scenario {
        name,
        method: "GET",
        path,
        body: String::new(),
    };
    let to = CLOCK_START;
    let symbols: Vec<String> = [
        "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "NFLX", "AMD", "INTC", "JPM", "V",
        "WMT", "KO", "DIS", "IBM", "BTCUSD", "ETHUSD", "EURUSD", "GBPUSD",
    ]
    .iter()
    .map(|s| format!("\"{s}\""))
    .collect();
    vec![
        get("health", "/api/v1/health".into()),
        get(
            "bars D x400",
            format!("/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=0&to_time={to}&count_back=400"),
        ),
        get(
            "bars 1 x5000",
            format!("/api/v1/datafeed/bars?symbol=BTCUSD&resolution=1&from_time=0&to_time={to}&count_back=5000"),
        ),
        Scenario {
            name: "quotes x20",
            method: "POST",
            path: "/api/v1/datafeed/quotes".into(),
            body: format!("{{\"symbols\":[{}]}}", symbols.join(",")),
        },
    ]
}

struct Server {
    child: Child,
    address: String,
}

async fn start_server(path: &str) -> Result<Server, String> {
    let mut child = Command::new(path)
        .args([
            "--bind",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--log-level",
            "info",
        ])
        .args([
            "--clock-start",
            &CLOCK_START.to_string(),
            "--clock-speed",
            "0",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {path}: {e} (build it with cargo build --release -p trading-server)"
            )
        })?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let address = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.split("\"address\":\"").nth(1) {
                return rest.split('"').next().map(str::to_string);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .ok_or("the server did not report its address")?;
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Server { child, address })
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the file: 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// One keep-alive request/response; returns the body length.
async fn exchange(conn: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<usize> {
    conn.get_mut().write_all(request).await?;
    let mut length = 0usize;
    let mut line = String::new();
    let mut status_ok = false;
    loop {
        line.clear();
        if conn.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.starts_with("HTTP/1.1 ") {
            status_ok = line.as_bytes().get(9) == Some(&b'2');
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await?;
    if !status_ok {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    Ok(length)
}

struct Measurement {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    cpu_seconds: f64,
}

async fn run(
    server: &Server,
    s: &Scenario,
    conns: usize,
    duration: Duration,
) -> Result<Measurement, String> {
    let request = format!(
        "{} {} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        s.method,
        s.path,
        s.body.len(),
        s.body
    )
    .into_bytes();
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        let tcp = TcpStream::connect(&server.address)
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        streams.push(BufReader::new(tcp));
    }
    // Warm each connection (and the server's caches) outside the measurement.
    for c in &mut streams {
        exchange(c, &request)
            .await
            .map_err(|e| format!("{}: {e}", s.name))?;
    }
    let pid = server.child.id().unwrap_or(0);
    let cpu_before = cpu_seconds(pid);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut c| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    exchange(&mut c, &request)
                        .await
                        .map_err(|e| e.to_string())?;
                    latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Ok::<_, String>(latencies)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for t in tasks {
        latencies_us.extend(t.await.map_err(|e| e.to_string())??);
    }
    let elapsed = start.elapsed();
    let cpu_seconds = cpu_seconds(pid) - cpu_before;
    latencies_us.sort_unstable();
    Ok(Measurement {
        requests: latencies_us.len(),
        elapsed,
        latencies_us,
        cpu_seconds,
    })
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let server = match start_server(&options.server).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trading-bench: {e}");
            std::process::exit(1);
        }
    };
    let concurrencies: &[usize] = if options.quick { &[4] } else { &[32, 256] };
    println!(
        "REST, {} run(s) of {:?} each, medians; server {} ({})",
        options.runs, options.duration, options.server, server.address
    );
    println!(
        "| scenario | conns | req/s | p50 ms | p99 ms | p999 ms | server CPU ms / 1k req |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let mut failed = false;
    for s in scenarios() {
        for &conns in concurrencies {
            let mut rows: Vec<[f64; 5]> = Vec::new();
            for _ in 0..options.runs {
                match run(&server, &s, conns, options.duration).await {
                    Ok(m) => rows.push([
                        m.requests as f64 / m.elapsed.as_secs_f64(),
                        percentile(&m.latencies_us, 0.50),
                        percentile(&m.latencies_us, 0.99),
                        percentile(&m.latencies_us, 0.999),
                        m.cpu_seconds * 1000.0 / (m.requests.max(1) as f64 / 1000.0),
                    ]),
                    Err(e) => {
                        eprintln!("{} at {conns} connections failed: {e}", s.name);
                        failed = true;
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            let col = |i: usize| median(rows.iter().map(|r| r[i]).collect());
            println!(
                "| {} | {conns} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} |",
                s.name,
                col(0),
                col(1),
                col(2),
                col(3),
                col(4)
            );
        }
    }
    if failed {
        std::process::exit(1);
    }
}
