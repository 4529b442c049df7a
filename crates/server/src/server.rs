//! Assembling and starting the server: context, edge.
//!
//! Two runtimes: the live stream (WebSocket connections and the
//! broadcaster) runs on one of its own, and requests (the edge and their
//! handlers) on the caller's. Expensive requests can then keep the request
//! workers busy without delaying the live stream by a scheduling slot; the
//! edge also bounds how many of them run at once (see `edge::admission`).
//! Requests stay on one runtime: a request that hopped between two at each
//! step cost twice the CPU.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slog::{info, o, warn, Drain, Logger};
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;

use crate::config::Config;
use crate::context::AppContext;
use crate::cors::CorsPolicy;
use crate::edge::{self, Edge, EdgeConfig, RateLimits, Timeouts};
use crate::pages::Pages;
use crate::ws::{Hub, Limits, WsState};
use trading_bus::Bus;
use trading_market::clock::Clock;
use trading_market::source::{DataSource, UpdateSink};
use trading_store::postgres::PostgresStore;
use trading_store::replication::Applier;
use trading_store::trading::{BrokerConfig, Trading};
use trading_store::StoreUrl;
use trading_synthetic::Synthetic;

/// Caps glibc's malloc arenas at one per CPU (its default is eight per
/// CPU), before the runtimes start their threads. Long computations move
/// off the request workers to short-lived threads (`synthetic`), each of
/// which would otherwise get an arena of its own that keeps its memory
/// after the thread ends: 18 MiB before an attack of expensive getBars
/// stayed at 28 MiB after it, against 20 MiB with this cap (see
/// docs/BENCHMARKS.md, "Abuse").
pub fn limit_malloc_arenas() {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    // SAFETY: mallopt only sets an allocator parameter; called once at
    // start, before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, cpus.max(2) as libc::c_int);
    }
}

/// Pending connections the kernel holds for the accept loop: a burst of
/// new clients waits there instead of being refused by the kernel.
const LISTEN_BACKLOG: u32 = 4096;

