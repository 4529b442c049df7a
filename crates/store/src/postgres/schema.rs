//! The database's layout, its versions, and migrating it at start-up.
//!
//! * `symbols`: one row per symbol: its `SymbolInfo` as registered (JSON)
//!   and its base resolution once it has bars.
//! * `bars`: every bar of every resolution, keyed by (symbol, resolution,
//!   time), so a chart's request is one range scan of the primary key.
//!   `bar` is the same 64-byte record the embedded store keeps
//!   (`StoredBar::encode`: the prices, the exact volume, the first and
//!   last trade times), so both engines store exactly the same values.
//! * `ingest_keys`: `Idempotency-Key`s of applied ingest requests, with
//!   what each answered, kept for a day.
//! * `bus_logs` and `bus_outcomes`: how far each bus log is applied and
//!   what its entries answered and changed (see `logged`).
//! * `meta`: `changes`, bumped by every import and symbol update, which a
//!   running server watches to notice them (see `writer`).
//! * `market`: one row: the store's identity (made with it) and the bus
//!   stream incarnation it follows, so one store never follows two
//!   markets' streams (see `bus::owner`).
//! * `broker_ledger`: the paper broker's records, in order (see
//!   `trading_broker::desk`); the broker's state is rebuilt from them.
//! * `schema_version`: how many of [`MIGRATIONS`] were applied.
//!
//! Migrating takes a transaction-scoped advisory lock first, so several
//! servers starting at once on one database migrate it exactly once: the
//! first applies what is missing, the others then find nothing to do.

use tokio_postgres::Client;

/// Every migration, in order; `schema_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    // 1: the first layout.
    "CREATE TABLE meta (
         key text PRIMARY KEY,
         value bigint NOT NULL
     );
     INSERT INTO meta (key, value) VALUES ('changes', 0);
     CREATE TABLE symbols (
         id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         ticker_key text NOT NULL UNIQUE,
         info text NOT NULL,
         base integer
     );
     CREATE TABLE bars (
         symbol bigint NOT NULL,
         resolution integer NOT NULL,
         time bigint NOT NULL,
         bar bytea NOT NULL,
         PRIMARY KEY (symbol, resolution, time)
     );
     CREATE TABLE ingest_keys (
         endpoint text NOT NULL,
         key text NOT NULL,
         fingerprint bigint NOT NULL,
         applied bigint NOT NULL,
         created_ms bigint NOT NULL,
         PRIMARY KEY (endpoint, key)
     );
     CREATE INDEX ingest_keys_created ON ingest_keys (created_ms);",
    // 2: the bus (`logged`): how far each log is applied, and what each
    // applied entry answered and changed.
    "CREATE TABLE bus_logs (
         log text PRIMARY KEY,
         seq bigint NOT NULL
     );
     CREATE TABLE bus_outcomes (
         log text NOT NULL,
         seq bigint NOT NULL,
         fingerprint bigint NOT NULL,
         outcome text NOT NULL,
         effects text,
         created_ms bigint NOT NULL,
         PRIMARY KEY (log, seq)
     );
     CREATE INDEX bus_outcomes_created ON bus_outcomes (created_ms);",
    // 3: the store's identity and the stream it follows (a store that
    // already followed one follows its newest incarnation: epochs are
    // creation times in nanoseconds, compared as numbers).
    "CREATE TABLE market (
         one boolean PRIMARY KEY DEFAULT true CHECK (one),
         id text NOT NULL,
         stream text
     );
     INSERT INTO market (id, stream)
         VALUES (gen_random_uuid()::text,
                 (SELECT log FROM bus_logs
                  ORDER BY length(split_part(log, '@', 2)) DESC, split_part(log, '@', 2) DESC
                  LIMIT 1));",
    // 4: the paper broker's ledger: what each command or print changed,
    // in order (`trading_broker::desk::Record` as JSON).
    "CREATE TABLE broker_ledger (
         pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         time_ms bigint NOT NULL,
         record text NOT NULL
     );",
];

/// Advisory lock keys (one namespace per database): migrations, and every
/// write transaction (see `WRITE_LOCK`).
const MIGRATION_LOCK: i64 = 0x7472_6164_696e_6701;
/// Held by every transaction that writes bars or symbols (an import, the
/// server's writer, a symbols update) until it ends: writers take turns,
/// as they do on the embedded store, so an ingest never folds a trade into
/// a bar an import is replacing at the same moment.
pub const WRITE_LOCK: i64 = 0x7472_6164_696e_6702;

/// Why the schema could not be brought up to date.
pub enum MigrateError {
    /// Written by a newer trading-server: its version.
    TooNew(usize),
    Failed(tokio_postgres::Error),
    /// Anything else, said in words.
    Other(String),
}

impl From<tokio_postgres::Error> for MigrateError {
    fn from(e: tokio_postgres::Error) -> Self {
        MigrateError::Failed(e)
    }
}

/// Brings the schema up to date, in one transaction under the migration
/// lock; refuses a schema newer than this binary knows.
pub async fn migrate(client: &Client) -> Result<(), MigrateError> {
    let outcome = migrate_in_transaction(client).await;
    if outcome.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    outcome
}

async fn migrate_in_transaction(client: &Client) -> Result<(), MigrateError> {
    client
        .batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL);"
        ))
        .await?;
    let found: Option<i32> = client
        .query_opt("SELECT version FROM schema_version", &[])
        .await?
        .map(|row| row.get(0));
    let version = usize::try_from(found.unwrap_or(0)).unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(MigrateError::TooNew(version));
    }
    for migration in MIGRATIONS.iter().skip(version) {
        client.batch_execute(migration).await?;
    }
    let latest = MIGRATIONS.len() as i32;
    if found.is_none() {
        client
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&latest],
            )
            .await?;
    } else if version < MIGRATIONS.len() {
        client
            .execute("UPDATE schema_version SET version = $1", &[&latest])
            .await?;
    }
    client.batch_execute("COMMIT").await?;
    Ok(())
}
