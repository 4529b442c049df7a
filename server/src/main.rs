use clap::Parser;
use slog::{info, o};
use trading_server::{logging, Config};

#[tokio::main]
async fn main() {
    let config = Config::parse();
    let log = logging::logger(config.log_level, config.log_format);
    let server = match trading_server::start(&config, log.new(o!())).await {
        Ok(server) => server,
        Err(e) => {
            slog::error!(log, "failed to start"; "error" => &e);
            // Give the async drain a moment to flush before exiting.
            drop(log);
            eprintln!("trading-server: {e}");
            std::process::exit(1);
        }
    };
    info!(log, "listening"; "address" => %server.local_addr(), "seed" => config.seed);
    shutdown_signal().await;
    info!(log, "shutting down"; "websocket_connections" => server.app_private().ws.open_connections());
    if let Err(e) = trading_server::server::stop(server).await {
        slog::error!(log, "shutdown failed"; "error" => e);
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
