//! The processes under test: `trading-server` and the bare baseline server,
//! each started as a child so its CPU time and memory can be read from
//! `/proc` apart from the load generator's.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// A fixed market instant (Thursday 2025-11-20 15:30 UTC, US market open),
/// so every run sees the same bars; the session closes 5.5 market hours
/// later, which at clock speed 100 is about 198 s of wall time.
pub const CLOCK_START: i64 = 1_763_652_600;

/// A running child; killed when dropped so a failed scenario leaves nothing
/// behind.
pub struct Process {
    child: Child,
    pub address: String,
    pub pid: u32,
    server_times: ServerTimes,
}

/// The `latency_us` of each request trading-server logs (its access log):
/// the time the server spent on it, from the request head read to the
/// response head ready, without the wait in the socket.
/// Collected only between `start` and `take`.
#[derive(Clone, Default)]
pub struct ServerTimes(Arc<Mutex<Option<Vec<u32>>>>);

impl ServerTimes {
    fn record(&self, line: &str) {
        let mut times = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(times) = times.as_mut() else { return };
        let value = line.split("\"latency_us\":").nth(1).and_then(|rest| {
            let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
            digits.parse().ok()
        });
        if let Some(us) = value {
            times.push(us);
        }
    }

    pub fn start(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
    }

    pub fn take(&self) -> Vec<u32> {
        let mut times = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        times.take().unwrap_or_default()
    }
}

/// Where the child reports its address: trading-server logs it on stderr,
/// the baseline prints it on stdout.
#[derive(Clone, Copy)]
pub enum Reports {
    Stdout,
    Stderr,
}

/// Starts `program` and waits for the line that carries
/// `"address":"HOST:PORT"`.
pub async fn spawn(program: &Path, args: &[String], reports: Reports) -> Result<Process, String> {
    spawn_on(program, args, reports, None).await
}

/// As [`spawn`], with the child confined to CPU `core` when one is given
/// (as `taskset -c` does): it then sizes its thread pools for that one
/// core, as a node in a container with a cpuset of its own would.
pub async fn spawn_on(
    program: &Path,
    args: &[String],
    reports: Reports,
    core: Option<usize>,
) -> Result<Process, String> {
    let mut command = Command::new(program);
    command.args(args).kill_on_drop(true);
    if let Some(core) = core {
        // SAFETY: between fork and exec the closure only calls
        // sched_setaffinity on a set built on its own stack: no allocation,
        // no lock.
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(core, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    match reports {
        Reports::Stderr => command.stderr(Stdio::piped()).stdout(Stdio::null()),
        Reports::Stdout => command.stdout(Stdio::piped()).stderr(Stdio::inherit()),
    };
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e} (build it with cargo build --release -p trading-server -p trading-bench)",
            program.display()
        )
    })?;
    let pid = child.id().ok_or("the child exited at once")?;
    let pipe: Box<dyn AsyncRead + Unpin + Send> = match reports {
        Reports::Stderr => Box::new(child.stderr.take().ok_or("no stderr")?),
        Reports::Stdout => Box::new(child.stdout.take().ok_or("no stdout")?),
    };
    let mut lines = BufReader::new(pipe).lines();
    // Its `--bind` when it names a port (a server that does not log at
    // info never says where it listens): listening once it accepts.
    let bound = args
        .windows(2)
        .find(|w| w[0] == "--bind" && !w[1].ends_with(":0"))
        .map(|w| w[1].clone());
    let address = match bound {
        Some(address) => {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while tokio::net::TcpStream::connect(&address).await.is_err() {
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("{} did not listen on {address}", program.display()));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            address
        }
        None => tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                // JSON (`"address":"HOST:PORT"`) or terminal (`address: HOST:PORT,`).
                let rest = line
                    .split("\"address\":\"")
                    .nth(1)
                    .or_else(|| line.split(", address: ").nth(1));
                if let Some(rest) = rest {
                    return rest.split(['"', ',']).next().map(str::to_string);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| format!("{} did not report its address", program.display()))?,
    };
    // Keep draining the log so the child never blocks on a full pipe.
    let server_times = ServerTimes::default();
    let times = server_times.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            times.record(&line);
        }
    });
    Ok(Process {
        child,
        address,
        pid,
        server_times,
    })
}

/// `trading-server` on a free loopback port with the fixed market instant.
/// The address line is logged at info, so the level stays there.
pub async fn trading_server(path: &str, flags: &[(&str, String)]) -> Result<Process, String> {
    trading_server_on(path, flags, None).await
}

/// [`trading_server`] confined to CPU `core`, if given (see [`spawn_on`]).
pub async fn trading_server_on(
    path: &str,
    flags: &[(&str, String)],
    core: Option<usize>,
) -> Result<Process, String> {
    let mut args: Vec<String> = [
        "--bind",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--log-level",
        "info",
        // Every load here comes from one address: the per-address limits
        // are measured in the abuse scenarios, which set them back.
        "--rate-limit-rps",
        "0",
        "--max-connections-per-ip",
        "1000000",
        "--max-inflight-per-ip",
        "1024",
        "--clock-start",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(CLOCK_START.to_string());
    for (flag, value) in flags {
        args.push(flag.to_string());
        args.push(value.clone());
    }
    spawn_on(Path::new(path), &args, Reports::Stderr, core).await
}

/// A free port on 127.0.0.1 (free a moment ago).
pub fn free_address() -> Result<String, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.to_string())
        .map_err(|e| format!("no free port: {e}"))
}

impl Process {
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }

    pub fn server_times(&self) -> &ServerTimes {
        &self.server_times
    }

    /// Kills the child and reaps it, so its fds and port are gone before
    /// the next scenario starts.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after ')'.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    // utime and stime are fields 14 and 15 of the file: 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / hz
}

/// Resident memory of a process (VmRSS), KiB; 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Bytes the server's side of each connection from one of `peers` has
/// queued in the kernel and not had acknowledged (`tx_queue` in
/// /proc/net/tcp): how much of a stalled reader's data the kernel absorbed
/// before the server itself would have to hold it.
pub fn send_queues(server_port: u16, peers: &[u16]) -> Vec<u64> {
    let peers: std::collections::HashSet<u16> = peers.iter().copied().collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |address: &str| u16::from_str_radix(address.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 01 is ESTABLISHED.
            if *f.get(3)? != "01"
                || port(f.get(1)?)? != server_port
                || !peers.contains(&port(f.get(2)?)?)
            {
                return None;
            }
            u64::from_str_radix(f.get(4)?.split(':').next()?, 16).ok()
        })
        .collect()
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the result.
/// Done first thing in `main`, so the servers this process starts inherit
/// it: each side of every WebSocket connection holds one descriptor.
pub fn raise_fd_limit() -> u64 {
    trading_server::net::files::raise_open_files_limit().map_or(1024, |(soft, _)| soft)
}
