//! One connection's look at what the server sends, before a scenario
//! measures.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::client_async_with_config;
use tokio_tungstenite::tungstenite::Message;

use super::fleet::cut;
use super::{config, is_update, stamp_digits, subscribe_frame, Topic};

/// Subscribes one connection to every topic and returns a `bars.update`
/// frame it received, preferably one carrying `published_us`. Doing this
/// before measuring also makes the server build every topic's market
/// state, which would otherwise count as per-connection memory.
pub async fn capture(address: &str, topics: &[Topic]) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://{address}/api/v1/ws");
    let (mut ws, _) = client_async_with_config(url, tcp, Some(config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    for (k, topic) in topics.iter().enumerate() {
        ws.feed(Message::Text(subscribe_frame(topic, k + 1).into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    ws.flush().await.map_err(|e| e.to_string())?;
    let mut replies = 0;
    let mut stamped: Option<Vec<u8>> = None;
    let mut any: Option<Vec<u8>> = None;
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while replies < topics.len() || stamped.is_none() {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("connection ended".into()),
            Err(_) => break,
        };
        let Message::Text(text) = frame else { continue };
        let bytes = text.as_bytes();
        if text.starts_with(r#"{"type":"bars.subscribe.response""#) {
            if !text.contains(r#""status":"ok""#) {
                return Err(format!("subscribe refused: {}", cut(&text, 200)));
            }
            replies += 1;
            if replies == topics.len() {
                // Every topic has (or is about to have) its current bar out.
                deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(2));
            }
        } else if is_update(bytes) {
            if stamp_digits(bytes).is_some() {
                stamped.get_or_insert_with(|| bytes.to_vec());
            } else {
                any.get_or_insert_with(|| bytes.to_vec());
            }
        }
    }
    if replies < topics.len() {
        return Err(format!("{replies} of {} subscribe replies", topics.len()));
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    stamped
        .or(any)
        .ok_or_else(|| "no bars.update received".to_string())
}
