//! The file's layout, its versions, and how connections to it are set up.
//!
//! * `symbols`: one row per symbol: its `SymbolInfo` as registered (JSON)
//!   and its base resolution once it has bars.
//! * `bars`: every bar of every resolution, keyed by (symbol, resolution,
//!   time), so a chart's request is one range scan of the primary key.
//!   `bar` packs the prices, the exact volume and the first and last trade
//!   times (`StoredBar::encode`); `gen` is the write that last stored the
//!   row, which tells an import that a time repeats within its own file.
//! * `ingest_keys`: `Idempotency-Key`s of applied ingest requests, with
//!   what each answered, kept for a day.
//! * `meta`: counters (`gen`).
//! * `bus_logs` and `bus_outcomes`: how far a shared log is applied and
//!   what its entries answered and changed (`logged`); `market`: the
//!   store's identity and the log it follows (see `replication`). The
//!   same replication path as PostgreSQL's, for a single node that
//!   follows a log (several nodes share a PostgreSQL store).
//! * `broker_ledger`: the paper broker's records, in order (see
//!   `trading_broker::desk`); the broker's state is rebuilt from them.
//!
//! `PRAGMA user_version` is the schema version; [`migrate`] brings an older
//! file up to date when it is opened, inside one transaction.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Every migration, in order; the file's `user_version` counts those
/// applied.
const MIGRATIONS: &[&str] = &[
    // 1: the first layout.
    "CREATE TABLE meta (
         key TEXT PRIMARY KEY,
         value INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES ('gen', 0);
     CREATE TABLE symbols (
         id INTEGER PRIMARY KEY,
         ticker_key TEXT NOT NULL UNIQUE,
         info TEXT NOT NULL,
         base INTEGER
     );
     CREATE TABLE bars (
         symbol INTEGER NOT NULL,
         resolution INTEGER NOT NULL,
         time INTEGER NOT NULL,
         gen INTEGER NOT NULL,
         bar BLOB NOT NULL,
         PRIMARY KEY (symbol, resolution, time)
     ) WITHOUT ROWID;
     CREATE TABLE ingest_keys (
         endpoint TEXT NOT NULL,
         key TEXT NOT NULL,
         fingerprint INTEGER NOT NULL,
         applied INTEGER NOT NULL,
         created_ms INTEGER NOT NULL,
         PRIMARY KEY (endpoint, key)
     ) WITHOUT ROWID;",
    // 2: replication: how far each log is applied, what each applied entry
    // answered and changed, and the store's identity and followed log.
    "CREATE TABLE bus_logs (
         log TEXT PRIMARY KEY,
         seq INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE bus_outcomes (
         log TEXT NOT NULL,
         seq INTEGER NOT NULL,
         fingerprint INTEGER NOT NULL,
         outcome TEXT NOT NULL,
         effects TEXT,
         created_ms INTEGER NOT NULL,
         PRIMARY KEY (log, seq)
     ) WITHOUT ROWID;
     CREATE INDEX bus_outcomes_created ON bus_outcomes (created_ms);
     CREATE TABLE market (
         one INTEGER PRIMARY KEY CHECK (one = 1),
         id TEXT NOT NULL,
         stream TEXT
     );
     INSERT INTO market (one, id) VALUES (1, lower(hex(randomblob(16))));",
    // 3: the paper broker's ledger: what each command or print changed,
    // in order (`trading_broker::desk::Record` as JSON).
    "CREATE TABLE broker_ledger (
         pos INTEGER PRIMARY KEY,
         time_ms INTEGER NOT NULL,
         record TEXT NOT NULL
     );",
];

/// How long a writer waits for another (an import in another process) to
/// finish its transaction before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a connection is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Request-path reads: read-only.
    Read,
    /// The import command: every commit is synced to disk before it
    /// returns.
    Write,
    /// The server's writer: the same; it checkpoints only when the log
    /// passes its bound (`Checkpoint` does otherwise, on another thread),
    /// so ingest requests seldom wait for the database file to be written.
    Writer,
    /// The server's checkpointer.
    Checkpoint,
}

/// Opens a connection. The file is created (and migrated) by the first
/// writer; readers open an existing file only.
pub fn connect(path: &Path, role: Role) -> rusqlite::Result<Connection> {
    let flags = match role {
        Role::Read => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        Role::Write | Role::Writer | Role::Checkpoint => {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        }
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if role != Role::Read {
        // Pages of 16 KiB suit long range scans; set before the first table
        // exists (a no-op afterwards). A cache of up to 256 MiB keeps a
        // bulk import's pages in memory until its commit instead of
        // spilling them mid-transaction (it only grows as it is used).
        conn.execute_batch(
            "PRAGMA page_size = 16384;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA cache_size = -262144;",
        )?;
    } else {
        conn.execute_batch("PRAGMA cache_size = -16384;")?;
    }
    if role != Role::Read {
        // Every checkpoint is ours (`file::Checkpointer`), so the record of
        // what the log builds on stays true.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    // Statements are prepared once per connection and reused.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Brings the file's schema up to date.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version = user_version(conn)?;
    if version >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have migrated meanwhile.
    let version = user_version(&tx)?;
    for migration in MIGRATIONS.iter().skip(version) {
        tx.execute_batch(migration)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {}", MIGRATIONS.len()))?;
    tx.commit()
}

/// Whether the file was written by a newer trading-server.
pub fn too_new(conn: &Connection) -> rusqlite::Result<Option<usize>> {
    let version = user_version(conn)?;
    Ok((version > MIGRATIONS.len()).then_some(version))
}

fn user_version(conn: &Connection) -> rusqlite::Result<usize> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(usize::try_from(version).unwrap_or(0))
}
