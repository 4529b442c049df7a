//! Headers every response carries: `API-Version`, and CORS for the
//! configured origins.
//!
//! Each response is decorated where it is made: handlers return through
//! [`crate::handlers::respond`], extraction errors reach the handler (see
//! `trading_pro::extract`), `routes` decorates its own answers and answers
//! preflight requests for every path, and the edge its refusals.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{header, Method};

/// Which browser origins may call the API.
#[derive(Clone, Debug, Default)]
pub struct CorsPolicy {
    any: bool,
    origins: Vec<String>,
}

const ALLOWED_METHODS: &str = "GET, POST, OPTIONS";
const EXPOSED_HEADERS: &str = "API-Version, x-request-id";
const MAX_AGE_SECONDS: &str = "600";

impl CorsPolicy {
    /// `*` allows every origin; otherwise origins are compared exactly
    /// (scheme, host and port), ignoring a trailing slash.
    pub fn new<I: IntoIterator<Item = String>>(origins: I) -> CorsPolicy {
        let mut policy = CorsPolicy::default();
        for o in origins {
            let o = o.trim().trim_end_matches('/').to_string();
            if o == "*" {
                policy.any = true;
            } else if !o.is_empty() {
                policy.origins.push(o);
            }
        }
        policy
    }

    /// Whether a browser page from `origin` may call the API.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.origins.iter().any(|o| o == origin)
    }

    fn allowed<'a>(&self, request: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = request.get(header::ORIGIN)?;
        self.allows(origin.to_str().ok()?).then_some(origin)
    }

    /// Adds the CORS response headers for an allowed origin.
    pub fn decorate(&self, request: &HeaderMap, response: &mut HeaderMap) {
        response.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.allowed(request) {
            response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            response.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }

    /// Headers answering a preflight request, or `None` when the origin or
    /// the requested method is not allowed.
    pub fn preflight(&self, request: &HeaderMap) -> Option<Vec<(HeaderName, HeaderValue)>> {
        let origin = self.allowed(request)?;
        if let Some(m) = request.get(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let m = Method::from_bytes(m.as_bytes()).ok()?;
            if m != Method::GET && m != Method::POST {
                return None;
            }
        }
        let headers = request
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("content-type"));
        Some(vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(ALLOWED_METHODS),
            ),
            (header::ACCESS_CONTROL_ALLOW_HEADERS, headers),
            (
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECONDS),
            ),
            (header::VARY, HeaderValue::from_static("Origin")),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn allows_only_configured_origins() {
        let p = CorsPolicy::new(["http://localhost:5173/".to_string()]);
        let mut out = HeaderMap::new();
        p.decorate(&req("http://localhost:5173"), &mut out);
        assert_eq!(
            out[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:5173"
        );
        let mut out = HeaderMap::new();
        p.decorate(&req("http://evil.example"), &mut out);
        assert!(out.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(p.preflight(&req("http://evil.example")).is_none());
    }

    #[test]
    fn preflight_rejects_other_methods() {
        let p = CorsPolicy::new(["*".to_string()]);
        let mut h = req("http://a.example");
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("DELETE"),
        );
        assert!(p.preflight(&h).is_none());
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert!(p.preflight(&h).is_some());
    }
}
