//! What the database records about a shared log (see `replication`): how
//! far each log has been applied (`bus_logs`), and what applying each
//! entry answered and changed (`bus_outcomes`, as `effects` writes them).

use super::tables::{Conn, Result};
use crate::engine::OutcomeRow;

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

/// The recorded entries `from..=to` of `log`, as stored.
pub async fn recorded(c: &Conn, log: &str, from: u64, to: u64) -> Result<Vec<OutcomeRow>> {
    let rows = c
        .client
        .query(&c.log_outcomes, &[&log, &(from as i64), &(to as i64)])
        .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<_, i64>(0)? as u64,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
            ))
        })
        .collect()
}

/// Records applied entries' rows (see `effects::rows_of`).
pub async fn record(c: &Conn, log: &str, rows: &[OutcomeRow], now_ms: i64) -> Result<()> {
    let seqs: Vec<i64> = rows.iter().map(|r| r.0 as i64).collect();
    let fingerprints: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let outcomes: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    let effects: Vec<Option<&str>> = rows.iter().map(|r| r.3.as_deref()).collect();
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
