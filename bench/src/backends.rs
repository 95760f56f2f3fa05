//! Measurement 9, several backends: images per minute through one gateway with 1, 2 and 4 simulated
//! ComfyUI backends at a fixed step time, each beside the ideal (N times the one-backend rate measured
//! in the same run); and the scheduler's own cost per job (fair-share tag, line, backend choice) beside
//! the plain first-in-first-out queue it replaced. With LoRAs: images per minute when every job needs a
//! LoRA that only half of 4 backends have (beside the ideal for those two), and what reading the LoRA
//! lists of 4 backends costs (the gateway refreshes them while connected).

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
    /// The fair path when each job asks for two LoRAs and each backend lists its own set of 25 (the
    /// engine's check: every LoRA of the job in the backend's list, before the choice).
    pub(crate) fair_with_loras_ns_per_job: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendsReport {
    pub(crate) step_ms: u64,
    pub(crate) runs: Vec<ScalingRun>,
    pub(crate) scheduler: SchedulerCost,
    /// Every job needing a LoRA that half of the backends have (absent without a one-backend run).
    pub(crate) lora_run: Option<ScalingRun>,
    pub(crate) lora_refresh: LoraRefresh,
}

/// Reading every backend's LoRA list once, all at once (`GET /object_info/LoraLoaderModelOnly`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LoraRefresh {
    pub(crate) backends: usize,
    pub(crate) loras_each: usize,
    pub(crate) median_ms: f64,
    pub(crate) p90_ms: f64,
}

/// The LoRA the half-of-the-backends run needs.
const HALF_LORA: &str = "bench-style.safetensors";
/// Other LoRA files each simulated backend lists, so the lists are of a realistic length.
const OTHER_LORAS: usize = 24;
/// Rounds of the refresh measurement.
const REFRESH_ROUNDS: usize = 60;

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
        let (gateway, client) = start_gateway_over(spec, &sims).await?;
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
        "   scheduler: {:.0} ns per job, {:.0} ns with two LoRAs to match (plain FIFO {:.0} ns)",
        scheduler.fair_ns_per_job, scheduler.fair_with_loras_ns_per_job, scheduler.fifo_ns_per_job
    );
    let lora_run = match one_rate {
        Some(one) => Some(half_with_lora(spec, jobs_per_backend, step_ms, one).await?),
        None => None,
    };
    let lora_refresh = refresh_cost(4).await?;
    println!(
        "   LoRA lists of {} backends ({} files each): {:.2} ms median, {:.2} ms p90",
        lora_refresh.backends, lora_refresh.loras_each, lora_refresh.median_ms, lora_refresh.p90_ms
    );
    Ok(BackendsReport {
        step_ms,
        runs,
        scheduler,
        lora_run,
        lora_refresh,
    })
}

/// Four backends, of which two have [`HALF_LORA`]; every job needs it. The ideal is two backends'
/// worth of the one-backend rate `one` measured in the same run.
async fn half_with_lora(
    spec: &GatewaySpec,
    jobs_per_backend: usize,
    step_ms: u64,
    one: f64,
) -> anyhow::Result<ScalingRun> {
    let sims = start_simulators_with(4, step_ms, |index| lora_files(index % 2 == 0)).await?;
    let (gateway, client) = start_gateway_over(spec, &sims).await?;
    let with_lora = |seed: u64| zimage_contract::CreateJobRequest {
        prompt: "a lighthouse in the style".to_owned(),
        seed: Some(seed),
        loras: vec![zimage_contract::LoraChoice {
            name: HALF_LORA.to_owned(),
            strength: 0.8,
        }],
        ..zimage_contract::CreateJobRequest::default()
    };
    // One job per backend that has it first, so each is warm and measured.
    run_requests(&client, (1..=2).map(with_lora).collect()).await?;
    let jobs = jobs_per_backend * 2;
    let started = Instant::now();
    run_requests(
        &client,
        (0..jobs as u64).map(|seed| with_lora(2_000 + seed)).collect(),
    )
    .await?;
    let elapsed = started.elapsed();
    gateway.stop().await;
    for sim in &sims {
        sim.shutdown();
    }
    let rate = jobs as f64 / elapsed.as_secs_f64() * 60.0;
    let ideal = one * 2.0;
    println!(
        "   4 backends, the LoRA on 2: {rate:.1} images/min (ideal for 2: {ideal:.1}, {:.0} %)",
        100.0 * rate / ideal
    );
    Ok(ScalingRun {
        backends: 2,
        jobs,
        images_per_minute: rate,
        ideal_images_per_minute: ideal,
        efficiency: rate / ideal,
    })
}

