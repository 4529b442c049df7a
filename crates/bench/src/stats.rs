//! Percentiles, medians and markdown tables.
//!
//! Latencies are kept as every sample (µs, u32) rather than a histogram:
//! the windows are short enough that this fits in memory, and exact
//! percentiles leave no bucket error to reason about.

/// Latency percentiles of one window, ms; `None` without samples (e.g. a
/// server that does not stamp `published_us` yet).
#[derive(Clone, Copy, Debug)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

impl Percentiles {
    /// Sorts `samples` in place.
    pub fn of(samples: &mut [u32]) -> Option<Percentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Percentiles {
            p50: percentile_ms(samples, 0.50),
            p99: percentile_ms(samples, 0.99),
            p999: percentile_ms(samples, 0.999),
        })
    }

    /// The median of each percentile over runs.
    pub fn median_of(runs: &[Option<Percentiles>]) -> Option<Percentiles> {
        let present: Vec<&Percentiles> = runs.iter().flatten().collect();
        if present.is_empty() {
            return None;
        }
        let col = |f: fn(&Percentiles) -> f64| median(present.iter().map(|p| f(p)).collect());
        Some(Percentiles {
            p50: col(|p| p.p50),
            p99: col(|p| p.p99),
            p999: col(|p| p.p999),
        })
    }

    /// Three table cells: p50, p99, p999.
    pub fn cells(p: Option<Percentiles>) -> [String; 3] {
        match p {
            Some(p) => [ms(p.p50), ms(p.p99), ms(p.p999)],
            None => ["n/a".into(), "n/a".into(), "n/a".into()],
        }
    }
}

/// Nearest-rank percentile of sorted µs samples, in ms.
pub fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// The middle value (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn ms(v: f64) -> String {
    format!("{v:.2}")
}

/// An integer with thousands separators, as the docs write them.
pub fn int(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" {
        out.insert(0, '-');
    }
    out
}

/// Prints a markdown table header; the first `text_columns` are left
/// aligned, the rest (figures) right aligned.
pub fn header(columns: &[&str], text_columns: usize) {
    println!("| {} |", columns.join(" | "));
    let rule: Vec<&str> = (0..columns.len())
        .map(|i| if i < text_columns { "---" } else { "---:" })
        .collect();
    println!("| {} |", rule.join(" | "));
}

/// Prints one row at once, so a long run shows its figures as they come.
pub fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}
