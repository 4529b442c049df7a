//! Several nodes on one market (`--bus`, `--store postgres://`): what the
//! bus costs and what it gives.
//!
//! * ingest through the bus: trades/s as fast as it goes, the CPU of the
//!   nodes and of NATS per trade, and the trade-to-WebSocket latency on the
//!   node that took the trade and on another node, against one node
//!   without a bus on the same database engine;
//! * delivery: WebSocket updates delivered per second to N connections on
//!   one node against N/2 on each of two nodes, all on the same cores.
//!
//! Two nodes run twice: sharing every core (each sizes its thread pools
//! for all of them, so there are twice the threads there are cores), and
//! each confined to a core of its own, as a container or VM per node
//! would have them.
//!
//! Every run gets a fresh database and stream, dropped afterwards.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use crate::server::{self, Process};
use crate::services::{self, Database};
use crate::stats::{self, int, Percentiles};
use crate::store::{self, Scratch};
use crate::ws::{self, Fleet, FleetSpec, Topic};
use crate::Options;

/// One market: a database with the ingest symbols, and its nodes.
struct Market {
    db: Database,
    stream: Option<String>,
    nodes: Vec<Process>,
}

impl Market {
    /// `nodes` nodes, on a bus when `bus`, placed on the cores as `placement` says.
    async fn start(
        o: &Options,
        scratch: &Scratch,
        nodes: usize,
        bus: bool,
        placement: Placement,
    ) -> Result<Market, String> {
        let db = Database::create().await?;
        let mut market = Market {
            stream: bus.then(services::stream_name),
            nodes: Vec::new(),
            db,
        };
        let started = async {
            store::register_ingest_symbols(o, scratch, &market.db.url)?;
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            for i in 0..nodes {
                let mut flags = vec![
                    ("--store", market.db.url.clone()),
                    ("--ingest-token", store::TOKEN.to_string()),
                    ("--clock-speed", "1".to_string()),
                ];
                if let Some(stream) = &market.stream {
                    flags.push(("--bus", services::nats_url()));
                    flags.push(("--bus-stream", stream.clone()));
                }
                let core = match placement {
                    Placement::Shared => None,
                    Placement::CoreEach => Some(i % cores),
                };
                let node = server::trading_server_on(&o.server, &flags, core).await?;
                ready(&node.address).await?;
                market.nodes.push(node);
            }
            Ok::<_, String>(())
        }
        .await;
        match started {
            Ok(()) => Ok(market),
            Err(e) => {
                market.stop().await;
                Err(e)
            }
        }
    }

    fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }

    fn cpu_seconds(&self) -> f64 {
        self.nodes.iter().map(Process::cpu_seconds).sum()
    }

    async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
        if let Some(stream) = &self.stream {
            services::delete_stream(stream).await;
        }
        self.db.remove().await;
    }
}

/// How the nodes share the machine's cores.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Every node may run on every core, and sizes its thread pools for
    /// all of them: two nodes on two cores run twice the threads there are
    /// cores for.
    Shared,
    /// Node i is confined to core i (mod the cores), and sizes its pools
    /// for that one: what a container or VM of its own per node gives.
    /// One node alone is the same as `Shared`.
    CoreEach,
}

impl Placement {
    fn describe(self, nodes: usize) -> &'static str {
        match (self, nodes) {
            (_, 1) => "",
            (Placement::Shared, _) => ", sharing the cores",
            (Placement::CoreEach, _) => ", one core each",
        }
    }
}

