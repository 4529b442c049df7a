//! What the generated `call` needs at run time: the request a handler sees,
//! the route table lookup, and the parsing of path, query, header and body
//! arguments.
//!
//! The parsing answers exactly as dropshot's extractors would (the same
//! decoders, the same messages), so a client sees the same 400s whether the
//! contract is served by dropshot or by `call`.

use std::sync::Arc;

use bytes::Bytes;
use dropshot::HttpError;
use http::{HeaderMap, Method};
use serde::de::DeserializeOwned;

/// The request as a handler sees it: the server's context and the headers.
pub struct Request<C> {
    context: Arc<C>,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl<C> Request<C> {
    /// `extensions` carries what the server learnt of the request before
    /// its handler runs (such as who sent it).
    pub fn new(context: Arc<C>, headers: HeaderMap, extensions: http::Extensions) -> Request<C> {
        Request {
            context,
            headers,
            extensions,
        }
    }

    /// The server's state.
    pub fn context(&self) -> &C {
        &self.context
    }

    /// The request's headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// What the server attached to the request (see `new`).
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }
}

/// The parts of a request its arguments are parsed from.
pub struct Parts {
    /// The path's variables, percent-decoded, by name.
    pub path_vars: Vec<(&'static str, String)>,
    /// The raw query string.
    pub query: Option<String>,
    /// The whole body (the edge has read and bounded it).
    pub body: Bytes,
}

/// Which operation a request names.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<Op> {
    Found {
        op: Op,
        path_vars: Vec<(&'static str, String)>,
    },
    /// The path exists, with other methods: these.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

/// Looks `method path` up in a route table (operation, method, template).
/// A template segment `{name}` matches one non-empty segment, which is
/// percent-decoded; every other segment must match exactly.
pub fn route<Op: Copy>(
    table: &[(Op, &'static str, &'static str)],
    method: &Method,
    path: &str,
) -> Route<Op> {
    let mut allowed = Vec::new();
    for &(op, m, template) in table {
        let Some(path_vars) = match_template(template, path) else {
            continue;
        };
        if m == method.as_str() {
            return Route::Found { op, path_vars };
        }
        allowed.push(m);
    }
    if allowed.is_empty() {
        Route::NotFound
    } else {
        Route::MethodNotAllowed(allowed)
    }
}

fn match_template(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut vars = Vec::new();
    let mut segments = path.split('/');
    for t in template.split('/') {
        let s = segments.next()?;
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(name) => {
                if s.is_empty() {
                    return None;
                }
                let decoded = percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .ok()?
                    .into_owned();
                vars.push((name, decoded));
            }
            None if t == s => {}
            None => return None,
        }
    }
    segments.next().is_none().then_some(vars)
}

/// Path variables into `T` (a struct of strings, from the spec).
pub fn path_params<T: DeserializeOwned>(vars: &[(&'static str, String)]) -> Result<T, HttpError> {
    let map: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| HttpError::for_bad_request(None, format!("bad parameter in URL path: {e}")))
}

/// The query string into `T`, as dropshot's `Query` does.
pub fn query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, HttpError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| HttpError::for_bad_request(None, format!("unable to parse query string: {e}")))
}

/// The spec's header parameters (`names`, all strings) into `T`. Header
/// names are case-insensitive; a header that is absent is left out.
pub fn header_params<T: DeserializeOwned>(
    headers: &HeaderMap,
    names: &[&str],
) -> Result<T, HttpError> {
    let mut map = serde_json::Map::new();
    for name in names {
        if let Some(v) = headers.get(*name) {
            let v = v.to_str().map_err(|_| {
                HttpError::for_bad_request(None, format!("header {name} must be printable ASCII"))
            })?;
            map.insert(name.to_string(), serde_json::Value::String(v.to_string()));
        }
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| HttpError::for_bad_request(None, format!("error processing headers: {e}")))
}

/// A JSON body into `T`, as dropshot's `TypedBody` does: no `Content-Type`
/// means JSON; any other media type than `application/json` is refused.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, HttpError> {
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .map_err(|e| HttpError::for_bad_request(None, format!("invalid content type: {e}")))?;
        let mime = ct[..ct.find(';').unwrap_or(ct.len())]
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" {
            return Err(HttpError::for_bad_request(
                None,
                format!("expected content type \"application/json\", got \"{mime}\""),
            ));
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| HttpError::for_bad_request(None, format!("unable to parse JSON body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: [(u8, &str, &str); 3] = [
        (1, "GET", "/api/v1/health"),
        (2, "GET", "/api/v1/datafeed/resolve/{symbol}"),
        (3, "POST", "/api/v1/datafeed/quotes"),
    ];

    #[test]
    fn routes_by_method_and_template() {
        assert_eq!(
            route(&TABLE, &Method::GET, "/api/v1/health"),
            Route::Found {
                op: 1,
                path_vars: vec![]
            }
        );
        assert_eq!(
            route(
                &TABLE,
                &Method::GET,
                "/api/v1/datafeed/resolve/BINANCE%3ABTC%20X"
            ),
            Route::Found {
                op: 2,
                path_vars: vec![("symbol", "BINANCE:BTC X".to_string())]
            }
        );
        assert_eq!(
            route(&TABLE, &Method::GET, "/api/v1/datafeed/quotes"),
            Route::MethodNotAllowed(vec!["POST"])
        );
        for missing in [
            "/api/v1/datafeed/resolve/",
            "/api/v1/datafeed/resolve/a/b",
            "/api/v1/health/",
            "/api/v1",
            "/api/v1/datafeed/resolve/%ff",
        ] {
            assert_eq!(
                route(&TABLE, &Method::GET, missing),
                Route::NotFound,
                "{missing}"
            );
        }
    }

    #[test]
    fn bodies_must_be_json() {
        #[derive(serde::Deserialize, Debug)]
        struct B {
            #[allow(dead_code)]
            n: i64,
        }
        let mut h = HeaderMap::new();
        assert!(json_body::<B>(&h, br#"{"n":1}"#).is_ok());
        h.insert(
            "content-type",
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(json_body::<B>(&h, br#"{"n":1}"#).is_ok());
        let e = json_body::<B>(&h, br#"{"n":"x"}"#).unwrap_err();
        assert!(
            e.external_message.contains("n: invalid type"),
            "{}",
            e.external_message
        );
        h.insert("content-type", "text/plain".parse().unwrap());
        let e = json_body::<B>(&h, br#"{"n":1}"#).unwrap_err();
        assert!(e.external_message.contains("got \"text/plain\""));
    }
}
