//! What the store records about the bus's log (see `crate::bus`): how far
//! each log has been applied (`bus_logs`), and what applying each entry
//! answered and changed (`bus_outcomes`), so a node that finds an entry
//! already applied by another answers and publishes exactly what the
//! first node did.
//!
//! Outcomes are kept for [`OUTCOME_RETENTION`]; a node away for longer
//! than that reloads its symbols and live bars instead of replaying.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::tables::{Conn, Fail, Result};
use trading_market::calendar::Resolution;
use trading_market::ingest::{IngestError, IngestReceipt};
use trading_market::source::Bar;

/// How long outcomes are kept, in ms.
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
        Err(IngestError::Invalid(m) | IngestError::Unavailable(m)) => Stored::Invalid(m.clone()),
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

/// How far `log` has been applied (0: not at all).
pub async fn position(c: &Conn, log: &str) -> Result<u64> {
    let row = c.client.query_opt(&c.log_position, &[&log]).await?;
    Ok(match row {
        Some(row) => u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
        None => 0,
    })
}

pub async fn set_position(c: &Conn, log: &str, seq: u64) -> Result<()> {
    c.client
        .execute(&c.set_log_position, &[&log, &(seq as i64)])
        .await?;
    Ok(())
}

/// A recorded entry: its request's fingerprint, its answer, and the
/// effects of its transaction when it was the last entry in it.
pub struct Recorded {
    pub fingerprint: i64,
    pub result: std::result::Result<IngestReceipt, IngestError>,
    pub effects: Option<Effects>,
}

/// The recorded entries `from..=to` of `log`, by sequence.
pub async fn recorded(c: &Conn, log: &str, from: u64, to: u64) -> Result<HashMap<u64, Recorded>> {
    let rows = c
        .client
        .query(&c.log_outcomes, &[&log, &(from as i64), &(to as i64)])
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get(0)?;
        let outcome: &str = row.try_get(2)?;
        let effects: Option<&str> = row.try_get(3)?;
        let bad = |e: serde_json::Error| Fail(format!("bus outcome {seq}: {e}"));
        out.insert(
            seq as u64,
            Recorded {
                fingerprint: row.try_get(1)?,
                result: result_of(serde_json::from_str(outcome).map_err(bad)?),
                effects: effects.map(serde_json::from_str).transpose().map_err(bad)?,
            },
        );
    }
    Ok(out)
}

/// Records applied entries: (seq, fingerprint, answer), the last with the
/// transaction's `effects`.
pub async fn record(
    c: &Conn,
    log: &str,
    entries: &[(u64, i64, std::result::Result<IngestReceipt, IngestError>)],
    effects: &Effects,
    now_ms: i64,
) -> Result<()> {
    let last = entries.last().map(|e| e.0);
    let seqs: Vec<i64> = entries.iter().map(|e| e.0 as i64).collect();
    let fingerprints: Vec<i64> = entries.iter().map(|e| e.1).collect();
    let outcomes: Vec<String> = entries
        .iter()
        .map(|e| serde_json::to_string(&stored(&e.2)))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Fail(e.to_string()))?;
    let effects = serde_json::to_string(effects).map_err(|e| Fail(format!("bus effects: {e}")))?;
    let effects: Vec<Option<&str>> = entries
        .iter()
        .map(|e| (Some(e.0) == last).then_some(effects.as_str()))
        .collect();
    c.client
        .execute(
            &c.record_outcomes,
            &[&log, &seqs, &fingerprints, &outcomes, &effects, &now_ms],
        )
        .await?;
    Ok(())
}

pub async fn prune(c: &Conn, before_ms: i64) -> Result<u64> {
    Ok(c.client
        .execute(
            "DELETE FROM bus_outcomes WHERE created_ms < $1",
            &[&before_ms],
        )
        .await?)
}
