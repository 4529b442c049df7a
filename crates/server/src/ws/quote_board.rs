//! The quotes channel's shared side: each followed symbol's quote, computed
//! at most once per broadcast interval for every connection together, kept
//! as the encoded `quotes.update` frame with a version that moves when the
//! quote changes.
//!
//! Connections pull from the board on their own quote tick (see
//! `connection`): a fast symbol every interval, the others at most once a
//! second. So a thousand watchlists on AAPL cost one quote computation and
//! one JSON encoding an interval, and a connection that was behind simply
//! sends the newest version when it catches up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::{Duration, Instant};
use trading_pro::messages::{QuoteData, ServerMessage};

use trading_market::catalog::Symbol;
use trading_market::source::DataSource;

/// A symbol's newest quote frame.
#[derive(Clone)]
pub struct QuoteFrame {
    /// Moves whenever the quote's values change.
    pub version: u64,
    pub frame: Arc<str>,
}

struct Entry {
    computed: Instant,
    /// The quote's JSON, to tell a change from a recomputation.
    values: String,
    current: QuoteFrame,
}

#[derive(Default)]
pub struct QuoteBoard {
    entries: Mutex<HashMap<String, Entry>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl QuoteBoard {
    /// The symbol's quote as of at most `max_age` ago (computed now if it
    /// is older).
    pub async fn current(
        &self,
        source: &dyn DataSource,
        symbol: &Symbol,
        now_ms: i64,
        max_age: Duration,
    ) -> QuoteFrame {
        let ticker = symbol.ticker();
        if let Some(e) = lock(&self.entries).get(ticker) {
            if e.computed.elapsed() < max_age {
                return e.current.clone();
            }
        }
        let rest = crate::quotes::quote(source, symbol, now_ms).await;
        // The REST quote's JSON is the update's payload: one schema for
        // both (a contract test holds the two specs to it).
        let values = serde_json::to_string(&rest).unwrap_or_default();
        let message = serde_json::from_str::<QuoteData>(&values)
            .map(ServerMessage::QuotesUpdate)
            .map(|m| m.encode(None));
        let mut entries = lock(&self.entries);
        let entry = entries.entry(ticker.to_string());
        let entry = match entry {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let e = o.get_mut();
                e.computed = Instant::now();
                if e.values != values {
                    if let Ok(frame) = message {
                        e.current = QuoteFrame {
                            version: e.current.version + 1,
                            frame: frame.into(),
                        };
                    }
                    e.values = values;
                }
                e.current.clone()
            }
            std::collections::hash_map::Entry::Vacant(v) => {
                let frame = message.unwrap_or_default();
                v.insert(Entry {
                    computed: Instant::now(),
                    values,
                    current: QuoteFrame {
                        version: 1,
                        frame: frame.into(),
                    },
                })
                .current
                .clone()
            }
        };
        entry
    }

    /// Forgets symbols nobody has asked about for a while (called by the
    /// connection side now and then), so the board holds only what is
    /// followed.
    pub fn sweep(&self, idle: Duration) {
        lock(&self.entries).retain(|_, e| e.computed.elapsed() < idle);
    }
}
