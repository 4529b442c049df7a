//! Turns the market's current bars into updates for subscribed topics.
//!
//! Every topic with subscribers is looked at once per interval, and only what
//! changed is published. Topics are spread over the interval in slots of a
//! few milliseconds rather than all published at one instant: one burst of
//! every topic to every subscriber would queue the last subscriber behind
//! all the others (at 10,000 connections, for a good part of the interval),
//! while a slot's share goes out at once on an otherwise idle server. When a topic's bar rolls over it first
//! publishes the closed bar's final state (what `GET /bars` returns for it
//! from then on), then the new bar.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::hub::{Hub, TopicKey};
use trading_market::clock::Clock;
use trading_market::source::{Bar, BarQuery, DataSource};

/// A slot lasts at least this long...
const MIN_SLOT: Duration = Duration::from_millis(5);
/// ...and an interval has at most this many.
const MAX_SLOTS: u32 = 64;

/// How many slots an interval is split into.
pub fn slots(interval: Duration) -> u32 {
    let fit = interval.as_micros() / MIN_SLOT.as_micros();
    fit.clamp(1, u128::from(MAX_SLOTS)) as u32
}

pub struct Broadcaster {
    pub hub: Arc<Hub>,
    pub source: Arc<dyn DataSource>,
    pub clock: Clock,
    pub interval: Duration,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Broadcaster {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let slots = slots(self.interval);
        let mut tick = tokio::time::interval(self.interval / slots);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut slot = 0;
        loop {
            tokio::select! {
                due = tick.tick() => {
                    self.publish_changes(self.clock.now_ms(), slot, slots).await;
                    // Late ticks (a busy runtime) and slow passes both
                    // show here: what subscribers wait beyond the interval.
                    self.metrics.broadcast_lag.observe(due.elapsed().as_secs_f64());
                    slot = (slot + 1) % slots;
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn publish_changes(&self, now_ms: i64, slot: u32, slots: u32) {
        let catalog = self.source.catalog();
        for topic in self.hub.active(u64::from(slot), u64::from(slots)) {
            let key = &topic.key;
            let Some(symbol) = catalog.lookup(&key.symbol) else {
                continue;
            };
            let Ok(Some(bar)) = self
                .source
                .current_bar(symbol, key.resolution, now_ms)
                .await
            else {
                continue;
            };
            match topic.last_bar() {
                Some(prev) if prev == bar => {}
                Some(prev) if prev.time < bar.time => {
                    if let Some(closed) = self.final_state(symbol, key, prev.time, now_ms).await {
                        topic.publish(closed);
                    }
                    topic.publish(bar);
                }
                _ => topic.publish(bar),
            }
        }
    }

    /// The bar starting at `time` as the source has it now.
    async fn final_state(
        &self,
        symbol: &trading_market::catalog::Symbol,
        key: &TopicKey,
        time: i64,
        now_ms: i64,
    ) -> Option<Bar> {
        let from_s = time.div_euclid(1000);
        let query = BarQuery {
            from_s,
            to_s: from_s + 1,
            count_back: None,
            limit: 1,
        };
        let page = self
            .source
            .bars(symbol, key.resolution, &query, now_ms)
            .await
            .ok()?;
        page.bars.into_iter().find(|b| b.time == time)
    }
}
