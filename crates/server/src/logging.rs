//! Structured logging (slog): terminal lines for people, JSON for machines.
//!
//! A record is formatted into one whole line on the thread that logs it
//! (no copy of its values is made to format later) and appended to a
//! shared buffer; the log thread writes what has gathered there every few
//! milliseconds in one `write(2)`, and at once when much has gathered.
//! Logging a line costs its formatting and a copy under a short lock: no
//! syscall, no wake-up of another thread. (slog-term wrote every fragment
//! of a line with its own syscall, about 41 per access-log line, which
//! cost a third of the throughput of a small request; a queue that woke
//! the log thread for every line still cost a quarter.)
//!
//! The buffer is bounded. When it is full a line is dropped rather than
//! block the server: every drop is counted ([`take_dropped`]), and the
//! edge logs the count, so logs never lose events silently.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// How much is logged (`--log-level`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// How lines look (`--log-format`): for people, or one JSON object each.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Terminal,
    Json,
}

/// How long a line may wait in the buffer before it is written.
const LINGER: Duration = Duration::from_millis(10);
/// Bytes that make the log thread write at once rather than wait.
const EAGER: usize = 256 * 1024;
/// Bytes the buffer holds at most: past this lines are dropped.
const CAPACITY: usize = 8 * 1024 * 1024;

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Records dropped since the last call.
pub fn take_dropped() -> u64 {
    DROPPED.swap(0, Ordering::Relaxed)
}

/// Lines waiting for the log thread, and how many flushes are waiting.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Bumped by the log thread after each write (see `flush`).
    written: u64,
    /// Set by `flush`: write now.
    urgent: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// The log thread waits here; `flush` waits here for a write.
    signal: Condvar,
}

/// The log thread's buffer (one per process: every logger writes to
/// stderr), started on first use.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<&'static Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            pending: Mutex::default(),
            signal: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("log".into())
            .spawn(move || write_lines(shared))
            .expect("start the log thread");
        shared
    })
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    shared
        .pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The log thread: once a line arrives, it lets more gather for `LINGER`
