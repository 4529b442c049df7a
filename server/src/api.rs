//! The REST API: `trading_pro::api::TradingService`, implemented.
//!
//! Handlers are thin: they validate input into domain values, ask the data
//! source (`source`), and map the answer onto generated wire types.

use dropshot::{HttpCodedResponse, HttpError, HttpResponseHeaders, HttpResponseOk};
use schemars::JsonSchema;
use serde::Serialize;
use trading_pro::api::TradingService;
use trading_pro::encoded::EncodedOk;
use trading_pro::extract::{ApiBody, ApiHeader, ApiPath, ApiQuery};
use trading_pro::service::Request;
use trading_pro::types::*;

use std::sync::Arc;

use crate::auth::Principal;
use crate::bars_json::{self, PriceFormat};
use crate::bus::Bus;
use crate::calendar::Resolution;
use crate::catalog::{Catalog, Symbol};
use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::error::ApiError;
use crate::source::{BarQuery, DataSource};
use crate::store::ingest::{
    check_key, BarIn, Ingest, IngestError, IngestRequest, TradeIn, MAX_ITEMS,
};

/// Most bars in one getBars response (documented in the spec).
pub const MAX_BARS: usize = 5000;
/// Most symbols in one quotes request (documented in the spec).
pub const MAX_QUOTE_SYMBOLS: usize = 100;
const DEFAULT_SEARCH_RESULTS: i64 = 30;
const MAX_SEARCH_RESULTS: i64 = 100;

type Response<T> = Headed<HttpResponseOk<T>>;
type Headed<R> = Result<HttpResponseHeaders<R, ApiVersionHeaders>, HttpError>;

/// Turns a handler's outcome into a response carrying `API-Version` and the
/// CORS headers, success or error alike.
pub fn respond<T>(rqctx: &Request<AppContext>, result: Result<T, ApiError>) -> Response<T>
where
    T: Serialize + JsonSchema + Send + Sync + 'static,
{
    respond_with(rqctx, result.map(HttpResponseOk))
}

/// [`respond`] for any success type, such as a pre-encoded body.
fn respond_with<R>(rqctx: &Request<AppContext>, result: Result<R, ApiError>) -> Headed<R>
where
    R: HttpCodedResponse,
{
    let ctx = rqctx.context();
    let request = rqctx.headers();
    match result {
        Ok(body) => {
            let mut response = HttpResponseHeaders::new(
                body,
                ApiVersionHeaders {
                    api_version: trading_pro::API_VERSION.to_string(),
                },
            );
            ctx.cors.decorate(request, response.headers_mut());
            Ok(response)
        }
        Err(e) => Err(decorate_error(ctx, request, e.into_http())),
    }
}

pub fn decorate_error(ctx: &AppContext, request: &http::HeaderMap, mut e: HttpError) -> HttpError {
    let headers = e.headers.get_or_insert_with(Default::default);
    headers.insert(
        "api-version",
        http::HeaderValue::from_static(trading_pro::API_VERSION),
    );
    ctx.cors.decorate(request, headers);
    e
}

fn lookup<'a>(catalog: &'a Catalog, symbol: &str) -> Result<&'a Symbol, ApiError> {
    catalog
        .lookup(symbol)
        .ok_or_else(|| ApiError::UnknownSymbol(symbol.to_string()))
}

/// Who sent the request, when authentication is on (the edge verified the
/// token and attached its bearer).
fn principal(rqctx: &Request<AppContext>) -> Option<&Principal> {
    rqctx.extensions().get::<Arc<Principal>>().map(|p| &**p)
}

