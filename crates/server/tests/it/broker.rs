//! The paper broker through the real server and the generated client:
//! every fill rule of `docs/BROKER.md` proven by feeding the market through
//! ingest and checking the exact fill; accounts kept apart; bad input
//! refused naming the field and changing nothing; what was acknowledged
//! surviving `kill -9` on both stores.

use std::collections::BTreeMap;

use crate::common::process::ServerProcess;
use crate::common::store::{
    crypto_24x7, frozen_store_args, register_symbols, store_server, with_token, Engine, Postgres,
    Sqlite, TempDir, TOKEN,
};
use crate::common::tokens::{token, SECRET};
use crate::common::{error_of, TestServer, FROZEN_NOW_S};
use trading_pro_client::types::{
    self as t, DurationType, OrderDuration, PlaceOrderRequest, Trade, TradesIngestRequest,
};
use trading_pro_client::Client;

const LIMIT: i32 = 1;
const MARKET: i32 = 2;
const STOP: i32 = 3;
const STOP_LIMIT: i32 = 4;
const BUY: i32 = 1;
const SELL: i32 = -1;
const FILLED: i32 = 2;
const CANCELED: i32 = 1;
const WORKING: i32 = 6;
const INACTIVE: i32 = 3;

fn order(symbol: &str, kind: i32, side: i32, qty: f64) -> PlaceOrderRequest {
    PlaceOrderRequest {
        symbol: symbol.into(),
        type_: t::OrderType::try_from(kind).unwrap(),
        side: t::Side::try_from(side).unwrap(),
        qty,
        limit_price: None,
        stop_price: None,
        take_profit: None,
        stop_loss: None,
        trailing_stop_pips: None,
        duration: None,
        seen_price: None,
        is_close: None,
    }
}

fn limit(symbol: &str, side: i32, qty: f64, price: f64) -> PlaceOrderRequest {
    PlaceOrderRequest {
        limit_price: Some(price),
        ..order(symbol, LIMIT, side, qty)
    }
}

/// A new SQLite store with the 24x7 `tickers`, served with the market
/// clock frozen (and `extra` flags), and a client carrying the ingest
/// token (the broker's account is the demo one without authentication).
async fn served(label: &str, tickers: &[&str], extra: &[&str]) -> (TempDir, TestServer, Client) {
    let dir = TempDir::new(label);
    let store = Sqlite.fresh(&dir);
    register_symbols(&dir, &store, &crypto_24x7(tickers));
    let s = store_server(&store, extra).await;
    let c = with_token(&s.base, TOKEN);
    (dir, s, c)
}

async fn place(c: &Client, body: PlaceOrderRequest) -> t::Order {
    c.place_order()
        .body(body)
        .send()
        .await
        .unwrap()
        .into_inner()
        .order
}

/// One trade into the store (the market printing `price` at `time`).
async fn trade(c: &Client, symbol: &str, time: i64, price: f64) {
    let body = TradesIngestRequest {
        trades: vec![Trade {
            symbol: symbol.into(),
            time,
            price,
            size: 1.0,
        }],
    };
    c.ingest_trades().body(body).send().await.unwrap();
}

async fn status(c: &Client, id: &str) -> t::Order {
    let open = c.get_orders().send().await.unwrap().into_inner();
    if let Some(o) = open.into_iter().find(|o| o.id == id) {
        return o;
    }
    let page = c.get_orders_history().limit(500).send().await.unwrap();
    page.into_inner()
        .orders
        .into_iter()
        .find(|o| o.id == id)
        .unwrap_or_else(|| panic!("order {id} is nowhere"))
}

