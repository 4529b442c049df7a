//! The REST API: `trading_pro::api::TradingService`, implemented, one
//! module per tag of the spec: `datafeed` (what a chart asks for),
//! `ingest` (what a feed sends), `broker` (the caller's paper-trading
//! account), `meta` (health, readiness, versions, the index). The trait's implementation below only says which function
//! answers each operation.
//!
//! Handlers are thin: they validate input into domain values, ask the data
//! source, and map the answer onto generated wire types.

pub mod broker;
mod datafeed;
mod ingest;
mod meta;

use std::sync::Arc;

use dropshot::{HttpCodedResponse, HttpError, HttpResponseHeaders, HttpResponseOk};
use schemars::JsonSchema;
use serde::Serialize;
use trading_pro::api::TradingService;
use trading_pro::encoded::EncodedOk;
use trading_pro::extract::{ApiBody, ApiHeader, ApiPath, ApiQuery};
use trading_pro::service::Request;
use trading_pro::types::*;

use crate::auth::Principal;
use crate::context::AppContext;
use crate::error::ApiError;
use trading_market::catalog::Symbol;

pub use datafeed::{MAX_BARS, MAX_QUOTE_SYMBOLS};
pub use meta::versions;

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
pub(crate) fn respond_with<R>(rqctx: &Request<AppContext>, result: Result<R, ApiError>) -> Headed<R>
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

/// When the edge answers the request with a timeout if its handler has
/// not (see `edge::request::forward`): a store that has not committed an
/// ingest request by then does not apply it.
#[derive(Clone, Copy, Debug)]
pub struct AnswerBy(pub std::time::Instant);

/// Who sent the request, when authentication is on (the edge verified the
/// token and attached its bearer).
pub(crate) fn principal(rqctx: &Request<AppContext>) -> Option<&Principal> {
    rqctx.extensions().get::<Arc<Principal>>().map(|p| &**p)
}

/// Whether the request may see the symbol's exchange (always, without
/// authentication).
pub(crate) fn visible(rqctx: &Request<AppContext>, symbol: &Symbol) -> bool {
    principal(rqctx).is_none_or(|p| p.allows(&symbol.info.exchange))
}

pub enum TradingServer {}

impl TradingService for TradingServer {
    type Context = AppContext;

    async fn get_service_index(rqctx: Request<AppContext>) -> Response<ServiceIndex> {
        meta::get_service_index(rqctx).await
    }

    async fn get_health_status(rqctx: Request<AppContext>) -> Response<HealthResponse> {
        meta::get_health_status(rqctx).await
    }

    async fn get_readiness(rqctx: Request<AppContext>) -> Response<Readiness> {
        meta::get_readiness(rqctx).await
    }

    async fn get_api_versions(rqctx: Request<AppContext>) -> Response<ApiMetadata> {
        meta::get_api_versions(rqctx).await
    }

    async fn get_current_api_version(rqctx: Request<AppContext>) -> Response<VersionInfo> {
        meta::get_current_api_version(rqctx).await
    }

    async fn get_config(rqctx: Request<AppContext>) -> Response<DatafeedConfiguration> {
        datafeed::get_config(rqctx).await
    }

    async fn search_symbols(
        rqctx: Request<AppContext>,
        query: ApiQuery<SearchSymbolsQuery>,
    ) -> Response<Vec<SymbolSearchResult>> {
        datafeed::search_symbols(rqctx, query).await
    }

    async fn resolve_symbol(
        rqctx: Request<AppContext>,
        path: ApiPath<ResolveSymbolPath>,
    ) -> Response<SymbolInfo> {
        datafeed::resolve_symbol(rqctx, path).await
    }

    async fn get_bars(
        rqctx: Request<AppContext>,
        query: ApiQuery<GetBarsQuery>,
    ) -> Headed<EncodedOk<BarsResponse>> {
        datafeed::get_bars(rqctx, query).await
    }

    async fn get_quotes(
        rqctx: Request<AppContext>,
        body: ApiBody<QuotesRequest>,
    ) -> Response<Vec<QuoteData>> {
        datafeed::get_quotes(rqctx, body).await
    }

    async fn datafeed_health_check(rqctx: Request<AppContext>) -> Response<DatafeedHealth> {
        datafeed::datafeed_health_check(rqctx).await
    }

    async fn ingest_trades(
        rqctx: Request<AppContext>,
        headers: ApiHeader<IngestTradesHeaders>,
        body: ApiBody<TradesIngestRequest>,
    ) -> Response<IngestResponse> {
        ingest::ingest_trades(rqctx, headers, body).await
    }

