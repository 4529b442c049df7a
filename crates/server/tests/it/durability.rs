//! What ingest acknowledges survives `kill -9`, and nothing is ever half
//! applied: a real server process takes concurrent ingest requests, is
//! killed with SIGKILL while some are in flight, and is started again on
//! the same store; on each engine (SQLite, PostgreSQL).

use std::sync::{Arc, Mutex};

use crate::common::process::ServerProcess;
use crate::common::store::{
    crypto_24x7, frozen_store_args, register_symbols, with_token, Engine, Postgres, Sqlite,
    TempDir, TOKEN,
};
use crate::common::FROZEN_NOW_S;
use trading_pro_client::types::{Bar, Trade, TradesIngestRequest};

const MINUTE: i64 = 60_000;
/// Requests each writer sends at most; the kill comes long before.
const REQUESTS: i64 = 400;
const WRITERS: i64 = 4;
const TRADES: i64 = 20;

/// Request `i` puts its trades in a one-minute bar of its own, so what
/// each request did can be checked on its own after the crash.
fn request(i: i64, start: i64) -> (TradesIngestRequest, Bar) {
    let bar_time = start + i * MINUTE;
    let trades: Vec<Trade> = (0..TRADES)
        .map(|k| Trade {
            symbol: "CRASH".into(),
            time: bar_time + k * 1_000,
            price: 100.0 + ((i * 7 + k * 13) % 50) as f64 / 4.0,
            size: 0.25 + (k % 3) as f64,
        })
        .collect();
    let expected = Bar {
        time: bar_time,
        open: trades[0].price,
        high: trades.iter().map(|t| t.price).fold(f64::MIN, f64::max),
        low: trades.iter().map(|t| t.price).fold(f64::MAX, f64::min),
        close: trades[trades.len() - 1].price,
        volume: trades.iter().map(|t| t.size).sum(),
    };
    (TradesIngestRequest { trades }, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_trades_survive_kill_9_and_nothing_is_half_applied() {
    acknowledged_trades_survive_kill_9_and_nothing_is_half_applied(&Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_trades_survive_kill_9_and_nothing_is_half_applied() {
    acknowledged_trades_survive_kill_9_and_nothing_is_half_applied(&Postgres).await
}

async fn acknowledged_trades_survive_kill_9_and_nothing_is_half_applied(engine: &dyn Engine) {
    let dir = TempDir::new("durability");
    let store = engine.fresh(&dir);
    register_symbols(&dir, &store, &crypto_24x7(&["CRASH"]));
    let args = frozen_store_args(&store);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = (FROZEN_NOW_S - 3 * 86_400) * 1000;

    let server = ServerProcess::start(&args).await;
    let client = with_token(&server.base, TOKEN);
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, acked) = (client.clone(), Arc::clone(&acked));
            tokio::spawn(async move {
                for n in 0..REQUESTS {
                    let i = n * WRITERS + w;
                    let (body, _) = request(i, start);
                    match client.ingest_trades().body(body).send().await {
                        Ok(answer) => {
                            assert_eq!(answer.applied, TRADES);
                            acked.lock().unwrap().push(i);
                        }
                        // The server is gone: this request was never acknowledged.
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Kill while the writers are busy.
    loop {
        if acked.lock().unwrap().len() >= 150 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.kill_9().await;
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 150);
    eprintln!("acknowledged {} requests before the kill", acked.len());

    let server = ServerProcess::start(&args).await;
    let client = with_token(&server.base, TOKEN);
    let history = client
        .get_bars()
        .symbol("CRASH")
        .resolution("1")
        .from_time(start / 1000)
        .to_time(FROZEN_NOW_S)
        .send()
        .await
        .unwrap()
        .into_inner()
        .bars;
    for i in &acked {
        let (_, expected) = request(*i, start);
        let found = history.iter().find(|b| b.time == expected.time);
        assert_eq!(
            found,
            Some(&expected),
            "acknowledged request {i} after kill -9"
        );
    }
    // Requests cut off by the kill left nothing or everything.
    for bar in &history {
        let i = (bar.time - start) / MINUTE;
        assert_eq!(*bar, request(i, start).1, "request {i} is whole or absent");
    }
    // The coarser bars were rebuilt in the same transactions.
    let daily = client
        .get_bars()
        .symbol("CRASH")
        .resolution("D")
        .from_time(start / 1000 - 86_400)
        .to_time(FROZEN_NOW_S)
        .send()
        .await
        .unwrap()
        .into_inner()
        .bars;
    assert_eq!(daily.len(), 1);
    let volume: f64 = history.iter().map(|b| b.volume).sum();
    assert!(
        (daily[0].volume - volume).abs() < 1e-6,
        "{} vs {volume}",
        daily[0].volume
    );
    assert_eq!(daily[0].close, history.last().unwrap().close);

    // The restarted server keeps taking trades where the store left off.
    let next = history.last().unwrap().time / MINUTE + 1;
    let (body, expected) = request(next - start / MINUTE, start);
    client.ingest_trades().body(body).send().await.unwrap();
    let last = client
        .get_bars()
        .symbol("CRASH")
        .resolution("1")
        .from_time(start / 1000)
        .to_time(FROZEN_NOW_S)
        .count_back(1)
        .send()
        .await
        .unwrap()
        .into_inner()
        .bars;
    assert_eq!(last, [expected]);
    server.kill_9().await;
}
