//! trading-pro's server: implements the API trait generated from
//! `specs/openapi.yaml` on top of a data source: a deterministic synthetic
//! market, or a store of real data.
//!
//! Where things live:
//! * `routes`: where each admitted request goes (the spec's operations,
//!   the specs, the pages, CORS preflight);
//! * `api`: the REST handlers (one method per operation of the spec);
//! * `ws`: live bars over WebSocket (hub, connections, broadcaster);
//! * `source`: the data-source interface every handler asks;
//! * `synthetic` and `market`: the synthetic market (the default source)
//!   and its price engine;
//! * `store`: real data (an embedded SQLite file or PostgreSQL) and its
//!   live ingest;
//! * `bus`: several nodes on one market: the shared log of ingest
//!   (NATS JetStream) every node follows;
//! * `import`: the `import` and `export` commands (CSV files);
//! * `calendar`: sessions, time zones, resolutions: what a bar means;
//! * `catalog`: the symbols and search;
//! * `auth`: who is asking (JSON Web Tokens) and which exchanges they
//!   may see;
//! * `edge`: what clients connect to: connection caps, deadlines, rate
//!   limits, early rejection, the WebSocket handshake, draining shutdown;
//! * `cors`, `specs`: headers on every response, the served specs;
//! * `pages`: the chart and the docs pages (built from npm into `web/dist`);
//! * `metrics`: what the server is doing, for Prometheus (`GET /metrics`);
//! * `config`, `logging`, `server`: flags, logs, startup.

pub mod auth;

pub mod config;
pub mod context;
pub mod cors;
pub mod edge;
pub mod error;
pub mod handlers;
pub mod logging;

pub mod metrics;
pub mod net;
pub mod pages;
pub mod quotes;
pub mod routes;
pub mod server;
pub mod specs;

pub mod ws;

pub use config::Config;
pub use server::start;
