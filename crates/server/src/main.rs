use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use slog::{info, o};
use trading_server::{logging, Config};
use trading_store::backup::{self, BackupArgs};
use trading_store::import::{self, ExportArgs, ImportArgs};

/// `trading-server [FLAGS]` serves; `import` and `export` move bars in and
/// out of a store; `backup` copies one.
#[derive(Parser)]
#[command(
    name = "trading-server",
    version,
    about = "trading-pro market-data server (REST + WebSocket)",
    args_conflicts_with_subcommands = true,
    args_override_self = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Import bars from CSV files (or symbols from a JSON file) into a store.
    Import(ImportArgs),
    /// Write a symbol's bars from a store as CSV, in the format import reads.
    Export(ExportArgs),
    /// Write a consistent copy of a store, also while a server is using it.
    Backup(BackupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let done = match &cli.command {
        Some(Command::Import(args)) => import::import(args),
        Some(Command::Export(args)) => import::export(args),
        Some(Command::Backup(args)) => backup::backup(args),
        None => {
            trading_server::server::limit_malloc_arenas();
            return serve(cli.serve);
        }
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(import::Failed) => ExitCode::FAILURE,
    }
}

#[tokio::main]
async fn serve(config: Config) -> ExitCode {
    let log = logging::logger(config.log_level, config.log_format);
    let server = match trading_server::start(&config, log.new(o!())).await {
        Ok(server) => server,
        Err(e) => {
            slog::error!(log, "failed to start"; "error" => &e);
            logging::flush();
            eprintln!("trading-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let context = server.context();
    match &context.bus {
        None => info!(log, "listening";
            "address" => %server.local_addr(),
            "url" => format!("{}://{}", if config.tls_cert.is_some() { "https" } else { "http" }, server.local_addr()),
            "source" => context.source.kind(),
            "store" => context.source.describe(),
            // The seed makes the synthetic market; a store has none.
            "seed" => (context.source.kind() == "synthetic").then_some(config.seed)),
        Some(bus) => info!(log, "listening";
            "address" => %server.local_addr(),
            "url" => format!("{}://{}", if config.tls_cert.is_some() { "https" } else { "http" }, server.local_addr()),
            "source" => context.source.kind(),
            "store" => context.source.describe(),
            "bus" => bus.log.describe(),
            "stream" => bus.log.name(),
            "stream_incarnation" => bus.resumes_from.as_ref().map(|(key, _)| key.clone()),
            "resumes_after_entry" => bus.resumes_from.as_ref().map(|(_, seq)| *seq)),
    }
    let first = shutdown_signal().await;
    let delay = Duration::from_secs_f64(config.drain_delay);
    if first == Signal::Terminate && !delay.is_zero() {
        // A load balancer that probes /ready takes the node out of
        // rotation during the delay; clients already here are still served.
        server.leave_rotation();
        info!(log, "leaving rotation: /api/v1/ready answers 503, then the drain begins";
            "drain_delay" => ?delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_signal() => info!(log, "second signal: draining now"),
        }
    }
    info!(log, "shutting down";
        "connections" => server.open_connections(),
        "websocket_connections" => server.context().ws.open_connections());
    if let Err(e) = server.stop().await {
        slog::error!(log, "shutdown failed"; "error" => e);
    }
    logging::flush();
    ExitCode::SUCCESS
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Interrupt,
    Terminate,
}

/// Resolves on SIGINT or SIGTERM, saying which.
async fn shutdown_signal() -> Signal {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => Signal::Interrupt,
            _ = term.recv() => Signal::Terminate,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
        Signal::Interrupt
    }
}
