//! The WebSocket handshake (RFC 6455 §4.2), checked in full before a
//! connection is handed to `ws::connection`.
//!
//! A handshake that is not valid gets an HTTP error that names what is
//! wrong, never a 101 followed by a dropped connection. The `Origin` check
//! matters because browsers send cookies with a cross-site WebSocket
//! handshake (cross-site WebSocket hijacking): a browser page may open one
//! only from the same origin or one of the CORS origins. Clients that are
//! not browsers send no `Origin` and are let in unless the operator says
//! otherwise.

use base64::Engine;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::cors::CorsPolicy;

/// A refused handshake: the status, the message and any header the RFC
/// asks for with it.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub message: String,
    pub header: Option<(header::HeaderName, HeaderValue)>,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
        header: None,
    }
}

/// Whether a comma-separated header has `token` (case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The `Sec-WebSocket-Accept` value for a valid handshake.
pub fn check(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    cors: &CorsPolicy,
    own: &[String],
    require_origin: bool,
) -> Result<HeaderValue, Refused> {
    if method != Method::GET {
        return Err(Refused {
            header: Some((header::ALLOW, HeaderValue::from_static("GET"))),
            ..refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("WebSocket handshake must be a GET, not {method}"),
            )
        });
    }
    if version != Version::HTTP_11 {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("WebSocket handshake needs HTTP/1.1, got {version:?}"),
        ));
    }
    let upgrade_required = |what: &str| Refused {
        header: Some((header::UPGRADE, HeaderValue::from_static("websocket"))),
        ..refuse(
            StatusCode::UPGRADE_REQUIRED,
            format!("/api/v1/ws is a WebSocket endpoint: {what}"),
        )
    };
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(upgrade_required("the request needs `Upgrade: websocket`"));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(upgrade_required("the request needs `Connection: Upgrade`"));
    }
    match headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
    {
        Some(b"13") => {}
        other => {
            let got = other.map_or("none".to_string(), |v| {
                format!("{:?}", String::from_utf8_lossy(v))
            });
            return Err(Refused {
                header: Some((
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                )),
                ..refuse(
                    StatusCode::UPGRADE_REQUIRED,
                    format!("Sec-WebSocket-Version must be 13, got {got}"),
                )
            });
        }
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key is missing",
            ))
        }
        (Some(_), Some(_)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Key is given more than once",
            ))
        }
    };
    let decoded = base64::engine::general_purpose::STANDARD.decode(key.as_bytes());
    if !matches!(decoded, Ok(ref bytes) if bytes.len() == 16) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)",
        ));
    }
    check_origin(headers, cors, own, require_origin)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| refuse(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is invalid"))
}

/// A browser's handshake must come from a page of an allowed origin: one of
/// the server's own (`own`: its listening address, `--public-origin`) or a
/// CORS origin. Never the request's `Host`: a page of any site whose name
/// resolves to this server (DNS rebinding) sends its own name there.
fn check_origin(
    headers: &HeaderMap,
    cors: &CorsPolicy,
    own: &[String],
    require: bool,
) -> Result<(), Refused> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        if require {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "WebSocket handshake without an Origin header is not allowed here",
            ));
        }
        return Ok(());
    };
    let text = origin.to_str().unwrap_or("");
    if cors.allows(text) || own.iter().any(|o| o.eq_ignore_ascii_case(text)) {
        return Ok(());
    }
    Err(refuse(
        StatusCode::FORBIDDEN,
        format!(
            "Origin {text:?} may not open a WebSocket here (allowed: the server's own origin, \
             --public-origin and --cors-origin)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8000"));
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    fn run(h: &HeaderMap) -> Result<HeaderValue, Refused> {
        let cors = CorsPolicy::new(["http://localhost:5173".to_string()]);
        let own = ["http://127.0.0.1:8000".to_string()];
        check(&Method::GET, Version::HTTP_11, h, &cors, &own, false)
    }

    #[test]
    fn accepts_the_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(run(&valid()).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn refuses_bad_keys() {
        for key in [
            "",
            "short",
            "!!!!!!!!!!!!!!!!!!!!!!!!",
            "dGhlIHNhbXBsZSBub25jZSE=",
        ] {
            let mut h = valid();
            h.insert(
                header::SEC_WEBSOCKET_KEY,
                HeaderValue::from_str(key).unwrap(),
            );
            let e = run(&h).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{key:?}");
        }
    }

    #[test]
    fn checks_origin() {
        let mut h = valid();
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert_eq!(run(&h).unwrap_err().status, StatusCode::FORBIDDEN);
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:5173"),
        );
        assert!(run(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8000"),
        );
        assert!(run(&h).is_ok());
        // DNS rebinding: a page of another name that resolves here sends
        // that name as both Origin and Host; the Host proves nothing.
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example:8000"),
        );
        h.insert(header::HOST, HeaderValue::from_static("evil.example:8000"));
        assert_eq!(run(&h).unwrap_err().status, StatusCode::FORBIDDEN);
        let cors = CorsPolicy::new(Vec::<String>::new());
        let no_origin = valid();
        assert_eq!(
            check(&Method::GET, Version::HTTP_11, &no_origin, &cors, &[], true)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn refuses_http10_and_missing_upgrade() {
        let cors = CorsPolicy::default();
        let e = check(&Method::GET, Version::HTTP_10, &valid(), &cors, &[], false).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let mut h = valid();
        h.remove(header::UPGRADE);
        assert_eq!(run(&h).unwrap_err().status, StatusCode::UPGRADE_REQUIRED);
        let mut h = valid();
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let e = run(&h).unwrap_err();
        assert_eq!(e.status, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(e.header.unwrap().1, "13");
    }
}
