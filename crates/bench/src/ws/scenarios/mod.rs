//! The WebSocket scenarios and their tables: density (memory per idle
//! connection), fan-out at the maximum rate, the half rate, and stalled
//! readers; each for trading-server and, where it means something, for the
//! bare baseline.
//!
//! Every scenario starts its own server process, so one scenario's
//! connections, market state or allocator growth never shows in another's
//! figures. Runs within a scenario reuse the connections: opening 20k
//! connections costs seconds, and what is measured is the steady state, so
//! runs are consecutive windows on the same connections.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::server::{self, Process, Reports};
use crate::stats::{self, int, Percentiles};
use crate::ws::{self, ConnStats, Fleet, FleetSpec, Topic};
use crate::{http, Options};

mod density;
mod fanout;
mod stalled;

const RESOLUTIONS: [&str; 4] = ["1", "5", "15", "60"];
const TOPICS: usize = 100;
/// Descriptors (and ports) each process keeps for everything that is not a
/// connection under test.
const FD_MARGIN: u64 = 500;
/// At this clock speed every 10 ms tick moves the market by at least one
/// second, so (in session) every topic's bar changes at every tick.
const SPEED: &str = "100";
/// Wall time from server start until the US session closes at speed 100
/// (5.5 market hours); after that stock topics stop changing.
const SESSION_WALL: Duration = Duration::from_secs(198);
/// How often server memory is sampled during a window.
const RSS_EVERY: Duration = Duration::from_millis(250);
const DENSITY_CONNS: usize = 10_000;
const FULL_CONNS: [usize; 2] = [1_000, 10_000];
const MIXES: [usize; 2] = [1, 10];
/// Stalled readers in the full run: one connection in this many.
const STALL_EVERY: usize = 100;
/// trading-server's slow-client timeout in the stall scenario: longer than
/// any window, so the stall lasts the whole of window B.
const STALL_TIMEOUT_S: f64 = 30.0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Real,
    Baseline,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Real => "trading-server",
            Target::Baseline => "baseline",
        }
    }
}

struct Server {
    process: Process,
    target: Target,
    started: Instant,
    clock_running: bool,
}

/// One measurement window's clock and resource readings.
struct Window {
    elapsed: Duration,
    server_cpu: f64,
    bench_cpu: f64,
    max_rss_kib: u64,
}

/// A fan-out row: medians over runs.
#[derive(Clone, Copy)]
struct Figures {
    delivered: f64,
    latency: Option<Percentiles>,
    /// CPU ms per 100k delivered messages.
    server_cpu: f64,
    bench_cpu: f64,
}

impl Figures {
    fn median(runs: &[Figures]) -> Figures {
        let col = |f: fn(&Figures) -> f64| stats::median(runs.iter().map(f).collect());
        let latency: Vec<_> = runs.iter().map(|r| r.latency).collect();
        Figures {
            delivered: col(|r| r.delivered),
            latency: Percentiles::median_of(&latency),
            server_cpu: col(|r| r.server_cpu),
            bench_cpu: col(|r| r.bench_cpu),
        }
    }
}

struct Stalled {
    before: Figures,
    during: Figures,
    change_pct: f64,
    rss_end_a_kib: f64,
    max_rss_b_kib: f64,
    stalled: usize,
    stalled_closed: usize,
    /// Both at the end of B: what the stalled client's kernel holds, and
    /// what the server's kernel holds for it.
    unread_kib: Option<f64>,
    send_q_kib: Option<f64>,
}

struct Bench<'a> {
    o: &'a Options,
    topics: Arc<Vec<Topic>>,
    /// The last `bars.update` captured from trading-server, which the
    /// baseline then sends, so both put the same bytes on the wire.
    template: Option<Vec<u8>>,
    template_path: PathBuf,
    warmup: Duration,
    /// Pause after resuming stalled readers, so their backlog is drained
    /// before the next window.
    settle: Duration,
    failed: bool,
    unstamped: u64,
}

/// Runs the WebSocket part; false if anything failed.
pub async fn run_all(o: &Options) -> bool {
    let mut b = Bench {
        o,
        topics: Arc::new(Vec::new()),
        template: None,
        template_path: std::env::temp_dir()
            .join(format!("trading-bench-{}-frame.json", std::process::id())),
        warmup: if o.quick {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        },
        settle: if o.quick {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        },
        failed: false,
        unstamped: 0,
    };
    let ok = if o.quick {
        b.quick().await
    } else {
        b.full().await
    };
    let _ = std::fs::remove_file(&b.template_path);
    if b.unstamped > 0 {
        eprintln!(
            "ws: {} updates carried no published_us (a server without the field): counted, no latency recorded",
            b.unstamped
        );
    }
    ok && !b.failed
}