/// The data source the flags choose: `--store`, else the synthetic market
/// (`--symbols` or the built-in catalog). A store pushes its changes to `hub`.
fn open_source(
    config: &Config,
    hub: &Arc<Hub>,
    clock: &Clock,
) -> Result<(Arc<dyn DataSource>, Arc<Trading>), String> {
    if let Some(store) = &config.store {
        let sink: Arc<dyn UpdateSink> = Arc::clone(hub) as Arc<dyn UpdateSink>;
        let options = trading_store::ServeOptions {
            create: config.create,
            timeout: std::time::Duration::from_secs_f64(config.store_timeout),
            broker: broker_config(config),
        };
        return trading_store::open_source(store, sink, &options);
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
    Ok((
        Arc::new(synthetic),
        Arc::new(Trading::memory(broker_config(config))),
    ))
}

fn broker_config(config: &Config) -> BrokerConfig {
    BrokerConfig {
        starting_cash: config.paper_cash,
        commission: config.paper_commission,
    }
}

/// A node of several: its PostgreSQL store, following the bus.
async fn open_node(
    config: &Config,
    url: &str,
    hub: &Arc<Hub>,
    log: &Logger,
) -> Result<(Arc<dyn DataSource>, Bus), String> {
    let store = match config.store.as_deref().map(StoreUrl::parse) {
        Some(Ok(StoreUrl::Postgres(store))) => store,
        _ => {
            return Err(
                "--bus needs --store postgres://...: the nodes share their history there".into(),
            )
        }
    };
    let sink: Arc<dyn UpdateSink> = Arc::clone(hub) as Arc<dyn UpdateSink>;
    let timeout = std::time::Duration::from_secs_f64(config.store_timeout);
    let store = Arc::new(
        PostgresStore::open_for_serving(&store, sink, timeout, broker_config(config))
            .map_err(|e| e.to_string())?,
    );
    let bus = Bus::start(
        url,
        &config.bus_stream,
        Arc::clone(&store) as Arc<dyn Applier>,
        &store.describe(),
        log.new(o!("component" => "bus")),
    )
    .await?;
    Ok((store, bus))
}

pub async fn build_context(config: &Config, log: &Logger) -> Result<AppContext, String> {
    let clock = Clock::new(
        config.clock_start.map(|s| s.saturating_mul(1000)),
        config.clock_speed,
    );
    let hub = Arc::new(Hub::default());
    let (source, bus, broker) = match &config.bus {
        Some(url) => {
            let (source, bus) = open_node(config, url, &hub, log).await?;
            // Broker commands do not go through the bus's log yet: on one
            // node only, an order would not be on the others.
            let why = "the paper broker is not served on a node of several (--bus) yet: its \
                       commands do not go through the bus's log; run it on a single node"
                .to_string();
            (source, Some(bus), Err(why))
        }
        None => {
            let (source, trading) = open_source(config, &hub, &clock)?;
            (source, None, Ok(trading))
        }
    };
    let limits = Limits {
        heartbeat: Duration::from_secs_f64(config.heartbeat_interval),
        max_lifespan: Duration::from_secs_f64(config.max_connection_lifespan),
        slow_client: Duration::from_secs_f64(config.slow_client_timeout),
        max_subscriptions: config.max_subscriptions as usize,
        send_backlog: config.ws_send_backlog as usize,
        quote_interval: Duration::from_millis(config.broadcast_interval_ms),
    };
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let web_dir = config
        .web_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::pages::BUILT_IN_CHECKOUT));
    let pages = Pages::load(&web_dir)?;
    if !pages.missing().is_empty() {
        warn!(log, "pages not built (they say what to install)";
            "pages" => pages.missing().join(" "), "web_dir" => web_dir.display().to_string(),
            "build" => "scripts/build-web (needs Node.js 20.19+), or start with scripts/serve");
    }
    Ok(AppContext {
        ws: Arc::new(WsState::new(
            hub,
            Arc::clone(&source),
            clock.clone(),
            limits,
            log.new(o!("component" => "ws")),
            Arc::clone(&metrics),
            &broker,
        )),
        metrics,
        source,
        clock,
        cors: CorsPolicy::new(config.cors_origins.iter().cloned()),
        ingest_token: config.ingest_token.clone().filter(|t| !t.is_empty()),
        bus,
        broker,
        pages,
        specs: crate::served_specs::Specs::new(
            config.auth_jwt_secret.is_some() || config.auth_jwt_public_key.is_some(),
        ),
        stopping: AtomicBool::new(false),
    })
}

/// A running server: the edge clients connect to, and what its handlers
/// see.
pub struct Server {
    edge: Arc<Edge>,
    context: Arc<AppContext>,
    live_runtime: LiveRuntime,
    local_addr: SocketAddr,
    grace: Duration,
    log: Logger,
}

