//! A `200 OK` whose JSON body the server has already written.
//!
//! dropshot serializes a typed body with serde_json, field by field. For the
//! few bodies that are large and regular (thousands of bars in one
//! `getBars` answer) the server writes the JSON itself, several times faster
//! (see `docs/BENCHMARKS.md`). [`EncodedOk<T>`] documents the body as `T` in
//! the OpenAPI document, exactly like `HttpResponseOk<T>`, so the contract
//! test still covers it; the writer's own tests prove that what it writes
//! decodes to the same `T` serde would have written.

use std::marker::PhantomData;

use dropshot::{Body, HttpCodedResponse, HttpError};
use http::{header, Response, StatusCode};
use schemars::JsonSchema;
use serde::Serialize;

/// A `200 OK` carrying the JSON encoding of a `T`.
pub struct EncodedOk<T> {
    json: Vec<u8>,
    body: PhantomData<fn() -> T>,
}

impl<T: Serialize> EncodedOk<T> {
    /// Takes JSON the caller wrote for a `T`. It must decode as a `T`: the
    /// writer is responsible for that, and its tests for proving it.
    pub fn from_json(json: Vec<u8>) -> Self {
        EncodedOk {
            json,
            body: PhantomData,
        }
    }
}

impl<T> From<EncodedOk<T>> for Result<Response<Body>, HttpError> {
    fn from(ok: EncodedOk<T>) -> Self {
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(ok.json))?)
    }
}

impl<T> HttpCodedResponse for EncodedOk<T>
where
    T: JsonSchema + Serialize + Send + Sync + 'static,
{
    type Body = T;
    const STATUS_CODE: StatusCode = StatusCode::OK;
    // What dropshot's own HttpResponseOk says, so the documents are equal.
    const DESCRIPTION: &'static str = "successful operation";
}