    async fn ingest_bars(
        rqctx: Request<AppContext>,
        headers: ApiHeader<IngestBarsHeaders>,
        body: ApiBody<BarsIngestRequest>,
    ) -> Response<IngestResponse> {
        ingest::ingest_bars(rqctx, headers, body).await
    }

    async fn get_server_time(rqctx: Request<AppContext>) -> Response<i64> {
        datafeed::get_server_time(rqctx).await
    }

    async fn place_order(
        rqctx: Request<AppContext>,
        headers: ApiHeader<PlaceOrderHeaders>,
        body: ApiBody<PlaceOrderRequest>,
    ) -> Response<PlaceOrderResult> {
        broker::place_order(rqctx, headers, body).await
    }

    async fn preview_order(
        rqctx: Request<AppContext>,
        body: ApiBody<PlaceOrderRequest>,
    ) -> Response<OrderPreview> {
        broker::preview_order(rqctx, body).await
    }

    async fn get_orders(rqctx: Request<AppContext>) -> Response<Vec<Order>> {
        broker::get_orders(rqctx).await
    }

    async fn get_orders_history(
        rqctx: Request<AppContext>,
        query: ApiQuery<GetOrdersHistoryQuery>,
    ) -> Response<OrdersPage> {
        broker::get_orders_history(rqctx, query).await
    }

    async fn cancel_orders(
        rqctx: Request<AppContext>,
        body: ApiBody<CancelOrdersRequest>,
    ) -> Response<Vec<Order>> {
        broker::cancel_orders(rqctx, body).await
    }

    async fn modify_order(
        rqctx: Request<AppContext>,
        path: ApiPath<ModifyOrderPath>,
        body: ApiBody<ModifyOrderRequest>,
    ) -> Response<Order> {
        broker::modify_order(rqctx, path, body).await
    }

    async fn cancel_order(
        rqctx: Request<AppContext>,
        path: ApiPath<CancelOrderPath>,
    ) -> Response<Order> {
        broker::cancel_order(rqctx, path).await
    }

    async fn get_positions(rqctx: Request<AppContext>) -> Response<Vec<Position>> {
        broker::get_positions(rqctx).await
    }

    async fn close_position(
        rqctx: Request<AppContext>,
        path: ApiPath<ClosePositionPath>,
        query: ApiQuery<ClosePositionQuery>,
    ) -> Response<Order> {
        broker::close_position(rqctx, path, query).await
    }

    async fn reverse_position(
        rqctx: Request<AppContext>,
        path: ApiPath<ReversePositionPath>,
    ) -> Response<Order> {
        broker::reverse_position(rqctx, path).await
    }

    async fn edit_position_brackets(
        rqctx: Request<AppContext>,
        path: ApiPath<EditPositionBracketsPath>,
        body: ApiBody<Brackets>,
    ) -> Response<Position> {
        broker::edit_position_brackets(rqctx, path, body).await
    }

    async fn get_executions(
        rqctx: Request<AppContext>,
        path: ApiPath<GetExecutionsPath>,
    ) -> Response<Vec<Execution>> {
        broker::get_executions(rqctx, path).await
    }

    async fn get_account_info(rqctx: Request<AppContext>) -> Response<AccountInfo> {
        broker::get_account_info(rqctx).await
    }

    async fn reset_account(rqctx: Request<AppContext>) -> Response<AccountInfo> {
        broker::reset_account(rqctx).await
    }

    async fn get_symbol_info(
        rqctx: Request<AppContext>,
        path: ApiPath<GetSymbolInfoPath>,
    ) -> Response<InstrumentInfo> {
        broker::get_symbol_info(rqctx, path).await
    }

    async fn leverage_info(
        rqctx: Request<AppContext>,
        query: ApiQuery<LeverageInfoQuery>,
    ) -> Response<LeverageInfo> {
        broker::leverage_info(rqctx, query).await
    }

    async fn set_leverage(
        rqctx: Request<AppContext>,
        body: ApiBody<LeverageRequest>,
    ) -> Response<LeverageInfo> {
        broker::set_leverage(rqctx, body).await
    }

    async fn preview_leverage(
        rqctx: Request<AppContext>,
        body: ApiBody<LeverageRequest>,
    ) -> Response<LeveragePreview> {
        broker::preview_leverage(rqctx, body).await
    }
}
