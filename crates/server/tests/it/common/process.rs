//! `trading-server` as a child process, for what only a real process shows:
//! being killed with SIGKILL and started again.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    child: Child,
    pub base: String,
    /// Every log line the server has written so far (JSON, one per line).
    pub log: Arc<Mutex<Vec<String>>>,
    /// Reads the log until the process closes it.
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `trading-server ARGS --bind 127.0.0.1:0` and waits until it
    /// reports its address.
    pub async fn start(args: &[&str]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_trading-server"))
            // As in `TestServer`: no rate limits unless a test asks. A
            // flag given twice takes its last value: the test's win.
            // No drain delay: a test that wants one says so.
            .args([
                "--rate-limit-rps",
                "0",
                "--log-level",
                "info",
                "--drain-delay",
                "0",
            ])
            .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start trading-server");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut early = Vec::new();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let found = line
                    .split("\"address\":\"")
                    .nth(1)
                    .map(|rest| rest.split('"').next().unwrap_or_default().to_string());
                early.push(line);
                if found.is_some() {
                    return found;
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("trading-server reports its address");
        // Keep reading the log so the child never blocks on a full pipe.
        let log = Arc::new(Mutex::new(early));
        let kept = Arc::clone(&log);
        let reader = tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        ServerProcess {
            child,
            base: format!("http://{address}"),
            log,
            reader: Some(reader),
        }
    }

    /// The log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|l| l.contains(needle)).cloned().collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// SIGTERM, then waits for the process to exit; its exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.pid();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("reaped");
        self.read_to_end().await;
        status.code()
    }

    /// Once the process has exited: waits until its last log line is read.
    async fn read_to_end(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
    }

    /// Waits for the process to exit (after a signal the test sent); its
    /// exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server exits")
            .expect("reaped");
        self.read_to_end().await;
        status.code()
    }

    /// SIGKILL: no shutdown, no flush, nothing the process can do about it.
    pub async fn kill_9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}
