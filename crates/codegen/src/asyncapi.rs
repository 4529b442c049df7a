//! `specs/asyncapi.yaml` -> Rust, for build scripts.
//!
//! Generates every component schema as a type (typify, deriving
//! `schemars::JsonSchema` when asked), plus one enum per direction of the
//! channel (`ClientMessage`, `ServerMessage`) with a variant per message,
//! carrying the message's `payload` type. Decoding is staged the way the
//! protocol reports errors: not a JSON frame -> "Could not decode message",
//! unknown `type` -> "No matching type", bad payload -> "Could not validate
//! payload". Matching on the enums is exhaustive, so a message added to the
//! spec is a compile error until it is handled.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::Value;
use typify::{TypeSpace, TypeSpaceSettings};

use crate::names::pascal;

pub fn asyncapi_messages(yaml: &str, json_schema_derive: bool) -> Result<TokenStream, String> {
    let doc: Value = serde_yaml::from_str(yaml).map_err(|e| format!("asyncapi.yaml: {e}"))?;
    if !doc["asyncapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("2."))
    {
        return Err("asyncapi.yaml must be an AsyncAPI 2.x document".into());
    }
    let mut settings = TypeSpaceSettings::default();
    settings.with_derive("PartialEq".to_string());
    if json_schema_derive {
        settings.with_derive("schemars::JsonSchema".to_string());
    }
    settings.with_struct_builder(false);
    let mut types = TypeSpace::new(&settings);
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .ok_or("asyncapi.yaml has no components.schemas")?;
    let defs = schemas
        .iter()
        .map(|(name, s)| {
            let schema: schemars::schema::Schema =
                serde_json::from_value(s.clone()).map_err(|e| format!("schema {name}: {e}"))?;
            Ok((name.clone(), schema))
        })
        .collect::<Result<Vec<_>, String>>()?;
    types.add_ref_types(defs).map_err(|e| e.to_string())?;

    let channels = doc["channels"]
        .as_object()
        .ok_or("asyncapi.yaml has no channels")?;
    let [(_, channel)] = channels.iter().collect::<Vec<_>>()[..] else {
        return Err("asyncapi.yaml must describe exactly one channel".into());
    };
    let client = direction(&doc, &channel["publish"], "ClientMessage")?;
    let server = direction(&doc, &channel["subscribe"], "ServerMessage")?;
    let types = types.to_stream();
    Ok(quote! {
        #types

        /// Why a frame could not be turned into a message.
        #[derive(Clone, Debug, PartialEq)]
        pub enum DecodeError {
            /// Not a JSON object with a string `type` (or a binary frame).
            NotAFrame(String),
            /// A `type` the spec does not list for this direction.
            NoMatchingType(String),
            /// The `payload` (or `id`) does not match the message's schema.
            InvalidPayload(String),
        }

        impl DecodeError {
            /// The close reason the protocol uses for this error.
            pub fn reason(&self) -> &'static str {
                match self {
                    DecodeError::NotAFrame(_) => "Could not decode message",
                    DecodeError::NoMatchingType(_) => "No matching type",
                    DecodeError::InvalidPayload(_) => "Could not validate payload",
                }
            }
        }

        impl ::std::fmt::Display for DecodeError {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                match self {
                    DecodeError::NotAFrame(d) | DecodeError::NoMatchingType(d) | DecodeError::InvalidPayload(d) => {
                        write!(f, "{}: {}", self.reason(), d)
                    }
                }
            }
        }

        impl ::std::error::Error for DecodeError {}

        #[derive(::serde::Serialize)]
        struct Envelope<'a, P: ::serde::Serialize> {
            #[serde(rename = "type")]
            type_: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            id: Option<&'a str>,
            payload: &'a P,
        }

        /// Splits a text frame into its `type`, optional `id` and `payload`.
        fn split_frame(text: &str) -> Result<(String, Option<String>, ::serde_json::Value), DecodeError> {
            let value: ::serde_json::Value =
                ::serde_json::from_str(text).map_err(|e| DecodeError::NotAFrame(e.to_string()))?;
            let ::serde_json::Value::Object(mut map) = value else {
                return Err(DecodeError::NotAFrame("a frame is a JSON object".into()));
            };
            let Some(::serde_json::Value::String(type_)) = map.remove("type") else {
                return Err(DecodeError::NotAFrame("a frame needs a string `type`".into()));
            };
            let id = match map.remove("id") {
                None | Some(::serde_json::Value::Null) => None,
                Some(v) => Some(
                    ::serde_json::from_value::<FrameId>(v)
                        .map_err(|e| DecodeError::InvalidPayload(format!("id: {e}")))?
                        .to_string(),
                ),
            };
            let payload = map.remove("payload").unwrap_or(::serde_json::Value::Null);
            Ok((type_, id, payload))
        }

        #client
        #server
    })
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> Result<&'a Value, String> {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(&r.replacen('#', "", 1))
            .ok_or_else(|| format!("dangling reference {r}")),
        None => Ok(v),
    }
}

