//! What only the PostgreSQL store has to show (the conformance suite
//! covers what every store does): servers starting together on one
//! database migrate it once, a newer schema is refused, an unreachable
//! database is a clear error, and a database that drops the server's
//! connections costs 503s, never a panic, until it is back.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::store::{
    cli, crypto_24x7, postgres_sql, register_symbols, store_server, with_token, Engine, Postgres,
    TempDir, TOKEN,
};
use crate::common::FROZEN_NOW_S;
use trading_pro_client::types::{Trade, TradesIngestRequest};

/// The test's one symbol: 24x7, with minute bars.
fn symbols() -> String {
    crypto_24x7(&["PG"])
}

fn one(url: &str, sql: &str) -> Option<String> {
    let rows = postgres_sql(url, sql).unwrap_or_else(|e| panic!("{e}"));
    rows.first().and_then(|r| r[0].clone())
}

#[test]
fn processes_starting_together_migrate_the_database_once() {
    let dir = TempDir::new("pg-migrate");
    let store = Postgres.fresh(&dir);
    let symbols = dir.file("symbols.json", &symbols());
    let children: Vec<_> = (0..6)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_trading-server"))
                .args(["import", "--store", &store, "--symbols"])
                .arg(&symbols)
                .env_remove("TRADING_STORE")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start trading-server import")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("import ends");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        one(&store, "SELECT count(*)::text FROM schema_version").as_deref(),
        Some("1")
    );
    assert_eq!(
        one(&store, "SELECT version::text FROM schema_version").as_deref(),
        Some("4")
    );
    assert_eq!(
        one(&store, "SELECT count(*)::text FROM symbols").as_deref(),
        Some("1")
    );
    // One identity for the store, whoever migrated it.
    assert_eq!(
        one(&store, "SELECT count(*)::text FROM market").as_deref(),
        Some("1")
    );
}

#[test]
fn a_database_of_an_earlier_version_is_migrated_at_start_up() {
    let dir = TempDir::new("pg-upgrade");
    let store = Postgres.fresh(&dir);
    register_symbols(&dir, &store, &symbols());
    // As the first release left it: version 1, without the bus's tables,
    // the store's identity or the broker's ledger.
    postgres_sql(
        &store,
        "DROP TABLE bus_logs; DROP TABLE bus_outcomes; DROP TABLE market; \
         DROP TABLE broker_ledger; UPDATE schema_version SET version = 1",
    )
    .unwrap();
    register_symbols(&dir, &store, &symbols());
    assert_eq!(
        one(&store, "SELECT version::text FROM schema_version").as_deref(),
        Some("4")
    );
    assert_eq!(
        one(&store, "SELECT count(*)::text FROM bus_logs").as_deref(),
        Some("0")
    );
    assert_eq!(
        one(&store, "SELECT count(*)::text FROM symbols").as_deref(),
        Some("1")
    );
    assert_eq!(
        one(
            &store,
            "SELECT count(*)::text FROM market WHERE stream IS NULL"
        )
        .as_deref(),
        Some("1")
    );
    // As version 2 left a node's store: it followed a stream, which it
    // follows still (the newest incarnation, created anew at 1000 after
    // 999; epochs are creation times).
    postgres_sql(
        &store,
        "DROP TABLE market; DROP TABLE broker_ledger; \
         INSERT INTO bus_logs VALUES ('TRADING_INGEST@999', 40), \
         ('TRADING_INGEST@1000', 7); UPDATE schema_version SET version = 2",
    )
    .unwrap();
    register_symbols(&dir, &store, &symbols());
    assert_eq!(
        one(&store, "SELECT stream FROM market").as_deref(),
        Some("TRADING_INGEST@1000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let dir = TempDir::new("pg-newer");
    let store = Postgres.fresh(&dir);
    register_symbols(&dir, &store, &symbols());
    let file = dir.path().join("symbols.json");
    postgres_sql(&store, "UPDATE schema_version SET version = 99").unwrap();
    let run = cli(&[
        "import",
        "--store",
        &store,
        "--symbols",
        file.to_str().unwrap(),
    ]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("has schema version 99, newer than this trading-server knows"),
        "{run:?}"
    );
    let config =
        trading_server::Config::from_args(["--bind", "127.0.0.1:0", "--store", store.as_str()])
            .unwrap();
    let refused = trading_server::start(&config, trading_server::logging::discard()).await;
    let message = refused.err().expect("the server refuses the store");
    assert!(message.contains("upgrade trading-server"), "{message}");
}

#[test]
fn an_unreachable_database_is_a_clear_error() {
    // Port 1 on loopback: nothing listens there.
    let run = cli(&[
        "export",
        "--store",
        "postgres://postgres@127.0.0.1:1/market",
        "--symbol",
        "PG",
        "--resolution",
        "1",
    ]);
    assert!(!run.ok);
    // The reason, not only the kind of error.
    assert!(
        run.stderr.contains(
            "store postgres://postgres@127.0.0.1:1/market: error connecting to server: \
             Connection refused"
        ),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_connections_are_503s_then_the_store_reconnects() {
    let dir = TempDir::new("pg-lost");
    let store = Postgres.fresh(&dir);
    register_symbols(&dir, &store, &symbols());
    let s = store_server(&store, &[]).await;
    let c = with_token(&s.base, TOKEN);
    let minute = (FROZEN_NOW_S - 3_600) / 60 * 60_000;
    let trade = |i: i64| TradesIngestRequest {
        trades: vec![Trade {
            symbol: "PG".into(),
            time: minute + i * 60_000,
            price: 100.0 + i as f64,
            size: 1.0,
        }],
    };
    c.ingest_trades().body(trade(0)).send().await.unwrap();
    let db = store.rsplit('/').next().unwrap().to_string();
    // Every connection the server holds, cut by the database.
    postgres_sql(
        &store,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        ),
    )
    .unwrap();
    let mut applied = false;
    for i in 1..=20 {
        match c.ingest_trades().body(trade(i)).send().await {
            Ok(_) => {
                applied = true;
                break;
            }
            // The store's failure, said as such: never another status.
            Err(e) => assert_eq!(e.status().map(|s| s.as_u16()), Some(503), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(applied, "ingest never recovered");
    let mut served = false;
    for _ in 0..20 {
        let page = c
            .get_bars()
            .symbol("PG")
            .resolution("1")
            .from_time(minute / 1000)
            .to_time(FROZEN_NOW_S)
            .send()
            .await;
        match page {
            Ok(page) => {
                assert!(page.bars.len() >= 2);
                served = true;
                break;
            }
            // The store's failure, said as such: never another status.
            Err(e) => assert_eq!(e.status().map(|s| s.as_u16()), Some(503), "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "reads never recovered");
    s.stop().await;
}
