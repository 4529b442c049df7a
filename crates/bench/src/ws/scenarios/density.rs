//! Density: server memory per idle subscribed connection.

use std::time::Duration;

use crate::stats;

use super::{conns_cell, mib, Bench, Target};

impl Bench<'_> {
    /// Server memory per idle subscribed connection: the growth of VmRSS
    /// over N, measured with the market state of every topic already built
    /// (see `ws::capture`) so that is not counted per connection.
    pub(super) async fn density(&mut self, target: Target, n: usize) -> Option<f64> {
        let result = async {
            let server = self.start(target, 0, 0, &[]).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let before = server.process.rss_kib() as f64;
            let fleet = self.fleet(&server, "density", n, 1, None, 0).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut samples = Vec::new();
            for r in 0..self.o.runs {
                if r > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                samples.push(server.process.rss_kib() as f64);
            }
            let (ready, requested) = (fleet.ready, fleet.requested());
            let stats = fleet.close().await;
            self.stop(server).await;
            self.check_closed(&stats, &format!("{} density", target.name()));
            if ready == 0 {
                return Err("no connection opened".to_string());
            }
            let with = stats::median(samples);
            let per_conn = (with - before) / ready as f64;
            stats::row(&[
                target.name().into(),
                conns_cell(ready, requested),
                mib(before),
                mib(with),
                format!("{per_conn:.1}"),
            ]);
            Ok(per_conn)
        }
        .await;
        result
            .map_err(|e| {
                eprintln!("ws: {} density failed: {e}", target.name());
                self.failed = true;
            })
            .ok()
    }
}