/// Whether the request may see the symbol's exchange (always, without
/// authentication).
fn visible(rqctx: &Request<AppContext>, symbol: &Symbol) -> bool {
    principal(rqctx).is_none_or(|p| p.allows(&symbol.info.exchange))
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

pub fn versions() -> Vec<VersionInfo> {
    vec![
        VersionInfo {
            version: "v1".into(),
            release_date: "2025-10-11".into(),
            status: VersionStatus::Stable,
            breaking_changes: vec![],
            deprecation_notice: None,
            sunset_date: None,
        },
        VersionInfo {
            version: "v2".into(),
            release_date: "TBD".into(),
            status: VersionStatus::Planned,
            breaking_changes: vec![
                "Bar times in unix seconds instead of milliseconds".into(),
                "Quote values renamed to descriptive field names".into(),
            ],
            deprecation_notice: None,
            sunset_date: None,
        },
    ]
}

fn current_version() -> VersionInfo {
    versions().into_iter().next().expect("v1 is listed")
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

/// A symbol's quote, named by its ticker (the WebSocket's `quotes.update`
/// carries exactly this).
pub async fn quote(source: &dyn DataSource, s: &Symbol, now_ms: i64) -> QuoteData {
    quote_as(source, s, s.ticker(), now_ms).await
}

async fn quote_as(source: &dyn DataSource, s: &Symbol, name: &str, now_ms: i64) -> QuoteData {
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

fn quote_error(name: &str, errmsg: String) -> QuoteData {
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

pub enum TradingServer {}

impl TradingService for TradingServer {
    type Context = AppContext;

    async fn get_service_index(rqctx: Request<AppContext>) -> Response<ServiceIndex> {
        let index = ServiceIndex {
            name: "trading-pro".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            api_version: trading_pro::API_VERSION.into(),
            description: "Market-data backend for TradingView-style charts: symbols, bars, quotes \
                          and live bars over WebSocket."
                .into(),
            links: ServiceLinks {
                docs: "/api/v1/docs".into(),
                openapi_json: "/api/v1/openapi.json".into(),
                openapi_yaml: "/api/v1/openapi.yaml".into(),
                asyncapi: "/api/v1/ws/asyncapi".into(),
                health: "/api/v1/health".into(),
                datafeed_config: "/api/v1/datafeed/config".into(),
                websocket: "/api/v1/ws".into(),
                chart: "/chart".into(),
            },
        };
        respond(&rqctx, Ok(index))
    }

    async fn get_health_status(rqctx: Request<AppContext>) -> Response<HealthResponse> {
        let now = rqctx.context().clock.now_ms();
        let health = HealthResponse {
            status: "ok".into(),
            message: "Trading Pro API is running".into(),
            timestamp: rfc3339(now),
            api_version: trading_pro::API_VERSION.into(),
            version_info: current_version(),
            store: Some(store_health(rqctx.context())),
            bus: rqctx.context().bus.as_ref().map(bus_health),
        };
        respond(&rqctx, Ok(health))
    }

    async fn get_readiness(rqctx: Request<AppContext>) -> Response<Readiness> {
        let ctx = rqctx.context();
        let stopping = ctx
            .stopping
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| "the node is shutting down; use another node".to_string());
        let why = stopping.or_else(|| match (ctx.source.health(), &ctx.bus) {
            (Err(unhealthy), _) => Some(unhealthy.to_string()),
            (Ok(()), Some(bus)) => bus.ready().err(),
            (Ok(()), None) => None,
        });
        let answer = match why {
            Some(why) => Err(ApiError::NotReady(format!("not ready: {why}"))),
            None => Ok(Readiness {
                ready: true,
                store: store_health(ctx),
                bus: ctx.bus.as_ref().map(bus_health),
            }),
        };
        respond(&rqctx, answer)
    }

    async fn get_api_versions(rqctx: Request<AppContext>) -> Response<ApiMetadata> {
        let meta = ApiMetadata {
            current_version: trading_pro::API_VERSION.into(),
            available_versions: versions(),
            documentation_url: "/api/v1/docs".into(),
            support_contact: "support@trading-pro.example".into(),
        };
        respond(&rqctx, Ok(meta))
    }

    async fn get_current_api_version(rqctx: Request<AppContext>) -> Response<VersionInfo> {
        respond(&rqctx, Ok(current_version()))
    }

    async fn get_config(rqctx: Request<AppContext>) -> Response<DatafeedConfiguration> {
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

    async fn search_symbols(
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

    async fn resolve_symbol(
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

    async fn get_bars(
        rqctx: Request<AppContext>,
        query: ApiQuery<GetBarsQuery>,
    ) -> Headed<EncodedOk<BarsResponse>> {
        let result = match query.into_inner().map_err(bars_query_error) {
            Ok(q) => bars(&rqctx, q).await,
            Err(e) => Err(e),
        };
        respond_with(&rqctx, result)
    }

    async fn get_quotes(
        rqctx: Request<AppContext>,
        body: ApiBody<QuotesRequest>,
    ) -> Response<Vec<QuoteData>> {
        let ctx = rqctx.context();
        let result = match body.into_inner().map_err(ApiError::from) {
            Ok(req) if req.symbols.is_empty() || req.symbols.len() > MAX_QUOTE_SYMBOLS => {
                Err(ApiError::QuoteSymbolCount(req.symbols.len()))
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

    async fn datafeed_health_check(rqctx: Request<AppContext>) -> Response<DatafeedHealth> {
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

    async fn ingest_trades(
        rqctx: Request<AppContext>,
        headers: ApiHeader<IngestTradesHeaders>,
        body: ApiBody<TradesIngestRequest>,
    ) -> Response<IngestResponse> {
        let key = headers.into_inner().map(|h| h.idempotency_key);
        let request = body.into_inner().map(|b| {
            IngestRequest::Trades(
                b.trades
                    .into_iter()
                    .map(|t| TradeIn {
                        symbol: t.symbol,
                        time: t.time,
                        price: t.price,
                        size: t.size,
                    })
                    .collect(),
            )
        });
        let result = ingest(&rqctx, key, request).await;
        respond(&rqctx, result)
    }

    async fn ingest_bars(
        rqctx: Request<AppContext>,
        headers: ApiHeader<IngestBarsHeaders>,
        body: ApiBody<BarsIngestRequest>,
    ) -> Response<IngestResponse> {
        let key = headers.into_inner().map(|h| h.idempotency_key);
        let request = body.into_inner().map(|b| IngestRequest::Bars {
            resolution: b.resolution.and_then(|r| Resolution::parse(&r.to_string())),
            bars: b
                .bars
                .into_iter()
                .map(|b| BarIn {
                    symbol: b.symbol,
                    time: b.time,
                    open: b.open,
                    high: b.high,
                    low: b.low,
                    close: b.close,
                    volume: b.volume,
                })
                .collect(),
        });
        let result = ingest(&rqctx, key, request).await;
        respond(&rqctx, result)
    }

    async fn get_server_time(rqctx: Request<AppContext>) -> Response<i64> {
        respond(&rqctx, Ok(rqctx.context().clock.now_ms().div_euclid(1000)))
    }
}

/// Checks that the server takes ingest and that the request carries its
/// token, then applies the request. Nothing about the body is looked at (or
/// told) before the caller has proven who it is.
async fn ingest(
    rqctx: &Request<AppContext>,
    key: Result<Option<String>, HttpError>,
    request: Result<IngestRequest, HttpError>,
) -> Result<IngestResponse, ApiError> {
    let ctx = rqctx.context();
    let ingest = match &ctx.bus {
        Some(bus) => Some(&bus.ingest as &dyn Ingest),
        None => ctx.source.ingest(),
    };
    let Some(ingest) = ingest else {
        return Err(ApiError::IngestDisabled(
            "this server takes no ingest: it serves the synthetic market; start it with \
             --store PATH (and --ingest-token) to ingest real data"
                .into(),
        ));
    };
    let Some(expected) = &ctx.ingest_token else {
        return Err(ApiError::IngestDisabled(
            "this server takes no ingest: no ingest token is configured (--ingest-token or \
             TRADING_INGEST_TOKEN)"
                .into(),
        ));
    };
    let header = rqctx.headers().get(http::header::AUTHORIZATION);
    let token = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return Err(ApiError::Unauthenticated(
            "ingest needs the header Authorization: Bearer TOKEN".into(),
        ));
    };
    if !same_secret(token.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::Forbidden(
            "the bearer token is not this server's ingest token".into(),
        ));
    }
    let key = key?;
    let request = request?;
    let (what, code) = match &request {
        IngestRequest::Trades(_) => ("trades", "InvalidTrade"),
        IngestRequest::Bars { .. } => ("bars", "InvalidBar"),
    };
    if request.is_empty() || request.len() > MAX_ITEMS {
        return Err(ApiError::InvalidIngest {
            code,
            message: format!(
                "{what} must list between 1 and {MAX_ITEMS} items, got {}",
                request.len()
            ),
        });
    }
    if let Some(key) = &key {
        check_key(key).map_err(|message| ApiError::InvalidIngest { code, message })?;
    }
    let now = ctx.clock.now_ms();
    let began = std::time::Instant::now();
    let applied = ingest.apply(request, key, now).await;
    ctx.metrics.ingest_write(ctx.source.kind(), began.elapsed());
    match applied {
        Ok(receipt) => {
            ctx.metrics.ingested(what, receipt.applied);
            Ok(IngestResponse {
                applied: receipt.applied as i64,
            })
        }
        Err(IngestError::Invalid(message)) => Err(ApiError::InvalidIngest { code, message }),
        Err(IngestError::KeyReused(message)) => Err(ApiError::KeyReused(message)),
        Err(IngestError::Unavailable(why)) => Err(ApiError::Unavailable(why)),
        Err(IngestError::Retry { message, detail }) => Err(ApiError::Retry { message, detail }),
    }
}

/// Compares secrets in time that depends on neither where they differ nor
/// their lengths: their SHA-256 digests, all 32 bytes of each, are compared.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use aws_lc_rs::digest::{digest, SHA256};
    let (a, b) = (digest(&SHA256, a), digest(&SHA256, b));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn store_health(ctx: &AppContext) -> StoreHealth {
    // The class only: the details name hosts and files, for the log.
    let problem = ctx.source.health().err().map(|u| u.to_string());
    StoreHealth {
        kind: ctx.source.kind().into(),
        status: if problem.is_some() {
            StoreHealthStatus::Unavailable
        } else {
            StoreHealthStatus::Ok
        },
        message: problem,
    }
}

fn bus_health(bus: &Bus) -> BusHealth {
    let status = &bus.status;
    let (state, message) = if !bus.log.connected() {
        (BusHealthStatus::Disconnected, None)
    } else if let Some(problem) = status.problem() {
        (BusHealthStatus::Failing, Some(problem))
    } else if status.catching_up() {
        (BusHealthStatus::CatchingUp, None)
    } else {
        (BusHealthStatus::Ok, None)
    };
    BusHealth {
        url: bus.log.describe(),
        stream: status.log().into(),
        status: state,
        message,
        applied: status.applied() as i64,
        newest: status.newest() as i64,
        lag: status.lag() as i64,
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
