//! Raw WebSocket frames for tests, each received text frame validated
//! against the schema of its message in `specs/asyncapi.yaml`.

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(base: &str) -> Raw {
    let url = format!("{}/api/v1/ws", base.replacen("http://", "ws://", 1));
    tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects")
        .0
}

pub async fn send(ws: &mut Raw, frame: Value) {
    ws.send(Message::Text(frame.to_string().into()))
        .await
        .expect("send");
}

/// What the server sent next: a validated JSON frame, or its close frame.
#[derive(Debug)]
pub enum Received {
    Frame(Value),
    Closed(u16, String),
}

pub async fn recv(ws: &mut Raw) -> Received {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).expect("server frames are JSON");
                assert_valid(&frame);
                return Received::Frame(frame);
            }
            Some(Ok(Message::Close(Some(f)))) => {
                return Received::Closed(f.code.into(), f.reason.to_string())
            }
            Some(Ok(Message::Close(None))) | None => return Received::Closed(1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Received::Closed(1006, e.to_string()),
        }
    }
}

/// The next frame that is not a `bars.update`.
pub async fn reply(ws: &mut Raw) -> Value {
    loop {
        match recv(ws).await {
            Received::Frame(f) if f["type"] == "bars.update" => continue,
            Received::Frame(f) => return f,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// Subscribes to `symbol`'s bars at `res` (the request's id is the
/// symbol) and returns the reply's payload (`status`, `message`).
pub async fn subscribe(ws: &mut Raw, symbol: &str, res: &str) -> Value {
    send(
        ws,
        serde_json::json!({"type": "bars.subscribe", "id": symbol, "payload": {"symbol": symbol, "resolution": res}}),
    )
    .await;
    let r = reply(ws).await;
    assert_eq!(r["id"], symbol, "{r}");
    r["payload"].clone()
}

/// The next `bars.update` payload, skipping replies; fails the test if
/// none comes within 30 s or the connection ends.
pub async fn update(ws: &mut Raw) -> Value {
    let wait = std::time::Duration::from_secs(30);
    loop {
        match tokio::time::timeout(wait, recv(ws)).await {
            Ok(Received::Frame(f)) if f["type"] == "bars.update" => return f["payload"].clone(),
            Ok(Received::Frame(_)) => continue,
            Ok(other) => panic!("expected an update, got {other:?}"),
            Err(_) => panic!("no update within {wait:?}"),
        }
    }
}

pub async fn expect_close(ws: &mut Raw) -> (u16, String) {
    loop {
        match recv(ws).await {
            Received::Closed(code, reason) => return (code, reason),
            Received::Frame(_) => continue,
        }
    }
}

/// Asserts that a server frame is one of the spec's server messages and
/// validates against that message's payload schema.
pub fn assert_valid(frame: &Value) {
    let spec = super::asyncapi();
    let messages = spec
        .pointer("/channels/~1api~1v1~1ws/subscribe/message/oneOf")
        .unwrap()
        .as_array()
        .unwrap();
    let message = messages
        .iter()
        .map(|m| resolve(spec, m))
        .find(|m| m["name"] == frame["type"])
        .unwrap_or_else(|| panic!("server sent a message the spec does not list: {frame}"));
    if let Err(e) = validate(spec, &message["payload"], frame, "$") {
        panic!("server frame does not match the spec: {e}\n{frame}");
    }
}

fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => spec
            .pointer(&r.replacen('#', "", 1))
            .expect("reference resolves"),
        None => v,
    }
}

/// JSON Schema validation for the keywords the spec uses.
pub fn validate(spec: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(spec, schema);
    let fail = |what: String| Err(format!("{at}: {what}"));
    match schema["type"].as_str() {
        Some("object") => {
            let Some(obj) = v.as_object() else {
                return fail(format!("expected an object, got {v}"));
            };
            for r in schema["required"].as_array().into_iter().flatten() {
                if !obj.contains_key(r.as_str().unwrap()) {
                    return fail(format!("missing required {r}"));
                }
            }
            let props = schema["properties"].as_object();
            for (k, val) in obj {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => validate(spec, s, val, &format!("{at}.{k}"))?,
                    None if schema["additionalProperties"] == Value::Bool(false)
                        || props.is_some() =>
                    {
                        return fail(format!("property {k} is not in the schema"))
                    }
                    None => {}
                }
            }
        }
        Some("string") => {
            let Some(s) = v.as_str() else {
                return fail(format!("expected a string, got {v}"));
            };
            if let Some(max) = schema["maxLength"].as_u64() {
                if s.chars().count() as u64 > max {
                    return fail(format!("longer than {max}"));
                }
            }
        }
        Some("integer") if !(v.is_i64() || v.is_u64()) => {
            return fail(format!("expected an integer, got {v}"))
        }
        Some("number") if !v.is_number() => return fail(format!("expected a number, got {v}")),
        Some("boolean") if !v.is_boolean() => return fail(format!("expected a boolean, got {v}")),
        Some("array") => {
            let Some(items) = v.as_array() else {
                return fail(format!("expected an array, got {v}"));
            };
            for (i, item) in items.iter().enumerate() {
                validate(spec, &schema["items"], item, &format!("{at}[{i}]"))?;
            }
        }
        _ => {}
    }
    if let Some(values) = schema["enum"].as_array() {
        if !values.contains(v) {
            return fail(format!("{v} is not one of {values:?}"));
        }
    }
    Ok(())
}
