//! trading-bench: starts the servers it measures as child processes, drives
//! them over loopback sockets and prints markdown tables of medians.
//!
//! Benchmarks report; they never assert timings. `--quick` (run by the test
//! command) does fail when nothing at all got through, which is a behaviour
//! check that keeps the harness from rotting.

mod abuse;
mod baseline;
mod broker;
mod engine;
mod http;
mod logs;
mod nodes;
mod orders;
mod rest;
mod server;
mod services;
mod stats;
mod store;
mod ws;

use std::time::Duration;

const USAGE: &str =
    "usage: trading-bench [--server PATH] [--quick] [--only engine|rest|compression|auth|logs|store|wal|nodes|ws|abuse|broker] [--runs N] [--seconds S]";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Engine,
    Rest,
    Compression,
    Auth,
    Logs,
    Store,
    /// The store's write-ahead log alone (also part of `store`).
    Wal,
    Nodes,
    Ws,
    Abuse,
    /// The paper broker's matcher, in-process.
    Broker,
}

pub struct Options {
    pub server: String,
    pub quick: bool,
    pub only: Option<Part>,
    pub runs: usize,
    pub duration: Duration,
    /// RLIMIT_NOFILE after raising it, which the servers inherit.
    pub fd_limit: u64,
}

fn parse_args(args: &[String], fd_limit: u64) -> Result<Options, String> {
    let mut o = Options {
        server: "target/release/trading-server".into(),
        quick: false,
        only: None,
        runs: 3,
        duration: Duration::from_secs(5),
        fd_limit,
    };
    let mut args = args.iter();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--server" => o.server = value("--server")?.clone(),
            "--quick" => o.quick = true,
            "--only" => {
                o.only = Some(match value("--only")?.as_str() {
                    "engine" => Part::Engine,
                    "rest" => Part::Rest,
                    "compression" => Part::Compression,
                    "auth" => Part::Auth,
                    "logs" => Part::Logs,
                    "store" => Part::Store,
                    "wal" => Part::Wal,
                    "nodes" => Part::Nodes,
                    "ws" => Part::Ws,
                    "abuse" => Part::Abuse,
                    "broker" => Part::Broker,
                    other => {
                        return Err(format!(
                        "--only: engine, rest, compression, auth, logs, store, wal, nodes, ws, abuse or broker, not {other}"
                    ))
                    }
                })
            }
            "--runs" => {
                o.runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?;
                if o.runs == 0 {
                    return Err("--runs: at least 1".into());
                }
            }
            "--seconds" => {
                let s: f64 = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
                if !(s.is_finite() && s > 0.0) {
                    return Err("--seconds: a positive number".into());
                }
                o.duration = Duration::from_secs_f64(s);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if o.quick {
        o.runs = 1;
        o.duration = Duration::from_millis(300);
    }
    Ok(o)
}

#[tokio::main]
async fn main() {
    let fd_limit = server::raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The baseline runs as a hidden subcommand in its own process, so it is
    // measured from outside exactly like trading-server.
    if args.first().map(String::as_str) == Some("baseline-server") {
        if let Err(e) = baseline::main(&args[1..]).await {
            eprintln!("{e}");
            std::process::exit(1);
        }
        return;
    }
    let options = match parse_args(&args, fd_limit) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut ok = true;
    let runs = |part| options.only.is_none_or(|only| only == part);
    if runs(Part::Engine) {
        ok &= engine::run_all(&options);
    }
    if runs(Part::Rest) {
        ok &= rest::run_all(&options).await;
    }
    if runs(Part::Compression) {
        ok &= rest::compression(&options).await;
    }
    if runs(Part::Auth) {
        ok &= rest::auth(&options).await;
    }
    if runs(Part::Logs) {
        ok &= logs::run_all(&options).await;
    }
    if runs(Part::Store) {
        ok &= store::run_all(&options).await;
    }
    if options.only == Some(Part::Wal) {
        ok &= store::wal_only(&options).await;
    }
    if runs(Part::Nodes) {
        ok &= nodes::run_all(&options).await;
    }
    if runs(Part::Ws) {
        ok &= ws::scenarios::run_all(&options).await;
    }
    if runs(Part::Broker) {
        ok &= broker::run_all(&options);
        ok &= orders::run_all(&options).await;
    }
    if runs(Part::Abuse) {
        ok &= abuse::run_all(&options).await;
    }
    if !ok {
        std::process::exit(1);
    }
}
