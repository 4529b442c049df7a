//! Whether a served store can answer, as the writer last found it: what
//! `/ready` and `/health` report and what a 503 says.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use trading_market::source::{Reason, Unhealthy};

use crate::plan::STUCK_AFTER;

#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    problem: Option<Unhealthy>,
    /// The problem came from a failed write: only a write that succeeds
    /// clears it (a read working says nothing about a full disk).
    from_write: bool,
    /// Since when the writer has been inside one transaction.
    busy_since: Option<Instant>,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store's problem now, if it has one: the writer's last finding,
    /// or a transaction that has not ended for [`STUCK_AFTER`].
    pub fn check(&self) -> Result<(), Unhealthy> {
        let state = self.state();
        if let Some(problem) = &state.problem {
            return Err(problem.clone());
        }
        match state.busy_since {
            Some(since) if since.elapsed() >= STUCK_AFTER => Err(Unhealthy {
                reason: Reason::Timeout,
                detail: format!(
                    "the store's writer has been inside one transaction for {} s (a lock held \
                     by another session? a disk that does not answer?)",
                    since.elapsed().as_secs()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Records what the writer found; true when that is a change (worth a
    /// log line).
    pub(super) fn set_problem(&self, problem: Option<Unhealthy>, from_write: bool) -> bool {
        let mut state = self.state();
        let changed = state.problem != problem;
        state.problem = problem;
        state.from_write = from_write && state.problem.is_some();
        changed
    }

    /// A read found the store malformed: readiness says so until a write
    /// goes through again.
    pub fn read_failed(&self, problem: Unhealthy) {
        if problem.reason == Reason::Damaged {
            self.set_problem(Some(problem), true);
        }
    }

    /// Whether the last problem was a failed write.
    pub(super) fn failing_writes(&self) -> bool {
        let state = self.state();
        state.problem.is_some() && state.from_write
    }

    pub(super) fn busy(&self) {
        self.state().busy_since = Some(Instant::now());
    }

    pub(super) fn idle(&self) {
        self.state().busy_since = None;
    }
}
