//! The replication contract: how a store applies the entries of a log
//! that several nodes share (see `trading_bus`), exactly once across all
//! of them. A node hands its store each entry in log order; the first node
//! to reach an entry applies it under the store's write lock and records
//! what it answered and changed, and every other node replays that record.

use std::sync::Arc;

use async_trait::async_trait;
use trading_market::ingest::{IngestError, IngestReceipt, IngestRequest};

use crate::Records;

/// An ingest request as the log carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub request: IngestRequest,
    pub key: Option<String>,
    /// The accepting node's clock: every node checks the request against
    /// this time, so they all decide alike.
    pub accepted_ms: i64,
}

/// What one log entry asks the store to do. A log carries more than one
/// kind (see `trading_bus::message`); each is applied by the same writer,
/// in log order, exactly once.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Trades or bars a feed sent (`POST /api/v1/ingest/*`).
    Ingest(Submitted),
}

/// An entry handed to the store, in log order.
pub struct Logged {
    pub seq: u64,
    /// The entry read before this one (the store refuses an entry whose
    /// predecessor it has not applied: nothing is applied out of order).
    pub prev: u64,
    /// What it asks, or why its bytes could not be read (every node reads
    /// the same bytes, so all refuse it alike).
    pub command: Result<Command, String>,
}

/// What applying one entry answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub seq: u64,
    /// The request's fingerprint, to tell a retry of it from another
    /// request reusing its key.
    pub fingerprint: i64,
    pub result: Result<IngestReceipt, IngestError>,
}

/// A store that applies log entries exactly once across every node that
/// shares it.
#[async_trait]
pub trait Applier: Send + Sync {
    /// The symbols as this node sees them, to check a request before it is
    /// appended.
    fn records(&self) -> Arc<Records>;

    /// The store's identity, made when it was created: every entry a node
    /// appends names it, and a node applies only entries that name its own
    /// (see `owner`).
    fn market(&self) -> &str;

    /// The incarnation of the log the store follows (`name@epoch`, as in
    /// `position`), once a node has begun to follow one.
    async fn followed(&self) -> Result<Option<String>, String>;

    /// Records that the store follows the log incarnation `log`.
    async fn follow(&self, log: &str) -> Result<(), String>;

    /// How far the log `log` has been applied to the store (0: not at all).
    /// `log` names one incarnation of a log (its name and epoch).
    async fn position(&self, log: &str) -> Result<u64, String>;

    /// Applies `entries` (consecutive, in log order) or, for those another
    /// node applied first, replays what they changed; publishes the changed
    /// bars to this node's subscribers. Err when the store could not (then
    /// nothing of it counts, and the entries are handed over again).
    async fn apply_logged(&self, log: &str, entries: Vec<Logged>) -> Result<Vec<Outcome>, String>;
}
