//! A node's reading of the log: every entry, in order, handed to the store
//! (which applies it, or replays it when another node was first), from
//! where this node stopped; and what has been applied, for the requests
//! waiting on it and for health.
//!
//! Nothing is skipped and nothing is handed over twice: after any failure
//! (the bus or the store lost) the node reads again from the entry after
//! the last one the store accepted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::{message, Applier, Log, Logged, Outcome};

/// Most entries handed to the store at once (one transaction).
const MAX_ENTRIES: usize = 256;
/// How long the log may stay quiet before the node checks that it is
/// still the same incarnation of it.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Outcomes kept for requests still waiting on them.
const KEPT_OUTCOMES: usize = 65_536;
/// Waits between attempts after a failure: from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));

/// How far this node has applied the log, and whether it is keeping up.
pub struct Status {
    log: String,
    applied: watch::Sender<u64>,
    /// The newest entry known to exist (from appends and reads).
    newest: AtomicU64,
    /// Whether the node has once caught up with the log as it was when it
    /// started reading.
    caught_up: AtomicBool,
    /// Why the node is not following the log now, if it is not.
    problem: Mutex<Option<String>>,
    outcomes: Mutex<VecDeque<Outcome>>,
}

impl Status {
    pub fn new(log: &str) -> Status {
        Status {
            log: log.to_string(),
            applied: watch::channel(0).0,
            newest: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            problem: Mutex::new(Some("the node has not read the log yet".into())),
            outcomes: Mutex::default(),
        }
    }

    pub fn log(&self) -> &str {
        &self.log
    }

    /// The last entry this node has applied (or replayed).
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Entries known to exist that this node has not applied yet.
    pub fn lag(&self) -> u64 {
        self.newest
            .load(Ordering::Relaxed)
            .saturating_sub(self.applied())
    }

    pub fn newest(&self) -> u64 {
        self.newest.load(Ordering::Relaxed)
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_problem(&self, why: Option<String>) {
        *self.problem.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }

    pub fn saw(&self, seq: u64) {
        self.newest.fetch_max(seq, Ordering::Relaxed);
    }

    /// Starts (again) at `seq` of a log: what was kept of another is gone.
    fn start_at(&self, seq: u64) {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.newest.store(seq, Ordering::Relaxed);
        self.applied.send_replace(seq);
    }

    fn record(&self, outcomes: Vec<Outcome>) {
        let Some(last) = outcomes.last().map(|o| o.seq) else {
            return;
        };
        {
            let mut kept = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
            kept.extend(outcomes);
            let excess = kept.len().saturating_sub(KEPT_OUTCOMES);
            kept.drain(..excess);
        }
        self.saw(last);
        self.applied.send_replace(last);
    }

    /// Waits until this node has applied entry `seq`, for up to `within`;
    /// then what applying it answered (None: not applied in time, or
    /// applied so long ago that the outcome is no longer kept).
    pub async fn outcome(&self, seq: u64, within: Duration) -> Option<Outcome> {
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(within, applied.wait_for(|a| *a >= seq))
            .await
            .ok()?
            .ok()?;
        let kept = self.outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        let at = kept.binary_search_by_key(&seq, |o| o.seq).ok()?;
        kept.get(at).cloned()
    }
}

/// A wait that doubles after each failure, up to a bound.
struct Backoff(Duration);

impl Backoff {
    fn reset(&mut self) {
        self.0 = BACKOFF.0;
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF.1);
    }
}

/// Follows `log` for as long as the node runs.
pub async fn follow(log: Arc<dyn Log>, applier: Arc<dyn Applier>, status: Arc<Status>) {
    let mut backoff = Backoff(BACKOFF.0);
    let mut following = None;
    loop {
        if let Err(e) = read(&*log, &*applier, &status, &mut following, &mut backoff).await {
            status.set_problem(Some(e));
        }
        backoff.wait().await;
    }
}

/// Where a node is in one incarnation of the log: the store's name for
/// it (the log's name and epoch), and the last entry applied.
struct Following {
    key: String,
    applied: u64,
}

/// Reads the log from the entry after the last one applied until
/// something fails.
async fn read(
    log: &dyn Log,
    applier: &dyn Applier,
    status: &Status,
    following: &mut Option<Following>,
    backoff: &mut Backoff,
) -> Result<(), String> {
    log.prepare().await.map_err(|e| e.0)?;
    // A log deleted and created anew starts again from 1: it is another
    // log to the store, applied from its start.
    let key = format!("{}@{}", log.name(), log.epoch().await.map_err(|e| e.0)?);
    if following.as_ref().is_none_or(|f| f.key != key) {
        if following.is_some() {
            eprintln!(
                "bus {}: the stream was created anew; applying it from its start",
                log.name()
            );
        }
        // Entries up to the store's position are in the store already,
        // and nobody here has subscribed to them.
        let applied = applier.position(&key).await?;
        status.start_at(applied);
        *following = Some(Following { key, applied });
    }
    let Some(Following { key, applied }) = following.as_mut() else {
        return Err("not following".into());
    };
    let end = log.last_seq().await.map_err(|e| e.0)?;
    status.saw(end);
    if *applied >= end {
        status.caught_up.store(true, Ordering::Relaxed);
    }
    let mut entries = log.read_from(*applied + 1).await.map_err(|e| e.0)?;
    status.set_problem(None);
    loop {
        let first = match tokio::time::timeout(IDLE_CHECK, entries.next()).await {
            Ok(Some(entry)) => entry.map_err(|e| e.0)?,
            Ok(None) => return Err(format!("the bus stopped delivering {}", log.name())),
            // Quiet for a while: make sure this is still the log's
            // incarnation (a deleted stream may just stay quiet).
            Err(_) => {
                let now = format!("{}@{}", log.name(), log.epoch().await.map_err(|e| e.0)?);
                if now != *key {
                    return Err(format!("the stream {} was created anew", log.name()));
                }
                continue;
            }
        };
        let mut batch = vec![first];
        let mut failed = None;
        while batch.len() < MAX_ENTRIES {
            match entries.next().now_or_never() {
                Some(Some(Ok(entry))) => batch.push(entry),
                Some(Some(Err(e))) => {
                    failed = Some(e.0);
                    break;
                }
                Some(None) | None => break,
            }
        }
        let mut prev = *applied;
        let logged: Vec<Logged> = batch
            .into_iter()
            .filter(|e| e.seq > *applied)
            .map(|e| {
                let entry = Logged {
                    seq: e.seq,
                    prev,
                    submitted: message::decode(&e.payload),
                };
                prev = e.seq;
                entry
            })
            .collect();
        if let Some(first) = logged.first().filter(|l| l.seq > *applied + 1) {
            eprintln!(
                "bus {}: entries {} to {} expired from the log before any node applied them",
                log.name(),
                *applied + 1,
                first.seq - 1
            );
        }
        if !logged.is_empty() {
            let outcomes = applier.apply_logged(key, logged).await?;
            if let Some(last) = outcomes.last() {
                *applied = last.seq;
            }
            status.record(outcomes);
            if *applied >= end {
                status.caught_up.store(true, Ordering::Relaxed);
            }
            backoff.reset();
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
}
