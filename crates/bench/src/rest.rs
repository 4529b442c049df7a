//! REST scenarios: fixed concurrency, one request in flight per connection,
//! against a frozen market clock so every run asks for the same bars.

use std::time::{Duration, Instant};

use crate::http;
use crate::server::{self, Process};
use crate::stats::{self, Percentiles};
use crate::Options;

pub(crate) struct Scenario {
    pub name: &'static str,
    pub method: &'static str,
    pub path: String,
    pub body: String,
    /// Extra header lines, each ending in CRLF.
    pub headers: String,
}

fn scenarios() -> Vec<Scenario> {
    let get = |name, path: String| Scenario {
        name,
        method: "GET",
        path,
        body: String::new(),
        headers: String::new(),
    };
    let to = server::CLOCK_START;
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
        // A chart scrolled back: older than a store keeps in memory, so
        // the stores read these from their file or database.
        get(
            "bars 1 x5000 4d back",
            format!(
                "/api/v1/datafeed/bars?symbol=BTCUSD&resolution=1&from_time=0&to_time={}&count_back=5000",
                to - 4 * 86_400
            ),
        ),
        Scenario {
            name: "quotes x20",
            method: "POST",
            path: "/api/v1/datafeed/quotes".into(),
            body: format!("{{\"symbols\":[{}]}}", symbols.join(",")),
            headers: String::new(),
        },
    ]
}

struct Measurement {
    requests: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    server_us: Vec<u32>,
    cpu_seconds: f64,
}

async fn run(
    server: &Process,
    s: &Scenario,
    conns: usize,
    duration: Duration,
) -> Result<Measurement, String> {
    let request = http::request_with(s.method, &s.path, &s.body, &s.headers);
    let mut streams = Vec::with_capacity(conns);
    for _ in 0..conns {
        streams.push(
            http::connect(&server.address)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // Warm each connection (and the server's caches) outside the measurement.
    for c in &mut streams {
        http::exchange(c, &request)
            .await
            .map_err(|e| format!("{}: {e}", s.name))?;
    }
    let cpu_before = server.cpu_seconds();
    server.server_times().start();
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
                    http::exchange(&mut c, &request)
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
    let cpu_seconds = server.cpu_seconds() - cpu_before;
    // The log is written asynchronously: give its last lines a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(Measurement {
        requests: latencies_us.len(),
        elapsed,
        latencies_us,
        server_us: server.server_times().take(),
        cpu_seconds,
    })
}

/// Runs every REST scenario against the synthetic source and against a
/// store holding the same bars (`store::prepare`), and prints one table;
/// false if any failed.
pub async fn run_all(o: &Options) -> bool {
    let frozen = [("--clock-speed", "0".to_string())];
    let synthetic = match server::trading_server(&o.server, &frozen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trading-bench: {e}");
            return false;
        }
    };
    let scratch = match crate::store::Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trading-bench: {e}");
            return false;
        }
    };
    let sqlite = scratch.path("rest.db").display().to_string();
    let store = match crate::store::prepare(o, &scratch, &sqlite) {
        Ok(()) => {
            let mut flags = frozen.to_vec();
            flags.push(("--store", sqlite));
            server::trading_server(&o.server, &flags).await
        }
        Err(e) => Err(e),
    };
    let store = match store {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trading-bench: the store for REST: {e}");
            synthetic.stop().await;
            return false;
        }
    };
    // The same bars in PostgreSQL.
    let postgres = async {
        let db = crate::services::Database::create().await?;
        let url = db.url.clone();
        let started = match tokio::task::block_in_place(|| crate::store::prepare(o, &scratch, &url))
        {
            Ok(()) => {
                let mut flags = frozen.to_vec();
                flags.push(("--store", url));
                server::trading_server(&o.server, &flags).await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(server) => Ok((db, server)),
            Err(e) => {
                db.remove().await;
                Err(e)
            }
        }
    }
    .await;
    let (db, postgres) = match postgres {
        Ok(pg) => pg,
        Err(e) => {
            eprintln!("trading-bench: the PostgreSQL store for REST: {e}");
            synthetic.stop().await;
            store.stop().await;
            return false;
        }
    };
    let concurrencies: &[usize] = if o.quick { &[4] } else { &[1, 32, 256] };
    println!(
        "REST, {} run(s) of {:?} each, medians; server {}; synthetic source at {}, sqlite store at {}, postgres store at {} (same bars)\n",
        o.runs, o.duration, o.server, synthetic.address, store.address, postgres.address
    );
    stats::header(
        &[
            "scenario",
            "source",
            "conns",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p999 ms",
            "server p99 ms",
            "server CPU ms / 1k req",
        ],
        2,
    );
    let mut ok = true;
    for s in scenarios() {
        for &conns in concurrencies {
            for (source, server) in [
                ("synthetic", &synthetic),
                ("sqlite", &store),
                ("postgres", &postgres),
            ] {
                ok &= run_row(o, server, &s, source, conns).await;
            }
        }
    }
    println!();
    synthetic.stop().await;
    store.stop().await;
    postgres.stop().await;
    db.remove().await;
    ok
}

