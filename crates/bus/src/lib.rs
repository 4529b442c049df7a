//! The bus: several nodes, one market (`--bus nats://HOST:PORT` with
//! `--store postgres://...`).
//!
//! An ingest request is acknowledged once it is durable in an ordered,
//! replayable log (`Log`; NATS JetStream in `nats`). Every node follows
//! that log in order (`follow`) and hands each entry to its store
//! (`Applier`), which applies an entry exactly once for all nodes (the
//! first node to reach it writes, under the store's write lock, and records
//! what it changed); every node then publishes the same changed bars to its
//! own WebSocket subscribers and answers the requests it accepted
//! (`ingest`). A node that was away reads the log from where it stopped;
//! what others applied meanwhile it replays from the store's record.
//!
//! * `message`: a log entry's bytes: a versioned envelope around one
//!   command of the stores' replication contract (ingest today; a kind a
//!   node does not know is refused, never misread);
//! * `nats`: the JetStream log;
//! * `owner`: whether a store and a log are one market's (one stream
//!   per market: a node never mixes two);
//! * `follow`: a node's reading of the log, and what it has applied;
//! * `ingest`: the `Ingest` a node serves: validate, append, wait.

pub mod follow;
pub mod ingest;
pub mod message;
pub mod nats;
pub mod owner;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use trading_store::replication::Applier;

/// A node's bus: the log, how far this node has applied it, and the
/// ingest it serves.
pub struct Bus {
    pub log: Arc<dyn Log>,
    pub status: Arc<follow::Status>,
    pub ingest: ingest::LoggedIngest,
    /// The stream incarnation and the last entry of it the store had
    /// applied when the node started (None when the bus did not answer).
    pub resumes_from: Option<(String, u64)>,
}

impl Bus {
    /// Connects to the NATS server `url` (in the background: a node starts
    /// while NATS is down) and follows the stream `stream` into `store`,
    /// on the current runtime, for as long as it runs.
    ///
    /// First, when NATS answers within a few seconds, it makes sure the
    /// store and the stream are one market's (`owner`), and refuses to
    /// start if not; otherwise the follower checks when NATS answers.
    pub async fn start(
        url: &str,
        stream: &str,
        store: Arc<dyn Applier>,
        store_name: &str,
        logger: slog::Logger,
    ) -> Result<Bus, String> {
        let log: Arc<dyn Log> =
            Arc::new(nats::NatsLog::connect(url, stream).await.map_err(|e| e.0)?);
        let checked = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            owner::claim(&*log, &*store, store_name),
        )
        .await;
        let mut resumes_from = None;
        match checked {
            Ok(Ok(key)) => {
                if let Ok(seq) = store.position(&key).await {
                    resumes_from = Some((key, seq));
                }
            }
            Ok(Err(owner::Ownership::Refused(why))) => return Err(why),
            Ok(Err(owner::Ownership::Unknown(why))) => {
                slog::warn!(logger, "cannot check the bus's stream now; the node checks it before it applies anything";
                    "reason" => why);
            }
            Err(_) => {
                slog::warn!(logger, "the bus did not answer within 5 s; the node checks its stream before it applies anything";
                    "bus" => log.describe());
            }
        }
        let status = Arc::new(follow::Status::new(log.name()));
        tokio::spawn(follow::follow(
            Arc::clone(&log),
            Arc::clone(&store),
            Arc::clone(&status),
            store_name.to_string(),
            logger,
        ));
        Ok(Bus {
            ingest: ingest::LoggedIngest {
                log: Arc::clone(&log),
                applier: store,
                status: Arc::clone(&status),
            },
            log,
            status,
            resumes_from,
        })
    }

    /// Whether this node serves live bars as the other nodes do: connected,
    /// following, and caught up with the log it found when it started.
    /// Otherwise why not.
    pub fn ready(&self) -> Result<(), String> {
        if !self.log.connected() {
            return Err(format!("the bus {} is not connected", self.log.describe()));
        }
        if let Some(problem) = self.status.problem() {
            return Err(problem);
        }
        if self.status.catching_up() {
            return Err(format!(
                "catching up with the bus: {} of {} entries applied",
                self.status.applied(),
                self.status.newest()
            ));
        }
        Ok(())
    }
}

/// Why the log could not do something; the message says what and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusError(pub String);

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an appended entry is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// An entry with the same id was appended before (within the log's
    /// deduplication window): `seq` is that entry's.
    pub duplicate: bool,
}

/// One entry of the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its position: 1 for the first entry, increasing by one.
    pub seq: u64,
    pub payload: Bytes,
}

/// An ordered, durable, replayable log shared by every node.
#[async_trait]
pub trait Log: Send + Sync {
    /// The log's name: where nodes record how far they applied it.
    fn name(&self) -> &str;

    /// Where the log lives, for health and messages (no secrets).
    fn describe(&self) -> String;

    /// Whether the node is connected to the log now.
    fn connected(&self) -> bool;

    /// Makes sure the log exists (creating it on first use).
    async fn prepare(&self) -> Result<(), BusError>;

    /// Which incarnation of the log this is: it changes when the log is
    /// deleted and created anew, whose positions start again from 1.
    async fn epoch(&self) -> Result<String, BusError>;

    /// Appends `payload` durably. An `id` appended before is not appended
    /// again: the answer names the first entry.
    async fn append(&self, id: &str, payload: Bytes) -> Result<Appended, BusError>;

    /// The entries from `seq` on, in order, then each new one as it is
    /// appended. The stream ends (or yields an error) when the connection
    /// is lost; read again from where it stopped.
    async fn read_from(
        &self,
        seq: u64,
    ) -> Result<BoxStream<'static, Result<Entry, BusError>>, BusError>;

    /// The newest entry's position (0 for an empty log).
    async fn last_seq(&self) -> Result<u64, BusError>;

    /// The oldest entry the log still holds and the newest (None when it
    /// holds none): what the node looks at to tell whose log it is.
    async fn ends(&self) -> Result<Option<(Entry, Entry)>, BusError>;
}
