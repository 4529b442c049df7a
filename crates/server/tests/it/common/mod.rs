//! Starting a real server on an ephemeral port for a test.

use std::sync::OnceLock;

use serde_json::Value;
use trading_pro_client::Client;
use trading_server::server::Server;

/// Thursday 2025-11-20 15:30:00 UTC: 10:30 in New York, so stocks, crypto and
/// forex are all trading.
pub const FROZEN_NOW_S: i64 = 1_763_652_600;

pub struct TestServer {
    pub server: Server,
    pub base: String,
    pub client: Client,
}

impl TestServer {
    /// A server on 127.0.0.1:0 with the given extra flags.
    pub async fn start(extra: &[&str]) -> TestServer {
        // Tests make hundreds of requests a second from one address: rate
        // limits are off unless a test turns them on, and stopping does not
        // wait for the keep-alive connections the client pools.
        let mut args = vec![
            "--bind",
            "127.0.0.1:0",
            "--rate-limit-rps",
            "0",
            "--shutdown-grace",
            "0.2",
        ];
        args.extend_from_slice(extra);
        let config = trading_server::Config::from_args(args).expect("valid flags");
        let server = trading_server::start(&config, trading_server::logging::discard())
            .await
            .expect("server starts");
        let base = format!("http://{}", server.local_addr());
        let client = Client::new(&base);
        TestServer {
            server,
            base,
            client,
        }
    }

    /// A server whose clock stands still at [`FROZEN_NOW_S`]: every answer
    /// is reproducible.
    pub async fn frozen() -> TestServer {
        let start = FROZEN_NOW_S.to_string();
        TestServer::start(&["--clock-start", &start, "--clock-speed", "0"]).await
    }

    /// Every ticker in the server's catalog.
    pub async fn tickers(&self) -> Vec<String> {
        let hits = self
            .client
            .search_symbols()
            .user_input("")
            .max_results(100)
            .send()
            .await;
        hits.expect("search works")
            .iter()
            .map(|h| h.ticker.clone())
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("server closes");
    }
}

/// What the generated client returns for a documented error.
pub type ClientError = trading_pro_client::Error<trading_pro_client::types::Error>;

/// Status code and message of an error response; panics on success. Every
/// error carries `API-Version` like every other answer.
pub fn error_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (u16, String) {
    match r {
        Err(trading_pro_client::Error::ErrorResponse(e)) => {
            assert_eq!(
                e.headers()["api-version"],
                "v1",
                "errors carry API-Version too"
            );
            (e.status().as_u16(), e.into_inner().message)
        }
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// `specs/openapi.yaml` as JSON, parsed once.
pub fn openapi() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_yaml::from_str(trading_pro::OPENAPI_YAML).expect("openapi.yaml parses")
    })
}

/// `specs/asyncapi.yaml` as JSON, parsed once.
pub fn asyncapi() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_yaml::from_str(trading_pro::ASYNCAPI_YAML).expect("asyncapi.yaml parses")
    })
}

pub mod faults;
pub mod nats;
pub mod pages;
pub mod process;
pub mod proxies;
pub mod store;
pub mod tokens;
pub mod ws;
