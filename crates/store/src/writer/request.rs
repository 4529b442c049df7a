//! One ingest request inside the writer's transaction: its idempotency
//! key, its plan, its writes, in a savepoint of its own.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use trading_market::calendar::Resolution;
use trading_market::ingest::{IngestError, IngestReceipt, IngestRequest, KEY_RETENTION_MS};

use super::Worker;
use crate::chain::{served, Dirty};
use crate::engine::{Fail, WriteConn};
use crate::plan::{self, BaseBars, Target, Touched, Work};

impl<W: WriteConn> Worker<W> {
    /// One request inside a savepoint, so refusing it undoes only its
    /// writes.
    pub(super) async fn in_savepoint(
        &mut self,
        request: &IngestRequest,
        key: &Option<String>,
        now_ms: i64,
        work: &mut Work,
    ) -> Result<Result<IngestReceipt, IngestError>, Fail> {
        self.conn.savepoint().await?;
        let bases_before = work.new_bases.clone();
        let answer = self.job(request, key, now_ms, work).await?;
        if answer.is_ok() {
            self.conn.release().await?;
        } else {
            self.conn.rollback_to_savepoint().await?;
            work.new_bases = bases_before;
        }
        Ok(answer)
    }

    /// One request: its key, its validation, its writes.
    async fn job(
        &mut self,
        request: &IngestRequest,
        key: &Option<String>,
        now_ms: i64,
        work: &mut Work,
    ) -> Result<Result<IngestReceipt, IngestError>, Fail> {
        let endpoint = request.endpoint();
        let fingerprint = request.fingerprint();
        if let Some(key) = key {
            if let Some((stored, applied, created)) = self.conn.find_key(endpoint, key).await? {
                if created >= now_ms - KEY_RETENTION_MS {
                    return Ok(plan::replay(key, endpoint, fingerprint, (stored, applied)));
                }
            }
        }
        let records = Arc::clone(&self.records);
        let planned = match request {
            IngestRequest::Trades(trades) => match plan::trades(&records, trades, now_ms, work) {
                Ok((targets, placed)) => {
                    // Every bar the trades land in, read at once.
                    let stored = self.conn.get_many(&plan::bars_to_read(&placed)).await?;
                    plan::fold(placed, trades, &stored).map(|bars| (targets, bars))
                }
                Err(e) => Err(e),
            },
            IngestRequest::Bars { resolution, bars } => {
                plan::bars(&records, *resolution, bars, now_ms, work)
            }
        };
        let (targets, bars) = match planned {
            Ok(planned) => planned,
            Err(e) => return Ok(Err(e)),
        };
        self.write(&targets, bars, work).await?;
        // The market printed these: the broker's desk fills from them, in
        // this transaction (a replayed request above printed nothing new).
        self.prints(request);
        let applied = request.len();
        if let Some(key) = key {
            self.conn
                .insert_key(endpoint, key, fingerprint, applied as i64, now_ms)
                .await?;
        }
        Ok(Ok(IngestReceipt { applied }))
    }

    /// Stores base bars and rebuilds the coarser ones over them.
    async fn write(
        &mut self,
        targets: &[Target],
        bars: BaseBars,
        work: &mut Work,
    ) -> Result<(), Fail> {
        for Target {
            record, base, new, ..
        } in targets
        {
            if let Entry::Vacant(slot) = work.touched.entry(record.id) {
                let resolutions: Vec<Resolution> = served(*base).collect();
                let before = self.conn.newest_times(record.id, &resolutions).await?;
                slot.insert(Touched {
                    record: record.clone(),
                    before,
                });
            }
            if *new {
                self.conn.set_base(record.id, *base).await?;
                work.new_bases.insert(record.id, *base);
            }
        }
        // Grouped by symbol (and so by base), in time order.
        let mut grouped: BTreeMap<i64, (Resolution, Vec<_>)> = BTreeMap::new();
        for ((id, _), (base, bar)) in bars {
            work.note_written(id, base, bar.time);
            grouped.entry(id).or_insert((base, Vec::new())).1.push(bar);
        }
        let mut dirty: HashMap<i64, Dirty> = HashMap::new();
        for (id, (base, bars)) in &grouped {
            self.conn.write_many(*id, *base, bars).await?;
            let d = dirty.entry(*id).or_default();
            for bar in bars {
                d.add(bar.time);
            }
        }
        for Target { record, base, .. } in targets {
            if let Some(dirty) = dirty.get(&record.id) {
                self.conn
                    .rebuild(record.id, &record.calendar, *base, dirty)
                    .await?;
            }
        }
        Ok(())
    }
}
