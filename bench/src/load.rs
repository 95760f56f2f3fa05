//! Measurement 4, API throughput under load: `wrk` on loopback against the job status and history
//! reads, beside two baselines served by the same process: a static file of the same bytes as the
//! history page (tower-http's `ServeDir`) and `/healthz` (the cheapest route there is).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::stats::median;

/// One endpoint under load.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoadReport {
    pub(crate) name: &'static str,
    pub(crate) path: String,
    pub(crate) body_bytes: usize,
    /// Median over the rounds.
    pub(crate) requests_per_second: f64,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
    /// Requests per second relative to the static-file baseline.
    pub(crate) relative_to_static: f64,
}

/// What one `wrk` run printed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WrkRun {
    pub(crate) requests_per_second: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) errors: u64,
}

/// How `wrk` is run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) rounds: usize,
}

/// Whether `wrk` can be run.
pub(crate) fn wrk_available() -> bool {
    std::process::Command::new("wrk")
        .arg("--version")
        .output()
        .is_ok()
}

/// Loads each `(name, path, body_bytes)` endpoint of the gateway at `base` in turn, `rounds` times
/// over, and reports the medians. The first endpoint named `static` is the baseline.
pub(crate) async fn measure(
    base: &str,
    endpoints: &[(&'static str, String, usize)],
    spec: LoadSpec,
) -> anyhow::Result<Vec<LoadReport>> {
    let mut runs: Vec<Vec<WrkRun>> = vec![Vec::new(); endpoints.len()];
    for _ in 0..spec.rounds {
        for (index, (_, path, _)) in endpoints.iter().enumerate() {
            runs[index].push(run_wrk(&format!("{base}{path}"), spec).await?);
        }
    }
    let mut reports: Vec<LoadReport> = endpoints
        .iter()
        .zip(&runs)
        .map(|((name, path, body_bytes), runs)| {
            let pick = |field: fn(&WrkRun) -> f64| median(&runs.iter().map(field).collect::<Vec<_>>());
            LoadReport {
                name,
                path: path.clone(),
                body_bytes: *body_bytes,
                requests_per_second: pick(|run| run.requests_per_second),
                latency_p50_ms: pick(|run| run.p50_ms),
                latency_p99_ms: pick(|run| run.p99_ms),
                relative_to_static: f64::NAN,
            }
        })
        .collect();
    let baseline = reports
        .iter()
        .find(|report| report.name == "static")
        .map(|report| report.requests_per_second);
    if let Some(baseline) = baseline {
        for report in &mut reports {
            report.relative_to_static = report.requests_per_second / baseline;
        }
    }
    Ok(reports)
}

async fn run_wrk(url: &str, spec: LoadSpec) -> anyhow::Result<WrkRun> {
    let mut command = std::process::Command::new("wrk");
    command
        .arg("--threads")
        .arg("1")
        .arg("--connections")
        .arg(spec.connections.to_string())
        .arg("--duration")
        .arg(format!("{}s", spec.duration.as_secs().max(1)))
        .arg("--latency")
        .arg(url);
    let output = crate::run_program(command).await.context("cannot run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("wrk failed: {}{}", text, String::from_utf8_lossy(&output.stderr));
    }
    let run = parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))?;
    if run.errors > 0 {
        bail!("{} requests to {url} failed under load:\n{text}", run.errors);
    }
    Ok(run)
}

/// Reads requests per second, the 50th and 99th latency percentiles and the error count from
/// `wrk --latency`'s report.
pub(crate) fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut run = WrkRun {
        requests_per_second: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        errors: 0,
    };
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("Requests/sec:"), Some(value)) => run.requests_per_second = value.parse().ok()?,
            (Some("50%"), Some(value)) => run.p50_ms = millis(value)?,
            (Some("99%"), Some(value)) => run.p99_ms = millis(value)?,
            (Some("Non-2xx"), _) => run.errors += line.rsplit(' ').next()?.parse::<u64>().ok()?,
            (Some("Socket"), Some("errors:")) => {
                // "Socket errors: connect 0, read 0, write 0, timeout 0"
                run.errors += line
                    .split(',')
                    .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    run.requests_per_second.is_finite().then_some(run)
}

/// `wrk`'s durations: `812.00us`, `1.23ms`, `2.00s`.
fn millis(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(number) = value.strip_suffix("us") {
        (number, 1e-3)
    } else if let Some(number) = value.strip_suffix("ms") {
        (number, 1.0)
    } else if let Some(number) = value.strip_suffix('m') {
        (number, 60e3)
    } else if let Some(number) = value.strip_suffix('s') {
        (number, 1e3)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|number| number * scale)
}

/// Writes `bytes` under the site root's `pkg/` folder as the static baseline; returns its URL path.
pub(crate) fn write_static_copy(site_root: &Path, name: &str, bytes: &[u8]) -> std::io::Result<String> {
    let pkg = site_root.join("pkg");
    std::fs::create_dir_all(&pkg)?;
    std::fs::write(pkg.join(name), bytes)?;
    Ok(format!("/pkg/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:7860/healthz
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   812.37us  301.22us   9.87ms   91.02%
    Req/Sec    39.12k     2.01k   42.00k    80.00%
  Latency Distribution
     50%  760.00us
     75%  850.00us
     90%    1.01ms
     99%    2.10ms
  194567 requests in 5.00s, 24.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  38913.40
Transfer/sec:      4.82MB
";

    #[test]
    fn a_wrk_report_gives_rate_percentiles_and_errors() {
        let run = parse_wrk(REPORT).unwrap();
        assert_eq!(run.requests_per_second, 38913.40);
        assert!((run.p50_ms - 0.76).abs() < 1e-9);
        assert!((run.p99_ms - 2.10).abs() < 1e-9);
        assert_eq!(run.errors, 7);
    }

    #[test]
    fn durations_in_every_unit_become_milliseconds() {
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("1.50ms"), Some(1.5));
        assert_eq!(millis("1.00m"), Some(60000.0));
        assert_eq!(millis("12"), None);
        assert!(parse_wrk("nothing useful").is_none());
    }
}
