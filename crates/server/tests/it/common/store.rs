//! Stores for tests: a fresh store in a directory of its own per test, the
//! `trading-server` binary for `import` and `export`, servers on a store,
//! and the generated client carrying the ingest token.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use trading_pro_client::Client;

use super::{TestServer, FROZEN_NOW_S};

/// The ingest token every store server in the tests is started with.
pub const TOKEN: &str = "test-ingest-token";

/// A directory removed when dropped, with whatever else a test made for
/// it (a database) dropped first.
pub struct TempDir(PathBuf, Mutex<Vec<Box<dyn FnOnce() + Send>>>);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("trading-pro-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir, Mutex::default())
    }

    /// Runs `cleanup` when the directory goes.
    pub fn on_drop(&self, cleanup: impl FnOnce() + Send + 'static) {
        self.1.lock().unwrap().push(Box::new(cleanup));
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to a file in the directory.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let cleanups = std::mem::take(&mut *self.1.lock().unwrap_or_else(|e| e.into_inner()));
        for cleanup in cleanups {
            cleanup();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a run of the binary printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `trading-server ARGS` to completion.
pub fn cli(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_trading-server"))
        .args(args)
        .env_remove("TRADING_STORE")
        .output()
        .expect("run trading-server");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `trading-server ARGS` and insists that it succeeds.
pub fn cli_ok(args: &[&str]) -> Run {
    let run = cli(args);
    assert!(run.ok, "trading-server {args:?} failed: {run:?}");
    run
}

/// A kind of store the conformance suite runs against.
pub trait Engine: Sync {
    /// The `--store` value of a new, empty store living in `dir`.
    fn fresh(&self, dir: &TempDir) -> String;
}

/// The embedded store: a SQLite file.
pub struct Sqlite;

impl Engine for Sqlite {
    fn fresh(&self, dir: &TempDir) -> String {
        format!("sqlite:{}", dir.path().join("store.db").display())
    }
}

/// A PostgreSQL database of its own per store, on the server
/// `TRADING_TEST_POSTGRES` names (an administrator's URL; default
/// `postgres://postgres@127.0.0.1:5432/postgres`), dropped with the test's
/// directory. A server that cannot be reached fails the test, saying what
/// to start.
pub struct Postgres;

/// The administrator's URL the PostgreSQL tests use.
pub fn postgres_admin_url() -> String {
    std::env::var("TRADING_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `url` naming the database `db` instead of its own.
fn with_database(url: &str, db: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{db}{query}")
}

/// Runs `sql` (statements separated by `;`) on the database `url` names,
/// on a thread of its own (callers may be inside a runtime): the text of
/// every row returned.
pub fn postgres_sql(url: &str, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| {
                format!(
                    "cannot reach the PostgreSQL server for the tests at {url} ({e}). Start \
                         one (scripts/test starts a throwaway cluster from the installed \
                         binaries when none answers on 127.0.0.1:5432), or set \
                         TRADING_TEST_POSTGRES to an administrator's URL of a running one"
                )
            })?;
            tokio::spawn(connection);
            let messages = client
                .simple_query(&sql)
                .await
                .map_err(|e| format!("{sql}: {}", describe(&e)))?;
            Ok(messages
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                })
                .collect())
        })
    })
    .join()
    .map_err(|_| "the PostgreSQL thread panicked".to_string())?
}

/// `e` with its causes (the driver's own text is only the kind of error).
fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn admin(sql: &str) -> Result<(), String> {
    postgres_sql(&postgres_admin_url(), sql).map(drop)
}

impl Engine for Postgres {
    fn fresh(&self, dir: &TempDir) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let db = format!(
            "trading_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if let Err(e) = admin(&format!("CREATE DATABASE {db}")) {
            panic!("{e}");
        }
        let drop_db = db.clone();
        dir.on_drop(move || {
            // FORCE: a server a failed test left running still has it open.
            if let Err(e) = admin(&format!("DROP DATABASE IF EXISTS {drop_db} WITH (FORCE)")) {
                eprintln!("cannot drop the test database {drop_db}: {e}");
            }
        });
        with_database(&postgres_admin_url(), &db)
    }
}

/// A symbols file's JSON: 24x7 crypto symbols in UTC on exchange TEST,
/// served at every resolution from one-minute bars, one per ticker.
pub fn crypto_24x7(tickers: &[&str]) -> String {
    let infos: Vec<serde_json::Value> = tickers
        .iter()
        .map(|ticker| {
            serde_json::json!({
                "name": ticker, "ticker": ticker, "description": format!("{ticker} test"),
                "type": "crypto", "session": "24x7", "timezone": "Etc/UTC",
                "exchange": "TEST", "listed_exchange": "TEST", "format": "price",
                "pricescale": 100, "minmov": 1, "has_intraday": true, "has_daily": true,
                "has_weekly_and_monthly": true,
                "supported_resolutions": ["1", "5", "15", "30", "60", "240", "D", "W", "M"],
                "intraday_multipliers": ["1"], "volume_precision": 2,
                "data_status": "streaming", "currency_code": "USD"
            })
        })
        .collect();
    serde_json::Value::Array(infos).to_string()
}

/// Registers the symbols of `json` (a JSON array of `SymbolInfo`) in
/// `store` with `trading-server import --symbols`.
pub fn register_symbols(dir: &TempDir, store: &str, json: &str) {
    let symbols = dir.file("symbols.json", json);
    cli_ok(&[
        "import",
        "--store",
        store,
        "--symbols",
        symbols.to_str().expect("a UTF-8 path"),
    ]);
}

/// A store server's flags: `store`, the test token, the market clock
/// frozen at [`FROZEN_NOW_S`].
pub fn frozen_store_args(store: &str) -> Vec<String> {
    let now = FROZEN_NOW_S.to_string();
    [
        "--store",
        store,
        "--ingest-token",
        TOKEN,
        "--clock-start",
        &now,
        "--clock-speed",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A server on `store` with the market clock frozen at [`FROZEN_NOW_S`]
/// (ingest refuses times ahead of it) and the test token.
pub async fn store_server(store: &str, extra: &[&str]) -> TestServer {
    let mut args = frozen_store_args(store);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start(&args).await
}

/// The generated client sending `Authorization: Bearer TOKEN`.
pub fn with_token(base: &str, token: &str) -> Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("a header value"),
    );
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client");
    Client::new_with_client(base, http)
}
