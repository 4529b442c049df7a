//! Topics and their subscribers.
//!
//! Fan-out is pull-based. Publishing serializes an update once, stores it in
//! the topic as the newest state, and wakes the topic's subscribers; each
//! connection then takes, for every topic it follows, whatever it has not
//! sent yet. A publish therefore costs one flag per subscriber, whether or not
//! that subscriber keeps up, and a subscriber that falls behind skips to the
//! newest state instead of building a backlog: nothing per update is ever
//! queued per connection, so memory does not grow with a slow reader.
//!
//! A topic keeps the newest state and the final states of the last few
//! bars before it ([`MAX_CLOSED`]). A subscriber that missed rollovers
//! still gets each closed bar's final state (what `GET /bars` returns for
//! it), in order, before the new bar: a store that closes several bars in
//! one write (a feed catching up) leaves no hole in a slow reader's chart.
//! Nothing here ever waits on a socket, and a connection's subscriptions are
//! removed the moment it ends.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_tungstenite::tungstenite::Utf8Bytes;
use trading_pro::messages::{BarUpdate, ServerMessage};

use super::outbox::Outbox;
use trading_market::calendar::Resolution;
use trading_market::source::{Bar, UpdateSink};

pub type ConnId = u64;

/// Closed bars' final states a topic keeps for subscribers that are behind.
pub const MAX_CLOSED: usize = 32;

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

/// One published state of a topic's bar, already encoded.
struct State {
    /// Increases with every publish of the topic.
    version: u64,
    bar: Bar,
    frame: Utf8Bytes,
}

#[derive(Default)]
struct Inner {
    subscribers: HashMap<ConnId, Arc<Outbox>>,
    /// Final states of the bars before `newest`'s, oldest first.
    closed: VecDeque<State>,
    newest: Option<State>,
}

pub struct Topic {
    pub key: TopicKey,
    name: String,
    /// Which of the broadcaster's slots looks at this topic (see
    /// `broadcaster`): topics take slots in turn, so they spread evenly.
    phase: u64,
    /// The newest state's version (0 before any), written under the lock
    /// and readable without it: a subscriber checks it to skip a topic with
    /// nothing new.
    version: AtomicU64,
    inner: Mutex<Inner>,
}

/// Where a subscriber is in a topic: the version it has sent last.
pub struct Cursor {
    pub topic: Arc<Topic>,
    sent: u64,
}

impl Topic {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bar last published, so the broadcaster knows what changed.
    pub fn last_bar(&self) -> Option<Bar> {
        self.lock().newest.as_ref().map(|s| s.bar)
    }

    /// Stores `bar` as the newest state and wakes every subscriber. A bar
    /// older than the newest, or equal to it, changes nothing: a topic never
    /// goes back in time, whoever publishes to it and in whatever order
    /// their reads and publishes interleave.
    pub fn publish(&self, bar: Bar) {
        let mut inner = self.lock();
        Self::publish_locked(&self.key, &self.name, &self.version, &mut inner, bar);
    }

    /// Publishes `bar` only if nothing has been published yet: the first
    /// state of a topic someone just joined, read from the source after the
    /// topic existed, so a publish that came in meanwhile wins.
    pub fn init(&self, bar: Bar) {
        let mut inner = self.lock();
        if inner.newest.is_none() {
            Self::publish_locked(&self.key, &self.name, &self.version, &mut inner, bar);
        }
    }

    fn publish_locked(
        key: &TopicKey,
        name: &str,
        version: &AtomicU64,
        inner: &mut Inner,
        bar: Bar,
    ) {
        if let Some(newest) = &inner.newest {
            if newest.bar == bar || newest.bar.time > bar.time {
                return;
            }
        }
        let frame = update_frame(key, name, &bar);
        let version_now = version.load(Ordering::Relaxed) + 1;
        let state = State {
            version: version_now,
            bar,
            frame,
        };
        match inner.newest.take() {
            Some(old) if old.bar.time != bar.time => {
                if inner.closed.len() == MAX_CLOSED {
                    inner.closed.pop_front();
                }
                inner.closed.push_back(old);
            }
            _ => {}
        }
        inner.newest = Some(state);
        version.store(version_now, Ordering::Release);
        for outbox in inner.subscribers.values() {
            outbox.wake();
        }
    }
}

impl Cursor {
    /// Appends the frames this subscriber has not sent yet: the final
    /// states of the bars that closed since, then the newest state.
    /// Returns how many states were published meanwhile that it will never
    /// be sent (coalesced: a newer state of the same bar replaced them).
    pub fn take_new(&mut self, frames: &mut Vec<Utf8Bytes>) -> u64 {
        if self.topic.version.load(Ordering::Acquire) <= self.sent {
            return 0;
        }
        let (before, sent_before) = (frames.len(), self.sent);
        let inner = self.topic.lock();
        // Versions rise along the queue: skip what was sent without
        // looking at it (a subscriber that keeps up skips all of it).
        let unsent = inner.closed.partition_point(|s| s.version <= self.sent);
        for closed in inner.closed.range(unsent..) {
            frames.push(closed.frame.clone());
        }
        if let Some(newest) = inner.newest.as_ref().filter(|s| s.version > self.sent) {
            frames.push(newest.frame.clone());
            self.sent = newest.version;
        }
        // One version a publish: those between that were not sent.
        (self.sent - sent_before).saturating_sub((frames.len() - before) as u64)
    }
}

