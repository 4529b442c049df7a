//! Which orders a symbol takes: TradingView's `symbolInfo` for a broker
//! (quantity min, max and step, the tick, the margin rate, the order types
//! and durations), and the checks every order passes before it is
//! accepted, each refusal naming the field and why.

use crate::order::{Duration, OrderRequest, OrderType, Side};
use crate::units::{Price, Qty};

/// A symbol's trading rules.
#[derive(Clone, Debug, PartialEq)]
pub struct SymbolRules {
    /// The price step (`minmov / pricescale`).
    pub tick: Price,
    pub qty_min: Qty,
    pub qty_max: Qty,
    pub qty_step: Qty,
    /// The share of a position's value held as margin, in basis points
    /// (10,000: fully paid, no leverage) unless the account chose a
    /// leverage for the symbol: then 1 / leverage.
    pub margin_bp: i64,
    /// The most leverage an account may choose (1: none).
    pub max_leverage: u32,
}

/// Why an order is refused: the field (as the API names it) and what is
/// wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> Result<(), Refusal> {
    Err(Refusal {
        field,
        message: message.into(),
    })
}

/// The largest quantity one order may have where a symbol says nothing
/// else: one million units.
pub const DEFAULT_QTY_MAX: Qty = Qty(1_000_000 * crate::units::SCALE);

impl SymbolRules {
    /// The rules of a symbol as the datafeed describes it: its tick is
    /// `minmov / pricescale`, its quantity step `10^-volume_precision`
    /// (also the least one may order), at most [`DEFAULT_QTY_MAX`]. None
    /// when the tick or the step is finer than 8 places.
    pub fn for_symbol(
        pricescale: i64,
        minmov: i64,
        volume_precision: u32,
        margin_bp: i64,
    ) -> Option<SymbolRules> {
        let scale = i128::from(crate::units::SCALE);
        let units = i128::from(minmov) * scale;
        if pricescale <= 0 || minmov <= 0 || units % i128::from(pricescale) != 0 {
            return None;
        }
        let tick = Price(i64::try_from(units / i128::from(pricescale)).ok()?);
        let step = Qty(10i64.checked_pow(8u32.checked_sub(volume_precision)?)?);
        Some(SymbolRules {
            tick,
            qty_min: step,
            qty_max: DEFAULT_QTY_MAX,
            qty_step: step,
            margin_bp,
            max_leverage: 1,
        })
    }

    /// The rules of a symbol as the datafeed describes it
    /// ([`SymbolRules::for_symbol`] on its `SymbolInfo`), fully paid by default, with the most leverage its kind
    /// of market usually allows (crypto 10, forex 50, stocks 4, others
    /// none). None when it cannot trade (a tick or step finer than 8
    /// places).
    pub fn of_symbol(info: &trading_pro::types::SymbolInfo) -> Option<SymbolRules> {
        let precision = u32::try_from(info.volume_precision).ok()?;
        let mut rules = SymbolRules::for_symbol(info.pricescale, info.minmov, precision, 10_000)?;
        rules.max_leverage = match info.type_.to_ascii_lowercase().as_str() {
            "crypto" => 10,
            "forex" => 50,
            "stock" => 4,
            _ => 1,
        };
        Some(rules)
    }

