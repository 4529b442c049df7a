//! The paper broker as the server runs it: one [`Desk`] (the broker and
//! its idempotency keys), its ledger, and who is told of what changed.
//!
//! Where the desk's records go decides how durable it is:
//! * in memory (the synthetic market, no store): nothing is kept across a
//!   restart, and the server says so at start;
//! * a store: the desk lives with the store's writer, which applies each
//!   command and writes its record in the same transaction as the ingest
//!   around it, so a trade and the fills it causes commit together, and
//!   an order is answered only once its record is durable. At start (and
//!   after a transaction that failed) the desk is rebuilt from the ledger.
//!
//! Reads never show what a crash could take back: a reader notes how far
//! the desk had decided when it looked and waits until that much is
//! durable (in memory: at once). Updates go out after the commit, in
//! ledger order.

use std::sync::Arc;

use tokio::sync::broadcast;
use trading_broker::desk::{Answer, Command, Desk, Market, Record};
use trading_market::source::{Reason, Unhealthy};

use crate::ledger::Ledger;
pub use crate::ledger::{BrokerConfig, TradeError};
use crate::writer::Writer;

/// Where the desk's records go.
enum Backing {
    Memory,
    Store(Writer),
}

/// The paper broker's handle on the request path.
pub struct Trading {
    ledger: Arc<Ledger>,
    backing: Backing,
}

impl Trading {
    /// A desk whose records live in memory only.
    pub fn memory(config: BrokerConfig) -> Trading {
        let desk = Desk::new(trading_broker::broker::Broker::new(
            config.starting_cash,
            config.commission,
        ));
        Trading {
            ledger: Ledger::new(config, Some(desk)),
            backing: Backing::Memory,
        }
    }

    /// The desk of a store, living with its `writer`, which rebuilds it
    /// from the ledger.
    pub(crate) fn store(ledger: Arc<Ledger>, writer: Writer) -> Trading {
        Trading {
            ledger,
            backing: Backing::Store(writer),
        }
    }

    /// Whether what the desk acknowledges survives a restart.
    pub fn durable(&self) -> bool {
        matches!(self.backing, Backing::Store(_))
    }

    pub fn config(&self) -> BrokerConfig {
        self.ledger.config
    }

    /// Carries out `command`; answered once what it changed is durable.
    pub async fn command(&self, command: Command) -> Result<Answer, TradeError> {
        match &self.backing {
            Backing::Memory => {
                let (answer, records) = self
                    .ledger
                    .decide(|desk| {
                        let applied = desk.apply(command);
                        (applied.answer, applied.records)
                    })
                    .expect("a memory desk is always there");
                self.ledger.durable(records);
                answer.map_err(TradeError::Desk)
            }
            Backing::Store(writer) => writer.broker(command).await,
        }
    }

    /// The market as a source that must be asked for its prices shows it
    /// now (the synthetic market's; a store's prints come from its ingest,
    /// in its writer, and this does nothing there).
    pub fn observe(&self, market: Market) {
        if let Backing::Memory = self.backing {
            if let Some((_, records)) = self
                .ledger
                .decide(|desk| ((), desk.observe(market).into_iter().collect()))
            {
                self.ledger.durable(records);
            }
        }
    }

    /// The clock reached `now_ms`: DAY orders whose session closed end.
    pub async fn tick(&self, now_ms: i64) {
        match &self.backing {
            Backing::Memory => {
                if let Some((_, records)) = self
                    .ledger
                    .decide(|desk| ((), desk.tick(now_ms).into_iter().collect()))
                {
                    self.ledger.durable(records);
                }
            }
            Backing::Store(writer) => writer.broker_tick(now_ms).await,
        }
    }

    /// Reads the desk: `f`'s answer once everything it could have seen is
    /// durable.
    pub async fn read<R>(&self, f: impl FnOnce(&Desk) -> R) -> Result<R, TradeError> {
        let mut f = Some(f);
        let (answer, pos, epoch) = loop {
            let look = |desk: &Desk| (f.take().expect("looked once"))(desk);
            if let Some(seen) = self.ledger.look(look) {
                break seen;
            }
            match &self.backing {
                Backing::Memory => unreachable!("a memory desk is always there"),
                Backing::Store(writer) => writer.broker_restore().await?,
            }
        };
        if self.ledger.reached(pos, epoch).await {
            Ok(answer)
        } else {
            Err(TradeError::Unavailable(Unhealthy {
                reason: Reason::Unavailable,
                detail: "the store could not keep the broker's latest changes; retry".into(),
            }))
        }
    }

    /// Whether the desk knows where `symbol`'s market is (it has seen a
    /// print of it): a command then needs no quote from the source.
    pub fn knows_market(&self, symbol: &str) -> bool {
        self.ledger
            .look(|desk| desk.broker().last(symbol).is_some())
            .is_some_and(|(known, _, _)| known)
    }

    /// Every durable record from now on, in ledger order (a subscriber
    /// that falls more than a few thousand behind is told it lagged).
    pub fn updates(&self) -> broadcast::Receiver<Arc<Vec<Record>>> {
        self.ledger.subscribe()
    }
}
