//! Faults between a server and what it depends on: a TCP proxy the test
//! puts in front of a real service (PostgreSQL, say) and can cut, silence,
//! or make lose the reply to a commit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards every connection made to `addr` to `upstream`, until cut.
pub struct TcpProxy {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    links: Mutex<Vec<Arc<Link>>>,
    /// The next client message holding `COMMIT` goes through, and its
    /// reply is dropped with the connection.
    lose_next_commit_reply: AtomicBool,
}

/// One forwarded connection.
#[derive(Default)]
struct Link {
    /// Bytes are swallowed both ways, the sockets left open: a peer that
    /// went silent.
    silenced: AtomicBool,
    /// The server's next bytes are not delivered; the connection closes.
    lose_reply: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a proxy");
        let addr = listener.local_addr().unwrap();
        let shared: Arc<Shared> = Arc::default();
        let kept = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let link: Arc<Link> = Arc::default();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = tokio::spawn(pump(
                    client_read,
                    server_write,
                    Arc::clone(&link),
                    Arc::clone(&kept),
                    Direction::Up,
                ));
                let down = tokio::spawn(pump(
                    server_read,
                    client_write,
                    Arc::clone(&link),
                    Arc::clone(&kept),
                    Direction::Down,
                ));
                link.tasks.lock().unwrap().extend([up, down]);
                kept.links.lock().unwrap().push(link);
            }
        });
        TcpProxy {
            addr,
            accept,
            shared,
        }
    }

    /// The service goes away: every connection through the proxy is
    /// closed, and new ones are refused.
    pub fn cut(&self) {
        self.accept.abort();
        for link in self.shared.links.lock().unwrap().drain(..) {
            for task in link.tasks.lock().unwrap().drain(..) {
                task.abort();
            }
        }
    }

    /// Every connection open now goes silent (nothing delivered either
    /// way, nothing closed), as behind a dead route; new connections work.
    pub fn black_hole_established(&self) {
        for link in self.shared.links.lock().unwrap().iter() {
            link.silenced.store(true, Ordering::SeqCst);
        }
    }

    /// The next `COMMIT` sent through reaches the server, and its reply
    /// never reaches the client: the connection closes instead.
    pub fn lose_next_commit_reply(&self) {
        self.shared
            .lose_next_commit_reply
            .store(true, Ordering::SeqCst);
    }

    /// Whether the armed commit fault has fired.
    pub fn commit_reply_lost(&self) -> bool {
        !self.shared.lose_next_commit_reply.load(Ordering::SeqCst)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    link: Arc<Link>,
    shared: Arc<Shared>,
    direction: Direction,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if link.silenced.load(Ordering::SeqCst) {
            continue;
        }
        let chunk = &buffer[..n];
        if direction == Direction::Down && link.lose_reply.load(Ordering::SeqCst) {
            // The reply is lost with the connection.
            for task in link.tasks.lock().unwrap().drain(..) {
                task.abort();
            }
            return;
        }
        if direction == Direction::Up
            && chunk.windows(6).any(|w| w == b"COMMIT")
            && shared.lose_next_commit_reply.swap(false, Ordering::SeqCst)
        {
            link.lose_reply.store(true, Ordering::SeqCst);
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
