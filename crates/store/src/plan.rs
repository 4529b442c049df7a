//! What an ingest request will write, decided before any write: which
//! symbols it targets (and at which base), whether every item follows the
//! rules, and the base bars it produces. Every engine's writer plans with
//! these and only does the reading and writing itself, so the engines
//! accept, refuse and fold exactly the same things.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use crate::chain::is_base;
use crate::rules::{check_bar, check_step, check_tick, check_trade};
use crate::{Records, StoredBar, SymbolRecord};
use trading_market::calendar::{Resolution, TradingDay};
use trading_market::ingest::{BarIn, IngestError, IngestReceipt, TradeIn};
use trading_market::volume::Volume;

/// Base bars a request writes, by (symbol id, bar time), with the
/// resolution they are stored at.
pub type BaseBars = BTreeMap<(i64, i64), (Resolution, StoredBar)>;

/// A symbol one request writes to.
pub struct Target {
    pub record: SymbolRecord,
    /// The resolution its bars are stored at.
    pub base: Resolution,
    /// Whether this request gives the symbol its first bars (and base).
    pub new: bool,
    /// The trading day of its previous trade in the request: the next one
    /// is most likely in it too.
    day: Option<TradingDay>,
}

/// What one transaction changed for one symbol.
pub struct Touched {
    pub record: SymbolRecord,
    /// The newest bar of each served resolution before the transaction.
    pub before: Vec<(Resolution, Option<i64>)>,
}

impl Touched {
    /// The time of the newest bar of `res` before the transaction.
    pub fn newest_before(&self, res: Resolution) -> Option<i64> {
        self.before
            .iter()
            .find(|(r, _)| *r == res)
            .and_then(|(_, t)| *t)
    }
}

/// A transaction's work in progress.
#[derive(Default)]
pub struct Work {
    pub touched: BTreeMap<i64, Touched>,
    /// Symbols that got their base resolution in this transaction.
    pub new_bases: HashMap<i64, Resolution>,
    /// Symbols with a bar changed that is older than their newest.
    pub amended: HashSet<i64>,
}

impl Work {
    /// Notes that `bar` (of symbol `id` at `base`) is written: history is
    /// amended when it is older than the symbol's newest bar before the
    /// transaction.
    pub fn note_written(&mut self, id: i64, base: Resolution, time: i64) {
        let newest = self.touched.get(&id).and_then(|t| t.newest_before(base));
        if newest.is_some_and(|newest| time < newest) {
            self.amended.insert(id);
        }
    }

    /// What to publish after the transaction: for each resolution of each
    /// symbol it touched, (symbol id, ticker, resolution, the time of the
    /// newest bar before it); every bar from that time on changed.
    pub fn to_publish(&self) -> Vec<(i64, &str, Resolution, Option<i64>)> {
        let mut out = Vec::new();
        for (id, touched) in &self.touched {
            let base = self.new_bases.get(id).copied().or(touched.record.base);
            let Some(base) = base else { continue };
            for res in crate::chain::served(base) {
                let ticker = touched.record.info.ticker.as_str();
                out.push((*id, ticker, res, touched.newest_before(res)));
            }
        }
        out
    }
}

/// The record a request names, with the base its writes go to: the
/// symbol's own, one set earlier in this transaction, or (for its first
/// bars) the finest its registration lists, else one minute.
fn target(records: &Records, name: &str, work: &Work) -> Option<Target> {
    let record = records.lookup(name)?;
    let set = record
        .base
        .or_else(|| work.new_bases.get(&record.id).copied());
    Some(Target {
        record: record.clone(),
        base: set.or(record.declared_base).unwrap_or(Resolution::Min1),
        new: set.is_none(),
        day: None,
    })
}

/// The symbols one request names, each looked up (and its record cloned)
/// once, however many items name it.
#[derive(Default)]
struct Targets<'a> {
    list: Vec<Target>,
    index: HashMap<&'a str, usize>,
}

