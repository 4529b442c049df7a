//! The `broker` tag: the caller's paper-trading account. Each handler
//! turns the wire request into a desk command or read
//! (`trading_broker::desk`), and the desk's state into TradingView's wire
//! types. Whose account: the token's `sub` with authentication on, else
//! the one demo account.

use std::sync::Arc;

use trading_broker::broker::BrokerError;
use trading_broker::desk::{Action, Answer, Command, Desk, DeskError, Market};
use trading_broker::order::{
    Duration, Order as Kept, OrderId, OrderRequest, OrderType as Type, Side as Way, Status,
};
use trading_broker::rules::SymbolRules;
use trading_broker::units::{Cash, Price, Qty};
use trading_market::calendar::TradingCalendar;
use trading_market::catalog::Symbol;
use trading_pro::extract::{ApiBody, ApiHeader, ApiPath, ApiQuery};
use trading_pro::service::Request;
use trading_pro::types::*;
use trading_store::trading::{TradeError, Trading};

use super::{principal, respond, visible, Response};
use crate::broker::wire::{
    market_of, wire_account, wire_execution, wire_order, wire_position, DEMO_ACCOUNT,
};
use crate::context::AppContext;
use crate::error::ApiError;

/// The account the request trades: its token's `sub`, else the demo one.
fn account(rqctx: &Request<AppContext>) -> String {
    principal(rqctx).map_or_else(|| DEMO_ACCOUNT.to_string(), |p| p.subject.clone())
}

fn trading(ctx: &AppContext) -> Result<&Arc<Trading>, ApiError> {
    ctx.broker
        .as_ref()
        .map_err(|why| ApiError::BrokerUnavailable(why.clone()))
}

/// A symbol the caller may see, with its trading rules.
fn tradable(rqctx: &Request<AppContext>, name: &str) -> Result<(Symbol, SymbolRules), ApiError> {
    let catalog = rqctx.context().source.catalog();
    let symbol = catalog
        .lookup(name)
        .filter(|s| visible(rqctx, s))
        .ok_or_else(|| ApiError::UnknownSymbol(name.to_string()))?
        .clone();
    let rules = SymbolRules::of_symbol(&symbol.info).ok_or_else(|| ApiError::InvalidOrder {
        field: "symbol".into(),
        message: format!(
            "{} does not trade here: its tick or volume step is finer than 8 decimal places",
            symbol.info.ticker
        ),
    })?;
    Ok((symbol, rules))
}

/// The market as the source quotes it now, for a command.
async fn market(ctx: &AppContext, symbol: &Symbol, now_ms: i64) -> Option<Market> {
    let quote = ctx.source.quote(symbol, now_ms).await.ok().flatten()?;
    // A market that moves with the clock printed this now; a store's
    // prints reach the desk as they are ingested.
    let live = ctx.source.live() == trading_market::source::Live::Clock;
    market_of(&symbol.info.ticker, &quote, live.then_some(now_ms))
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidOrder {
        field: field.to_string(),
        message: message.into(),
    }
}

fn price(field: &str, v: Option<f64>) -> Result<Option<Price>, ApiError> {
    v.map(|v| {
        Price::from_f64(v).ok_or_else(|| {
            invalid(
                field,
                format!("{v} is not a price with at most 8 decimal places"),
            )
        })
    })
    .transpose()
}

fn quantity(field: &str, v: f64) -> Result<Qty, ApiError> {
    Qty::from_f64(v).ok_or_else(|| {
        invalid(
            field,
            format!("{v} is not a quantity with at most 8 decimal places"),
        )
    })
}

/// An order id as the wire has it; one that cannot be ours is not found.
fn order_id(text: &str) -> Result<OrderId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::OrderNotFound(format!("no order {text:?} in this account")))
}

