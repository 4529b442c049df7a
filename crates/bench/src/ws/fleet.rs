//! The load client's connections: one task each, counting `bars.update`
//! frames and their lag per window, and the sums over them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async_with_config, WebSocketStream};

use super::{
    config, is_update, now_us, published_us, subscribe_frame, Topic, HANDSHAKES_IN_FLIGHT,
    STALLED_RCVBUF,
};

pub struct FleetSpec {
    pub address: String,
    pub connections: usize,
    pub topics: Arc<Vec<Topic>>,
    /// Connection i subscribes to topics (i * per_conn + k) % topics.
    pub topics_per_conn: usize,
    /// trading-server answers every subscribe; the baseline ignores them,
    /// so there is nothing to wait for.
    pub await_replies: bool,
    /// One connection in `stall_every` can be told to stop reading.
    pub stall_every: Option<usize>,
    /// Number of measurement windows (phases 1..=windows).
    pub windows: usize,
    pub ready_timeout: Duration,
}

/// Which connections stall: one in each block of `every` consecutive
/// connections, at a different offset per block. "Every 100th" plainly
/// would put all stalled readers on topic 0 when there are 100 topics, and
/// then no live reader would share a topic with a stalled one.
pub fn stalls(i: usize, every: usize) -> bool {
    every > 0 && i % every == (i / every) % every
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Signal {
    /// Connected, not subscribed yet: every connection completes its
    /// handshake before any subscribes, so opening 20k connections is not
    /// slowed down by fan-out to the first ones.
    Hold,
    Run,
    Stall,
    Stop,
}

/// What one connection saw.
pub struct ConnStats {
    pub stalls: bool,
    /// Never opened (the reason went to the fleet's failures).
    pub failed: bool,
    /// `bars.update` frames per phase (index 0: outside any window).
    pub updates: Vec<u64>,
    pub latencies_us: Vec<Vec<u32>>,
    /// Updates inside windows without `published_us`.
    pub unstamped: u64,
    /// Why the connection ended before the fleet was closed.
    pub closed: Option<String>,
    /// Bytes waiting in the socket when a stall ended.
    pub unread_bytes: Option<usize>,
}

impl ConnStats {
    fn new(stalls: bool, windows: usize) -> ConnStats {
        ConnStats {
            stalls,
            failed: false,
            updates: vec![0; windows + 1],
            latencies_us: vec![Vec::new(); windows + 1],
            unstamped: 0,
            closed: None,
            unread_bytes: None,
        }
    }

    /// Accounts one frame; Err ends the connection with the reason.
    fn record(
        &mut self,
        frame: Option<Result<Message, WsError>>,
        phase: usize,
    ) -> Result<(), String> {
        match frame {
            Some(Ok(Message::Text(text))) => {
                let bytes = text.as_bytes();
                if phase > 0 && phase < self.updates.len() && is_update(bytes) {
                    self.updates[phase] += 1;
                    match published_us(bytes) {
                        Some(p) => self.latencies_us[phase]
                            .push(now_us().saturating_sub(p).min(u64::from(u32::MAX)) as u32),
                        None => self.unstamped += 1,
                    }
                }
                Ok(())
            }
            Some(Ok(Message::Close(frame))) => Err(match frame {
                Some(f) => format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                None => "closed by the server".into(),
            }),
            // Pings are answered by tungstenite on the next read.
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("connection ended".into()),
        }
    }
}

struct Shared {
    spec: FleetSpec,
    phase: AtomicUsize,
    handshakes: Semaphore,
    /// Local ports of the stalling connections, to find the server's side
    /// of them in /proc/net/tcp.
    stalled_ports: Mutex<Vec<u16>>,
}

/// How far a connection got, reported to `Fleet::open`.
enum Progress {
    Connected,
    Subscribed,
    Failed(String),
}

/// N open connections and the means to steer them.
pub struct Fleet {
    shared: Arc<Shared>,
    signal: watch::Sender<Signal>,
    tasks: Vec<JoinHandle<ConnStats>>,
    pub ready: usize,
    /// Why connections did not open, with counts, most frequent first.
    pub failures: Vec<(String, usize)>,
    pub open_time: Duration,
}

impl Fleet {
    /// Opens every connection and waits until each is subscribed (or has
    /// failed, or the spec's timeout passed). Never panics on a failure:
    /// running out of descriptors or ports is a result to report.
    pub async fn open(spec: FleetSpec) -> Fleet {
        let started = Instant::now();
        let connections = spec.connections;
        let timeout = spec.ready_timeout;
        let shared = Arc::new(Shared {
            spec,
            phase: AtomicUsize::new(0),
            handshakes: Semaphore::new(HANDSHAKES_IN_FLIGHT),
            stalled_ports: Mutex::new(Vec::new()),
        });
        let (signal, _) = watch::channel(Signal::Hold);
        let (progress_tx, mut progress) = mpsc::unbounded_channel();
        let tasks = (0..connections)
            .map(|i| {
                tokio::spawn(connection(
                    i,
                    Arc::clone(&shared),
                    signal.subscribe(),
                    progress_tx.clone(),
                ))
            })
            .collect();
        drop(progress_tx);
        let mut reasons: HashMap<String, usize> = HashMap::new();
        let deadline = tokio::time::Instant::now() + timeout;
        let connected = collect(
            &mut progress,
            connections,
            deadline,
            "connected",
            &mut reasons,
        )
        .await;
        signal.send_replace(Signal::Run);
        let deadline = tokio::time::Instant::now() + timeout;
        let ready = collect(
            &mut progress,
            connected,
            deadline,
            "subscribed",
            &mut reasons,
        )
        .await;
        let mut failures: Vec<(String, usize)> = reasons.into_iter().collect();
        failures.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Fleet {
            shared,
            signal,
            tasks,
            ready,
            failures,
            open_time: started.elapsed(),
        }
    }

    pub fn requested(&self) -> usize {
        self.shared.spec.connections
    }

    pub fn stalled_ports(&self) -> Vec<u16> {
        self.shared
            .stalled_ports
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts counting into window `k`; 0 stops counting.
    pub fn window(&self, k: usize) {
        self.shared.phase.store(k, Ordering::Relaxed);
    }

    /// The stalling connections stop polling their sockets.
    pub fn stall(&self) {
        self.signal.send_replace(Signal::Stall);
    }

    pub fn resume(&self) {
        self.signal.send_replace(Signal::Run);
    }

    /// Ends every connection and returns what each saw.
    pub async fn close(self) -> Vec<ConnStats> {
        self.window(0);
        self.signal.send_replace(Signal::Stop);
        let windows = self.shared.spec.windows;
        let mut out = Vec::with_capacity(self.tasks.len());
        for task in self.tasks {
            out.push(task.await.unwrap_or_else(|e| {
                let mut s = ConnStats::new(false, windows);
                s.closed = Some(format!("task failed: {e}"));
                s
            }));
        }
        out
    }
}

/// Waits for `expected` connections to report one stage (a success or a
/// failure each) and returns how many succeeded. A connection that missed
/// the first stage's deadline may still report `Connected` during the
/// second; that is not a subscription and is skipped.
async fn collect(
    progress: &mut mpsc::UnboundedReceiver<Progress>,
    expected: usize,
    deadline: tokio::time::Instant,
    stage: &str,
    reasons: &mut HashMap<String, usize>,
) -> usize {
    let subscribing = stage == "subscribed";
    let mut ok = 0;
    let mut pending = expected;
    while pending > 0 {
        match tokio::time::timeout_at(deadline, progress.recv()).await {
            Ok(Some(Progress::Connected)) if subscribing => continue,
            Ok(Some(Progress::Connected | Progress::Subscribed)) => ok += 1,
            Ok(Some(Progress::Failed(reason))) => *reasons.entry(reason).or_default() += 1,
            Ok(None) => {
                *reasons.entry("task ended unreported".into()).or_default() += pending;
                break;
            }
            Err(_) => {
                *reasons.entry(format!("not {stage} in time")).or_default() += pending;
                break;
            }
        }
        pending -= 1;
    }
    ok
}

async fn connection(
    i: usize,
    shared: Arc<Shared>,
    mut control: watch::Receiver<Signal>,
    progress: mpsc::UnboundedSender<Progress>,
) -> ConnStats {
    let spec = &shared.spec;
    let stalls = spec.stall_every.is_some_and(|every| stalls(i, every));
    let mut stats = ConnStats::new(stalls, spec.windows);
    // A connection still opening when the fleet closes must not hold it up.
    let mut stop = control.clone();
    let opened = tokio::select! {
        r = open(i, &shared, stalls, &progress, &mut control, &mut stats) => r,
        _ = stopped(&mut stop) => Err("fleet closed while opening".into()),
    };
    let ws = match opened {
        Ok(ws) => {
            let _ = progress.send(Progress::Subscribed);
            ws
        }
        Err(reason) => {
            let _ = progress.send(Progress::Failed(reason));
            stats.failed = true;
            return stats;
        }
    };
    drop(progress);
    read(ws, &shared.phase, &mut control, &mut stats).await;
    stats
}

async fn stopped(control: &mut watch::Receiver<Signal>) {
    while *control.borrow_and_update() != Signal::Stop {
        if control.changed().await.is_err() {
            return;
        }
    }
}

async fn open(
    i: usize,
    shared: &Shared,
    stalls: bool,
    progress: &mpsc::UnboundedSender<Progress>,
    control: &mut watch::Receiver<Signal>,
    stats: &mut ConnStats,
) -> Result<WebSocketStream<TcpStream>, String> {
    let spec = &shared.spec;
    let permit = shared
        .handshakes
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    let address: SocketAddr = spec
        .address
        .parse()
        .map_err(|e| format!("address {}: {e}", spec.address))?;
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if stalls {
        socket
            .set_recv_buffer_size(STALLED_RCVBUF)
            .map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    let tcp = socket
        .connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    if stalls {
        if let Ok(local) = tcp.local_addr() {
            shared
                .stalled_ports
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(local.port());
        }
    }
    let url = format!("ws://{}/api/v1/ws", spec.address);
    let (mut ws, _) = client_async_with_config(url, tcp, Some(config()))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    drop(permit);
    let _ = progress.send(Progress::Connected);
    // Keep reading while held, so the server's pings get their pongs.
    while *control.borrow_and_update() == Signal::Hold {
        tokio::select! {
            r = control.changed() => r.map_err(|e| e.to_string())?,
            frame = ws.next() => stats.record(frame, 0)?,
        }
    }
    let n = spec.topics.len().max(1);
    for k in 0..spec.topics_per_conn {
        let frame = subscribe_frame(&spec.topics[(i * spec.topics_per_conn + k) % n], k + 1);
        ws.feed(Message::Text(frame.into()))
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
    }
    ws.flush().await.map_err(|e| format!("subscribe: {e}"))?;
    let mut replies = 0;
    while spec.await_replies && replies < spec.topics_per_conn {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if text.starts_with(r#"{"type":"bars.subscribe.response""#) {
                    if !text.contains(r#""status":"ok""#) {
                        return Err(format!("subscribe refused: {}", cut(&text, 200)));
                    }
                    replies += 1;
                }
            }
            Some(Ok(Message::Close(f))) => {
                return Err(format!("closed while subscribing: {f:?}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("while subscribing: {e}")),
            None => return Err("connection ended while subscribing".into()),
        }
    }
    Ok(ws)
}

pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads until told to stop. The socket is polled before the control
/// channel, so a busy connection pays for the control check only when it
/// has drained its socket.
async fn read(
    mut ws: WebSocketStream<TcpStream>,
    phase: &AtomicUsize,
    control: &mut watch::Receiver<Signal>,
    stats: &mut ConnStats,
) {
    loop {
        let signal = *control.borrow_and_update();
        match signal {
            Signal::Stop => return,
            Signal::Stall if stats.stalls => {
                // Not polling the socket at all is the stall: the server's
                // writes back up into this socket's buffers.
                let alive = control.changed().await.is_ok();
                stats.unread_bytes = Some(unread_bytes(ws.get_ref()));
                if !alive {
                    return;
                }
                continue;
            }
            _ => {}
        }
        let changed = control.changed();
        tokio::pin!(changed);
        loop {
            tokio::select! {
                biased;
                frame = ws.next() => {
                    if let Err(reason) = stats.record(frame, phase.load(Ordering::Relaxed)) {
                        stats.closed = Some(reason);
                        return;
                    }
                }
                r = &mut changed => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
    }
}

/// Bytes received by the kernel but not yet read (FIONREAD).
fn unread_bytes(tcp: &TcpStream) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int through the pointer.
    let r = unsafe { libc::ioctl(tcp.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

/// The sum over connections of window `k`, taking the latency samples out.
pub struct Totals {
    pub updates: u64,
    pub latencies_us: Vec<u32>,
}

pub fn totals(stats: &mut [ConnStats], k: usize, include: impl Fn(&ConnStats) -> bool) -> Totals {
    let mut t = Totals {
        updates: 0,
        latencies_us: Vec::new(),
    };
    for s in stats.iter_mut().filter(|s| include(s)) {
        t.updates += s.updates.get(k).copied().unwrap_or(0);
        if let Some(l) = s.latencies_us.get_mut(k) {
            t.latencies_us.append(l);
        }
    }
    t
}
