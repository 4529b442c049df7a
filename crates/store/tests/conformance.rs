//! The stores' conformance suite at the trait level: what every engine
//! must do, through the interfaces the server uses (`Store` for import,
//! `DataSource` and `Ingest` for serving, `Applier` for a shared log), in
//! this process, against a real SQLite file and a real PostgreSQL
//! database. Each case is a function of the engine; `suite!` instantiates
//! all of them for one. The black-box suite (the server's
//! `tests/it/store_conformance.rs`) checks the same stores through the
//! binary, the HTTP API and WebSocket frames.
//!
//! Expected bars are computed here from the bars the test wrote, never
//! read back from the store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use trading_broker::broker::Change;
use trading_broker::desk::{Action, Answer, Command as BrokerCommand, DeskError};
use trading_broker::order::{OrderRequest, OrderType, Side, Status};
use trading_broker::rules::SymbolRules;
use trading_broker::units::{Cash, Price, Qty};
use trading_market::calendar::Resolution;
use trading_market::ingest::{IngestError, IngestRequest, TradeIn};
use trading_market::source::{Bar, BarQuery, DataSource, UpdateSink};
use trading_market::volume::Volume;
use trading_pro::types::{DataStatus, PriceFormat, SymbolInfo};
use trading_store::replication::{Applier, Command, Logged, Submitted};
use trading_store::trading::{BrokerConfig, TradeError, Trading};
use trading_store::{Registered, ServeOptions, StoreError, StoredBar};

/// How the served stores here are opened.
const SERVE: ServeOptions = ServeOptions {
    create: true,
    timeout: std::time::Duration::from_secs(30),
    broker: BrokerConfig {
        // 100,000 and 0.5 per fill.
        starting_cash: Cash(100_000 * 10i128.pow(16)),
        commission: Cash(5 * 10i128.pow(15)),
    },
};

const MINUTE: i64 = 60_000;
/// Thursday 2025-11-20 00:00 UTC.
const DAY: i64 = 1_763_596_800_000;

/// A kind of store, and a new empty one of it per case.
trait Engine: Sync {
    /// `--store` of a new, empty store, removed when `Fresh` goes.
    fn fresh(&self, label: &str) -> Fresh;
}

/// A store made for one case; dropping it removes it.
struct Fresh {
    url: String,
    cleanup: Option<Box<dyn FnOnce()>>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if let Some(cleanup) = self.cleanup.take() {
            cleanup();
        }
    }
}

fn unique(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{label}_{}_{n}", std::process::id())
}

/// A SQLite file in a directory of its own.
struct Sqlite;

impl Engine for Sqlite {
    fn fresh(&self, label: &str) -> Fresh {
        let dir: PathBuf = std::env::temp_dir().join(format!("trading-store-{}", unique(label)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Fresh {
            url: format!("sqlite:{}", dir.join("store.db").display()),
            cleanup: Some(Box::new(move || {
                let _ = std::fs::remove_dir_all(&dir);
            })),
        }
    }
}

/// A database of its own on the PostgreSQL server `TRADING_TEST_POSTGRES`
/// names (an administrator's URL; default the local server, user
/// postgres), dropped afterwards. A server that cannot be reached fails
/// the case, saying what to start.
struct Postgres;

fn admin_url() -> String {
    std::env::var("TRADING_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `sql` on the administrator's database, on a thread of its own
/// (the cases run inside a runtime).
fn admin(sql: String) -> Result<(), String> {
    let url = admin_url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client.batch_execute(&sql).await.map_err(|e| e.to_string())
        })
    })
    .join()
    .expect("the administrator's thread")
}

impl Engine for Postgres {
    fn fresh(&self, label: &str) -> Fresh {
        let db = format!("trading_store_{}", unique(label)).to_ascii_lowercase();
        if let Err(e) = admin(format!("CREATE DATABASE {db}")) {
            panic!(
                "cannot create a test database on the PostgreSQL server at {} ({e}); start one \
                 (scripts/test does) or set TRADING_TEST_POSTGRES to an administrator's URL",
                admin_url()
            );
        }
        let admin = admin_url();
        let base = admin.rsplit_once('/').expect("a URL with a database").0;
        Fresh {
            url: format!("{base}/{db}"),
            cleanup: Some(Box::new(move || {
                let _ = self::admin(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
            })),
        }
    }
}

/// What a served store published, in order.
#[derive(Default)]
struct Published(Mutex<Vec<(String, Resolution, Bar)>>);

impl UpdateSink for Published {
    fn publish(&self, symbol: &str, res: Resolution, bar: Bar) {
        self.0.lock().unwrap().push((symbol.into(), res, bar));
    }

