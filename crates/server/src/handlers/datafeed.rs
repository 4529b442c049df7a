//! The `datafeed` tag: what a chart asks for (configuration, search,
//! resolve, bars, quotes, the server's time and health).

use dropshot::HttpError;
use trading_pro::encoded::EncodedOk;
use trading_pro::extract::{ApiBody, ApiPath, ApiQuery};
use trading_pro::service::Request;
use trading_pro::types::*;

use super::{principal, respond, respond_with, visible, Headed, Response};
use crate::context::AppContext;
use crate::error::ApiError;
use crate::quotes::{quote_as, quote_error};
use trading_market::bars_json::{self, PriceFormat};
use trading_market::calendar::Resolution;
use trading_market::catalog::{Catalog, Symbol};
use trading_market::source::BarQuery;

/// Most bars in one getBars response (documented in the spec).
pub const MAX_BARS: usize = 5000;
/// Most symbols in one quotes request (documented in the spec).
pub const MAX_QUOTE_SYMBOLS: usize = 100;
const DEFAULT_SEARCH_RESULTS: i64 = 30;
const MAX_SEARCH_RESULTS: i64 = 100;

fn lookup<'a>(catalog: &'a Catalog, symbol: &str) -> Result<&'a Symbol, ApiError> {
    catalog
        .lookup(symbol)
        .ok_or_else(|| ApiError::UnknownSymbol(symbol.to_string()))
}

/// The symbol, if the request may see it. One it may not see does not
/// exist for it: the same 404 as a symbol that is not there, so a token
/// cannot tell the two apart.
fn entitled<'a>(
    rqctx: &Request<AppContext>,
    catalog: &'a Catalog,
    name: &str,
) -> Result<&'a Symbol, ApiError> {
    match lookup(catalog, name)? {
        symbol if visible(rqctx, symbol) => Ok(symbol),
        _ => Err(ApiError::UnknownSymbol(name.to_string())),
    }
}

fn in_range(name: &'static str, value: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::OutOfRange {
            name,
            value,
            min,
            max,
        })
    }
}

async fn bars(
    rqctx: &Request<AppContext>,
    q: GetBarsQuery,
) -> Result<EncodedOk<BarsResponse>, ApiError> {
    let ctx = rqctx.context();
    let catalog = ctx.source.catalog();
    let symbol = entitled(rqctx, &catalog, &q.symbol)?;
    let resolution = Resolution::parse(&q.resolution.to_string())
        .ok_or_else(|| ApiError::UnsupportedResolution(q.resolution.to_string()))?;
    if let Some(why) = symbol.unserved_reason(resolution) {
        return Err(ApiError::UnservedResolution {
            resolution: q.resolution.to_string(),
            why,
        });
    }
    if q.from_time > q.to_time {
        return Err(ApiError::InvalidRange {
            from: q.from_time,
            to: q.to_time,
        });
    }
    let count_back = q
        .count_back
        .map(|n| in_range("count_back", n, 1, MAX_BARS as i64).map(|n| n as usize))
        .transpose()?;
    let query = BarQuery {
        from_s: q.from_time,
        to_s: q.to_time,
        count_back,
        limit: MAX_BARS,
    };
    let now = ctx.clock.now_ms();
    let began = std::time::Instant::now();
    let page = ctx.source.bars(symbol, resolution, &query, now).await?;
    ctx.metrics.source_read(ctx.source.kind(), began.elapsed());
    let prices = PriceFormat::for_pricescale(symbol.info.pricescale);
    let memo = ctx.source.encoded_history(symbol, resolution, now);
    Ok(EncodedOk::from_json(bars_json::encode(
        &page,
        prices,
        memo.as_deref(),
    )))
}

/// `resolution` is the only enum among getBars' parameters, so serde's
/// "unknown variant" can only be about it: say so, with the supported list.
fn bars_query_error(e: HttpError) -> ApiError {
    let message = &e.external_message;
    match message.split_once("unknown variant `") {
        Some((_, rest)) => {
            ApiError::UnsupportedResolution(rest.split('`').next().unwrap_or("").into())
        }
        None => ApiError::Malformed(e),
    }
}

/// A requested symbol's quote for `POST /quotes` (`n` as requested).
/// The quote of `name`; a symbol the request may not see is unknown to it.
async fn named_quote(
    rqctx: &Request<AppContext>,
    catalog: &Catalog,
    name: &str,
    now_ms: i64,
) -> QuoteData {
    match catalog.lookup(name).filter(|s| visible(rqctx, s)) {
        Some(s) => quote_as(rqctx.context().source.as_ref(), s, name, now_ms).await,
        None => quote_error(name, format!("unknown symbol {name:?}")),
    }
}

