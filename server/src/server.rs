//! Assembling and starting the server: context, API description, listener.

use std::sync::Arc;
use std::time::Duration;

use dropshot::{ApiDescription, ConfigDropshot, HandlerTaskMode, HttpServer, ServerBuilder};
use slog::Logger;

use crate::api::TradingServer;
use crate::clock::Clock;
use crate::config::Config;
use crate::context::AppContext;
use crate::cors::CorsPolicy;
use crate::source::{DataSource, UpdateSink};
use crate::synthetic::Synthetic;
use crate::ws::{Hub, Limits, WsState};

/// Largest request body accepted (a quotes request for 100 symbols is ~2 KiB).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The data source the flags choose: `--store`, else the synthetic market
/// (`--symbols` or the built-in catalog). A store pushes its changes to `hub`.
fn open_source(
    config: &Config,
    hub: &Arc<Hub>,
    clock: &Clock,
) -> Result<Arc<dyn DataSource>, String> {
    if let Some(store) = &config.store {
        let sink: Arc<dyn UpdateSink> = Arc::clone(hub) as Arc<dyn UpdateSink>;
        return crate::store::open_source(store, sink);
    }
    let synthetic = match &config.symbols {
        Some(path) => Synthetic::from_file(config.seed, path).map_err(|e| e.to_string())?,
        None => Synthetic::builtin(config.seed),
    };
    // Build the daily caches off the request path so the first chart load
    // is as fast as the rest.
    let market = Arc::clone(synthetic.market());
    let now = clock.now_ms();
    std::thread::spawn(move || market.warm_up(now));
    Ok(Arc::new(synthetic))
}

pub fn build_context(config: &Config) -> Result<AppContext, String> {
    let clock = Clock::new(
        config.clock_start.map(|s| s.saturating_mul(1000)),
        config.clock_speed,
    );
    let hub = Arc::new(Hub::default());
    let source = open_source(config, &hub, &clock)?;
    let limits = Limits {
        heartbeat: Duration::from_secs_f64(config.heartbeat_interval),
        max_lifespan: Duration::from_secs_f64(config.max_connection_lifespan),
        slow_client: Duration::from_secs_f64(config.slow_client_timeout),
        max_subscriptions: config.max_subscriptions as usize,
    };
    Ok(AppContext {
        ws: Arc::new(WsState::new(
            hub,
            Arc::clone(&source),
            clock.clone(),
            limits,
        )),
        source,
        clock,
        cors: CorsPolicy::new(config.cors_origins.iter().cloned()),
        seed: config.seed,
        ingest_token: config.ingest_token.clone().filter(|t| !t.is_empty()),
    })
}

/// Every endpoint: the spec's operations plus the unpublished extras.
pub fn api_description() -> Result<ApiDescription<AppContext>, String> {
    let mut api = trading_pro::api::trading_api_mod::api_description::<TradingServer>()
        .map_err(|e| e.to_string())?;
    crate::docs::register(&mut api)?;
    api.register(crate::ws::ws_endpoint)
        .map_err(|e| e.to_string())?;
    Ok(api)
}

/// Starts serving; the returned server runs until closed.
pub async fn start(config: &Config, log: Logger) -> Result<HttpServer<AppContext>, String> {
    let context = build_context(config)?;
    context
        .ws
        .spawn_broadcaster(Duration::from_millis(config.broadcast_interval_ms));
    let dropshot_config = ConfigDropshot {
        bind_address: config.bind,
        default_request_body_max_bytes: MAX_REQUEST_BYTES,
        default_handler_task_mode: HandlerTaskMode::CancelOnDisconnect,
        ..Default::default()
    };
    ServerBuilder::new(api_description()?, context, log)
        .config(dropshot_config)
        .start()
        .map_err(|e| format!("cannot start the server on {}: {e}", config.bind))
}

/// Graceful shutdown: WebSocket connections outlive their HTTP request, so
/// they are closed first (1001, up to 5 s), then the HTTP server drains.
pub async fn stop(server: HttpServer<AppContext>) -> Result<(), String> {
    server
        .app_private()
        .ws
        .shutdown(Duration::from_secs(5))
        .await;
    server.close().await
}
