//! Build-time generators: the hand-written specs -> Rust, for build
//! scripts.
//!
//! * `openapi`: `specs/openapi.yaml` -> the contract's types, its dropshot
//!   API trait and the plain service trait the server implements (the
//!   contract crate's `build.rs`);
//! * `asyncapi`: `specs/asyncapi.yaml` -> the WebSocket messages (the
//!   contract crate and the client);
//! * `names`: Rust names for the specs' names.

use std::path::Path;

use proc_macro2::TokenStream;

pub mod asyncapi;
mod names;
pub mod openapi;

pub use asyncapi::asyncapi_messages;
pub use openapi::relax_parameter_ranges;

/// Writes `tokens` as the formatted Rust file `dir/name`.
pub fn write_rust(dir: &Path, name: &str, tokens: TokenStream) -> Result<(), String> {
    let file: syn::File =
        syn::parse2(tokens).map_err(|e| format!("{name}: generated code does not parse: {e}"))?;
    std::fs::write(dir.join(name), prettyplease::unparse(&file))
        .map_err(|e| format!("{name}: cannot write it: {e}"))
}
