//! PostgreSQL and NATS for the store and multi-node scenarios: a database
//! of the scenario's own (created, then dropped), a JetStream stream of its
//! own (deleted afterwards), and the NATS server's process for its CPU.
//!
//! `TRADING_BENCH_POSTGRES` (an administrator's URL) and
//! `TRADING_BENCH_NATS` choose the servers; by default the ones on their
//! standard local ports.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Names unique within this process.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn postgres_admin_url() -> String {
    std::env::var("TRADING_BENCH_POSTGRES")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn nats_url() -> String {
    std::env::var("TRADING_BENCH_NATS")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into())
}

async fn admin(sql: &str) -> Result<(), String> {
    let url = postgres_admin_url();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            format!(
                "PostgreSQL at {url}: {e} (start one, or set TRADING_BENCH_POSTGRES to an \
                 administrator's URL)"
            )
        })?;
    tokio::spawn(connection);
    client
        .batch_execute(sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))
}

/// A database of its own, dropped by [`Database::remove`].
pub struct Database {
    pub url: String,
    name: String,
}

impl Database {
    pub async fn create() -> Result<Database, String> {
        let name = unique("trading_bench");
        admin(&format!("CREATE DATABASE {name}")).await?;
        let admin_url = postgres_admin_url();
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        Ok(Database {
            url: format!("{base}/{name}"),
            name,
        })
    }

    pub async fn remove(self) {
        if let Err(e) = admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await
        {
            eprintln!("cannot drop the benchmark database {}: {e}", self.name);
        }
    }
}

/// A stream name of its own.
pub fn stream_name() -> String {
    unique("BENCH")
}

pub async fn delete_stream(name: &str) {
    let connect = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(nats_url());
    if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
        let js = async_nats::jetstream::new(client);
        let _ = tokio::time::timeout(Duration::from_secs(5), js.delete_stream(name)).await;
    }
}

/// The local `nats-server` process serving `nats_url()`, for its CPU
/// time: the only one running, or the one whose command line names the
/// port. None when it cannot be told (a remote server).
pub fn nats_pid() -> Option<u32> {
    let url = nats_url();
    let port = url.rsplit(':').next().unwrap_or("4222").to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != "nats-server" {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        found.push((pid, args.contains(&port)));
    }
    match found.as_slice() {
        [(pid, _)] => Some(*pid),
        _ => found.iter().find(|(_, named)| *named).map(|(pid, _)| *pid),
    }
}
