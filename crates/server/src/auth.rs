//! Who is asking, and what they may see: JSON Web Tokens verified with
//! `jsonwebtoken`, and the exchanges a token entitles its bearer to.
//!
//! Authentication is off unless the operator gives a key: an HS256 secret
//! (`--auth-jwt-secret`), or an RS256/ES256 public key in PEM or a JWKS file
//! (`--auth-jwt-public-key`). The edge asks for a token on every operation
//! whose `security` in the spec names a JWT scheme, and on the WebSocket
//! handshake; handlers and the WebSocket then filter by [`Principal`].
//!
//! A token is never logged, echoed or counted: every error here says what
//! was wrong with it, never what it was.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::header::{self, HeaderMap, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde_json::Value;

/// The cookie and query parameter a browser may carry its token in (a
/// browser cannot set headers on a WebSocket handshake).
pub const TOKEN_PARAM: &str = "access_token";

/// The spec's security schemes that mean "a JWT" (the others, such as the
/// ingest token, are checked by their operations themselves).
pub const JWT_SCHEMES: [&str; 3] = ["bearerAuth", "cookieAuth", "queryAuth"];

/// Whether `op` asks for a JWT (its `security` in the spec names a JWT
/// scheme): with authentication on, it needs a valid token.
pub fn requires_token(op: trading_pro::api::Operation) -> bool {
    op.facts()
        .security_schemes
        .iter()
        .any(|scheme| JWT_SCHEMES.contains(scheme))
}

/// What a token without the entitlement claim may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DefaultEntitlement {
    All,
    None,
}

/// The exchanges a user may see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entitlement {
    All,
    /// Exchange names, upper-cased.
    Only(HashSet<String>),
}

impl Entitlement {
    pub fn allows(&self, exchange: &str) -> bool {
        match self {
            Entitlement::All => true,
            Entitlement::Only(set) => set.contains(&exchange.to_ascii_uppercase()),
        }
    }
}

/// A verified token's bearer.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Who the limits count this as: the token's `sub`, hashed (a token
    /// shared by many browsers is one user).
    pub user: u64,
    /// The `sub` claim, which a refreshed token must keep.
    pub subject: String,
    /// The `exp` claim, unix seconds.
    pub expires_at: i64,
    pub exchanges: Entitlement,
}

impl Principal {
    pub fn allows(&self, exchange: &str) -> bool {
        self.exchanges.allows(exchange)
    }
}

/// Why a request's token was not accepted (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No token at all: RFC 6750 says to name no error then.
    Missing,
    Invalid(String),
}

