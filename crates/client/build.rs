//! Generates the client from `specs/openapi.yaml` with progenitor, so the
//! client is derived from the same document as the server and cannot drift.

use std::{env, fs, path::Path};

fn main() {
    let out_dir = env::var("OUT_DIR").unwrap();
    let out_dir = Path::new(&out_dir);
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
    trading_pro_codegen::write_rust(out_dir, "client.rs", tokens)
        .unwrap_or_else(|e| panic!("cannot write the generated client: {e}"));

    let asyncapi_path = "../../specs/asyncapi.yaml";
    println!("cargo:rerun-if-changed={asyncapi_path}");
    let text = fs::read_to_string(asyncapi_path).expect("read specs/asyncapi.yaml");
    let tokens = trading_pro_codegen::asyncapi_messages(&text, false)
        .unwrap_or_else(|e| panic!("cannot generate messages from specs/asyncapi.yaml: {e}"));
    trading_pro_codegen::write_rust(out_dir, "messages.rs", tokens)
        .unwrap_or_else(|e| panic!("cannot write the generated messages: {e}"));
}
