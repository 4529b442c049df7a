//! The market-data domain of trading-pro: what every source of bars and
//! every consumer of them agrees on, with no I/O of its own.
//!
//! * `calendar`: sessions, IANA time zones, resolutions: what a bar means;
//! * `catalog`: the symbols and search;
//! * `clock`: the market clock (real, fast or frozen);
//! * `volume`: exact decimal volumes;
//! * `bar`: bars, pages of them and quotes, as sources answer them;
//! * `source`: the `DataSource` interface every handler asks (the
//!   synthetic market and the stores implement it), and the sink live
//!   updates go to;
//! * `paging`: the getBars paging contract every source follows;
//! * `ingest`: what a feed sends and the `Ingest` interface that takes it;
//! * `bars_json`: the getBars body, written without serde (fast path).

pub mod bar;
pub mod bars_json;
pub mod calendar;
pub mod catalog;
pub mod clock;
pub mod health;
pub mod ingest;
pub mod paging;
pub mod source;
pub mod volume;