/// The LoRA files of a simulated backend: [`OTHER_LORAS`] others, and [`HALF_LORA`] when `with`.
fn lora_files(with: bool) -> Vec<String> {
    let mut files: Vec<String> = (0..OTHER_LORAS)
        .map(|index| format!("styles/other-{index:02}.safetensors"))
        .collect();
    if with {
        files.push(HALF_LORA.to_owned());
    }
    files
}

/// What the gateway's refresh asks of `count` backends: each one's LoRA list, all at once, as the
/// gateway's own client asks (`ComfyClient::loras`), over [`REFRESH_ROUNDS`] rounds.
async fn refresh_cost(count: usize) -> anyhow::Result<LoraRefresh> {
    let sims = start_simulators_with(count, 0, |_| lora_files(true)).await?;
    let clients: Vec<zimage::comfy::client::ComfyClient> = sims
        .iter()
        .map(|sim| zimage::comfy::client::ComfyClient::new(sim.url().parse().expect("a simulator's URL")))
        .collect();
    let mut rounds = Vec::with_capacity(REFRESH_ROUNDS);
    for round in 0..=REFRESH_ROUNDS {
        let started = Instant::now();
        let lists = futures_util::future::join_all(clients.iter().map(|client| client.loras())).await;
        let elapsed = started.elapsed();
        for list in lists {
            let list = list.context("a backend's LoRA list")?;
            anyhow::ensure!(list.len() == OTHER_LORAS + 1, "a list of {} LoRAs", list.len());
        }
        // The first round opens the connections; the gateway keeps them.
        if round > 0 {
            rounds.push(elapsed.as_secs_f64() * 1000.0);
        }
    }
    for sim in &sims {
        sim.shutdown();
    }
    rounds.sort_by(f64::total_cmp);
    Ok(LoraRefresh {
        backends: count,
        loras_each: OTHER_LORAS + 1,
        median_ms: crate::stats::median(&rounds),
        p90_ms: rounds[rounds.len() * 9 / 10],
    })
}

/// A gateway over `sims` (named `b0`, `b1`, ...), once every one of them is ready, and a client of it.
async fn start_gateway_over(
    spec: &GatewaySpec,
    sims: &[SimHandle],
) -> anyhow::Result<(Gateway, std::sync::Arc<GatewayClient>)> {
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
    wait_all_ready(&gateway, sims.len()).await?;
    let client = std::sync::Arc::new(GatewayClient::new(gateway.addr));
    Ok((gateway, client))
}

async fn start_simulators(count: usize, step_ms: u64) -> anyhow::Result<Vec<SimHandle>> {
    start_simulators_with(count, step_ms, |_| Vec::new()).await
}

/// `count` simulators, the `index`th listing `loras(index)`.
async fn start_simulators_with(
    count: usize,
    step_ms: u64,
    loras: impl Fn(usize) -> Vec<String>,
) -> anyhow::Result<Vec<SimHandle>> {
    let mut sims = Vec::new();
    for index in 0..count {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        sims.push(
            Simulator::spawn(
                listener,
                SimOptions {
                    step_ms,
                    loras: loras(index),
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

/// Runs `requests` as jobs at once and waits for every image.
async fn run_requests(
    client: &std::sync::Arc<GatewayClient>,
    requests: Vec<zimage_contract::CreateJobRequest>,
) -> anyhow::Result<()> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let client = std::sync::Arc::clone(client);
            tokio::spawn(async move { client.run_request(&request).await })
        })
        .collect();
    for task in tasks {
        task.await.context("a job task panicked")??;
    }
    Ok(())
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
    let mut lora_rounds = Vec::new();
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

        let lists: Vec<BTreeSet<String>> = (0..backends)
            .map(|index| lora_files(index % 2 == 1).into_iter().collect())
            .collect();
        let wanted = [HALF_LORA.to_owned(), "styles/other-07.safetensors".to_owned()];
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
            let able: Vec<Candidate> = candidates
                .iter()
                .zip(&lists)
                .map(|(candidate, list)| Candidate {
                    available: candidate.available
                        && std::hint::black_box(&wanted)
                            .iter()
                            .all(|lora| list.contains(lora)),
                    ..*candidate
                })
                .collect();
            chosen += pick_backend(&able).unwrap_or(0);
        }
        std::hint::black_box(chosen);
        lora_rounds.push(started.elapsed().as_nanos() as f64 / JOBS as f64);

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
        fair_with_loras_ns_per_job: crate::stats::median(&lora_rounds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduler_cost_is_measured_for_both_paths() {
        let cost = scheduler_cost(8, 2, 2);
        assert!(cost.fair_ns_per_job > 0.0 && cost.fifo_ns_per_job > 0.0);
        assert!(cost.fair_with_loras_ns_per_job > 0.0);
        assert_eq!((cost.line_length, cost.clients, cost.backends), (8, 2, 2));
    }
}