/// (less when a lot did, or a flush asks), then writes them all at once.
fn write_lines(shared: &'static Shared) {
    let mut out = Vec::with_capacity(EAGER);
    loop {
        {
            let mut pending = lock(shared);
            while pending.bytes.is_empty() && !pending.urgent {
                pending = shared
                    .signal
                    .wait(pending)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let deadline = Instant::now() + LINGER;
            while !pending.urgent && pending.bytes.len() < EAGER {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                pending = shared
                    .signal
                    .wait_timeout(pending, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut out, &mut pending.bytes);
            pending.urgent = false;
        }
        if !out.is_empty() {
            // A failed write (stderr closed) has nowhere to be reported.
            let _ = std::io::stderr().lock().write_all(&out);
            out.clear();
            if out.capacity() > 4 * EAGER {
                out.shrink_to(EAGER);
            }
        }
        lock(shared).written += 1;
        shared.signal.notify_all();
    }
}

/// Waits (up to a second) until every line logged so far is written:
/// before the process exits.
pub fn flush() {
    let shared = shared();
    let mut pending = lock(shared);
    // Two writes from now: the one under way may have missed our lines.
    let target = pending.written + 2;
    let deadline = Instant::now() + Duration::from_secs(1);
    while pending.written < target {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        pending.urgent = true;
        shared.signal.notify_all();
        pending = shared
            .signal
            .wait_timeout(pending, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Appends one whole line to the buffer (or counts it dropped). The log
/// thread is woken by the first line of a batch and when a batch grows
/// large; the lines in between cost no wake-up.
fn queue(line: &[u8]) {
    let shared = shared();
    let mut pending = lock(shared);
    let before = pending.bytes.len();
    if before + line.len() > CAPACITY {
        drop(pending);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    pending.bytes.extend_from_slice(line);
    let wake = before == 0 || (before < EAGER && pending.bytes.len() >= EAGER);
    drop(pending);
    if wake {
        shared.signal.notify_all();
    }
}

/// Formats each record into a line and queues it.
struct Lines {
    format: LogFormat,
}

impl Drain for Lines {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        LINE.with(|line| {
            let (line, scratch) = &mut *line.borrow_mut();
            line.clear();
            match self.format {
                LogFormat::Terminal => terminal_line(line, scratch, record, values),
                LogFormat::Json => json_line(line, scratch, record, values),
            }
            queue(line);
        });
        Ok(())
    }
}

thread_local! {
    /// The line being formatted, and the text of a value before it is
    /// escaped: reused, so logging a line allocates nothing.
    static LINE: RefCell<(Vec<u8>, String)> = const { RefCell::new((Vec::new(), String::new())) };
    /// A record's pairs as written by slog (last first) and where each ends.
    static PAIRS: RefCell<(Vec<u8>, Vec<usize>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// The formatted second of the last line this thread wrote.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Now as `2026-12-06T11:51:12.012Z` (UTC, milliseconds); the date and
/// time of day are formatted once a second per thread.
fn timestamp(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cell| {
        let (second, text) = &mut *cell.borrow_mut();
        if *second != secs {
            *second = secs;
            text.clear();
            let ts =
                jiff::Timestamp::from_second(secs as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            let _ = write!(text, "{}", ts.strftime("%Y-%m-%dT%H:%M:%S"));
        }
        out.extend_from_slice(text.as_bytes());
    });
    let _ = write!(out, ".{:03}Z", now.subsec_millis());
}

/// `2026-12-06T11:51:12.012Z INFO request, method: GET, status: 200`
fn terminal_line(out: &mut Vec<u8>, scratch: &mut String, record: &Record, values: &OwnedKVList) {
    timestamp(out);
    out.push(b' ');
    out.extend_from_slice(record.level().as_short_str().as_bytes());
    out.push(b' ');
    scratch.clear();
    let _ = write!(scratch, "{}", record.msg());
    one_line(out, scratch);
    // slog hands a record's pairs over last first: they are written to
    // the side, then copied in the order the code wrote them.
    PAIRS.with(|pairs| {
        let (text, ends) = &mut *pairs.borrow_mut();
        text.clear();
        ends.clear();
        let mut s = TerminalKv {
            out: text,
            scratch,
            ends: Some(ends),
        };
        let _ = record.kv().serialize(record, &mut s);
        let mut end = text.len();
        for start in ends.iter().rev().skip(1).chain(std::iter::once(&0)) {
            out.extend_from_slice(&text[*start..end]);
            end = *start;
        }
    });
    let mut s = TerminalKv {
        out,
        scratch,
        ends: None,
    };
    let _ = values.serialize(record, &mut s);
    out.push(b'\n');
}

/// `text` with its line breaks written as `\n`: a record is one line.
fn one_line(out: &mut Vec<u8>, text: &str) {
    if text.contains(['\n', '\r']) {
        out.extend_from_slice(text.replace('\n', "\\n").replace('\r', "\\r").as_bytes());
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

struct TerminalKv<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut String,
    /// Where each pair ends, when they are to be reordered.
    ends: Option<&'a mut Vec<usize>>,
}

impl TerminalKv<'_> {
    fn pair(&mut self, key: Key, value: &str) {
        self.out.extend_from_slice(b", ");
        self.out.extend_from_slice(key.as_str().as_bytes());
        self.out.extend_from_slice(b": ");
        one_line(self.out, value);
        if let Some(ends) = &mut self.ends {
            ends.push(self.out.len());
        }
    }
}

impl Serializer for TerminalKv<'_> {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let mut text = std::mem::take(self.scratch);
        text.clear();
        let _ = write!(text, "{val}");
        self.pair(key, &text);
        *self.scratch = text;
        Ok(())
    }

    fn emit_str(&mut self, key: Key, val: &str) -> slog::Result {
        self.pair(key, val);
        Ok(())
    }

    fn emit_none(&mut self, key: Key) -> slog::Result {
        self.emit_str(key, "None")
    }
}

/// `{"msg":"request","level":"INFO","ts":"...","method":"GET","status":200}`
fn json_line(out: &mut Vec<u8>, scratch: &mut String, record: &Record, values: &OwnedKVList) {
    out.extend_from_slice(b"{\"msg\":");
    scratch.clear();
    let _ = write!(scratch, "{}", record.msg());
    json_string(out, scratch);
    out.extend_from_slice(b",\"level\":\"");
    out.extend_from_slice(record.level().as_short_str().as_bytes());
    out.extend_from_slice(b"\",\"ts\":\"");
    timestamp(out);
    out.push(b'"');
    let mut s = JsonKv { out, scratch };
    let _ = record.kv().serialize(record, &mut s);
    let _ = values.serialize(record, &mut s);
    out.extend_from_slice(b"}\n");
}

/// `text` as a JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

struct JsonKv<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut String,
}

impl JsonKv<'_> {
    fn key(&mut self, key: Key) {
        self.out.push(b',');
        json_string(self.out, key.as_str());
        self.out.push(b':');
    }

    /// A number as JSON has it (non-finite ones as strings).
    fn number(&mut self, key: Key, val: impl fmt::Display, finite: bool) -> slog::Result {
        self.key(key);
        if finite {
            let _ = write!(self.out, "{val}");
        } else {
            let _ = write!(self.out, "\"{val}\"");
        }
        Ok(())
    }
}

macro_rules! integers {
    ($($name:ident: $t:ty),*) => {
        $(fn $name(&mut self, key: Key, val: $t) -> slog::Result {
            self.number(key, val, true)
        })*
    };
}

impl Serializer for JsonKv<'_> {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        self.scratch.clear();
        let _ = write!(self.scratch, "{val}");
        self.key(key);
        json_string(self.out, self.scratch);
        Ok(())
    }

    fn emit_str(&mut self, key: Key, val: &str) -> slog::Result {
        self.key(key);
        json_string(self.out, val);
        Ok(())
    }

    fn emit_none(&mut self, key: Key) -> slog::Result {
        self.key(key);
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn emit_unit(&mut self, key: Key) -> slog::Result {
        self.emit_none(key)
    }

    fn emit_bool(&mut self, key: Key, val: bool) -> slog::Result {
        self.number(key, val, true)
    }

    fn emit_f64(&mut self, key: Key, val: f64) -> slog::Result {
        self.number(key, val, val.is_finite())
    }

    fn emit_f32(&mut self, key: Key, val: f32) -> slog::Result {
        self.number(key, val, val.is_finite())
    }

    integers!(emit_u8: u8, emit_i8: i8, emit_u16: u16, emit_i16: i16, emit_u32: u32,
        emit_i32: i32, emit_u64: u64, emit_i64: i64, emit_usize: usize, emit_isize: isize,
        emit_u128: u128, emit_i128: i128);
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

pub fn logger(level: LogLevel, format: LogFormat) -> slog::Logger {
    let drain = Lines { format }.filter_level(level_of(level)).fuse();
    slog::Logger::root(drain, slog::o!("service" => "trading-server"))
}

/// A logger that drops everything (embedded servers in tests).
pub fn discard() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logger that keeps its lines in memory, formatted as `format` would
    /// write them (tests of the formats).
    use std::sync::Mutex;

    fn captured(format: LogFormat) -> (slog::Logger, std::sync::Arc<Mutex<Vec<String>>>) {
        struct Kept {
            format: LogFormat,
            lines: std::sync::Arc<Mutex<Vec<String>>>,
        }
        impl Drain for Kept {
            type Ok = ();
            type Err = slog::Never;
            fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
                let (mut line, mut scratch) = (Vec::new(), String::new());
                match self.format {
                    LogFormat::Terminal => terminal_line(&mut line, &mut scratch, record, values),
                    LogFormat::Json => json_line(&mut line, &mut scratch, record, values),
                }
                self.lines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(String::from_utf8_lossy(&line).into_owned());
                Ok(())
            }
        }
        let lines = std::sync::Arc::default();
        let drain = Kept {
            format,
            lines: std::sync::Arc::clone(&lines),
        };
        (
            slog::Logger::root(drain.fuse(), slog::o!("service" => "trading-server")),
            lines,
        )
    }

    fn one(format: LogFormat) -> String {
        let (log, lines) = captured(format);
        let log = log.new(slog::o!("component" => "edge"));
        slog::info!(log, "request \"quoted\"\n";
            "method" => "GET", "status" => 200u16, "latency_us" => 15u64,
            "remote" => %"127.0.0.2:5000", "ratio" => 0.5, "none" => None::<u8>,
            "debug" => ?vec![1, 2], "ok" => true, "nan" => f64::NAN);
        let lines = lines.lock().unwrap();
        assert_eq!(lines.len(), 1);
        lines[0].clone()
    }

    #[test]
    fn json_lines_are_json_with_typed_values() {
        let line = one(LogFormat::Json);
        assert!(line.ends_with("}\n"), "{line}");
        assert_eq!(line.matches('\n').count(), 1, "one line: {line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["msg"], "request \"quoted\"\n");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["status"], 200);
        assert_eq!(v["latency_us"], 15);
        assert_eq!(v["remote"], "127.0.0.2:5000");
        assert_eq!(v["ratio"], 0.5);
        assert_eq!(v["none"], serde_json::Value::Null);
        assert_eq!(v["debug"], "[1, 2]");
        assert_eq!(v["ok"], true);
        assert_eq!(v["nan"], "NaN");
        assert_eq!(v["component"], "edge");
        assert_eq!(v["service"], "trading-server");
        let ts = v["ts"].as_str().unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    }

    #[test]
    fn terminal_lines_are_one_line_each() {
        let line = one(LogFormat::Terminal);
        assert!(line.ends_with('\n'));
        let (ts, rest) = line.split_once(' ').unwrap();
        assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
        assert!(rest.starts_with("INFO request \"quoted\"\\n, "), "{rest}");
        assert!(
            rest.contains(", method: GET, status: 200, latency_us: 15, remote: 127.0.0.2:5000"),
            "{rest}"
        );
        assert!(
            rest.contains(", component: edge, service: trading-server"),
            "{rest}"
        );
    }
}
