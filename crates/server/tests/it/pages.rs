//! The built pages (`--web-dir`): each folder at its path, with the
//! caching and compression a browser relies on, nothing outside them, and
//! a page saying what to install when they were not built.

use std::io::{Read, Write};

use crate::common::store::TempDir;
use crate::common::TestServer;

/// A client that decodes nothing, so a test sees the bytes as sent.
fn raw_http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_gzip()
        .no_brotli()
        .build()
        .unwrap()
}

async fn served(web: &TempDir) -> TestServer {
    TestServer::start(&["--web-dir", web.path().to_str().unwrap()]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_built_folder_is_served_at_its_path() {
    let web = TempDir::new("pages-built");
    crate::common::pages::build(web.path());
    let s = served(&web).await;
    let http = raw_http();
    for (path, content_type, start) in [
        (
            "/chart",
            "text/html; charset=utf-8",
            "<!doctype html><title>chart",
        ),
        (
            "/chart/",
            "text/html; charset=utf-8",
            "<!doctype html><title>chart",
        ),
        (
            "/chart/app.js",
            "application/javascript; charset=utf-8",
            "console.log(\"candle 0\")",
        ),
        (
            "/chart/styles/chart.css",
            "text/css; charset=utf-8",
            "body { margin: 0 }",
        ),
        (
            "/api/v1/docs",
            "text/html; charset=utf-8",
            "<!doctype html><title>REST docs",
        ),
        (
            "/api/v1/ws/asyncapi",
            "text/html; charset=utf-8",
            "<!doctype html><title>WebSocket docs",
        ),
    ] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        assert_eq!(r.headers()["api-version"], trading_pro::API_VERSION);
        assert!(r.text().await.unwrap().starts_with(start), "{path}");
    }
    // Neither hidden files, nor anything not built, nor the specs' own
    // paths under a page's prefix.
    for path in [
        "/chart/.stamp",
        "/chart/missing.js",
        "/chart/index.html/x",
        "/chartx",
        "/api/v1/docsx",
    ] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    // The spec stays where it was, beside its page.
    let r = http
        .get(s.url("/api/v1/ws/asyncapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Only GET.
    let r = http.post(s.url("/chart")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    // The service index links the chart.
    let index = s.client.get_service_index().send().await.unwrap();
    assert_eq!(index.links.chart, "/chart");
    assert_eq!(index.links.docs, "/api/v1/docs");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_path_reaches_a_file_outside_the_pages() {
    let web = TempDir::new("pages-outside");
    crate::common::pages::build(web.path().join("dist").as_path());
    web.file("secret.txt", "not for clients");
    let s = TestServer::start(&["--web-dir", web.path().join("dist").to_str().unwrap()]).await;
    let addr = s.server.local_addr();
    // Sent as they are (an HTTP client library would normalise them).
    for target in [
        "/chart/../../secret.txt",
        "/chart/..%2f..%2fsecret.txt",
        "/chart/%2e%2e/%2e%2e/secret.txt",
        "/chart//etc/passwd",
    ] {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        write!(
            tcp,
            "GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        tcp.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 404") || answer.starts_with("HTTP/1.1 400"),
            "{target}: {answer}"
        );
        assert!(!answer.contains("not for clients"), "{target}: {answer}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_revalidated_and_compressed_once_for_everyone() {
    let web = TempDir::new("pages-cache");
    crate::common::pages::build(web.path());
    let s = served(&web).await;
    let http = raw_http();
    let url = s.url("/chart/app.js");
    let first = http.get(&url).send().await.unwrap();
    let etag = first.headers()["etag"].clone();
    assert_eq!(first.headers()["cache-control"], "no-cache");
    assert_eq!(first.text().await.unwrap(), crate::common::pages::app_js());
    // What the browser has is still current: 304, no body.
    let again = http
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = http
        .get(&url)
        .header("if-none-match", "\"0000\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    // Compressed as the client asks, and the same file once decoded.
    for (accept, coding) in [("gzip", "gzip"), ("br", "br"), ("br;q=0.5, gzip", "gzip")] {
        for _ in 0..2 {
            let r = http
                .get(&url)
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-encoding"], coding, "{accept}");
            let vary = r.headers()["vary"].to_str().unwrap().to_ascii_lowercase();
            assert!(vary.contains("accept-encoding"), "{vary}");
            let packed = r.bytes().await.unwrap();
            assert!(packed.len() * 5 < crate::common::pages::app_js().len());
            let mut text = String::new();
            match coding {
                "gzip" => flate2::read::GzDecoder::new(&packed[..])
                    .read_to_string(&mut text)
                    .unwrap(),
                _ => brotli::Decompressor::new(&packed[..], 4096)
                    .read_to_string(&mut text)
                    .unwrap(),
            };
            assert_eq!(text, crate::common::pages::app_js(), "{accept}");
        }
    }
    // Not compressed when not asked.
    let r = http
        .get(&url)
        .header("accept-encoding", "identity")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_not_built_say_what_to_install_and_the_api_works() {
    let empty = TempDir::new("pages-none");
    let s = served(&empty).await;
    let http = raw_http();
    for path in ["/chart", "/chart/", "/api/v1/docs", "/api/v1/ws/asyncapi"] {
        let r = http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
        let page = r.text().await.unwrap();
        for needed in ["Node.js", "scripts/serve", "scripts/build-web", "--web-dir"] {
            assert!(page.contains(needed), "{path} names {needed}: {page}");
        }
        assert!(page.contains(empty.path().to_str().unwrap()), "{page}");
    }
    // Files of a page that was not built are simply not there.
    let r = http.get(s.url("/chart/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Everything else works.
    let r = http.get(s.url("/api/v1/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(s.url("/api/v1/openapi.yaml"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), trading_pro::OPENAPI_YAML);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_dir_that_is_not_pages_is_refused_at_start() {
    let web = TempDir::new("pages-huge");
    crate::common::pages::build(web.path());
    // More than any build of the pages: not read into memory.
    let big = vec![b'x'; 65 * 1024 * 1024];
    std::fs::write(web.path().join("chart/huge.bin"), big).unwrap();
    let config = trading_server::Config::from_args([
        "--bind",
        "127.0.0.1:0",
        "--web-dir",
        web.path().to_str().unwrap(),
    ])
    .unwrap();
    let error = trading_server::start(&config, trading_server::logging::discard())
        .await
        .err()
        .expect("refused");
    assert!(error.contains("--web-dir"), "{error}");
}
