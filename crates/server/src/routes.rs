//! Where a request is handled. Every request the edge admits (its body
//! read and bounded) comes here: the spec's operations go through the
//! generated route table and `call` to their handlers in `api`; the specs
//! and CORS preflight are answered from `served_specs`, the chart and docs pages
//! from `pages`; any other path is a 404, any other method a 405.

use std::sync::Arc;

use bytes::Bytes;
use dropshot::{ClientErrorStatusCode, HttpError};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::BodyExt;
use slog::{warn, Logger};
use trading_pro::api::{call, Operation};
use trading_pro::service::{Parts, Request, Route};

use crate::context::AppContext;
use crate::handlers::{decorate_error, TradingServer};
use crate::pages::{self, Found};

/// A request's answer, and the operation it was for (if it named one).
pub struct Answer {
    pub response: Response<Bytes>,
    pub operation: Option<Operation>,
}

/// Answers one request.
/// `found` is where the edge routed it (`trading_pro::service::route`).
pub async fn handle(
    ctx: &Arc<AppContext>,
    head: http::request::Parts,
    body: Bytes,
    found: Route<Operation>,
    log: &Logger,
) -> Answer {
    let request_id = uuid::Uuid::new_v4().to_string();
    let path = head.uri.path();
    let mut operation = None;
    let result = match found {
        _ if head.method == Method::OPTIONS => {
            if matches!(found, Route::NotFound)
                && ctx.specs.file(path).is_none()
                && ctx.pages.find(path).is_none()
            {
                Err(not_found(ctx, &head.headers, path))
            } else {
                preflight(ctx, &head.headers)
            }
        }
        Route::Found { op, path_vars } => {
            operation = Some(op);
            let parts = Parts {
                path_vars,
                query: head.uri.query().map(str::to_string),
                body,
            };
            let rqctx = Request::new(Arc::clone(ctx), head.headers, head.extensions);
            match call::<TradingServer>(op, rqctx, parts).await {
                Ok(response) => Ok(collect(response).await),
                Err(e) => Err(e),
            }
        }
        Route::NotFound => {
            let page = match ctx.specs.file(path) {
                Some((content_type, body)) => Some(spec_response(content_type, body)),
                None => ctx.pages.find(path).map(|found| match found {
                    Found::Asset(asset) => pages::asset_response(asset, &head.headers),
                    Found::NotBuilt(what) => pages::not_built_response(what, ctx.pages.dir()),
                }),
            };
            match page {
                Some(response) if head.method == Method::GET => {
                    Ok(decorate(ctx, &head.headers, response))
                }
                Some(_) => Err(not_allowed(ctx, &head, &["GET"])),
                None => Err(not_found(ctx, &head.headers, path)),
            }
        }
        Route::MethodNotAllowed(allowed) => Err(not_allowed(ctx, &head, &allowed)),
    };
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            if e.status_code.is_server_error() {
                // The internal message (a file, a database error) is for
                // the operator; the client got the external one.
                warn!(log, "request failed"; "request_id" => &request_id,
                    "status" => e.status_code.as_u16(), "error" => &e.internal_message);
            }
            collect(e.into_response(&request_id)).await
        }
    };
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", id);
    }
    Answer {
        response,
        operation,
    }
}

/// Answers a CORS preflight: 204 with the CORS headers for an allowed origin
/// and method, 403 with a message otherwise.
fn preflight(ctx: &AppContext, request: &HeaderMap) -> Result<Response<Bytes>, HttpError> {
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

/// The body of a response a handler made (always whole in memory).
async fn collect(response: Response<dropshot::Body>) -> Response<Bytes> {
    let (head, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        // dropshot's bodies are buffers; none can fail.
        Err(_) => Bytes::new(),
    };
    Response::from_parts(head, bytes)
}

fn spec_response(content_type: &'static str, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The headers every answer outside the operations carries too.
fn decorate(
    ctx: &AppContext,
    request: &http::HeaderMap,
    mut response: Response<Bytes>,
) -> Response<Bytes> {
    let h = response.headers_mut();
    h.insert(
        "api-version",
        HeaderValue::from_static(trading_pro::API_VERSION),
    );
    ctx.cors.decorate(request, h);
    response
}

fn not_found(ctx: &AppContext, request: &http::HeaderMap, path: &str) -> HttpError {
    let e = HttpError::for_client_error(
        Some("NotFound".into()),
        ClientErrorStatusCode::NOT_FOUND,
        format!("no such path: {path} (the API is described at /api/v1/openapi.json)"),
    );
    decorate_error(ctx, request, e)
}

fn not_allowed(ctx: &AppContext, head: &http::request::Parts, allowed: &[&str]) -> HttpError {
    let allow = allowed.join(", ");
    let mut e = HttpError::for_client_error(
        Some("MethodNotAllowed".into()),
        ClientErrorStatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} is not allowed on {}; allowed: {allow}",
            head.method,
            head.uri.path()
        ),
    );
    if let Ok(v) = HeaderValue::from_str(&allow) {
        e.headers
            .get_or_insert_with(Default::default)
            .insert(header::ALLOW, v);
    }
    decorate_error(ctx, &head.headers, e)
}
