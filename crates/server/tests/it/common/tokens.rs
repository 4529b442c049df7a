//! JSON Web Tokens for tests, minted here with the test's own secret, and
//! the WebSocket requests that carry them.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::ws::{self, reply, send};

/// The secret every authenticating test server here is started with.
pub const SECRET: &str = "auth-tests-secret-0123456789";

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 token with these claims, signed with `secret`.
pub fn hs256(secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A token for `sub`, valid for an hour, entitled to `exchanges` (no
/// claim when None), signed with [`SECRET`].
pub fn token(sub: &str, exchanges: Option<&[&str]>) -> String {
    let mut claims = json!({ "sub": sub, "exp": now() + 3600 });
    if let Some(ex) = exchanges {
        claims["exchanges"] = json!(ex);
    }
    hs256(SECRET, claims)
}

/// A raw WebSocket handshake with these headers and query: the status of
/// a refused one (and its WWW-Authenticate), or the socket.
pub async fn handshake(
    base: &str,
    query: &str,
    bearer: Option<&str>,
) -> Result<ws::Raw, (u16, Option<String>)> {
    let url = format!("{}/api/v1/ws{query}", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    if let Some(t) = bearer {
        req.headers_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err((
            r.status().as_u16(),
            r.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string()),
        )),
        Err(e) => panic!("handshake failed otherwise: {e}"),
    }
}

/// `auth.refresh` with `token`: the reply's payload.
pub async fn refresh(socket: &mut ws::Raw, token: &str) -> Value {
    send(
        socket,
        json!({"type": "auth.refresh", "id": "r", "payload": {"token": token}}),
    )
    .await;
    // Quotes may come first; the refresh's reply is the next reply.
    loop {
        let r = reply(socket).await;
        if r["type"] != "quotes.update" {
            assert_eq!(r["type"], "auth.refresh.response");
            return r["payload"].clone();
        }
    }
}
