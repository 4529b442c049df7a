//! Every REST operation and every documented error, through the generated
//! client against a real server on an ephemeral port.

use crate::common::{error_of, TestServer, FROZEN_NOW_S};
use trading_pro_client::types::{QuoteStatus, QuotesRequest, VersionStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_index_health_and_versions() {
    let s = TestServer::frozen().await;
    let c = &s.client;

    let index = c.get_service_index().send().await.unwrap();
    assert_eq!(index.headers()["api-version"], "v1");
    assert_eq!(index.links.openapi_json, "/api/v1/openapi.json");

    let health = c.get_health_status().send().await.unwrap().into_inner();
    assert_eq!(health.status, "ok");
    assert_eq!(health.api_version, "v1");
    assert_eq!(health.timestamp, "2025-11-20T15:30:00Z");
    assert_eq!(health.version_info.version, "v1");

    let versions = c.get_api_versions().send().await.unwrap().into_inner();
    assert_eq!(versions.current_version, "v1");
    let statuses: Vec<_> = versions
        .available_versions
        .iter()
        .map(|v| (v.version.as_str(), v.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("v1", VersionStatus::Stable),
            ("v2", VersionStatus::Planned)
        ]
    );
    assert!(!versions.available_versions[1].breaking_changes.is_empty());

    let current = c
        .get_current_api_version()
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.version, "v1");
    assert_eq!(current.status, VersionStatus::Stable);

    let time = c.get_server_time().send().await.unwrap().into_inner();
    assert_eq!(time, FROZEN_NOW_S);

    let dh = c.datafeed_health_check().send().await.unwrap().into_inner();
    assert_eq!(
        (dh.status.as_str(), dh.symbols, dh.server_time),
        ("ok", 26, FROZEN_NOW_S)
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_lists_resolutions_exchanges_and_types() {
    let s = TestServer::frozen().await;
    let config = s.client.get_config().send().await.unwrap().into_inner();
    assert_eq!(
        config.supported_resolutions,
        ["1", "5", "15", "30", "60", "240", "D", "W", "M"]
    );
    assert!(config.supports_time && !config.supports_marks && !config.supports_timescale_marks);
    let exchanges: Vec<_> = config.exchanges.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(exchanges, ["", "NASDAQ", "NYSE", "CRYPTO", "FOREX"]);
    let types: Vec<_> = config
        .symbols_types
        .iter()
        .map(|t| t.value.as_str())
        .collect();
    assert_eq!(types, ["", "stock", "crypto", "forex"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_exact_then_prefix_then_substring() {
    let s = TestServer::frozen().await;
    let search = |q: &'static str| s.client.search_symbols().user_input(q);

    let hits = search("amd").send().await.unwrap().into_inner();
    assert_eq!(hits[0].symbol, "AMD", "exact match first, case-insensitive");

    let tickers = |v: Vec<trading_pro_client::types::SymbolSearchResult>| {
        v.into_iter().map(|h| h.ticker).collect::<Vec<_>>()
    };
    // "A": exact none; prefix AAPL, AMZN, AMD, AUDUSD (catalog order); then substrings.
    let all = tickers(search("A").send().await.unwrap().into_inner());
    assert_eq!(&all[..4], ["AAPL", "AMZN", "AMD", "AUDUSD"]);
    assert!(all[4..].iter().all(|t| !t.starts_with('A')));

    // Description matches count as substring matches.
    assert_eq!(
        tickers(search("coca").send().await.unwrap().into_inner()),
        ["KO"]
    );
    // Exchange-qualified input.
    assert_eq!(
        tickers(search("nyse:ko").send().await.unwrap().into_inner()),
        ["KO"]
    );

    let filtered = tickers(
        search("")
            .exchange("NYSE")
            .max_results(3)
            .send()
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(filtered, ["JPM", "V", "WMT"]);
    let crypto = tickers(
        search("usd")
            .symbol_type("crypto")
            .send()
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(crypto, ["BTCUSD", "ETHUSD", "SOLUSD", "XRPUSD"]);
    assert!(search("zzzz").send().await.unwrap().is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_returns_library_symbol_info() {
    let s = TestServer::frozen().await;
    let aapl = s
        .client
        .resolve_symbol()
        .symbol("aapl")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            aapl.name.as_str(),
            aapl.exchange.as_str(),
            aapl.type_.as_str()
        ),
        ("AAPL", "NASDAQ", "stock")
    );
    assert_eq!(
        (aapl.session.as_str(), aapl.timezone.as_str()),
        ("0930-1600", "America/New_York")
    );
    assert_eq!((aapl.pricescale, aapl.minmov), (100, 1));
    assert!(aapl.has_intraday && aapl.has_daily && aapl.has_weekly_and_monthly);

    let btc = s
        .client
        .resolve_symbol()
        .symbol("CRYPTO:BTCUSD")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (btc.session.as_str(), btc.timezone.as_str()),
        ("24x7", "Etc/UTC")
    );
    let eur = s
        .client
        .resolve_symbol()
        .symbol("EURUSD")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (eur.session.as_str(), eur.pricescale),
        ("1700-1700:23456", 100_000)
    );

    let (status, message) = error_of(s.client.resolve_symbol().symbol("NOPE").send().await);
    assert_eq!(status, 404);
    assert!(message.contains("NOPE"), "{message}");
    // Right ticker, wrong exchange.
    assert_eq!(
        error_of(s.client.resolve_symbol().symbol("NYSE:AAPL").send().await).0,
        404
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotes_come_from_the_bar_engine() {
    let s = TestServer::frozen().await;
    let req = QuotesRequest {
        symbols: vec!["AAPL".into(), "NOPE".into(), "btcusd".into()],
    };
    let quotes = s
        .client
        .get_quotes()
        .body(req)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(quotes.len(), 3);
    assert_eq!(quotes[1].s, QuoteStatus::Error);
    assert!(quotes[1].errmsg.as_deref().unwrap().contains("NOPE"));

    for q in [&quotes[0], &quotes[2]] {
        assert_eq!(q.s, QuoteStatus::Ok);
        let v = &q.v;
        // The last price is the close of the current one-minute bar ...
        let minute = s
            .client
            .get_bars()
            .symbol(&q.n)
            .resolution("1")
            .from_time(FROZEN_NOW_S - 60)
            .to_time(FROZEN_NOW_S + 1)
            .send()
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.lp, Some(minute.bars.last().unwrap().close), "{}", q.n);
        // ... and the day's values are today's daily bar, compared with yesterday's close.
        let daily = s
            .client
            .get_bars()
            .symbol(&q.n)
            .resolution("D")
            .from_time(FROZEN_NOW_S - 10 * 86_400)
            .to_time(FROZEN_NOW_S + 1)
            .send()
            .await
            .unwrap()
            .into_inner();
        let (today, yesterday) = (
            &daily.bars[daily.bars.len() - 1],
            &daily.bars[daily.bars.len() - 2],
        );
        assert_eq!(v.open_price, Some(today.open));
        assert_eq!(v.high_price, Some(today.high));
        assert_eq!(v.low_price, Some(today.low));
        assert_eq!(v.volume, Some(today.volume));
        assert_eq!(v.prev_close_price, Some(yesterday.close));
        let ch = v.ch.unwrap();
        assert!((ch - (v.lp.unwrap() - yesterday.close)).abs() < 1e-6);
        assert!((v.chp.unwrap() - ch / yesterday.close * 100.0).abs() < 0.01);
        assert!(v.bid.unwrap() < v.lp.unwrap() && v.lp.unwrap() < v.ask.unwrap());
        assert!(v.original_name.as_deref().unwrap().contains(':'));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_with_a_message() {
    let s = TestServer::frozen().await;
    let c = &s.client;
    let bars = |sym: &'static str, res: &'static str, from: i64, to: i64| {
        c.get_bars()
            .symbol(sym)
            .resolution(res)
            .from_time(from)
            .to_time(to)
    };

    let (st, m) = error_of(bars("NOPE", "D", 0, 1).send().await);
    assert_eq!(st, 404);
    assert!(m.contains("unknown symbol"), "{m}");

    // The typed client cannot even send an unsupported resolution (it is an
    // enum in the spec), so these go raw.
    let http = reqwest::Client::new();
    for res in ["7", "1S", "", "d", "2D"] {
        let url = s.url(&format!(
            "/api/v1/datafeed/bars?symbol=AAPL&resolution={res}&from_time=0&to_time=1"
        ));
        let r = http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 400, "resolution {res:?}");
        let m = r.json::<serde_json::Value>().await.unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            m.contains("unsupported resolution") && m.contains("supported: 1, 5"),
            "{m}"
        );
    }
    let (st, m) = error_of(bars("AAPL", "D", 10, 5).send().await);
    assert_eq!(st, 400);
    assert!(m.contains("from_time"), "{m}");

    for n in [0, -1, 5001] {
        let (st, m) = error_of(bars("AAPL", "D", 0, 1).count_back(n).send().await);
        assert_eq!(st, 400);
        assert!(m.contains("count_back"), "{m}");
    }
    for n in [0, 101] {
        let (st, m) = error_of(
            c.search_symbols()
                .user_input("a")
                .max_results(n)
                .send()
                .await,
        );
        assert_eq!(st, 400);
        assert!(m.contains("max_results"), "{m}");
    }
    for n in [0, 101] {
        let req = QuotesRequest {
            symbols: vec!["AAPL".into(); n],
        };
        let (st, m) = error_of(c.get_quotes().body(req).send().await);
        assert_eq!(st, 400);
        assert!(m.contains("symbols"), "{m}");
    }
    s.stop().await;
}

/// Requests the generated client cannot even express: malformed bodies,
/// query strings and paths, sent raw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_never_get_a_5xx() {
    let s = TestServer::frozen().await;
    let http = reqwest::Client::new();
    let quotes = s.url("/api/v1/datafeed/quotes");
    let bodies: [&[u8]; 7] = [
        b"",
        b"{",
        b"[]",
        b"{\"symbols\": \"AAPL\"}",
        b"{\"symbols\": [1, 2]}",
        b"\xff\xfe",
        b"null",
    ];
    for body in bodies {
        let r = http
            .post(&quotes)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "body {:?}", String::from_utf8_lossy(body));
        assert_eq!(r.headers()["api-version"], "v1");
        let e: serde_json::Value = r.json().await.unwrap();
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    let oversized = format!("{{\"symbols\": [\"{}\"]}}", "A".repeat(100_000));
    let r = http
        .post(&quotes)
        .header("content-type", "application/json")
        .body(oversized)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(e["message"].as_str().unwrap().contains("65536"), "{e}");

    let queries = [
        "/api/v1/datafeed/bars",
        "/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=abc&to_time=1",
        "/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=1e3&to_time=1",
        "/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=99999999999999999999&to_time=1",
        "/api/v1/datafeed/bars?symbol=AAPL&resolution=D&from_time=-9223372036854775808&to_time=9223372036854775807",
        "/api/v1/datafeed/bars?symbol=AAPL&resolution=W&from_time=0&to_time=9223372036854775807&count_back=5000",
        "/api/v1/datafeed/search",
        "/api/v1/datafeed/search?user_input=a&max_results=-5",
        "/api/v1/datafeed/search?user_input=%ff%fe",
        "/api/v1/datafeed/resolve/%00",
        "/api/v1/datafeed/resolve/..%2F..%2Fetc",
        "/api/v1/nope",
    ];
    for q in queries {
        let r = http.get(s.url(q)).send().await.unwrap();
        let status = r.status().as_u16();
        assert!(status < 500, "{q} -> {status}");
        if !r.status().is_success() {
            let e: serde_json::Value = r.json().await.unwrap();
            assert!(!e["message"].as_str().unwrap().is_empty(), "{q}");
        }
    }
    s.stop().await;
}

/// Requests that name no operation, or name it wrongly, are told which
/// part is wrong, with the error body and headers of every other error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_paths_methods_and_media_types_say_what_is_wrong() {
    let s = TestServer::frozen().await;
    let http = reqwest::Client::new();
    let error = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let allow = r
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(r.headers()["api-version"], "v1");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["request_id"], id.as_str());
        (
            status,
            body["error_code"].as_str().unwrap_or("").to_string(),
            body["message"].as_str().unwrap().to_string(),
            allow,
        )
    };

    let r = http.get(s.url("/api/v1/nope")).send().await.unwrap();
    let (st, code, m, _) = error(r).await;
    assert_eq!((st, code.as_str()), (404, "NotFound"));
    assert!(m.contains("/api/v1/nope"), "{m}");

    let r = http.delete(s.url("/api/v1/health")).send().await.unwrap();
    let (st, code, m, allow) = error(r).await;
    assert_eq!((st, code.as_str()), (405, "MethodNotAllowed"));
    assert!(m.contains("DELETE") && m.contains("/api/v1/health"), "{m}");
    assert_eq!(allow.as_deref(), Some("GET"));

    let r = http
        .get(s.url("/api/v1/datafeed/quotes"))
        .send()
        .await
        .unwrap();
    let (st, _, _, allow) = error(r).await;
    assert_eq!(st, 405);
    assert_eq!(allow.as_deref(), Some("POST"));

    let r = http
        .post(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    let (st, _, _, allow) = error(r).await;
    assert_eq!(st, 405);
    assert_eq!(allow.as_deref(), Some("GET"));

    let r = http
        .post(s.url("/api/v1/datafeed/quotes"))
        .header("content-type", "text/plain")
        .body(r#"{"symbols":["AAPL"]}"#)
        .send()
        .await
        .unwrap();
    let (st, code, m, _) = error(r).await;
    assert_eq!((st, code.as_str()), (400, "BadRequest"));
    assert!(
        m.contains("application/json") && m.contains("text/plain"),
        "{m}"
    );

    let r = http
        .post(s.url("/api/v1/datafeed/quotes"))
        .header("content-type", "application/json")
        .body(r#"{"symbols":[1]}"#)
        .send()
        .await
        .unwrap();
    let (st, _, m, _) = error(r).await;
    assert_eq!(st, 400);
    assert!(m.contains("symbols[0]"), "the path to the bad value: {m}");

    // Path variables are percent-decoded; a slash inside one is not a
    // second segment.
    let r = http
        .get(s.url("/api/v1/datafeed/resolve/NASDAQ%3AAAPL"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(s.url("/api/v1/datafeed/resolve/NASDAQ%2FAAPL"))
        .send()
        .await
        .unwrap();
    let (st, code, m, _) = error(r).await;
    assert_eq!((st, code.as_str()), (404, "UnknownSymbol"));
    assert!(m.contains("NASDAQ/AAPL"), "{m}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_configured_origins_including_preflight() {
    let s = TestServer::start(&[
        "--cors-origin",
        "http://localhost:5173",
        "--clock-speed",
        "0",
    ])
    .await;
    let http = reqwest::Client::new();
    let pre = http
        .request(reqwest::Method::OPTIONS, s.url("/api/v1/datafeed/quotes"))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(
        pre.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(pre.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(
        pre.headers()["access-control-allow-headers"],
        "content-type"
    );

    // Preflight also works on a templated path.
    let pre = http
        .request(
            reqwest::Method::OPTIONS,
            s.url("/api/v1/datafeed/resolve/AAPL"),
        )
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);

    let denied = http
        .request(reqwest::Method::OPTIONS, s.url("/api/v1/datafeed/quotes"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    // Actual responses, success and error alike, carry the CORS headers.
    for path in [
        "/api/v1/datafeed/config",
        "/api/v1/datafeed/resolve/NOPE",
        "/api/v1/datafeed/bars?symbol=AAPL",
    ] {
        let r = http
            .get(s.url(path))
            .header("origin", "http://localhost:5173")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["access-control-allow-origin"],
            "http://localhost:5173",
            "{path}"
        );
        assert!(r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("API-Version"));
    }
    let r = http
        .get(s.url("/api/v1/health"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_its_spec() {
    let s = TestServer::frozen().await;
    let http = reqwest::Client::new();
    let json: serde_json::Value = http
        .get(s.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(&json, crate::common::openapi());
    let yaml = http
        .get(s.url("/api/v1/openapi.yaml"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(yaml, trading_pro::OPENAPI_YAML);
    // (The page rendering it is tested in pages.rs and in the browser.)
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_file_replaces_the_catalog() {
    let dir = std::env::temp_dir().join(format!("trading-pro-symbols-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("symbols.json");
    let mut info = serde_json::to_value(
        trading_market::source::DataSource::catalog(&trading_synthetic::Synthetic::builtin(42))
            .lookup("AAPL")
            .unwrap()
            .info
            .clone(),
    )
    .unwrap();
    info["name"] = "ACME".into();
    info["ticker"] = "ACME".into();
    info["description"] = "Acme Corp.".into();
    info["initial_price"] = 42.0.into();
    std::fs::write(&file, serde_json::to_string(&[info]).unwrap()).unwrap();

    let s = TestServer::start(&["--symbols", file.to_str().unwrap(), "--clock-speed", "0"]).await;
    let hits = s
        .client
        .search_symbols()
        .user_input("")
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        hits.iter().map(|h| h.ticker.as_str()).collect::<Vec<_>>(),
        ["ACME"]
    );
    let r = s.client.resolve_symbol().symbol("AAPL").send().await;
    assert_eq!(error_of(r).0, 404);
    s.stop().await;

    std::fs::write(&file, "[{\"name\": 1}]").unwrap();
    let config = trading_server::Config::from_args(["--symbols", file.to_str().unwrap()]).unwrap();
    let err = trading_server::start(&config, trading_server::logging::discard())
        .await
        .err()
        .unwrap();
    assert!(err.contains("symbol infos"), "{err}");
}

/// A page refused by CORS sees only "Failed to fetch" while the server
/// answered 200: the server says so in its log, once per origin, naming the
/// flag that allows it; allowed origins and its own pages are not warned of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_browser_origin_is_logged_once_with_the_flag_that_allows_it() {
    let server =
        crate::common::process::ServerProcess::start(&["--cors-origin", "http://localhost:5173"])
            .await;
    let http = reqwest::Client::new();
    let own = server.base.clone();
    for origin in [
        "http://app.example:3000",
        "http://app.example:3000",
        "http://localhost:5173",
        own.as_str(),
        "http://other.example",
    ] {
        let r = http
            .get(format!("{}/api/v1/datafeed/config", server.base))
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while server
        .log_lines("--cors-origin http://other.example")
        .is_empty()
    {
        assert!(tokio::time::Instant::now() < deadline, "no warning");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let warned = server.log_lines("CORS does not allow");
    let origins: Vec<bool> = ["app.example:3000", "other.example", "localhost:5173"]
        .iter()
        .map(|o| warned.iter().filter(|l| l.contains(o)).count() == 1)
        .collect();
    assert_eq!(origins, [true, true, false], "{warned:?}");
    assert_eq!(warned.len(), 2, "{warned:?}");
}
