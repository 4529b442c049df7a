//! The paper broker's clock and, for a market that must be asked for its
//! prices (the synthetic one), its market feed: every broadcast interval,
//! DAY orders whose session closed end, and each symbol with resting
//! orders or an open position is asked for its quote, which the desk takes
//! as a print. A store's prints come from its ingest instead, inside the
//! writer (`trading_store::trading`).

use std::sync::Arc;
use std::time::Duration;

use trading_market::calendar::TradingCalendar;
use trading_market::clock::Clock;
use trading_market::source::DataSource;
use trading_store::trading::Trading;

/// Runs the broker's clock (and feed) until the runtime stops.
pub fn spawn_feed(
    trading: Arc<Trading>,
    source: Arc<dyn DataSource>,
    clock: Clock,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let now = clock.now_ms();
            trading.tick(now).await;
            if !trading.durable() {
                feed(&trading, &*source, now).await;
            }
        }
    });
}

/// The quotes of the symbols the desk needs, as prints.
async fn feed(trading: &Trading, source: &dyn DataSource, now_ms: i64) {
    let Ok(active) = trading.read(|desk| desk.broker().active_symbols()).await else {
        return;
    };
    let catalog = source.catalog();
    for ticker in active {
        let Some(symbol) = catalog.lookup(&ticker) else {
            continue;
        };
        // A closed market prints nothing (its quote is the last close).
        let open = TradingCalendar::new(&symbol.info.session, &symbol.info.timezone)
            .map(|c| c.day_containing(now_ms).is_some())
            .unwrap_or(true);
        if !open {
            continue;
        }
        let Ok(Some(quote)) = source.quote(symbol, now_ms).await else {
            continue;
        };
        if let Some(market) = super::wire::market_of(&ticker, &quote, Some(now_ms)) {
            trading.observe(market);
        }
    }
}
