//! Topics and their subscribers.
//!
//! Publishing serializes an update once and hands the same bytes to every
//! subscriber's outbox: O(subscribers of that topic), and nothing here ever
//! waits on a socket. A connection's subscriptions are removed the moment it
//! ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_tungstenite::tungstenite::Utf8Bytes;
use trading_pro::messages::{BarUpdate, ServerMessage};

use super::outbox::Outbox;
use crate::market::{Bar, Resolution};

pub type ConnId = u64;

/// `bars:{SYMBOL}:{RESOLUTION}` with the canonical ticker and resolution.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicKey {
    pub symbol: String,
    pub resolution: Resolution,
}

impl TopicKey {
    pub fn name(&self) -> String {
        format!("bars:{}:{}", self.symbol, self.resolution.as_str())
    }
}

struct Topic {
    name: Utf8Bytes,
    /// Which of the broadcaster's slots publishes this topic (see
    /// `broadcaster`): topics take slots in turn, so they spread evenly.
    phase: u64,
    subscribers: HashMap<ConnId, Arc<Outbox>>,
    /// The last state published and its frame, so a new subscriber starts
    /// from it and the broadcaster knows what changed.
    last: Option<(Bar, Utf8Bytes)>,
}

#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<TopicKey, Topic>>,
    next_id: AtomicU64,
    next_phase: AtomicU64,
}

/// Wall-clock unix microseconds: when an update leaves the server (the
/// market clock may be frozen or sped up, so it cannot be used here).
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The frame of a `bars.update` for a topic, stamped with the current time.
fn update_frame(key: &TopicKey, topic: &str, bar: &Bar) -> Utf8Bytes {
    let update = BarUpdate {
        symbol: key.symbol.clone(),
        resolution: key.resolution.as_str().to_string(),
        topic: topic.to_string(),
        time: bar.time,
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: bar.volume,
        published_us: now_us(),
    };
    Utf8Bytes::from(ServerMessage::BarsUpdate(update).encode(None))
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HashMap<TopicKey, Topic>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn connection_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a subscriber and queues the topic's last published state for it;
    /// false when nothing was published yet.
    pub fn subscribe(&self, key: &TopicKey, conn: ConnId, outbox: &Arc<Outbox>) -> bool {
        let mut topics = self.lock();
        let topic = topics.entry(key.clone()).or_insert_with(|| Topic {
            name: Utf8Bytes::from(key.name()),
            phase: self.next_phase.fetch_add(1, Ordering::Relaxed),
            subscribers: HashMap::new(),
            last: None,
        });
        topic.subscribers.insert(conn, Arc::clone(outbox));
        match &topic.last {
            Some((bar, frame)) => {
                outbox.push_update(&topic.name, bar.time, frame);
                true
            }
            None => false,
        }
    }

    pub fn unsubscribe(&self, key: &TopicKey, conn: ConnId) {
        let mut topics = self.lock();
        if let Some(topic) = topics.get_mut(key) {
            topic.subscribers.remove(&conn);
            if topic.subscribers.is_empty() {
                topics.remove(key);
            }
        }
    }

    /// Topics with at least one subscriber in slot `slot` of `slots`, with
    /// their last published bar.
    pub fn active(&self, slot: u64, slots: u64) -> Vec<(TopicKey, Option<Bar>)> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.phase % slots == slot)
            .map(|(k, t)| (k.clone(), t.last.as_ref().map(|(bar, _)| *bar)))
            .collect()
    }

    /// Sends `bar` to every subscriber of the topic and remembers it.
    pub fn publish(&self, key: &TopicKey, bar: Bar) {
        let mut topics = self.lock();
        let Some(topic) = topics.get_mut(key) else {
            return;
        };
        let frame = update_frame(key, &topic.name, &bar);
        for outbox in topic.subscribers.values() {
            outbox.push_update(&topic.name, bar.time, &frame);
        }
        topic.last = Some((bar, frame));
    }
}
