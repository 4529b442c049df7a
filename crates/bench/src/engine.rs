//! The synthetic market engine in-process, without HTTP: what its bars,
//! current bars and session lookups cost. The time-zone change of the
//! real-data work is measured here (before and after, same machine), since
//! every trading-day lookup goes through the symbol's time zone.

use std::time::Instant;

use trading_synthetic::engine::{BarQuery, Market, Resolution};
use trading_synthetic::Synthetic;

use crate::server::CLOCK_START;
use crate::stats;
use crate::Options;

/// One measured operation over the market and the catalog's symbols.
type Operation = Box<dyn Fn(&Market, &[String]) -> usize>;

struct Case {
    name: &'static str,
    /// Operations one call of `run` performs.
    ops: usize,
    /// Calls of `run` per timed run.
    reps: usize,
    /// Each timed run gets a market of its own, warmed up like a server that has just
    /// started (daily bars and today's minutes), so it measures a first request.
    cold: bool,
    /// Returns how many results it produced (0 means it measured nothing).
    run: Operation,
}

fn bars(market: &Market, symbol: &str, res: Resolution, count: usize) -> usize {
    let query = BarQuery {
        from_s: 0,
        to_s: CLOCK_START,
        count_back: Some(count),
        limit: 5000,
    };
    let now = CLOCK_START * 1000;
    market
        .bars(symbol, res, &query, now)
        .map_or(0, |p| p.bars.len())
}

fn cases() -> Vec<Case> {
    let res = |s: &str| Resolution::parse(s).expect("a resolution");
    vec![
        Case {
            name: "cold daily history, 26 symbols (new market each run)",
            ops: 26,
            reps: 1,
            cold: false,
            run: Box::new(|_, symbols| {
                Synthetic::builtin(42).market().warm_up(CLOCK_START * 1000);
                symbols.len()
            }),
        },
        Case {
            name: "5,000 one-minute bars (BTCUSD)",
            ops: 1,
            reps: 20,
            cold: false,
            run: Box::new(move |m, _| bars(m, "BTCUSD", res("1"), 5000)),
        },
        Case {
            name: "2,000 60-minute bars (AAPL)",
            ops: 1,
            reps: 20,
            cold: false,
            run: Box::new(move |m, _| bars(m, "AAPL", res("60"), 2000)),
        },
        Case {
            name: "2,000 60-minute bars (AAPL), first request",
            ops: 1,
            reps: 1,
            cold: true,
            run: Box::new(move |m, _| bars(m, "AAPL", res("60"), 2000)),
        },
        Case {
            name: "2,000 60-minute bars (BTCUSD)",
            ops: 1,
            reps: 20,
            cold: false,
            run: Box::new(move |m, _| bars(m, "BTCUSD", res("60"), 2000)),
        },
        Case {
            name: "2,000 60-minute bars (BTCUSD), first request",
            ops: 1,
            reps: 1,
            cold: true,
            run: Box::new(move |m, _| bars(m, "BTCUSD", res("60"), 2000)),
        },
        Case {
            name: "5,000 240-minute bars (AAPL)",
            ops: 1,
            reps: 10,
            cold: false,
            run: Box::new(move |m, _| bars(m, "AAPL", res("240"), 5000)),
        },
        Case {
            name: "5,000 240-minute bars (AAPL), first request",
            ops: 1,
            reps: 1,
            cold: true,
            run: Box::new(move |m, _| bars(m, "AAPL", res("240"), 5000)),
        },
        Case {
            name: "5,000 240-minute bars (BTCUSD)",
            ops: 1,
            reps: 10,
            cold: false,
            run: Box::new(move |m, _| bars(m, "BTCUSD", res("240"), 5000)),
        },
        Case {
            name: "5,000 240-minute bars (BTCUSD), first request",
            ops: 1,
            reps: 1,
            cold: true,
            run: Box::new(move |m, _| bars(m, "BTCUSD", res("240"), 5000)),
        },
        Case {
            name: "400 daily bars (AAPL)",
            ops: 1,
            reps: 200,
            cold: false,
            run: Box::new(move |m, _| bars(m, "AAPL", res("D"), 400)),
        },
        Case {
            name: "current one-minute bar, 26 symbols",
            ops: 26 * 100,
            reps: 1,
            cold: false,
            run: Box::new(move |m, symbols| {
                let mut n = 0;
                for minute in 0..100 {
                    let now = CLOCK_START * 1000 + minute * 60_000;
                    for s in symbols {
                        n += usize::from(matches!(m.current_bar(s, res("1"), now), Ok(Some(_))));
                    }
                }
                n
            }),
        },
        Case {
            name: "session open?, 26 symbols x 1 hour steps over a year",
            ops: 26 * 24 * 365,
            reps: 1,
            cold: false,
            run: Box::new(|m, symbols| {
                let mut n = 0;
                for s in symbols {
                    for hour in 0..24 * 365 {
                        let now = CLOCK_START * 1000 - hour * 3_600_000;
                        n += usize::from(m.is_session_open(s, now).unwrap_or(false));
                    }
                }
                n
            }),
        },
    ]
}

/// Prints the engine table: µs per operation, median of the runs.
pub fn run_all(o: &Options) -> bool {
    let synthetic = Synthetic::builtin(42);
    let market = synthetic.market();
    let symbols: Vec<String> = market.symbols().map(str::to_string).collect();
    market.warm_up(CLOCK_START * 1000);
    let runs = if o.quick { 1 } else { o.runs.max(5) };
    println!("Synthetic engine in-process, {runs} run(s), medians\n");
    stats::header(&["operation", "µs / op"], 1);
    let mut ok = true;
    for case in cases() {
        // One untimed run warms the caches that a long-running server has warm.
        let mut produced = if case.cold {
            0
        } else {
            (case.run)(market, &symbols)
        };
        let mut per_op = Vec::new();
        for _ in 0..runs {
            let fresh = case.cold.then(|| {
                let fresh = Synthetic::builtin(42);
                fresh.market().warm_up(CLOCK_START * 1000);
                fresh
            });
            let market = fresh.as_ref().map_or(market, |f| f.market());
            let start = Instant::now();
            for _ in 0..case.reps {
                produced = (case.run)(market, &symbols);
            }
            let ops = case.ops * case.reps;
            per_op.push(start.elapsed().as_secs_f64() * 1e6 / ops as f64);
        }
        // A run that produced nothing measured nothing.
        if produced == 0 {
            eprintln!("{}: produced nothing", case.name);
            ok = false;
        }
        stats::row(&[
            case.name.to_string(),
            format!("{:.3}", stats::median(per_op)),
        ]);
    }
    println!();
    ok
}
