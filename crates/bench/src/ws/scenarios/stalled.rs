//! Stalled readers: what connections that stop reading cost the rest.

use crate::server;
use crate::stats::{self, int};
use crate::ws::ConnStats;

use super::{
    conns_cell, figures, mean, measure, mib, Bench, Figures, Stalled, Target, STALL_TIMEOUT_S,
};

impl Bench<'_> {
    pub(super) async fn stalled(
        &mut self,
        n: usize,
        interval_ms: u64,
        every: usize,
    ) -> Option<Stalled> {
        match self.try_stalled(n, interval_ms, every).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("ws: stalled readers failed: {e}");
                self.failed = true;
                None
            }
        }
    }

    /// Window A with everyone reading, then window B with one connection in
    /// `every` not reading at all; per run, on the same connections.
    pub(super) async fn try_stalled(
        &mut self,
        n: usize,
        interval_ms: u64,
        every: usize,
    ) -> Result<Stalled, String> {
        let window = self.window_for(interval_ms);
        if window.as_secs_f64() >= STALL_TIMEOUT_S {
            eprintln!(
                "ws: warning: windows of {window:?} outlast the {STALL_TIMEOUT_S} s slow-client timeout: stalled readers will be closed during B"
            );
        }
        let runs = self.o.runs;
        let timeout = [("--slow-client-timeout", STALL_TIMEOUT_S.to_string())];
        let server = self.start(Target::Real, interval_ms, 1, &timeout).await?;
        let label = format!("stalled readers {n}, 1 in {every}, {interval_ms} ms");
        let fleet = self
            .fleet(&server, &label, n, 1, Some(every), 2 * runs)
            .await;
        let (ready, requested) = (fleet.ready, fleet.requested());
        let mut windows = Vec::new();
        let mut rss_end_a = Vec::new();
        let mut send_q = Vec::new();
        let server_port = server
            .process
            .address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ready > 0 {
            tokio::time::sleep(self.warmup).await;
            for r in 0..runs {
                let a = measure(&fleet, &server.process, 2 * r + 1, window).await;
                rss_end_a.push(server.process.rss_kib() as f64);
                fleet.stall();
                let b = measure(&fleet, &server.process, 2 * r + 2, window).await;
                send_q.extend(server::send_queues(server_port, &fleet.stalled_ports()));
                fleet.resume();
                windows.push((a, b));
                tokio::time::sleep(self.settle).await;
            }
        }
        let mut stats = fleet.close().await;
        self.stop(server).await;
        if ready == 0 {
            return Err("no connection opened".into());
        }
        self.check_closed(&stats, &label);
        let live = |s: &ConnStats| !s.stalls;
        let mut before = Vec::new();
        let mut during = Vec::new();
        let mut change = Vec::new();
        for (r, (a, b)) in windows.iter().enumerate() {
            let fa = figures(&mut stats, 2 * r + 1, a, live);
            let fb = figures(&mut stats, 2 * r + 2, b, live);
            change.push((fb.delivered / fa.delivered.max(f64::MIN_POSITIVE) - 1.0) * 100.0);
            before.push(fa);
            during.push(fb);
        }
        let stalled: Vec<&ConnStats> = stats.iter().filter(|s| s.stalls && !s.failed).collect();
        let unread: Vec<f64> = stalled
            .iter()
            .filter_map(|s| s.unread_bytes)
            .map(|b| b as f64 / 1024.0)
            .collect();
        let s = Stalled {
            before: Figures::median(&before),
            during: Figures::median(&during),
            change_pct: stats::median(change),
            rss_end_a_kib: stats::median(rss_end_a),
            max_rss_b_kib: stats::median(windows.iter().map(|w| w.1.max_rss_kib as f64).collect()),
            stalled: stalled.len(),
            stalled_closed: stalled.iter().filter(|s| s.closed.is_some()).count(),
            unread_kib: mean(&unread),
            send_q_kib: mean(
                &send_q
                    .iter()
                    .map(|b| *b as f64 / 1024.0)
                    .collect::<Vec<_>>(),
            ),
        };
        let p99 = |f: &Figures| f.latency.map_or("n/a".into(), |l| stats::ms(l.p99));
        stats::row(&[
            Target::Real.name().into(),
            conns_cell(ready, requested),
            int(s.stalled as f64),
            interval_ms.to_string(),
            int(s.before.delivered),
            int(s.during.delivered),
            format!("{:+.1}%", s.change_pct),
            p99(&s.before),
            p99(&s.during),
            mib(s.rss_end_a_kib),
            mib(s.max_rss_b_kib),
            s.unread_kib.map_or("n/a".into(), |k| format!("{k:.1}")),
            s.send_q_kib.map_or("n/a".into(), |k| format!("{k:.1}")),
        ]);
        Ok(s)
    }

    pub(super) fn stalled_header() {
        stats::header(
            &[
                "server",
                "conns",
                "stalled",
                "interval ms",
                "live msgs/s A",
                "live msgs/s B",
                "change",
                "live p99 ms A",
                "live p99 ms B",
                "RSS end of A MiB",
                "max RSS in B MiB",
                "unread KiB / stalled socket",
                "server Send-Q KiB / stalled socket",
            ],
            1,
        );
    }

    pub(super) fn stalled_footer(s: &Stalled) {
        println!(
            "\nStalled connections closed by the server during B: {} of {}.",
            s.stalled_closed, s.stalled
        );
    }
}
