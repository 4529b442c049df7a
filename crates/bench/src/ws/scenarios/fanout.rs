//! Fan-out: every connection subscribed to its topics, updates counted
//! and their lag measured per window.

use crate::stats::{self, int, Percentiles};

use super::{conns_cell, figures, measure, Bench, Figures, Target};

impl Bench<'_> {
    pub(super) async fn fanout(
        &mut self,
        target: Target,
        n: usize,
        per_conn: usize,
        interval_ms: u64,
    ) -> Option<Figures> {
        match self.try_fanout(target, n, per_conn, interval_ms).await {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "ws: {} fan-out {n} x {per_conn} topics failed: {e}",
                    target.name()
                );
                self.failed = true;
                None
            }
        }
    }

    pub(super) async fn try_fanout(
        &mut self,
        target: Target,
        n: usize,
        per_conn: usize,
        interval_ms: u64,
    ) -> Result<Figures, String> {
        let label = format!("fan-out {n} x {per_conn} topics, {interval_ms} ms");
        let server = self.start(target, interval_ms, per_conn, &[]).await?;
        let fleet = self
            .fleet(&server, &label, n, per_conn, None, self.o.runs)
            .await;
        let (ready, requested) = (fleet.ready, fleet.requested());
        let mut windows = Vec::new();
        if ready > 0 {
            tokio::time::sleep(self.warmup).await;
            for k in 1..=self.o.runs {
                windows
                    .push(measure(&fleet, &server.process, k, self.window_for(interval_ms)).await);
            }
        }
        let mut stats = fleet.close().await;
        self.stop(server).await;
        if ready == 0 {
            return Err("no connection opened".into());
        }
        self.check_closed(&stats, &format!("{} {label}", target.name()));
        let runs: Vec<Figures> = windows
            .iter()
            .enumerate()
            .map(|(i, w)| figures(&mut stats, i + 1, w, |_| true))
            .collect();
        let f = Figures::median(&runs);
        let offered = (ready * per_conn) as f64 * 1000.0 / interval_ms as f64;
        let [p50, p99, p999] = Percentiles::cells(f.latency);
        stats::row(&[
            target.name().into(),
            conns_cell(ready, requested),
            per_conn.to_string(),
            interval_ms.to_string(),
            int(offered),
            int(f.delivered),
            p50,
            p99,
            p999,
            format!("{:.0}", f.server_cpu),
            format!("{:.0}", f.bench_cpu),
        ]);
        Ok(f)
    }

    pub(super) fn fanout_header() {
        stats::header(
            &[
                "server",
                "conns",
                "topics/conn",
                "interval ms",
                "offered msgs/s",
                "delivered msgs/s",
                "p50 ms",
                "p99 ms",
                "p999 ms",
                "server CPU ms / 100k msgs",
                "bench CPU ms / 100k msgs",
            ],
            1,
        );
    }
}
