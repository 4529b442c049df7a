//! Structured logging (slog): terminal lines for people, JSON for machines.

use std::io::LineWriter;

use slog::Drain;

use crate::config::{LogFormat, LogLevel};

pub fn logger(level: LogLevel, format: LogFormat) -> slog::Logger {
    let level = match level {
        LogLevel::Trace => slog::Level::Trace,
        LogLevel::Debug => slog::Level::Debug,
        LogLevel::Info => slog::Level::Info,
        LogLevel::Warn => slog::Level::Warning,
        LogLevel::Error => slog::Level::Error,
    };
    // Logging goes through an async drain so a slow stderr never stalls a
    // request handler.
    let drain = match format {
        LogFormat::Terminal => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            let drain = slog_term::FullFormat::new(decorator).build().fuse();
            slog_async::Async::new(drain)
                .build()
                .fuse()
                .filter_level(level)
                .fuse()
        }
        LogFormat::Json => {
            // stderr is unbuffered and the JSON drain writes a record in
            // many small pieces: a LineWriter makes that one write per line.
            let drain = slog_json::Json::default(LineWriter::new(std::io::stderr())).fuse();
            slog_async::Async::new(drain)
                .build()
                .fuse()
                .filter_level(level)
                .fuse()
        }
    };
    slog::Logger::root(drain, slog::o!("service" => "trading-server"))
}

/// A logger that drops everything (embedded servers in tests).
pub fn discard() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}
