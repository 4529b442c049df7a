//! The broker's state as TradingView's broker API puts it on the wire
//! (`specs/openapi.yaml`, the same types on the private channels): what the
//! REST handlers answer and the WebSocket side sends.

use trading_broker::broker::Execution as Fill;
use trading_broker::desk::Desk;
use trading_broker::order::{Duration, Order as Kept, OrderType as Type, Parent};
use trading_broker::rules::SymbolRules;
use trading_broker::units::{Cash, Price, Qty};
use trading_pro::types::*;

/// The account of the one user without authentication.
pub const DEMO_ACCOUNT: &str = "demo";

/// An order as TradingView's `Order`.
pub fn wire_order(o: &Kept, rules: Option<&SymbolRules>) -> Order {
    let r = &o.request;
    let (parent_id, parent_type) = match &o.parent {
        Some(Parent::Order(id)) => (Some(id.to_string()), Some(1)),
        Some(Parent::Position(symbol)) => (Some(symbol.clone()), Some(2)),
        None => (None, None),
    };
    let pips = |d: Price| rules.map(|rules| d.0 as f64 / rules.tick.0.max(1) as f64);
    Order {
        id: o.id.to_string(),
        symbol: r.symbol.clone(),
        type_: OrderType::try_from(r.order_type as i32).expect("a wire order type"),
        side: Side::try_from(r.side as i32).expect("a wire side"),
        qty: r.qty.to_f64(),
        status: OrderStatus::try_from(o.status as i32).expect("a wire status"),
        limit_price: r.limit_price.map(Price::to_f64),
        stop_price: r.stop_price.map(Price::to_f64),
        take_profit: r.take_profit.map(Price::to_f64),
        stop_loss: r.stop_loss.map(Price::to_f64),
        trailing_stop_pips: r.trailing_stop.and_then(pips),
        duration: OrderDuration {
            type_: match r.duration {
                Duration::Gtc => DurationType::Gtc,
                Duration::Day => DurationType::Day,
                Duration::Ioc => DurationType::Ioc,
                Duration::Fok => DurationType::Fok,
            },
        },
        expires_at: r.expires_at_ms,
        filled_qty: o.filled_qty.to_f64(),
        avg_price: o.avg_price.map(Price::to_f64),
        triggered: (r.order_type == Type::StopLimit).then_some(o.triggered),
        parent_id,
        parent_type: parent_type.map(|t| ParentType::try_from(t).expect("a wire parent type")),
        message: o.message.as_ref().map(|text| OrderMessage {
            type_: OrderMessageType::Info,
            text: text.clone(),
        }),
    }
}

/// The account's position in `symbol` as TradingView's `Position` (qty 0:
/// none), marked at the market's last price.
pub fn wire_position(desk: &Desk, account: &str, symbol: &str) -> Position {
    let held = desk
        .broker()
        .peek_account(account)
        .positions
        .get(symbol)
        .copied()
        .unwrap_or_default();
    wire_position_at(desk, account, symbol, held)
}

/// The position `held` (as an event left it) as TradingView's `Position`.
pub fn wire_position_at(
    desk: &Desk,
    account: &str,
    symbol: &str,
    held: trading_broker::account::Position,
) -> Position {
    let broker = desk.broker();
    let last = broker.last(symbol);
    let unrealized = match last {
        Some(mark) if held.qty != 0 => Cash::notional(mark, Qty(held.qty)) - held.cost,
        _ => Cash::ZERO,
    };
    let brackets = broker.position_brackets(account, symbol);
    let bracket = |t: Type| {
        brackets
            .iter()
            .find(|o| o.request.order_type == t)
            .and_then(|o| o.request.limit_price.or(o.request.stop_price))
            .map(Price::to_f64)
    };
    Position {
        id: symbol.to_string(),
        symbol: symbol.to_string(),
        qty: Qty(held.qty.abs()).to_f64(),
        side: Side::try_from(if held.qty < 0 { -1 } else { 1 }).expect("a wire side"),
        avg_price: held.avg_price().map_or(0.0, Price::to_f64),
        last: last.map(Price::to_f64),
        unrealized_pl: unrealized.to_f64(),
        take_profit: bracket(Type::Limit),
        stop_loss: bracket(Type::Stop),
    }
}

/// A fill as TradingView's `Execution`.
pub fn wire_execution(x: &Fill) -> Execution {
    let signed = Cash::notional(x.price, Qty(x.qty.0 * x.side.sign()));
    Execution {
        id: format!("{}-1", x.order),
        order_id: x.order.to_string(),
        symbol: x.symbol.clone(),
        price: x.price.to_f64(),
        qty: x.qty.to_f64(),
        side: Side::try_from(x.side as i32).expect("a wire side"),
        time: x.time_ms,
        commission: x.commission.to_f64(),
        net_amount: (-signed - x.commission).to_f64(),
    }
}

/// The account's figures, marked at the market's last prices.
pub fn wire_account(desk: &Desk, account: &str, starting_cash: Cash) -> AccountInfo {
    let broker = desk.broker();
    let a = broker.peek_account(account);
    let mark = |s: &str| broker.last(s);
    let equity = a.equity(&mark);
    let margin = broker.margin_used(account);
    AccountInfo {
        id: account.to_string(),
        name: if account == DEMO_ACCOUNT {
            "Demo account (paper)".into()
        } else {
            format!("{account} (paper)")
        },
        currency: "USD".into(),
        balance: a.cash.to_f64(),
        equity: equity.to_f64(),
        unrealized_pl: a.unrealized(&mark).to_f64(),
        realized_pl: a.realized.to_f64(),
        commission_paid: a.commission_paid.to_f64(),
        margin_used: margin.to_f64(),
        buying_power: (equity - margin).to_f64(),
        starting_cash: starting_cash.to_f64(),
        seq: broker.seq(account) as i64,
    }
}

/// A source's quote as the desk takes it: its last price (with `time_ms`
/// when the market printed it then) and its bid and ask when it has both;
/// None when the last price has more than 8 decimal places.
pub fn market_of(
    ticker: &str,
    quote: &trading_market::source::Quote,
    time_ms: Option<i64>,
) -> Option<trading_broker::desk::Market> {
    let last = Price::from_f64(quote.last)?;
    let bid_ask = match (quote.bid, quote.ask) {
        (Some(bid), Some(ask)) => Price::from_f64(bid).zip(Price::from_f64(ask)),
        _ => None,
    };
    Some(trading_broker::desk::Market {
        symbol: ticker.to_string(),
        time_ms,
        last,
        quote: bid_ask,
    })
}