fn trade_error(e: TradeError) -> ApiError {
    match e {
        TradeError::Unavailable(why) => ApiError::Unavailable(why),
        TradeError::Desk(DeskError::KeyReused(m)) => ApiError::KeyReused(m),
        TradeError::Desk(DeskError::Broker(e)) => match e {
            BrokerError::Refused(r) => invalid(r.field, r.message),
            BrokerError::NotFound(id) => {
                ApiError::OrderNotFound(format!("no order \"{id}\" in this account"))
            }
            BrokerError::Final(id, status) => ApiError::OrderFinal(format!(
                "order {id} is {} already: a filled, cancelled or rejected order cannot change",
                status_name(status)
            )),
            BrokerError::NoPosition(s) => {
                ApiError::PositionNotFound(format!("no position in {s} in this account"))
            }
            BrokerError::UnknownSymbol(s) => ApiError::UnknownSymbol(s),
        },
    }
}

fn status_name(s: Status) -> &'static str {
    match s {
        Status::Canceled => "cancelled",
        Status::Filled => "filled",
        Status::Inactive => "inactive",
        Status::Placing => "placing",
        Status::Rejected => "rejected",
        Status::Working => "working",
    }
}

/// When a DAY order placed at `now_ms` expires: the close of the session
/// it is placed in, or of the next one when the market is closed.
fn session_close(calendar: &TradingCalendar, now_ms: i64) -> Option<i64> {
    if let Some(day) = calendar.day_containing(now_ms) {
        return Some(day.end_ms());
    }
    let today = now_ms.div_euclid(86_400_000);
    (today..today + 14)
        .filter_map(|date| calendar.day(date))
        .find(|day| day.start_ms > now_ms)
        .map(|day| day.end_ms())
}

/// The order a wire `PreOrder` asks for, checked for what the wire alone
/// can tell (the desk checks the rest against the symbol and the market).
fn order_request(
    body: &PlaceOrderRequest,
    symbol: &Symbol,
    rules: &SymbolRules,
    now_ms: i64,
) -> Result<OrderRequest, ApiError> {
    let order_type = match *body.type_ {
        1 => Type::Limit,
        2 => Type::Market,
        3 => Type::Stop,
        _ => Type::StopLimit,
    };
    let side = if *body.side == 1 { Way::Buy } else { Way::Sell };
    let mut r = OrderRequest::new(
        &symbol.info.ticker,
        order_type,
        side,
        quantity("qty", body.qty)?,
    );
    r.limit_price = price("limitPrice", body.limit_price)?;
    r.stop_price = price("stopPrice", body.stop_price)?;
    r.take_profit = price("takeProfit", body.take_profit)?;
    r.stop_loss = price("stopLoss", body.stop_loss)?;
    if let Some(pips) = body.trailing_stop_pips {
        if !(pips.is_finite() && pips >= 1.0 && pips.fract() == 0.0 && pips <= 1e9) {
            return Err(invalid(
                "trailingStopPips",
                format!("must be a whole number of pips (ticks) of at least 1, got {pips}"),
            ));
        }
        r.trailing_stop = Some(Price(rules.tick.0.saturating_mul(pips as i64)));
    }
    r.duration = match body.duration.as_ref().map(|d| d.type_) {
        None | Some(DurationType::Gtc) => Duration::Gtc,
        Some(DurationType::Day) => Duration::Day,
        Some(DurationType::Ioc) => Duration::Ioc,
        Some(DurationType::Fok) => Duration::Fok,
    };
    let calendar = TradingCalendar::new(&symbol.info.session, &symbol.info.timezone).ok();
    let open = calendar
        .as_ref()
        .is_none_or(|c| c.day_containing(now_ms).is_some());
    let at_once = order_type == Type::Market || matches!(r.duration, Duration::Ioc | Duration::Fok);
    if !open && at_once {
        return Err(invalid(
            "type",
            format!(
                "the market for {} is closed now: a market, IOC or FOK order cannot fill; \
                 place a limit or stop order (GTC or DAY) to wait for the open",
                symbol.info.ticker
            ),
        ));
    }
    if r.duration == Duration::Day {
        r.expires_at_ms = calendar.and_then(|c| session_close(&c, now_ms));
    }
    Ok(r)
}

