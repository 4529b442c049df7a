//! Authentication and entitlements, through real servers: tokens minted
//! here (valid, expired, badly signed, for another audience or issuer,
//! without or with a malformed claim), every 401 and 403 over REST and the
//! WebSocket, token refresh on a live WebSocket and closure without it,
//! limits per token, and secrets kept out of the log.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::process::ServerProcess;
use crate::common::store::TempDir;
use crate::common::tokens::{handshake, hs256, now, refresh, token, SECRET};
use crate::common::ws::{self, expect_close, reply, send};
use crate::common::{TestServer, FROZEN_NOW_S};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

async fn frozen_with(extra: &[&str]) -> TestServer {
    let start = FROZEN_NOW_S.to_string();
    let mut args = vec!["--clock-start", &start, "--clock-speed", "0"];
    args.extend_from_slice(extra);
    TestServer::start(&args).await
}

/// GET with an optional bearer token: status, WWW-Authenticate and body.
async fn get(url: &str, bearer: Option<&str>) -> (u16, Option<String>, Value) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    answer(req).await
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.json().await.unwrap_or(Value::Null);
    (status, challenge, body)
}

fn bars_path(symbol: &str) -> String {
    format!(
        "/api/v1/datafeed/bars?symbol={symbol}&resolution=D&from_time={}&to_time={}",
        FROZEN_NOW_S - 30 * 86_400,
        FROZEN_NOW_S
    )
}