    /// Checks `request` against the rules, with `market` the last price
    /// the market printed (None before the first). Nothing else is
    /// looked at: the account's buying power is the ledger's to check.
    pub fn check(&self, request: &OrderRequest, market: Option<Price>) -> Result<(), Refusal> {
        let qty = request.qty;
        if qty.0 <= 0 {
            return refuse("qty", format!("qty must be positive, got {qty}"));
        }
        if self.qty_step.0 > 0 && qty.0 % self.qty_step.0 != 0 {
            return refuse(
                "qty",
                format!(
                    "qty {qty} is not a multiple of the symbol's step {}",
                    self.qty_step
                ),
            );
        }
        if qty < self.qty_min || qty > self.qty_max {
            return refuse(
                "qty",
                format!(
                    "qty {qty} is outside the symbol's range {} to {}",
                    self.qty_min, self.qty_max
                ),
            );
        }
        let (needs_limit, needs_stop) = match request.order_type {
            OrderType::Market => (false, false),
            OrderType::Limit => (true, false),
            OrderType::Stop => (false, true),
            OrderType::StopLimit => (true, true),
        };
        let kind = order_type_name(request.order_type);
        match (needs_limit, request.limit_price) {
            (true, None) => {
                return refuse("limitPrice", format!("a {kind} order needs limitPrice"))
            }
            (false, Some(_)) => {
                return refuse("limitPrice", format!("a {kind} order takes no limitPrice"))
            }
            (true, Some(p)) => self.check_price("limitPrice", p)?,
            (false, None) => {}
        }
        match (needs_stop, request.stop_price) {
            (true, None) => return refuse("stopPrice", format!("a {kind} order needs stopPrice")),
            (false, Some(_)) => {
                return refuse("stopPrice", format!("a {kind} order takes no stopPrice"))
            }
            (true, Some(stop)) => {
                self.check_price("stopPrice", stop)?;
                // A stop already touched would trigger at once: that is a
                // market (or limit) order, and almost always a mistake.
                match (request.side, market) {
                    (Side::Buy, Some(m)) if stop <= m => {
                        return refuse(
                            "stopPrice",
                            format!("a buy stop must be above the market ({m}), got {stop}"),
                        )
                    }
                    (Side::Sell, Some(m)) if stop >= m => {
                        return refuse(
                            "stopPrice",
                            format!("a sell stop must be below the market ({m}), got {stop}"),
                        )
                    }
                    _ => {}
                }
            }
            (false, None) => {}
        }
        if let Some(trail) = request.trailing_stop {
            self.check_price("trailingStopPips", trail)?;
            if request.order_type != OrderType::Stop && request.stop_loss.is_none() {
                return refuse(
                    "trailingStopPips",
                    "a trailing stop is a stop order's, or its stop-loss's",
                );
            }
        }
        if matches!(request.duration, Duration::Ioc | Duration::Fok)
            && !matches!(request.order_type, OrderType::Market | OrderType::Limit)
        {
            return refuse(
                "duration",
                format!("IOC and FOK are for market and limit orders, not {kind}"),
            );
        }
        if request.order_type == OrderType::Market && market.is_none() {
            return refuse(
                "symbol",
                "the market has printed no price yet: a market order has nothing to fill at",
            );
        }
        // Brackets: on the tick, on the profitable and the losing side of
        // where the order enters.
        let entry = request.limit_price.or(request.stop_price).or(market);
        if let Some(tp) = request.take_profit {
            self.check_price("takeProfit", tp)?;
            match (request.side, entry) {
                (Side::Buy, Some(e)) if tp <= e => {
                    return refuse(
                        "takeProfit",
                        format!("a buy's take-profit must be above its entry {e}, got {tp}"),
                    )
                }
                (Side::Sell, Some(e)) if tp >= e => {
                    return refuse(
                        "takeProfit",
                        format!("a sell's take-profit must be below its entry {e}, got {tp}"),
                    )
                }
                _ => {}
            }
        }
        if let Some(sl) = request.stop_loss {
            self.check_price("stopLoss", sl)?;
            match (request.side, entry) {
                (Side::Buy, Some(e)) if sl >= e => {
                    return refuse(
                        "stopLoss",
                        format!("a buy's stop-loss must be below its entry {e}, got {sl}"),
                    )
                }
                (Side::Sell, Some(e)) if sl <= e => {
                    return refuse(
                        "stopLoss",
                        format!("a sell's stop-loss must be above its entry {e}, got {sl}"),
                    )
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check_price(&self, field: &'static str, price: Price) -> Result<(), Refusal> {
        if price.0 <= 0 {
            return refuse(field, format!("{field} must be positive, got {price}"));
        }
        if self.tick.0 > 0 && price.0 % self.tick.0 != 0 {
            return refuse(
                field,
                format!("{field} {price} is not on the symbol's tick {}", self.tick),
            );
        }
        Ok(())
    }
}

fn order_type_name(t: OrderType) -> &'static str {
    match t {
        OrderType::Limit => "limit",
        OrderType::Market => "market",
        OrderType::Stop => "stop",
        OrderType::StopLimit => "stop-limit",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc() -> SymbolRules {
        SymbolRules {
            tick: Price::parse("0.01").unwrap(),
            qty_min: Qty::parse("0.001").unwrap(),
            qty_max: Qty::parse("100").unwrap(),
            qty_step: Qty::parse("0.001").unwrap(),
            margin_bp: 10_000,
            max_leverage: 1,
        }
    }

    fn order(order_type: OrderType, side: Side, qty: &str) -> OrderRequest {
        OrderRequest::new("BTCUSD", order_type, side, Qty::parse(qty).unwrap())
    }

    fn field_of(r: Result<(), Refusal>) -> &'static str {
        r.expect_err("refused").field
    }

    #[test]
    fn each_refusal_names_its_field() {
        let rules = btc();
        let m = Some(Price::parse("100").unwrap());
        let p = |s: &str| Some(Price::parse(s).unwrap());
        assert_eq!(
            rules.check(&order(OrderType::Market, Side::Buy, "1"), m),
            Ok(())
        );
        for qty in ["0", "-1", "0.0005", "1000"] {
            let r = rules.check(&order(OrderType::Market, Side::Buy, qty), m);
            assert_eq!(field_of(r), "qty", "{qty}");
        }
        let limit = order(OrderType::Limit, Side::Buy, "1");
        assert_eq!(field_of(rules.check(&limit, m)), "limitPrice");
        let off_tick = OrderRequest {
            limit_price: p("99.995"),
            ..limit.clone()
        };
        let e = rules.check(&off_tick, m).unwrap_err();
        assert_eq!(e.field, "limitPrice");
        assert!(e.message.contains("tick 0.01"), "{}", e.message);
        let buy_stop_below = OrderRequest {
            stop_price: p("99"),
            ..order(OrderType::Stop, Side::Buy, "1")
        };
        let e = rules.check(&buy_stop_below, m).unwrap_err();
        assert_eq!(e.field, "stopPrice");
        assert!(e.message.contains("above the market"), "{}", e.message);
        let sell_stop = OrderRequest {
            stop_price: p("99"),
            ..order(OrderType::Stop, Side::Sell, "1")
        };
        assert_eq!(rules.check(&sell_stop, m), Ok(()));
        let market_with_limit = OrderRequest {
            limit_price: p("100"),
            ..order(OrderType::Market, Side::Buy, "1")
        };
        assert_eq!(field_of(rules.check(&market_with_limit, m)), "limitPrice");
        let no_market = rules.check(&order(OrderType::Market, Side::Buy, "1"), None);
        assert_eq!(field_of(no_market), "symbol");
        let ioc_stop = OrderRequest {
            duration: Duration::Ioc,
            ..sell_stop.clone()
        };
        assert_eq!(field_of(rules.check(&ioc_stop, m)), "duration");
        let bad_tp = OrderRequest {
            limit_price: p("95"),
            take_profit: p("94"),
            ..limit.clone()
        };
        assert_eq!(field_of(rules.check(&bad_tp, m)), "takeProfit");
        let bad_sl = OrderRequest {
            limit_price: p("95"),
            stop_loss: p("96"),
            ..limit.clone()
        };
        assert_eq!(field_of(rules.check(&bad_sl, m)), "stopLoss");
        let bracketed = OrderRequest {
            limit_price: p("95"),
            take_profit: p("110"),
            stop_loss: p("90"),
            ..limit
        };
        assert_eq!(rules.check(&bracketed, m), Ok(()));
    }

    #[test]
    fn rules_follow_the_symbols_description() {
        let btc = SymbolRules::for_symbol(100, 1, 8, 10_000).unwrap();
        assert_eq!(
            (btc.tick, btc.qty_step),
            (Price::parse("0.01").unwrap(), Qty(1))
        );
        let fx = SymbolRules::for_symbol(100_000, 5, 0, 500).unwrap();
        assert_eq!(fx.tick, Price::parse("0.00005").unwrap());
        assert_eq!(
            (fx.qty_min, fx.qty_step),
            (Qty::parse("1").unwrap(), Qty::parse("1").unwrap())
        );
        assert_eq!(SymbolRules::for_symbol(1_000_000_000, 1, 2, 10_000), None);
        assert_eq!(SymbolRules::for_symbol(100, 1, 9, 10_000), None);
    }
}