    fn followed(&self) -> Vec<(String, Resolution)> {
        Vec::new()
    }
}

impl Published {
    /// Everything published at `res` so far, and forgets it.
    fn take(&self, res: Resolution) -> Vec<Bar> {
        let mut all = self.0.lock().unwrap();
        let (at, rest) = all.drain(..).partition(|(_, r, _)| *r == res);
        *all = rest;
        at.into_iter().map(|(_, _, bar)| bar).collect()
    }
}

fn info(ticker: &str) -> SymbolInfo {
    SymbolInfo {
        name: ticker.into(),
        ticker: ticker.into(),
        description: format!("{ticker} for the conformance suite"),
        type_: "crypto".into(),
        session: "24x7".into(),
        timezone: "Etc/UTC".into(),
        exchange: "TEST".into(),
        listed_exchange: "TEST".into(),
        format: PriceFormat::Price,
        pricescale: 100,
        minmov: 1,
        has_intraday: false,
        has_daily: false,
        has_weekly_and_monthly: false,
        supported_resolutions: Vec::new(),
        intraday_multipliers: Vec::new(),
        volume_precision: 0,
        data_status: DataStatus::Streaming,
        currency_code: "USD".into(),
    }
}

/// `count` minute bars from `start`, prices on the cent, whole volumes.
fn minutes(start: i64, count: i64) -> Vec<Bar> {
    (0..count)
        .map(|i| {
            let cents = 10_000 + (i * 37 % 101) - 50;
            let open = cents as f64 / 100.0;
            let close = (cents + (i % 7) - 3) as f64 / 100.0;
            Bar {
                time: start + i * MINUTE,
                open,
                high: open.max(close) + 0.25,
                low: open.min(close) - 0.25,
                close,
                volume: (1 + i % 9) as f64,
            }
        })
        .collect()
}

/// `bars` bucketed by `bucket` (ms), as any store must aggregate them.
fn aggregate(bars: &[Bar], bucket: i64) -> Vec<Bar> {
    let mut out: Vec<Bar> = Vec::new();
    for b in bars {
        let time = b.time - b.time.rem_euclid(bucket);
        match out.last_mut() {
            Some(a) if a.time == time => {
                a.high = a.high.max(b.high);
                a.low = a.low.min(b.low);
                a.close = b.close;
                a.volume += b.volume;
            }
            _ => out.push(Bar { time, ..*b }),
        }
    }
    out
}

fn stored(bar: &Bar, res: Resolution) -> StoredBar {
    let span = res
        .intraday_minutes()
        .map_or(86_400_000, |m| i64::from(m) * MINUTE);
    StoredBar {
        time: bar.time,
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: Volume::from_f64(bar.volume).unwrap(),
        first_ms: bar.time,
        last_ms: bar.time + span - 1,
    }
}

fn scan(store: &dyn trading_store::Store, ticker: &str, res: Resolution) -> Vec<Bar> {
    let records = store.records().expect("records");
    let record = records.lookup(ticker).expect("the symbol is registered");
    let mut out = Vec::new();
    store
        .scan(record, res, i64::MIN, i64::MAX, &mut |b| {
            out.push(b.to_bar());
            Ok(())
        })
        .expect("scan");
    out
}

/// Imports `bars` of `ticker` at one minute.
fn import(store: &dyn trading_store::Store, ticker: &str, bars: &[Bar]) {
    let mut sink = store
        .begin_import(&info(ticker), Resolution::Min1)
        .expect("an import starts");
    for bar in bars {
        assert!(sink.put(&stored(bar, Resolution::Min1)).unwrap());
    }
    sink.commit(info(ticker)).expect("the import commits");
}

fn trade(ticker: &str, time: i64, price: f64, size: f64) -> TradeIn {
    TradeIn {
        symbol: ticker.into(),
        time,
        price,
        size,
    }
}

/// Runs `f` on the store `url` names, opened for import and closed
/// afterwards. The import side is synchronous (the `import` command runs
/// it outside any runtime), so it runs where blocking is allowed.
fn with_store<T>(url: &str, create: bool, f: impl FnOnce(&dyn trading_store::Store) -> T) -> T {
    tokio::task::block_in_place(|| {
        let store = trading_store::open(url, create).expect("the store opens");
        f(&*store)
    })
}

async fn current(source: &dyn DataSource, ticker: &str, res: Resolution) -> Option<Bar> {
    let catalog = source.catalog();
    let symbol = catalog.lookup(ticker).expect("served");
    source.current_bar(symbol, res, 0).await.unwrap()
}

/// An import is invisible until it commits, then serves exactly the bars
/// it put at its resolution and their aggregates at every coarser one.
async fn imports_commit_whole_and_aggregate_exactly(engine: &dyn Engine) {
    let fresh = engine.fresh("import");
    let bars = minutes(DAY, 600);
    with_store(&fresh.url, true, |store| {
        let mut abandoned = store
            .begin_import(&info("ALPHA"), Resolution::Min1)
            .unwrap();
        assert!(abandoned.put(&stored(&bars[0], Resolution::Min1)).unwrap());
        assert!(
            !abandoned.put(&stored(&bars[0], Resolution::Min1)).unwrap(),
            "a second bar at the same time is not stored"
        );
        drop(abandoned);
        assert!(store.records().unwrap().lookup("ALPHA").is_none());

        import(store, "ALPHA", &bars);
        let records = store.records().unwrap();
        let record = records
            .lookup("test:alpha")
            .expect("looked up by exchange:ticker");
        assert_eq!(record.base, Some(Resolution::Min1));
        assert!(record.info.has_intraday && record.info.has_daily);
        assert_eq!(scan(store, "ALPHA", Resolution::Min1), bars);
        for res in [Resolution::Min5, Resolution::Min60, Resolution::Day] {
            let bucket = res
                .intraday_minutes()
                .map_or(86_400_000, |m| i64::from(m) * MINUTE);
            assert_eq!(
                scan(store, "ALPHA", res),
                aggregate(&bars, bucket),
                "{res:?}"
            );
        }
    });
    // What was committed is there for the next process too.
    with_store(&fresh.url, false, |store| {
        assert_eq!(
            scan(store, "ALPHA", Resolution::Min5),
            aggregate(&bars, 5 * MINUTE)
        );
    });
}

/// Symbols are registered and updated all or none, and a symbol with bars
/// keeps the session its bars were bucketed by.
async fn symbol_upserts_are_all_or_none(engine: &dyn Engine) {
    let fresh = engine.fresh("upsert");
    with_store(&fresh.url, true, |store| {
        import(store, "ALPHA", &minutes(DAY, 10));

        let mut bad = info("GAMMA");
        bad.pricescale = 0;
        let refused = store.upsert_symbols(vec![info("BETA"), bad]);
        assert!(
            matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("GAMMA")),
            "{refused:?}"
        );
        assert!(store.records().unwrap().lookup("BETA").is_none());

        let added = store.upsert_symbols(vec![info("BETA")]).unwrap();
        assert_eq!(added, [("BETA".to_string(), Registered::Added)]);
        assert_eq!(
            store.upsert_symbols(vec![info("BETA")]).unwrap()[0].1,
            Registered::Unchanged
        );
        let mut described = info("BETA");
        described.description = "another description".into();
        assert_eq!(
            store.upsert_symbols(vec![described]).unwrap()[0].1,
            Registered::Updated
        );
        assert_eq!(
            store
                .records()
                .unwrap()
                .lookup("BETA")
                .unwrap()
                .info
                .description,
            "another description"
        );

        let mut moved = info("ALPHA");
        moved.session = "0930-1600".into();
        moved.timezone = "America/New_York".into();
        let refused = store.upsert_symbols(vec![info("DELTA"), moved]);
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
        let records = store.records().unwrap();
        assert!(records.lookup("DELTA").is_none());
        assert_eq!(records.lookup("ALPHA").unwrap().info.session, "24x7");
    });
}