/// Runs `action` for the caller with the symbol's rules and market.
async fn command(
    rqctx: &Request<AppContext>,
    action: Action,
    symbol: Option<(&Symbol, &SymbolRules)>,
) -> Result<(Arc<Trading>, String, Answer), ApiError> {
    let ctx = rqctx.context();
    let trading = Arc::clone(trading(ctx)?);
    let account = account(rqctx);
    let now_ms = ctx.clock.now_ms();
    // A store's prints reach the desk as they are ingested: its quote is
    // needed only by a desk that has seen none of the symbol's yet (after
    // a restart). The synthetic market's is a print at the clock.
    let pushed = ctx.source.live() == trading_market::source::Live::Pushed;
    let market = match symbol {
        Some((s, _)) if pushed && trading.knows_market(&s.info.ticker) => None,
        Some((s, _)) => market(ctx, s, now_ms).await,
        None => None,
    };
    let command = Command {
        account: account.clone(),
        now_ms,
        action,
        rules: symbol.map(|(s, r)| (s.info.ticker.clone(), r.clone())),
        market,
    };
    let answer = trading.command(command).await.map_err(trade_error)?;
    Ok((trading, account, answer))
}

/// Runs `action`, which answers with an order, and reads that order back.
async fn order_command(
    rqctx: &Request<AppContext>,
    action: Action,
    symbol: Option<(&Symbol, &SymbolRules)>,
) -> Result<Order, ApiError> {
    let (trading, account, answer) = command(rqctx, action, symbol).await?;
    let Answer::Order(id) = answer else {
        unreachable!("the action answers with an order")
    };
    trading
        .read(|desk| order_of(desk, &account, id))
        .await
        .map_err(trade_error)?
}

/// Reads the desk for the caller once what it shows is durable.
async fn read<R>(
    rqctx: &Request<AppContext>,
    f: impl FnOnce(&Desk, &str) -> R,
) -> Result<R, ApiError> {
    let trading = Arc::clone(trading(rqctx.context())?);
    let account = account(rqctx);
    trading
        .read(|desk| f(desk, &account))
        .await
        .map_err(trade_error)
}

fn order_of(desk: &Desk, account: &str, id: OrderId) -> Result<Order, ApiError> {
    let broker = desk.broker();
    let order = broker
        .order(account, id)
        .ok_or_else(|| ApiError::OrderNotFound(format!("no order \"{id}\" in this account")))?;
    Ok(wire_order(order, broker.rules(&order.request.symbol)))
}

pub async fn place_order(
    rqctx: Request<AppContext>,
    headers: ApiHeader<PlaceOrderHeaders>,
    body: ApiBody<PlaceOrderRequest>,
) -> Response<PlaceOrderResult> {
    let result = async {
        let key = headers.into_inner()?.idempotency_key;
        if let Some(key) = &key {
            trading_market::ingest::check_key(key).map_err(|m| invalid("Idempotency-Key", m))?;
        }
        let body = body.into_inner()?;
        let (symbol, rules) = tradable(&rqctx, &body.symbol)?;
        let now = rqctx.context().clock.now_ms();
        let request = order_request(&body, &symbol, &rules, now)?;
        let action = Action::Place { request, key };
        let order = order_command(&rqctx, action, Some((&symbol, &rules))).await?;
        Ok(PlaceOrderResult {
            order_id: order.id.clone(),
            order,
        })
    }
    .await;
    respond(&rqctx, result)
}

pub async fn preview_order(
    rqctx: Request<AppContext>,
    body: ApiBody<PlaceOrderRequest>,
) -> Response<OrderPreview> {
    let result = async {
        let body = body.into_inner()?;
        let (symbol, rules) = tradable(&rqctx, &body.symbol)?;
        let ctx = rqctx.context();
        let now = ctx.clock.now_ms();
        let request = order_request(&body, &symbol, &rules, now)?;
        let commission = trading(ctx)?.config().commission;
        let starting = trading(ctx)?.config().starting_cash;
        let ticker = symbol.info.ticker.clone();
        let market = market(ctx, &symbol, now).await;
        read(&rqctx, move |desk, account| {
            let broker = desk.broker();
            if broker.rules(&ticker).is_none() {
                // Not traded on this desk yet: checked as the first order
                // of it would be, at the market the source quotes.
                let mut probe = trading_broker::broker::Broker::new(starting, commission);
                probe.list(&ticker, rules.clone());
                if let Some(m) = &market {
                    let print = trading_broker::matcher::Print {
                        price: m.last,
                        time_ms: now,
                        opens_bar: true,
                    };
                    probe.on_print(&ticker, print);
                }
                return preview(&probe, account, &request, commission);
            }
            preview(broker, account, &request, commission)
        })
        .await?
    }
    .await;
    respond(&rqctx, result)
}