#[tokio::test]
async fn datafeed_operations_need_a_valid_token_and_public_ones_do_not() {
    let web = crate::common::store::TempDir::new("auth-pages");
    crate::common::pages::build(web.path());
    let s = frozen_with(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-default-entitlement",
        "all",
        "--web-dir",
        web.path().to_str().unwrap(),
    ])
    .await;
    for public in [
        "/api/v1/health",
        "/api/v1/versions",
        "/api/v1/version",
        "/api/v1/openapi.json",
        "/api/v1/docs",
        "/api/v1/ws/asyncapi",
        "/chart",
        "/chart/app.js",
        "/",
    ] {
        let r = reqwest::get(s.url(public)).await.unwrap();
        assert_eq!(r.status(), 200, "{public} stays public");
    }
    let config = s.url("/api/v1/datafeed/config");

    let (status, challenge, body) = get(&config, None).await;
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="trading-pro""#));
    assert_eq!(body["error_code"], "Unauthenticated");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));

    let expired = hs256(SECRET, json!({ "sub": "u1", "exp": now() - 3600 }));
    let other_key = hs256(
        "another-secret-0123456789",
        json!({ "sub": "u1", "exp": now() + 3600 }),
    );
    let no_exp = hs256(SECRET, json!({ "sub": "u1" }));
    let not_yet = hs256(
        SECRET,
        json!({ "sub": "u1", "exp": now() + 7200, "nbf": now() + 3600 }),
    );
    let bad_claim = hs256(
        SECRET,
        json!({ "sub": "u1", "exp": now() + 3600, "exchanges": "NASDAQ" }),
    );
    for (what, token, why) in [
        ("malformed", "not-a-jwt", "not a JSON Web Token"),
        ("expired", expired.as_str(), "expired"),
        ("badly signed", other_key.as_str(), "signature"),
        ("without exp", no_exp.as_str(), "exp"),
        ("not valid yet", not_yet.as_str(), "nbf"),
        (
            "with a malformed claim",
            bad_claim.as_str(),
            "exchanges claim",
        ),
    ] {
        let (status, challenge, body) = get(&config, Some(token)).await;
        assert_eq!(status, 401, "a {what} token");
        let challenge = challenge.unwrap_or_default();
        assert!(
            challenge.starts_with(r#"Bearer realm="trading-pro", error="invalid_token""#),
            "{what}: {challenge}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(why), "{what}: {message}");
        assert!(
            !message.contains(token),
            "the message never echoes the token"
        );
    }
    let basic = reqwest::Client::new()
        .get(&config)
        .header("authorization", "Basic dXNlcjpwYXNz");
    assert_eq!(answer(basic).await.0, 401);

    // A valid token, in each place a client may put it.
    let good = token("u1", None);
    assert_eq!(get(&config, Some(&good)).await.0, 200);
    let cookie = reqwest::Client::new()
        .get(&config)
        .header("cookie", format!("theme=dark; access_token={good}"));
    assert_eq!(answer(cookie).await.0, 200);
    let (status, _, body) = get(
        &format!("{}&access_token={good}", s.url(&bars_path("AAPL"))),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["bars"].as_array().unwrap().is_empty());

    // CORS preflight carries no credentials, and must not need them.
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, &config)
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_ne!(preflight.status(), 401);

    // The generated client: without a token it gets the 401; with_token
    // sends one.
    let open = s.client.get_config().send().await;
    assert_eq!(open.unwrap_err().status().map(|s| s.as_u16()), Some(401));
    let authed = trading_pro_client::with_token(&s.base, &good).unwrap();
    let config = authed
        .get_config()
        .send()
        .await
        .expect("an authenticated call");
    assert!(!config.supported_resolutions.is_empty());
    let quotes = authed
        .get_quotes()
        .body(trading_pro_client::types::QuotesRequest {
            symbols: vec!["AAPL".into()],
        })
        .send()
        .await
        .expect("quotes with a token");
    assert_eq!(quotes[0].n, "AAPL");
    s.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let s = frozen_with(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-default-entitlement",
        "all",
        "--auth-issuer",
        "https://login.example",
        "--auth-audience",
        "trading-pro",
    ])
    .await;
    let url = s.url("/api/v1/datafeed/config");
    let exp = now() + 600;
    let cases = [
        (
            json!({"sub": "i", "exp": exp, "iss": "https://login.example", "aud": "trading-pro"}),
            200,
            "",
        ),
        (
            json!({"sub": "i", "exp": exp, "iss": "https://login.example", "aud": "other"}),
            401,
            "audience",
        ),
        (
            json!({"sub": "i", "exp": exp, "iss": "https://login.example"}),
            401,
            "aud",
        ),
        (
            json!({"sub": "i", "exp": exp, "iss": "https://evil.example", "aud": "trading-pro"}),
            401,
            "issuer",
        ),
        (
            json!({"sub": "i", "exp": exp, "aud": "trading-pro"}),
            401,
            "iss",
        ),
    ];
    for (claims, want, why) in cases {
        let (status, _, body) = get(&url, Some(&hs256(SECRET, claims.clone()))).await;
        assert_eq!(status, want, "{claims}: {body}");
        if want == 401 {
            assert!(body["message"].as_str().unwrap().contains(why), "{body}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn public_keys_in_pem_and_jwks_verify_rs256_and_es256() {
    use rcgen::{KeyPair, RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
    let dir = TempDir::new("auth-keys");
    let ec = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let rsa = KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
    let sign = |alg: Algorithm, key: &KeyPair, kid: Option<&str>| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        let pem = key.serialize_pem();
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        };
        let claims = json!({ "sub": "k", "exp": now() + 600 });
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    };
    let es_token = sign(Algorithm::ES256, &ec, None);
    let rs_token = sign(Algorithm::RS256, &rsa, None);
    // The HS256 token "signed" with the public key's text: the classic
    // algorithm confusion, which a public-key server must refuse.
    let confused = hs256(
        &ec.public_key_pem(),
        json!({ "sub": "k", "exp": now() + 600 }),
    );

    for (name, key, good, bad) in [
        ("ec.pem", ec.public_key_pem(), &es_token, &rs_token),
        ("rsa.pem", rsa.public_key_pem(), &rs_token, &es_token),
    ] {
        let file = dir.file(name, &key);
        let s = frozen_with(&[
            "--auth-jwt-public-key",
            file.to_str().unwrap(),
            "--auth-default-entitlement",
            "all",
        ])
        .await;
        let url = s.url("/api/v1/datafeed/config");
        assert_eq!(get(&url, Some(good)).await.0, 200, "{name}");
        assert_eq!(
            get(&url, Some(bad)).await.0,
            401,
            "{name}: another key type"
        );
        assert_eq!(
            get(&url, Some(&confused)).await.0,
            401,
            "{name}: HS256 with the key"
        );
        s.stop().await;
    }

    // A JWKS with two keys: each token is checked against the key its kid
    // names.
    // A JWK holds the public half, derived here from the private key.
    let jwk = |key: &KeyPair, kid: &str, alg: Algorithm| {
        let private = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()),
            _ => EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes()),
        }
        .unwrap();
        let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(&private, alg).unwrap();
        j.common.key_id = Some(kid.into());
        serde_json::to_value(j).unwrap()
    };
    let set = json!({ "keys": [jwk(&ec, "ec-1", Algorithm::ES256), jwk(&rsa, "rsa-1", Algorithm::RS256)] });
    let file = dir.file("keys.json", &set.to_string());
    let s = frozen_with(&[
        "--auth-jwt-public-key",
        file.to_str().unwrap(),
        "--auth-default-entitlement",
        "all",
    ])
    .await;
    let url = s.url("/api/v1/datafeed/config");
    let es_kid = sign(Algorithm::ES256, &ec, Some("ec-1"));
    let rs_kid = sign(Algorithm::RS256, &rsa, Some("rsa-1"));
    let wrong_kid = sign(Algorithm::ES256, &ec, Some("rsa-1"));
    let unknown_kid = sign(Algorithm::ES256, &ec, Some("nope"));
    for t in [&es_kid, &rs_kid] {
        let (status, _, body) = get(&url, Some(t)).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(get(&url, Some(&wrong_kid)).await.0, 401);
    let (status, _, body) = get(&url, Some(&unknown_kid)).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().contains("kid"), "{body}");
    s.stop().await;
}

