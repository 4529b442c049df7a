//! A store as the server serves it, for every engine: reads as a
//! [`DataSource`] (the newest bars of each series from memory, `recent`,
//! the rest from the engine), writes through the one writer (`writer`),
//! and a shared log's entries through the same writer (`replication`).

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use trading_market::bars_json::{EncodedRun, PriceFormat};
use trading_market::calendar::Resolution;
use trading_market::catalog::{Catalog, Symbol};
use trading_market::ingest::{Ingest, IngestError, IngestReceipt, IngestRequest};
use trading_market::source::{
    Bar, BarQuery, BarsPage, DataSource, Live, Quote, SourceError, Unhealthy, UpdateSink,
};

use crate::engine::{Engine, Fail};
use crate::ledger::{BrokerConfig, Ledger};
use crate::recent::{self, RecentBars};
use crate::replication::{Applier, Logged, Outcome};
use crate::trading::Trading;
use crate::writer::{Health, Shared, Writer};
use crate::{Records, StoredBar};

/// A store opened for serving: its engine, its symbols, its kept bars and
/// its writer.
pub struct ServedStore<E: Engine> {
    engine: E,
    /// The symbols as of the last change the writer saw.
    records: Arc<RwLock<Arc<Records>>>,
    /// The newest bars of each series, in memory (see `recent`).
    recent: Arc<RecentBars>,
    writer: Writer,
    /// Whether the store can answer (the writer's last look).
    health: Arc<Health>,
    /// The paper broker, whose desk lives with the writer.
    trading: Arc<Trading>,
}

impl<E: Engine> ServedStore<E> {
    /// Starts serving `engine`, whose symbols are `records` as of its
    /// change counter `changes`: the writer starts where the engine runs
    /// its writes, and pushes the bars every write changes to `sink`.
    pub fn start(
        engine: E,
        records: Records,
        changes: i64,
        sink: Arc<dyn UpdateSink>,
        broker: BrokerConfig,
    ) -> Result<ServedStore<E>, Fail> {
        let conn = engine.open_writer()?;
        let records = Arc::new(RwLock::new(Arc::new(records)));
        let recent = Arc::new(RecentBars::default());
        let health = Arc::new(Health::default());
        let ledger = Ledger::for_store(broker);
        let (writer, run) = Writer::new(
            conn,
            engine.describe(),
            changes,
            Shared {
                records: Arc::clone(&records),
                recent: Arc::clone(&recent),
                sink,
                health: Arc::clone(&health),
                ledger: Arc::clone(&ledger),
            },
        );
        engine.spawn_writer(Box::pin(run));
        let trading = Arc::new(Trading::store(ledger, writer.clone()));
        Ok(ServedStore {
            engine,
            records,
            recent,
            writer,
            health,
            trading,
        })
    }

    /// The paper broker on this store.
    pub fn trading(&self) -> Arc<Trading> {
        Arc::clone(&self.trading)
    }

    fn snapshot(&self) -> Arc<Records> {
        Arc::clone(&self.records.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The record behind a catalog symbol and its base resolution, or None
    /// for a symbol without bars.
    fn base_of(&self, symbol: &Symbol) -> Option<(i64, Resolution)> {
        let records = self.snapshot();
        let record = records.get(symbol)?;
        Some((record.id, record.base?))
    }

    fn unavailable(&self, e: Fail) -> SourceError {
        let problem = Unhealthy {
            reason: e.reason,
            detail: format!("store {}: {e}", self.engine.describe()),
        };
        self.health.read_failed(problem.clone());
        SourceError::Unavailable(problem)
    }

    /// The kept bars of a series (`recent`), built if missing or stale,
    /// and the bars after them: kept too while the symbol has not been
    /// written since, else read from the engine.
    async fn kept(
        &self,
        symbol: &Symbol,
        id: i64,
        res: Resolution,
    ) -> Result<(Arc<recent::Entry>, Vec<Bar>), SourceError> {
        let stamp = self.recent.stamp(id);
        if let Some(entry) = self.recent.get(id, res, stamp.0) {
            if let Some(tail) = entry.tail(stamp.1) {
                let tail = tail.to_vec();
                return Ok((entry, tail));
            }
            let tail = self
                .engine
                .since(id, res, entry.cutoff, recent::MAX_TAIL + 1)
                .await
                .map_err(|e| self.unavailable(e))?;
            if tail.len() <= recent::MAX_TAIL {
                return Ok((entry, tail.iter().map(StoredBar::to_bar).collect()));
            }
        }
        let newest = self
            .engine
            .since(id, res, i64::MIN, recent::WINDOW)
            .await
            .map_err(|e| self.unavailable(e))?;
        let newest: Vec<Bar> = newest.iter().map(StoredBar::to_bar).collect();
        let prices = PriceFormat::for_pricescale(symbol.info.pricescale);
        Ok(self.recent.put(id, res, stamp, newest, prices))
    }
}

#[async_trait]
impl<E: Engine> DataSource for ServedStore<E> {
    fn kind(&self) -> &'static str {
        self.engine.kind()
    }

    fn describe(&self) -> String {
        self.engine.describe()
    }

    fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(self.snapshot().catalog())
    }

