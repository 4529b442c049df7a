//! Files outside the contract: the specs themselves (OpenAPI and AsyncAPI,
//! as JSON and YAML); and the answer to a CORS preflight, for every path.
//! `routes` serves them. (The pages that render the specs are in `pages`.)

use std::sync::OnceLock;

use bytes::Bytes;
use dropshot::HttpError;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::api::decorate_error;
use crate::context::AppContext;

/// The hand-written spec as JSON (parsed once).
pub fn openapi_json() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_yaml::from_str(trading_pro::OPENAPI_YAML).expect("the embedded spec is valid YAML")
    })
}

/// The hand-written AsyncAPI spec as JSON (parsed once).
pub fn asyncapi_json() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_yaml::from_str(trading_pro::ASYNCAPI_YAML).expect("the embedded spec is valid YAML")
    })
}

/// The specs: path, content type, body.
fn files() -> [(&'static str, &'static str, &'static str); 4] {
    static JSON: OnceLock<(String, String)> = OnceLock::new();
    let (openapi, asyncapi) =
        JSON.get_or_init(|| (openapi_json().to_string(), asyncapi_json().to_string()));
    [
        ("/api/v1/openapi.json", "application/json", openapi),
        (
            "/api/v1/openapi.yaml",
            "application/yaml",
            trading_pro::OPENAPI_YAML,
        ),
        ("/api/v1/ws/asyncapi.json", "application/json", asyncapi),
        (
            "/api/v1/ws/asyncapi.yaml",
            "application/yaml",
            trading_pro::ASYNCAPI_YAML,
        ),
    ]
}

/// The spec at `path`, if there is one: its content type and body.
pub fn file(path: &str) -> Option<(&'static str, &'static str)> {
    files()
        .into_iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (content_type, body))
}

/// Answers a CORS preflight: 204 with the CORS headers for an allowed origin
/// and method, 403 with a message otherwise.
pub fn preflight(ctx: &AppContext, request: &HeaderMap) -> Result<Response<Bytes>, HttpError> {
    match ctx.cors.preflight(request) {
        Some(headers) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            let h = response.headers_mut();
            for (k, v) in headers {
                h.insert(k, v);
            }
            h.insert(
                "api-version",
                HeaderValue::from_static(trading_pro::API_VERSION),
            );
            Ok(response)
        }
        None => Err(decorate_error(
            ctx,
            request,
            HttpError::for_client_error(
                Some("CorsRejected".into()),
                dropshot::ClientErrorStatusCode::FORBIDDEN,
                "CORS preflight rejected: the Origin is not allowed (see --cors-origin) or the \
                 requested method is not GET or POST"
                    .into(),
            ),
        )),
    }
}
