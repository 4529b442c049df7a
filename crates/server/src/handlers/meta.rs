//! Everything about the service rather than the market: its index,
//! health, readiness for a load balancer, and API versions.

use trading_pro::service::Request;
use trading_pro::types::*;

use super::{respond, Response};
use crate::context::AppContext;
use crate::error::ApiError;
use trading_bus::Bus;
use trading_market::clock::rfc3339;
use trading_market::source::Reason;

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

fn store_health(ctx: &AppContext) -> StoreHealth {
    // The class only: the details name hosts and files, for the log.
    let problem = ctx.source.health().err();
    StoreHealth {
        kind: ctx.source.kind().into(),
        status: if problem.is_some() {
            StoreHealthStatus::Unavailable
        } else {
            StoreHealthStatus::Ok
        },
        reason: problem.as_ref().map(|u| match u.reason {
            Reason::Unavailable => StoreHealthReason::Unavailable,
            Reason::DiskFull => StoreHealthReason::DiskFull,
            Reason::ReadOnly => StoreHealthReason::ReadOnly,
            Reason::Damaged => StoreHealthReason::Damaged,
            Reason::Timeout => StoreHealthReason::Timeout,
        }),
        message: problem.map(|u| u.to_string()),
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

pub async fn get_service_index(rqctx: Request<AppContext>) -> Response<ServiceIndex> {
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

pub async fn get_health_status(rqctx: Request<AppContext>) -> Response<HealthResponse> {
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

pub async fn get_readiness(rqctx: Request<AppContext>) -> Response<Readiness> {
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

pub async fn get_api_versions(rqctx: Request<AppContext>) -> Response<ApiMetadata> {
    let meta = ApiMetadata {
        current_version: trading_pro::API_VERSION.into(),
        available_versions: versions(),
        documentation_url: "/api/v1/docs".into(),
        support_contact: "support@trading-pro.example".into(),
    };
    respond(&rqctx, Ok(meta))
}

pub async fn get_current_api_version(rqctx: Request<AppContext>) -> Response<VersionInfo> {
    respond(&rqctx, Ok(current_version()))
}
