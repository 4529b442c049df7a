//! Orders as TradingView's broker API names them: its numeric wire values
//! for status, type and side, so its Trading Platform maps one to one.

use serde::{Deserialize, Serialize};

use crate::units::{Price, Qty};

/// An order's id, unique per broker (not per account).
pub type OrderId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy = 1,
    Sell = -1,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// +1 for a buy, -1 for a sell: the sign a fill gives a position.
    pub fn sign(self) -> i64 {
        self as i64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderType {
    Limit = 1,
    Market = 2,
    Stop = 3,
    StopLimit = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    Canceled = 1,
    Filled = 2,
    /// Waiting for something before it can work: a bracket until its
    /// parent fills.
    Inactive = 3,
    Placing = 4,
    Rejected = 5,
    Working = 6,
}

impl Status {
    /// Filled, canceled and rejected are final: nothing moves an order out
    /// of them.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Canceled | Status::Filled | Status::Rejected)
    }
}

/// Time in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Duration {
    /// Good till cancelled.
    Gtc,
    /// Expires at the close of the session it was placed in.
    Day,
    /// Immediate or cancel: what fills at once, the rest cancelled.
    Ioc,
    /// Fill or kill: all at once, or nothing.
    Fok,
}

/// What a bracket belongs to (TradingView's `parentType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParentType {
    Order = 1,
    Position = 2,
}

/// A bracket's parent: the order it waits for, or the position (named by
/// its symbol) it protects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Parent {
    Order(OrderId),
    Position(String),
}

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub symbol: String,
    pub order_type: OrderType,
    pub side: Side,
    pub qty: Qty,
    pub limit_price: Option<Price>,
    pub stop_price: Option<Price>,
    pub duration: Duration,
    pub take_profit: Option<Price>,
    pub stop_loss: Option<Price>,
    /// A trailing stop's distance from the best price since it started: a
    /// stop order's own, or its stop-loss bracket's.
    pub trailing_stop: Option<Price>,
    /// When a DAY order expires: the close of the session it was placed
    /// in, filled in by whoever knows the symbol's calendar (None: not a
    /// DAY order, or a market that never closes).
    pub expires_at_ms: Option<i64>,
}

impl OrderRequest {
    /// An order of `order_type` with no prices, brackets or expiry, good
    /// till cancelled: what the caller then fills in.
    pub fn new(symbol: &str, order_type: OrderType, side: Side, qty: Qty) -> OrderRequest {
        OrderRequest {
            symbol: symbol.to_string(),
            order_type,
            side,
            qty,
            limit_price: None,
            stop_price: None,
            duration: Duration::Gtc,
            take_profit: None,
            stop_loss: None,
            trailing_stop: None,
            expires_at_ms: None,
        }
    }
}

/// An order as the broker keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub request: OrderRequest,
    pub status: Status,
    pub filled_qty: Qty,
    /// The average price of its fills (None before the first).
    pub avg_price: Option<Price>,
    /// A stop that triggered and now rests as a limit (stop-limit), or
    /// fills at the next print (stop).
    pub triggered: bool,
    /// Why it ended as it did, when that is not plain (expired, cancelled
    /// with its parent or its position).
    pub message: Option<String>,
    /// A bracket's parent (None: an order of its own).
    pub parent: Option<Parent>,
}

impl Order {
    pub fn new(id: OrderId, request: OrderRequest) -> Order {
        Order {
            id,
            request,
            status: Status::Placing,
            filled_qty: Qty::ZERO,
            avg_price: None,
            triggered: false,
            message: None,
            parent: None,
        }
    }

    pub fn remaining(&self) -> Qty {
        self.request.qty - self.filled_qty
    }
}