impl Rejection {
    pub fn message(&self) -> String {
        match self {
            Rejection::Missing => "This server needs a token: send `Authorization: Bearer TOKEN` \
                 (or, from a browser, an access_token cookie or query parameter)"
                .into(),
            Rejection::Invalid(why) => format!("The token was not accepted: {why}"),
        }
    }

    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
    pub fn challenge(&self) -> HeaderValue {
        let value = match self {
            Rejection::Missing => r#"Bearer realm="trading-pro""#.to_string(),
            Rejection::Invalid(why) => format!(
                r#"Bearer realm="trading-pro", error="invalid_token", error_description="{}""#,
                why.replace(['"', '\\'], "'")
            ),
        };
        HeaderValue::from_str(&value)
            .unwrap_or_else(|_| HeaderValue::from_static(r#"Bearer realm="trading-pro""#))
    }
}

/// How the server verifies tokens (from the flags).
pub struct AuthConfig<'a> {
    pub secret: Option<&'a str>,
    pub public_key: Option<&'a Path>,
    pub issuer: Option<&'a str>,
    pub audience: Option<&'a str>,
    pub entitlement_claim: &'a str,
    pub default_entitlement: DefaultEntitlement,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway_s: u64,
    /// Longest a token may still be valid for (its `exp` from now).
    pub max_lifetime_s: u64,
}

enum Keys {
    /// One key, and the checks for its algorithm family.
    One(DecodingKey, Box<Validation>),
    /// A JWKS: keys by `kid`, each with the checks for its algorithm
    /// family (jsonwebtoken wants every algorithm of one check to be of
    /// the key's family).
    Set(Vec<(Option<String>, DecodingKey, Validation)>),
}

pub struct Auth {
    keys: Keys,
    leeway_s: u64,
    max_lifetime_s: u64,
    claim: String,
    default: DefaultEntitlement,
    hasher: RandomState,
    /// Tokens already verified, and their bearers (see `VERIFIED_TOKENS`).
    verified: Mutex<HashMap<String, Principal>>,
}

impl Auth {
    /// None when no key is configured (authentication off).
    pub fn from_config(c: &AuthConfig) -> Result<Option<Arc<Auth>>, String> {
        let loaded = match (c.secret, c.public_key) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(
                    "--auth-jwt-secret and --auth-jwt-public-key are exclusive: give one".into(),
                )
            }
            (Some(secret), None) => {
                if secret.len() < 16 {
                    return Err("--auth-jwt-secret must be at least 16 bytes long".into());
                }
                let key = DecodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| format!("--auth-jwt-secret: {e}"))?;
                Loaded::One(key, AlgorithmFamily::Hmac)
            }
            (None, Some(path)) => load_public_key(path)?,
        };
        let keys = match loaded {
            Loaded::One(key, family) => Keys::One(key, Box::new(validation(c, family))),
            Loaded::Set(keys) => Keys::Set(
                keys.into_iter()
                    .map(|(kid, key, family)| (kid, key, validation(c, family)))
                    .collect(),
            ),
        };
        Ok(Some(Arc::new(Auth {
            keys,
            leeway_s: c.leeway_s,
            max_lifetime_s: c.max_lifetime_s,
            claim: c.entitlement_claim.to_string(),
            default: c.default_entitlement,
            hasher: RandomState::new(),
            verified: Mutex::default(),
        })))
    }

    /// When a connection whose token expires at `exp` (unix seconds) must
    /// close, unless refreshed: its expiry plus the leeway.
    pub fn deadline(&self, exp: i64) -> tokio::time::Instant {
        let now = unix_now();
        let left = (exp + self.leeway_s as i64 - now).max(0) as u64;
        tokio::time::Instant::now() + std::time::Duration::from_secs(left)
    }

    /// Verifies a token: its signature, `exp` (and `nbf`), and the issuer
    /// and audience when configured.
    pub fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        let invalid = |why: &str| Rejection::Invalid(why.to_string());
        let head = jsonwebtoken::decode_header(token)
            .map_err(|_| invalid("it is not a JSON Web Token (three base64url parts)"))?;
        let (key, validation) = match &self.keys {
            Keys::One(key, validation) => (key, &**validation),
            Keys::Set(keys) => {
                let family = head.alg.family();
                let found = keys.iter().find(|(kid, _, v)| {
                    v.algorithms[0].family() == family
                        && (head.kid.is_none() || kid.as_deref() == head.kid.as_deref())
                });
                match found {
                    Some((_, key, validation)) => (key, validation),
                    None => return Err(invalid("no key of the server's key set matches its kid")),
                }
            }
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, validation)
            .map_err(|e| {
            Rejection::Invalid(
                match e.kind() {
                    ErrorKind::ExpiredSignature => "it has expired",
                    ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "its signature does not verify",
                    ErrorKind::InvalidAlgorithm => {
                        "it is signed with an algorithm this server does not accept"
                    }
                    ErrorKind::InvalidAudience => "it is not for this audience (aud)",
                    ErrorKind::InvalidIssuer => "it is not from the expected issuer (iss)",
                    ErrorKind::MissingRequiredClaim(c) if c == "exp" => "it has no exp claim",
                    ErrorKind::MissingRequiredClaim(c) if c == "aud" => "it has no aud claim",
                    ErrorKind::MissingRequiredClaim(c) if c == "iss" => "it has no iss claim",
                    ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
                    _ => "it is malformed",
                }
                .to_string(),
            )
        })?;
        let claims = data.claims;
        // A NumericDate may have a fraction (RFC 7519 §2): read as
        // jsonwebtoken read it for its own check, so REST and the
        // WebSocket's deadline agree.
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_f64)
            .map_or(0, |e| e.floor() as i64);
        let max_end = unix_now()
            .saturating_add(i64::try_from(self.max_lifetime_s).unwrap_or(i64::MAX))
            .saturating_add(self.leeway_s as i64);
        if expires_at > max_end {
            return Err(invalid(&format!(
                "it is valid for longer than this server accepts ({} s; \
                 --auth-max-token-lifetime)",
                self.max_lifetime_s
            )));
        }
        // Accounts, limits and refreshes are per user: a token must say
        // whose it is.
        let subject = match claims.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.trim().is_empty() => sub.to_string(),
            _ => return Err(invalid("it has no sub claim (the user it is for)")),
        };
        let exchanges = match claims.get(&self.claim) {
            None | Some(Value::Null) => match self.default {
                DefaultEntitlement::All => Entitlement::All,
                DefaultEntitlement::None => Entitlement::Only(HashSet::new()),
            },
            Some(Value::Array(items)) => {
                let mut set = HashSet::new();
                for item in items {
                    let Some(name) = item.as_str() else {
                        return Err(Rejection::Invalid(format!(
                            "its {} claim must list exchange names",
                            self.claim
                        )));
                    };
                    set.insert(name.to_ascii_uppercase());
                }
                // "*" entitles to every exchange, present and future.
                if set.contains("*") {
                    Entitlement::All
                } else {
                    Entitlement::Only(set)
                }
            }
            Some(_) => {
                return Err(Rejection::Invalid(format!(
                    "its {} claim must be a list of exchange names",
                    self.claim
                )))
            }
        };
        let user = self.hasher.hash_one(("sub", &subject));
        Ok(Principal {
            user,
            subject,
            expires_at,
            exchanges,
        })
    }

    /// The token a request carries and its bearer, or why there is none
    /// that will do.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Principal, Rejection> {
        let token = token_of(headers, query)?.ok_or(Rejection::Missing)?;
        let now = unix_now();
        if let Some(p) = lock(&self.verified).get(&token) {
            if p.expires_at + self.leeway_s as i64 >= now {
                return Ok(p.clone());
            }
        }
        let principal = self.verify(&token)?;
        let mut verified = lock(&self.verified);
        if verified.len() >= VERIFIED_TOKENS {
            let leeway = self.leeway_s as i64;
            verified.retain(|_, p| p.expires_at + leeway >= now);
            if verified.len() >= VERIFIED_TOKENS {
                verified.clear();
            }
        }
        verified.insert(token, principal.clone());
        Ok(principal)
    }
}

