//! What every handler can see: the data source, the clock, the CORS policy,
//! the WebSocket side and the built pages. Handlers get it through `trading_pro::service::Request`.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::cors::CorsPolicy;
use crate::metrics::Metrics;
use crate::pages::Pages;
use crate::ws::WsState;
use trading_bus::Bus;
use trading_market::clock::Clock;
use trading_market::source::DataSource;

pub struct AppContext {
    /// Where bars come from: the synthetic market or a store.
    pub source: Arc<dyn DataSource>,
    pub clock: Clock,
    pub cors: CorsPolicy,
    /// The bearer token ingest requests must carry; None disables ingest.
    pub ingest_token: Option<String>,
    pub ws: Arc<WsState>,
    /// Present on a node of several (`--bus`): ingest goes through it.
    pub bus: Option<Bus>,
    /// The paper broker, or why it is not served.
    pub broker: Result<Arc<trading_store::trading::Trading>, String>,
    /// Counted by the edge, the WebSocket side and ingest.
    pub metrics: Arc<Metrics>,
    /// The chart and docs pages, read from `--web-dir` at start-up.
    pub pages: Pages,
    /// The specs as served (required tokens with authentication on).
    pub specs: crate::served_specs::Specs,
    /// Set once the node is shutting down: readiness answers 503 from then
    /// on, so load balancers stop sending it new clients.
    pub stopping: AtomicBool,
}