/// Every ticker with its exchange, as a token entitled to all sees them.
async fn catalog(s: &TestServer) -> Vec<(String, String)> {
    let all = trading_pro_client::with_token(&s.base, &token("admin", Some(&["*"]))).unwrap();
    let hits = all
        .search_symbols()
        .user_input("")
        .max_results(100)
        .send()
        .await
        .unwrap();
    hits.iter()
        .map(|h| (h.ticker.clone(), h.exchange.clone()))
        .collect()
}

#[tokio::test]
async fn entitlements_hide_and_refuse_other_exchanges_over_rest() {
    let s = frozen_with(&["--auth-jwt-secret", SECRET]).await;
    let all = catalog(&s).await;
    let exchanges: BTreeSet<&str> = all.iter().map(|(_, e)| e.as_str()).collect();
    assert!(
        exchanges.len() >= 2,
        "the catalog spans exchanges: {exchanges:?}"
    );
    assert!(exchanges.contains("NASDAQ"));
    let outside = all.iter().find(|(_, e)| e != "NASDAQ").unwrap().0.clone();

    let nasdaq = trading_pro_client::with_token(&s.base, &token("u2", Some(&["nasdaq"]))).unwrap();
    let hits = nasdaq
        .search_symbols()
        .user_input("")
        .max_results(100)
        .send()
        .await
        .unwrap();
    let seen: BTreeSet<&str> = hits.iter().map(|h| h.exchange.as_str()).collect();
    assert_eq!(seen, BTreeSet::from(["NASDAQ"]));
    let want = all.iter().filter(|(_, e)| e == "NASDAQ").count();
    assert_eq!(hits.len(), want, "every NASDAQ symbol, nothing else");
    let config = nasdaq.get_config().send().await.unwrap();
    let listed: Vec<&str> = config.exchanges.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(
        listed,
        vec!["", "NASDAQ"],
        "All Exchanges and the entitled one"
    );

    let bearer = token("u2", Some(&["NASDAQ"]));
    let resolve = |sym: &str| s.url(&format!("/api/v1/datafeed/resolve/{sym}"));
    assert_eq!(get(&resolve("AAPL"), Some(&bearer)).await.0, 200);
    let (status, _, body) = get(&resolve(&outside), Some(&bearer)).await;
    assert_eq!(status, 404, "resolve hides {outside}: {body}");
    assert_eq!(body["error_code"], "UnknownSymbol");

    assert_eq!(get(&s.url(&bars_path("AAPL")), Some(&bearer)).await.0, 200);
    // A hidden symbol answers exactly as one that does not exist.
    let (status, _, body) = get(&s.url(&bars_path(&outside)), Some(&bearer)).await;
    let (missing, _, unknown) = get(&s.url(&bars_path("NOSUCH")), Some(&bearer)).await;
    assert_eq!((status, missing), (404, 404), "{body}");
    assert_eq!(body["error_code"], unknown["error_code"]);
    assert_eq!(
        body["message"]
            .as_str()
            .unwrap()
            .replace(&outside, "NOSUCH"),
        unknown["message"]
    );

    let quotes = |symbols: Vec<&str>| {
        reqwest::Client::new()
            .post(s.url("/api/v1/datafeed/quotes"))
            .bearer_auth(&bearer)
            .json(&json!({ "symbols": symbols }))
    };
    let (status, _, body) = answer(quotes(vec!["AAPL", "MSFT"])).await;
    assert_eq!(status, 200, "{body}");
    // In a quote list, a hidden symbol is an unknown one, like any other.
    let (status, _, body) = answer(quotes(vec!["AAPL", &outside, "NOSUCH"])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["s"], "ok");
    assert_eq!(
        body[1]["errmsg"]
            .as_str()
            .unwrap()
            .replace(&outside, "NOSUCH"),
        body[2]["errmsg"],
        "{body}"
    );
    assert_eq!(
        (&body[1]["s"], &body[2]["s"]),
        (&json!("error"), &json!("error"))
    );

    // No claim, and the operator did not say otherwise: nothing.
    let bare = token("u3", None);
    let (status, _, body) = get(&s.url("/api/v1/datafeed/search?user_input="), Some(&bare)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!([]));
    assert_eq!(get(&s.url(&bars_path("AAPL")), Some(&bare)).await.0, 404);
    s.stop().await;

    // Another claim name, as the operator configures it.
    let s = frozen_with(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-entitlement-claim",
        "markets",
    ])
    .await;
    let markets = hs256(
        SECRET,
        json!({ "sub": "u4", "exp": now() + 600, "markets": [all.iter().find(|(t, _)| *t == outside).unwrap().1] }),
    );
    assert_eq!(
        get(&s.url(&bars_path(&outside)), Some(&markets)).await.0,
        200
    );
    assert_eq!(get(&s.url(&bars_path("AAPL")), Some(&markets)).await.0, 404);
    // The default claim name means nothing to this server.
    let (status, _, _) = get(
        &s.url(&bars_path("AAPL")),
        Some(&token("u4", Some(&["NASDAQ"]))),
    )
    .await;
    assert_eq!(status, 404);
    s.stop().await;
}