/// A served store answers getBars, the current bar and the quote from what
/// was imported.
async fn served_reads_follow_the_imported_bars(engine: &dyn Engine) {
    let fresh = engine.fresh("served");
    let bars = minutes(DAY, 600);
    with_store(&fresh.url, true, |store| import(store, "ALPHA", &bars));
    let (source, _) =
        trading_store::open_source(&fresh.url, Arc::new(Published::default()), &SERVE).unwrap();
    let catalog = source.catalog();
    let symbol = catalog.lookup("ALPHA").unwrap();
    let fives = aggregate(&bars, 5 * MINUTE);

    let query = |from: i64, to: i64, count_back: Option<usize>| BarQuery {
        from_s: from / 1000,
        to_s: to / 1000,
        count_back,
        limit: 5_000,
    };
    let all = source
        .bars(
            symbol,
            Resolution::Min5,
            &query(DAY, DAY + 600 * MINUTE, None),
            0,
        )
        .await
        .unwrap();
    assert_eq!(all.bars, fives);
    let last_ten = source
        .bars(
            symbol,
            Resolution::Min5,
            &query(0, DAY + 300 * MINUTE, Some(10)),
            0,
        )
        .await
        .unwrap();
    assert_eq!(last_ten.bars, fives[50..60]);
    assert_eq!(last_ten.next_time, Some(fives[49].time));
    let before = source
        .bars(
            symbol,
            Resolution::Min5,
            &query(DAY - 3_600_000, DAY, None),
            0,
        )
        .await
        .unwrap();
    assert!(before.bars.is_empty() && before.no_data && before.next_time.is_none());

    assert_eq!(
        current(&*source, "ALPHA", Resolution::Min1).await,
        bars.last().copied()
    );
    let day = aggregate(&bars, 86_400_000)[0];
    let quote = source.quote(symbol, 0).await.unwrap().expect("a quote");
    assert_eq!(
        (quote.last, quote.open, quote.high, quote.low, quote.volume),
        (bars[599].close, day.open, day.high, day.low, day.volume)
    );
    assert_eq!(quote.prev_close, day.open, "no day before: the day's open");
}

