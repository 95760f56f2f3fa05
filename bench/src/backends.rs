//! Measurement 9, several backends: images per minute through one gateway with 1, 2 and 4 simulated
//! ComfyUI backends at a fixed step time, each beside the ideal (N times the one-backend rate measured
//! in the same run); and the scheduler's own cost per job (fair-share tag, line, backend choice) beside
//! the plain first-in-first-out queue it replaced.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use comfy_sim::{SimHandle, SimOptions, Simulator};
use serde::Serialize;
use zimage::jobs::schedule::{Candidate, FairShare, pick_backend};

use crate::gateway::{Gateway, GatewaySpec};
use crate::overhead::GatewayClient;

/// Throughput with one count of backends.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ScalingRun {
    pub(crate) backends: usize,
    pub(crate) jobs: usize,
    pub(crate) images_per_minute: f64,
    /// N times the one-backend rate of the same run.
    pub(crate) ideal_images_per_minute: f64,
    /// `images_per_minute / ideal_images_per_minute`.
    pub(crate) efficiency: f64,
}

/// What the scheduler adds per job.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SchedulerCost {
    /// Waiting jobs in line and clients while measuring.
    pub(crate) line_length: usize,
    pub(crate) clients: usize,
    pub(crate) backends: usize,
    /// Tag, line insert, first out, backend choice: nanoseconds per job (median of rounds).
    pub(crate) fair_ns_per_job: f64,
    /// The same jobs through a `VecDeque` (the single FIFO of one ComfyUI).
    pub(crate) fifo_ns_per_job: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendsReport {
    pub(crate) step_ms: u64,
    pub(crate) runs: Vec<ScalingRun>,
    pub(crate) scheduler: SchedulerCost,
}

/// The efficiency every count of backends should reach.
pub(crate) const SCALING_TARGET: f64 = 0.9;

/// Runs `jobs_per_backend` jobs per backend, all submitted at once, through a gateway over `counts`
/// simulators each, and times from the first submission to the last image.
pub(crate) async fn measure(
    spec: &GatewaySpec,
    counts: &[usize],
    jobs_per_backend: usize,
    step_ms: u64,
) -> anyhow::Result<BackendsReport> {
    let mut runs: Vec<ScalingRun> = Vec::new();
    let mut one_rate = None;
    for &count in counts {
        let sims = start_simulators(count, step_ms).await?;
        let names: Vec<String> = sims
            .iter()
            .enumerate()
            .map(|(index, sim)| format!("b{index}={}", sim.url()))
            .collect();
        let spec = GatewaySpec {
            comfyui: names.join(","),
            ..spec.clone()
        };
        let gateway = Gateway::start(&spec).await?;
        gateway.wait_ready().await?;
        wait_all_ready(&gateway, count).await?;
        let client = std::sync::Arc::new(GatewayClient::new(gateway.addr));
        // One job per backend first, so each is warm and measured.
        run_all(&client, count, 1).await?;
        let jobs = jobs_per_backend * count;
        let started = Instant::now();
        run_all(&client, jobs, 1_000).await?;
        let elapsed = started.elapsed();
        gateway.stop().await;
        for sim in &sims {
            sim.shutdown();
        }
        let rate = jobs as f64 / elapsed.as_secs_f64() * 60.0;
        let one = *one_rate.get_or_insert(rate / count as f64);
        let ideal = one * count as f64;
        println!(
            "   {count} backend(s): {rate:.1} images/min (ideal {ideal:.1}, {:.0} %)",
            100.0 * rate / ideal
        );
        runs.push(ScalingRun {
            backends: count,
            jobs,
            images_per_minute: rate,
            ideal_images_per_minute: ideal,
            efficiency: rate / ideal,
        });
    }
    let scheduler = scheduler_cost(32, 4, 4);
    println!(
        "   scheduler: {:.0} ns per job (plain FIFO {:.0} ns)",
        scheduler.fair_ns_per_job, scheduler.fifo_ns_per_job
    );
    Ok(BackendsReport {
        step_ms,
        runs,
        scheduler,
    })
}

async fn start_simulators(count: usize, step_ms: u64) -> anyhow::Result<Vec<SimHandle>> {
    let mut sims = Vec::new();
    for _ in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        sims.push(
            Simulator::spawn(
                listener,
                SimOptions {
                    step_ms,
                    ..SimOptions::default()
                },
            )
            .await?,
        );
    }
    Ok(sims)
}

/// Waits until `/api/backends` says every backend is ready.
async fn wait_all_ready(gateway: &Gateway, count: usize) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list: zimage_contract::BackendList = http
            .get(gateway.url(zimage_contract::paths::BACKENDS))
            .send()
            .await?
            .json()
            .await?;
        let ready = list
            .backends
            .iter()
            .filter(|backend| backend.state == zimage_contract::BackendStatus::Ready)
            .count();
        if ready == count {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {ready} of {count} backends ready after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `jobs` jobs at once (seeds from `first_seed`) and waits for every image.
async fn run_all(client: &std::sync::Arc<GatewayClient>, jobs: usize, first_seed: u64) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..jobs)
        .map(|index| {
            let client = std::sync::Arc::clone(client);
            tokio::spawn(async move { client.run(first_seed + index as u64).await })
        })
        .collect();
    for task in tasks {
        task.await.context("a job task panicked")??;
    }
    Ok(())
}

/// The scheduler's bookkeeping for a job, beside a plain queue's, with `line` jobs waiting from
/// `clients` clients and `backends` backends to choose from. Medians of rounds of many jobs.
pub(crate) fn scheduler_cost(line: usize, clients: usize, backends: usize) -> SchedulerCost {
    const JOBS: usize = 100_000;
    const ROUNDS: usize = 7;
    let now = Instant::now();
    let candidates: Vec<Candidate> = (0..backends)
        .map(|index| Candidate {
            available: index % 2 == 1,
            median: Some(Duration::from_millis(3000 + index as u64)),
            idle_since: now,
        })
        .collect();
    let mut fair_rounds = Vec::new();
    let mut fifo_rounds = Vec::new();
    for _ in 0..ROUNDS {
        let mut fair = FairShare::default();
        let mut waiting: BTreeSet<(u64, usize)> = BTreeSet::new();
        for job in 0..line {
            waiting.insert((fair.tag(job % clients), job));
        }
        let started = Instant::now();
        let mut chosen = 0;
        for job in line..line + JOBS {
            waiting.insert((fair.tag(job % clients), job));
            if let Some((tag, _)) = waiting.pop_first() {
                fair.served(tag);
            }
            chosen += pick_backend(std::hint::black_box(&candidates)).unwrap_or(0);
        }
        std::hint::black_box(chosen);
        fair_rounds.push(started.elapsed().as_nanos() as f64 / JOBS as f64);

        let mut queue: VecDeque<usize> = (0..line).collect();
        let started = Instant::now();
        for job in line..line + JOBS {
            queue.push_back(std::hint::black_box(job));
            std::hint::black_box(queue.pop_front());
        }
        fifo_rounds.push(started.elapsed().as_nanos() as f64 / JOBS as f64);
    }
    SchedulerCost {
        line_length: line,
        clients,
        backends,
        fair_ns_per_job: crate::stats::median(&fair_rounds),
        fifo_ns_per_job: crate::stats::median(&fifo_rounds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_cost_is_measured_for_both_paths() {
        let cost = scheduler_cost(8, 2, 2);
        assert!(cost.fair_ns_per_job > 0.0 && cost.fifo_ns_per_job > 0.0);
        assert_eq!((cost.line_length, cost.clients, cost.backends), (8, 2, 2));
    }
}
