//! The WebSocket load client: many connections in this process, one task
//! each, counting `bars.update` frames and their publish-to-receive lag.
//!
//! The same client measures trading-server and the baseline, so the
//! difference between the two is the server's own work. Windows are
//! numbered phases set by the coordinator and read by every task per frame
//! (one relaxed atomic load), so a frame counts in the window in which it
//! arrived, without the tasks having to be woken at the boundaries.
//!
//! * `fleet`: the connections, their tasks and what each counted;
//! * `capture`: one connection's look at what the server sends;
//! * `scenarios`: the scenarios and their tables.

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

mod capture;
mod fleet;
pub mod scenarios;

pub use capture::capture;
pub use fleet::*;

/// Handshakes in flight at once: enough to open 20k connections in
/// seconds, few enough not to overflow the server's accept backlog.
pub(crate) const HANDSHAKES_IN_FLIGHT: usize = 256;

/// Receive buffer of the connections that will stall. With the default
/// (128 KiB, not grown while nobody reads) this side's kernel would absorb
/// a stalled reader's updates for minutes at the half rate; small, they back
/// up into the server's side at once. (That side absorbs megabytes before a
/// write blocks, which is why the stall table reports its Send-Q.)
pub const STALLED_RCVBUF: u32 = 4096;

/// trading-server's settings (server/src/ws/connection.rs), used by the
/// baseline too so both servers run the same transport. The client uses them
/// as well: tungstenite's default 128 KiB read buffer is zero-filled per
/// connection, which for 20k connections alone would be 2.5 GB.
pub fn config() -> WebSocketConfig {
    const MAX_MESSAGE_BYTES: usize = 64 * 1024;
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
}

const STAMP_KEY: &[u8] = br#""published_us":"#;

/// Whether a text frame is a `bars.update` (the type comes first).
pub(crate) fn is_update(frame: &[u8]) -> bool {
    const TYPE: &[u8] = br#""type":"bars.update""#;
    frame[..frame.len().min(48)]
        .windows(TYPE.len())
        .any(|w| w == TYPE)
}

/// Where the digits of `"published_us":` are. Searched from the end, where
/// the field sits, so the cost per frame stays a few dozen byte compares.
pub fn stamp_digits(frame: &[u8]) -> Option<Range<usize>> {
    let key = frame
        .windows(STAMP_KEY.len())
        .rposition(|w| w == STAMP_KEY)?;
    let start = key + STAMP_KEY.len();
    let len = frame[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    (len > 0).then_some(start..start + len)
}

pub(crate) fn published_us(frame: &[u8]) -> Option<u64> {
    let digits = stamp_digits(frame)?;
    frame[digits].iter().try_fold(0u64, |v, d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Wall-clock unix microseconds, the clock `published_us` is taken from.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Clone, Debug)]
pub struct Topic {
    pub symbol: String,
    pub resolution: String,
}

pub(crate) fn subscribe_frame(topic: &Topic, id: usize) -> String {
    format!(
        r#"{{"type":"bars.subscribe","id":"{id}","payload":{{"symbol":"{}","resolution":"{}"}}}}"#,
        topic.symbol, topic.resolution
    )
}
