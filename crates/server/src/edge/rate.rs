//! Per-client request rate limits: a token bucket per client address
//! (governor's GCRA, which is a token bucket kept as one timestamp per
//! client), answered with 429 and the `RateLimit-*` headers of the IETF
//! draft so a well-behaved client can pace itself before it is refused.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use http::{HeaderMap, HeaderValue};

use super::admission::ClientKey;

type Keyed = RateLimiter<
    ClientKey,
    DefaultKeyedStateStore<ClientKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// What a request is told about its client's budget.
#[derive(Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests the client may still make at once.
    remaining: u32,
    /// Seconds until the next request is allowed (when refused), or until
    /// the budget is full again.
    reset_s: u64,
}

impl Verdict {
    /// Requests the client may still make at once.
    pub fn remaining(&self) -> u32 {
        self.remaining
    }
}

pub struct RateLimits {
    limiter: Keyed,
    rps: u32,
    burst: u32,
}

impl RateLimits {
    /// None when `rps` is 0 (rate limiting off).
    pub fn new(rps: u32, burst: u32) -> Option<RateLimits> {
        let rps_nz = NonZeroU32::new(rps)?;
        let burst = burst.max(1);
        let quota = Quota::per_second(rps_nz).allow_burst(NonZeroU32::new(burst)?);
        Some(RateLimits {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            rps,
            burst,
        })
    }

    pub fn check(&self, client: ClientKey) -> Verdict {
        match self.limiter.check_key(&client) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let missing = u64::from(self.burst.saturating_sub(remaining));
                Verdict {
                    allowed: true,
                    remaining,
                    reset_s: missing.div_ceil(u64::from(self.rps)),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Verdict {
                    allowed: false,
                    remaining: 0,
                    reset_s: ceil_seconds(wait),
                }
            }
        }
    }

    /// Forgets clients whose bucket is full again, so the table holds only
    /// clients seen in the last `burst / rps` seconds.
    pub fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// The `RateLimit-*` headers (and `Retry-After` on a refusal).
    pub fn headers(&self, verdict: &Verdict, out: &mut HeaderMap) {
        let window = u64::from(self.burst).div_ceil(u64::from(self.rps)).max(1);
        out.insert("ratelimit-limit", HeaderValue::from(self.burst));
        out.insert("ratelimit-remaining", HeaderValue::from(verdict.remaining));
        out.insert("ratelimit-reset", HeaderValue::from(verdict.reset_s));
        let policy = format!("{};w={window}", self.burst);
        if let Ok(v) = HeaderValue::from_str(&policy) {
            out.insert("ratelimit-policy", v);
        }
        if !verdict.allowed {
            out.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(verdict.reset_s),
            );
        }
    }

    pub fn describe(&self) -> String {
        format!("{} requests/s, burst {}", self.rps, self.burst)
    }
}

fn ceil_seconds(d: Duration) -> u64 {
    let s = d.as_secs();
    if d.subsec_nanos() > 0 {
        s + 1
    } else {
        s.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_burst_and_says_when_to_retry() {
        let limits = RateLimits::new(1, 3).unwrap();
        let c = ClientKey::V4(7);
        let seen: Vec<u32> = (0..3).map(|_| limits.check(c).remaining).collect();
        assert_eq!(seen, vec![2, 1, 0]);
        let refused = limits.check(c);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_s, 1);
        let mut h = HeaderMap::new();
        limits.headers(&refused, &mut h);
        assert_eq!(h["retry-after"], "1");
        assert_eq!(h["ratelimit-limit"], "3");
        assert_eq!(h["ratelimit-remaining"], "0");
        // Another client has its own bucket.
        assert!(limits.check(ClientKey::V4(8)).allowed);
    }

    #[test]
    fn zero_rate_is_off() {
        assert!(RateLimits::new(0, 10).is_none());
    }
}
