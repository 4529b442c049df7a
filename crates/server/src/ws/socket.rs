//! A WebSocket's TCP socket: the bytes hyper read past the handshake come
//! first, every incoming frame header is watched, and the kernel says how
//! much the client has left unread.
//!
//! tungstenite gathers a fragmented message inside one read call and
//! reports nothing until it is complete, so a client can keep one message
//! open forever (empty continuation frames cost it six bytes each and
//! never reach the size limit). The frame headers are followed here
//! instead, cheaply (payloads are skipped by length): too many fragments
//! fail the read with [`FrameLimit`], and the time the open message began
//! is shared with the connection, which closes it when that takes too long.

use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::net::stream::Stream;

/// Most frames one message may be split into.
pub const MAX_FRAGMENTS: u32 = 1024;

/// The read error for a message split into too many frames.
#[derive(Debug)]
pub struct FrameLimit;

impl std::fmt::Display for FrameLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message split into more than {MAX_FRAGMENTS} frames")
    }
}

impl std::error::Error for FrameLimit {}

/// Where the reader is in the client's frame stream.
#[derive(Default)]
struct FrameWatch {
    header: [u8; 14],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: u64,
    fragments: u32,
}

impl FrameWatch {
    /// Follows `bytes`; Err when the open message has too many fragments.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        open_since: &AtomicI64,
        born: Instant,
    ) -> Result<(), FrameLimit> {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = (self.skip.min(bytes.len() as u64)) as usize;
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            let Some((len, header_len)) = header_len(&self.header[..self.have]) else {
                continue;
            };
            if self.have < header_len {
                continue;
            }
            let b0 = self.header[0];
            let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
            self.have = 0;
            self.skip = len;
            match opcode {
                // A data frame starts a message, complete or not.
                1 | 2 => {
                    self.fragments = u32::from(!fin);
                    let since = if fin {
                        0
                    } else {
                        born.elapsed().as_millis() as i64 + 1
                    };
                    open_since.store(since, Ordering::Relaxed);
                }
                0 => {
                    self.fragments = self.fragments.saturating_add(1);
                    if fin {
                        self.fragments = 0;
                        open_since.store(0, Ordering::Relaxed);
                    } else if self.fragments > MAX_FRAGMENTS {
                        return Err(FrameLimit);
                    }
                }
                // Control frames may come between fragments.
                _ => {}
            }
        }
        Ok(())
    }
}

/// The payload length and the header's full length, once enough of the
/// header is known.
fn header_len(h: &[u8]) -> Option<(u64, usize)> {
    if h.len() < 2 {
        return None;
    }
    let masked = h[1] & 0x80 != 0;
    let mask = if masked { 4 } else { 0 };
    match h[1] & 0x7f {
        126 => {
            if h.len() < 4 {
                return Some((0, 4 + mask));
            }
            Some((u64::from(u16::from_be_bytes([h[2], h[3]])), 4 + mask))
        }
        127 => {
            if h.len() < 10 {
                return Some((0, 10 + mask));
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[2..10]);
            Some((u64::from_be_bytes(b), 10 + mask))
        }
        n => Some((u64::from(n), 2 + mask)),
    }
}

pub struct Socket {
    tcp: Stream,
    prefix: Bytes,
    watch: FrameWatch,
    born: Instant,
    /// Milliseconds after `born` (plus one) at which the open message
    /// began; 0 when no message is open.
    open_since: Arc<AtomicI64>,
}

impl Socket {
    pub fn new(tcp: Stream, prefix: Bytes) -> Socket {
        Socket {
            tcp,
            prefix,
            watch: FrameWatch::default(),
            born: Instant::now(),
            open_since: Arc::new(AtomicI64::new(0)),
        }
    }

    /// When the client began the message it has not finished, if any.
    pub fn open_message(&self) -> OpenMessage {
        OpenMessage {
            born: self.born,
            since: Arc::clone(&self.open_since),
        }
    }

    /// Bytes written but not yet acknowledged by the client (Linux), which
    /// grows when the client stops reading.
    /// Under TLS this counts TLS records, a few dozen bytes more per
    /// message than the frames in them.
    pub fn unsent(&self) -> Option<usize> {
        self.tcp.tcp().get().and_then(unsent)
    }
}

#[cfg(target_os = "linux")]
fn unsent(tcp: &TcpStream) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int for a valid socket fd,
    // which `tcp` owns for the duration of the call.
    let rc = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    (rc == 0).then_some(n.max(0) as usize)
}

#[cfg(not(target_os = "linux"))]
fn unsent(_: &TcpStream) -> Option<usize> {
    None
}

/// A handle on the socket's open-message clock.
pub struct OpenMessage {
    born: Instant,
    since: Arc<AtomicI64>,
}

impl OpenMessage {
    pub fn began(&self) -> Option<tokio::time::Instant> {
        match self.since.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(tokio::time::Instant::from_std(
                self.born + std::time::Duration::from_millis((ms - 1) as u64),
            )),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
        } else {
            match Pin::new(&mut this.tcp).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        let fresh = &buf.filled()[before..];
        match this.watch.feed(fresh, &this.open_since, this.born) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(limit) => Poll::Ready(Err(std::io::Error::other(limit))),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fin: bool, opcode: u8, payload: usize) -> Vec<u8> {
        let mut f = vec![(u8::from(fin) << 7) | opcode];
        match payload {
            0..=125 => f.push(0x80 | payload as u8),
            126..=65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&[1, 2, 3, 4]);
        f.extend(std::iter::repeat_n(b'x', payload));
        f
    }

    #[test]
    fn follows_frames_split_anywhere() {
        let born = Instant::now();
        let since = AtomicI64::new(0);
        let mut stream = frame(false, 1, 300);
        stream.extend(frame(true, 9, 3)); // a ping between fragments
        stream.extend(frame(false, 0, 70_000));
        let mut w = FrameWatch::default();
        for chunk in stream.chunks(7) {
            w.feed(chunk, &since, born).unwrap();
        }
        assert_eq!(w.fragments, 2);
        assert!(since.load(Ordering::Relaxed) > 0);
        w.feed(&frame(true, 0, 1), &since, born).unwrap();
        assert_eq!(since.load(Ordering::Relaxed), 0);
        assert_eq!(w.fragments, 0);
    }

    #[test]
    fn too_many_fragments_fail() {
        let born = Instant::now();
        let since = AtomicI64::new(0);
        let mut w = FrameWatch::default();
        w.feed(&frame(false, 1, 0), &since, born).unwrap();
        let mut result = Ok(());
        for _ in 0..MAX_FRAGMENTS {
            result = w.feed(&frame(false, 0, 0), &since, born);
            if result.is_err() {
                break;
            }
        }
        assert!(result.is_err());
    }
}