/// Each fill rule, through ingest, with its exact price; every fill inside
/// its minute's bar, linked to its order; the account's figures exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fill_rule_holds_for_a_market_fed_through_ingest() {
    let (_dir, s, c) = served("broker-fills", &["FILL", "TRAIL"], &[]).await;
    let t0 = (FROZEN_NOW_S - 3600) * 1000;
    let sec = |n: i64| t0 + n * 1000;

    // Before any trade the market has no price: a market order is refused.
    let early = c
        .place_order()
        .body(order("FILL", MARKET, BUY, 1.0))
        .send()
        .await;
    let (code, message) = error_of(early);
    assert_eq!(code, 400);
    assert!(message.starts_with("symbol:"), "{message}");

    trade(&c, "FILL", sec(1), 100.0).await;
    // A market buy fills at once at the last trade.
    let bought = place(&c, order("FILL", MARKET, BUY, 1.0)).await;
    assert_eq!((*bought.status, bought.avg_price), (FILLED, Some(100.0)));

    // A limit rests until the market trades through it, and fills at the
    // limit.
    let l1 = place(&c, limit("FILL", BUY, 1.0, 99.5)).await;
    assert_eq!(*l1.status, WORKING);
    trade(&c, "FILL", sec(2), 99.7).await;
    assert_eq!(*status(&c, &l1.id).await.status, WORKING);
    trade(&c, "FILL", sec(3), 99.4).await;
    let l1 = status(&c, &l1.id).await;
    assert_eq!((*l1.status, l1.avg_price), (FILLED, Some(99.5)));

    // A market that opens the next minute through a resting limit fills
    // it at the opening trade, the better price.
    let l2 = place(&c, limit("FILL", SELL, 1.0, 101.0)).await;
    trade(&c, "FILL", sec(61), 101.8).await;
    let l2 = status(&c, &l2.id).await;
    assert_eq!((*l2.status, l2.avg_price), (FILLED, Some(101.8)));

    // A marketable limit fills at the market, not at its limit.
    let l3 = place(&c, limit("FILL", BUY, 1.0, 102.0)).await;
    assert_eq!((*l3.status, l3.avg_price), (FILLED, Some(101.8)));

    // A stop fills at the first trade at or through it: across a gap, at
    // the gapped price.
    let s1 = place(
        &c,
        PlaceOrderRequest {
            stop_price: Some(103.0),
            ..order("FILL", STOP, BUY, 1.0)
        },
    )
    .await;
    trade(&c, "FILL", sec(62), 102.9).await;
    assert_eq!(*status(&c, &s1.id).await.status, WORKING);
    trade(&c, "FILL", sec(63), 104.1).await;
    let s1 = status(&c, &s1.id).await;
    assert_eq!((*s1.status, s1.avg_price), (FILLED, Some(104.1)));

    // A stop-limit becomes a limit when touched; one gapped past its limit
    // waits, then fills at its limit.
    let sl = place(
        &c,
        PlaceOrderRequest {
            stop_price: Some(103.0),
            limit_price: Some(102.5),
            ..order("FILL", STOP_LIMIT, SELL, 1.0)
        },
    )
    .await;
    trade(&c, "FILL", sec(64), 102.0).await;
    let touched = status(&c, &sl.id).await;
    assert_eq!((*touched.status, touched.triggered), (WORKING, Some(true)));
    trade(&c, "FILL", sec(65), 102.7).await;
    let sl = status(&c, &sl.id).await;
    assert_eq!((*sl.status, sl.avg_price), (FILLED, Some(102.5)));

    // Brackets: inactive until the order fills, then one-cancels-other.
    let parent = place(
        &c,
        PlaceOrderRequest {
            take_profit: Some(103.0),
            stop_loss: Some(101.0),
            ..limit("FILL", BUY, 1.0, 102.0)
        },
    )
    .await;
    let open = c.get_orders().send().await.unwrap().into_inner();
    let legs: Vec<&t::Order> = open
        .iter()
        .filter(|o| o.parent_id.as_deref() == Some(parent.id.as_str()))
        .collect();
    assert_eq!(legs.len(), 2);
    assert!(legs
        .iter()
        .all(|o| *o.status == INACTIVE && *o.side == SELL));
    let (tp, sl_leg) = (legs[0].id.clone(), legs[1].id.clone());
    trade(&c, "FILL", sec(66), 101.9).await;
    assert_eq!(status(&c, &parent.id).await.avg_price, Some(102.0));
    assert_eq!(*status(&c, &tp).await.status, WORKING);
    trade(&c, "FILL", sec(67), 103.1).await;
    let (tp, sl_leg) = (status(&c, &tp).await, status(&c, &sl_leg).await);
    assert_eq!((*tp.status, tp.avg_price), (FILLED, Some(103.0)));
    assert_eq!(*sl_leg.status, CANCELED);
    assert_eq!(
        sl_leg.message.map(|m| m.text).as_deref(),
        Some("its other bracket filled")
    );

    // A trailing stop follows the market up, never down, and fills at the
    // trade that reaches it.
    trade(&c, "TRAIL", sec(70), 50.0).await;
    let trail = place(
        &c,
        PlaceOrderRequest {
            stop_price: Some(49.0),
            trailing_stop_pips: Some(50.0),
            ..order("TRAIL", STOP, SELL, 1.0)
        },
    )
    .await;
    trade(&c, "TRAIL", sec(71), 51.0).await;
    assert_eq!(status(&c, &trail.id).await.stop_price, Some(50.5));
    trade(&c, "TRAIL", sec(72), 50.7).await;
    assert_eq!(status(&c, &trail.id).await.stop_price, Some(50.5));
    trade(&c, "TRAIL", sec(73), 50.4).await;
    let trail = status(&c, &trail.id).await;
    assert_eq!((*trail.status, trail.avg_price), (FILLED, Some(50.4)));

    // Every fill is linked to its order. One a trade caused lies within
    // the bar of its minute; one made when its order was placed (at the
    // server's clock) is at the newest trade's price, checked above.
    let fills = c
        .get_executions()
        .symbol("FILL")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fills.len(), 8);
    let bars = c
        .get_bars()
        .symbol("FILL")
        .resolution("1")
        .from_time(t0 / 1000)
        .to_time(t0 / 1000 + 120)
        .send()
        .await
        .unwrap()
        .into_inner()
        .bars;
    let by_minute: BTreeMap<i64, &t::Bar> = bars.iter().map(|b| (b.time, b)).collect();
    let mut by_trades = 0;
    for x in &fills {
        let o = status(&c, &x.order_id).await;
        assert_eq!((o.avg_price, o.qty), (Some(x.price), x.qty), "{x:?}");
        if x.time == FROZEN_NOW_S * 1000 {
            continue;
        }
        let bar = by_minute[&(x.time - x.time.rem_euclid(60_000))];
        assert!(
            bar.low <= x.price && x.price <= bar.high,
            "{x:?} outside {bar:?}"
        );
        by_trades += 1;
    }
    assert_eq!(by_trades, 6);

    // The position and the account, exactly: bought 100, 99.5, 101.8,
    // 104.1, 102; sold 101.8, 102.5, 103 (averages carried at 16 places).
    let positions = c.get_positions().send().await.unwrap().into_inner();
    let fill = positions.iter().find(|p| p.symbol == "FILL").unwrap();
    assert_eq!((fill.qty, *fill.side, fill.last), (2.0, BUY, Some(103.1)));
    let account = c.get_account_info().send().await.unwrap().into_inner();
    // 2.05 + 0.6166666666666667 + 1.0777777777777778, exactly.
    assert_eq!(account.realized_pl, 3.7444444444444445);
    assert_eq!(fill.unrealized_pl, 2.3555555555555555);
    // The trailing stop sold what the account did not hold: a short.
    let short = positions.iter().find(|p| p.symbol == "TRAIL").unwrap();
    assert_eq!((short.qty, *short.side, short.avg_price), (1.0, SELL, 50.4));
    assert_eq!(account.id, "demo");
    s.stop().await;
}

