//! The paper broker's domain, with no I/O: what an order is and which
//! orders a symbol takes ([`rules`]), how resting orders fill from the
//! prices the market prints ([`matcher`]), and what fills do to an account
//! ([`account`]). Every amount is an exact decimal ([`units`]): a price on
//! the symbol's tick, a quantity on its step, cash to the last digit.
//!
//! The rules are written in `docs/BROKER.md`; each is a test here.
//! Everything is deterministic: the same prints and the same orders give
//! the same fills.

pub mod account;
pub mod broker;
pub mod desk;
pub mod matcher;
pub mod order;
pub mod rules;
pub mod units;