/// Tokens kept verified. A browser sends the same token with every
/// request; checking an ES256 signature each time cost about 150 µs of
/// CPU a request, a map lookup costs almost nothing (docs/BENCHMARKS.md,
/// "Authentication"). A token is kept whole (not a hash of it), so only the
/// very token that was verified is taken, and until its expiry.
const VERIFIED_TOKENS: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The token in a request: `Authorization: Bearer`, else the access_token
/// cookie, else the access_token query parameter.
pub fn token_of(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, Rejection> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or("");
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Rejection::Invalid(
                "the Authorization header must use the Bearer scheme".into(),
            ));
        }
        let token = rest.trim();
        if token.is_empty() {
            return Err(Rejection::Invalid(
                "the Authorization header has no token after Bearer".into(),
            ));
        }
        return Ok(Some(token.to_string()));
    }
    for cookies in headers.get_all(header::COOKIE) {
        let Ok(cookies) = cookies.to_str() else {
            continue;
        };
        for pair in cookies.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == TOKEN_PARAM && !value.is_empty() {
                    return Ok(Some(value.trim_matches('"').to_string()));
                }
            }
        }
    }
    if let Some(query) = query {
        for (name, value) in url_pairs(query) {
            if name == TOKEN_PARAM && !value.is_empty() {
                return Ok(Some(value));
            }
        }
    }
    Ok(None)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        };
        Some((decode(name)?, decode(value)?))
    })
}

