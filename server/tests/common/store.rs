//! Stores for tests: a fresh store in a directory of its own per test, the
//! `trading-server` binary for `import` and `export`, servers on a store,
//! and the generated client carrying the ingest token.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use trading_pro_client::Client;

use super::{TestServer, FROZEN_NOW_S};

/// The ingest token every store server in the tests is started with.
pub const TOKEN: &str = "test-ingest-token";

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("trading-pro-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
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

/// A server on `store` with the market clock frozen at [`FROZEN_NOW_S`]
/// (ingest refuses times ahead of it) and the test token.
pub async fn store_server(store: &str, extra: &[&str]) -> TestServer {
    let now = FROZEN_NOW_S.to_string();
    let mut args = vec![
        "--store",
        store,
        "--ingest-token",
        TOKEN,
        "--clock-start",
        &now,
        "--clock-speed",
        "0",
    ];
    args.extend_from_slice(extra);
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
