//! Turns the market's current bars into updates for subscribed topics.
//!
//! Ticks at the configured interval, only over topics that have subscribers,
//! and publishes only what changed. When a topic's bar rolls over it first
//! publishes the closed bar's final state (what `GET /bars` returns for it
//! from then on), then the new bar.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::hub::{Hub, TopicKey};
use crate::clock::Clock;
use crate::market::{Bar, BarQuery, Market};

pub struct Broadcaster {
    pub hub: Arc<Hub>,
    pub market: Arc<Market>,
    pub clock: Clock,
    pub interval: Duration,
}

impl Broadcaster {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => self.publish_changes(self.clock.now_ms()),
                _ = shutdown.changed() => return,
            }
        }
    }

    pub fn publish_changes(&self, now_ms: i64) {
        for (key, last) in self.hub.active() {
            let Ok(Some(bar)) = self.market.current_bar(&key.symbol, key.resolution, now_ms) else {
                continue;
            };
            match last {
                Some(prev) if prev == bar => {}
                Some(prev) if prev.time < bar.time => {
                    if let Some(closed) = self.final_state(&key, prev.time, now_ms) {
                        if closed != prev {
                            self.hub.publish(&key, closed);
                        }
                    }
                    self.hub.publish(&key, bar);
                }
                _ => self.hub.publish(&key, bar),
            }
        }
    }

    /// The bar starting at `time` as the market has it now.
    fn final_state(&self, key: &TopicKey, time: i64, now_ms: i64) -> Option<Bar> {
        let from_s = time.div_euclid(1000);
        let query = BarQuery {
            from_s,
            to_s: from_s + 1,
            count_back: None,
            limit: 1,
        };
        let page = self
            .market
            .bars(&key.symbol, key.resolution, &query, now_ms)
            .ok()?;
        page.bars.into_iter().find(|b| b.time == time)
    }
}
