#![doc = include_str!("../README.md")]

#[allow(clippy::all, missing_docs, unused_imports)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/client.rs"));
}

pub use generated::*;

/// WebSocket message types, generated from `specs/asyncapi.yaml`.
#[allow(clippy::all, missing_docs)]
pub mod messages {
    include!(concat!(env!("OUT_DIR"), "/messages.rs"));
}

pub mod ws;
pub use progenitor_client::{Error, ResponseValue};

/// A client that sends `token` as `Authorization: Bearer` on every request,
/// for a server that runs with authentication (`--auth-jwt-secret` or
/// `--auth-jwt-public-key`). The header is marked sensitive, so it is never
/// shown in debug output.
pub fn with_token(base_url: &str, token: &str) -> Result<Client, String> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the token is not a valid header value".to_string())?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    Ok(Client::new_with_client(base_url, http))
}
