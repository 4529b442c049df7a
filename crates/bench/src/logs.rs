//! What the access log costs: the same requests against three synthetic
//! servers, one logging every request in the default terminal format, one
//! in JSON, and one without an access log (`--log-level warn`), side by
//! side in one invocation. The servers' stderr is read by the bench, as a
//! terminal or a log collector would read it.

use crate::rest::{medians, Scenario};
use crate::server::{self, Process};
use crate::stats;
use crate::Options;

pub async fn run_all(o: &Options) -> bool {
    let frozen = ("--clock-speed", "0".to_string());
    let mut servers: Vec<(&str, Process)> = Vec::new();
    for (name, format, level) in [
        ("none (--log-level warn)", "json", "warn"),
        ("terminal (default)", "terminal", "info"),
        ("json", "json", "info"),
    ] {
        let mut flags = vec![
            frozen.clone(),
            ("--log-format", format.to_string()),
            ("--log-level", level.to_string()),
        ];
        if level == "warn" {
            // It never logs where it listens: it is told.
            match server::free_address() {
                Ok(address) => flags.push(("--bind", address)),
                Err(e) => {
                    eprintln!("trading-bench: {e}");
                    return false;
                }
            }
        }
        match server::trading_server(&o.server, &flags).await {
            Ok(s) => servers.push((name, s)),
            Err(e) => {
                eprintln!("trading-bench: the {name} server: {e}");
                for (_, s) in servers {
                    s.stop().await;
                }
                return false;
            }
        }
    }
    let to = server::CLOCK_START;
    let scenarios = [
        (
            "bars D x400",
            format!(
                "/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=0&to_time={to}&count_back=400"
            ),
        ),
        ("health", "/api/v1/health".to_string()),
    ];
    let conns = if o.quick { 2 } else { 32 };
    println!(
        "Access log: {} run(s) of {:?} each at {conns} connections, medians; synthetic source\n",
        o.runs, o.duration
    );
    stats::header(
        &[
            "scenario",
            "access log",
            "req/s",
            "vs none",
            "p50 ms",
            "p99 ms",
            "server CPU ms / 1k req",
        ],
        2,
    );
    let mut ok = true;
    for (name, path) in &scenarios {
        let s = Scenario {
            name,
            method: "GET",
            path: path.clone(),
            body: String::new(),
            headers: String::new(),
        };
        let mut none = None;
        for (log, server) in &servers {
            let what = format!("{name} ({log})");
            let Some(m) = medians(o, server, &s, conns, &what, &mut ok).await else {
                continue;
            };
            let baseline = *none.get_or_insert(m.per_second);
            stats::row(&[
                name.to_string(),
                log.to_string(),
                m.rate,
                format!(
                    "{:.0}%",
                    100.0 * m.per_second / baseline.max(f64::MIN_POSITIVE)
                ),
                m.p50,
                m.p99,
                m.cpu,
            ]);
        }
    }
    println!();
    for (_, s) in servers {
        s.stop().await;
    }
    ok
}
