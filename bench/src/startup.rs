//! Measurement 5, start-up and size: from spawning `zimage serve` to `/healthz` answering 200, with an
//! empty data folder and with a stored history to load, beside two baselines (spawning a process that
//! does nothing, and the simulator's own start to answering), and the release binaries' sizes.
//!
//! Synchronous on purpose: a blocking poll every quarter millisecond measures start-up more finely
//! than a timer wheel with millisecond ticks.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::gateway::{free_port, parse_status, serve_command};
use crate::stats::Summary;

/// How often a start-up is polled.
const POLL: Duration = Duration::from_micros(250);
/// Longest start-up waited for.
const PATIENCE: Duration = Duration::from_secs(30);

/// The result of measurement 5.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StartupReport {
    pub(crate) runs: usize,
    /// `zimage serve` with an empty data folder, spawn to `/healthz` 200.
    pub(crate) gateway_empty: Summary,
    /// `zimage serve` loading a history of `history_records` records.
    pub(crate) gateway_with_history: Option<Summary>,
    pub(crate) history_records: usize,
    /// Spawning `true` and waiting for it: the floor of any start-up.
    pub(crate) process_spawn: Summary,
    /// `comfy-sim` (an axum server without the web UI) spawn to `/system_stats` 200.
    pub(crate) simulator: Option<Summary>,
    pub(crate) gateway_binary_bytes: u64,
    pub(crate) simulator_binary_bytes: Option<u64>,
}

/// What the start-up measurement needs.
pub(crate) struct StartupSpec<'a> {
    pub(crate) zimage: &'a Path,
    pub(crate) comfy_sim: Option<&'a Path>,
    pub(crate) comfyui: &'a str,
    pub(crate) workflow: &'a Path,
    pub(crate) site_root: &'a Path,
    /// A data folder holding a history of so many records (its records are copied, never changed).
    pub(crate) history_dir: Option<(&'a Path, usize)>,
    pub(crate) runs: usize,
}

/// Runs measurement 5.
pub(crate) fn measure(spec: &StartupSpec<'_>) -> anyhow::Result<StartupReport> {
    let mut gateway_empty = Vec::with_capacity(spec.runs);
    let mut gateway_with_history = Vec::with_capacity(spec.runs);
    let mut process_spawn = Vec::with_capacity(spec.runs);
    let mut simulator = Vec::with_capacity(spec.runs);
    for _ in 0..spec.runs {
        let started = Instant::now();
        Command::new("true").status().context("cannot run `true`")?;
        process_spawn.push(started.elapsed());

        let empty = tempfile::Builder::new().prefix("zimage-bench-start").tempdir()?;
        gateway_empty.push(time_gateway(spec, empty.path())?);

        if let Some((history, _)) = spec.history_dir {
            let copy = tempfile::Builder::new().prefix("zimage-bench-start").tempdir()?;
            // The history database and the images (start-up lists them, and drops rows without one).
            for entry in std::fs::read_dir(history)? {
                let entry = entry?;
                let name = entry.file_name();
                if name.to_string_lossy().starts_with("history.sqlite3") {
                    std::fs::copy(entry.path(), copy.path().join(&name))?;
                }
            }
            copy_dir(&history.join("images"), &copy.path().join("images"))?;
            gateway_with_history.push(time_gateway(spec, copy.path())?);
        }
        if let Some(comfy_sim) = spec.comfy_sim {
            let addr = free_port()?;
            let mut command = Command::new(comfy_sim);
            command
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--step-ms")
                .arg("0");
            simulator.push(time_until_ok(command, addr, "/system_stats")?);
        }
    }
    Ok(StartupReport {
        runs: spec.runs,
        gateway_empty: Summary::of(&gateway_empty).context("no start-up measured")?,
        gateway_with_history: Summary::of(&gateway_with_history),
        history_records: spec.history_dir.map_or(0, |(_, records)| records),
        process_spawn: Summary::of(&process_spawn).context("no spawn measured")?,
        simulator: Summary::of(&simulator),
        gateway_binary_bytes: std::fs::metadata(spec.zimage)?.len(),
        simulator_binary_bytes: spec
            .comfy_sim
            .and_then(|path| std::fs::metadata(path).ok())
            .map(|meta| meta.len()),
    })
}

fn time_gateway(spec: &StartupSpec<'_>, data_dir: &Path) -> anyhow::Result<Duration> {
    let addr = free_port()?;
    // Start-up is measured with or without the page's bundle (the check is a few file lookups).
    let command = serve_command(
        spec.zimage,
        None,
        addr,
        spec.comfyui,
        data_dir,
        spec.workflow,
        spec.site_root,
    );
    time_until_ok(command, addr, "/healthz")
}

/// Spawns `command` (output discarded) and polls `GET path` on `addr` until it answers 200.
fn time_until_ok(mut command: Command, addr: SocketAddr, path: &str) -> anyhow::Result<Duration> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let child = command.spawn().context("cannot start the server")?;
    let mut child = KillOnDrop(child);
    loop {
        if get_ok(addr, path) {
            return Ok(started.elapsed());
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("the server exited with {status} before answering");
        }
        if started.elapsed() > PATIENCE {
            bail!("the server did not answer {path} within {PATIENCE:?}");
        }
        std::thread::sleep(POLL);
    }
}

fn get_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut socket) = TcpStream::connect(addr) else {
        return false;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut head = [0_u8; 12];
    socket.write_all(request.as_bytes()).is_ok()
        && socket.read_exact(&mut head).is_ok()
        && parse_status(&head) == Some(200)
}

/// Kills the child when the measurement is done (or fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies a folder tree (files and folders only).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_folder_holds_the_same_files() {
        let from = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(from.path().join("history")).unwrap();
        std::fs::write(from.path().join("history/a.json"), b"{}").unwrap();
        let to = tempfile::tempdir().unwrap();
        copy_dir(from.path(), &to.path().join("copy")).unwrap();
        assert_eq!(
            std::fs::read(to.path().join("copy/history/a.json")).unwrap(),
            b"{}"
        );
    }
}
