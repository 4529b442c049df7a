//! Deadlines of one HTTP connection, whatever it is doing.
//!
//! hyper's own header timeout starts only once hyper reads a head, which
//! leaves a connection that never sends a byte, or sits idle between
//! requests, or trickles a response's reads, with no deadline at all. Here
//! a connection is always in one phase with one deadline:
//!
//! * `Waiting`: new or idle between requests: the first byte of the next
//!   head must arrive before the header timeout (new) or the keep-alive
//!   timeout (idle);
//! * `Head`: bytes arrived: the head must be complete within the header
//!   timeout;
//! * `Busy`: a request is being handled: its body, its handling and the
//!   writing of its response must be done within the request timeout (a
//!   client that stops reading a response is cut off by it);
//! * `Upgraded`: a WebSocket, whose liveness is its heartbeat.
//!
//! The phase is moved by the socket (`Watched`, on the first bytes of a
//! head) and by the request service (a request begins, its response body
//! is done). The connection task sleeps until the deadline and closes the
//! connection when it finds it passed. Phase and deadline are atomics:
//! reading and writing them is far cheaper than the syscalls around them.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Waiting = 0,
    Head = 1,
    Busy = 2,
    Upgraded = 3,
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
    pub request: Duration,
    pub body: Duration,
}

/// The phase and deadline of one connection.
pub struct ConnClock {
    born: Instant,
    timeouts: Timeouts,
    phase: AtomicU8,
    /// Milliseconds after `born`.
    deadline_ms: AtomicU64,
    requests: AtomicU64,
}

impl ConnClock {
    pub fn new(timeouts: Timeouts) -> ConnClock {
        let clock = ConnClock {
            born: Instant::now(),
            timeouts,
            phase: AtomicU8::new(Phase::Waiting as u8),
            deadline_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        };
        clock.set_deadline(timeouts.header);
        clock
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// When a handler's answer is due: the request's deadline less a
    /// margin to write it (a tenth of the request timeout, at most a
    /// second).
    pub fn answer_by(&self) -> Instant {
        let margin = (self.timeouts.request / 10).min(Duration::from_secs(1));
        let deadline = self.born + Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed));
        deadline.checked_sub(margin).unwrap_or(deadline)
    }

    fn set_deadline(&self, from_now: Duration) {
        let ms = (self.born.elapsed() + from_now).as_millis() as u64;
        self.deadline_ms.store(ms, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Waiting,
            1 => Phase::Head,
            2 => Phase::Busy,
            _ => Phase::Upgraded,
        }
    }

    /// When the current phase must end (None once upgraded).
    pub fn deadline(&self) -> Option<Instant> {
        (self.phase() != Phase::Upgraded)
            .then(|| self.born + Duration::from_millis(self.deadline_ms.load(Ordering::Relaxed)))
    }

    /// Bytes arrived: a new head has begun, if none was under way.
    fn bytes_arrived(&self) {
        if self
            .phase
            .compare_exchange(
                Phase::Waiting as u8,
                Phase::Head as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.set_deadline(self.timeouts.header);
        }
    }

    /// A request's head is complete: it is now being handled.
    pub fn request_began(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.phase.store(Phase::Busy as u8, Ordering::Relaxed);
        self.set_deadline(self.timeouts.request);
    }

    /// Its response has been written: the connection idles until the next.
    pub fn request_ended(&self) {
        if self
            .phase
            .compare_exchange(
                Phase::Busy as u8,
                Phase::Waiting as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.set_deadline(self.timeouts.keepalive);
        }
    }

    pub fn upgraded(&self) {
        self.phase.store(Phase::Upgraded as u8, Ordering::Relaxed);
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Ends the request on the connection clock when dropped: held by the
/// response body, which hyper drops once it has written the last byte (or
/// given up on the connection).
pub struct RequestGuard(pub std::sync::Arc<ConnClock>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A socket that tells its connection clock when bytes arrive.
pub struct Watched<T> {
    io: T,
    clock: std::sync::Arc<ConnClock>,
}

impl<T> Watched<T> {
    pub fn new(io: T, clock: std::sync::Arc<ConnClock>) -> Watched<T> {
        Watched { io, clock }
    }

    pub fn into_inner(self) -> T {
        self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            request: Duration::from_secs(60),
            body: Duration::from_secs(10),
        }
    }

    /// The deadline is `after` from about now (a test runs in far less
    /// than a second between the call and the check).
    fn due_in(clock: &ConnClock, after: u64) -> bool {
        let d = clock.deadline().expect("a deadline");
        let from = Instant::now() + Duration::from_secs(after) - Duration::from_secs(1);
        d >= from && d <= from + Duration::from_secs(2)
    }

    #[test]
    fn phases_move_the_deadline() {
        let clock = ConnClock::new(timeouts());
        assert_eq!(clock.phase(), Phase::Waiting);
        assert!(due_in(&clock, 10));
        clock.bytes_arrived();
        assert_eq!(clock.phase(), Phase::Head);
        let head_deadline = clock.deadline();
        // More bytes of the same head do not extend it.
        clock.bytes_arrived();
        assert_eq!(clock.deadline(), head_deadline);
        clock.request_began();
        assert_eq!(clock.phase(), Phase::Busy);
        assert!(due_in(&clock, 60));
        clock.request_ended();
        assert_eq!(clock.phase(), Phase::Waiting);
        assert!(due_in(&clock, 30));
        clock.upgraded();
        assert_eq!(clock.deadline(), None);
        // An upgraded connection's request never "ends" into idling.
        clock.request_ended();
        assert_eq!(clock.phase(), Phase::Upgraded);
    }
}