/// The first 100 topics of symbols × resolutions 1, 5, 15, 60, sorted by
/// symbol then resolution, from the server's own catalog.
async fn fetch_topics(address: &str) -> Result<Vec<Topic>, String> {
    let body = http::get(
        address,
        "/api/v1/datafeed/search?user_input=&max_results=100",
    )
    .await?;
    let mut symbols: Vec<String> = body
        .split("\"ticker\":\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect();
    symbols.sort();
    symbols.dedup();
    if symbols.is_empty() {
        return Err("the symbol search listed no tickers".into());
    }
    Ok(symbols
        .iter()
        .flat_map(|s| {
            RESOLUTIONS.iter().map(move |r| Topic {
                symbol: s.clone(),
                resolution: r.to_string(),
            })
        })
        .take(TOPICS)
        .collect())
}

/// Most connections both processes can hold: one descriptor each side per
/// connection, and one ephemeral port per connection on the client side.
fn max_connections(fd_limit: u64) -> (usize, String) {
    let ports = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().filter_map(|v| v.parse::<u64>().ok());
            Some(it.next_back()? - it.next()? + 1)
        })
        .unwrap_or(u64::MAX);
    let by_fds = fd_limit.saturating_sub(FD_MARGIN);
    let by_ports = ports.saturating_sub(FD_MARGIN);
    let max = (by_fds.min(by_ports) / 100 * 100).max(100) as usize;
    let why = if by_fds <= by_ports {
        format!(
            "RLIMIT_NOFILE is {} for the bench and, inherited, for each server; every connection holds a descriptor on each side; {FD_MARGIN} are left for everything else",
            int(fd_limit as f64)
        )
    } else {
        format!(
            "{} ephemeral ports, one per client connection, {FD_MARGIN} left spare",
            int(ports as f64)
        )
    };
    (max, why)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

fn conns_cell(ready: usize, requested: usize) -> String {
    if ready == requested {
        int(ready as f64)
    } else {
        format!("{} of {}", int(ready as f64), int(requested as f64))
    }
}

fn figures(
    stats: &mut [ConnStats],
    k: usize,
    w: &Window,
    include: fn(&ConnStats) -> bool,
) -> Figures {
    let mut t = ws::totals(stats, k, include);
    let per_100k = |cpu: f64| cpu * 1000.0 / (t.updates.max(1) as f64 / 100_000.0);
    Figures {
        delivered: t.updates as f64 / w.elapsed.as_secs_f64(),
        latency: Percentiles::of(&mut t.latencies_us),
        server_cpu: per_100k(w.server_cpu),
        bench_cpu: per_100k(w.bench_cpu),
    }
}

/// Counts window `k` for `length`, sampling server memory as it goes.
async fn measure(fleet: &Fleet, p: &Process, k: usize, length: Duration) -> Window {
    let bench = std::process::id();
    let (server0, bench0) = (p.cpu_seconds(), server::cpu_seconds(bench));
    let start = Instant::now();
    fleet.window(k);
    let end = start + length;
    let mut max_rss_kib = p.rss_kib();
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        tokio::time::sleep((end - now).min(RSS_EVERY)).await;
        max_rss_kib = max_rss_kib.max(p.rss_kib());
    }
    fleet.window(0);
    Window {
        elapsed: start.elapsed(),
        server_cpu: p.cpu_seconds() - server0,
        bench_cpu: server::cpu_seconds(bench) - bench0,
        max_rss_kib,
    }
}