/// Two users with their own tokens never see or touch each other's orders;
/// every bad request is a 4xx naming the field and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_apart_and_bad_input_changes_nothing() {
    let s = TestServer::start(&[
        "--auth-jwt-secret",
        SECRET,
        "--auth-default-entitlement",
        "all",
    ])
    .await;
    let alice = with_token(&s.base, &token("alice", None));
    let bob = with_token(&s.base, &token("bob", None));
    // Without a token: 401, as for the datafeed.
    let (code, _) = error_of(s.client.get_account_info().send().await);
    assert_eq!(code, 401);

    let market = alice
        .get_quotes()
        .body(t::QuotesRequest {
            symbols: vec!["BTCUSD".into()],
        })
        .send()
        .await
        .unwrap()
        .into_inner()[0]
        .v
        .lp
        .unwrap();
    let below = ((market * 0.9) * 100.0).round() / 100.0;
    let resting = place(&alice, limit("BTCUSD", BUY, 1.0, below)).await;
    assert_eq!(*resting.status, WORKING);
    let before = alice.get_account_info().send().await.unwrap().into_inner();
    assert_eq!(before.id, "alice");

    // Bob sees none of it, and alice's order id is not found for him.
    assert!(bob.get_orders().send().await.unwrap().is_empty());
    let (code, message) = error_of(bob.cancel_order().order_id(&resting.id).send().await);
    assert_eq!(code, 404, "{message}");
    let (code, _) = error_of(
        bob.modify_order()
            .order_id(&resting.id)
            .body(t::ModifyOrderRequest {
                qty: 2.0,
                limit_price: Some(below),
                stop_price: None,
            })
            .send()
            .await,
    );
    assert_eq!(code, 404);
    assert_eq!(bob.get_account_info().send().await.unwrap().seq, 0);

    // Bad orders: 400 naming the field (404 for a symbol), nothing placed.
    let cases: Vec<(PlaceOrderRequest, u16, &str)> = vec![
        (order("BTCUSD", MARKET, BUY, 0.0), 400, "qty:"),
        (order("BTCUSD", MARKET, BUY, -1.0), 400, "qty:"),
        (order("BTCUSD", MARKET, BUY, 0.5), 400, "qty:"),
        (limit("BTCUSD", BUY, 1.0, below + 0.001), 400, "limitPrice:"),
        (order("BTCUSD", LIMIT, BUY, 1.0), 400, "limitPrice:"),
        (
            PlaceOrderRequest {
                stop_price: Some(below),
                ..order("BTCUSD", STOP, BUY, 1.0)
            },
            400,
            "stopPrice:",
        ),
        (order("NOPE", MARKET, BUY, 1.0), 404, "unknown symbol"),
        (order("BTCUSD", MARKET, BUY, 1_000_000.0), 400, "qty:"),
        (
            PlaceOrderRequest {
                take_profit: Some(below - 1.0),
                ..limit("BTCUSD", BUY, 1.0, below)
            },
            400,
            "takeProfit:",
        ),
    ];
    for (body, want, field) in cases {
        let (code, message) = error_of(alice.place_order().body(body.clone()).send().await);
        assert_eq!(code, want, "{body:?}: {message}");
        assert!(
            message.to_lowercase().starts_with(&field.to_lowercase()),
            "{body:?}: {message}"
        );
    }
    // A body that is not an order at all, and one over the limit.
    let raw = reqwest::Client::new();
    let url = s.url("/api/v1/broker/orders");
    let bearer = format!("Bearer {}", token("alice", None));
    let not_json = raw
        .post(&url)
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body(r#"{"symbol":"BTCUSD","type":9,"side":1,"qty":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let huge = raw
        .post(&url)
        .header("authorization", &bearer)
        .header("content-type", "application/json")
        .body(vec![b' '; 70_000])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    // Fill something, then the final-state and position rules.
    let bought = place(&alice, order("BTCUSD", MARKET, BUY, 1.0)).await;
    assert_eq!(*bought.status, FILLED);
    let (code, message) = error_of(alice.cancel_order().order_id(&bought.id).send().await);
    assert_eq!(code, 409, "{message}");
    let (code, message) = error_of(
        alice
            .close_position()
            .position_id("BTCUSD")
            .amount(2.0)
            .send()
            .await,
    );
    assert_eq!(code, 400);
    assert!(message.starts_with("amount:"), "{message}");
    let (code, _) = error_of(bob.close_position().position_id("BTCUSD").send().await);
    assert_eq!(code, 404);
    let (code, message) = error_of(
        alice
            .set_leverage()
            .body(t::LeverageRequest {
                symbol: "BTCUSD".into(),
                leverage: 1000,
                order_type: None,
                side: None,
            })
            .send()
            .await,
    );
    assert_eq!(code, 400);
    assert!(message.starts_with("leverage:"), "{message}");
    // An idempotency key reused with another body.
    let keyed = alice
        .place_order()
        .idempotency_key("ticket-1")
        .body(limit("BTCUSD", BUY, 1.0, below))
        .send()
        .await
        .unwrap()
        .into_inner();
    let again = alice
        .place_order()
        .idempotency_key("ticket-1")
        .body(limit("BTCUSD", BUY, 1.0, below))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.order_id, keyed.order_id);
    let (code, _) = error_of(
        alice
            .place_order()
            .idempotency_key("ticket-1")
            .body(limit("BTCUSD", BUY, 2.0, below))
            .send()
            .await,
    );
    assert_eq!(code, 422);
    // Bob's key of the same name is his own.
    let bobs = bob
        .place_order()
        .idempotency_key("ticket-1")
        .body(limit("BTCUSD", BUY, 2.0, below))
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_ne!(bobs.order_id, keyed.order_id);

    // Alice's orders: the resting one, the filled one, the keyed one; her
    // refusals left nothing.
    let open: Vec<String> = alice
        .get_orders()
        .send()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id.clone())
        .collect();
    assert_eq!(open, [resting.id.clone(), keyed.order_id.clone()]);
    let history = alice
        .get_orders_history()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        history.orders.iter().map(|o| &o.id).collect::<Vec<_>>(),
        [&bought.id]
    );
    s.stop().await;
}

