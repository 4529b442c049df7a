//! Command-line flags, each with an environment-variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::auth::DefaultEntitlement;
use crate::logging::{LogFormat, LogLevel};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "trading-server",
    version,
    about = "trading-pro market-data server (REST + WebSocket)",
    // A flag given twice takes its last value (wrappers add defaults).
    args_override_self = true
)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TRADING_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Seed of the synthetic market: the same seed gives the same prices.
    #[arg(long, env = "TRADING_SEED", default_value_t = 42, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub seed: u64,

    /// JSON file with a list of symbol infos to serve instead of the built-in catalog
    /// (synthetic market only; a store keeps its own symbols).
    #[arg(long, env = "TRADING_SYMBOLS", conflicts_with = "store")]
    pub symbols: Option<PathBuf>,

    /// Serve real data from this store instead of the synthetic market: a file path or
    /// `sqlite:PATH` (an embedded SQLite file: `import` creates one, or `--create`), or
    /// `postgres://USER@HOST:PORT/DB` (a PostgreSQL database; its tables are created if missing).
    #[arg(long, env = "TRADING_STORE")]
    pub store: Option<String>,

    /// Create the `--store` file if it does not exist (a new, empty store). Without it a
    /// missing store file is an error: a store deleted or moved is never replaced by an
    /// empty one unnoticed.
    #[arg(long, env = "TRADING_CREATE", requires = "store")]
    pub create: bool,

    /// Run as one of several nodes: ingest goes through this NATS JetStream server
    /// (`nats://HOST:PORT`), which every node follows in order. Needs
    /// `--store postgres://...`, the history the nodes share.
    #[arg(long, env = "TRADING_BUS", requires = "store")]
    pub bus: Option<String>,

    /// The JetStream stream the nodes of one market share (created if missing).
    #[arg(long, env = "TRADING_BUS_STREAM", default_value = "TRADING_INGEST")]
    pub bus_stream: String,

    /// Bearer token that `POST /api/v1/ingest/*` requests must carry. Without it (or
    /// without a store) ingest is off.
    #[arg(long, env = "TRADING_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,

    /// The cash every paper-trading account starts with (and gets back on a reset), in
    /// the account currency (USD).
    #[arg(long, env = "TRADING_PAPER_CASH", default_value = "100000", value_parser = parse_cash)]
    pub paper_cash: trading_broker::units::Cash,

    /// What each paper fill costs, in the account currency.
    #[arg(long, env = "TRADING_PAPER_COMMISSION", default_value = "0", value_parser = parse_commission)]
    pub paper_commission: trading_broker::units::Cash,

    /// Browser origin allowed to call the API (repeatable; `*` allows any). Giving any
    /// replaces the default (the Vite dev server's, `http://localhost:5173` and
    /// `http://127.0.0.1:5173`): list those too to keep them. A page from an origin not
    /// allowed gets no answer it can read; the server logs a warning once per such origin.
    #[arg(
        long = "cors-origin",
        env = "TRADING_CORS_ORIGINS",
        value_delimiter = ',',
        default_values_t = ["http://localhost:5173".to_string(), "http://127.0.0.1:5173".to_string()]
    )]
    pub cors_origins: Vec<String>,

    /// This server's public origin as browsers reach it (e.g. `https://trading.example.com`,
    /// behind a load balancer); repeatable. Pages from it may open WebSockets. The
    /// listening address's own origin (and `localhost`'s on a loopback or any address)
    /// always may; so may the CORS origins. The request's `Host` is never trusted for this.
    #[arg(
        long = "public-origin",
        env = "TRADING_PUBLIC_ORIGINS",
        value_delimiter = ','
    )]
    pub public_origins: Vec<String>,

    /// Log level.
    #[arg(long, env = "TRADING_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, env = "TRADING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Terminal)]
    pub log_format: LogFormat,

    /// The folder scripts/build-web writes the chart and docs pages to (read at
    /// start-up) [default: web/dist in the checkout this binary was built from].
    #[arg(long, env = "TRADING_WEB_DIR")]
    pub web_dir: Option<PathBuf>,

    /// Start the market clock at this instant (unix seconds) instead of now.
    #[arg(long, env = "TRADING_CLOCK_START")]
    pub clock_start: Option<i64>,

    /// Market clock speed: 1 is real time, 60 runs a minute per second, 0 freezes it.
    #[arg(long, env = "TRADING_CLOCK_SPEED", default_value_t = 1.0, value_parser = parse_speed)]
    pub clock_speed: f64,

    /// How often live bars are recomputed and published, in milliseconds.
    #[arg(long, env = "TRADING_BROADCAST_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub broadcast_interval_ms: u64,

    /// Seconds a WebSocket client may stay silent (pongs count) before it is closed.
    #[arg(long, env = "TRADING_HEARTBEAT_INTERVAL", default_value_t = 30.0, value_parser = parse_seconds)]
    pub heartbeat_interval: f64,

    /// Seconds after which a WebSocket connection is closed, however active.
    #[arg(long, env = "TRADING_MAX_CONNECTION_LIFESPAN", default_value_t = 3600.0, value_parser = parse_seconds)]
    pub max_connection_lifespan: f64,

    /// Seconds a WebSocket client's socket may accept nothing before it is closed.
    #[arg(long, env = "TRADING_SLOW_CLIENT_TIMEOUT", default_value_t = 10.0, value_parser = parse_seconds)]
    pub slow_client_timeout: f64,

    /// Most open connections (HTTP and WebSocket together); 0 sizes it to the
    /// open-files limit less a reserve. Over it, new connections get a 503.
    #[arg(long, env = "TRADING_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: u32,

    /// Most open connections from one client address (an IPv6 /64 counts as one).
    #[arg(long, env = "TRADING_MAX_CONNECTIONS_PER_IP", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,

    /// Requests per second each client address may make on average (a token
    /// bucket refilled at this rate); 0 turns rate limiting off.
    #[arg(long, env = "TRADING_RATE_LIMIT_RPS", default_value_t = 100)]
    pub rate_limit_rps: u32,

    /// Requests a client address may make at once above the average rate.
    #[arg(long, env = "TRADING_RATE_LIMIT_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: u32,

    /// Data requests (bars, quotes, ingest) one client address may have in
    /// progress at once; more wait their turn.
    #[arg(long, env = "TRADING_MAX_INFLIGHT_PER_IP", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_inflight_per_ip: u32,

    /// Seconds a new or idle connection has to send a complete request head.
    #[arg(long, env = "TRADING_HEADER_TIMEOUT", default_value_t = 10.0, value_parser = parse_seconds)]
    pub header_timeout: f64,

    /// Seconds a request has to send its whole body once its head arrived.
    #[arg(long, env = "TRADING_BODY_TIMEOUT", default_value_t = 10.0, value_parser = parse_seconds)]
    pub body_timeout: f64,

    /// Seconds a keep-alive connection may stay idle between requests.
    #[arg(long, env = "TRADING_KEEPALIVE_TIMEOUT", default_value_t = 30.0, value_parser = parse_seconds)]
    pub keepalive_timeout: f64,

    /// Seconds a request may take from its head to the last byte of its response. One
    /// not answered by then is answered 503 `Timeout` with `Retry-After` (an ingest request
    /// not committed by then is not applied); a client that stops reading a response is
    /// cut off.
    #[arg(long, env = "TRADING_REQUEST_TIMEOUT", default_value_t = 60.0, value_parser = parse_seconds)]
    pub request_timeout: f64,

    /// Seconds one call to a PostgreSQL store may take (its `statement_timeout`, and this
    /// side's limit for a database that stops answering); a connection that times out is
    /// replaced.
    #[arg(long, env = "TRADING_STORE_TIMEOUT", default_value_t = 30.0, value_parser = parse_seconds)]
    pub store_timeout: f64,

    /// Seconds a shutdown waits for requests in progress and for keep-alive clients
    /// (answered with `Connection: close`) before it closes what is left.
    #[arg(long, env = "TRADING_SHUTDOWN_GRACE", default_value_t = 5.0, value_parser = parse_seconds)]
    pub shutdown_grace: f64,

    /// Seconds between SIGTERM and the start of the drain, during which
    /// `/api/v1/ready` answers 503 while everything else is still served, so a
    /// load balancer's probe takes the node out of rotation before it stops
    /// accepting (SIGINT, or a second signal, skips it).
    #[arg(long, env = "TRADING_DRAIN_DELAY", default_value_t = 5.0, value_parser = parse_delay)]
    pub drain_delay: f64,

    /// Load balancers or reverse proxies (addresses or CIDR blocks, comma-separated)
    /// whose `Forwarded` / `X-Forwarded-For` headers name the client. From any other
    /// peer those headers are ignored. Every per-address limit, the access log and the
    /// WebSocket use the named client.
    #[arg(long, env = "TRADING_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// Every connection starts with a PROXY protocol header (v1 or v2), as a TCP load
    /// balancer writes it (HAProxy `send-proxy-v2`, nginx `proxy_protocol on`); the
    /// client is the address it names. Connections without one are closed. With
    /// `--trusted-proxies`, only those peers may connect.
    #[arg(long, env = "TRADING_PROXY_PROTOCOL")]
    pub proxy_protocol: bool,

    /// Refuse WebSocket handshakes that carry no `Origin` header. Browsers always
    /// send one (checked against the CORS origins); other clients usually do not.
    #[arg(long, env = "TRADING_WS_REQUIRE_ORIGIN")]
    pub ws_require_origin: bool,

    /// Bytes a WebSocket client may leave unread in its socket before it counts as
    /// behind: updates are then coalesced, and it is closed with 1008 if it stays
    /// behind for the slow-client timeout.
    #[arg(long, env = "TRADING_WS_SEND_BACKLOG", default_value_t = 65536, value_parser = clap::value_parser!(u32).range(4096..=16_777_216))]
    pub ws_send_backlog: u32,

    /// Require a JSON Web Token signed with this HS256 secret (at least 16 bytes) on
    /// every datafeed operation and the WebSocket. Off by default.
    #[arg(
        long,
        env = "TRADING_AUTH_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "auth_jwt_public_key"
    )]
    pub auth_jwt_secret: Option<String>,

    /// Require a JSON Web Token signed with this key: an RSA or EC public key in PEM
    /// (RS256, ES256) or a JWKS file (keys chosen by `kid`).
    #[arg(long, env = "TRADING_AUTH_JWT_PUBLIC_KEY")]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// Accept only tokens with this `iss` claim.
    #[arg(long, env = "TRADING_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// Accept only tokens with this `aud` claim.
    #[arg(long, env = "TRADING_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,

    /// The token claim listing the exchanges its bearer may see (`["*"]` for all).
    #[arg(
        long,
        env = "TRADING_AUTH_ENTITLEMENT_CLAIM",
        default_value = "exchanges"
    )]
    pub auth_entitlement_claim: String,

    /// What a token without the entitlement claim may see: every exchange, or none.
    #[arg(long, env = "TRADING_AUTH_DEFAULT_ENTITLEMENT", value_enum, default_value_t = DefaultEntitlement::None)]
    pub auth_default_entitlement: DefaultEntitlement,

    /// Seconds of clock skew allowed on a token's `exp` and `nbf`; a WebSocket is
    /// closed this long after its token expires unless refreshed.
    #[arg(long, env = "TRADING_AUTH_LEEWAY", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub auth_leeway: u64,

    /// Longest a token may be valid for, in seconds from now: a token whose `exp` is
    /// later is refused (a leaked long-lived token is a long-lived leak).
    #[arg(long, env = "TRADING_AUTH_MAX_TOKEN_LIFETIME", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(60..=31_536_000))]
    pub auth_max_token_lifetime: u64,

    /// With authentication on: requests per second one user (a token's `sub`) may make
    /// on average, from however many addresses; 0 turns it off.
    #[arg(long, env = "TRADING_TOKEN_RATE_LIMIT_RPS", default_value_t = 100)]
    pub token_rate_limit_rps: u32,

    /// With authentication on: requests one user may make at once above the average rate.
    #[arg(long, env = "TRADING_TOKEN_RATE_LIMIT_BURST", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub token_rate_limit_burst: u32,

    /// With authentication on: most WebSockets one user may have open at once.
    #[arg(long, env = "TRADING_MAX_CONNECTIONS_PER_TOKEN", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_token: u32,

    /// With authentication on: data requests one user may have in progress at once;
    /// more wait their turn.
    #[arg(long, env = "TRADING_MAX_INFLIGHT_PER_TOKEN", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_inflight_per_token: u32,

    /// Serve `GET /metrics` on this address only (not on `--bind`), e.g. for a
    /// scraper on a private network.
    #[arg(long, env = "TRADING_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Serve HTTPS and WSS with this certificate chain (PEM); needs `--tls-key`.
    #[arg(long, env = "TRADING_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of `--tls-cert`.
    #[arg(long, env = "TRADING_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Most topics one WebSocket connection may subscribe to.
    #[arg(long, env = "TRADING_MAX_SUBSCRIPTIONS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_subscriptions: u64,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.05..=31_536_000.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0.05 and 31536000 seconds".into())
    }
}

fn parse_delay(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 3600 seconds".into())
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=1_000_000.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1000000".into())
    }
}

impl Config {
    /// Flags for an embedded server: defaults, except as given.
    pub fn from_args<I, T>(args: I) -> Result<Config, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Config::try_parse_from(
            std::iter::once("trading-server".into()).chain(args.into_iter().map(Into::into)),
        )
    }
}

/// An amount of cash: a positive decimal with at most 16 places.
fn parse_cash(text: &str) -> Result<trading_broker::units::Cash, String> {
    match trading_broker::units::Cash::parse(text) {
        Some(c) if c.0 > 0 => Ok(c),
        _ => Err(format!(
            "{text:?} is not a positive amount (e.g. 100000 or 2500.50)"
        )),
    }
}

/// A commission: a decimal of at least 0 with at most 16 places.
fn parse_commission(text: &str) -> Result<trading_broker::units::Cash, String> {
    match trading_broker::units::Cash::parse(text) {
        Some(c) if c.0 >= 0 => Ok(c),
        _ => Err(format!(
            "{text:?} is not an amount of at least 0 (e.g. 0 or 1.25)"
        )),
    }
}
