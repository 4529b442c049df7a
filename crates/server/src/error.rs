//! Every way a request can be wrong, as a typed value, and how each becomes
//! an HTTP error with a message that says what to fix.

use dropshot::{ClientErrorStatusCode, HttpError};

use trading_market::source::{Reason, SourceError, Unhealthy};

#[derive(Debug)]
pub enum ApiError {
    UnknownSymbol(String),
    UnsupportedResolution(String),
    /// A resolution the API knows but this symbol does not serve.
    UnservedResolution {
        resolution: String,
        why: String,
    },
    InvalidRange {
        from: i64,
        to: i64,
    },
    OutOfRange {
        name: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    /// A quotes request naming `got` symbols, not 1 to `max`.
    QuoteSymbolCount {
        got: usize,
        max: usize,
    },
    /// The request did not parse (query string, path or body); dropshot's
    /// error already says why.
    Malformed(HttpError),
    /// The data source cannot answer (a store that cannot be read): 503
    /// with the reason's class as its code, and `Retry-After`.
    Unavailable(Unhealthy),
    /// Ingest not taken now (or its outcome not known), with what the
    /// client should do (`message`, shown) and the cause (`detail`,
    /// logged): 503 with the reason's class as its code.
    Retry {
        reason: Reason,
        message: String,
        detail: String,
    },
    /// The node is not ready (`getReadiness`): 503 saying why, for the
    /// operator (no secrets in it).
    NotReady(String),
    /// The server takes no ingest; says what is missing (403).
    IngestDisabled(String),
    /// No usable bearer token (401, with `WWW-Authenticate`).
    Unauthenticated(String),
    /// A token, but not the right one (403).
    Forbidden(String),
    /// An ingest request that breaks a rule: which item and why (400).
    InvalidIngest {
        code: &'static str,
        message: String,
    },
    /// An `Idempotency-Key` reused for a different request (422).
    KeyReused(String),
    /// An order (or a position or leverage change) that breaks a rule:
    /// the field as the API names it, and why (400).
    InvalidOrder {
        field: String,
        message: String,
    },
    /// No such order in the caller's account (404): another account's
    /// order is not found either.
    OrderNotFound(String),
    /// The order is filled, cancelled or rejected already (409).
    OrderFinal(String),
    /// No position in the symbol (404).
    PositionNotFound(String),
    /// The paper broker is not served here (503 saying why).
    BrokerUnavailable(String),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSymbol(_) => "UnknownSymbol",
            ApiError::UnsupportedResolution(_) | ApiError::UnservedResolution { .. } => {
                "UnsupportedResolution"
            }
            ApiError::InvalidRange { .. } => "InvalidRange",
            ApiError::OutOfRange { .. } => "OutOfRange",
            ApiError::QuoteSymbolCount { .. } => "InvalidSymbolCount",
            ApiError::Malformed(_) => "BadRequest",
            ApiError::Unavailable(why) => why.reason.error_code(),
            ApiError::Retry { reason, .. } => reason.error_code(),
            ApiError::NotReady(_) => "NotReady",
            ApiError::IngestDisabled(_) => "IngestDisabled",
            ApiError::Unauthenticated(_) => "Unauthenticated",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::InvalidIngest { code, .. } => code,
            ApiError::KeyReused(_) => "IdempotencyKeyReused",
            ApiError::InvalidOrder { .. } => "InvalidOrder",
            ApiError::OrderNotFound(_) => "OrderNotFound",
            ApiError::OrderFinal(_) => "OrderFinal",
            ApiError::PositionNotFound(_) => "PositionNotFound",
            ApiError::BrokerUnavailable(_) => "BrokerUnavailable",
        }
    }

    pub fn into_http(self) -> HttpError {
        let status = match self {
            ApiError::UnknownSymbol(_)
            | ApiError::OrderNotFound(_)
            | ApiError::PositionNotFound(_) => ClientErrorStatusCode::NOT_FOUND,
            ApiError::OrderFinal(_) => ClientErrorStatusCode::CONFLICT,
            ApiError::BrokerUnavailable(why) => {
                let mut e = HttpError::for_unavail(Some("BrokerUnavailable".into()), why.clone());
                e.external_message = why;
                return retry_after(e, 60);
            }
            ApiError::Malformed(mut e) => {
                // dropshot's parse errors carry no code; every error of
                // ours has one.
                e.error_code.get_or_insert_with(|| "BadRequest".into());
                return e;
            }
            ApiError::Unavailable(why) => {
                // The cause (a file, a database error) goes to the log only.
                let code = why.reason.error_code().to_string();
                let mut e = HttpError::for_unavail(Some(code), why.detail);
                e.external_message = format!(
                    "{} ({}); retry later, the server log says why",
                    why.reason.explain(),
                    why.reason.as_str()
                );
                return retry_after(e, why.reason.retry_after_s());
            }
            ApiError::Retry {
                reason,
                message,
                detail,
            } => {
                let mut e = HttpError::for_unavail(Some(reason.error_code().into()), detail);
                e.external_message = message;
                return retry_after(e, reason.retry_after_s());
            }
            ApiError::NotReady(why) => {
                let mut e = HttpError::for_unavail(Some("NotReady".into()), why.clone());
                e.external_message = why;
                return retry_after(e, 5);
            }
            ApiError::IngestDisabled(_) | ApiError::Forbidden(_) => {
                ClientErrorStatusCode::FORBIDDEN
            }
            ApiError::Unauthenticated(_) => ClientErrorStatusCode::UNAUTHORIZED,
            ApiError::KeyReused(_) => ClientErrorStatusCode::UNPROCESSABLE_ENTITY,
            _ => ClientErrorStatusCode::BAD_REQUEST,
        };
        let code = self.code().to_string();
        let challenge = matches!(self, ApiError::Unauthenticated(_));
        let mut e = HttpError::for_client_error(Some(code), status, self.to_string());
        if challenge {
            e.headers.get_or_insert_with(Default::default).insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"trading-pro ingest\""),
            );
        }
        e
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::UnknownSymbol(s) => write!(f, "unknown symbol {s:?}"),
            ApiError::UnsupportedResolution(r) => write!(
                f,
                "unsupported resolution {r:?}; supported: 1, 5, 15, 30, 60, 240, D, W, M \
                 (1D, 1W, 1M accepted as aliases)"
            ),
            ApiError::UnservedResolution { resolution, why } => {
                write!(f, "resolution {resolution:?} is not available: {why}")
            }
            ApiError::InvalidRange { from, to } => {
                write!(f, "from_time ({from}) must not be after to_time ({to})")
            }
            ApiError::OutOfRange {
                name,
                value,
                min,
                max,
            } => {
                write!(f, "{name} must be between {min} and {max}, got {value}")
            }
            ApiError::QuoteSymbolCount { got, max } => write!(
                f,
                "symbols must list between 1 and {max} symbols, got {got}"
            ),
            ApiError::Malformed(e) => f.write_str(&e.external_message),
            ApiError::Unavailable(why) => f.write_str(&why.detail),
            ApiError::NotReady(why)
            | ApiError::IngestDisabled(why)
            | ApiError::Unauthenticated(why)
            | ApiError::Forbidden(why)
            | ApiError::KeyReused(why)
            | ApiError::OrderNotFound(why)
            | ApiError::OrderFinal(why)
            | ApiError::PositionNotFound(why)
            | ApiError::BrokerUnavailable(why) => f.write_str(why),
            ApiError::InvalidOrder { field, message } => write!(f, "{field}: {message}"),
            ApiError::InvalidIngest { message, .. } => f.write_str(message),
            ApiError::Retry {
                message, detail, ..
            } => write!(f, "{message} ({detail})"),
        }
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        ApiError::Malformed(e)
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Unavailable(why) => ApiError::Unavailable(why),
        }
    }
}

/// A 503 says when to try again.
fn retry_after(mut e: HttpError, seconds: u32) -> HttpError {
    e.headers
        .get_or_insert_with(Default::default)
        .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    e
}
