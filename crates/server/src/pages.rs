//! The pages built from npm packages: the chart at `/chart` and the spec
//! renderers at `/api/v1/docs` (Redoc) and `/api/v1/ws/asyncapi` (the
//! AsyncAPI React component). Their code comes from the npm registry
//! through `web/package-lock.json`, so it is never committed here:
//! `scripts/build-web` bundles it into `web/dist` (or wherever `--web-dir`
//! points), and this module serves that folder.
//!
//! The folder is read once, at start-up, into memory: a request never
//! touches the file system, so no path a client sends can reach a file
//! outside it, and a rebuild shows after a restart. A page that was not
//! built answers 503 with a page that says what to install; everything
//! else (the API, the WebSocket, the specs) works without Node.js.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::net::compress::{self, Coding};

/// Where `scripts/build-web` puts the pages in this checkout: the default
/// for `cargo run`. A server installed elsewhere is given `--web-dir`.
pub const BUILT_IN_CHECKOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/dist");

/// More than any build of the pages needs (a few MB): a wrong `--web-dir`
/// (a home directory, say) is refused instead of read into memory.
const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// A URL prefix and the folder (under the web dir) served there.
struct Mount {
    prefix: &'static str,
    folder: &'static str,
    /// What the page is, for the page that says it was not built.
    what: &'static str,
}

const MOUNTS: [Mount; 3] = [
    Mount {
        prefix: "/chart",
        folder: "chart",
        what: "The chart page",
    },
    Mount {
        prefix: "/api/v1/docs",
        folder: "docs",
        what: "The REST API reference",
    },
    Mount {
        prefix: "/api/v1/ws/asyncapi",
        folder: "asyncapi",
        what: "The WebSocket API reference",
    },
];

/// One built file, with its compressed forms made on first request (a
/// renderer's bundle is megabytes: compressed once, at a level worth it,
/// not per request).
pub struct Asset {
    content_type: &'static str,
    body: Bytes,
    etag: HeaderValue,
    gzip: OnceLock<Option<Bytes>>,
    brotli: OnceLock<Option<Bytes>>,
}

impl Asset {
    fn new(path: &Path, body: Vec<u8>) -> Asset {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("hex is a valid header value");
        Asset {
            content_type: content_type(path),
            body: Bytes::from(body),
            etag,
            gzip: OnceLock::new(),
            brotli: OnceLock::new(),
        }
    }

