//! The paper broker's desk in the writer: its commands in transactions of
//! their own, the prints of ingest requests in theirs (`request`), and the
//! desk rebuilt from the ledger when it is not there (at start, after a
//! transaction that failed took back what it had decided).

use trading_broker::desk::Record;
use trading_broker::rules::SymbolRules;
use trading_broker::units::Price;
use trading_market::ingest::IngestRequest;
use trading_market::source::Unhealthy;

use super::Worker;
use crate::engine::{Fail, WriteConn};
use crate::ledger::{BrokerJob, TradeError};

impl<W: WriteConn> Worker<W> {
    /// Rebuilds the desk from the ledger unless it is there.
    pub(super) async fn restore_desk(&mut self) -> Result<(), TradeError> {
        if self.shared.ledger.ready() {
            return Ok(());
        }
        if let Some(refused) = &self.refused {
            return Err(TradeError::Unavailable(refused.clone()));
        }
        let stored = match self.conn.load_ledger().await {
            Ok(stored) => stored,
            Err(e) => {
                let e = self.conn.refine(e);
                self.problem(&e, false);
                return Err(unavailable(&e, "cannot read the broker's ledger"));
            }
        };
        let rules: Vec<(String, SymbolRules)> = self
            .records
            .iter()
            .filter_map(|r| Some((r.info.ticker.clone(), SymbolRules::of_symbol(&r.info)?)))
            .collect();
        let count = stored.len();
        match self.shared.ledger.rebuild(rules, stored) {
            Ok(desk) => {
                self.shared.ledger.install(desk);
                eprintln!(
                    "store {}: the paper broker's desk rebuilt from {count} ledger entries",
                    self.shown
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("store {}: {e}", self.shown);
                Err(TradeError::Unavailable(Unhealthy {
                    reason: trading_market::source::Reason::Damaged,
                    detail: format!("store {}: {e}", self.shown),
                }))
            }
        }
    }

    /// The prints of an ingest request, to the desk: each trade at its
    /// time; each bar as open, the nearer extreme, the other, close, at
    /// its time. What they change waits in `pending` for the commit.
    pub(super) fn prints(&mut self, request: &IngestRequest) {
        let mut prints: Vec<(String, Price, i64)> = Vec::new();
        let mut add = |symbol: &str, price: f64, time: i64| {
            let Some(record) = self.records.lookup(symbol) else {
                return;
            };
            // A price with more than 8 places cannot be an order's price
            // either; the bar keeps it, the broker does not see it.
            if let Some(price) = Price::from_f64(price) {
                prints.push((record.info.ticker.clone(), price, time));
            }
        };
        match request {
            IngestRequest::Trades(trades) => {
                for t in trades {
                    add(&t.symbol, t.price, t.time);
                }
            }
            IngestRequest::Bars { bars, .. } => {
                for b in bars {
                    let (first, second) = if b.open - b.low <= b.high - b.open {
                        (b.low, b.high)
                    } else {
                        (b.high, b.low)
                    };
                    for price in [b.open, first, second, b.close] {
                        add(&b.symbol, price, b.time);
                    }
                }
            }
        }
        let decided = self.shared.ledger.decide(|desk| {
            let records: Vec<Record> = prints
                .into_iter()
                .filter_map(|(symbol, price, time)| desk.print(&symbol, price, time))
                .collect();
            ((), records)
        });
        if let Some((_, records)) = decided {
            self.pending.extend(records);
        }
    }

    /// Writes the records waiting for the open transaction.
    pub(super) async fn write_pending(&mut self) -> Result<(), Fail> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(self.pending.len());
        for record in &self.pending {
            let text = serde_json::to_string(record)
                .map_err(|e| Fail::new(format!("cannot encode a broker record: {e}")))?;
            rows.push((record.time_ms, text));
        }
        self.conn.append_ledger(&rows).await
    }

    /// Broker commands, in one transaction: each applied to the desk, what
    /// they changed written, committed, then answered and published.
    pub(super) async fn apply_broker(&mut self, batch: Vec<BrokerJob>) {
        if let Err(why) = self.restore_desk().await {
            for job in batch {
                let _ = job.reply.send(Err(why.clone()));
            }
            return;
        }
        let mut answers = Vec::with_capacity(batch.len());
        for job in &batch {
            let command = job.command.clone();
            let decided = self.shared.ledger.decide(|desk| {
                let applied = desk.apply(command);
                (applied.answer, applied.records)
            });
            match decided {
                Some((answer, records)) => {
                    self.pending.extend(records);
                    answers.push(answer.map_err(TradeError::Desk));
                }
                None => answers.push(Err(TradeError::Unavailable(Unhealthy {
                    reason: trading_market::source::Reason::Unavailable,
                    detail: "the broker's desk is being rebuilt; retry".into(),
                }))),
            }
        }
        match self.commit_pending().await {
            Ok(()) => {
                for (job, answer) in batch.into_iter().zip(answers) {
                    let _ = job.reply.send(answer);
                }
            }
            Err(why) => {
                for job in batch {
                    let _ = job.reply.send(Err(why.clone()));
                }
            }
        }
    }

    /// The broker's clock: DAY orders whose session closed end, durably.
    pub(super) async fn broker_tick(&mut self, now_ms: i64) {
        if self.restore_desk().await.is_err() {
            return;
        }
        if let Some((_, records)) = self
            .shared
            .ledger
            .decide(|desk| ((), desk.tick(now_ms).into_iter().collect()))
        {
            self.pending.extend(records);
        }
        let _ = self.commit_pending().await;
    }

    /// Commits what `pending` holds in a transaction of its own, then
    /// publishes it; on failure the desk is rebuilt before its next use.
    async fn commit_pending(&mut self) -> Result<(), TradeError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Some(refused) = self.refused.clone() {
            self.pending.clear();
            self.shared.ledger.lost();
            return Err(TradeError::Unavailable(refused));
        }
        self.shared.health.busy();
        let written = match self.conn.begin(false).await {
            Ok(()) => match self.write_pending().await {
                Ok(()) => match self.conn.commit().await {
                    Ok(()) => Ok(()),
                    // The reply to the commit may be what was lost.
                    Err(e) => match self.conn.committed().await {
                        Ok(true) => Ok(()),
                        _ => Err(e),
                    },
                },
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        self.shared.health.idle();
        match written {
            Ok(()) => {
                self.healthy();
                self.shared
                    .ledger
                    .durable(std::mem::take(&mut self.pending));
                Ok(())
            }
            Err(e) => {
                self.pending.clear();
                self.shared.ledger.lost();
                let why = self.rolled_back(e).await;
                Err(match why {
                    trading_market::ingest::IngestError::Unavailable(u) => {
                        TradeError::Unavailable(u)
                    }
                    other => TradeError::Unavailable(Unhealthy {
                        reason: trading_market::source::Reason::Unavailable,
                        detail: other.to_string(),
                    }),
                })
            }
        }
    }
}

fn unavailable(e: &Fail, what: &str) -> TradeError {
    TradeError::Unavailable(Unhealthy {
        reason: e.reason,
        detail: format!("{what}: {e}"),
    })
}