#[tokio::test]
async fn the_websocket_needs_a_token_and_filters_by_entitlement() {
    let s = frozen_with(&["--auth-jwt-secret", SECRET]).await;
    let all = catalog(&s).await;
    let outside = all.iter().find(|(_, e)| e != "NASDAQ").unwrap().0.clone();

    let (status, challenge) = handshake(&s.base, "", None).await.err().unwrap();
    assert_eq!(status, 401);
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="trading-pro""#));
    let expired = hs256(SECRET, json!({ "sub": "u5", "exp": now() - 600 }));
    let (status, challenge) = handshake(&s.base, &format!("?access_token={expired}"), None)
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("expired"));

    let nasdaq = token("u5", Some(&["NASDAQ"]));
    // Query parameter (browsers) and header (everyone else) both work.
    let mut header = handshake(&s.base, "", Some(&nasdaq)).await.unwrap();
    assert_eq!(
        ws::subscribe(&mut header, "MSFT", "1").await["status"],
        "ok"
    );
    let mut socket = handshake(&s.base, &format!("?access_token={nasdaq}"), None)
        .await
        .unwrap();
    assert_eq!(
        ws::subscribe(&mut socket, "AAPL", "1").await["status"],
        "ok"
    );
    let refused = ws::subscribe(&mut socket, &outside, "1").await;
    assert_eq!(refused["status"], "error");
    let unknown = ws::subscribe(&mut socket, "NOSUCH", "1").await;
    assert_eq!(
        refused["message"]
            .as_str()
            .unwrap()
            .replace(&outside, "NOSUCH"),
        unknown["message"],
        "a hidden symbol is refused as an unknown one: {refused}"
    );
    send(
        &mut socket,
        json!({"type": "quotes.subscribe", "id": "q", "payload": {"symbols": ["AAPL", outside]}}),
    )
    .await;
    let r = reply(&mut socket).await;
    assert_eq!(r["type"], "quotes.subscribe.response");
    assert_eq!(r["payload"]["status"], "error", "{r}");
    assert_eq!(
        r["payload"]["message"],
        format!("Unknown symbol {outside:?}"),
        "{r}"
    );
    // The connection stays open and keeps its subscription.
    assert_eq!(
        ws::subscribe(&mut socket, "AAPL", "1").await["message"],
        "Already subscribed to bars:AAPL:1"
    );

    // A refresh must verify and be for the same user; neither failure
    // changes the connection.
    let other_user = token("someone-else", Some(&["NASDAQ"]));
    let r = refresh(&mut socket, &other_user).await;
    assert_eq!(r["status"], "error");
    assert!(r["message"].as_str().unwrap().contains("another user"));
    let r = refresh(&mut socket, "garbage").await;
    assert_eq!(r["status"], "error");
    assert!(!r["message"].as_str().unwrap().contains("garbage"));
    // A fresh token with other entitlements: the topic it no longer
    // covers is dropped, and the reply says so.
    let exp = now() + 7200;
    let narrowed = hs256(
        SECRET,
        json!({ "sub": "u5", "exp": exp, "exchanges": [all.iter().find(|(t, _)| *t == outside).unwrap().1] }),
    );
    let r = refresh(&mut socket, &narrowed).await;
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["expires_at"], exp);
    assert!(
        r["message"].as_str().unwrap().contains("bars:AAPL:1"),
        "{r}"
    );
    assert_eq!(
        ws::subscribe(&mut socket, &outside, "1").await["status"],
        "ok"
    );
    assert_eq!(
        ws::subscribe(&mut socket, "AAPL", "1").await["status"],
        "error"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_websocket_closes_when_its_token_expires_unless_refreshed() {
    // No leeway: the token's exp is the deadline.
    let s = frozen_with(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-default-entitlement",
        "all",
        "--auth-leeway",
        "0",
    ])
    .await;
    let short = |sub: &str| hs256(SECRET, json!({ "sub": sub, "exp": now() + 2 }));
    // Over REST too: a token the server has verified (and keeps verified)
    // is refused once it expires.
    let rest_token = short("u6-rest");
    let config = s.url("/api/v1/datafeed/config");
    assert_eq!(get(&config, Some(&rest_token)).await.0, 200);
    let mut lapsing = handshake(&s.base, "", Some(&short("u6"))).await.unwrap();
    let mut refreshed = handshake(&s.base, "", Some(&short("u7"))).await.unwrap();
    assert_eq!(
        ws::subscribe(&mut refreshed, "AAPL", "1").await["status"],
        "ok"
    );
    let r = refresh(&mut refreshed, &token("u7", None)).await;
    assert_eq!(r["status"], "ok", "{r}");

    let (code, reason) = tokio::time::timeout(Duration::from_secs(30), expect_close(&mut lapsing))
        .await
        .expect("the unrefreshed connection is closed");
    assert_eq!((code, reason.as_str()), (4001, "Token expired"));
    // Well past the first token's expiry, the refreshed one still answers.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _, body) = get(&config, Some(&rest_token)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["message"].as_str().unwrap().contains("expired"));
    assert_eq!(
        ws::subscribe(&mut refreshed, "MSFT", "1").await["status"],
        "ok"
    );

    // The typed client does the same.
    let typed = trading_pro_client::ws::WsClient::connect_with_token(&s.base, &short("u8"))
        .await
        .unwrap();
    let fresh = now() + 600;
    let reply = typed
        .refresh_token(&hs256(SECRET, json!({ "sub": "u8", "exp": fresh })))
        .await
        .unwrap();
    assert_eq!(reply.expires_at, Some(fresh));
    let lapsed = trading_pro_client::ws::WsClient::connect_with_token(&s.base, &short("u9"))
        .await
        .unwrap()
        .wait_closed()
        .await
        .unwrap();
    assert_eq!(lapsed.code, 4001);
    assert_eq!(
        typed
            .subscribe("AAPL", "1")
            .await
            .unwrap()
            .status
            .to_string(),
        "ok"
    );
    s.stop().await;
}

