//! The gateway under test, run as its own process (`zimage serve`) so that its memory, its cores and
//! its start-up are its own: optionally pinned to chosen CPUs with `taskset`, logging to a file, with a
//! fresh data folder.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// How a gateway is started.
#[derive(Debug, Clone)]
pub(crate) struct GatewaySpec {
    /// The `zimage` binary.
    pub(crate) binary: PathBuf,
    /// ComfyUI's (the simulator's or the proxy's) base URL.
    pub(crate) comfyui: String,
    /// The workflow template.
    pub(crate) workflow: PathBuf,
    /// The web UI's site root.
    pub(crate) site_root: PathBuf,
    /// `taskset -c` CPU list, or `None` to run unpinned.
    pub(crate) cpus: Option<String>,
    /// Where the gateway's data folder is made (the system's temporary folder when `None`).
    pub(crate) data_parent: Option<PathBuf>,
}

/// A running gateway process. Killed when dropped.
pub(crate) struct Gateway {
    child: ChildProcess,
    pid: u32,
    pub(crate) addr: SocketAddr,
    /// From spawning the process to `/healthz` answering 200.
    pub(crate) started_in: Duration,
    data_dir: tempfile::TempDir,
}

/// `zimage serve` on `addr` with the suite's files and `data_dir`, pinned with `taskset -c cpus` when
/// given. The page's web bundle may be absent from the site folder: the measurements need the API.
pub(crate) fn serve_command(
    binary: &Path,
    cpus: Option<&str>,
    addr: SocketAddr,
    comfyui: &str,
    data_dir: &Path,
    workflow: &Path,
    site_root: &Path,
) -> Command {
    let mut command = match cpus {
        Some(cpus) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpus).arg(binary);
            command
        }
        None => Command::new(binary),
    };
    command
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--comfyui")
        .arg(comfyui)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--workflow")
        .arg(workflow)
        .arg("--site-root")
        .arg(site_root)
        .arg("--allow-missing-bundle");
    command
}

impl Gateway {
    /// Starts `zimage serve` on a free loopback port and waits for `/healthz`.
    pub(crate) async fn start(spec: &GatewaySpec) -> anyhow::Result<Gateway> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("zimage-bench-data");
        let data_dir = match &spec.data_parent {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        let addr = free_port()?;
        let log = std::fs::File::create(data_dir.path().join("gateway.log"))?;
        let mut command = serve_command(
            &spec.binary,
            spec.cpus.as_deref(),
            addr,
            &spec.comfyui,
            data_dir.path(),
            &spec.workflow,
            &spec.site_root,
        );
        command
            // One address stands for a whole household here: the per-client abuse limits would
            // measure the limits, not the gateway. The checks themselves still run on every request.
            .arg("--jobs-per-minute")
            .arg("0")
            .arg("--max-streams-per-client")
            .arg("0")
            // No cap on the line, and so no client's share of it: the several-backends runs put 24
            // jobs in line at once from this one client.
            .arg("--max-queued")
            .arg("0")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let spawned_at = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", spec.binary.display()))?;
        let pid = child.id();
        let mut gateway = Gateway {
            child: ChildProcess(child),
            pid,
            addr,
            started_in: Duration::ZERO,
            data_dir,
        };
        let deadline = spawned_at + Duration::from_secs(30);
        loop {
            if let Ok(200) = get_status(addr, "/healthz").await {
                gateway.started_in = spawned_at.elapsed();
                return Ok(gateway);
            }
            if let Some(status) = gateway.child.try_wait()? {
                bail!(
                    "the gateway exited with {status} before answering; see {}",
                    gateway.log_path().display()
                );
            }
            if Instant::now() > deadline {
                bail!("the gateway did not answer /healthz within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits until `/readyz` says ComfyUI can run the workflow.
    pub(crate) async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while get_status(self.addr, "/readyz").await.ok() != Some(200) {
            if Instant::now() > deadline {
                bail!(
                    "the gateway was not ready within 60 s; see {}",
                    self.log_path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// `http://addr`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The process's resident memory now, in KiB.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmRSS")
    }

    /// The process's peak resident memory, in KiB.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid, "VmHWM")
    }

    /// The process's thread count and the CPUs it may run on, as `/proc` says.
    pub(crate) fn threads_and_cpus(&self) -> (Option<u64>, Option<String>) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status.lines().find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(':')
                    .map(|value| value.trim().to_owned())
            })
        };
        (
            field("Threads").and_then(|threads| threads.parse().ok()),
            field("Cpus_allowed_list"),
        )
    }

    /// The gateway's data folder.
    pub(crate) fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("gateway.log")
    }

    /// Stops the process and hands back its data folder (to read or load its history).
    pub(crate) async fn stop(self) -> tempfile::TempDir {
        let Gateway { child, data_dir, .. } = self;
        drop(child);
        data_dir
    }
}

/// The gateway's process, killed (and reaped) when dropped, whatever way the bench ends.
struct ChildProcess(Child);

impl ChildProcess {
    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on right now.
pub(crate) fn free_port() -> std::io::Result<SocketAddr> {
    let listener = StdTcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// `GET path` on a fresh connection; the status code.
pub(crate) async fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut socket = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut head = [0_u8; 12];
    socket.read_exact(&mut head).await?;
    parse_status(&head).ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

/// The status code of an HTTP/1.x status line's first 12 bytes.
pub(crate) fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?.trim();
        value.strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503 Service"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status(b"HTTP/1.1"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let rss = proc_status_kib(std::process::id(), "VmRSS").unwrap();
        assert!(rss > 0);
        assert!(proc_status_kib(std::process::id(), "NoSuchField").is_none());
    }
}