/// What a key file holds.
enum Loaded {
    One(DecodingKey, AlgorithmFamily),
    Set(Vec<(Option<String>, DecodingKey, AlgorithmFamily)>),
}

/// A public key file: a JWKS (JSON) or one PEM key (RSA or EC).
fn load_public_key(path: &Path) -> Result<Loaded, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("--auth-jwt-public-key {shown}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    if text.trim_start().starts_with('{') {
        let set: JwkSet = serde_json::from_str(&text)
            .map_err(|e| format!("--auth-jwt-public-key {shown}: not a JWKS: {e}"))?;
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| format!("--auth-jwt-public-key {shown}: keys[{i}]: {e}"))?;
            let family = key.family();
            if family == AlgorithmFamily::Hmac {
                return Err(format!(
                    "--auth-jwt-public-key {shown}: keys[{i}] is a shared secret; use --auth-jwt-secret"
                ));
            }
            keys.push((jwk.common.key_id.clone(), key, family));
        }
        if keys.is_empty() {
            return Err(format!(
                "--auth-jwt-public-key {shown}: the key set is empty"
            ));
        }
        return Ok(Loaded::Set(keys));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(&bytes) {
        return Ok(Loaded::One(key, AlgorithmFamily::Rsa));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&bytes) {
        return Ok(Loaded::One(key, AlgorithmFamily::Ec));
    }
    Err(format!(
        "--auth-jwt-public-key {shown}: neither a JWKS nor an RSA or EC public key in PEM"
    ))
}

/// The checks a token signed by a key of `family` goes through.
fn validation(c: &AuthConfig, family: AlgorithmFamily) -> Validation {
    let algorithms = family_algorithms(family);
    let mut v = Validation::new(algorithms[0]);
    v.algorithms = algorithms;
    v.leeway = c.leeway_s;
    v.validate_nbf = true;
    let mut required = vec!["exp"];
    match c.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        // A token for some audience is accepted when the operator names
        // none: the claim is then not ours to judge.
        None => v.validate_aud = false,
    }
    if let Some(iss) = c.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    v.set_required_spec_claims(&required);
    v
}

fn family_algorithms(family: AlgorithmFamily) -> Vec<Algorithm> {
    match family {
        AlgorithmFamily::Rsa => vec![Algorithm::RS256, Algorithm::RS384, Algorithm::RS512],
        AlgorithmFamily::Ec => vec![Algorithm::ES256, Algorithm::ES384],
        AlgorithmFamily::Ed => vec![Algorithm::EdDSA],
        AlgorithmFamily::Hmac => vec![Algorithm::HS256],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_in_the_header_the_cookie_or_the_query() {
        let mut h = HeaderMap::new();
        assert_eq!(token_of(&h, None), Ok(None));
        assert_eq!(
            token_of(&h, Some("symbol=AAPL&access_token=a.b%2Ec")),
            Ok(Some("a.b.c".into()))
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; access_token=c.d.e"),
        );
        assert_eq!(
            token_of(&h, Some("access_token=q")),
            Ok(Some("c.d.e".into()))
        );
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  h.i.j "),
        );
        assert_eq!(token_of(&h, None), Ok(Some("h.i.j".into())));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(matches!(token_of(&h, None), Err(Rejection::Invalid(_))));
    }

    #[test]
    fn a_challenge_never_breaks_its_header() {
        let r = Rejection::Invalid("a \"quoted\" \\ reason".into());
        let v = r.challenge();
        assert!(v.to_str().unwrap().contains("error=\"invalid_token\""));
        assert!(!v.to_str().unwrap().contains("\\"));
    }
}
