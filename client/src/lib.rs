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