/// Runs one scenario `o.runs` times and prints its row of medians.
async fn run_row(o: &Options, server: &Process, s: &Scenario, source: &str, conns: usize) -> bool {
    let mut ok = true;
    let mut rows: Vec<(f64, Option<Percentiles>, f64, Option<Percentiles>)> = Vec::new();
    for _ in 0..o.runs {
        match run(server, s, conns, o.duration).await {
            Ok(mut m) => rows.push((
                m.requests as f64 / m.elapsed.as_secs_f64(),
                Percentiles::of(&mut m.latencies_us),
                m.cpu_seconds * 1000.0 / (m.requests.max(1) as f64 / 1000.0),
                Percentiles::of(&mut m.server_us),
            )),
            Err(e) => {
                eprintln!("{} ({source}) at {conns} connections failed: {e}", s.name);
                ok = false;
            }
        }
    }
    if rows.is_empty() {
        return ok;
    }
    let latency: Vec<_> = rows.iter().map(|r| r.1).collect();
    let [p50, p99, p999] = Percentiles::cells(Percentiles::median_of(&latency));
    let server_times: Vec<_> = rows.iter().map(|r| r.3).collect();
    let [_, server_p99, _] = Percentiles::cells(Percentiles::median_of(&server_times));
    stats::row(&[
        s.name.to_string(),
        source.to_string(),
        conns.to_string(),
        format!("{:.0}", stats::median(rows.iter().map(|r| r.0).collect())),
        p50,
        p99,
        p999,
        server_p99,
        format!("{:.1}", stats::median(rows.iter().map(|r| r.2).collect())),
    ]);
    ok
}

/// A scenario's medians over `o.runs` runs, as table cells.
pub(crate) struct Medians {
    pub rate: String,
    /// `rate` as a number, for ratios between rows.
    pub per_second: f64,
    pub p50: String,
    pub p99: String,
    pub cpu: String,
}

/// Runs `s` `o.runs` times at `conns` connections; None (and `ok` false)
/// if every run failed, each failure reported under `what`.
pub(crate) async fn medians(
    o: &Options,
    server: &Process,
    s: &Scenario,
    conns: usize,
    what: &str,
    ok: &mut bool,
) -> Option<Medians> {
    let mut rows = Vec::new();
    for _ in 0..o.runs {
        match run(server, s, conns, o.duration).await {
            Ok(mut m) => rows.push((
                m.requests as f64 / m.elapsed.as_secs_f64(),
                Percentiles::of(&mut m.latencies_us),
                m.cpu_seconds * 1000.0 / (m.requests.max(1) as f64 / 1000.0),
            )),
            Err(e) => {
                eprintln!("{what} at {conns} connections failed: {e}");
                *ok = false;
            }
        }
    }
    if rows.is_empty() {
        return None;
    }
    let latency: Vec<_> = rows.iter().map(|r| r.1).collect();
    let [p50, p99, _] = Percentiles::cells(Percentiles::median_of(&latency));
    let per_second = stats::median(rows.iter().map(|r| r.0).collect());
    Some(Medians {
        rate: format!("{per_second:.0}"),
        per_second,
        p50,
        p99,
        cpu: format!("{:.1}", stats::median(rows.iter().map(|r| r.2).collect())),
    })
}

