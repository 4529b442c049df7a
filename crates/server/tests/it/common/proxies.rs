//! Real load balancers in front of test servers: nginx and HAProxy from
//! Debian's packages (`scripts/test` installs them when missing), each
//! started on a free port with the configuration `docs/DEPLOYMENT.md`
//! gives operators, read from that page, so the page and the tests cannot
//! disagree. Stopped when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::store::TempDir;

const DEPLOYMENT: &str = include_str!("../../../../../docs/DEPLOYMENT.md");

/// The first fenced block of `language` in docs/DEPLOYMENT.md.
pub fn documented(language: &str) -> String {
    let fence = format!("```{language}\n");
    let start = DEPLOYMENT
        .find(&fence)
        .unwrap_or_else(|| panic!("docs/DEPLOYMENT.md has no ```{language} block"))
        + fence.len();
    let end = DEPLOYMENT[start..]
        .find("```")
        .expect("the block is closed")
        + start;
    DEPLOYMENT[start..end].to_string()
}

/// A free port on 127.0.0.1 (free a moment ago: the proxy binds it next).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `name` on the PATH or in /usr/sbin, where Debian installs it.
fn binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/local/sbin"]) {
        let candidate = PathBuf::from(dir).join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} not found: the deployment tests run a real {name} (scripts/test installs \
         Debian's {package} when it runs as root; or apt-get install {package})"
    );
}

/// A proxy process listening on `port`.
pub struct Proxy {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Proxy {
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits until the proxy accepts connections (or fails the test with
    /// its log).
    fn wait_listening(mut self, name: &str) -> Proxy {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(self.addr()).is_ok() {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{name} exited ({status}) before it listened:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {} within 20 s:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with DEPLOYMENT.md's configuration, proxying to `nodes`.
pub fn nginx(dir: &TempDir, nodes: &[SocketAddr]) -> Proxy {
    let port = free_port();
    let snippet = upstreams(&documented("nginx"), "server 10.0.0.", |_| {
        nodes.iter().map(|n| format!("    server {n};\n")).collect()
    })
    .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    assert!(
        snippet.contains(&format!("listen 127.0.0.1:{port};")),
        "{snippet}"
    );
    let root = dir.path().join("nginx");
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(root.join(sub)).expect("nginx's directories");
    }
    let log = root.join("error.log");
    let conf = root.join("nginx.conf");
    let r = root.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_rlimit_nofile 10000;\n\
             error_log {r}/error.log warn;\npid {r}/nginx.pid;\n\
             events {{ worker_connections 8000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {r}/body;\n  \
             proxy_temp_path {r}/proxy;\n  fastcgi_temp_path {r}/fastcgi;\n  \
             uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n{snippet}\n}}\n"
        ),
    )
    .expect("write nginx.conf");
    let child = Command::new(binary("nginx", "nginx-light"))
        .arg("-p")
        .arg(&root)
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    Proxy { child, port, log }.wait_listening("nginx")
}

/// HAProxy with DEPLOYMENT.md's configuration (TCP, PROXY protocol v2),
/// in front of `nodes`.
pub fn haproxy(dir: &TempDir, nodes: &[SocketAddr]) -> Proxy {
    let port = free_port();
    let snippet = upstreams(&documented("haproxy"), "server n", |line| {
        // `server n1 10.0.0.11:8001 OPTIONS`: the options for every node.
        let options = line
            .split_whitespace()
            .skip(3)
            .collect::<Vec<_>>()
            .join(" ");
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("    server n{} {n} {options}\n", i + 1))
            .collect()
    })
    .replace("bind :80", &format!("bind 127.0.0.1:{port}"));
    assert!(
        snippet.contains(&format!("bind 127.0.0.1:{port}")),
        "{snippet}"
    );
    let root = dir.path().join("haproxy");
    std::fs::create_dir_all(&root).expect("haproxy's directory");
    let conf = root.join("haproxy.cfg");
    std::fs::write(
        &conf,
        format!("global\n    maxconn 4000\n\ndefaults\n    timeout connect 5s\n    timeout client 3600s\n    timeout server 3600s\n\n{snippet}"),
    )
    .expect("write haproxy.cfg");
    let log = root.join("haproxy.log");
    let child = Command::new(binary("haproxy", "haproxy"))
        .arg("-db")
        .arg("-f")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("haproxy's log"))
        .spawn()
        .expect("start haproxy");
    Proxy { child, port, log }.wait_listening("haproxy")
}

/// `config` with its lines that start with `marker` (the documented nodes)
/// replaced, where the first of them was, by `nodes(first line)`.
fn upstreams(config: &str, marker: &str, nodes: impl Fn(&str) -> String) -> String {
    let mut out = String::new();
    let mut done = false;
    for line in config.lines() {
        if line.trim_start().starts_with(marker) {
            if !done {
                out.push_str(&nodes(line.trim()));
                done = true;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(done, "no {marker:?} line in:\n{config}");
    out
}
