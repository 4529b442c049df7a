//! A quote as the wire carries it (`QuoteData`): what `POST /quotes`
//! answers for a symbol, and what `quotes.update` carries on the WebSocket,
//! built in one place so the two are always the same.

use trading_pro::types::{QuoteData, QuoteStatus, QuoteValues};

use trading_market::catalog::Symbol;
use trading_market::source::DataSource;

/// A symbol's quote, named by its ticker (the WebSocket's `quotes.update`
/// carries exactly this).
pub async fn quote(source: &dyn DataSource, s: &Symbol, now_ms: i64) -> QuoteData {
    quote_as(source, s, s.ticker(), now_ms).await
}

pub async fn quote_as(source: &dyn DataSource, s: &Symbol, name: &str, now_ms: i64) -> QuoteData {
    let q = match source.quote(s, now_ms).await {
        Ok(Some(q)) => q,
        Ok(None) => return quote_error(name, format!("no market data for {name:?} yet")),
        // The cause is the operator's business (the log has it).
        Err(_) => {
            return quote_error(
                name,
                "the data source cannot answer now; retry later".to_string(),
            )
        }
    };
    let pricescale = u32::try_from(s.info.pricescale).unwrap_or(1);
    QuoteData {
        s: QuoteStatus::Ok,
        n: name.to_string(),
        errmsg: None,
        v: QuoteValues {
            lp: Some(q.last),
            ask: q.ask,
            bid: q.bid,
            spread: q.ask.zip(q.bid).map(|(a, b)| round_to(a - b, pricescale)),
            open_price: Some(q.open),
            high_price: Some(q.high),
            low_price: Some(q.low),
            prev_close_price: Some(q.prev_close),
            volume: Some(q.volume),
            ch: Some(round_to(q.change, pricescale)),
            chp: Some((q.change_percent * 100.0).round() / 100.0),
            short_name: Some(s.info.ticker.clone()),
            exchange: Some(s.info.exchange.clone()),
            description: Some(s.info.description.clone()),
            original_name: Some(s.full_name()),
        },
    }
}

pub fn quote_error(name: &str, errmsg: String) -> QuoteData {
    QuoteData {
        s: QuoteStatus::Error,
        n: name.to_string(),
        errmsg: Some(errmsg),
        v: QuoteValues::default(),
    }
}

/// Rounds a price difference to the symbol's tick grid, so `ch` reads like a
/// price rather than a float subtraction artefact.
fn round_to(x: f64, pricescale: u32) -> f64 {
    let scale = f64::from(pricescale.max(1));
    (x * scale).round() / scale
}
