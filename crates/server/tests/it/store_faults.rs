//! What the store acknowledges it keeps, also when its file, its disk or
//! its database misbehaves, through real server processes: every test
//! checks what clients were told against what is in the store afterwards.
//!
//! SQLite: a clean stop leaves one file and a backup restores; a log a
//! crash left is never replayed onto a restored backup; a store deleted,
//! replaced or overwritten under the server refuses writes; a full and a
//! full disk (a small tmpfs, as root) is reported with its reason and
//! recovered from without a restart.
//! PostgreSQL (through a TCP proxy the test controls): a lost reply to
//! COMMIT, established connections gone silent, a statement timeout and
//! read-only set on the database and reset, a table lock held past the
//! request timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use trading_pro_client::types::{Trade, TradesIngestRequest};
use trading_pro_client::Client;

use crate::common::faults::TcpProxy;
use crate::common::process::ServerProcess;
use crate::common::store::{
    cli, cli_ok, crypto_24x7, frozen_store_args, postgres_sql, register_symbols, with_token,
    Engine, Postgres, TempDir, TOKEN,
};
use crate::common::{error_of, FROZEN_NOW_S};

const MINUTE: i64 = 60_000;

/// Request `i`: three trades in a one-minute bar of its own, so reading
/// the bars back shows exactly which requests landed.
fn request(i: i64) -> TradesIngestRequest {
    let bar = (FROZEN_NOW_S - 86_400) * 1000 + i * MINUTE;
    TradesIngestRequest {
        trades: (0..3)
            .map(|k| Trade {
                symbol: "FAULT".into(),
                time: bar + k * 1_000,
                price: 100.0 + (i % 40) as f64 / 4.0,
                size: 1.0 + k as f64,
            })
            .collect(),
    }
}

/// The requests whose bars are in the store, as the server serves them.
async fn landed(client: &Client) -> Vec<i64> {
    try_landed(client).await.expect("bars are served")
}

/// [`landed`], once reads work again (a read cut by a fault may fail
/// first), until `deadline`.
async fn landed_once_readable(client: &Client, deadline: tokio::time::Instant) -> Vec<i64> {
    loop {
        if let Ok(got) = try_landed(client).await {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reads never recover"
        );
    }
}

async fn try_landed(
    client: &Client,
) -> Result<Vec<i64>, trading_pro_client::Error<trading_pro_client::types::Error>> {
    let from = FROZEN_NOW_S - 86_400;
    let bars = client
        .get_bars()
        .symbol("FAULT")
        .resolution("1")
        .from_time(from)
        .to_time(FROZEN_NOW_S)
        .send()
        .await?
        .into_inner()
        .bars;
    Ok(bars
        .iter()
        .map(|b| {
            // Each request's bar holds all three of its trades, or it
            // was half applied.
            assert_eq!(b.volume, 6.0, "{b:?}");
            (b.time - from * 1000) / MINUTE
        })
        .collect())
}

async fn ingest(client: &Client, i: i64) -> Result<(), (u16, String)> {
    client
        .ingest_trades()
        .body(request(i))
        .send()
        .await
        .map(drop)
        .map_err(|e| error_of::<()>(Err(e)))
}

