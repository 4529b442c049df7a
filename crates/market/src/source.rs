//! Where bars come from: one interface for every data source.
//!
//! The REST handlers and the WebSocket side ask a [`DataSource`] and never
//! know which one answers: the synthetic market (`synthetic`, the
//! zero-setup default) or a store of real data (`store`, `--store`). A
//! source serves the symbols of its catalog, each at the resolutions its
//! `SymbolInfo` lists, and says how its live bars change:
//! * [`Live::Clock`]: with time alone (the synthetic market). The
//!   broadcaster asks for the current bar of every followed topic once per
//!   interval and publishes what changed.
//! * [`Live::Pushed`]: by writes (a store). The source hands every changed
//!   bar to its [`UpdateSink`] as soon as the write is durable, in the order
//!   of the writes, so nothing polls it.

use std::sync::Arc;

pub use crate::health::{Reason, Unhealthy};

use async_trait::async_trait;

pub use crate::bar::{Bar, BarQuery, BarsPage, Quote};
use crate::bars_json::EncodedRun;
use crate::calendar::Resolution;
use crate::catalog::{Catalog, Symbol};
use crate::ingest::Ingest;

/// How a source's live bars change; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    Clock,
    Pushed,
}

/// Where a [`Live::Pushed`] source sends changed bars: the WebSocket hub.
pub trait UpdateSink: Send + Sync {
    /// `bar` is the newest state of `symbol`'s bar at `res`. When a bar
    /// closes, the source sends its final state first, then the next bar.
    fn publish(&self, symbol: &str, res: Resolution, bar: Bar);
    /// The (symbol, resolution) pairs someone follows now.
    fn followed(&self) -> Vec<(String, Resolution)>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The source cannot answer now (a store that cannot be read): the
    /// class clients are told and the details for the log. Never caused by
    /// the request.
    Unavailable(Unhealthy),
}

impl SourceError {
    /// Unavailable for `reason`, with `detail` for the log.
    pub fn unavailable(reason: Reason, detail: impl Into<String>) -> SourceError {
        SourceError::Unavailable(Unhealthy {
            reason,
            detail: detail.into(),
        })
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Unavailable(why) => {
                write!(f, "the data source is unavailable: {}", why.detail)
            }
        }
    }
}

impl std::error::Error for SourceError {}

/// Every data source answers these. Callers pass symbols from the source's
/// own catalog and only resolutions the symbol serves.
#[async_trait]
pub trait DataSource: Send + Sync {
    /// `synthetic`, `sqlite` or `postgres`, as the datafeed health check
    /// reports it.
    fn kind(&self) -> &'static str;

    /// Which source this is, for the start-up log: the store's path or
    /// URL (never a password), the synthetic market's symbol count.
    fn describe(&self) -> String;

    /// The symbols served now. A snapshot: a store's grows as symbols are
    /// imported, and the next call returns the new one.
    fn catalog(&self) -> Arc<Catalog>;

    fn live(&self) -> Live;

    /// Bars for a `getBars` request, as of `now_ms`.
    async fn bars(
        &self,
        symbol: &Symbol,
        res: Resolution,
        query: &BarQuery,
        now_ms: i64,
    ) -> Result<BarsPage, SourceError>;

    /// Already-encoded bars the `getBars` body may copy from instead of
    /// encoding them again (`bars_json` compares every one before using its
    /// bytes). None unless the source keeps such a cache.
    fn encoded_history(
        &self,
        _symbol: &Symbol,
        _res: Resolution,
        _now_ms: i64,
    ) -> Option<Arc<EncodedRun>> {
        None
    }

    /// The bar containing `now_ms`, else the newest before it; None when
    /// there is none.
    async fn current_bar(
        &self,
        symbol: &Symbol,
        res: Resolution,
        now_ms: i64,
    ) -> Result<Option<Bar>, SourceError>;

    /// The quote as of `now_ms`; None when there is no data yet.
    async fn quote(&self, symbol: &Symbol, now_ms: i64) -> Result<Option<Quote>, SourceError>;

    /// Whether the source can answer now; why not, if not (a database it
    /// cannot reach).
    fn health(&self) -> Result<(), Unhealthy> {
        Ok(())
    }

    /// Stops the source cleanly when the server stops: a store finishes
    /// its writes and leaves its files closed.
    async fn close(&self) {}

    /// The write side, for sources that take live trades and bars.
    fn ingest(&self) -> Option<&dyn Ingest> {
        None
    }
}
