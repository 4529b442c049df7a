//! One stream per market: a store follows one stream, and a stream carries
//! one store's entries.
//!
//! Two markets that share a NATS server and a stream name (the default
//! `TRADING_INGEST`, say) would otherwise apply each other's trades. So the
//! store keeps an identity of its own (made when it was created), every
//! entry names the store it was appended for, and the store records which
//! stream incarnation (`name@epoch`) it follows. Before a node follows a
//! stream it checks, here, that:
//!
//! * the store follows no stream yet, or this one (by name: a stream
//!   created anew under the same name, after NATS lost its data, is still
//!   this market's if it holds only this market's entries);
//! * the stream holds no entries of another store, nor entries from before
//!   entries named their store, unless the store already follows it.
//!
//! Then the store records the stream. The follower also refuses, one by
//! one, any entry that names another store (`follow`).

use super::{message, Log};
use trading_store::replication::Applier;

/// Why a node may not follow a stream, or could not find out.
#[derive(Debug)]
pub enum Ownership {
    /// The store and the stream are not one market's: the message says
    /// which and what to do.
    Refused(String),
    /// The store or the bus could not be asked now.
    Unknown(String),
}

/// Checks that `store` may follow `log` (see the module), and records it.
/// Returns the log incarnation's key (`name@epoch`).
pub async fn claim(
    log: &dyn Log,
    store: &dyn Applier,
    store_name: &str,
) -> Result<String, Ownership> {
    let followed = store.followed().await.map_err(Ownership::Unknown)?;
    let name = log.name();
    if let Some(followed) = &followed {
        let followed_name = followed.split('@').next().unwrap_or(followed);
        if followed_name != name {
            return Err(Ownership::Refused(format!(
                "the store {store_name} belongs to the stream {followed_name}, and this node was \
                 started with --bus-stream {name}: start every node of this market with \
                 --bus-stream {followed_name}, or give the other market its own database"
            )));
        }
    }
    log.prepare().await.map_err(|e| Ownership::Unknown(e.0))?;
    let epoch = log.epoch().await.map_err(|e| Ownership::Unknown(e.0))?;
    let key = format!("{name}@{epoch}");
    if followed.as_deref() == Some(key.as_str()) {
        return Ok(key);
    }
    let ours = store.market();
    if let Some((first, last)) = log.ends().await.map_err(|e| Ownership::Unknown(e.0))? {
        for entry in [first, last] {
            let whose = match message::market(&entry.payload) {
                Ok(Some(market)) if market == ours => continue,
                Ok(Some(market)) => format!("another store's (market {market})"),
                Ok(None) => "written before entries named their store, so of no known \
                             market"
                    .to_string(),
                Err(e) => format!("unreadable ({e})"),
            };
            return Err(Ownership::Refused(format!(
                "the stream {name} on {} holds entries of another market: entry {} is {whose}, \
                 and the store {store_name} (market {ours}) has never followed it. One stream per \
                 market: start this market's nodes with a --bus-stream of its own (e.g. \
                 --bus-stream {name}_2), or delete the stream if its entries are not wanted",
                log.describe(),
                entry.seq,
            )));
        }
    }
    store.follow(&key).await.map_err(Ownership::Unknown)?;
    Ok(key)
}