    fn encoded(&self, coding: Coding) -> Option<Bytes> {
        let cell = match coding {
            Coding::Gzip => &self.gzip,
            Coding::Brotli => &self.brotli,
        };
        cell.get_or_init(|| {
            compress::encode(coding, &self.body, compress::Effort::Once)
                .filter(|packed| packed.len() < self.body.len())
                .map(Bytes::from)
        })
        .clone()
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "application/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// What a path names among the pages.
pub enum Found<'a> {
    Asset(&'a Asset),
    /// A page of a mount whose folder was not built.
    NotBuilt(&'static str),
}

/// The built pages, by URL path.
pub struct Pages {
    dir: PathBuf,
    files: HashMap<String, Asset>,
    /// The mounts with no folder in the web dir.
    missing: Vec<&'static str>,
}

impl Pages {
    /// Reads the pages under `dir`. A missing folder is not an error (the
    /// pages say they were not built); an unreadable one is.
    pub fn load(dir: &Path) -> Result<Pages, String> {
        let mut pages = Pages {
            dir: dir.to_path_buf(),
            files: HashMap::new(),
            missing: Vec::new(),
        };
        let mut total = 0;
        for mount in &MOUNTS {
            let folder = dir.join(mount.folder);
            if !folder.join("index.html").is_file() {
                pages.missing.push(mount.prefix);
                continue;
            }
            let mut files = Vec::new();
            collect(&folder, &mut files)
                .map_err(|e| format!("--web-dir {}: {e}", dir.display()))?;
            for file in files {
                let body = std::fs::read(&file)
                    .map_err(|e| format!("--web-dir: cannot read {}: {e}", file.display()))?;
                total += body.len() as u64;
                if total > MAX_BYTES {
                    return Err(format!(
                        "--web-dir {}: more than {} MB of pages; is it the folder \
                         scripts/build-web writes (web/dist)?",
                        dir.display(),
                        MAX_BYTES >> 20
                    ));
                }
                let relative = file
                    .strip_prefix(&folder)
                    .expect("collected under the folder")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                let url = if relative == "index.html" {
                    mount.prefix.to_string()
                } else {
                    format!("{}/{relative}", mount.prefix)
                };
                pages.files.insert(url, Asset::new(&file, body));
            }
        }
        Ok(pages)
    }

    /// The folder the pages were read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL prefixes of the pages that were not built.
    pub fn missing(&self) -> &[&'static str] {
        &self.missing
    }

    /// What `path` names, if it is under one of the mounts. A trailing
    /// slash names the mount's page too.
    pub fn find(&self, path: &str) -> Option<Found<'_>> {
        let path = match path.strip_suffix('/') {
            Some(trimmed) if MOUNTS.iter().any(|m| m.prefix == trimmed) => trimmed,
            _ => path,
        };
        if let Some(asset) = self.files.get(path) {
            return Some(Found::Asset(asset));
        }
        MOUNTS
            .iter()
            .find(|m| path == m.prefix && self.missing.contains(&m.prefix))
            .map(|m| Found::NotBuilt(m.what))
    }
}

/// The files under `dir`, hidden ones (`.stamp`) left out.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(&entry.path(), out)?;
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// A built file, answered 304 when the client has it already, and
/// compressed when the client accepts it and it is text.
pub fn asset_response(asset: &Asset, request: &HeaderMap) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let h = response.headers_mut();
    h.insert(header::ETAG, asset.etag.clone());
    // Revalidate every time (a 304 costs a round trip, no body): the file
    // names are not content-hashed, so a cached copy may be stale.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == asset.etag
        });
    // (The edge adds `Vary: Accept-Encoding` to every text answer.)
    let text = compress::compressible_type(asset.content_type);
    if fresh {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return response;
    }
    let coding = compress::negotiate(request).filter(|_| text);
    match coding.and_then(|c| asset.encoded(c).map(|body| (c, body))) {
        Some((coding, body)) => {
            h.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(coding.token()),
            );
            *response.body_mut() = body;
        }
        None => *response.body_mut() = asset.body.clone(),
    }
    response
}

/// The page a mount shows when it was not built: what to install and run.
pub fn not_built_response(what: &str, dir: &Path) -> Response<Bytes> {
    let dir = dir
        .display()
        .to_string()
        .replace('&', "&amp;")
        .replace('<', "&lt;");
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Not built: {what}</title></head><body style=\"font-family:sans-serif;\
         max-width:44rem;margin:3rem auto;line-height:1.5\">\
         <h1>{what} is not built</h1>\
         <p>It is built from npm packages, which needs \
         <a href=\"https://nodejs.org/\">Node.js</a> 20.19 or newer with npm \
         (on Debian or Ubuntu: <code>apt-get install nodejs npm</code>).</p>\
         <p>Then start the server with <code>scripts/serve</code>, which builds the pages \
         when they are stale, or run <code>scripts/build-web</code> and restart the server \
         (with <code>--web-dir</code> naming the built folder if it is not in this \
         checkout).</p>\
         <p>This server looked in <code>{dir}</code>.</p>\
         <p>Everything else works without it: the spec is at \
         <a href=\"/api/v1/openapi.yaml\">/api/v1/openapi.yaml</a> and \
         <a href=\"/api/v1/ws/asyncapi.yaml\">/api/v1/ws/asyncapi.yaml</a>.</p>\
         </body></html>"
    );
    let mut response = Response::new(Bytes::from(page));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
