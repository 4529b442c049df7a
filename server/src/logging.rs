//! Structured logging (slog): terminal lines for people, JSON for machines.
//!
//! Records go through an async drain so a slow stderr never stalls a
//! request handler. Its queue is large (a burst of access-log lines fits),
//! and when it is full anyway a record is dropped rather than block the
//! server: every drop is counted ([`take_dropped`]), and the edge logs the
//! count, so logs never lose events silently.

use std::io::LineWriter;
use std::sync::atomic::{AtomicU64, Ordering};

use slog::Drain;

use crate::config::{LogFormat, LogLevel};

/// Records the async queue holds before dropping.
const QUEUE: usize = 64 * 1024;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Records dropped since the last call.
pub fn take_dropped() -> u64 {
    DROPPED.swap(0, Ordering::Relaxed)
}

/// Counts what the async drain could not take.
struct Counted<D>(D);

impl<D: Drain> Drain for Counted<D> {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        if self.0.log(record, values).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn level_of(level: LogLevel) -> slog::Level {
    match level {
        LogLevel::Trace => slog::Level::Trace,
        LogLevel::Debug => slog::Level::Debug,
        LogLevel::Info => slog::Level::Info,
        LogLevel::Warn => slog::Level::Warning,
        LogLevel::Error => slog::Level::Error,
    }
}

fn queued<D>(drain: D) -> Counted<slog_async::AsyncCore>
where
    D: Drain<Err = slog::Never, Ok = ()> + Send + 'static,
{
    // `AsyncCore`, not `Async`: it reports a full queue instead of
    // swallowing it, so every drop is counted.
    Counted(
        slog_async::AsyncCore::custom(drain)
            .chan_size(QUEUE)
            .blocking(false)
            .thread_name("log".into())
            .build(),
    )
}

pub fn logger(level: LogLevel, format: LogFormat) -> slog::Logger {
    let level = level_of(level);
    match format {
        LogFormat::Terminal => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            let drain = queued(drain).filter_level(level).fuse();
            slog::Logger::root(drain, slog::o!("service" => "trading-server"))
        }
        LogFormat::Json => {
            // stderr is unbuffered and the JSON drain writes a record in
            // many small pieces: a LineWriter makes that one write per line.
            let drain = slog_json::Json::default(LineWriter::new(std::io::stderr())).fuse();
            let drain = queued(drain).filter_level(level).fuse();
            slog::Logger::root(drain, slog::o!("service" => "trading-server"))
        }
    }
}

/// A logger that drops everything (embedded servers in tests).
pub fn discard() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