impl Bench<'_> {
    fn window(&self) -> Duration {
        self.o.duration
    }

    /// The window rounded to a whole number of broadcast intervals: every
    /// tick sends a burst, and a window of 8.4 ticks would hold 8 or 9
    /// bursts depending on its phase (±12%); a whole number holds the same
    /// amount whatever the phase.
    fn window_for(&self, interval_ms: u64) -> Duration {
        if interval_ms == 0 {
            return self.window();
        }
        let interval = Duration::from_millis(interval_ms);
        let ticks = (self.window().as_secs_f64() / interval.as_secs_f64())
            .round()
            .max(1.0);
        interval.mul_f64(ticks)
    }

    async fn start(
        &mut self,
        target: Target,
        interval_ms: u64,
        frames: usize,
        extra: &[(&str, String)],
    ) -> Result<Server, String> {
        let running = interval_ms > 0;
        let process = match target {
            Target::Real => {
                let mut flags = vec![
                    (
                        "--clock-speed",
                        if running { SPEED } else { "0" }.to_string(),
                    ),
                    (
                        "--broadcast-interval-ms",
                        if running { interval_ms.max(10) } else { 1000 }.to_string(),
                    ),
                ];
                flags.extend(extra.iter().cloned());
                let p = server::trading_server(&self.o.server, &flags).await?;
                if self.topics.is_empty() {
                    self.topics = Arc::new(fetch_topics(&p.address).await?);
                }
                let frame = ws::capture(&p.address, &self.topics)
                    .await
                    .map_err(|e| format!("subscribing to every topic: {e}"))?;
                self.template = Some(frame);
                p
            }
            Target::Baseline => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut args = vec![
                    "baseline-server".to_string(),
                    "--interval-ms".into(),
                    interval_ms.to_string(),
                    "--frames".into(),
                    frames.to_string(),
                ];
                if running && frames > 0 {
                    let frame = self
                        .template
                        .as_ref()
                        .ok_or("no bars.update frame captured from trading-server to copy")?;
                    std::fs::write(&self.template_path, frame)
                        .map_err(|e| format!("{}: {e}", self.template_path.display()))?;
                    args.push("--template".into());
                    args.push(self.template_path.display().to_string());
                }
                server::spawn(&exe, &args, Reports::Stdout).await?
            }
        };
        Ok(Server {
            process,
            target,
            started: Instant::now(),
            clock_running: running && target == Target::Real,
        })
    }

    async fn stop(&mut self, server: Server) {
        if server.clock_running && server.started.elapsed() > SESSION_WALL {
            eprintln!(
                "ws: warning: this scenario ran {:.0} s at clock speed {SPEED}: the US session closed after {} s, stock topics stopped changing",
                server.started.elapsed().as_secs_f64(),
                SESSION_WALL.as_secs()
            );
        }
        server.process.stop().await;
    }

    async fn fleet(
        &mut self,
        server: &Server,
        label: &str,
        n: usize,
        per_conn: usize,
        stall_every: Option<usize>,
        windows: usize,
    ) -> Fleet {
        let subscriptions = (n * per_conn) as u64;
        let fleet = Fleet::open(FleetSpec {
            address: server.process.address.clone(),
            connections: n,
            topics: Arc::clone(&self.topics),
            topics_per_conn: per_conn,
            await_replies: server.target == Target::Real,
            stall_every,
            windows,
            ready_timeout: Duration::from_secs(60) + Duration::from_micros(500 * subscriptions),
        })
        .await;
        eprintln!(
            "ws: {} {label}: {} of {} connections ready in {:.1} s",
            server.target.name(),
            int(fleet.ready as f64),
            int(n as f64),
            fleet.open_time.as_secs_f64()
        );
        for (reason, count) in &fleet.failures {
            eprintln!("ws:   {} failed: {reason}", int(*count as f64));
            self.failed = true;
        }
        fleet
    }

    /// Connections that ended during the scenario (other than stalled
    /// ones) are failures: the figures no longer describe N readers.
    fn check_closed(&mut self, stats: &[ConnStats], label: &str) {
        let closed: Vec<&String> = stats
            .iter()
            .filter(|s| !s.stalls)
            .filter_map(|s| s.closed.as_ref())
            .collect();
        if let Some(first) = closed.first() {
            eprintln!(
                "ws: {label}: {} connections ended early, e.g. {first}",
                closed.len()
            );
            self.failed = true;
        }
        self.unstamped += stats.iter().map(|s| s.unstamped).sum::<u64>();
    }

    /// A few seconds against the debug server: do updates flow, through
    /// trading-server and the baseline, and past stalled readers?
    async fn quick(&mut self) -> bool {
        let (n, interval) = (20, 50);
        println!(
            "WebSocket (quick: a behaviour check, not figures): {n} connections, 1 topic, {interval} ms, one {:?} window; server {}\n",
            self.window(),
            self.o.server
        );
        Self::fanout_header();
        let real = self.fanout(Target::Real, n, 1, interval).await;
        let base = self.fanout(Target::Baseline, n, 1, interval).await;
        println!();
        Self::stalled_header();
        let stalled = self.stalled(n, interval, 10).await;
        if let Some(s) = &stalled {
            Self::stalled_footer(s);
        }
        println!();
        let mut ok = true;
        for (what, delivered) in [
            ("trading-server", real.map(|f| f.delivered)),
            ("baseline", base.map(|f| f.delivered)),
            (
                "stalled: live readers in A",
                stalled.as_ref().map(|s| s.before.delivered),
            ),
            (
                "stalled: live readers in B",
                stalled.as_ref().map(|s| s.during.delivered),
            ),
        ] {
            if delivered.unwrap_or(0.0) <= 0.0 {
                eprintln!("ws: {what}: no update delivered");
                ok = false;
            }
        }
        ok
    }

    async fn full(&mut self) -> bool {
        let runs = self.o.runs;
        let (max, why) = max_connections(self.o.fd_limit);
        println!(
            "WebSocket, {runs} run(s) of {:?} each (rounded to whole broadcast intervals) after {:?} of warm-up, medians; server {}; one load-generator process on the same cores\n",
            self.window(),
            self.warmup,
            self.o.server
        );
        println!("max = {} connections: {why}.\n", int(max as f64));

        let n = DENSITY_CONNS.min(max);
        println!(
            "Density: {} idle connections subscribed to 1 topic each, market clock frozen; server RSS (median of {runs} samples 1 s apart) minus RSS before connecting.\n",
            int(n as f64)
        );
        stats::header(
            &[
                "server",
                "conns",
                "RSS before MiB",
                "RSS with conns MiB",
                "KiB / conn",
            ],
            1,
        );
        let real_density = self.density(Target::Real, n).await;
        let base_density = self.density(Target::Baseline, n).await;
        if let (Some(r), Some(b)) = (real_density, base_density) {
            println!(
                "\nPer-connection RSS, trading-server / baseline: {:.2}",
                r / b
            );
        }
        println!();

        println!("Fan-out at the maximum rate: interval 10 ms, clock speed {SPEED} (every subscribed topic changes every tick); the baseline sends topics/conn frames per tick.\n");
        Self::fanout_header();
        let mut sizes: Vec<usize> = FULL_CONNS.iter().map(|&c| c.min(max)).collect();
        sizes.push(max);
        sizes.dedup();
        let mut pairs = Vec::new();
        for &n in &sizes {
            for per_conn in MIXES {
                let real = self.fanout(Target::Real, n, per_conn, 10).await;
                let base = self.fanout(Target::Baseline, n, per_conn, 10).await;
                pairs.push((n, per_conn, real, base));
            }
        }
        println!("\nRatios, trading-server / baseline:\n");
        stats::header(&["conns", "topics/conn", "delivered", "p99"], 0);
        for (n, per_conn, real, base) in &pairs {
            let (Some(r), Some(b)) = (real, base) else {
                continue;
            };
            let p99 = match (r.latency, b.latency) {
                (Some(x), Some(y)) if y.p99 > 0.0 => format!("{:.2}", x.p99 / y.p99),
                _ => "n/a".into(),
            };
            stats::row(&[
                int(*n as f64),
                per_conn.to_string(),
                format!("{:.2}", r.delivered / b.delivered.max(f64::MIN_POSITIVE)),
                p99,
            ]);
        }
        println!();

        let n = FULL_CONNS[1].min(max);
        let max_delivered = pairs
            .iter()
            .find(|p| p.0 == n && p.1 == 1)
            .and_then(|p| p.2)
            .map(|f| f.delivered)
            .filter(|d| *d > 0.0);
        let half = match max_delivered {
            Some(d) => ((2.0 * n as f64 * 1000.0 / d).ceil() as u64).max(10),
            None => {
                eprintln!("ws: no trading-server figure at {n} x 1 topic: the half rate falls back to 100 ms");
                100
            }
        };
        println!(
            "Half rate: {} connections, 1 topic, interval {half} ms = ceil(2 x N x 1000 / {} msgs/s, trading-server's delivered rate at {} x 1 topic above), so about half that rate is offered.\n",
            int(n as f64),
            max_delivered.map_or("n/a".into(), int),
            int(n as f64)
        );
        Self::fanout_header();
        self.fanout(Target::Real, n, 1, half).await;
        self.fanout(Target::Baseline, n, 1, half).await;
        println!();

        println!(
            "Stalled readers: {} connections, 1 topic, interval {half} ms, trading-server with --slow-client-timeout {STALL_TIMEOUT_S}; window A all read, window B one connection in {STALL_EVERY} (a different topic for each) stops reading, with a {} KiB receive buffer so what they are sent backs up into the server's socket (Send-Q: what the server's kernel holds for each at the end of B; until that socket is full the server's own queue is not involved). Live = the other connections.\n",
            int(n as f64),
            ws::STALLED_RCVBUF / 1024
        );
        Self::stalled_header();
        if let Some(s) = self.stalled(n, half, STALL_EVERY).await {
            Self::stalled_footer(&s);
        }
        println!();
        true
    }
}