fn preview(
    broker: &trading_broker::broker::Broker,
    account: &str,
    request: &OrderRequest,
    commission: Cash,
) -> Result<OrderPreview, ApiError> {
    broker
        .check_order(account, request)
        .map_err(|e| trade_error(TradeError::Desk(DeskError::Broker(e))))?;
    let market = broker.market_price(&request.symbol, request.side);
    let marketable = match (request.order_type, request.limit_price, market) {
        (Type::Market, _, Some(_)) => true,
        (Type::Limit, Some(limit), Some(m)) => match request.side {
            Way::Buy => m <= limit,
            Way::Sell => m >= limit,
        },
        _ => false,
    };
    let price = if marketable {
        market
    } else {
        request.limit_price.or(request.stop_price)
    };
    let notional = price.map_or(Cash::ZERO, |p| Cash::notional(p, request.qty));
    let rate = broker.margin_rate_bp(account, &request.symbol);
    let margin = notional.times_bp(rate);
    let account_now = broker.peek_account(account);
    let mark = |s: &str| broker.last(s);
    let power = account_now.equity(&mark) - broker.margin_used(account);
    let row = |title: &str, value: String| PreviewSectionRowsItem {
        title: title.into(),
        value,
    };
    Ok(OrderPreview {
        symbol: request.symbol.clone(),
        side: Side::try_from(request.side as i32).expect("a wire side"),
        qty: request.qty.to_f64(),
        price: price.map(Price::to_f64),
        fills_now: Some(marketable),
        notional: notional.to_f64(),
        commission: commission.to_f64(),
        margin: margin.to_f64(),
        buying_power: power.to_f64(),
        sections: vec![PreviewSection {
            header: Some(request.symbol.clone()),
            rows: vec![
                row(
                    if marketable { "Fills at" } else { "Works at" },
                    price.map_or("the next print".into(), |p| p.to_string()),
                ),
                row("Notional", notional.to_string()),
                row("Commission", commission.to_string()),
                row("Margin", margin.to_string()),
                row("Buying power", power.to_string()),
            ],
        }],
    })
}

pub async fn get_orders(rqctx: Request<AppContext>) -> Response<Vec<Order>> {
    let result = read(&rqctx, |desk, account| {
        let broker = desk.broker();
        broker
            .orders(account)
            .into_iter()
            .filter(|o| !o.status.is_final())
            .map(|o| wire_order(o, broker.rules(&o.request.symbol)))
            .collect()
    })
    .await;
    respond(&rqctx, result)
}

