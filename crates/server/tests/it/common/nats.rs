//! NATS for the multi-node tests: the shared server (with a stream of its
//! own per test, deleted afterwards), or a throwaway server of the test's
//! own that it may stop and start again.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::store::TempDir;

/// The shared NATS server: `TRADING_TEST_NATS`, else the one on
/// 127.0.0.1:4222. Fails the test, saying what to start, if none answers.
pub fn shared_url() -> String {
    let url = std::env::var("TRADING_TEST_NATS")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    let address = url.trim_start_matches("nats://").to_string();
    if TcpStream::connect_timeout(
        &address
            .parse()
            .expect("TRADING_TEST_NATS is nats://IP:PORT"),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "no NATS server answers at {url}: start one with JetStream (nats-server -js; \
             scripts/test starts a throwaway one when none answers on 127.0.0.1:4222), or set \
             TRADING_TEST_NATS to nats://IP:PORT of a running one"
        );
    }
    url
}

/// A stream name no other test uses, deleted from `url`'s server when
/// `dir` goes.
pub fn stream(dir: &TempDir, url: &str, label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "TEST_{label}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let (url, doomed) = (url.to_string(), name.clone());
    dir.on_drop(move || delete_stream(&url, &doomed));
    name
}

pub fn delete_stream(url: &str, name: &str) {
    let (url, name) = (url.to_string(), name.to_string());
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let connect = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(&url);
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), connect).await {
                let js = async_nats::jetstream::new(client);
                let _ = tokio::time::timeout(Duration::from_secs(5), js.delete_stream(&name)).await;
            }
        });
    })
    .join();
}

/// `nats-server` from the PATH or where Debian installs it.
fn binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let candidate = PathBuf::from(dir).join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.is_file() {
        return debian;
    }
    panic!(
        "this test starts a NATS server of its own and cannot find nats-server: install it \
         (apt-get install nats-server)"
    );
}

/// A NATS server with JetStream on a free port and a directory of its own.
pub struct Throwaway {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Throwaway {
    pub fn start(dir: &TempDir) -> Throwaway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Throwaway {
            child: None,
            port,
            dir: dir.path().join("nats"),
        };
        nats.resume();
        nats
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and data), and waits until it
    /// answers.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "nats-server did not answer on port {} within 10 s",
            self.port
        );
    }

    /// Stops it as an operator would (SIGTERM), and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
