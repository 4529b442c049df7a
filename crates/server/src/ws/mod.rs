//! Live bars over WebSocket at `/api/v1/ws`, as `specs/asyncapi.yaml`
//! describes them.
//!
//! * `connection`: one task per client (requests, replies, heartbeat, limits);
//! * `socket`: its TCP socket (frame-header watch, unread-bytes probe);
//! * `outbox`: its queued replies and its "a followed topic changed" flag;
//! * `hub`: topics, their newest states, and pull-based fan-out;
//! * `broadcaster`: clock-driven source changes -> updates (a pushing
//!   source publishes to the hub itself, see `source`);
//! * `quotes`: the quotes channel's board (each followed symbol's newest
//!   quote frame, computed once an interval for everyone);
//! * `accounts`: the private channels' followers, fed the paper broker's
//!   durable changes.

pub mod accounts;
mod broadcaster;
mod channels;
mod connection;
mod hub;
mod outbox;
mod quote_board;
mod socket;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slog::Logger;
use tokio::sync::{watch, Notify};

pub use broadcaster::Broadcaster;
pub use connection::{serve, MAX_MESSAGE_BYTES};
pub use hub::Hub;
pub use socket::{Socket, MAX_FRAGMENTS};

use crate::metrics::Metrics;
use trading_market::clock::Clock;
use trading_market::source::{DataSource, Live};

#[derive(Clone, Debug)]
pub struct Limits {
    pub heartbeat: Duration,
    pub max_lifespan: Duration,
    pub slow_client: Duration,
    pub max_subscriptions: usize,
    /// Bytes a client may leave unread before it counts as behind.
    pub send_backlog: usize,
    /// How often fast quote symbols are looked at (the broadcast interval);
    /// the others are looked at once a second, or at this, if slower.
    pub quote_interval: Duration,
}

/// Shared state of the WebSocket side.
pub struct WsState {
    pub hub: Arc<Hub>,
    pub source: Arc<dyn DataSource>,
    pub clock: Clock,
    pub limits: Limits,
    pub log: Logger,
    pub metrics: Arc<Metrics>,
    pub quotes: quote_board::QuoteBoard,
    /// The private channels' feed (None: the broker is not served, and
    /// `broker_off` says why).
    pub accounts: Option<Arc<accounts::AccountFeed>>,
    pub broker_off: Option<String>,
    shutdown: watch::Sender<bool>,
    open: AtomicUsize,
    all_closed: Notify,
}

impl WsState {
    /// `hub` is also the pushing source's update sink, so it is made first.
    pub fn new(
        hub: Arc<Hub>,
        source: Arc<dyn DataSource>,
        clock: Clock,
        limits: Limits,
        log: Logger,
        metrics: Arc<Metrics>,
        broker: &Result<Arc<trading_store::trading::Trading>, String>,
    ) -> WsState {
        WsState {
            accounts: broker
                .as_ref()
                .ok()
                .map(|t| accounts::AccountFeed::new(Arc::clone(t))),
            broker_off: broker.as_ref().err().cloned(),
            metrics,
            quotes: quote_board::QuoteBoard::default(),
            hub,
            source,
            clock,
            limits,
            log,
            shutdown: watch::Sender::new(false),
            open: AtomicUsize::new(0),
            all_closed: Notify::new(),
        }
    }

    /// Runs the broadcaster until shutdown, for a source whose bars change
    /// with the clock; a pushing source publishes its own changes.
    pub fn spawn_broadcaster(&self, interval: Duration) {
        if self.source.live() != Live::Clock {
            return;
        }
        let broadcaster = Broadcaster {
            hub: Arc::clone(&self.hub),
            source: Arc::clone(&self.source),
            clock: self.clock.clone(),
            interval,
            metrics: Arc::clone(&self.metrics),
        };
        tokio::spawn(broadcaster.run(self.shutdown.subscribe()));
    }

    /// Runs the private channels' feed until shutdown (`interval`: how
    /// often `equity` follows the market).
    pub fn spawn_accounts(&self, interval: Duration) {
        if let Some(feed) = &self.accounts {
            tokio::spawn(Arc::clone(feed).run(interval, self.shutdown.subscribe()));
        }
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    fn connection_opened(&self) {
        self.metrics.ws_connections.inc();
        self.open.fetch_add(1, Ordering::SeqCst);
    }

    fn connection_closed(&self) {
        self.metrics.ws_connections.dec();
        if self.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.all_closed.notify_waiters();
        }
    }

    /// Closes every connection with 1001 and waits (up to `grace`) until
    /// they are gone.
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, async {
            while self.open_connections() > 0 {
                let closed = self.all_closed.notified();
                if self.open_connections() == 0 {
                    break;
                }
                // Re-check periodically: a notify can race a new connection.
                let _ = tokio::time::timeout(Duration::from_millis(50), closed).await;
            }
        })
        .await;
    }
}