/// Every resolution some symbol `seen` serves, in TradingView's order.
fn served_resolutions(catalog: &Catalog, seen: impl Fn(&Symbol) -> bool) -> Vec<String> {
    Resolution::ALL
        .into_iter()
        .filter(|r| catalog.iter().any(|s| seen(s) && s.serves(*r)))
        .map(|r| r.as_str().to_string())
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

pub async fn get_config(rqctx: Request<AppContext>) -> Response<DatafeedConfiguration> {
    let catalog = rqctx.context().source.catalog();
    let mut exchanges = vec![Exchange {
        value: String::new(),
        name: "All Exchanges".into(),
        desc: String::new(),
    }];
    let seen = |e: &&str| principal(&rqctx).is_none_or(|p| p.allows(e));
    exchanges.extend(
        catalog
            .exchanges()
            .into_iter()
            .filter(seen)
            .map(|e| Exchange {
                value: e.into(),
                name: e.into(),
                desc: e.into(),
            }),
    );
    let mut symbols_types = vec![SymbolType {
        name: "All types".into(),
        value: String::new(),
    }];
    // The types of the symbols this token may see, in catalog order.
    let mut types: Vec<&str> = Vec::new();
    for s in catalog.iter().filter(|s| visible(&rqctx, s)) {
        if !types.contains(&s.info.type_.as_str()) {
            types.push(&s.info.type_);
        }
    }
    symbols_types.extend(types.into_iter().map(|t| SymbolType {
        name: capitalize(t),
        value: t.into(),
    }));
    let config = DatafeedConfiguration {
        supported_resolutions: served_resolutions(&catalog, |s| visible(&rqctx, s)),
        supports_marks: false,
        supports_timescale_marks: false,
        supports_time: true,
        exchanges,
        symbols_types,
    };
    respond(&rqctx, Ok(config))
}

pub async fn search_symbols(
    rqctx: Request<AppContext>,
    query: ApiQuery<SearchSymbolsQuery>,
) -> Response<Vec<SymbolSearchResult>> {
    let result = (|| {
        let q = query.into_inner()?;
        let max = in_range(
            "max_results",
            q.max_results.unwrap_or(DEFAULT_SEARCH_RESULTS),
            1,
            MAX_SEARCH_RESULTS,
        )?;
        Ok(rqctx.context().source.catalog().search(
            &q.user_input,
            q.exchange.as_deref(),
            q.symbol_type.as_deref(),
            max as usize,
            |s| visible(&rqctx, s),
        ))
    })();
    respond(&rqctx, result)
}

pub async fn resolve_symbol(
    rqctx: Request<AppContext>,
    path: ApiPath<ResolveSymbolPath>,
) -> Response<SymbolInfo> {
    let catalog = rqctx.context().source.catalog();
    let result = path
        .into_inner()
        .map_err(ApiError::from)
        // A symbol the token may not see is not there for it.
        .and_then(|p| match lookup(&catalog, &p.symbol) {
            Ok(s) if visible(&rqctx, s) => Ok(s.info.clone()),
            Ok(_) => Err(ApiError::UnknownSymbol(p.symbol.clone())),
            Err(e) => Err(e),
        });
    respond(&rqctx, result)
}

pub async fn get_bars(
    rqctx: Request<AppContext>,
    query: ApiQuery<GetBarsQuery>,
) -> Headed<EncodedOk<BarsResponse>> {
    let result = match query.into_inner().map_err(bars_query_error) {
        Ok(q) => bars(&rqctx, q).await,
        Err(e) => Err(e),
    };
    respond_with(&rqctx, result)
}

pub async fn get_quotes(
    rqctx: Request<AppContext>,
    body: ApiBody<QuotesRequest>,
) -> Response<Vec<QuoteData>> {
    let ctx = rqctx.context();
    let result = match body.into_inner().map_err(ApiError::from) {
        Ok(req) if req.symbols.is_empty() || req.symbols.len() > MAX_QUOTE_SYMBOLS => {
            Err(ApiError::QuoteSymbolCount {
                got: req.symbols.len(),
                max: MAX_QUOTE_SYMBOLS,
            })
        }
        Ok(req) => {
            let now = ctx.clock.now_ms();
            let catalog = ctx.source.catalog();
            let mut quotes = Vec::with_capacity(req.symbols.len());
            for name in &req.symbols {
                quotes.push(named_quote(&rqctx, &catalog, name, now).await);
            }
            Ok(quotes)
        }
        Err(e) => Err(e),
    };
    respond(&rqctx, result)
}

pub async fn datafeed_health_check(rqctx: Request<AppContext>) -> Response<DatafeedHealth> {
    let ctx = rqctx.context();
    let catalog = ctx.source.catalog();
    // What this token may see, counted; the synthetic market's seed is
    // not served (with it, anyone could rebuild every symbol's bars).
    let health = DatafeedHealth {
        status: "ok".into(),
        symbols: catalog.iter().filter(|s| visible(&rqctx, s)).count() as i64,
        resolutions: served_resolutions(&catalog, |s| visible(&rqctx, s)),
        source: ctx.source.kind().into(),
        server_time: ctx.clock.now_ms().div_euclid(1000),
    };
    respond(&rqctx, Ok(health))
}

pub async fn get_server_time(rqctx: Request<AppContext>) -> Response<i64> {
    respond(&rqctx, Ok(rqctx.context().clock.now_ms().div_euclid(1000)))
}
