//! The bare-transport baseline: a WebSocket server that does only what
//! fan-out cannot avoid (one timer, one shared set of frames per tick, one
//! write per connection per tick), so trading-server's figures can be read
//! against what the same transport costs on this machine.
//!
//! It keeps trading-server's schedule: the interval is split into the same
//! slots (`slots`, as in trading-server's broadcaster) and connections take
//! slots in turn, so each slot's burst is about as large in both. One
//! difference remains: a connection here gets all its K frames in its one
//! slot, while trading-server publishes each of a connection's topics in the
//! topic's own slot.
//!
//! It runs as `trading-bench baseline-server` in its own process, so its CPU
//! time and memory are measured exactly like trading-server's. No topics,
//! no JSON, no subscriptions: it ignores what clients send and never
//! replies.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::ws;

struct Args {
    /// 0: never tick (the density scenario's frozen market).
    interval_ms: u64,
    frames: usize,
    template: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        interval_ms: 0,
        frames: 0,
        template: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--interval-ms" => {
                a.interval_ms = value()?.parse().map_err(|e| format!("{flag}: {e}"))?
            }
            "--frames" => a.frames = value()?.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--template" => a.template = Some(PathBuf::from(value()?)),
            other => return Err(format!("baseline-server: unknown argument {other}")),
        }
    }
    if a.interval_ms > 0 && a.frames > 0 && a.template.is_none() {
        return Err("baseline-server: --frames needs --template".into());
    }
    Ok(a)
}

/// A captured `bars.update` frame and where its `published_us` digits are.
struct Template {
    text: String,
    stamp: Option<Range<usize>>,
}

impl Template {
    /// The frame with `now` written over the digits in place: same bytes,
    /// same length as what trading-server sends. A frame without the field
    /// goes out unchanged (and the client records no latency for it).
    fn stamped(&self, now: u64) -> Utf8Bytes {
        let mut text = self.text.clone();
        if let Some(digits) = &self.stamp {
            let width = digits.len();
            let value = format!("{now:0width$}");
            if value.len() == width {
                text.replace_range(digits.clone(), &value);
            }
        }
        Utf8Bytes::from(text)
    }
}

pub async fn main(args: &[String]) -> Result<(), String> {
    let args = parse(args)?;
    let template = match &args.template {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let stamp = ws::stamp_digits(text.as_bytes());
            Some(Template { text, stamp })
        }
        None => None,
    };
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    // The same shape of line trading-server logs, so one parser finds both.
    println!("{{\"address\":\"{address}\"}}");
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let slots = slots(interval);
    let ticks: Arc<Vec<_>> = Arc::new(
        (0..slots)
            .map(|_| watch::channel(Arc::new(Vec::<Utf8Bytes>::new())).0)
            .collect(),
    );
    let first_frame = Arc::new(Notify::new());
    if let (Some(template), true) = (template, args.interval_ms > 0 && args.frames > 0) {
        let ticks = Arc::clone(&ticks);
        let first_frame = Arc::clone(&first_frame);
        let k = args.frames;
        tokio::spawn(async move {
            // trading-server publishes nothing before the first subscription;
            // likewise the ticks start with the first frame a client sends.
            first_frame.notified().await;
            // Skip, like trading-server's broadcaster: a late tick is not
            // made up for with a burst.
            let mut tick = tokio::time::interval(interval / slots as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            for slot in (0..ticks.len()).cycle() {
                tick.tick().await;
                let now = ws::now_us();
                let frames = (0..k).map(|_| template.stamped(now)).collect();
                ticks[slot].send_replace(Arc::new(frames));
            }
        });
    }
    let mut accepted = 0usize;
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let slot = &ticks[accepted % ticks.len()];
                accepted += 1;
                tokio::spawn(connection(tcp, slot.subscribe(), Arc::clone(&first_frame)));
            }
            // Out of descriptors: wait for some to close, as dropshot does.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// trading-server's rule (`server/src/ws/broadcaster.rs`): slots of at least
/// 5 ms, at most 64 per interval.
fn slots(interval: Duration) -> usize {
    (interval.as_micros() / 5_000).clamp(1, 64) as usize
}

/// One client. Like dropshot's sockets, this one keeps Nagle's algorithm
/// on. A client behind by several ticks gets only the newest (the watch
/// channel keeps one value), as trading-server's subscribers skip to a
/// topic's newest state.
async fn connection(
    tcp: TcpStream,
    mut ticks: watch::Receiver<Arc<Vec<Utf8Bytes>>>,
    first_frame: Arc<Notify>,
) {
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(ws::config())).await
    else {
        return;
    };
    ticks.borrow_and_update();
    loop {
        tokio::select! {
            changed = ticks.changed() => {
                if changed.is_err() {
                    return;
                }
                let frames = Arc::clone(&ticks.borrow_and_update());
                for frame in frames.iter() {
                    if ws.feed(Message::Text(frame.clone())).await.is_err() {
                        return;
                    }
                }
                if ws.flush().await.is_err() {
                    return;
                }
            }
            frame = ws.next() => match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(_))) => first_frame.notify_one(),
                Some(Ok(_)) => {}
            },
        }
    }
}