pub async fn get_orders_history(
    rqctx: Request<AppContext>,
    query: ApiQuery<GetOrdersHistoryQuery>,
) -> Response<OrdersPage> {
    let result = async {
        let q = query.into_inner()?;
        if !(1..=500).contains(&q.limit) {
            return Err(ApiError::OutOfRange {
                name: "limit",
                value: q.limit,
                min: 1,
                max: 500,
            });
        }
        let before = match q.before.as_deref() {
            None => OrderId::MAX,
            Some(text) => text.parse().map_err(|_| {
                invalid(
                    "before",
                    format!("{text:?} is not an order id (from next_before)"),
                )
            })?,
        };
        let limit = q.limit as usize;
        read(&rqctx, move |desk, account| {
            let broker = desk.broker();
            let mut finals: Vec<&Kept> = broker
                .orders(account)
                .into_iter()
                .rev()
                .filter(|o| o.status.is_final() && o.id < before)
                .take(limit + 1)
                .collect();
            let more = finals.len() > limit;
            finals.truncate(limit);
            OrdersPage {
                next_before: more
                    .then(|| finals.last().map(|o| o.id.to_string()))
                    .flatten(),
                orders: finals
                    .into_iter()
                    .map(|o| wire_order(o, broker.rules(&o.request.symbol)))
                    .collect(),
            }
        })
        .await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn modify_order(
    rqctx: Request<AppContext>,
    path: ApiPath<ModifyOrderPath>,
    body: ApiBody<ModifyOrderRequest>,
) -> Response<Order> {
    let result = async {
        let id = order_id(&path.into_inner()?.order_id)?;
        let body = body.into_inner()?;
        let action = Action::Modify {
            id,
            qty: quantity("qty", body.qty)?,
            limit_price: price("limitPrice", body.limit_price)?,
            stop_price: price("stopPrice", body.stop_price)?,
        };
        order_command(&rqctx, action, None).await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn cancel_order(
    rqctx: Request<AppContext>,
    path: ApiPath<CancelOrderPath>,
) -> Response<Order> {
    let result = async {
        let id = order_id(&path.into_inner()?.order_id)?;
        order_command(&rqctx, Action::Cancel { id }, None).await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn cancel_orders(
    rqctx: Request<AppContext>,
    body: ApiBody<CancelOrdersRequest>,
) -> Response<Vec<Order>> {
    let result = async {
        let body = body.into_inner()?;
        let (symbol, rules) = tradable(&rqctx, &body.symbol)?;
        // No ids: every open order of the symbol (and side). An id that is
        // not one of ours matches nothing.
        let ids = (!body.ids.is_empty()).then(|| {
            body.ids
                .iter()
                .filter_map(|id| id.parse().ok())
                .collect::<Vec<OrderId>>()
        });
        let action = Action::CancelMany {
            symbol: symbol.info.ticker.clone(),
            side: body
                .side
                .map(|s| if *s == 1 { Way::Buy } else { Way::Sell }),
            ids,
        };
        let (trading, account, answer) = command(&rqctx, action, Some((&symbol, &rules))).await?;
        let Answer::Orders(ids) = answer else {
            unreachable!("cancelling answers with orders")
        };
        trading
            .read(|desk| {
                ids.iter()
                    .filter_map(|id| order_of(desk, &account, *id).ok())
                    .collect()
            })
            .await
            .map_err(trade_error)
    }
    .await;
    respond(&rqctx, result)
}

pub async fn get_positions(rqctx: Request<AppContext>) -> Response<Vec<Position>> {
    let result = read(&rqctx, |desk, account| {
        let held = desk.broker().peek_account(account).positions;
        held.keys()
            .map(|symbol| wire_position(desk, account, symbol))
            .collect()
    })
    .await;
    respond(&rqctx, result)
}

/// The position's symbol from its id (its symbol, any case or with the
/// exchange).
fn position_symbol(
    rqctx: &Request<AppContext>,
    id: &str,
) -> Result<(Symbol, SymbolRules), ApiError> {
    tradable(rqctx, id)
        .map_err(|_| ApiError::PositionNotFound(format!("no position {id:?} in this account")))
}

pub async fn close_position(
    rqctx: Request<AppContext>,
    path: ApiPath<ClosePositionPath>,
    query: ApiQuery<ClosePositionQuery>,
) -> Response<Order> {
    let result = async {
        let (symbol, rules) = position_symbol(&rqctx, &path.into_inner()?.position_id)?;
        let amount = match query.into_inner()?.amount {
            None => None,
            Some(a) => Some(Qty::from_f64(a).ok_or_else(|| {
                invalid(
                    "amount",
                    format!("{a} is not a quantity with at most 8 decimal places"),
                )
            })?),
        };
        let action = Action::Close {
            symbol: symbol.info.ticker.clone(),
            amount,
        };
        order_command(&rqctx, action, Some((&symbol, &rules))).await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn reverse_position(
    rqctx: Request<AppContext>,
    path: ApiPath<ReversePositionPath>,
) -> Response<Order> {
    let result = async {
        let (symbol, rules) = position_symbol(&rqctx, &path.into_inner()?.position_id)?;
        let action = Action::Reverse {
            symbol: symbol.info.ticker.clone(),
        };
        order_command(&rqctx, action, Some((&symbol, &rules))).await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn edit_position_brackets(
    rqctx: Request<AppContext>,
    path: ApiPath<EditPositionBracketsPath>,
    body: ApiBody<Brackets>,
) -> Response<Position> {
    let result = async {
        let (symbol, rules) = position_symbol(&rqctx, &path.into_inner()?.position_id)?;
        let body = body.into_inner()?;
        let ticker = symbol.info.ticker.clone();
        let action = Action::Brackets {
            symbol: ticker.clone(),
            take_profit: price("takeProfit", body.take_profit)?,
            stop_loss: price("stopLoss", body.stop_loss)?,
        };
        let (trading, account, _) = command(&rqctx, action, Some((&symbol, &rules))).await?;
        trading
            .read(|desk| wire_position(desk, &account, &ticker))
            .await
            .map_err(trade_error)
    }
    .await;
    respond(&rqctx, result)
}

pub async fn get_executions(
    rqctx: Request<AppContext>,
    path: ApiPath<GetExecutionsPath>,
) -> Response<Vec<Execution>> {
    let result = async {
        let name = path.into_inner()?.symbol;
        let ticker = rqctx
            .context()
            .source
            .catalog()
            .lookup(&name)
            .filter(|s| visible(&rqctx, s))
            .map(|s| s.info.ticker.clone())
            .ok_or(ApiError::UnknownSymbol(name))?;
        read(&rqctx, move |desk, account| {
            desk.broker()
                .executions(account, Some(&ticker))
                .into_iter()
                .map(wire_execution)
                .collect()
        })
        .await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn get_account_info(rqctx: Request<AppContext>) -> Response<AccountInfo> {
    let result = async {
        let cash = trading(rqctx.context())?.config().starting_cash;
        read(&rqctx, move |desk, account| {
            wire_account(desk, account, cash)
        })
        .await
    }
    .await;
    respond(&rqctx, result)
}

pub async fn reset_account(rqctx: Request<AppContext>) -> Response<AccountInfo> {
    let result = async {
        let (trading, account, _) = command(&rqctx, Action::Reset, None).await?;
        let cash = trading.config().starting_cash;
        trading
            .read(|desk| wire_account(desk, &account, cash))
            .await
            .map_err(trade_error)
    }
    .await;
    respond(&rqctx, result)
}

pub async fn get_symbol_info(
    rqctx: Request<AppContext>,
    path: ApiPath<GetSymbolInfoPath>,
) -> Response<InstrumentInfo> {
    let result = async {
        let (symbol, rules) = tradable(&rqctx, &path.into_inner()?.symbol)?;
        let ticker = symbol.info.ticker.clone();
        let (leverage, rate) = read(&rqctx, |desk, account| {
            let b = desk.broker();
            match b.rules(&ticker) {
                Some(_) => (
                    b.leverage(account, &ticker).map_or(1, |l| l.leverage),
                    b.margin_rate_bp(account, &ticker),
                ),
                None => (1, rules.margin_bp),
            }
        })
        .await?;
        let tick = rules.tick.to_f64();
        Ok(InstrumentInfo {
            symbol: ticker,
            description: Some(symbol.info.description.clone()),
            qty: InstrumentInfoQty {
                min: rules.qty_min.to_f64(),
                max: rules.qty_max.to_f64(),
                step: rules.qty_step.to_f64(),
            },
            min_tick: tick,
            pip_size: tick,
            pip_value: tick,
            margin_rate: rate as f64 / 10_000.0,
            leverage: leverage as i32,
            currency: "USD".into(),
            allowed_order_types: [1, 2, 3, 4]
                .into_iter()
                .map(|t| OrderType::try_from(t).expect("a wire order type"))
                .collect(),
            allowed_durations: vec![
                DurationType::Gtc,
                DurationType::Day,
                DurationType::Ioc,
                DurationType::Fok,
            ],
        })
    }
    .await;
    respond(&rqctx, result)
}

fn leverage_info_of(desk: &Desk, account: &str, symbol: &str, rules: &SymbolRules) -> LeverageInfo {
    let (leverage, min, max) = match desk.broker().leverage(account, symbol) {
        Ok(l) => (l.leverage, l.min, l.max),
        Err(_) => (1, 1, rules.max_leverage.max(1)),
    };
    LeverageInfo {
        title: format!("{symbol} leverage"),
        leverage: leverage as i32,
        min: min as i32,
        max: max as i32,
        step: 1,
    }
}

pub async fn leverage_info(
    rqctx: Request<AppContext>,
    query: ApiQuery<LeverageInfoQuery>,
) -> Response<LeverageInfo> {
    let result = async {
        let (symbol, rules) = tradable(&rqctx, &query.into_inner()?.symbol)?;
        let ticker = symbol.info.ticker.clone();
        read(&rqctx, move |desk, account| {
            leverage_info_of(desk, account, &ticker, &rules)
        })
        .await
    }
    .await;
    respond(&rqctx, result)
}

fn leverage_value(v: i32) -> Result<u32, ApiError> {
    u32::try_from(v).map_err(|_| invalid("leverage", format!("must be at least 1, got {v}")))
}

pub async fn set_leverage(
    rqctx: Request<AppContext>,
    body: ApiBody<LeverageRequest>,
) -> Response<LeverageInfo> {
    let result = async {
        let body = body.into_inner()?;
        let (symbol, rules) = tradable(&rqctx, &body.symbol)?;
        let ticker = symbol.info.ticker.clone();
        let action = Action::Leverage {
            symbol: ticker.clone(),
            leverage: leverage_value(body.leverage)?,
        };
        let (trading, account, _) = command(&rqctx, action, Some((&symbol, &rules))).await?;
        trading
            .read(|desk| leverage_info_of(desk, &account, &ticker, &rules))
            .await
            .map_err(trade_error)
    }
    .await;
    respond(&rqctx, result)
}

pub async fn preview_leverage(
    rqctx: Request<AppContext>,
    body: ApiBody<LeverageRequest>,
) -> Response<LeveragePreview> {
    let result = async {
        let body = body.into_inner()?;
        let (symbol, rules) = tradable(&rqctx, &body.symbol)?;
        let ticker = symbol.info.ticker.clone();
        let leverage = body.leverage;
        read(&rqctx, move |desk, account| {
            let info = leverage_info_of(desk, account, &ticker, &rules);
            let mut errors = Vec::new();
            if leverage < info.min || leverage > info.max {
                errors.push(format!(
                    "leverage must be between {} and {} for {ticker}, got {leverage}",
                    info.min, info.max
                ));
            }
            let rate_bp = if leverage >= 1 {
                (10_000 + i64::from(leverage) - 1) / i64::from(leverage)
            } else {
                10_000
            };
            let broker = desk.broker();
            let a = broker.peek_account(account);
            let held = a.positions.get(&ticker).copied().unwrap_or_default();
            let value = match broker.last(&ticker) {
                Some(mark) => Cash::notional(mark, Qty(held.qty.abs())),
                None => Cash(held.cost.0.abs()),
            };
            let this_now = value.times_bp(broker.margin_rate_bp(account, &ticker));
            let margin = broker.margin_used(account) - this_now + value.times_bp(rate_bp);
            let equity = a.equity(&|s: &str| broker.last(s));
            if margin > equity {
                errors.push(format!(
                    "at {leverage}x the positions would hold {margin} of margin; the \
                     account's equity is {equity}"
                ));
            }
            LeveragePreview {
                leverage,
                margin_rate: rate_bp as f64 / 10_000.0,
                margin_used: margin.to_f64(),
                infos: Vec::new(),
                warnings: Vec::new(),
                errors,
            }
        })
        .await
    }
    .await;
    respond(&rqctx, result)
}
