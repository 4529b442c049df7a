//! A shared log's entries through the writer: those the store applied
//! already are answered from its record, the rest applied and recorded in
//! one transaction with the log's new position.

use trading_market::ingest::IngestError;
use trading_market::source::Reason;

use super::Worker;
use crate::effects::{self, Effects};
use crate::engine::{Fail, WriteConn};
use crate::plan::Work;
use crate::replication::{Command, Logged, Outcome};

impl<W: WriteConn> Worker<W> {
    /// Log entries: those the store has applied already are replayed from
    /// its record; the rest are applied in one transaction that also
    /// records what they answered and changed, and how far the log is
    /// applied. Then this node takes in every effect, in log order.
    pub(super) async fn apply_logged(
        &mut self,
        log: &str,
        entries: &[Logged],
    ) -> Result<Vec<Outcome>, String> {
        let mut work = Work::default();
        self.shared.health.busy();
        let outcome = self.logged_transaction(log, entries, &mut work).await;
        self.shared.health.idle();
        match outcome {
            Ok((outcomes, effects)) => {
                for effects in effects {
                    match effects {
                        Some(effects) => self.take_in(&effects).await,
                        None => self.refresh().await,
                    }
                }
                Ok(outcomes)
            }
            Err(e) => {
                // Committed or not (a lost reply to the commit), the log
                // is applied again from the store's position; what this
                // node keeps of these symbols is read again meanwhile.
                for id in work.touched.keys() {
                    self.shared.recent.written(*id, true);
                }
                Err(self.rolled_back(e).await.to_string())
            }
        }
    }

    /// The outcome of every entry, and the effects to take in, in order
    /// (None: applied by another node so long ago that its record is gone).
    async fn logged_transaction(
        &mut self,
        log: &str,
        entries: &[Logged],
        work: &mut Work,
    ) -> Result<(Vec<Outcome>, Vec<Option<Effects>>), Fail> {
        // The entries are durable in the bus already, and the position
        // commits with what they wrote, so a commit the store loses in a
        // crash is applied again from the bus, exactly once.
        self.conn.begin(true).await?;
        let position = self.conn.position(log).await?;
        let mut outcomes = Vec::with_capacity(entries.len());
        let mut taken = Vec::new();
        let (done, fresh): (Vec<&Logged>, Vec<&Logged>) =
            entries.iter().partition(|e| e.seq <= position);
        if let (Some(first), Some(last)) = (done.first(), done.last()) {
            let rows = self.conn.recorded(log, first.seq, last.seq).await?;
            let mut recorded = effects::read_rows(rows)?;
            let mut forgotten = false;
            for entry in &done {
                match recorded.remove(&entry.seq) {
                    Some(r) => {
                        outcomes.push(Outcome {
                            seq: entry.seq,
                            fingerprint: r.fingerprint,
                            result: r.result,
                        });
                        if let Some(effects) = r.effects {
                            taken.push(Some(effects));
                        }
                    }
                    None => {
                        outcomes.push(Outcome {
                            seq: entry.seq,
                            fingerprint: 0,
                            result: Err(IngestError::unavailable(
                                Reason::Unavailable,
                                format!(
                                    "log entry {} was applied by another node; its outcome is no \
                                 longer kept",
                                    entry.seq
                                ),
                            )),
                        });
                        forgotten = true;
                    }
                }
            }
            if forgotten {
                taken.push(None);
            }
        }
        let Some(first) = fresh.first() else {
            self.conn.commit().await?;
            return Ok((outcomes, taken));
        };
        if first.prev != position {
            return Err(Fail::new(format!(
                "log {log}: entry {} follows entry {}, but the store has applied up to {position}",
                first.seq, first.prev
            )));
        }
        let mut now_ms = self.now_ms;
        let mut applied = Vec::with_capacity(fresh.len());
        for entry in &fresh {
            let (fingerprint, result) = match &entry.command {
                Ok(Command::Ingest(s)) => {
                    now_ms = now_ms.max(s.accepted_ms);
                    let result = self
                        .in_savepoint(&s.request, &s.key, s.accepted_ms, work)
                        .await?;
                    (s.request.fingerprint(), result)
                }
                Err(why) => (
                    0,
                    Err(IngestError::Invalid(format!(
                        "log entry {}: {why}",
                        entry.seq
                    ))),
                ),
            };
            applied.push((entry.seq, fingerprint, result));
        }
        let mut effects = effects::effects_of(work);
        self.changed_bars(work, &mut effects).await?;
        let rows = effects::rows_of(&applied, &effects)?;
        self.conn.record(log, &rows, now_ms).await?;
        let last = applied.last().map_or(position, |a| a.0);
        self.conn.set_position(log, last).await?;
        self.conn.commit().await?;
        self.now_ms = now_ms;
        outcomes.extend(
            applied
                .into_iter()
                .map(|(seq, fingerprint, result)| Outcome {
                    seq,
                    fingerprint,
                    result,
                }),
        );
        taken.push(Some(effects));
        Ok((outcomes, taken))
    }
}
