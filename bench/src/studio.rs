//! Measurement 7 as the suite runs it: `zimage bench` (the per-stage timeline a person runs against
//! their own ComfyUI) pointed at the simulator, so the suite shows it works and what it reports.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// What `zimage bench --json` wrote, as far as the suite reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StudioBench {
    /// Stage name to milliseconds, for the cold first run.
    pub(crate) cold_ms: BTreeMap<String, f64>,
    /// Stage name to the median milliseconds of the warm runs.
    pub(crate) warm_median_ms: BTreeMap<String, f64>,
    /// The device ComfyUI reported.
    #[serde(default)]
    pub(crate) device: Option<serde_json::Value>,
}

/// Runs `zimage bench --comfyui URL --runs N --json FILE` and reads the file back.
pub(crate) async fn run(
    zimage: &Path,
    comfyui: &str,
    workflow: &Path,
    runs: usize,
) -> anyhow::Result<(StudioBench, String)> {
    let out = tempfile::Builder::new().prefix("zimage-bench-studio").tempdir()?;
    let json = out.path().join("bench.json");
    let mut command = std::process::Command::new(zimage);
    command
        .arg("bench")
        .arg("--comfyui")
        .arg(comfyui)
        .arg("--runs")
        .arg(runs.to_string())
        .arg("--workflow")
        .arg(workflow)
        .arg("--json")
        .arg(&json);
    let output = crate::run_program(command)
        .await
        .context("cannot run zimage bench")?;
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "zimage bench failed:\n{printed}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: StudioBench = serde_json::from_slice(&std::fs::read(&json)?)?;
    Ok((report, printed))
}
