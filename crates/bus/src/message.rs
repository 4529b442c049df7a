//! A log entry's bytes: a versioned envelope around one command of the
//! replication contract (`trading_store::replication::Command`), in a
//! compact binary form: a batch of 10,000 bars is about 520 kB, inside
//! NATS's default 1 MiB message limit (as JSON it would not be).
//!
//! The envelope: version (u8), then from version 2 the market the entry
//! belongs to (u8 length, then the store's identity, see
//! `Applier::market`), so a node never applies another market's entries
//! that found their way into its stream (version 1 entries, from before,
//! have no market); then the kind (u8) and the kind's body. Every command
//! is a kind: 1 and 2 are ingest (trades, bars); a new command is a new
//! kind, and a node that does not know a kind refuses that entry (its
//! outcome says so) without touching its store.
//!
//! The ingest body (little-endian): accepted_ms (i64), key (u16 length,
//! 0xFFFF for none, then bytes), resolution (u8 length, then bytes; 0 for
//! none), symbols (u32 count, each u16 length then bytes), items (u32
//! count; a trade is symbol index u32, time i64, price f64, size f64; a bar
//! is symbol index u32, time i64, open, high, low, close, volume f64).

use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use trading_market::calendar::Resolution;
use trading_market::ingest::{BarIn, IngestRequest, TradeIn};
use trading_store::replication::{Command, Submitted};

const VERSION: u8 = 2;
/// Entries written before they named their market.
const VERSION_UNOWNED: u8 = 1;
const TRADES: u8 = 1;
const BARS: u8 = 2;
const NO_KEY: u16 = u16::MAX;

/// `command` as a log entry of `market` (the store's identity, at most
/// 255 bytes: a UUID).
pub fn encode(market: &str, command: &Command) -> Bytes {
    match command {
        Command::Ingest(s) => encode_ingest(market, s),
    }
}

fn encode_ingest(market: &str, s: &Submitted) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + market.len() + s.request.len() * 52);
    out.put_u8(VERSION);
    let market = &market.as_bytes()[..market.len().min(255)];
    out.put_u8(market.len() as u8);
    out.put_slice(market);
    out.put_u8(match s.request {
        IngestRequest::Trades(_) => TRADES,
        IngestRequest::Bars { .. } => BARS,
    });
    out.put_i64_le(s.accepted_ms);
    match &s.key {
        // check_key bounds keys to 255 bytes.
        Some(key) => {
            out.put_u16_le(key.len() as u16);
            out.put_slice(key.as_bytes());
        }
        None => out.put_u16_le(NO_KEY),
    }
    let resolution = match &s.request {
        IngestRequest::Bars {
            resolution: Some(r),
            ..
        } => r.as_str(),
        _ => "",
    };
    out.put_u8(resolution.len() as u8);
    out.put_slice(resolution.as_bytes());
    let names: Vec<&str> = match &s.request {
        IngestRequest::Trades(t) => t.iter().map(|t| t.symbol.as_str()).collect(),
        IngestRequest::Bars { bars, .. } => bars.iter().map(|b| b.symbol.as_str()).collect(),
    };
    let mut table: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::new();
    let indices: Vec<u32> = names
        .iter()
        .map(|name| {
            *index.entry(name).or_insert_with(|| {
                table.push(name);
                (table.len() - 1) as u32
            })
        })
        .collect();
    out.put_u32_le(table.len() as u32);
    for name in &table {
        // Longer names cannot be any symbol's; cut, they stay unknown.
        let bytes = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        out.put_u16_le(bytes.len() as u16);
        out.put_slice(bytes);
    }
    out.put_u32_le(indices.len() as u32);
    match &s.request {
        IngestRequest::Trades(trades) => {
            for (t, i) in trades.iter().zip(&indices) {
                out.put_u32_le(*i);
                out.put_i64_le(t.time);
                out.put_f64_le(t.price);
                out.put_f64_le(t.size);
            }
        }
        IngestRequest::Bars { bars, .. } => {
            for (b, i) in bars.iter().zip(&indices) {
                out.put_u32_le(*i);
                out.put_i64_le(b.time);
                for v in [b.open, b.high, b.low, b.close, b.volume] {
                    out.put_f64_le(v);
                }
            }
        }
    }
    out.freeze()
}

/// The market an entry belongs to: None for a version 1 entry, which does
/// not say; Err when its envelope cannot be read.
pub fn market(bytes: &[u8]) -> Result<Option<String>, String> {
    let mut r = Reader { bytes, at: 0 };
    envelope(&mut r)
}

fn envelope(r: &mut Reader<'_>) -> Result<Option<String>, String> {
    match r.u8()? {
        VERSION_UNOWNED => Ok(None),
        VERSION => {
            let n = r.u8()? as usize;
            r.text(n).map(Some)
        }
        version => Err(format!(
            "log entry version {version}: this trading-server reads versions \
             {VERSION_UNOWNED} and {VERSION}"
        )),
    }
}

