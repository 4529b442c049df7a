//! A connection's outbound side: its queued replies, and the flag saying a
//! topic it follows has something new.
//!
//! Replies queue in order, bounded: overflowing means the client sends
//! requests without reading the answers. Updates are not queued here at all
//! (see `hub`): a publish only raises the flag, and the connection takes the
//! newest state of each topic when it gets to write, so memory per
//! connection stays the same however far behind its reader is.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

/// Replies held for a client that is not reading before it counts as stuck.
pub const MAX_QUEUED_REPLIES: usize = 256;

#[derive(Default)]
struct Replies {
    queue: VecDeque<String>,
    overflowed: bool,
}

#[derive(Default)]
pub struct Outbox {
    replies: Mutex<Replies>,
    updated: AtomicBool,
    notify: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Replies> {
        self.replies.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a reply; false when the client has left too many unread.
    pub fn push_reply(&self, frame: String) -> bool {
        let mut r = self.lock();
        if r.queue.len() >= MAX_QUEUED_REPLIES {
            r.overflowed = true;
            return false;
        }
        r.queue.push_back(frame);
        drop(r);
        self.notify.notify_one();
        true
    }

    /// A followed topic has a new state. Cheap when already flagged, which
    /// is what a publish to a subscriber that is behind costs.
    pub fn wake(&self) {
        // A plain load first: for a subscriber that is behind, the flag is
        // already up, and reading it leaves its cache line shared instead of
        // taking it away from the connection's core.
        if !self.updated.load(Ordering::Acquire) && !self.updated.swap(true, Ordering::AcqRel) {
            self.notify.notify_one();
        }
    }

    /// The queued replies, and whether topics may have new states (the flag
    /// is cleared, so a publish from now on wakes the connection again).
    pub fn take(&self) -> (Vec<String>, bool) {
        let updated = self.updated.swap(false, Ordering::AcqRel);
        (self.lock().queue.drain(..).collect(), updated)
    }

    /// The client left too much unread on a channel that cannot coalesce
    /// (a private one): the connection ends as too slow.
    pub fn overflow(&self) {
        self.lock().overflowed = true;
        self.notify.notify_one();
    }

    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Resolves when something was queued or flagged since the last call.
    pub async fn ready(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_bounded() {
        let o = Outbox::default();
        for i in 0..MAX_QUEUED_REPLIES {
            assert!(o.push_reply(i.to_string()));
        }
        assert!(!o.push_reply("one too many".into()));
        assert!(o.overflowed());
    }

    #[test]
    fn the_update_flag_is_taken_once() {
        let o = Outbox::default();
        assert_eq!(o.take(), (Vec::new(), false));
        o.wake();
        o.wake();
        assert!(o.push_reply("r".into()));
        assert_eq!(o.take(), (vec!["r".to_string()], true));
        assert_eq!(o.take(), (Vec::new(), false));
    }
}