#[tokio::test]
async fn limits_count_a_user_across_tokens_and_addresses() {
    let s = frozen_with(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-default-entitlement",
        "all",
        "--token-rate-limit-rps",
        "1",
        "--token-rate-limit-burst",
        "3",
        "--max-connections-per-token",
        "2",
    ])
    .await;
    let url = s.url("/api/v1/datafeed/time");
    let a = token("shared-user", None);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
        assert!(r.headers().contains_key("ratelimit-remaining"));
        seen.push(r.status().as_u16());
    }
    assert_eq!(seen, vec![200, 200, 200]);
    // Another token for the same user (as each browser tab would fetch):
    // the same budget.
    let a2 = hs256(SECRET, json!({ "sub": "shared-user", "exp": now() + 1800 }));
    let r = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&a2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("with your token"),
        "{body}"
    );
    // Another user is not affected; public operations are not counted.
    assert_eq!(get(&url, Some(&token("other-user", None))).await.0, 200);
    assert_eq!(
        reqwest::get(s.url("/api/v1/versions"))
            .await
            .unwrap()
            .status(),
        200
    );

    // Two WebSockets per user, whichever of its tokens they carry.
    let b = token("ws-user", None);
    let b2 = hs256(SECRET, json!({ "sub": "ws-user", "exp": now() + 900 }));
    let first = handshake(&s.base, "", Some(&b)).await.unwrap();
    let _second = handshake(&s.base, &format!("?access_token={b2}"), None)
        .await
        .unwrap();
    let (status, _) = handshake(&s.base, "", Some(&b)).await.err().unwrap();
    assert_eq!(status, 503);
    let _other = handshake(&s.base, "", Some(&token("ws-user-2", None)))
        .await
        .unwrap();
    // Closing one frees its place.
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        if handshake(&s.base, "", Some(&b)).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a closed WebSocket returns its place");
    s.stop().await;
}

