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
use slog::{error, warn, Logger};
use tokio::sync::watch;

use super::owner::{self, Ownership};
use super::{message, Log};
use trading_store::replication::{Applier, Logged, Outcome};

/// Most entries handed to the store at once (one transaction).
const MAX_ENTRIES: usize = 256;
/// How long the log may stay quiet before the node checks that it is
/// still the same incarnation of it.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// Outcomes kept for requests still waiting on them.
const KEPT_OUTCOMES: usize = 65_536;
/// Waits between attempts after a failure: from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(2));
/// How long known entries may wait to be applied before the node counts
/// as catching up (not ready).
const CATCHING_UP_AFTER: Duration = Duration::from_secs(2);

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
    /// The node will not follow this log at all (it is another market's):
    /// `problem` says why.
    refused: AtomicBool,
    /// Since when entries known to exist have waited to be applied.
    behind_since: Mutex<Option<std::time::Instant>>,
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
            refused: AtomicBool::new(false),
            behind_since: Mutex::default(),
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

    /// Whether the node is catching up: it has not yet applied what the log
    /// held when it started, or entries have waited longer than a moment
    /// (an entry just appended waits a few milliseconds on any node).
    pub fn catching_up(&self) -> bool {
        if !self.caught_up() {
            return true;
        }
        self.behind_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|since| since.elapsed() > CATCHING_UP_AFTER)
    }

    /// Whether the node refuses this log (another market's).
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
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
        if seq > self.applied() {
            self.behind_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(std::time::Instant::now);
        }
    }

    /// Clears `behind_since` once everything known is applied.
    fn applied_up_to(&self, seq: u64) {
        self.applied.send_replace(seq);
        let mut behind = self
            .behind_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if seq >= self.newest() {
            *behind = None;
        }
    }

    /// Starts (again) at `seq` of a log: what was kept of another is gone.
    fn start_at(&self, seq: u64) {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.newest.store(seq, Ordering::Relaxed);
        self.applied_up_to(seq);
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
        self.newest.fetch_max(last, Ordering::Relaxed);
        self.applied_up_to(last);
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

/// Why reading the log stopped.
enum Stop {
    /// Something failed (the bus or the store): read again after a wait.
    Retry(String),
    /// The log is another market's: never follow it.
    Refused(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Stop {
        Stop::Retry(e)
    }
}

/// Follows `log` for as long as the node runs, unless it turns out to be
/// another market's (then the node stays unready, saying why).
pub async fn follow(
    log: Arc<dyn Log>,
    applier: Arc<dyn Applier>,
    status: Arc<Status>,
    store_name: String,
    logger: Logger,
) {
    let mut backoff = Backoff(BACKOFF.0);
    let mut following = None;
    let mut last_problem = None;
    loop {
        let Err(stop) = read(
            &*log,
            &*applier,
            &status,
            &store_name,
            &mut following,
            &mut backoff,
            &logger,
        )
        .await;
        match stop {
            Stop::Refused(why) => {
                error!(logger, "not following the bus: the stream is another market's"; "reason" => &why);
                status.refused.store(true, Ordering::Relaxed);
                status.set_problem(Some(why));
                return;
            }
            Stop::Retry(why) => {
                // Once per new reason, not once per attempt.
                if last_problem.as_ref() != Some(&why) {
                    warn!(logger, "following the bus failed; retrying"; "reason" => &why);
                    last_problem = Some(why.clone());
                }
                status.set_problem(Some(why));
            }
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
    store_name: &str,
    following: &mut Option<Following>,
    backoff: &mut Backoff,
    logger: &Logger,
) -> Result<std::convert::Infallible, Stop> {
    log.prepare().await.map_err(|e| e.0)?;
    // A log deleted and created anew starts again from 1: it is another
    // log to the store, applied from its start (if it is still this
    // market's: `owner`).
    let key = format!("{}@{}", log.name(), log.epoch().await.map_err(|e| e.0)?);
    if following.as_ref().is_none_or(|f| f.key != key) {
        if following.is_some() {
            warn!(logger, "the bus's stream was created anew; applying it from its start";
                "stream" => log.name());
        }
        let key = match owner::claim(log, applier, store_name).await {
            Ok(key) => key,
            Err(Ownership::Refused(why)) => return Err(Stop::Refused(why)),
            Err(Ownership::Unknown(e)) => return Err(Stop::Retry(e)),
        };
        // Entries up to the store's position are in the store already,
        // and nobody here has subscribed to them.
        let applied = applier.position(&key).await?;
        status.start_at(applied);
        *following = Some(Following { key, applied });
    }
    let Some(Following { key, applied }) = following.as_mut() else {
        return Err(Stop::Retry("not following".into()));
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
            Ok(None) => {
                return Err(Stop::Retry(format!(
                    "the bus stopped delivering {}",
                    log.name()
                )))
            }
            // Quiet for a while: make sure this is still the log's
            // incarnation (a deleted stream may just stay quiet).
            Err(_) => {
                let now = format!("{}@{}", log.name(), log.epoch().await.map_err(|e| e.0)?);
                if now != *key {
                    return Err(Stop::Retry(format!(
                        "the stream {} was created anew",
                        log.name()
                    )));
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
        // An entry that names another market's store is never applied:
        // this stream is not this market's alone.
        for entry in &batch {
            if let Ok(Some(market)) = message::market(&entry.payload) {
                if market != applier.market() {
                    return Err(Stop::Refused(format!(
                        "entry {} of the stream {} on {} names another market's store (market \
                         {market}; this store is market {}): it was not applied. One stream per \
                         market: give each market's nodes a --bus-stream of its own",
                        entry.seq,
                        log.name(),
                        log.describe(),
                        applier.market()
                    )));
                }
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
                    command: message::decode(&e.payload),
                };
                prev = e.seq;
                entry
            })
            .collect();
        if let Some(first) = logged.first().filter(|l| l.seq > *applied + 1) {
            warn!(logger, "entries expired from the bus's log before any node applied them";
                "stream" => log.name(), "from" => *applied + 1, "to" => first.seq - 1);
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
            return Err(Stop::Retry(e));
        }
    }
}
