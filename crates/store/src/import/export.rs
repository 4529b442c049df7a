//! `trading-server export`: a symbol's bars from a store, as CSV in the
//! format `import` reads, so data round-trips.

use std::io::{self, BufWriter, Write};

use super::{fail, shown_time, ExportArgs, Failed};

/// Runs `export`; Err when it failed (already printed).
pub fn export(args: &ExportArgs) -> Result<(), Failed> {
    let fail = |e: String| fail("export", e);
    let store = crate::open(&args.store, false).map_err(fail)?;
    let records = store.records().map_err(|e| fail(e.to_string()))?;
    let unknown = || {
        fail(format!(
            "unknown symbol {:?} in {}",
            args.symbol, args.store
        ))
    };
    let record = records.lookup(&args.symbol).ok_or_else(unknown)?;
    let symbol = records.catalog().lookup(&args.symbol).ok_or_else(unknown)?;
    if let Some(why) = symbol.unserved_reason(args.resolution) {
        return Err(fail(why));
    }
    let out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| fail(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let resolution = args.resolution;
    let written = (|| -> Result<u64, String> {
        writeln!(out, "time,open,high,low,close,volume").map_err(|e| e.to_string())?;
        let mut n = 0;
        store
            .scan(
                record,
                resolution,
                args.from.unwrap_or(i64::MIN),
                args.to.unwrap_or(i64::MAX),
                &mut |bar| {
                    n += 1;
                    writeln!(
                        out,
                        "{},{},{},{},{},{}",
                        shown_time(bar.time, resolution),
                        bar.open,
                        bar.high,
                        bar.low,
                        bar.close,
                        bar.volume
                    )
                    .map_err(|e| e.to_string())
                },
            )
            .map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        Ok(n)
    })()
    .map_err(fail)?;
    if args.output.is_some() {
        eprintln!("{written} bars written");
    }
    Ok(())
}
