//! The `ingest` tag: trades and bars a feed sends into a store.

use dropshot::HttpError;
use trading_pro::extract::{ApiBody, ApiHeader};
use trading_pro::service::Request;
use trading_pro::types::*;

use super::{respond, Response};
use crate::context::AppContext;
use crate::error::ApiError;
use trading_market::ingest::{
    check_key, BarIn, Ingest, IngestError, IngestRequest, TradeIn, MAX_ITEMS,
};

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
    // A little before the edge gives up, so the store's own answer (not
    // applied) reaches the client first.
    let deadline = rqctx
        .extensions()
        .get::<super::AnswerBy>()
        .map(|by| by.0 - STORE_MARGIN);
    let applied = ingest.apply(request, key, now, deadline).await;
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
        Err(IngestError::Retry {
            reason,
            message,
            detail,
        }) => Err(ApiError::Retry {
            reason,
            message,
            detail,
        }),
    }
}

/// How long before the edge's answer deadline the store stops trying to
/// apply an ingest request, so its answer comes first.
const STORE_MARGIN: std::time::Duration = std::time::Duration::from_millis(250);

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

pub async fn ingest_trades(
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

pub async fn ingest_bars(
    rqctx: Request<AppContext>,
    headers: ApiHeader<IngestBarsHeaders>,
    body: ApiBody<BarsIngestRequest>,
) -> Response<IngestResponse> {
    let key = headers.into_inner().map(|h| h.idempotency_key);
    let request = body.into_inner().map(|b| IngestRequest::Bars {
        resolution: b
            .resolution
            .and_then(|r| trading_market::calendar::Resolution::parse(&r.to_string())),
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
