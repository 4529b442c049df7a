//! Live ingest: what a feed sends (trades, or bars at a symbol's base
//! resolution), what applying it answers, and the `Ingest` interface of a
//! source that takes it. The rules each item must follow are the stores'
//! (`trading_store::rules`).

use async_trait::async_trait;

use crate::calendar::Resolution;

/// Most items in one request (documented in the spec).
pub const MAX_ITEMS: usize = 10_000;
/// How long an `Idempotency-Key` is remembered.
pub const KEY_RETENTION_MS: i64 = 24 * 3_600_000;

#[derive(Clone, Debug, PartialEq)]
pub struct TradeIn {
    pub symbol: String,
    pub time: i64,
    pub price: f64,
    pub size: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BarIn {
    pub symbol: String,
    pub time: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IngestRequest {
    Trades(Vec<TradeIn>),
    Bars {
        resolution: Option<Resolution>,
        bars: Vec<BarIn>,
    },
}

/// What a request applied: the body of the 200, stored with its
/// idempotency key so a retry gets the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestReceipt {
    pub applied: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// The request breaks a rule; the message names the item and why.
    /// Nothing was applied.
    Invalid(String),
    /// The idempotency key was used before for a different request.
    KeyReused(String),
    /// The store could not apply it; nothing was acknowledged. The class
    /// clients are told, and the details for the log.
    Unavailable(crate::health::Unhealthy),
    /// Not taken now, or its outcome not known: `message` tells the client
    /// what to do (it names no host or internal error), `detail` is the
    /// cause, for the log; `reason` its class.
    Retry {
        reason: crate::health::Reason,
        message: String,
        detail: String,
    },
}

impl IngestError {
    /// Not applied for `reason`, with `detail` for the log.
    pub fn unavailable(reason: crate::health::Reason, detail: impl Into<String>) -> IngestError {
        IngestError::Unavailable(crate::health::Unhealthy {
            reason,
            detail: detail.into(),
        })
    }
}

impl std::fmt::Display for IngestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IngestError::Invalid(m) | IngestError::KeyReused(m) => f.write_str(m),
            IngestError::Unavailable(why) => f.write_str(&why.detail),
            IngestError::Retry {
                message, detail, ..
            } => write!(f, "{message} ({detail})"),
        }
    }
}

/// The write side of a store.
#[async_trait]
pub trait Ingest: Send + Sync {
    /// Validates and applies `request` as one unit, durably, and publishes
    /// the changed bars. A `key` has passed [`check_key`]. With a `key` already applied (same request), the
    /// receipt of that first application, and nothing applied again.
    /// `deadline`: when the client stops waiting; a store that has not
    /// committed the request by then does not apply it (a log that has
    /// taken it keeps it: a retry with the key then reports it applied).
    async fn apply(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
        deadline: Option<std::time::Instant>,
    ) -> Result<IngestReceipt, IngestError>;
}

impl IngestRequest {
    /// `trades` or `bars`: keys are remembered per endpoint.
    pub fn endpoint(&self) -> &'static str {
        match self {
            IngestRequest::Trades(_) => "trades",
            IngestRequest::Bars { .. } => "bars",
        }
    }

    pub fn len(&self) -> usize {
        match self {
            IngestRequest::Trades(t) => t.len(),
            IngestRequest::Bars { bars, .. } => bars.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A stable digest of the request, to tell a retry (same key, same
    /// request) from a key reused for something else. FNV-1a: stable
    /// across builds and platforms, which is all this needs.
    pub fn fingerprint(&self) -> i64 {
        let mut h = Fnv::default();
        h.write(self.endpoint().as_bytes());
        match self {
            IngestRequest::Trades(trades) => {
                for t in trades {
                    h.write(t.symbol.as_bytes());
                    h.write(&[0]);
                    h.write(&t.time.to_le_bytes());
                    h.write(&t.price.to_bits().to_le_bytes());
                    h.write(&t.size.to_bits().to_le_bytes());
                }
            }
            IngestRequest::Bars { resolution, bars } => {
                h.write(resolution.map_or("", Resolution::as_str).as_bytes());
                for b in bars {
                    h.write(b.symbol.as_bytes());
                    h.write(&[0]);
                    h.write(&b.time.to_le_bytes());
                    for v in [b.open, b.high, b.low, b.close, b.volume] {
                        h.write(&v.to_bits().to_le_bytes());
                    }
                }
            }
        }
        h.0 as i64
    }
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Checks an `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!(
            "Idempotency-Key must be 1 to 255 printable ASCII characters, got {} bytes",
            key.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_requests_apart() {
        let t = |price| {
            IngestRequest::Trades(vec![TradeIn {
                symbol: "X".into(),
                time: 1,
                price,
                size: 1.0,
            }])
        };
        assert_eq!(t(1.0).fingerprint(), t(1.0).fingerprint());
        assert_ne!(t(1.0).fingerprint(), t(1.5).fingerprint());
        assert!(check_key("batch-1").is_ok());
        assert!(check_key("").is_err() && check_key("é").is_err());
    }
}
