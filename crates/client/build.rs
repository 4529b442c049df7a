//! Generates the client from `specs/openapi.yaml` with progenitor, so the
//! client is derived from the same document as the server and cannot drift.

use std::{env, fs, path::Path};

fn main() {
    let spec_path = "../../specs/openapi.yaml";
    println!("cargo:rerun-if-changed={spec_path}");
    let text = fs::read_to_string(spec_path).expect("read specs/openapi.yaml");
    let mut raw: serde_json::Value = serde_yaml::from_str(&text).expect("parse specs/openapi.yaml");
    // Same types as the server: plain integers, ranges enforced server-side.
    trading_pro_codegen::relax_parameter_ranges(&mut raw);
    let spec: openapiv3::OpenAPI =
        serde_json::from_value(raw).expect("specs/openapi.yaml is OpenAPI 3.0");
    let mut settings = progenitor::GenerationSettings::default();
    settings
        .with_interface(progenitor::InterfaceStyle::Builder)
        .with_derive("PartialEq");
    let tokens = progenitor::Generator::new(&settings)
        .generate_tokens(&spec)
        .unwrap_or_else(|e| {
            panic!("progenitor cannot generate a client from specs/openapi.yaml: {e}")
        });
    let file: syn::File = syn::parse2(tokens).expect("progenitor emitted valid Rust");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("client.rs");
    fs::write(out, prettyplease::unparse(&file)).expect("write generated client");

    let asyncapi_path = "../../specs/asyncapi.yaml";
    println!("cargo:rerun-if-changed={asyncapi_path}");
    let text = fs::read_to_string(asyncapi_path).expect("read specs/asyncapi.yaml");
    let tokens = trading_pro_codegen::asyncapi_messages(&text, false)
        .unwrap_or_else(|e| panic!("cannot generate messages from specs/asyncapi.yaml: {e}"));
    let file: syn::File = syn::parse2(tokens).expect("codegen emitted valid Rust");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("messages.rs");
    fs::write(out, prettyplease::unparse(&file)).expect("write generated messages");
}
