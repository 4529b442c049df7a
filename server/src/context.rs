//! What every handler can see: the catalog, the market, the clock and the
//! CORS policy. Passed explicitly as dropshot's server context.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::cors::CorsPolicy;
use crate::market::Market;
use crate::ws::WsState;

pub struct AppContext {
    pub catalog: Catalog,
    pub market: Arc<Market>,
    pub clock: Clock,
    pub cors: CorsPolicy,
    pub seed: u64,
    pub ws: Arc<WsState>,
}
