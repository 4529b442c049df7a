//! `trading-server` as a child process, for what only a real process shows:
//! being killed with SIGKILL and started again.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    child: Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `trading-server ARGS --bind 127.0.0.1:0` and waits until it
    /// reports its address.
    pub async fn start(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trading-server"))
            // As in `TestServer`: no rate limits unless a test asks.
            .args(["--rate-limit-rps", "0"])
            .args(args)
            .args([
                "--bind",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--log-level",
                "info",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start trading-server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("\"address\":\"").nth(1) {
                    return rest.split('"').next().map(str::to_string);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("trading-server reports its address");
        // Keep reading the log so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ServerProcess {
            child,
            base: format!("http://{address}"),
        }
    }

    /// SIGKILL: no shutdown, no flush, nothing the process can do about it.
    pub async fn kill_9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}