/// Orders acknowledged before a `kill -9` are all there after a restart,
/// each once (a retry with its key gets the same order); fills too.
async fn acknowledged_orders_survive_kill_9(engine: &dyn Engine) {
    let dir = TempDir::new("broker-kill");
    let store = engine.fresh(&dir);
    register_symbols(&dir, &store, &crypto_24x7(&["KILL"]));
    let args = frozen_store_args(&store);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(&args).await;
    let c = with_token(&server.base, TOKEN);
    trade(&c, "KILL", (FROZEN_NOW_S - 60) * 1000, 100.0).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (c, acked) = (c.clone(), std::sync::Arc::clone(&acked));
            tokio::spawn(async move {
                for n in 0..10_000 {
                    let key = format!("w{w}-{n}");
                    let price = 90.0 + ((n * 7 + w) % 90) as f64 / 10.0;
                    let body = PlaceOrderRequest {
                        take_profit: Some(price + 20.0),
                        stop_loss: Some(price - 5.0),
                        duration: Some(OrderDuration {
                            type_: DurationType::Gtc,
                        }),
                        ..limit("KILL", BUY, 0.01, price)
                    };
                    match c
                        .place_order()
                        .idempotency_key(&key)
                        .body(body)
                        .send()
                        .await
                    {
                        Ok(placed) => acked.lock().unwrap().push((key, placed.order_id.clone())),
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    // Some orders in, and a fill or two, then the kill mid-stream.
    while acked.lock().unwrap().len() < 200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    trade(&c, "KILL", (FROZEN_NOW_S - 30) * 1000, 94.0).await;
    while acked.lock().unwrap().len() < 400 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill_9().await;
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();

    let server = ServerProcess::start(&args).await;
    let c = with_token(&server.base, TOKEN);
    let open = c.get_orders().send().await.unwrap().into_inner();
    let mut history = Vec::new();
    let mut before = None;
    loop {
        let mut q = c.get_orders_history().limit(500);
        if let Some(b) = &before {
            q = q.before(b);
        }
        let page = q.send().await.unwrap().into_inner();
        history.extend(page.orders);
        match page.next_before {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    let all: BTreeMap<String, t::Order> = open
        .into_iter()
        .chain(history)
        .map(|o| (o.id.clone(), o))
        .collect();
    for (key, id) in &acked {
        let o = all
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged order {id} ({key}) lost"));
        // Placed whole: with both its brackets.
        let legs = all
            .values()
            .filter(|l| l.parent_id.as_deref() == Some(id.as_str()))
            .count();
        assert_eq!(legs, 2, "order {id}: {o:?}");
        // A retry with its key is the same order, placed once.
        let retried = c
            .place_order()
            .idempotency_key(key)
            .body(PlaceOrderRequest {
                take_profit: o.take_profit,
                stop_loss: o.stop_loss,
                duration: Some(OrderDuration {
                    type_: DurationType::Gtc,
                }),
                ..limit("KILL", BUY, 0.01, o.limit_price.unwrap())
            })
            .send()
            .await
            .unwrap();
        assert_eq!(&retried.order_id, id);
    }
    // The fill at 94 happened to every acknowledged order at or above it
    // placed before it: those are filled, and their fills are kept.
    let filled = all.values().filter(|o| *o.status == FILLED).count();
    let fills = c
        .get_executions()
        .symbol("KILL")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fills.len(), filled);
    assert!(filled > 0);
    let account = c.get_account_info().send().await.unwrap().into_inner();
    let positions = c.get_positions().send().await.unwrap().into_inner();
    let held: f64 = positions.iter().map(|p| p.qty).sum();
    assert!(
        (held - filled as f64 * 0.01).abs() < 1e-9,
        "{held} {filled}"
    );
    assert!(account.seq > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_orders_survive_kill_9() {
    acknowledged_orders_survive_kill_9(&Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_orders_survive_kill_9() {
    acknowledged_orders_survive_kill_9(&Postgres).await
}

/// The zero-setup default trades too: a market buy of BTCUSD fills at the
/// ask the quote shows, and the account moves by exactly its cost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_synthetic_market_trades_a_demo_account() {
    let s = TestServer::frozen().await;
    let quote = s
        .client
        .get_quotes()
        .body(t::QuotesRequest {
            symbols: vec!["BTCUSD".into()],
        })
        .send()
        .await
        .unwrap()
        .into_inner()
        .remove(0)
        .v;
    let bought = place(&s.client, order("BTCUSD", MARKET, BUY, 1.0)).await;
    assert_eq!((*bought.status, bought.avg_price), (FILLED, quote.ask));
    let fills = s
        .client
        .get_executions()
        .symbol("BTCUSD")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fills.len(), 1);
    assert_eq!(fills[0].order_id, bought.id);
    let account = s
        .client
        .get_account_info()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.id, "demo");
    assert_eq!(account.balance, 100_000.0 - quote.ask.unwrap());
    let positions = s.client.get_positions().send().await.unwrap().into_inner();
    assert_eq!(positions.len(), 1);
    assert_eq!(
        (positions[0].qty, positions[0].avg_price),
        (1.0, quote.ask.unwrap())
    );
    s.stop().await;
}

/// The position operations, the previews, leverage and a reset, through
/// the client against a store fed by ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_close_reverse_and_carry_brackets_and_an_account_resets() {
    let extra = ["--paper-cash", "5000", "--paper-commission", "0.25"];
    let (_dir, s, c) = served("broker-positions", &["POS"], &extra).await;
    let sec = |n: i64| (FROZEN_NOW_S - 100) * 1000 + n * 1000;
    trade(&c, "POS", sec(1), 100.0).await;

    // The rules the symbol trades under, and a preview that changes nothing.
    let info = c.get_symbol_info().symbol("POS").send().await.unwrap();
    assert_eq!(
        (info.min_tick, info.qty.step, info.qty.min),
        (0.01, 0.01, 0.01)
    );
    assert_eq!((info.leverage, info.margin_rate), (1, 1.0));
    let preview = c
        .preview_order()
        .body(order("POS", MARKET, BUY, 2.0))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            preview.price,
            preview.notional,
            preview.margin,
            preview.commission
        ),
        (Some(100.0), 200.0, 200.0, 0.25)
    );
    assert_eq!(preview.fills_now, Some(true));
    assert!(c.get_orders().send().await.unwrap().is_empty());
    // More than the cash at leverage 1 is refused; at 5x it passes.
    let big = order("POS", MARKET, BUY, 60.0);
    let (code, message) = error_of(c.preview_order().body(big.clone()).send().await);
    assert_eq!(code, 400);
    assert!(message.starts_with("qty:"), "{message}");
    let lev = t::LeverageRequest {
        symbol: "POS".into(),
        leverage: 5,
        order_type: None,
        side: None,
    };
    let seen = c.preview_leverage().body(lev.clone()).send().await.unwrap();
    assert_eq!((seen.margin_rate, seen.errors.len()), (0.2, 0));
    assert_eq!(c.set_leverage().body(lev).send().await.unwrap().leverage, 5);
    let info = c
        .leverage_info()
        .symbol("POS")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!((info.leverage, info.min, info.max), (5, 1, 10));
    assert!(c.preview_order().body(big).send().await.is_ok());

    // Buy 2, attach a take-profit and a stop-loss to the position.
    place(&c, order("POS", MARKET, BUY, 2.0)).await;
    let with = c
        .edit_position_brackets()
        .position_id("POS")
        .body(t::Brackets {
            take_profit: Some(105.0),
            stop_loss: Some(95.0),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(
        (with.take_profit, with.stop_loss),
        (Some(105.0), Some(95.0))
    );
    // A stop-loss above the market is refused, naming it.
    let (code, message) = error_of(
        c.edit_position_brackets()
            .position_id("POS")
            .body(t::Brackets {
                take_profit: None,
                stop_loss: Some(101.0),
            })
            .send()
            .await,
    );
    assert_eq!(code, 400);
    assert!(message.starts_with("stopLoss:"), "{message}");
    // Close half: a market sell of 1 at the last trade.
    let closed = c
        .close_position()
        .position_id("POS")
        .amount(1.0)
        .send()
        .await
        .unwrap();
    assert_eq!((*closed.status, closed.avg_price), (FILLED, Some(100.0)));
    // Reverse what is left: a sell of 2 leaves a short of 1.
    trade(&c, "POS", sec(2), 101.0).await;
    let reversed = c
        .reverse_position()
        .position_id("POS")
        .send()
        .await
        .unwrap();
    assert_eq!((reversed.qty, reversed.avg_price), (2.0, Some(101.0)));
    let held = c.get_positions().send().await.unwrap().into_inner();
    assert_eq!((held[0].qty, *held[0].side), (1.0, SELL));
    // The position's brackets went when it closed through zero.
    assert_eq!((held[0].take_profit, held[0].stop_loss), (None, None));
    // Several orders cancelled at once, by side.
    for price in [90.0, 91.0] {
        place(&c, limit("POS", BUY, 1.0, price)).await;
    }
    place(&c, limit("POS", SELL, 1.0, 120.0)).await;
    let cancelled = c
        .cancel_orders()
        .body(t::CancelOrdersRequest {
            symbol: "POS".into(),
            side: Some(t::Side::try_from(BUY).unwrap()),
            ids: Vec::new(),
        })
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 2);
    assert_eq!(c.get_orders().send().await.unwrap().len(), 1);

    // Commission: three fills at 0.25. Then a reset: the starting cash back,
    // no position, no open order; the history stays.
    let account = c.get_account_info().send().await.unwrap().into_inner();
    assert_eq!(account.commission_paid, 0.75);
    let reset = c.reset_account().send().await.unwrap().into_inner();
    assert_eq!(
        (reset.balance, reset.equity, reset.realized_pl),
        (5000.0, 5000.0, 0.0)
    );
    assert!(reset.seq > account.seq);
    assert!(c.get_positions().send().await.unwrap().is_empty());
    assert!(c.get_orders().send().await.unwrap().is_empty());
    assert_eq!(
        c.get_executions().symbol("POS").send().await.unwrap().len(),
        3
    );
    s.stop().await;
}

/// The private channels: a snapshot on subscribe, then every change of the
/// account once it is durable, numbered, on its channel, each frame valid
/// against the spec; another user's socket hears nothing of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_channels_carry_every_change_in_order_and_only_to_its_account() {
    use crate::common::tokens::handshake;
    use crate::common::ws::{recv, send, Received};
    let auth = [
        "--auth-jwt-secret",
        SECRET,
        "--auth-default-entitlement",
        "all",
    ];
    let (_dir, s, feed) = served("broker-ws", &["WS"], &auth).await;
    let alice = with_token(&s.base, &token("alice", None));
    let sec = |n: i64| (FROZEN_NOW_S - 100) * 1000 + n * 1000;
    trade(&feed, "WS", sec(1), 100.0).await;
    // Something before the sockets: the snapshot must carry it.
    let early = place(&alice, limit("WS", BUY, 1.0, 90.0)).await;

    let channels = [
        "orders",
        "positions",
        "executions",
        "equity",
        "notifications",
    ];
    let mut sockets = Vec::new();
    for who in ["alice", "bob"] {
        let query = format!("?access_token={}", token(who, None));
        let mut ws = handshake(&s.base, &query, None)
            .await
            .expect("the handshake is accepted");
        for ch in channels {
            send(
                &mut ws,
                serde_json::json!({ "type": format!("{ch}.subscribe"), "id": ch, "payload": {} }),
            )
            .await;
            let Received::Frame(reply) = recv(&mut ws).await else {
                panic!("no reply")
            };
            assert_eq!(reply["type"], format!("{ch}.subscribe.response"));
            assert_eq!(reply["id"], ch);
            assert_eq!(reply["payload"]["status"], "ok", "{reply}");
            if who == "alice" && ch == "orders" {
                assert_eq!(reply["payload"]["orders"][0]["id"], early.id.as_str());
                assert_eq!(reply["payload"]["seq"], 1);
            }
        }
        sockets.push(ws);
    }
    let mut bob_ws = sockets.pop().unwrap();
    let mut alice_ws = sockets.pop().unwrap();

    // A bracket order that fills, whose take-profit fills and whose
    // stop-loss is then cancelled.
    place(
        &alice,
        PlaceOrderRequest {
            take_profit: Some(103.0),
            stop_loss: Some(95.0),
            ..limit("WS", BUY, 1.0, 99.0)
        },
    )
    .await;
    trade(&feed, "WS", sec(2), 98.5).await;
    trade(&feed, "WS", sec(3), 103.5).await;

    // Every sequence number from 2 on arrives, in order, on its channel.
    let account = alice.get_account_info().send().await.unwrap().into_inner();
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut last = 1;
    while last < account.seq as u64 {
        let Received::Frame(f) = recv(&mut alice_ws).await else {
            panic!("the socket closed")
        };
        let kind = f["type"].as_str().unwrap().to_string();
        let seq = f["payload"]["seq"].as_u64().unwrap();
        assert!(seq >= last, "{seq} after {last}: {f}");
        if seq > last {
            assert_eq!(seq, last + 1, "a gap before {f}");
        }
        last = seq;
        seen.push((seq, kind));
    }
    // The stop-loss cancelled by the take-profit's fill is also told, with
    // the same number, right after its order update.
    let Received::Frame(note) = recv(&mut alice_ws).await else {
        panic!("the socket closed")
    };
    assert_eq!(note["type"], "notifications.update", "{note}");
    assert_eq!(note["payload"]["seq"], last);
    assert_eq!(note["payload"]["notification"]["kind"], "canceled");
    assert_eq!(
        note["payload"]["notification"]["text"],
        "its other bracket filled"
    );
    seen.push((last, "notifications.update".into()));
    let kinds: Vec<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    for ch in [
        "orders",
        "positions",
        "executions",
        "equity",
        "notifications",
    ] {
        assert!(
            kinds.contains(&format!("{ch}.update").as_str()),
            "no {ch}: {kinds:?}"
        );
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "executions.update").count(),
        2
    );
    // The position opened, then closed: pushed with qty 0.
    let positions = seen.iter().filter(|(_, k)| k == "positions.update").count();
    assert_eq!(positions, 2);
    // Bob heard nothing: his next frame is the answer to a request of ours.
    send(
        &mut bob_ws,
        serde_json::json!({ "type": "orders.unsubscribe", "id": "u", "payload": {} }),
    )
    .await;
    let Received::Frame(next) = recv(&mut bob_ws).await else {
        panic!("bob's socket closed")
    };
    assert_eq!(next["type"], "orders.unsubscribe.response", "{next}");
    s.stop().await;
}

/// The Rust client's typed private channels: what a service following an
/// account sees of a bracket order's life, each change once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_follows_an_account_through_a_bracket_order() {
    use trading_pro_client::ws::{AccountUpdate, WsClient};
    let (_dir, s, c) = served("broker-client", &["RC"], &[]).await;
    let sec = |n: i64| (FROZEN_NOW_S - 100) * 1000 + n * 1000;
    trade(&c, "RC", sec(1), 100.0).await;

    let mut ws = WsClient::connect(&s.base).await.unwrap();
    assert!(ws.subscribe_orders().await.unwrap().orders.is_empty());
    assert!(ws.subscribe_positions().await.unwrap().positions.is_empty());
    ws.subscribe_executions().await.unwrap();
    let equity = ws.subscribe_equity().await.unwrap();
    assert_eq!(equity.equity.map(|e| e.balance), Some(100_000.0));
    let start = ws.subscribe_notifications().await.unwrap().seq;

    place(
        &c,
        PlaceOrderRequest {
            take_profit: Some(102.0),
            stop_loss: Some(97.0),
            ..limit("RC", BUY, 3.0, 99.0)
        },
    )
    .await;
    trade(&c, "RC", sec(2), 98.9).await;
    trade(&c, "RC", sec(3), 102.5).await;

    let mut last = start;
    let mut realized = None;
    let mut cancelled_note = None;
    while cancelled_note.is_none() {
        let update = ws
            .next_account_update()
            .await
            .expect("the connection stays");
        assert!(
            update.seq() == last || update.seq() == last + 1,
            "{update:?} after {last}"
        );
        last = update.seq();
        match update {
            AccountUpdate::Equity(e) => realized = Some(e.equity.realized_pl),
            AccountUpdate::Notification(n) => cancelled_note = Some(n.notification.text),
            _ => {}
        }
    }
    // Bought 3 at 99, sold at 102.
    assert_eq!(realized, Some(9.0));
    assert_eq!(cancelled_note.as_deref(), Some("its other bracket filled"));
    s.stop().await;
}

/// A DAY order ends at the close of the session it was placed in, told on
/// `notifications`, and no later trade fills it; a GTC order stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_order_expires_at_its_sessions_close() {
    let dir = TempDir::new("broker-day");
    let store = Sqlite.fresh(&dir);
    // A market open two minutes a day, from the test's clock start.
    let symbols = crypto_24x7(&["DAY"]).replace("\"24x7\"", "\"1530-1532\"");
    register_symbols(&dir, &store, &symbols);
    let start = FROZEN_NOW_S.to_string();
    // The clock runs a minute a second; the broker looks every 100 ms.
    let s = TestServer::start(&[
        "--store",
        &store,
        "--ingest-token",
        TOKEN,
        "--clock-start",
        &start,
        "--clock-speed",
        "60",
        "--broadcast-interval-ms",
        "100",
    ])
    .await;
    let c = with_token(&s.base, TOKEN);
    trade(&c, "DAY", FROZEN_NOW_S * 1000 + 1_000, 100.0).await;
    let day = place(
        &c,
        PlaceOrderRequest {
            duration: Some(OrderDuration {
                type_: DurationType::Day,
            }),
            ..limit("DAY", BUY, 1.0, 90.0)
        },
    )
    .await;
    // The session closes at 15:32 UTC.
    assert_eq!(day.expires_at, Some((FROZEN_NOW_S + 120) * 1000));
    let gtc = place(&c, limit("DAY", BUY, 1.0, 80.0)).await;
    let mut waited = 0;
    let ended = loop {
        let o = status(&c, &day.id).await;
        if *o.status != WORKING {
            break o;
        }
        waited += 1;
        assert!(waited < 600, "the DAY order never expired");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(*ended.status, CANCELED);
    assert_eq!(
        ended.message.map(|m| m.text).as_deref(),
        Some("expired at the close of its session")
    );
    assert_eq!(*status(&c, &gtc.id).await.status, WORKING);
    s.stop().await;
}