#[derive(Default)]
pub struct Hub {
    topics: Mutex<HashMap<TopicKey, Arc<Topic>>>,
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
    fn lock(&self) -> MutexGuard<'_, HashMap<TopicKey, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn connection_id(&self) -> ConnId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a subscriber, positioned to receive the topic's newest state
    /// (not the closed bar before it). The topic's `last_bar` is None until
    /// something is published.
    pub fn subscribe(&self, key: &TopicKey, conn: ConnId, outbox: &Arc<Outbox>) -> Cursor {
        let mut topics = self.lock();
        let topic = topics.entry(key.clone()).or_insert_with(|| {
            Arc::new(Topic {
                key: key.clone(),
                name: key.name(),
                phase: self.next_phase.fetch_add(1, Ordering::Relaxed),
                version: AtomicU64::new(0),
                inner: Mutex::default(),
            })
        });
        let mut inner = topic.lock();
        inner.subscribers.insert(conn, Arc::clone(outbox));
        let sent = match &inner.newest {
            Some(newest) => {
                outbox.wake();
                newest.version - 1
            }
            None => topic.version.load(Ordering::Relaxed),
        };
        drop(inner);
        Cursor {
            topic: Arc::clone(topic),
            sent,
        }
    }

    pub fn unsubscribe(&self, key: &TopicKey, conn: ConnId) {
        let mut topics = self.lock();
        if let Some(topic) = topics.get(key) {
            let mut inner = topic.lock();
            inner.subscribers.remove(&conn);
            if inner.subscribers.is_empty() {
                drop(inner);
                topics.remove(key);
            }
        }
    }

    /// The topic of `key`, if someone follows it.
    pub fn topic(&self, key: &TopicKey) -> Option<Arc<Topic>> {
        self.lock().get(key).cloned()
    }

    /// Topics with at least one subscriber in slot `slot` of `slots`.
    pub fn active(&self, slot: u64, slots: u64) -> Vec<Arc<Topic>> {
        self.lock()
            .values()
            .filter(|t| t.phase % slots == slot)
            .cloned()
            .collect()
    }
}

/// A pushing source's changed bars go to the topic that follows them, if any.
impl UpdateSink for Hub {
    fn publish(&self, symbol: &str, resolution: Resolution, bar: Bar) {
        let key = TopicKey {
            symbol: symbol.to_string(),
            resolution,
        };
        if let Some(topic) = self.topic(&key) {
            topic.publish(bar);
        }
    }

    fn followed(&self) -> Vec<(String, Resolution)> {
        self.lock()
            .keys()
            .map(|k| (k.symbol.clone(), k.resolution))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(time: i64, close: f64) -> Bar {
        Bar {
            time,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close,
            volume: 10.0,
        }
    }

    /// (bar time, close) of each frame a cursor takes.
    fn take(cursor: &mut Cursor) -> Vec<(i64, f64)> {
        let mut frames = Vec::new();
        cursor.take_new(&mut frames);
        frames
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
                let p = &v["payload"];
                (p["time"].as_i64().unwrap(), p["close"].as_f64().unwrap())
            })
            .collect()
    }

    #[test]
    fn a_subscriber_gets_the_newest_state_and_the_final_state_of_a_missed_bar() {
        let hub = Hub::default();
        let key = TopicKey {
            symbol: "AAPL".into(),
            resolution: Resolution::parse("1").unwrap(),
        };
        let (a, b) = (Arc::new(Outbox::default()), Arc::new(Outbox::default()));
        let mut early = hub.subscribe(&key, 1, &a);
        assert_eq!(take(&mut early), []);
        early.topic.publish(bar(60, 1.0));
        assert!(a.take().1, "a publish flags the subscriber");
        assert_eq!(take(&mut early), [(60, 1.0)]);

        // Behind by several states and a rollover: the closed bar's final
        // state, then the newest; nothing in between.
        early.topic.publish(bar(60, 1.1));
        early.topic.publish(bar(60, 1.2));
        early.topic.publish(bar(120, 2.0));
        early.topic.publish(bar(120, 2.1));
        assert_eq!(take(&mut early), [(60, 1.2), (120, 2.1)]);
        assert_eq!(take(&mut early), []);

        // Several bars closed while it was away: each final state, in order.
        early.topic.publish(bar(180, 3.0));
        early.topic.publish(bar(240, 4.0));
        early.topic.publish(bar(240, 4.5));
        early.topic.publish(bar(300, 5.0));
        assert_eq!(take(&mut early), [(180, 3.0), (240, 4.5), (300, 5.0)]);
        // Never back in time, and an equal state is not news.
        early.topic.publish(bar(240, 9.0));
        early.topic.publish(bar(300, 5.0));
        assert_eq!(take(&mut early), []);

        // A new subscriber starts from the newest state only.
        let mut late = hub.subscribe(&key, 2, &b);
        assert!(b.take().1, "joining a published topic flags it");
        assert_eq!(take(&mut late), [(300, 5.0)]);

        // Leaving frees the topic once nobody follows it.
        hub.unsubscribe(&key, 1);
        assert_eq!(hub.active(0, 1).len(), 1);
        hub.unsubscribe(&key, 2);
        assert!(hub.active(0, 1).is_empty());
    }
}