/// Live trades apply as whole requests: all of them or, when one breaks a
/// rule, none; published as they land; a retry with the same key applies
/// nothing again and a different request under that key is refused.
async fn ingest_applies_whole_requests_exactly_once(engine: &dyn Engine) {
    let fresh = engine.fresh("ingest");
    let bars = minutes(DAY, 60);
    with_store(&fresh.url, true, |store| import(store, "ALPHA", &bars));
    let published = Arc::new(Published::default());
    let (source, _) = trading_store::open_source(&fresh.url, published.clone(), &SERVE).unwrap();
    let ingest = source.ingest().expect("a store takes ingest");
    let minute = DAY + 60 * MINUTE;
    let now = minute + MINUTE;

    let trades = vec![
        trade("ALPHA", minute + 1_000, 100.10, 2.0),
        trade("ALPHA", minute + 2_000, 100.40, 3.0),
    ];
    let receipt = ingest
        .apply(
            IngestRequest::Trades(trades.clone()),
            Some("k1".into()),
            now,
            None,
        )
        .await
        .unwrap();
    assert_eq!(receipt.applied, 2);
    let want = Bar {
        time: minute,
        open: 100.10,
        high: 100.40,
        low: 100.10,
        close: 100.40,
        volume: 5.0,
    };
    assert_eq!(published.take(Resolution::Min1).last(), Some(&want));
    assert_eq!(
        current(&*source, "ALPHA", Resolution::Min1).await,
        Some(want)
    );

    // The same request under the same key: the first receipt, nothing again.
    let again = ingest
        .apply(IngestRequest::Trades(trades), Some("k1".into()), now, None)
        .await
        .unwrap();
    assert_eq!(again, receipt);
    let other = ingest
        .apply(
            IngestRequest::Trades(vec![trade("ALPHA", minute + 3_000, 100.2, 1.0)]),
            Some("k1".into()),
            now,
            None,
        )
        .await;
    assert!(matches!(other, Err(IngestError::KeyReused(_))), "{other:?}");

    // One trade off the tick: the whole request is refused.
    let refused = ingest
        .apply(
            IngestRequest::Trades(vec![
                trade("ALPHA", minute + 4_000, 100.20, 1.0),
                trade("ALPHA", minute + 5_000, 100.205, 1.0),
            ]),
            None,
            now,
            None,
        )
        .await;
    match refused {
        Err(IngestError::Invalid(m)) => assert!(m.contains("100.205"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        current(&*source, "ALPHA", Resolution::Min1).await,
        Some(want)
    );
    let day = aggregate(&bars, 86_400_000)[0];
    assert_eq!(
        current(&*source, "ALPHA", Resolution::Day)
            .await
            .map(|d| d.volume),
        Some(day.volume + 5.0)
    );

    // Acknowledged is kept: a new process sees the trades.
    tokio::task::block_in_place(|| drop(source));
    with_store(&fresh.url, false, |store| {
        assert_eq!(scan(store, "ALPHA", Resolution::Min1).last(), Some(&want));
    });
}

fn entry(seq: u64, trades: Vec<TradeIn>, accepted_ms: i64) -> Logged {
    Logged {
        seq,
        prev: seq - 1,
        command: Ok(Command::Ingest(Submitted {
            request: IngestRequest::Trades(trades),
            key: None,
            accepted_ms,
        })),
    }
}

/// A shared log's entries are applied once across two nodes on one store:
/// the second replays what the first recorded, publishes the same bars,
/// and applies nothing twice; entries out of order are refused.
async fn a_shared_log_applies_once_across_nodes(engine: &dyn Engine) {
    let fresh = engine.fresh("log");
    with_store(&fresh.url, true, |store| {
        import(store, "ALPHA", &minutes(DAY, 60))
    });
    let (seen_a, seen_b) = (
        Arc::new(Published::default()),
        Arc::new(Published::default()),
    );
    let a = open_node(&fresh.url, seen_a.clone());
    let b = open_node(&fresh.url, seen_b.clone());
    assert_eq!(a.market(), b.market(), "one store, one identity");
    let log = "conformance@1";
    assert_eq!(a.followed().await.unwrap(), None);
    a.follow(log).await.unwrap();
    assert_eq!(b.followed().await.unwrap().as_deref(), Some(log));

    let minute = DAY + 60 * MINUTE;
    let entries = || {
        vec![
            entry(
                1,
                vec![trade("ALPHA", minute + 1_000, 101.0, 2.0)],
                minute + 1_500,
            ),
            Logged {
                seq: 2,
                prev: 1,
                command: Err("not an entry this node can read".into()),
            },
            entry(
                3,
                vec![trade("ALPHA", minute + 2_000, 102.0, 4.0)],
                minute + 2_500,
            ),
        ]
    };
    let first = a.apply_logged(log, entries()).await.unwrap();
    assert_eq!(first.iter().map(|o| o.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(first[0].result.as_ref().map(|r| r.applied), Ok(1));
    assert!(
        matches!(&first[1].result, Err(IngestError::Invalid(m)) if m.contains("log entry 2")),
        "{first:?}"
    );
    assert_eq!(a.position(log).await.unwrap(), 3);

    let replayed = b.apply_logged(log, entries()).await.unwrap();
    assert_eq!(replayed, first);
    let want = Bar {
        time: minute,
        open: 101.0,
        high: 102.0,
        low: 101.0,
        close: 102.0,
        volume: 6.0,
    };
    assert_eq!(seen_a.take(Resolution::Min1).last(), Some(&want));
    assert_eq!(seen_b.take(Resolution::Min1).last(), Some(&want));
    assert_eq!(current(&*b, "ALPHA", Resolution::Min1).await, Some(want));

    let gap = b
        .apply_logged(
            log,
            vec![entry(
                5,
                vec![trade("ALPHA", minute + 3_000, 103.0, 1.0)],
                minute + 3_500,
            )],
        )
        .await;
    assert!(gap.is_err(), "an entry after a gap is refused: {gap:?}");
    assert_eq!(b.position(log).await.unwrap(), 3);
    assert_eq!(current(&*a, "ALPHA", Resolution::Min1).await, Some(want));
}

fn px(text: &str) -> Price {
    Price::parse(text).unwrap()
}

fn q(text: &str) -> Qty {
    Qty::parse(text).unwrap()
}

/// A command of `account` on ALPHA at `now`, with no market of its own (a
/// store's market is what was ingested).
fn on_alpha(account: &str, now: i64, action: Action) -> BrokerCommand {
    BrokerCommand {
        account: account.into(),
        now_ms: now,
        action,
        rules: Some((
            "ALPHA".into(),
            SymbolRules::of_symbol(&info("ALPHA")).unwrap(),
        )),
        market: None,
    }
}

/// The broker on a store: orders fill from the trades ingested, in the
/// ingest's own transaction; every update is published once it is durable,
/// in order; the desk the store rebuilds from its ledger after a restart is
/// the one it had (orders, positions, cash, sequence, keys), and goes on.
async fn the_broker_fills_from_ingested_trades_and_keeps_its_ledger(engine: &dyn Engine) {
    let fresh = engine.fresh("broker");
    with_store(&fresh.url, true, |store| {
        import(store, "ALPHA", &minutes(DAY, 60))
    });
    let minute = DAY + 60 * MINUTE;
    let (state, keyed) = {
        let (source, trading) =
            trading_store::open_source(&fresh.url, Arc::new(Published::default()), &SERVE).unwrap();
        let mut updates = trading.updates();
        let ingest = source.ingest().expect("a store takes ingest");
        let send = |t: i64, price: f64| {
            ingest.apply(
                IngestRequest::Trades(vec![trade("ALPHA", t, price, 1.0)]),
                None,
                t,
                None,
            )
        };
        send(minute, 100.0).await.unwrap();
        // A market buy fills at the last trade.
        let buy = OrderRequest::new("ALPHA", OrderType::Market, Side::Buy, q("2"));
        let placed = trading
            .command(on_alpha(
                "alice",
                minute + 1,
                Action::Place {
                    request: buy,
                    key: Some("k1".into()),
                },
            ))
            .await
            .unwrap();
        let Answer::Order(bought) = placed else {
            panic!("{placed:?}")
        };
        // A limit below the market with a take-profit and a stop-loss.
        let mut limit = OrderRequest::new("ALPHA", OrderType::Limit, Side::Buy, q("1"));
        limit.limit_price = Some(px("99.5"));
        limit.take_profit = Some(px("101"));
        limit.stop_loss = Some(px("98"));
        let Answer::Order(resting) = trading
            .command(on_alpha(
                "bob",
                minute + 2,
                Action::Place {
                    request: limit,
                    key: None,
                },
            ))
            .await
            .unwrap()
        else {
            panic!()
        };
        // Refused, changing nothing: off the tick; another account's order.
        let mut off = OrderRequest::new("ALPHA", OrderType::Limit, Side::Buy, q("1"));
        off.limit_price = Some(px("99.555"));
        let refused = trading
            .command(on_alpha(
                "bob",
                minute + 3,
                Action::Place {
                    request: off,
                    key: None,
                },
            ))
            .await;
        assert!(
            matches!(&refused, Err(TradeError::Desk(DeskError::Broker(_)))),
            "{refused:?}"
        );
        let foreign = trading
            .command(on_alpha(
                "alice",
                minute + 3,
                Action::Cancel { id: resting },
            ))
            .await;
        assert!(foreign.is_err(), "{foreign:?}");
        // The market trades through the limit: it fills at the limit (the
        // trade is not the first of its minute), its brackets start.
        send(minute + 10_000, 99.4).await.unwrap();
        let orders = trading
            .read(|d| {
                d.broker()
                    .orders("bob")
                    .iter()
                    .map(|o| (o.id, o.status, o.avg_price))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
        assert_eq!(
            orders,
            [
                (resting, Status::Filled, Some(px("99.5"))),
                (resting + 1, Status::Working, None),
                (resting + 2, Status::Working, None),
            ]
        );
        // The take-profit fills when the market reaches it; the stop-loss
        // goes with it.
        send(minute + 20_000, 101.2).await.unwrap();
        let (statuses, bob) = trading
            .read(|d| {
                let b = d.broker();
                let statuses: Vec<Status> = b.orders("bob").iter().map(|o| o.status).collect();
                (statuses, b.peek_account("bob"))
            })
            .await
            .unwrap();
        assert_eq!(statuses, [Status::Filled, Status::Filled, Status::Canceled]);
        assert!(bob.positions.is_empty());
        // Bought 1 at 99.5, sold at 101: 1.5, less two fills at 0.5.
        assert_eq!(bob.realized, Cash::parse("0.5").unwrap());
        // Every update was published, in order, each account's numbered
        // from 1 without a gap.
        let mut seen: std::collections::HashMap<String, u64> = Default::default();
        let mut fills = 0;
        while let Ok(records) = updates.try_recv() {
            for record in records.iter() {
                for e in &record.events {
                    let last = seen.entry(e.account.clone()).or_default();
                    assert_eq!(e.seq, *last + 1, "{e:?}");
                    *last = e.seq;
                    fills += usize::from(matches!(e.change, Change::Execution(_)));
                }
            }
        }
        assert_eq!(fills, 3, "alice's buy, bob's limit and his take-profit");
        let state = trading
            .read(|d| {
                let b = d.broker();
                (
                    ["alice", "bob"].map(|a| {
                        (
                            b.seq(a),
                            b.peek_account(a),
                            b.orders(a).into_iter().cloned().collect::<Vec<_>>(),
                        )
                    }),
                    bought,
                )
            })
            .await
            .unwrap();
        source.close().await;
        state
    };
    // Opened again: the desk rebuilt from the ledger is the same, and a
    // retried order under the same key is the first one.
    let (source, trading): (Arc<dyn DataSource>, Arc<Trading>) =
        trading_store::open_source(&fresh.url, Arc::new(Published::default()), &SERVE).unwrap();
    let again = trading
        .read(|d| {
            let b = d.broker();
            ["alice", "bob"].map(|a| {
                (
                    b.seq(a),
                    b.peek_account(a),
                    b.orders(a).into_iter().cloned().collect::<Vec<_>>(),
                )
            })
        })
        .await
        .unwrap();
    assert_eq!(again, state);
    let buy = OrderRequest::new("ALPHA", OrderType::Market, Side::Buy, q("2"));
    let retried = trading
        .command(on_alpha(
            "alice",
            minute + 30_000,
            Action::Place {
                request: buy,
                key: Some("k1".into()),
            },
        ))
        .await
        .unwrap();
    assert_eq!(retried, Answer::Order(keyed));
    source.close().await;
}

/// A served store as a node of several: its reads and its log applier.
trait Node: DataSource + Applier {}
impl<T: DataSource + Applier> Node for T {}

fn open_node(url: &str, sink: Arc<Published>) -> Box<dyn Node> {
    match trading_store::StoreUrl::parse(url).unwrap() {
        trading_store::StoreUrl::Sqlite(path) => Box::new(
            trading_store::sqlite::SqliteStore::open_for_serving(&path, sink, SERVE.broker)
                .unwrap(),
        ),
        trading_store::StoreUrl::Postgres(url) => Box::new(
            trading_store::postgres::PostgresStore::open_for_serving(
                &url,
                sink,
                SERVE.timeout,
                SERVE.broker,
            )
            .unwrap(),
        ),
    }
}

macro_rules! suite {
    ($module:ident, $engine:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn imports_commit_whole_and_aggregate_exactly() {
                super::imports_commit_whole_and_aggregate_exactly(&$engine).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn symbol_upserts_are_all_or_none() {
                super::symbol_upserts_are_all_or_none(&$engine).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn served_reads_follow_the_imported_bars() {
                super::served_reads_follow_the_imported_bars(&$engine).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ingest_applies_whole_requests_exactly_once() {
                super::ingest_applies_whole_requests_exactly_once(&$engine).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_broker_fills_from_ingested_trades_and_keeps_its_ledger() {
                super::the_broker_fills_from_ingested_trades_and_keeps_its_ledger(&$engine).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_shared_log_applies_once_across_nodes() {
                super::a_shared_log_applies_once_across_nodes(&$engine).await;
            }
        }
    };
}

suite!(sqlite, Sqlite);
suite!(postgres, Postgres);