/// Waits until a node says it is ready (caught up with the bus).
async fn ready(address: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match crate::http::get(address, "/api/v1/ready").await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(format!("{address} not ready: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

pub async fn run_all(o: &Options) -> bool {
    let scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("nodes: {e}");
            return false;
        }
    };
    let mut ok = true;
    if let Err(e) = ingest_table(o, &scratch).await {
        eprintln!("nodes ingest: {e}");
        ok = false;
    }
    if let Err(e) = delivery_table(o, &scratch).await {
        eprintln!("nodes delivery: {e}");
        ok = false;
    }
    ok
}

/// What one run of an ingest row measured.
struct Run {
    trades_per_s: Option<f64>,
    nodes_cpu_ms_per_100k: Option<f64>,
    nats_cpu_ms_per_100k: Option<f64>,
    /// Trade-to-update latency on the node that took the probe trades,
    /// and on another node (None with one node).
    same: Option<Percentiles>,
    other: Option<Percentiles>,
}

#[derive(Clone, Copy)]
enum Load {
    ProbeOnly,
    Rate(f64),
    Unlimited,
}

async fn ingest_run(
    o: &Options,
    scratch: &Scratch,
    nodes: usize,
    bus: bool,
    placement: Placement,
    load: Load,
) -> Result<Run, String> {
    let market = Market::start(o, scratch, nodes, bus, placement).await?;
    let addresses = market.addresses();
    let nats = services::nats_pid().filter(|_| bus);
    let nats_before = nats.map(server::cpu_seconds);
    let cpu_before = market.cpu_seconds();
    let stop = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn(store::probe(
        addresses[0].clone(),
        addresses.clone(),
        o.duration,
        Arc::clone(&stop),
    ));
    let sent = match load {
        Load::ProbeOnly => {
            tokio::time::sleep(o.duration).await;
            None
        }
        Load::Rate(rate) => Some(store::throughput(&addresses, o.duration, Some(rate)).await),
        Load::Unlimited => Some(store::throughput(&addresses, o.duration, None).await),
    };
    let latencies = probe.await.map_err(|e| e.to_string());
    let cpu = market.cpu_seconds() - cpu_before;
    let nats_cpu = nats
        .zip(nats_before)
        .map(|(pid, before)| server::cpu_seconds(pid) - before);
    market.stop().await;
    let sent = sent.transpose()?;
    let mut latencies = latencies??;
    let trades = sent.as_ref().map_or(0, |l| l.trades);
    let per_100k = |seconds: f64| seconds * 1000.0 / (trades.max(1) as f64 / 100_000.0);
    let mut other = latencies.get_mut(1).and_then(|l| Percentiles::of(l));
    if nodes < 2 {
        other = None;
    }
    Ok(Run {
        trades_per_s: sent
            .as_ref()
            .map(|l| l.trades as f64 / l.elapsed.as_secs_f64()),
        nodes_cpu_ms_per_100k: sent.as_ref().map(|_| per_100k(cpu)),
        nats_cpu_ms_per_100k: sent.as_ref().and(nats_cpu).map(per_100k),
        same: Percentiles::of(&mut latencies[0]),
        other,
    })
}

fn median_of(runs: &[Run], f: impl Fn(&Run) -> Option<f64>) -> String {
    let values: Vec<f64> = runs.iter().filter_map(f).collect();
    if values.is_empty() {
        "-".into()
    } else {
        int(stats::median(values))
    }
}

async fn ingest_table(o: &Options, scratch: &Scratch) -> Result<(), String> {
    println!(
        "Nodes: ingest through the bus (PostgreSQL store, NATS JetStream at {}), {} senders x {} \
         trades per request spread over the nodes; trade-to-WebSocket latency of {} single-trade \
         requests/s sent to the first node, seen on it and on the second; {} run(s) of {:?}, \
         medians\n",
        services::nats_url(),
        store::SENDERS,
        store::BATCH,
        store::PROBE_RATE,
        o.runs,
        o.duration
    );
    stats::header(
        &[
            "nodes",
            "load",
            "trades/s",
            "nodes CPU ms / 100k trades",
            "NATS CPU ms / 100k trades",
            "same node p50 ms",
            "p99 ms",
            "p999 ms",
            "other node p50 ms",
            "p99 ms",
            "p999 ms",
        ],
        2,
    );
    let mut most = None;
    use Placement::{CoreEach, Shared};
    let rows: [(usize, bool, Placement, Option<Load>); 8] = [
        (1, false, Shared, Some(Load::Unlimited)),
        (1, true, Shared, Some(Load::Unlimited)),
        (2, true, Shared, Some(Load::Unlimited)),
        // Half the most of the two nodes just above.
        (2, true, Shared, None),
        (2, true, Shared, Some(Load::ProbeOnly)),
        (2, true, CoreEach, Some(Load::Unlimited)),
        (2, true, CoreEach, None),
        (2, true, CoreEach, Some(Load::ProbeOnly)),
    ];
    for (nodes, bus, placement, load) in rows {
        let load = load.unwrap_or(Load::Rate(most.unwrap_or(10_000.0) / 2.0));
        let mut runs = Vec::new();
        for _ in 0..o.runs {
            runs.push(ingest_run(o, scratch, nodes, bus, placement, load).await?);
        }
        if nodes == 2 && matches!(load, Load::Unlimited) {
            let rates: Vec<f64> = runs.iter().filter_map(|r| r.trades_per_s).collect();
            most = Some(stats::median(rates));
        }
        let same: Vec<_> = runs.iter().map(|r| r.same).collect();
        let other: Vec<_> = runs.iter().map(|r| r.other).collect();
        let [s50, s99, s999] = Percentiles::cells(Percentiles::median_of(&same));
        let [o50, o99, o999] = Percentiles::cells(Percentiles::median_of(&other));
        let setup = match (nodes, bus) {
            (1, false) => "1, no bus".to_string(),
            (n, _) => format!("{n}, bus{}", placement.describe(n)),
        };
        let load = match load {
            Load::ProbeOnly => "probe only".to_string(),
            Load::Rate(r) => format!("paced at {} trades/s", int(r)),
            Load::Unlimited => "as fast as it goes".to_string(),
        };
        stats::row(&[
            setup,
            load,
            median_of(&runs, |r| r.trades_per_s),
            median_of(&runs, |r| r.nodes_cpu_ms_per_100k),
            median_of(&runs, |r| r.nats_cpu_ms_per_100k),
            s50,
            s99,
            s999,
            o50,
            o99,
            o999,
        ]);
    }
    println!();
    Ok(())
}

/// Trades per second offered in the delivery table: every request of
/// 1,000 trades updates one topic each connection follows, so this offers
/// 80 updates a second to every connection, more than the machine can
/// deliver to 10,000 of them.
const DELIVERY_RATE: f64 = 80_000.0;

/// N WebSocket connections, each following every ingest symbol's minute
/// bars, on one node or split over two, with the same trades offered to
/// both: updates delivered per second. The ingest is the same in both
/// setups, so what differs is what fanning out costs.
async fn delivery_table(o: &Options, scratch: &Scratch) -> Result<(), String> {
    let connections = if o.quick { 100 } else { 10_000 };
    println!(
        "Nodes: delivery, {} WebSocket connections each following the {} ingest symbols' minute \
         bars, on one node or half on each of two; trades paced at {} a second (sent to the \
         nodes in turn); {} run(s) of {:?}, medians\n",
        int(connections as f64),
        store::SENDERS,
        int(DELIVERY_RATE),
        o.runs,
        o.duration
    );
    stats::header(
        &[
            "nodes",
            "connections per node",
            "trades/s",
            "updates delivered/s",
            "vs one node",
            "nodes CPU s",
        ],
        1,
    );
    let topics: Arc<Vec<Topic>> = Arc::new(
        (0..store::SENDERS)
            .map(|i| Topic {
                symbol: format!("INGEST{i}"),
                resolution: "1".into(),
            })
            .collect(),
    );
    let mut one = None;
    for (nodes, placement) in [
        (1usize, Placement::Shared),
        (2, Placement::Shared),
        (2, Placement::CoreEach),
    ] {
        let mut rows = Vec::new();
        for _ in 0..o.runs {
            let market = Market::start(o, scratch, nodes, true, placement).await?;
            let mut fleets = Vec::new();
            for address in market.addresses() {
                fleets.push(
                    Fleet::open(FleetSpec {
                        address,
                        connections: connections / nodes,
                        topics: Arc::clone(&topics),
                        topics_per_conn: topics.len(),
                        await_replies: true,
                        stall_every: None,
                        windows: 1,
                        ready_timeout: Duration::from_secs(60),
                    })
                    .await,
                );
            }
            let cpu_before = market.cpu_seconds();
            for fleet in &fleets {
                fleet.window(1);
            }
            let load =
                store::throughput(&market.addresses(), o.duration, Some(DELIVERY_RATE)).await;
            for fleet in &fleets {
                fleet.window(0);
            }
            let cpu = market.cpu_seconds() - cpu_before;
            let mut delivered = 0;
            for fleet in fleets {
                let mut stats = fleet.close().await;
                delivered += ws::totals(&mut stats, 1, |_| true).updates;
            }
            market.stop().await;
            let load = load?;
            let seconds = load.elapsed.as_secs_f64();
            rows.push((
                load.trades as f64 / seconds,
                delivered as f64 / seconds,
                cpu,
            ));
        }
        let delivered = stats::median(rows.iter().map(|r| r.1).collect());
        if nodes == 1 {
            one = Some(delivered);
        }
        stats::row(&[
            format!("{nodes}{}", placement.describe(nodes)),
            int((connections / nodes) as f64),
            int(stats::median(rows.iter().map(|r| r.0).collect())),
            int(delivered),
            one.map_or("-".into(), |one| format!("{:.0}%", delivered / one * 100.0)),
            format!("{:.1}", stats::median(rows.iter().map(|r| r.2).collect())),
        ]);
    }
    println!();
    Ok(())
}
