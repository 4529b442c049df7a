#![doc = include_str!("../README.md")]

#[allow(clippy::all, missing_docs, unused_imports)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/client.rs"));
}

pub use generated::*;
pub use progenitor_client::{Error, ResponseValue};
