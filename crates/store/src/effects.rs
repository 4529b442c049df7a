//! What a write transaction changed, and what each log entry answered, as
//! a store records them for replication: every node that finds an entry
//! already applied by another answers and publishes exactly what the first
//! node did (see `replication` and `writer`).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use trading_market::calendar::Resolution;
use trading_market::ingest::{IngestError, IngestReceipt};
use trading_market::source::Bar;

use crate::engine::{Fail, OutcomeRow, Result};
use crate::plan::Work;

/// How long outcomes are kept, in ms: a node away for longer than that
/// reloads its symbols and live bars instead of replaying.
pub const OUTCOME_RETENTION_MS: i64 = 3_600_000;

/// What one transaction of log entries changed: recorded with its last
/// entry, and taken in by every node in log order.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
pub struct Effects {
    /// The changed bars in publishing order: (ticker, resolution, time,
    /// [open, high, low, close, volume]).
    pub published: Vec<(String, String, i64, [f64; 5])>,
    /// Symbols written, and whether bars older than their newest changed.
    pub touched: Vec<(i64, bool)>,
    /// Symbols that got their first bars, with their base resolution.
    pub new_bases: Vec<(i64, String)>,
}

impl Effects {
    pub fn publish(&mut self, ticker: &str, res: Resolution, bar: &Bar) {
        self.published.push((
            ticker.to_string(),
            res.as_str().to_string(),
            bar.time,
            [bar.open, bar.high, bar.low, bar.close, bar.volume],
        ));
    }

    /// The published bars, as the sink takes them.
    pub fn bars(&self) -> impl Iterator<Item = (&str, Resolution, Bar)> {
        self.published
            .iter()
            .filter_map(|(ticker, res, time, [open, high, low, close, volume])| {
                Some((
                    ticker.as_str(),
                    Resolution::parse(res)?,
                    Bar {
                        time: *time,
                        open: *open,
                        high: *high,
                        low: *low,
                        close: *close,
                        volume: *volume,
                    },
                ))
            })
    }

    pub fn new_bases(&self) -> HashMap<i64, Resolution> {
        self.new_bases
            .iter()
            .filter_map(|(id, res)| Some((*id, Resolution::parse(res)?)))
            .collect()
    }
}

/// An entry's answer as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stored {
    Applied(usize),
    Invalid(String),
    KeyReused(String),
}

fn stored(result: &std::result::Result<IngestReceipt, IngestError>) -> Stored {
    match result {
        Ok(receipt) => Stored::Applied(receipt.applied),
        Err(IngestError::KeyReused(m)) => Stored::KeyReused(m.clone()),
        Err(IngestError::Invalid(m)) => Stored::Invalid(m.clone()),
        Err(IngestError::Unavailable(why)) => Stored::Invalid(why.detail.clone()),
        Err(e @ IngestError::Retry { .. }) => Stored::Invalid(e.to_string()),
    }
}

fn result_of(stored: Stored) -> std::result::Result<IngestReceipt, IngestError> {
    match stored {
        Stored::Applied(applied) => Ok(IngestReceipt { applied }),
        Stored::Invalid(m) => Err(IngestError::Invalid(m)),
        Stored::KeyReused(m) => Err(IngestError::KeyReused(m)),
    }
}

/// A recorded entry: its request's fingerprint, its answer, and the
/// effects of its transaction when it was the last entry in it.
pub struct Recorded {
    pub fingerprint: i64,
    pub result: std::result::Result<IngestReceipt, IngestError>,
    pub effects: Option<Effects>,
}

/// Recorded rows, read back.
pub fn read_rows(rows: Vec<OutcomeRow>) -> Result<HashMap<u64, Recorded>> {
    let mut out = HashMap::with_capacity(rows.len());
    for (seq, fingerprint, outcome, effects) in rows {
        let bad = |e: serde_json::Error| Fail::new(format!("bus outcome {seq}: {e}"));
        out.insert(
            seq,
            Recorded {
                fingerprint,
                result: result_of(serde_json::from_str(&outcome).map_err(bad)?),
                effects: effects
                    .as_deref()
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(bad)?,
            },
        );
    }
    Ok(out)
}

/// Rows to record for applied entries: (seq, fingerprint, answer), the
/// last with the transaction's `effects`.
pub fn rows_of(
    entries: &[(u64, i64, std::result::Result<IngestReceipt, IngestError>)],
    effects: &Effects,
) -> Result<Vec<OutcomeRow>> {
    let effects =
        serde_json::to_string(effects).map_err(|e| Fail::new(format!("bus effects: {e}")))?;
    let last = entries.last().map(|e| e.0);
    entries
        .iter()
        .map(|(seq, fingerprint, result)| {
            let outcome =
                serde_json::to_string(&stored(result)).map_err(|e| Fail::new(e.to_string()))?;
            Ok((
                *seq,
                *fingerprint,
                outcome,
                (Some(*seq) == last).then(|| effects.clone()),
            ))
        })
        .collect()
}

/// What a transaction's `work` changed, but its bars.
pub fn effects_of(work: &Work) -> Effects {
    Effects {
        published: Vec::new(),
        touched: work
            .touched
            .keys()
            .map(|id| (*id, work.amended.contains(id)))
            .collect(),
        new_bases: work
            .new_bases
            .iter()
            .map(|(id, res)| (*id, res.as_str().to_string()))
            .collect(),
    }
}
