//! The embedded store's write-ahead log under back-to-back ingest: how big
//! it grows (`<store>-wal`, sampled every 20 ms) and what the ingest
//! throughput is meanwhile. Run against an older server (`--server`) for
//! the figures before the log was bounded.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::stats::{self, int, Percentiles};
use crate::Options;

use super::{ingest_server, throughput_of, Scratch};

/// The load of the fault report: four clients, 100 trades per request,
/// back to back.
const SENDERS: usize = 4;
const BATCH: usize = 100;

pub(super) async fn wal_table(o: &Options, scratch: &Scratch) -> Result<(), String> {
    let duration = if o.quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(40)
    };
    println!(
        "Store log: {SENDERS} connections x {BATCH} trades per request back to back into an \
         embedded SQLite store for {duration:?}, every answer durable; the write-ahead log's \
         size sampled every 20 ms; {} run(s), medians\n",
        o.runs
    );
    stats::header(
        &[
            "server",
            "trades/s",
            "requests/s",
            "request p50 ms",
            "request p99 ms",
            "WAL peak MB",
            "WAL at end MB",
        ],
        1,
    );
    let mut rows = Vec::new();
    for run in 0..o.runs {
        let name = format!("wal-{run}");
        let server = ingest_server(o, scratch, &name).await?;
        let wal = scratch.path(&format!("{name}.db-wal"));
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop, wal) = (Arc::clone(&peak), Arc::clone(&stop), wal.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let len = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    peak.fetch_max(len, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        let load = throughput_of(
            std::slice::from_ref(&server.address),
            duration,
            None,
            SENDERS,
            BATCH,
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.await;
        let end = std::fs::metadata(&wal).map_or(0, |m| m.len());
        server.stop().await;
        let mut load = load?;
        let seconds = load.elapsed.as_secs_f64();
        rows.push((
            load.trades as f64 / seconds,
            load.requests as f64 / seconds,
            Percentiles::of(&mut load.latencies_us),
            peak.load(Ordering::Relaxed) as f64 / 1e6,
            end as f64 / 1e6,
        ));
    }
    let latency: Vec<_> = rows.iter().map(|r| r.2).collect();
    let [p50, p99, _] = Percentiles::cells(Percentiles::median_of(&latency));
    type Row = (f64, f64, Option<Percentiles>, f64, f64);
    let median = |f: fn(&Row) -> f64| stats::median(rows.iter().map(f).collect());
    stats::row(&[
        o.server.clone(),
        int(median(|r| r.0)),
        int(median(|r| r.1)),
        p50,
        p99,
        format!("{:.1}", median(|r| r.3)),
        format!("{:.1}", median(|r| r.4)),
    ]);
    println!();
    Ok(())
}