/// `/api/v1/ready` as (status, body).
async fn ready(base: &str) -> (u16, Value) {
    let r = reqwest::get(format!("{base}/api/v1/ready")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits (at most a minute: a bound against hanging, not a timing
/// assertion) until `/ready` answers `status`; its body.
async fn ready_becomes(base: &str, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (now, body) = ready(base).await;
        if now == status {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/ready stayed {now}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (at most a minute) for a log line holding `needle`: the log is
/// written a moment after what it reports.
async fn wait_for_log(server: &ServerProcess, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while server.log_lines(needle).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line with {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sqlite_store(dir: &TempDir) -> (PathBuf, String) {
    let path = dir.path().join("store.db");
    let store = path.display().to_string();
    register_symbols(dir, &store, &crypto_24x7(&["FAULT"]));
    (path, store)
}

async fn start(store: &str, extra: &[&str]) -> ServerProcess {
    let mut args = frozen_store_args(store);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(&args).await
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

// ------------------------------------------------------------- SQLite --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_one_file_and_a_backup_taken_live_restores() {
    let dir = TempDir::new("faults-backup");
    let (path, store) = sqlite_store(&dir);
    let mut server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    for i in 0..20 {
        ingest(&client, i).await.expect("ingest");
    }
    // A copy while the server writes.
    let backup = dir.path().join("backup.db");
    let backup_text = backup.display().to_string();
    cli_ok(&["backup", "--store", &store, &backup_text]);
    let again = cli(&["backup", "--store", &store, &backup_text]);
    assert!(
        !again.ok && again.stderr.contains("exists already"),
        "{again:?}"
    );
    for i in 20..30 {
        ingest(&client, i).await.expect("ingest");
    }
    assert_eq!(landed(&client).await, (0..30).collect::<Vec<_>>());

    assert_eq!(server.terminate().await, Some(0));
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("store.db"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["store.db"],
        "a clean stop leaves the store's one file"
    );

    // Restore: the copy over the store, and start.
    std::fs::copy(&backup, &path).unwrap();
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    assert_eq!(landed(&client).await, (0..20).collect::<Vec<_>>());
    ingest(&client, 40)
        .await
        .expect("the restored store takes writes");
    assert_eq!(ready(&server.base).await.0, 200);

    let postgres = cli(&["backup", "--store", "postgres://u@127.0.0.1:1/db", "x.dump"]);
    assert!(
        !postgres.ok && postgres.stderr.contains("pg_dump"),
        "{postgres:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_left_by_a_crash_is_never_replayed_onto_a_restored_backup() {
    let dir = TempDir::new("faults-foreign-log");
    let (path, store) = sqlite_store(&dir);
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    for i in 0..10 {
        ingest(&client, i).await.expect("ingest");
    }
    let backup = dir.path().join("backup.db");
    cli_ok(&["backup", "--store", &store, backup.to_str().unwrap()]);
    for i in 10..60 {
        ingest(&client, i).await.expect("ingest");
    }
    server.kill_9().await;
    let wal = sibling(&path, "-wal");
    assert!(
        std::fs::metadata(&wal).map_or(0, |m| m.len()) > 0,
        "kill -9 leaves the log"
    );

    // The backup copied over the store, the crashed server's log beside it.
    std::fs::copy(&backup, &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    for command in [
        vec!["--bind", "127.0.0.1:0", "--store", &store],
        vec![
            "export",
            "--store",
            &store,
            "--symbol",
            "FAULT",
            "--resolution",
            "1",
        ],
    ] {
        let run = cli(&command);
        assert!(!run.ok, "{command:?} must refuse: {run:?}");
        assert!(
            run.stderr.contains("write-ahead log") && run.stderr.contains("another version"),
            "{command:?}: {}",
            run.stderr
        );
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is untouched"
    );

    // Moving the log away (as the message says) serves the backup as it is.
    std::fs::rename(&wal, dir.path().join("old-wal")).unwrap();
    let _ = std::fs::remove_file(sibling(&path, "-shm"));
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    assert_eq!(landed(&client).await, (0..10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_store_with_its_own_log_opens_with_everything_acknowledged() {
    let dir = TempDir::new("faults-own-log");
    let (path, store) = sqlite_store(&dir);
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    for i in 0..30 {
        ingest(&client, i).await.expect("ingest");
    }
    server.kill_9().await;
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    assert_eq!(landed(&client).await, (0..30).collect::<Vec<_>>());
    ingest(&client, 30).await.expect("ingest");
    server.kill_9().await;

    // The file gone, its log left: never applied to a new, empty store.
    std::fs::remove_file(&path).unwrap();
    let symbols = dir.file("again.json", &crypto_24x7(&["FAULT"]));
    let run = cli(&[
        "import",
        "--store",
        &store,
        "--symbols",
        symbols.to_str().unwrap(),
    ]);
    assert!(!run.ok && run.stderr.contains("no store file"), "{run:?}");
    assert!(!path.exists(), "no new store was made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_deleted_replaced_or_overwritten_under_the_server_refuses_writes() {
    for how in ["deleted", "replaced", "overwritten"] {
        let dir = TempDir::new(&format!("faults-{how}"));
        let (path, store) = sqlite_store(&dir);
        let other = dir.path().join("other.db");
        register_symbols(&dir, other.to_str().unwrap(), &crypto_24x7(&["FAULT"]));
        let mut server = start(&store, &[]).await;
        let client = with_token(&server.base, TOKEN);
        for i in 0..5 {
            ingest(&client, i).await.expect("ingest");
        }
        match how {
            "deleted" => std::fs::remove_file(&path).unwrap(),
            "replaced" => std::fs::rename(&other, &path).unwrap(),
            _ => {
                std::fs::copy(&other, &path).unwrap();
            }
        }
        let body = ready_becomes(&server.base, 503).await;
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("store damaged"), "{how}: {body}");
        let health: Value = reqwest::get(format!("{}/api/v1/health", server.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["store"]["reason"], "damaged", "{how}: {health}");
        let (status, message) = ingest(&client, 10).await.unwrap_err();
        assert_eq!(status, 503, "{how}: {message}");
        let refused = client.ingest_trades().body(request(11)).send().await;
        match refused {
            Err(trading_pro_client::Error::ErrorResponse(r)) => {
                assert_eq!(r.error_code.as_deref(), Some("StoreDamaged"), "{how}");
                assert!(r.headers().contains_key("retry-after"), "{how}");
            }
            other => panic!("{how}: {other:?}"),
        }
        wait_for_log(&server, "the store file").await;
        assert_eq!(server.terminate().await, Some(0));
        if how == "deleted" {
            // Never an empty store in its place, unnoticed.
            let run = cli(&["--bind", "127.0.0.1:0", "--store", &store]);
            assert!(
                !run.ok && run.stderr.contains("there is no store"),
                "{run:?}"
            );
            assert!(!path.exists());
        }
    }
}

/// A tmpfs of `mib` MiB mounted on `dir`, unmounted when the test ends;
/// None (with the reason printed) where mounting is impossible (not root,
/// no permission in a container).
fn small_disk(dir: &TempDir, mib: u32) -> Option<PathBuf> {
    let mount = dir.path().join("disk");
    std::fs::create_dir_all(&mount).unwrap();
    let run = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(&mount)
        .output();
    match run {
        Ok(out) if out.status.success() => {
            let unmount = mount.clone();
            dir.on_drop(move || {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&unmount)
                    .status();
            });
            Some(mount)
        }
        Ok(out) => {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here ({}); the full-disk test needs root",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: cannot run mount ({e}); the full-disk test needs root");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_reported_and_recovered_from_without_a_restart() {
    let dir = TempDir::new("faults-disk");
    let Some(disk) = small_disk(&dir, 8) else {
        return;
    };
    let path = disk.join("store.db");
    let store = path.display().to_string();
    register_symbols(&dir, &store, &crypto_24x7(&["FAULT"]));
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    let mut acked = Vec::new();
    for i in 0..10 {
        ingest(&client, i).await.expect("ingest");
        acked.push(i);
    }

    // Fill the disk to the last byte.
    let filler = disk.join("filler");
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output();
    let mut refused = None;
    for i in 10..1_200 {
        match ingest(&client, i).await {
            Ok(()) => acked.push(i),
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (failed, (status, message)) = refused.expect("a full disk refuses a write");
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("disk is full"), "{message}");
    let body = ready_becomes(&server.base, 503).await;
    assert!(
        body["message"].as_str().unwrap().contains("disk_full"),
        "{body}"
    );
    // Reads go on.
    assert_eq!(landed(&client).await, acked);

    // Space again: the node recovers by itself.
    std::fs::remove_file(&filler).unwrap();
    ready_becomes(&server.base, 200).await;
    ingest(&client, 1_300).await.expect("writes again");
    acked.push(1_300);
    let got = landed(&client).await;
    assert_eq!(got, acked, "every acknowledged request, and not {failed}");
}

// --------------------------------------------------------- PostgreSQL --

/// A fresh PostgreSQL store with FAULT registered, and a proxy in front of
/// its server; the `--store` URL through the proxy.
async fn postgres_behind_proxy(dir: &TempDir) -> (String, String, TcpProxy) {
    let direct = Postgres.fresh(dir);
    register_symbols(dir, &direct, &crypto_24x7(&["FAULT"]));
    let rest = direct.split_once("://").unwrap().1;
    let (authority, path) = rest.split_once('/').unwrap();
    let (user, host) = authority.rsplit_once('@').unwrap();
    let upstream = tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let proxy = TcpProxy::start(upstream).await;
    let proxied = format!("postgres://{user}@{}/{path}", proxy.addr);
    (direct, proxied, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_reply_to_commit_is_resolved_before_the_client_is_answered() {
    let dir = TempDir::new("faults-commit");
    let (_, store, proxy) = postgres_behind_proxy(&dir).await;
    let server = start(&store, &[]).await;
    let client = with_token(&server.base, TOKEN);
    ingest(&client, 0).await.expect("ingest");
    assert_eq!(landed(&client).await, [0]);

    proxy.lose_next_commit_reply();
    let answer = client
        .ingest_trades()
        .idempotency_key("lost-commit-1")
        .body(request(1))
        .send()
        .await;
    assert!(proxy.commit_reply_lost(), "the fault fired");
    // The commit reached the database: the client is told so, and the
    // node serves what it committed.
    assert_eq!(answer.expect("committed, so 200").applied, 3);
    assert_eq!(landed(&client).await, [0, 1]);
    wait_for_log(&server, "reply to a commit was lost").await;
    // A retry with the key is answered as the first time, not applied
    // again (the bar's volume stays that of one request).
    let retry = client
        .ingest_trades()
        .idempotency_key("lost-commit-1")
        .body(request(1))
        .send()
        .await
        .expect("replayed");
    assert_eq!(retry.applied, 3);
    assert_eq!(landed(&client).await, [0, 1]);
    ready_becomes(&server.base, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_gone_silent_costs_one_store_timeout_then_the_node_recovers() {
    let dir = TempDir::new("faults-silent");
    let (_, store, proxy) = postgres_behind_proxy(&dir).await;
    let server = start(&store, &["--store-timeout", "1"]).await;
    let client = with_token(&server.base, TOKEN);
    let mut acked = Vec::new();
    for i in 0..5 {
        ingest(&client, i).await.expect("ingest");
        acked.push(i);
    }
    assert_eq!(landed(&client).await, acked);

    // Every connection open now goes silent; new ones would work.
    proxy.black_hole_established();
    // Each request is answered: applied once the node has given up the
    // silent connection (after one store timeout), or a 503 saying to
    // retry; never left waiting.
    for i in 5..8 {
        match ingest(&client, i).await {
            Ok(()) => acked.push(i),
            Err((status, message)) => assert_eq!(status, 503, "{message}"),
        }
    }
    wait_for_log(&server, "no answer from the database").await;
    // The node reconnects by itself: writes and reads work again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut i = 100;
    loop {
        if ingest(&client, i).await.is_ok() {
            acked.push(i);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        i += 1;
    }
    ready_becomes(&server.base, 200).await;
    let got = landed_once_readable(&client, deadline).await;
    // Every acknowledged request, each whole; those refused either landed
    // whole or not at all (`landed` checks every bar is whole).
    for i in &acked {
        assert!(got.contains(i), "acknowledged request {i} is lost: {got:?}");
    }
}

/// `ALTER DATABASE db SET setting`, then every connection to it ended, so
/// the node's next ones start with the setting.
fn set_on_database(admin: &str, db: &str, setting: &str) {
    postgres_sql(admin, &format!("ALTER DATABASE {db} SET {setting}")).unwrap();
    postgres_sql(
        admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_settings_set_and_reset_under_the_node_are_survived_or_reported() {
    let dir = TempDir::new("faults-statement-timeout");
    let (direct, store, _proxy) = postgres_behind_proxy(&dir).await;
    let db = direct.rsplit('/').next().unwrap().to_string();
    let admin = crate::common::store::postgres_admin_url();
    let server = start(&store, &["--store-timeout", "5"]).await;
    let client = with_token(&server.base, TOKEN);
    ingest(&client, 0).await.expect("ingest");
    // Connections made now get the database's setting unless the node
    // sets its own.
    set_on_database(&admin, &db, "statement_timeout = 1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut i = 1;
    while ingest(&client, i).await.is_err() {
        // A connection cut by the termination costs at most a request.
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        i += 1;
    }
    let got = landed_once_readable(&client, deadline).await;
    assert!(got.contains(&0) && got.contains(&i), "{got:?}");
    postgres_sql(
        &admin,
        &format!("ALTER DATABASE {db} RESET statement_timeout"),
    )
    .unwrap();
    ingest(&client, 500).await.expect("ingest after the reset");
    ready_becomes(&server.base, 200).await;

    // A database that turns read-only: refused with that reason, and the
    // node renews its connections and recovers when it is writable again.
    set_on_database(&admin, &db, "default_transaction_read_only = on");
    let mut i = 600;
    let message = loop {
        match ingest(&client, i).await {
            Err((503, message)) if message.contains("read-only") => break message,
            // The connection the termination cut costs a request.
            Err((503, _)) => {}
            other => panic!("a read-only database refuses writes: {other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        i += 1;
    };
    assert!(message.contains("read_only"), "{message}");
    let body = ready_becomes(&server.base, 503).await;
    assert!(
        body["message"].as_str().unwrap().contains("read_only"),
        "{body}"
    );
    postgres_sql(
        &admin,
        &format!("ALTER DATABASE {db} RESET default_transaction_read_only"),
    )
    .unwrap();
    ready_becomes(&server.base, 200).await;
    ingest(&client, 700).await.expect("writes again");
    let got = landed(&client).await;
    assert!(got.contains(&700) && !got.contains(&i), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lock_past_the_request_timeout_gets_an_answer_and_nothing_applied_later() {
    let dir = TempDir::new("faults-lock");
    let (direct, store, _proxy) = postgres_behind_proxy(&dir).await;
    let server = start(&store, &["--request-timeout", "2"]).await;
    let client = with_token(&server.base, TOKEN);
    ingest(&client, 0).await.expect("ingest");

    // Another session holds the bars table for longer than the request
    // timeout, on a thread of its own.
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (db, connection) = tokio_postgres::connect(&direct, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            db.batch_execute("BEGIN; LOCK TABLE bars IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            locked_tx.send(()).unwrap();
            tokio::task::spawn_blocking(move || release_rx.recv())
                .await
                .unwrap()
                .unwrap();
            db.batch_execute("COMMIT").await.unwrap();
        });
    });
    locked_rx.recv().unwrap();
    let answer = client
        .ingest_trades()
        .idempotency_key("locked-1")
        .body(request(1))
        .send()
        .await;
    match answer {
        Err(trading_pro_client::Error::ErrorResponse(r)) => {
            assert_eq!(r.status().as_u16(), 503);
            assert_eq!(r.error_code.as_deref(), Some("Timeout"), "{:?}", r.message);
            assert!(r.headers().contains_key("retry-after"));
            assert!(r.message.contains("Idempotency-Key"), "{}", r.message);
        }
        other => panic!("a 503 Timeout, not {other:?}"),
    }
    wait_for_log(&server, "request timed out").await;
    // While the writer waits on the lock, readiness says so.
    let body = ready_becomes(&server.base, 503).await;
    assert!(
        body["message"].as_str().unwrap().contains("timeout"),
        "{body}"
    );
    release_tx.send(()).unwrap();
    locker.join().unwrap();
    // The cut request was not applied when the lock went, nor later.
    ingest(&client, 2).await.expect("ingest after the lock");
    assert_eq!(landed(&client).await, [0, 2]);
    // Its retry with the key applies it, once.
    let retry = client
        .ingest_trades()
        .idempotency_key("locked-1")
        .body(request(1))
        .send()
        .await
        .expect("the retry is applied");
    assert_eq!(retry.applied, 3);
    assert_eq!(landed(&client).await, [0, 1, 2]);
    ready_becomes(&server.base, 200).await;
}