impl<'a> Targets<'a> {
    /// Where in `list` the symbol `name` is; None for an unknown symbol.
    fn find(&mut self, records: &Records, name: &'a str, work: &Work) -> Option<usize> {
        if let Some(&k) = self.index.get(name) {
            return Some(k);
        }
        self.list.push(target(records, name, work)?);
        self.index.insert(name, self.list.len() - 1);
        Some(self.list.len() - 1)
    }
}

/// A trade placed in its base bar: (symbol id, base, bar time, size).
pub type Placed = (i64, Resolution, i64, Volume);

/// Checks every trade (nothing is written unless all pass) and places it
/// in its base bar.
pub fn trades(
    records: &Records,
    trades: &[TradeIn],
    now_ms: i64,
    work: &Work,
) -> Result<(Vec<Target>, Vec<Placed>), IngestError> {
    let mut placed = Vec::with_capacity(trades.len());
    let mut targets = Targets::default();
    for (i, t) in trades.iter().enumerate() {
        let Some(k) = targets.find(records, &t.symbol, work) else {
            return Err(IngestError::Invalid(format!(
                "trades[{i}]: unknown symbol {:?}",
                t.symbol
            )));
        };
        let target = &mut targets.list[k];
        let (record, base) = (&target.record, target.base);
        let checked = check_trade(t, &record.calendar, base, now_ms, &mut target.day).and_then(
            |(bar_time, size)| {
                check_tick("price", t.price, record.info.pricescale, record.info.minmov)?;
                check_step("size", size, record.info.volume_precision)?;
                Ok((bar_time, size))
            },
        );
        match checked {
            Ok((bar_time, size)) => placed.push((record.id, base, bar_time, size)),
            Err(why) => {
                return Err(IngestError::Invalid(format!(
                    "trades[{i}] ({}): {why}",
                    record.info.ticker
                )))
            }
        }
    }
    Ok((targets.list, placed))
}

/// The base bars placed trades land in, each once: what the writer reads
/// before folding.
pub fn bars_to_read(placed: &[Placed]) -> Vec<(i64, Resolution, i64)> {
    let mut seen = HashSet::new();
    placed
        .iter()
        .filter(|(id, _, time, _)| seen.insert((*id, *time)))
        .map(|(id, base, time, _)| (*id, *base, *time))
        .collect()
}

/// Folds each bar's trades, in request order, into its stored state
/// (`stored`, by (symbol id, bar time); absent for a new bar).
pub fn fold(
    placed: Vec<Placed>,
    trades: &[TradeIn],
    stored: &HashMap<(i64, i64), StoredBar>,
) -> Result<BaseBars, IngestError> {
    let mut bars = BaseBars::new();
    for (i, ((id, base, bar_time, size), t)) in placed.into_iter().zip(trades).enumerate() {
        let added = match bars.entry((id, bar_time)) {
            Entry::Occupied(mut e) => e.get_mut().1.add_trade(t.time, t.price, size),
            Entry::Vacant(e) => match stored.get(&(id, bar_time)) {
                Some(bar) => {
                    let mut bar = *bar;
                    let added = bar.add_trade(t.time, t.price, size);
                    e.insert((base, bar));
                    added
                }
                None => {
                    e.insert((base, StoredBar::of_trade(bar_time, t.time, t.price, size)));
                    Some(())
                }
            },
        };
        if added.is_none() {
            return Err(IngestError::Invalid(format!(
                "trades[{i}]: the bar's volume would overflow"
            )));
        }
    }
    Ok(bars)
}