/// getBars for 5,000 one-minute bars as they are, gzipped and in brotli
/// (`Accept-Encoding`), from the synthetic source: what a response weighs
/// and what compressing it costs the server.
pub async fn compression(o: &Options) -> bool {
    let frozen = [("--clock-speed", "0".to_string())];
    let server = match server::trading_server(&o.server, &frozen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trading-bench: {e}");
            return false;
        }
    };
    let to = server::CLOCK_START;
    let path = format!(
        "/api/v1/datafeed/bars?symbol=BTCUSD&resolution=1&from_time=0&to_time={to}&count_back=5000"
    );
    let concurrencies: &[usize] = if o.quick { &[2] } else { &[1, 32] };
    println!(
        "Compression: getBars of 5,000 one-minute bars (synthetic source), {} run(s) of {:?} each, medians\n",
        o.runs, o.duration
    );
    stats::header(
        &[
            "Accept-Encoding",
            "body bytes",
            "vs identity",
            "conns",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms / 1k req",
        ],
        1,
    );
    let mut ok = true;
    let mut identity_bytes = 0usize;
    for (coding, headers) in [
        ("identity", ""),
        ("gzip", "Accept-Encoding: gzip\r\n"),
        ("br", "Accept-Encoding: br\r\n"),
    ] {
        let s = Scenario {
            name: coding,
            method: "GET",
            path: path.clone(),
            body: String::new(),
            headers: headers.to_string(),
        };
        let bytes = async {
            let mut c = http::connect(&server.address)
                .await
                .map_err(|e| e.to_string())?;
            let request = http::request_with("GET", &path, "", headers);
            http::exchange(&mut c, &request)
                .await
                .map(|body| body.len())
                .map_err(|e| e.to_string())
        }
        .await;
        let bytes = match bytes {
            Ok(n) => n,
            Err(e) => {
                eprintln!("compression ({coding}): {e}");
                ok = false;
                continue;
            }
        };
        if coding == "identity" {
            identity_bytes = bytes;
        }
        for &conns in concurrencies {
            let what = format!("compression ({coding})");
            let Some(m) = medians(o, &server, &s, conns, &what, &mut ok).await else {
                continue;
            };
            stats::row(&[
                coding.to_string(),
                bytes.to_string(),
                format!(
                    "{:.1}%",
                    100.0 * bytes as f64 / identity_bytes.max(1) as f64
                ),
                conns.to_string(),
                m.rate,
                m.p50,
                m.p99,
                m.cpu,
            ]);
        }
    }
    println!();
    server.stop().await;
    ok
}

/// What authentication costs a request: the cheapest datafeed operation
/// (the server's time) and 400 daily bars, without authentication, with an
/// HS256 token and with an ES256 token (the per-token limits set out of
/// the way, as the per-address ones are).
pub async fn auth(o: &Options) -> bool {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let secret = "bench-secret-0123456789abcdef";
    let ec = match rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("trading-bench: an ES256 key: {e}");
            return false;
        }
    };
    let scratch = match crate::store::Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("trading-bench: {e}");
            return false;
        }
    };
    let key_file = scratch.path("ec.pem");
    if let Err(e) = std::fs::write(&key_file, ec.public_key_pem()) {
        eprintln!("trading-bench: {}: {e}", key_file.display());
        return false;
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 86_400;
    let claims = serde_json::json!({ "sub": "bench", "exp": exp, "exchanges": ["*"] });
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("a secret key"),
    );
    let es = EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes())
        .and_then(|k| jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &k));
    let (hs, es) = match (hs, es) {
        (Ok(hs), Ok(es)) => (hs, es),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("trading-bench: signing the tokens: {e}");
            return false;
        }
    };
    let open_limits = [
        ("--clock-speed", "0".to_string()),
        ("--auth-default-entitlement", "all".to_string()),
        ("--token-rate-limit-rps", "0".to_string()),
        ("--max-inflight-per-token", "1024".to_string()),
        ("--max-connections-per-token", "1000000".to_string()),
    ];
    let with = |flag: &'static str, value: String| {
        let mut flags = open_limits.to_vec();
        flags.push((flag, value));
        flags
    };
    let setups = [
        ("off", open_limits[..1].to_vec(), String::new()),
        ("HS256", with("--auth-jwt-secret", secret.into()), hs),
        (
            "ES256",
            with("--auth-jwt-public-key", key_file.display().to_string()),
            es,
        ),
    ];
    let to = server::CLOCK_START;
    let requests = [
        ("time", "/api/v1/datafeed/time".to_string()),
        (
            "bars D x400",
            format!("/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=0&to_time={to}&count_back=400"),
        ),
    ];
    let concurrencies: &[usize] = if o.quick { &[2] } else { &[1, 32] };
    println!(
        "Authentication: the same requests without a token check and with HS256 and ES256 tokens (synthetic source), {} run(s) of {:?} each, medians\n",
        o.runs, o.duration
    );
    stats::header(
        &[
            "scenario",
            "auth",
            "conns",
            "req/s",
            "p50 ms",
            "p99 ms",
            "server CPU ms / 1k req",
        ],
        2,
    );
    let mut ok = true;
    for (auth, flags, token) in setups {
        let server = match server::trading_server(&o.server, &flags).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("trading-bench: auth {auth}: {e}");
                ok = false;
                continue;
            }
        };
        let headers = if token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {token}\r\n")
        };
        for (name, path) in &requests {
            let s = Scenario {
                name,
                method: "GET",
                path: path.clone(),
                body: String::new(),
                headers: headers.clone(),
            };
            for &conns in concurrencies {
                let what = format!("auth {auth}, {name}");
                let Some(m) = medians(o, &server, &s, conns, &what, &mut ok).await else {
                    continue;
                };
                stats::row(&[
                    name.to_string(),
                    auth.to_string(),
                    conns.to_string(),
                    m.rate,
                    m.p50,
                    m.p99,
                    m.cpu,
                ]);
            }
        }
        server.stop().await;
    }
    println!();
    ok
}
