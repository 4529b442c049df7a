//! The paper broker's matcher in-process, without HTTP or storage: order
//! events per second through the whole state machine (checks, book,
//! fills, accounts, events), and what one print costs against 100,000
//! resting orders over 100 symbols when it fills nothing and when it
//! fills a few.

use std::time::Instant;

use trading_broker::broker::Broker;
use trading_broker::matcher::Print;
use trading_broker::order::{OrderRequest, OrderType, Side};
use trading_broker::rules::SymbolRules;
use trading_broker::units::{Cash, Price, Qty};

use crate::stats;
use crate::Options;

const SYMBOLS: usize = 100;
const RESTING: usize = 100_000;

fn px(units: i64) -> Price {
    // Cents: 100.00 and up.
    Price(units * 1_000_000)
}

fn listed() -> Broker {
    let mut b = Broker::new(Cash(i128::MAX / 4), Cash::ZERO);
    for s in 0..SYMBOLS {
        b.list(
            &format!("S{s}"),
            SymbolRules {
                tick: px(1),
                qty_min: Qty(1_000_000),
                qty_max: Qty(100_000_000_000),
                qty_step: Qty(1_000_000),
                margin_bp: 10_000,
                max_leverage: 1,
            },
        );
        b.on_print(&format!("S{s}"), print(px(100_000), 0));
    }
    b
}

fn print(price: Price, time_ms: i64) -> Print {
    Print {
        price,
        time_ms,
        opens_bar: false,
    }
}

/// A buy limit below the market (1,000.00) of symbol `i % SYMBOLS`,
/// spread over 400 prices.
fn resting(i: usize) -> OrderRequest {
    OrderRequest {
        limit_price: Some(px(90_000 + (i / SYMBOLS % 400) as i64)),
        ..OrderRequest::new(
            &format!("S{}", i % SYMBOLS),
            OrderType::Limit,
            Side::Buy,
            Qty(1_000_000),
        )
    }
}

pub fn run_all(o: &Options) -> bool {
    let runs = o.runs.max(1);
    println!(
        "Broker matcher in-process: {RESTING} resting limit orders over {SYMBOLS} symbols \
         placed through the whole state machine (checks, book, account, events); then \
         prints; {runs} run(s), medians\n"
    );
    stats::header(&["operation", "count", "per second", "ns each"], 1);
    let (mut place, mut idle, mut filling, mut fills_per_print) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ok = true;
    for _ in 0..runs {
        let mut b = listed();
        let accounts: Vec<String> = (0..1_000).map(|a| format!("user{a}")).collect();
        let started = Instant::now();
        let mut events = 0usize;
        for i in 0..RESTING {
            match b.place(&accounts[i % accounts.len()], resting(i), 1) {
                Ok((_, e)) => events += e.len(),
                Err(e) => {
                    eprintln!("broker: an order was refused: {e:?}");
                    ok = false;
                }
            }
        }
        place.push(events as f64 / started.elapsed().as_secs_f64());
        // Prints above every limit: nothing fills, each looks at nothing.
        let n = 200_000;
        let started = Instant::now();
        let mut filled = 0usize;
        for k in 0..n {
            let s = format!("S{}", k % SYMBOLS);
            filled += b
                .on_print(&s, print(px(99_000 + (k % 500) as i64), 2))
                .len();
        }
        idle.push(started.elapsed().as_nanos() as f64 / n as f64);
        ok &= filled == 0;
        // Prints walking down one price at a time: each fills the orders
        // at that price of its symbol (2 or 3).
        let started = Instant::now();
        let mut prints = 0usize;
        let mut fill_events = 0usize;
        for level in (90_000..90_400).rev() {
            for s in 0..SYMBOLS {
                fill_events += b.on_print(&format!("S{s}"), print(px(level), 3)).len();
                prints += 1;
            }
        }
        filling.push(started.elapsed().as_nanos() as f64 / prints as f64);
        // Order, execution, balance, position: four events per fill.
        fills_per_print.push(fill_events as f64 / 4.0 / prints as f64);
        ok &= fill_events == RESTING * 4;
    }
    let (place, idle, filling) = (
        stats::median(place),
        stats::median(idle),
        stats::median(filling),
    );
    stats::row(&[
        "place a resting limit (events/s)".into(),
        stats::int(RESTING as f64),
        stats::int(place),
        format!("{:.0}", 1e9 / place),
    ]);
    stats::row(&[
        "a print that fills nothing".into(),
        "200,000".into(),
        stats::int(1e9 / idle),
        format!("{idle:.0}"),
    ]);
    stats::row(&[
        format!(
            "a print that fills {:.1} orders",
            stats::median(fills_per_print)
        ),
        stats::int((400 * SYMBOLS) as f64),
        stats::int(1e9 / filling),
        format!("{filling:.0}"),
    ]);
    println!();
    ok
}
