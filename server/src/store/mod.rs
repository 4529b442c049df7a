//! Real market data: stores of bars, fed by CSV import and live ingest.

use std::sync::Arc;

use async_trait::async_trait;

use crate::source::{DataSource, UpdateSink};

/// The write side of a store: live trades and bars.
#[async_trait]
pub trait Ingest: Send + Sync {}

/// Opens the store `url` names as a data source.
pub fn open_source(url: &str, _sink: Arc<dyn UpdateSink>) -> Result<Arc<dyn DataSource>, String> {
    Err(format!("cannot open store {url:?}: not built yet"))
}
