//! `import --symbols FILE.json`: symbols registered or updated from a
//! file of `resolveSymbol`-shaped entries, of which only what a symbol
//! cannot do without is required; a file with problems is refused whole,
//! naming every problem of every entry.

use std::path::Path;

use serde::Deserialize;
use trading_market::calendar::TradingCalendar;
use trading_pro::types::SymbolInfo;

use super::{fail, Failed};
use crate::{Registered, Store};

/// What a symbol cannot do without in a symbols file; every other field of
/// `SymbolInfo` has the default the CLI flags use.
const REQUIRED: [&str; 7] = [
    "name",
    "type",
    "session",
    "timezone",
    "exchange",
    "pricescale",
    "minmov",
];

/// The symbols of a symbols file: each entry's `SymbolInfo`, with what it
/// leaves out filled in (`ticker` and `description` from `name`,
/// `listed_exchange` from `exchange`, and the CLI flags' defaults); or
/// every problem of every entry at once, each with its entry.
fn read_symbols(text: &str) -> Result<Vec<SymbolInfo>, Vec<String>> {
    let entries: Vec<serde_json::Value> = serde_json::from_str(text)
        .map_err(|e| vec![format!("not a JSON array of symbols: {e}")])?;
    let mut infos = Vec::with_capacity(entries.len());
    let mut problems = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some(fields) = entry.as_object() else {
            problems.push(format!("entry {i}: not an object"));
            continue;
        };
        let which = match fields.get("name").and_then(|n| n.as_str()) {
            Some(name) => format!("entry {i} ({name:?})"),
            None => format!("entry {i}"),
        };
        let mut wrong = Vec::new();
        for field in REQUIRED {
            match (field, fields.get(field)) {
                (_, None) => wrong.push(format!("{field:?} is missing")),
                ("pricescale" | "minmov", Some(v)) => {
                    if v.as_i64().is_none_or(|n| n < 1) {
                        wrong.push(format!("{field:?} must be a positive integer, got {v}"));
                    }
                }
                (_, Some(v)) => match v.as_str() {
                    Some(text) if !text.trim().is_empty() => {}
                    _ => wrong.push(format!("{field:?} must be a non-empty string, got {v}")),
                },
            }
        }
        if let (Some(session), Some(timezone)) = (
            fields.get("session").and_then(|v| v.as_str()),
            fields.get("timezone").and_then(|v| v.as_str()),
        ) {
            if let Err(e) = TradingCalendar::new(session, timezone) {
                wrong.push(e.to_string());
            }
        }
        if !wrong.is_empty() {
            problems.push(format!("{which}: {}", wrong.join("; ")));
            continue;
        }
        let text = |f: &str| fields.get(f).and_then(|v| v.as_str()).unwrap_or_default();
        let mut merged = serde_json::json!({
            "ticker": text("name"),
            "description": text("name"),
            "listed_exchange": text("exchange"),
            "format": "price",
            "has_intraday": false,
            "has_daily": false,
            "has_weekly_and_monthly": false,
            "supported_resolutions": [],
            "intraday_multipliers": [],
            "volume_precision": 0,
            "data_status": "streaming",
            "currency_code": "",
        });
        if let Some(m) = merged.as_object_mut() {
            m.extend(fields.clone());
        }
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(merged, &mut track);
        match SymbolInfo::deserialize(de) {
            Ok(info) => infos.push(info),
            Err(e) => problems.push(format!("{which}: {:?}: {}", track.path().to_string(), e)),
        }
    }
    if problems.is_empty() {
        Ok(infos)
    } else {
        Err(problems)
    }
}

pub(super) fn register(store: &dyn Store, path: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail("import", format!("cannot read {}: {e}", path.display())))?;
    let infos = read_symbols(&text).map_err(|problems| {
        let shown = path.display();
        let lines: Vec<String> = problems.iter().map(|p| format!("{shown}: {p}")).collect();
        fail(
            "import",
            format!(
                "{}\n{shown}: nothing registered ({} {} with problems; each entry needs {})",
                lines.join("\n"),
                problems.len(),
                if problems.len() == 1 {
                    "entry"
                } else {
                    "entries"
                },
                REQUIRED.join(", ")
            ),
        )
    })?;
    let outcome = store.upsert_symbols(infos).map_err(|e| fail("import", e))?;
    let count = |kind| outcome.iter().filter(|(_, r)| *r == kind).count();
    println!(
        "{}: {} symbols registered, {} updated, {} unchanged",
        path.display(),
        count(Registered::Added),
        count(Registered::Updated),
        count(Registered::Unchanged)
    );
    Ok(())
}
