//! Ingest on a node with a bus: check the request as the store would,
//! append it to the log (durable there: this is what acknowledges it),
//! then wait until this node has applied it and answer what applying it
//! answered, so a client reads its own writes on the node it wrote to.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::follow::Status;
use super::{message, Log};
use trading_market::ingest::{Ingest, IngestError, IngestReceipt, IngestRequest};
use trading_market::source::Reason;
use trading_store::plan::{self, Work};
use trading_store::replication::{Applier, Command, Outcome, Submitted};

/// How long an acknowledged request waits to be applied before the client
/// is told it is in the log but not applied yet.
const APPLY_WAIT: Duration = Duration::from_secs(30);

pub struct LoggedIngest {
    pub log: Arc<dyn Log>,
    pub applier: Arc<dyn Applier>,
    pub status: Arc<Status>,
}

impl LoggedIngest {
    /// The outcome of entry `seq`, once this node has applied it. Unless
    /// the entry is a duplicate (another request with this key), an
    /// outcome at that position for another request is of an earlier
    /// incarnation of the log (deleted and created anew, which this node
    /// has not noticed yet): it waits for the entry of this one.
    async fn outcome(&self, seq: u64, fingerprint: Option<i64>) -> Option<Outcome> {
        let deadline = tokio::time::Instant::now() + APPLY_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = self.status.outcome(seq, left).await?;
            if fingerprint.is_none_or(|f| f == outcome.fingerprint) {
                return Some(outcome);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[async_trait]
impl Ingest for LoggedIngest {
    async fn apply(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
        // Once in the log, a request is applied whenever its turn comes:
        // a client that stopped waiting learns the outcome by its key.
        _deadline: Option<std::time::Instant>,
    ) -> Result<IngestReceipt, IngestError> {
        // Refused before it reaches the log, with the message the store
        // would give: every node decides the same from the same symbols.
        // (A symbol registered a moment ago on another node may not be
        // seen here yet; the store decides again when it applies.)
        let records = self.applier.records();
        match &request {
            IngestRequest::Trades(trades) => {
                plan::trades(&records, trades, now_ms, &Work::default())?;
            }
            IngestRequest::Bars { resolution, bars } => {
                plan::bars(&records, *resolution, bars, now_ms, &Work::default())?;
            }
        }
        let endpoint = request.endpoint();
        let fingerprint = request.fingerprint();
        // A key names the request across nodes; without one, every request
        // is new.
        let id = match &key {
            Some(key) => format!("{endpoint}:{key}"),
            None => uuid::Uuid::new_v4().to_string(),
        };
        if self.status.refused() {
            return Err(IngestError::unavailable(
                Reason::Unavailable,
                "this node does not follow its bus: the stream belongs to another market (see \
                 /api/v1/ready)",
            ));
        }
        let payload = message::encode(
            self.applier.market(),
            &Command::Ingest(Submitted {
                request,
                key: key.clone(),
                accepted_ms: now_ms,
            }),
        );
        let appended = self
            .log
            .append(&id, payload)
            .await
            .map_err(|e| IngestError::Retry {
                reason: Reason::Unavailable,
                message: "the bus that orders ingest across the nodes cannot take the request \
                          now: nothing was acknowledged; retry (on any node, with the same \
                          Idempotency-Key)"
                    .into(),
                detail: e.0,
            })?;
        self.status.saw(appended.seq);
        let expected = (!appended.duplicate).then_some(fingerprint);
        let Some(outcome) = self.outcome(appended.seq, expected).await else {
            let message = format!(
                "the request is in the bus's log (entry {}) but this node has not applied it \
                 within {} s; it will be applied: retry with the same Idempotency-Key to learn \
                 the outcome",
                appended.seq,
                APPLY_WAIT.as_secs()
            );
            return Err(IngestError::Retry {
                reason: Reason::Unavailable,
                detail: message.clone(),
                message,
            });
        };
        match (&key, outcome.result) {
            // The entry is another request that had this key.
            (Some(key), Ok(receipt)) if appended.duplicate => plan::replay(
                key,
                endpoint,
                fingerprint,
                (outcome.fingerprint, receipt.applied as i64),
            ),
            (Some(key), Err(_)) if appended.duplicate && outcome.fingerprint != fingerprint => {
                plan::replay(key, endpoint, fingerprint, (outcome.fingerprint, 0))
            }
            (_, result) => result,
        }
    }
}
