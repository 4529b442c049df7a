//! Command-line flags, each with an environment-variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "trading-server",
    version,
    about = "trading-pro market-data server (REST + WebSocket)"
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
    /// `sqlite:PATH` (an embedded SQLite file, created if missing).
    #[arg(long, env = "TRADING_STORE")]
    pub store: Option<String>,

    /// Bearer token that `POST /api/v1/ingest/*` requests must carry. Without it (or
    /// without a store) ingest is off.
    #[arg(long, env = "TRADING_INGEST_TOKEN", hide_env_values = true)]
    pub ingest_token: Option<String>,

    /// Browser origin allowed to call the API (repeatable; `*` allows any).
    #[arg(
        long = "cors-origin",
        env = "TRADING_CORS_ORIGINS",
        value_delimiter = ',',
        default_values_t = ["http://localhost:5173".to_string(), "http://127.0.0.1:5173".to_string()]
    )]
    pub cors_origins: Vec<String>,

    /// Log level.
    #[arg(long, env = "TRADING_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, env = "TRADING_LOG_FORMAT", value_enum, default_value_t = LogFormat::Terminal)]
    pub log_format: LogFormat,

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

fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && (0.0..=1_000_000.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1000000".into())
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Terminal,
    Json,
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