impl Server {
    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn context(&self) -> &AppContext {
        &self.context
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> u32 {
        self.edge.open_connections()
    }

    /// The first step of a shutdown: readiness answers 503 from now on,
    /// while everything else is still served, so a load balancer that
    /// probes takes the node out of rotation before `stop` closes it.
    pub fn leave_rotation(&self) {
        self.context.stopping.store(true, Ordering::Relaxed);
    }

    /// Graceful shutdown: stop accepting; close WebSockets with 1001; answer
    /// what keep-alive clients still send with `Connection: close` and let
    /// requests in progress finish, for up to the shutdown grace.
    pub async fn stop(self) -> Result<(), String> {
        self.leave_rotation();
        let ws = Arc::clone(&self.context().ws);
        let grace = self.grace;
        tokio::join!(
            ws.shutdown(grace.max(Duration::from_secs(1))),
            self.edge.drain(grace)
        );
        info!(self.log, "connections closed"; "left" => self.edge.open_connections());
        // The store finishes its writes and closes its files: a SQLite
        // store leaves no log behind (`-wal`, `-shm`).
        self.context().source.close().await;
        info!(self.log, "store closed");
        drop(self.live_runtime);
        Ok(())
    }
}

/// The live stream's runtime, shut down without waiting when dropped: a
/// runtime may not be dropped from inside another (as the caller's is).
struct LiveRuntime(Option<Runtime>);

impl Drop for LiveRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The origins of pages this server serves itself: `--public-origin`, and
/// those of its listening address (with `localhost` for a loopback or an
/// any-address listener, which also answers on loopback).
fn own_origins(local: SocketAddr, tls: bool, public: &[String]) -> Vec<String> {
    let scheme = if tls { "https" } else { "http" };
    let port = local.port();
    let mut origins: Vec<String> = public
        .iter()
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect();
    let mut hosts: Vec<String> = Vec::new();
    if local.ip().is_unspecified() || local.ip().is_loopback() {
        hosts.extend(["127.0.0.1", "[::1]", "localhost"].map(String::from));
    }
    if !local.ip().is_unspecified() {
        hosts.push(match local.ip() {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        });
    }
    let default_port = (scheme, port) == ("http", 80) || (scheme, port) == ("https", 443);
    for host in hosts {
        origins.push(format!("{scheme}://{host}:{port}"));
        if default_port {
            origins.push(format!("{scheme}://{host}"));
        }
    }
    origins.dedup();
    origins
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Starts serving; the returned server runs until stopped.
pub async fn start(config: &Config, log: Logger) -> Result<Server, String> {
    let (max_connections, open_files) = match crate::net::files::raise_open_files_limit() {
        Ok((soft, hard)) => {
            let (cap, clamped) = crate::net::files::connection_cap(config.max_connections, soft);
            if clamped {
                warn!(log, "--max-connections lowered to fit the open-files limit";
                    "asked" => config.max_connections, "max_connections" => cap, "open_files" => soft);
            }
            (cap, Some((soft, hard)))
        }
        Err(e) => {
            warn!(log, "cannot read the open-files limit"; "error" => %e);
            (config.max_connections.max(1), None)
        }
    };
    let context = Arc::new(build_context(config, &log).await?);
    let ws = Arc::clone(&context.ws);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let live_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("live")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the live runtime: {e}"))?;
    {
        let _inside = live_runtime.enter();
        ws.spawn_broadcaster(Duration::from_millis(config.broadcast_interval_ms));
        ws.spawn_accounts(Duration::from_millis(config.broadcast_interval_ms));
    }
    if let Ok(trading) = &context.broker {
        crate::broker::spawn_feed(
            Arc::clone(trading),
            Arc::clone(&context.source),
            context.clock.clone(),
            Duration::from_millis(config.broadcast_interval_ms),
        );
    }
    let listener =
        bind(config.bind).map_err(|e| format!("cannot listen on {}: {e}", config.bind))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    let auth = crate::auth::Auth::from_config(&crate::auth::AuthConfig {
        secret: config.auth_jwt_secret.as_deref(),
        public_key: config.auth_jwt_public_key.as_deref(),
        issuer: config.auth_issuer.as_deref(),
        audience: config.auth_audience.as_deref(),
        entitlement_claim: &config.auth_entitlement_claim,
        default_entitlement: config.auth_default_entitlement,
        leeway_s: config.auth_leeway,
        max_lifetime_s: config.auth_max_token_lifetime,
    })?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::net::stream::acceptor(cert, key)?),
        _ => None,
    };
    let metrics_listener = match config.metrics_bind {
        Some(addr) => {
            Some(bind(addr).map_err(|e| format!("cannot listen on {addr} (--metrics-bind): {e}"))?)
        }
        None => None,
    };
    let trusted_proxies = edge::TrustedProxies::parse(&config.trusted_proxies)?;
    let rate = RateLimits::new(config.rate_limit_rps, config.rate_limit_burst);
    let rate_limit = rate
        .as_ref()
        .map_or("off".to_string(), RateLimits::describe);
    let edge_config = EdgeConfig {
        max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        rate,
        max_inflight_per_ip: config.max_inflight_per_ip as usize,
        // Enough to keep every worker busy without parking between requests
        // (a bound of one per worker cost twice the CPU per request); the
        // per-address bound is what keeps one client from taking them all.
        max_inflight: (workers * 8).max(16),
        timeouts: Timeouts {
            header: Duration::from_secs_f64(config.header_timeout),
            keepalive: Duration::from_secs_f64(config.keepalive_timeout),
            request: Duration::from_secs_f64(config.request_timeout),
            body: Duration::from_secs_f64(config.body_timeout),
        },
        ws_require_origin: config.ws_require_origin,
        access_log: log.is_info_enabled(),
        user_rate: auth.as_ref().and_then(|_| {
            RateLimits::new(config.token_rate_limit_rps, config.token_rate_limit_burst)
        }),
        auth: auth.clone(),
        max_websockets_per_user: config.max_connections_per_token,
        max_inflight_per_user: config.max_inflight_per_token as usize,
        metrics_elsewhere: metrics_listener.is_some(),
        tls,
        trusted_proxies: trusted_proxies.clone(),
        proxy_protocol: config.proxy_protocol,
        own_origins: own_origins(
            local_addr,
            config.tls_cert.is_some(),
            &config.public_origins,
        ),
    };
    let edge_log = log.new(o!("component" => "edge"));
    let edge = Edge::new(
        edge_config,
        Arc::clone(&context),
        live_runtime.handle().clone(),
        edge_log,
    )?;
    info!(log, "limits";
        "max_connections" => max_connections,
        "max_connections_per_ip" => config.max_connections_per_ip,
        "open_files" => open_files.map(|(soft, _)| soft),
        "open_files_hard" => open_files.map(|(_, hard)| hard),
        "rate_limit" => rate_limit,
        "workers" => workers,
        "trusted_proxies" => trusted_proxies.describe(),
        "proxy_protocol" => config.proxy_protocol);
    // What the operator configured, never the key itself.
    info!(log, "authentication";
        "on" => auth.is_some(),
        "key" => match (&config.auth_jwt_secret, &config.auth_jwt_public_key) {
            (Some(_), _) => "HS256 secret".to_string(),
            (None, Some(path)) => format!("public key {}", path.display()),
            (None, None) => "none".to_string(),
        },
        "issuer" => config.auth_issuer.as_deref(),
        "audience" => config.auth_audience.as_deref(),
        "entitlement_claim" => &config.auth_entitlement_claim,
        "default_entitlement" => ?config.auth_default_entitlement);
    match &context.broker {
        Ok(trading) => info!(log, "paper broker";
            "accounts" => if auth.is_some() {
                "one per user (the token's sub)"
            } else {
                "one demo account (no authentication)"
            },
            "kept" => if trading.durable() {
                "in the store's ledger (survives restarts)"
            } else {
                "in memory only: lost when the server stops (start with --store to keep them)"
            },
            "starting_cash" => trading.config().starting_cash.to_string(),
            "commission" => trading.config().commission.to_string()),
        Err(why) => warn!(log, "paper broker off"; "why" => why),
    }
    if let Some(listener) = metrics_listener {
        let addr = listener.local_addr().ok();
        info!(log, "metrics"; "metrics_address" => addr.map(|a| a.to_string()));
        tokio::spawn(edge::serve_metrics(listener, Arc::clone(&context)));
    }
    tokio::spawn(Arc::clone(&edge).run(listener));
    Ok(Server {
        edge,
        context,
        live_runtime: LiveRuntime(Some(live_runtime)),
        local_addr,
        grace: Duration::from_secs_f64(config.shutdown_grace),
        log,
    })
}
