//! The server's integration tests: real servers (in-process and as
//! processes of the `trading-server` binary) on ephemeral ports, driven
//! through the generated client, raw HTTP and WebSocket frames, real
//! databases, a real NATS and real proxies. One test binary, so the
//! helpers in `common/` compile once; each module is one area.

mod common;

mod auth;
mod bars;
mod broker;
mod deployment;
mod durability;
mod edge;
mod import;
mod metrics;
mod nodes;
mod pages;
mod postgres_store;
mod rest;
mod security;
mod store_conformance;
mod store_faults;
mod ws;
