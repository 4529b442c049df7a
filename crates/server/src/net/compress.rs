//! Response compression, negotiated from `Accept-Encoding`: gzip or
//! brotli, for bodies worth it (JSON, text, YAML and HTML of at least
//! [`MIN_BYTES`]). A 5,000-bar `getBars` page is mostly digits and
//! repeated keys, and shrinks several-fold.
//!
//! Every response is complete before it is sent (the handlers build whole
//! bodies), so it is compressed in one call rather than as a stream.
//! Levels favour speed: these bodies are made per request, not cached,
//! so the CPU spent here is spent on every request (figures in
//! docs/BENCHMARKS.md).

use std::io::Write;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

/// Smaller bodies are sent as they are: compressing them saves less than a
/// packet and costs a few microseconds.
pub const MIN_BYTES: usize = 1024;

/// Fast levels: a 5,000-bar page (490 kB of JSON) costs ~0.5-1.5 ms to
/// build, and the default levels took 10-20 times that to compress it on
/// the benchmark machine for a few percent more saving (figures in
/// docs/BENCHMARKS.md). At these levels it still shrinks about four-fold.
const BROTLI_QUALITY: u32 = 1;
const BROTLI_WINDOW: u32 = 20;
/// gzip (deflate) level, 1-9. With flate2's zlib-rs backend, level 2 costs
/// what level 1 cost with miniz_oxide, for 22.8% of the bytes instead of
/// 25.8%; zlib-rs's level 1 is a cruder strategy (31%).
const GZIP_LEVEL: u32 = 2;

/// How hard to compress: fast for a body made per request; harder for one
/// compressed once and sent many times (the built pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effort {
    PerRequest,
    Once,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    Brotli,
    Gzip,
}

impl Coding {
    pub fn token(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The coding to answer with, from a request's `Accept-Encoding`: the one
/// with the highest weight the client accepts, or None for identity; `*`
/// accepts any coding not named. gzip on a tie (browsers accept both
/// equally): at the fastest levels it costs half of brotli's CPU for a
/// body only a fifth larger (docs/BENCHMARKS.md).
pub fn negotiate(headers: &HeaderMap) -> Option<Coding> {
    let mut weights: [Option<f32>; 2] = [None, None];
    let mut star: Option<f32> = None;
    for value in headers.get_all(header::ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let mut q = 1.0_f32;
            for param in parts {
                if let Some((k, v)) = param.split_once('=') {
                    if k.trim().eq_ignore_ascii_case("q") {
                        q = v.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            match name.as_str() {
                "br" => weights[0] = Some(q),
                "gzip" | "x-gzip" => weights[1] = Some(q),
                "*" => star = Some(q),
                _ => {}
            }
        }
    }
    let weight = |i: usize| weights[i].or(star).unwrap_or(0.0);
    let (br, gzip) = (weight(0), weight(1));
    if br <= 0.0 && gzip <= 0.0 {
        None
    } else if br > gzip {
        Some(Coding::Brotli)
    } else {
        Some(Coding::Gzip)
    }
}

/// Whether a response of this type is text worth compressing.
fn compressible(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(compressible_type)
}

/// Whether a body of this content type is text worth compressing.
pub fn compressible_type(kind: &str) -> bool {
    let kind = kind.to_ascii_lowercase();
    kind.starts_with("application/json")
        || kind.starts_with("text/")
        || kind.starts_with("application/yaml")
        || kind.starts_with("application/javascript")
        || kind.starts_with("image/svg")
}

/// Compresses `reply`'s body in place when it is worth it and `coding` is
/// what the client accepts; marks every compressible response with `Vary:
/// Accept-Encoding`, since caches must keep one copy per coding.
pub fn apply(reply: &mut Response<Bytes>, coding: Option<Coding>) -> bool {
    let status = reply.status();
    if status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || !compressible(reply.headers())
    {
        return false;
    }
    vary_on_encoding(reply.headers_mut());
    // Compressed already (a built page, compressed once for everyone).
    if reply.headers().contains_key(header::CONTENT_ENCODING) {
        return false;
    }
    let Some(coding) = coding else { return false };
    let body = reply.body();
    if body.len() < MIN_BYTES {
        return false;
    }
    let Some(packed) = encode(coding, body, Effort::PerRequest) else {
        return false;
    };
    if packed.len() >= body.len() {
        return false;
    }
    let h = reply.headers_mut();
    h.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.token()),
    );
    h.remove(header::CONTENT_LENGTH);
    *reply.body_mut() = Bytes::from(packed);
    true
}

fn vary_on_encoding(headers: &mut HeaderMap) {
    vary_on(headers, "Accept-Encoding");
}

/// Adds `names` (comma-separated header names) to the response's one
/// `Vary` header, keeping what is there (CORS may have put `Origin`).
pub fn vary_on(headers: &mut HeaderMap, names: &'static str) {
    let existing: Vec<String> = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    if existing.is_empty() {
        headers.insert(header::VARY, HeaderValue::from_static(names));
        return;
    }
    let joined = existing.join(", ");
    let present = joined.to_ascii_lowercase();
    let missing: Vec<&str> = names
        .split(',')
        .map(str::trim)
        .filter(|n| !present.contains(&n.to_ascii_lowercase()))
        .collect();
    if missing.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{joined}, {}", missing.join(", "))) {
        headers.insert(header::VARY, v);
    }
}

/// `body` in `coding`. Compressed once, a body is worth the default
/// levels: a few percent smaller, for every client that fetches it.
pub fn encode(coding: Coding, body: &[u8], effort: Effort) -> Option<Vec<u8>> {
    let (brotli_quality, gzip_level) = match effort {
        Effort::PerRequest => (BROTLI_QUALITY, GZIP_LEVEL),
        Effort::Once => (9, 9),
    };
    let mut out = Vec::with_capacity(body.len() / 4);
    match coding {
        Coding::Brotli => {
            let mut w =
                brotli::CompressorWriter::new(&mut out, 16 * 1024, brotli_quality, BROTLI_WINDOW);
            w.write_all(body).ok()?;
            w.flush().ok()?;
            drop(w);
        }
        Coding::Gzip => {
            let mut w =
                flate2::write::GzEncoder::new(&mut out, flate2::Compression::new(gzip_level));
            w.write_all(body).ok()?;
            w.finish().ok()?;
        }
    }
    Some(out)
}