/// The enum for one direction of the channel (`publish` or `subscribe`).
fn direction(doc: &Value, operation: &Value, enum_name: &str) -> Result<TokenStream, String> {
    let messages = operation
        .pointer("/message/oneOf")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{enum_name}: the operation needs message.oneOf"))?;
    let enum_ident = format_ident!("{}", enum_name);
    let (mut variants, mut names, mut decode_arms, mut encode_arms, mut name_arms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for m in messages {
        let key = m["$ref"]
            .as_str()
            .and_then(|r| r.rsplit('/').next())
            .ok_or("messages must be $refs")?;
        let message = resolve(doc, m)?;
        let name = message["name"]
            .as_str()
            .ok_or_else(|| format!("message {key} has no name"))?;
        let frame = resolve(doc, &message["payload"])?;
        let payload_ref = frame
            .pointer("/properties/payload/$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .ok_or_else(|| {
                format!("message {key}: its frame's `payload` must be a $ref to a schema")
            })?;
        let variant = format_ident!("{}", pascal(key));
        let payload_ty = format_ident!("{}", pascal(payload_ref));
        let doc_line = format!("`{name}`");
        variants.push(quote! { #[doc = #doc_line] #variant(#payload_ty) });
        names.push(name.to_string());
        decode_arms.push(quote! {
            #name => ::serde_json::from_value(payload)
                .map(#enum_ident::#variant)
                .map_err(|e| DecodeError::InvalidPayload(e.to_string())),
        });
        encode_arms.push(quote! {
            #enum_ident::#variant(p) => ::serde_json::to_string(&Envelope { type_: #name, id, payload: p }),
        });
        name_arms.push(quote! { #enum_ident::#variant(_) => #name, });
    }
    Ok(quote! {
        #[derive(Clone, Debug, PartialEq)]
        pub enum #enum_ident { #(#variants),* }

        impl #enum_ident {
            /// Every `type` of this direction.
            pub const TYPES: &'static [&'static str] = &[#(#names),*];

            /// The message's `type`.
            pub fn type_name(&self) -> &'static str {
                match self { #(#name_arms)* }
            }

            /// Decodes a text frame into its optional request id and message.
            pub fn decode(text: &str) -> Result<(Option<String>, Self), DecodeError> {
                let (type_, id, payload) = split_frame(text)?;
                let message = match type_.as_str() {
                    #(#decode_arms)*
                    other => Err(DecodeError::NoMatchingType(format!("{other:?} is not one of {:?}", Self::TYPES))),
                }?;
                Ok((id, message))
            }

            /// Encodes the message as a text frame, echoing `id` if given.
            pub fn encode(&self, id: Option<&str>) -> String {
                let encoded = match self { #(#encode_arms)* };
                // Serializing plain data structs to a String cannot fail.
                encoded.unwrap_or_default()
            }
        }
    })
}