#[tokio::test]
async fn tokens_and_keys_never_reach_the_log_or_the_metrics() {
    let secret = "log-secret-must-not-appear-42";
    let start = FROZEN_NOW_S.to_string();
    let mut server = ServerProcess::start(&[
        "--auth-jwt-secret",
        secret,
        "--auth-default-entitlement",
        "all",
        "--clock-start",
        &start,
        "--clock-speed",
        "0",
        "--log-level",
        "debug",
    ])
    .await;
    let good = hs256(secret, json!({ "sub": "log-user", "exp": now() + 600 }));
    let forged = hs256(
        "forged-secret-0123456789",
        json!({ "sub": "x", "exp": now() + 600 }),
    );
    let base = server.base.clone();
    let bars = format!("{base}{}", bars_path("AAPL"));
    assert_eq!(
        get(&format!("{bars}&access_token={good}"), None).await.0,
        200
    );
    assert_eq!(get(&bars, Some(&forged)).await.0, 401);
    assert_eq!(
        get(&format!("{bars}&access_token={forged}"), None).await.0,
        401
    );
    let mut socket = handshake(&base, &format!("?access_token={good}"), None)
        .await
        .unwrap();
    assert_eq!(refresh(&mut socket, &forged).await["status"], "error");
    drop(socket);
    assert!(handshake(&base, &format!("?access_token={forged}"), None)
        .await
        .is_err());
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.terminate().await;
    let log = server.log_lines("");
    assert!(log.len() > 5, "the server logged its requests");
    for needle in [secret, good.as_str(), forged.as_str()] {
        assert!(
            !log.iter().any(|l| l.contains(needle)),
            "a secret in the log"
        );
        assert!(!metrics.contains(needle), "a secret in the metrics");
    }
    // Each token's signature alone is secret enough to look for.
    for t in [&good, &forged] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.iter().any(|l| l.contains(signature)));
    }
}
