//! trading-pro's server: implements the service trait generated from
//! `specs/openapi.yaml` and the WebSocket channels of
//! `specs/asyncapi.yaml` on top of a data source: the synthetic market
//! (`trading-synthetic`, the default) or a store of real data
//! (`trading-store`), several nodes sharing one through the bus
//! (`trading-bus`).
//!
//! Where a request goes, top-down:
//! * `edge`: what clients connect to: who a request is from (trusted
//!   proxies, PROXY protocol), connection caps, deadlines (`deadlines`),
//!   rate limits, early rejection, the WebSocket handshake, draining;
//! * `net`: below the edge: TCP and TLS streams, response compression,
//!   the open-files limit;
//! * `routes`: where each admitted request goes (the spec's operations,
//!   the served specs, the pages, CORS preflight);
//! * `handlers`: the REST handlers, one module per tag of the spec
//!   (`datafeed`, `ingest`, `meta`); `quotes`: a quote's wire form;
//! * `ws`: WebSocket: one task per connection, one module per channel
//!   (`ws/channels/`: bars, quotes) behind a small registry, the hub the
//!   sources publish to;
//! * `auth`: who is asking (JSON Web Tokens) and which exchanges they
//!   may see;
//! * `cors`, `served_specs`, `pages`: headers on every response, the
//!   specs as served, the chart and docs pages (built into `web/dist`);
//! * `metrics`: what the server is doing, for Prometheus (`GET /metrics`);
//! * `error`: the API's errors and their answers;
//! * `config`, `context`, `logging`, `server`: flags, what every handler
//!   shares, logs, start-up; `main.rs` the commands and signals.

pub mod auth;
pub mod broker;
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
pub mod served_specs;
pub mod server;
pub mod ws;

pub use config::Config;
pub use server::start;
