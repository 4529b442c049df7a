//! What the file records about a shared log (see `replication`): how far
//! each log has been applied (`bus_logs`), and what applying each entry
//! answered and changed (`bus_outcomes`, as `effects` writes them).

use rusqlite::{params, Connection, OptionalExtension};

use crate::engine::OutcomeRow;

/// How far `log` has been applied (0: not at all).
pub fn position(conn: &Connection, log: &str) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .prepare_cached("SELECT seq FROM bus_logs WHERE log = ?1")?
        .query_row(params![log], |r| r.get(0))
        .optional()?;
    Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
}

pub fn set_position(conn: &Connection, log: &str, seq: u64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO bus_logs (log, seq) VALUES (?1, ?2)
         ON CONFLICT (log) DO UPDATE SET seq = excluded.seq",
    )?
    .execute(params![log, seq as i64])?;
    Ok(())
}

/// The recorded entries `from..=to` of `log`, as stored.
pub fn recorded(
    conn: &Connection,
    log: &str,
    from: u64,
    to: u64,
) -> rusqlite::Result<Vec<OutcomeRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, fingerprint, outcome, effects FROM bus_outcomes
         WHERE log = ?1 AND seq >= ?2 AND seq <= ?3",
    )?;
    let rows = stmt.query_map(params![log, from as i64, to as i64], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?, r.get(3)?))
    })?;
    rows.collect()
}

/// Records applied entries' rows (see `effects::rows_of`).
pub fn record(
    conn: &Connection,
    log: &str,
    rows: &[OutcomeRow],
    now_ms: i64,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO bus_outcomes (log, seq, fingerprint, outcome, effects, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (seq, fingerprint, outcome, effects) in rows {
        stmt.execute(params![
            log,
            *seq as i64,
            fingerprint,
            outcome,
            effects,
            now_ms
        ])?;
    }
    Ok(())
}

pub fn prune(conn: &Connection, before_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM bus_outcomes WHERE created_ms < ?1")?
        .execute(params![before_ms])
}

/// The store's identity.
pub fn market(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row("SELECT id FROM market", [], |r| r.get(0))
}

/// The log incarnation the store follows, if any.
pub fn followed(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT stream FROM market", [], |r| r.get(0))
}

pub fn follow(conn: &Connection, log: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE market SET stream = ?1", params![log])?;
    Ok(())
}