/// Reads an entry (whichever market it names), or says why it cannot.
pub fn decode(bytes: &[u8]) -> Result<Command, String> {
    let mut r = Reader { bytes, at: 0 };
    envelope(&mut r)?;
    match r.u8()? {
        kind @ (TRADES | BARS) => decode_ingest(kind, r).map(Command::Ingest),
        kind => Err(format!(
            "log entry of kind {kind}: this trading-server knows kinds {TRADES} and {BARS} \
             (ingest); a newer one wrote it"
        )),
    }
}

fn decode_ingest(kind: u8, mut r: Reader<'_>) -> Result<Submitted, String> {
    let bytes = r.bytes;
    let accepted_ms = r.i64()?;
    let key = match r.u16()? {
        NO_KEY => None,
        n => Some(r.text(n as usize)?),
    };
    let n = r.u8()? as usize;
    let resolution = match r.text(n)? {
        text if text.is_empty() => None,
        text => Some(
            Resolution::parse(&text)
                .ok_or_else(|| format!("log entry: unknown resolution {text:?}"))?,
        ),
    };
    let symbols = (0..r.u32()?)
        .map(|_| {
            let n = r.u16()? as usize;
            r.text(n)
        })
        .collect::<Result<Vec<String>, String>>()?;
    let count = r.u32()? as usize;
    let symbol = |i: u32| {
        symbols
            .get(i as usize)
            .cloned()
            .ok_or_else(|| format!("log entry: symbol index {i} out of range"))
    };
    let request = match kind {
        TRADES => {
            let mut trades = Vec::with_capacity(count.min(bytes.len() / 28));
            for _ in 0..count {
                trades.push(TradeIn {
                    symbol: symbol(r.u32()?)?,
                    time: r.i64()?,
                    price: r.f64()?,
                    size: r.f64()?,
                });
            }
            IngestRequest::Trades(trades)
        }
        BARS => {
            let mut bars = Vec::with_capacity(count.min(bytes.len() / 52));
            for _ in 0..count {
                bars.push(BarIn {
                    symbol: symbol(r.u32()?)?,
                    time: r.i64()?,
                    open: r.f64()?,
                    high: r.f64()?,
                    low: r.f64()?,
                    close: r.f64()?,
                    volume: r.f64()?,
                });
            }
            IngestRequest::Bars { resolution, bars }
        }
        other => return Err(format!("log entry: unknown kind {other}")),
    };
    if r.at != bytes.len() {
        return Err(format!("log entry: {} bytes left over", bytes.len() - r.at));
    }
    Ok(Submitted {
        request,
        key,
        accepted_ms,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "log entry: cut short at byte {} of {}",
                self.at,
                self.bytes.len()
            ));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn text(&mut self, n: usize) -> Result<String, String> {
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| "log entry: a name is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_come_back_as_they_went_in() {
        let trades = Command::Ingest(Submitted {
            request: IngestRequest::Trades(vec![
                TradeIn {
                    symbol: "AAPL".into(),
                    time: 1_719_841_032_000,
                    price: 201.25,
                    size: 0.00000001,
                },
                TradeIn {
                    symbol: "NASDAQ:MSFT".into(),
                    time: -5,
                    price: f64::MAX,
                    size: 3.0,
                },
                TradeIn {
                    symbol: "AAPL".into(),
                    time: 7,
                    price: 1.0,
                    size: 0.0,
                },
            ]),
            key: Some("batch-1".into()),
            accepted_ms: 1_719_841_040_000,
        });
        let bytes = encode("market-1", &trades);
        assert_eq!(decode(&bytes).unwrap(), trades);
        assert_eq!(market(&bytes).unwrap().as_deref(), Some("market-1"));
        // A version 1 entry: the same without the market.
        let mut old = vec![VERSION_UNOWNED];
        old.extend_from_slice(&bytes[2 + "market-1".len()..]);
        assert_eq!(decode(&old).unwrap(), trades);
        assert_eq!(market(&old).unwrap(), None);
        let bars = Command::Ingest(Submitted {
            request: IngestRequest::Bars {
                resolution: Some(Resolution::Min5),
                bars: vec![BarIn {
                    symbol: "X".into(),
                    time: 60_000,
                    open: 1.0,
                    high: 2.0,
                    low: 0.5,
                    close: 1.5,
                    volume: 10.25,
                }],
            },
            key: None,
            accepted_ms: 0,
        });
        assert_eq!(decode(&encode("m", &bars)).unwrap(), bars);
        // Every prefix of an entry is refused, never misread.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("left over"));
        let mut future = bytes.to_vec();
        future[0] = 9;
        assert!(decode(&future).unwrap_err().contains("version 9"));
        assert!(market(&future).is_err());
        // A kind this node does not know (a newer node's command).
        let mut newer = bytes.to_vec();
        newer[2 + "market-1".len()] = 77;
        let e = decode(&newer).unwrap_err();
        assert!(e.contains("kind 77") && e.contains("newer"), "{e}");
        assert_eq!(market(&newer).unwrap().as_deref(), Some("market-1"));
    }
}
