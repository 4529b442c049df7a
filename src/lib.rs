//! The trading-pro API contract.
//!
//! Everything here is derived from the hand-written specs under `specs/` by
//! `build.rs` (with the generators of `crates/codegen`): the wire types
//! ([`types`]), the dropshot API trait ([`api::TradingApi`], what the
//! contract test renders) and the plain service trait the server
//! implements ([`api::TradingService`], with the route table and each
//! operation's facts). The server never defines a wire struct of its own,
//! so the spec and the server cannot drift apart without a compile error
//! or a failing contract test (`tests/contract.rs`).

pub mod encoded;
pub mod extract;
pub mod service;

/// Wire types of `specs/openapi.yaml` (component schemas, plus one struct per
/// operation for its path parameters, query parameters and response headers).
#[allow(clippy::all, missing_docs)]
pub mod types {
    include!(concat!(env!("OUT_DIR"), "/openapi_types.rs"));
}

/// The API of `specs/openapi.yaml`: the dropshot trait (its stub
/// description is the OpenAPI document the contract test checks) and the
/// same operations as the plain trait the server implements, with the route
/// table and `call`.
pub mod api {
    use crate::types::*;
    include!(concat!(env!("OUT_DIR"), "/openapi_api.rs"));
    include!(concat!(env!("OUT_DIR"), "/openapi_service.rs"));
}

/// Message types of `specs/asyncapi.yaml` (the WebSocket channel).
#[allow(clippy::all, missing_docs)]
pub mod messages {
    include!(concat!(env!("OUT_DIR"), "/asyncapi_types.rs"));
}

/// The REST spec as written, for serving it and for contract tests.
pub const OPENAPI_YAML: &str = include_str!("../specs/openapi.yaml");

/// The WebSocket spec as written, for serving it and for contract tests.
pub const ASYNCAPI_YAML: &str = include_str!("../specs/asyncapi.yaml");

/// The API version this build answers as (sent in the `API-Version` header).
pub const API_VERSION: &str = "v1";
