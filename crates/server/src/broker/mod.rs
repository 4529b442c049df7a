//! The server's side of the paper broker (its desk and ledger are
//! `trading_store::trading`; its rules are `trading_broker`):
//! * `feed`: its clock, and the synthetic market's prices as prints;
//! * `wire`: its state as TradingView's wire types, for REST and the
//!   private channels (`ws::accounts`).

pub mod feed;
pub mod wire;

pub use feed::spawn_feed;