/// Checks every bar (nothing is written unless all pass) and gives them
/// as stored.
pub fn bars(
    records: &Records,
    resolution: Option<Resolution>,
    bars_in: &[BarIn],
    now_ms: i64,
    work: &Work,
) -> Result<(Vec<Target>, BaseBars), IngestError> {
    let mut bars = BaseBars::new();
    let mut first_at: HashMap<(i64, i64), usize> = HashMap::new();
    let mut targets = Targets::default();
    for (i, b) in bars_in.iter().enumerate() {
        let invalid = |why: String| Err(IngestError::Invalid(format!("bars[{i}]: {why}")));
        let Some(k) = targets.find(records, &b.symbol, work) else {
            return invalid(format!("unknown symbol {:?}", b.symbol));
        };
        let target = &mut targets.list[k];
        let record = &target.record;
        match resolution {
            Some(r) if !is_base(r) => {
                return invalid(format!(
                    "bars cannot be ingested at {}: it is built from daily bars",
                    r.as_str()
                ))
            }
            // The request's resolution becomes a new symbol's base.
            Some(r) if target.new => target.base = r,
            Some(r) if r != target.base => {
                let base = target.base.as_str();
                return invalid(format!(
                    "{} has {base} bars: its base resolution is {base}, not {}",
                    record.info.ticker,
                    r.as_str()
                ));
            }
            _ => {}
        }
        let info = &record.info;
        let checked = check_bar(b, &record.calendar, target.base, now_ms).and_then(|bar| {
            for (name, price) in [
                ("open", b.open),
                ("high", b.high),
                ("low", b.low),
                ("close", b.close),
            ] {
                check_tick(name, price, info.pricescale, info.minmov)?;
            }
            check_step("volume", bar.volume, info.volume_precision)?;
            Ok(bar)
        });
        let bar = match checked {
            Ok(bar) => bar,
            Err(why) => return invalid(format!("({}) {why}", record.info.ticker)),
        };
        if let Some(first) = first_at.insert((record.id, bar.time), i) {
            return invalid(format!(
                "{} at {} is also bars[{first}]: a bar may appear once per request",
                record.info.ticker, b.time
            ));
        }
        bars.insert((record.id, bar.time), (target.base, bar));
    }
    Ok((targets.list, bars))
}

/// The answer to a request whose `Idempotency-Key` was stored as
/// `(fingerprint, applied)`: the first answer again for the same request,
/// a refusal for another.
pub fn replay(
    key: &str,
    endpoint: &str,
    fingerprint: i64,
    (stored, applied): (i64, i64),
) -> Result<IngestReceipt, IngestError> {
    if stored == fingerprint {
        Ok(IngestReceipt {
            applied: applied as usize,
        })
    } else {
        Err(IngestError::KeyReused(format!(
            "Idempotency-Key {key:?} was already used for a different {endpoint} request; use a \
             new key for a new request"
        )))
    }
}

/// The records once symbols that got their first bars serve their
/// resolutions.
pub fn adopt_bases(records: &Records, bases: &HashMap<i64, Resolution>) -> Option<Records> {
    let records: Vec<SymbolRecord> = records
        .iter()
        .map(|r| match bases.get(&r.id) {
            Some(base) => {
                let mut info = r.info.clone();
                trading_market::catalog::set_resolutions(&mut info, Some(*base));
                SymbolRecord {
                    info,
                    base: Some(*base),
                    ..r.clone()
                }
            }
            None => r.clone(),
        })
        .collect();
    Records::new(records).ok()
}

// The writer's queue, the same for every engine's writer.

/// Requests that may wait for the writer.
pub const QUEUE: usize = 1024;
/// Most requests in one transaction.
pub const MAX_BATCH: usize = 256;
/// How often the writer looks for other processes' commits when idle.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a request waits for room in the queue before a 503.
pub const QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Bars published per resolution after one transaction, at most (a feed
/// catching up after an outage may close many at once).
pub const MAX_PUBLISHED: usize = 32;

pub type Reply = tokio::sync::oneshot::Sender<
    Result<trading_market::ingest::IngestReceipt, trading_market::ingest::IngestError>,
>;

pub struct Job {
    pub request: trading_market::ingest::IngestRequest,
    pub key: Option<String>,
    pub now_ms: i64,
    /// When the client stops waiting: a request not committed by then is
    /// not applied (it is answered so, to nobody), never applied later.
    pub deadline: Option<std::time::Instant>,
    pub reply: Reply,
}

impl Job {
    pub fn expired(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| std::time::Instant::now() >= deadline)
    }
}

/// A writer busy with one transaction for longer than this is reported
/// stuck (`/ready` 503, reason `timeout`).
pub const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
