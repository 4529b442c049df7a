//! A connection's outbound queue: bounded by construction, and coalescing.
//!
//! Replies queue in order (bounded; overflowing means the client sends
//! requests without reading the answers). Bar updates coalesce: for each
//! topic at most the newest state of two bars is held (the closed bar's final
//! state and the new bar), so a slow reader gets the latest value of every
//! bar it is behind on instead of an unbounded backlog, and memory per
//! connection stays proportional to its subscriptions.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Replies held for a client that is not reading before it counts as stuck.
pub const MAX_QUEUED_REPLIES: usize = 256;
/// States of distinct bars held per topic (see module docs).
const BARS_PER_TOPIC: usize = 2;

struct PendingUpdate {
    topic: Utf8Bytes,
    bar_time: i64,
    frame: Utf8Bytes,
}

#[derive(Default)]
struct State {
    replies: VecDeque<String>,
    updates: VecDeque<PendingUpdate>,
    overflowed: bool,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
}

/// What the writer takes out in one go.
pub struct Batch {
    pub replies: Vec<String>,
    pub updates: Vec<Utf8Bytes>,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply; false when the client has left too many unread.
    pub fn push_reply(&self, frame: String) -> bool {
        let mut s = self.lock();
        if s.replies.len() >= MAX_QUEUED_REPLIES {
            s.overflowed = true;
            return false;
        }
        s.replies.push_back(frame);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Queues a bar update, replacing a queued state of the same bar.
    pub fn push_update(&self, topic: &Utf8Bytes, bar_time: i64, frame: &Utf8Bytes) {
        let mut s = self.lock();
        let mut same_topic = 0;
        let mut oldest = None;
        for (i, u) in s.updates.iter_mut().enumerate() {
            if u.topic == *topic {
                if u.bar_time == bar_time {
                    u.frame = frame.clone();
                    return;
                }
                same_topic += 1;
                oldest.get_or_insert(i);
            }
        }
        if same_topic >= BARS_PER_TOPIC {
            if let Some(i) = oldest {
                s.updates.remove(i);
            }
        }
        s.updates.push_back(PendingUpdate {
            topic: topic.clone(),
            bar_time,
            frame: frame.clone(),
        });
        drop(s);
        self.notify.notify_one();
    }

    /// Forgets queued updates of a topic the client unsubscribed from.
    pub fn drop_topic(&self, topic: &Utf8Bytes) {
        self.lock().updates.retain(|u| u.topic != *topic);
    }

    /// Everything queued, replies first.
    pub fn take(&self) -> Batch {
        let mut s = self.lock();
        Batch {
            replies: s.replies.drain(..).collect(),
            updates: s.updates.drain(..).map(|u| u.frame).collect(),
        }
    }

    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Resolves when something was queued since the last call.
    pub async fn ready(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Utf8Bytes {
        Utf8Bytes::from(s.to_string())
    }

    #[test]
    fn coalesces_per_bar_and_bounds_per_topic() {
        let o = Outbox::default();
        let (t1, t2) = (b("bars:A:1"), b("bars:B:1"));
        o.push_update(&t1, 60, &b("a60-1"));
        o.push_update(&t1, 60, &b("a60-2"));
        o.push_update(&t2, 60, &b("b60"));
        o.push_update(&t1, 120, &b("a120"));
        o.push_update(&t1, 180, &b("a180"));
        let batch = o.take();
        assert_eq!(batch.updates, [b("b60"), b("a120"), b("a180")]);
        assert!(o.take().updates.is_empty());
    }

    #[test]
    fn replies_are_bounded() {
        let o = Outbox::default();
        for i in 0..MAX_QUEUED_REPLIES {
            assert!(o.push_reply(i.to_string()));
        }
        assert!(!o.push_reply("one too many".into()));
        assert!(o.overflowed());
    }
}
