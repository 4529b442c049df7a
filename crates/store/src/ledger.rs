//! What the paper broker's handle on the request path (`trading`) and the
//! store's writer (`writer::broker`) share: the desk, how far its records
//! are decided and durable, and the channel its updates go out on.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{broadcast, oneshot, watch};
use trading_broker::desk::{Answer, Command, Desk, DeskError, Record};
use trading_broker::rules::SymbolRules;
use trading_broker::units::Cash;
use trading_market::source::Unhealthy;

/// How accounts start and what a fill costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    pub starting_cash: Cash,
    pub commission: Cash,
}

/// Why a broker command or read got no answer from the desk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeError {
    /// The command did nothing: refused, not found, a reused key.
    Desk(DeskError),
    /// The ledger cannot be written or read now (503), with its class.
    Unavailable(Unhealthy),
}

/// How far the ledger is durable: `pos` records since start, under the
/// desk of `epoch` (a new epoch each time the desk is rebuilt, which takes
/// back what was decided but not durable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Durable {
    pos: u64,
    epoch: u64,
}

struct Ledgered {
    /// None until rebuilt from the ledger (a store), or after a
    /// transaction that failed took back what it had decided.
    desk: Option<Desk>,
    /// Records decided (the durable ones and those waiting for a commit).
    decided: u64,
}

/// What the request path and the store's writer share.
pub struct Ledger {
    pub config: BrokerConfig,
    state: Mutex<Ledgered>,
    durable: watch::Sender<Durable>,
    updates: broadcast::Sender<Arc<Vec<Record>>>,
}

/// Records waiting in the update channel per subscriber before it lags
/// (and re-reads the state over REST).
const UPDATES_BACKLOG: usize = 4096;

impl Ledger {
    /// The ledger of a store's desk, which its writer rebuilds.
    pub(crate) fn for_store(config: BrokerConfig) -> Arc<Ledger> {
        Ledger::new(config, None)
    }

    pub(crate) fn new(config: BrokerConfig, desk: Option<Desk>) -> Arc<Ledger> {
        let (durable, _) = watch::channel(Durable { pos: 0, epoch: 0 });
        let (updates, _) = broadcast::channel(UPDATES_BACKLOG);
        Arc::new(Ledger {
            config,
            state: Mutex::new(Ledgered { desk, decided: 0 }),
            durable,
            updates,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Ledgered> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the desk is there (rebuilt from the ledger).
    pub(crate) fn ready(&self) -> bool {
        self.lock().desk.is_some()
    }

    /// Serves `desk` (rebuilt from the ledger): what was decided and not
    /// durable is gone, and readers waiting for it are told.
    pub(crate) fn install(&self, desk: Desk) {
        let mut state = self.lock();
        state.desk = Some(desk);
        let durable = *self.durable.borrow();
        state.decided = durable.pos;
        self.durable.send_replace(Durable {
            pos: durable.pos,
            epoch: durable.epoch + 1,
        });
    }

    /// A transaction that had decided records failed: the desk is rebuilt
    /// before its next use.
    pub(crate) fn lost(&self) {
        let mut state = self.lock();
        state.desk = None;
        let durable = *self.durable.borrow();
        state.decided = durable.pos;
        self.durable.send_replace(Durable {
            pos: durable.pos,
            epoch: durable.epoch + 1,
        });
    }

    /// Runs `f` on the desk (None if it is not there), counting the
    /// records it decided.
    pub(crate) fn decide<R>(
        &self,
        f: impl FnOnce(&mut Desk) -> (R, Vec<Record>),
    ) -> Option<(R, Vec<Record>)> {
        let mut state = self.lock();
        let (r, records) = f(state.desk.as_mut()?);
        state.decided += records.len() as u64;
        Some((r, records))
    }

    /// `records` are durable (committed, or kept in memory): readers
    /// waiting for them go on, and subscribers hear of them, in order.
    pub(crate) fn durable(&self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        self.durable.send_modify(|d| d.pos += records.len() as u64);
        let _ = self.updates.send(Arc::new(records));
    }

    /// The desk the stored records (JSON, oldest first) leave, trading
    /// `rules` (every symbol the store serves).
    pub(crate) fn rebuild(
        &self,
        rules: Vec<(String, SymbolRules)>,
        stored: Vec<String>,
    ) -> Result<Desk, String> {
        let mut records = Vec::with_capacity(stored.len());
        for (i, text) in stored.iter().enumerate() {
            let record: Record = serde_json::from_str(text)
                .map_err(|e| format!("the broker's ledger entry {} cannot be read: {e}", i + 1))?;
            records.push(record);
        }
        Ok(Desk::restore(
            self.config.starting_cash,
            self.config.commission,
            rules,
            records,
        ))
    }

    /// Looks at the desk: `f`'s answer, how far the desk had decided, and
    /// the epoch it looked in; None while the desk is being rebuilt.
    pub(crate) fn look<R>(&self, f: impl FnOnce(&Desk) -> R) -> Option<(R, u64, u64)> {
        let state = self.lock();
        let desk = state.desk.as_ref()?;
        let epoch = self.durable.borrow().epoch;
        Some((f(desk), state.decided, epoch))
    }

    /// Waits until `pos` records are durable; false when the desk of
    /// `epoch` was rebuilt first (what it had decided was taken back).
    pub(crate) async fn reached(&self, pos: u64, epoch: u64) -> bool {
        let mut durable = self.durable.subscribe();
        durable
            .wait_for(|d| d.pos >= pos || d.epoch != epoch)
            .await
            .map(|d| d.epoch == epoch)
            .unwrap_or(false)
    }

    /// Every durable record from now on, in ledger order.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Record>>> {
        self.updates.subscribe()
    }
}

/// A broker command waiting for the store's writer.
pub(crate) struct BrokerJob {
    pub command: Command,
    pub reply: oneshot::Sender<Result<Answer, TradeError>>,
}