    fn live(&self) -> Live {
        Live::Pushed
    }

    async fn bars(
        &self,
        symbol: &Symbol,
        res: Resolution,
        query: &BarQuery,
        _now_ms: i64,
    ) -> Result<BarsPage, SourceError> {
        let Some((id, _)) = self.base_of(symbol) else {
            return Ok(BarsPage {
                bars: Vec::new(),
                no_data: true,
                next_time: None,
            });
        };
        let (entry, tail) = self.kept(symbol, id, res).await?;
        if let Some(page) = entry.page(&tail, query) {
            return Ok(page);
        }
        // Reaching back before the kept bars: from the engine.
        self.engine
            .page(id, res, query)
            .await
            .map_err(|e| self.unavailable(e))
    }

    fn encoded_history(
        &self,
        symbol: &Symbol,
        res: Resolution,
        _now_ms: i64,
    ) -> Option<Arc<EncodedRun>> {
        let (id, _) = self.base_of(symbol)?;
        let (stamp, _) = self.recent.stamp(id);
        self.recent
            .get(id, res, stamp)
            .map(|entry| Arc::clone(&entry.run))
    }

    async fn current_bar(
        &self,
        symbol: &Symbol,
        res: Resolution,
        _now_ms: i64,
    ) -> Result<Option<Bar>, SourceError> {
        let Some((id, _)) = self.base_of(symbol) else {
            return Ok(None);
        };
        self.engine
            .latest_bar(id, res)
            .await
            .map_err(|e| self.unavailable(e))
    }

    async fn quote(&self, symbol: &Symbol, _now_ms: i64) -> Result<Option<Quote>, SourceError> {
        let Some((id, base)) = self.base_of(symbol) else {
            return Ok(None);
        };
        // The trading day and the one before it, from the kept daily bars.
        let (entry, tail) = self.kept(symbol, id, Resolution::Day).await?;
        let mut days = entry.bars().iter().chain(&tail).rev();
        let (Some(today), yesterday) = (days.next().copied(), days.next()) else {
            return Ok(None);
        };
        let last = if base == Resolution::Day {
            today.close
        } else {
            let latest = self
                .engine
                .latest(id, base, 1)
                .await
                .map_err(|e| self.unavailable(e))?;
            match latest.first() {
                Some(bar) => bar.close,
                None => return Ok(None),
            }
        };
        let prev_close = yesterday.map_or(today.open, |d| d.close);
        let change = last - prev_close;
        Ok(Some(Quote {
            last,
            bid: None,
            ask: None,
            open: today.open,
            high: today.high,
            low: today.low,
            prev_close,
            volume: today.volume,
            change,
            change_percent: if prev_close != 0.0 {
                change / prev_close * 100.0
            } else {
                0.0
            },
        }))
    }

    fn health(&self) -> Result<(), Unhealthy> {
        self.health.check()
    }

    /// The readers first, the writer's connection last: the last one to
    /// close is the one that removes SQLite's log.
    async fn close(&self) {
        self.engine.close();
        self.writer.close().await;
        self.engine.closed();
    }

    fn ingest(&self) -> Option<&dyn Ingest> {
        Some(&self.writer)
    }
}

#[async_trait]
impl Ingest for Writer {
    async fn apply(
        &self,
        request: IngestRequest,
        key: Option<String>,
        now_ms: i64,
        deadline: Option<std::time::Instant>,
    ) -> Result<IngestReceipt, IngestError> {
        self.submit(request, key, now_ms, deadline).await
    }
}

#[async_trait]
impl<E: Engine> Applier for ServedStore<E> {
    fn records(&self) -> Arc<Records> {
        self.snapshot()
    }

    fn market(&self) -> &str {
        self.engine.market()
    }

    async fn followed(&self) -> Result<Option<String>, String> {
        self.engine.followed().await.map_err(|e| self.failed(e))
    }

    async fn follow(&self, log: &str) -> Result<(), String> {
        self.engine.follow(log).await.map_err(|e| self.failed(e))
    }

    async fn position(&self, log: &str) -> Result<u64, String> {
        self.engine.position(log).await.map_err(|e| self.failed(e))
    }

    async fn apply_logged(&self, log: &str, entries: Vec<Logged>) -> Result<Vec<Outcome>, String> {
        self.writer.apply_logged(log, entries).await
    }
}

impl<E: Engine> ServedStore<E> {
    fn failed(&self, e: Fail) -> String {
        format!("store {}: {e}", self.engine.describe())
    }
}
