//! Prints a symbol's live bars from a trading-server, one line per update.
//!
//! ```sh
//! cargo run -p trading-pro-client --example live_bars -- http://127.0.0.1:8000 AAPL 1
//! cargo run -p trading-pro-client --example live_bars -- http://127.0.0.1:8000 BTCUSD 1 5   # stop after 5
//! ```
//!
//! Against a server with authentication on, give the token in
//! `TRADING_TOKEN`.

use trading_pro_client::messages::SubscriptionStatus;
use trading_pro_client::ws::WsClient;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, symbol, resolution, rest @ ..] = args.as_slice() else {
        eprintln!("usage: live_bars BASE_URL SYMBOL RESOLUTION [COUNT]");
        std::process::exit(2);
    };
    let count: Option<usize> = rest.first().map(|n| n.parse().unwrap_or(usize::MAX));
    let connected = match std::env::var("TRADING_TOKEN") {
        Ok(token) => WsClient::connect_with_token(base, &token).await,
        Err(_) => WsClient::connect(base).await,
    };
    let mut ws = match connected {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("cannot connect to {base}: {e}");
            std::process::exit(1);
        }
    };
    match ws.subscribe(symbol, resolution).await {
        Ok(reply) if reply.status == SubscriptionStatus::Ok => eprintln!("{}", reply.message),
        Ok(reply) => {
            eprintln!("subscribe refused: {}", reply.message);
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("subscribe failed: {e}");
            std::process::exit(1);
        }
    }
    let mut seen = 0;
    while let Some(bar) = ws.next_update().await {
        println!(
            "{} time={} open={} high={} low={} close={} volume={}",
            bar.topic, bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume
        );
        seen += 1;
        if count.is_some_and(|n| seen >= n) {
            return;
        }
    }
    if let Some(closed) = ws.closed() {
        eprintln!("closed: {closed:?}");
    }
}
