//! What every handler can see: the catalog, the market, the clock and the
//! CORS policy. Passed explicitly as dropshot's server context.

use std::sync::Arc;

use crate::bar_cache::BarCache;
use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::cors::CorsPolicy;
use crate::market::Market;
use crate::ws::WsState;

pub struct AppContext {
    pub catalog: Catalog,
    pub market: Arc<Market>,
    /// Encoded closed D/W/M bars, shared by every getBars.
    pub bar_cache: BarCache,
    pub clock: Clock,
    pub cors: CorsPolicy,
    pub seed: u64,
    pub ws: Arc<WsState>,
}
