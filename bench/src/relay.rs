//! Measurements 2 and 3, the progress relay: how long a `progress` message takes from the simulator's
//! socket to every browser watching the job, with 1, 200 and 1,000 watchers of the same job, and what
//! the watchers cost the gateway in resident memory.
//!
//! Each job is held by the simulator before its first sampling step until every watcher has its
//! stream open and has received the job's first event; then the steps run at a fixed pace, so each
//! progress message is fanned out on its own rather than queued behind the previous one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use comfy_sim::Faults;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};
use zimage_contract::JobEvent;

use crate::gateway::Gateway;
use crate::overhead::GatewayClient;
use crate::proxy::ProgressClock;
use crate::sse::SseStream;
use crate::stats::Summary;

/// The relay's work does not depend on the image, and the simulator shares the measuring clients' core:
/// small images keep its PNG encoding (right after the last step) from delaying their reads.
const RELAY_IMAGE_SIZE: (u32, u32) = (256, 256);
/// How many streams are being opened at once.
const OPENING_AT_ONCE: usize = 64;
/// The longest any wait in this measurement may take.
const PATIENCE: Duration = Duration::from_secs(120);

/// The result for one number of watchers.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RelayReport {
    pub(crate) watchers: usize,
    pub(crate) jobs: usize,
    /// Milliseconds between two sampling steps of the simulator.
    pub(crate) step_ms: u64,
    /// From the simulator writing a progress message to a watcher reading its SSE event.
    pub(crate) latency: Summary,
    /// The median latency of each step (1 to 8), to tell a slow first step from a slow fan-out.
    pub(crate) median_by_step_ms: Vec<f64>,
    /// Progress events that did not arrive (should be 0).
    pub(crate) missing_events: usize,
    /// The gateway's resident memory with no watcher, before the first job.
    pub(crate) rss_idle_kib: u64,
    /// The gateway's resident memory with every watcher connected.
    pub(crate) rss_watching_kib: u64,
    /// The gateway's peak resident memory so far.
    pub(crate) peak_rss_kib: u64,
    /// (watching - idle) / watchers.
    pub(crate) per_watcher_kib: f64,
}

/// What one watcher saw of one job.
struct Watched {
    progress: Vec<(u32, Instant)>,
}

/// Runs `jobs` jobs, each watched by `watchers` streams, and measures the relay.
pub(crate) async fn measure(
    gateway: &Gateway,
    client: &GatewayClient,
    faults: &Faults,
    clock: &ProgressClock,
    (watchers, jobs, step_ms): (usize, usize, u64),
    mut next_seed: impl FnMut() -> u64,
) -> anyhow::Result<RelayReport> {
    let rss_idle_kib = gateway.rss_kib().unwrap_or(0);
    let mut rss_watching_kib = 0;
    let mut latencies = Vec::with_capacity(watchers * jobs * 8);
    let mut by_step: Vec<Vec<f64>> = vec![Vec::new(); zimage_contract::STEPS as usize];
    let mut missing_events = 0;
    faults.set_step_ms(step_ms);
    for _ in 0..jobs {
        faults.hold_at_step(Some(1));
        let accepted = client.submit_sized(next_seed(), Some(RELAY_IMAGE_SIZE)).await?;
        let (ready_sender, mut ready) = mpsc::unbounded_channel();
        let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
        let mut tasks = Vec::with_capacity(watchers);
        for _ in 0..watchers {
            let path = zimage_contract::paths::job_events(&accepted.id);
            let opening = Arc::clone(&opening);
            let ready = ready_sender.clone();
            tasks.push(tokio::spawn(watch(gateway.addr, path, opening, ready)));
        }
        drop(ready_sender);
        for _ in 0..watchers {
            tokio::time::timeout(PATIENCE, ready.recv())
                .await
                .context("watchers took too long to connect")?
                .context("a watcher failed before its first event")?;
        }
        rss_watching_kib = rss_watching_kib.max(gateway.rss_kib().unwrap_or(0));
        faults.release();
        let mut results = futures_util::stream::iter(tasks).buffer_unordered(watchers.max(1));
        while let Some(result) = tokio::time::timeout(PATIENCE, results.next())
            .await
            .context("the job hung")?
        {
            let watched = result??;
            missing_events += (zimage_contract::STEPS as usize).saturating_sub(watched.progress.len());
            for (step, read_at) in watched.progress {
                let sent = clock
                    .sent_at(&accepted.id, step)
                    .with_context(|| format!("the proxy did not see step {step} leave the simulator"))?;
                let latency = read_at.saturating_duration_since(sent);
                if let Some(step_latencies) = by_step.get_mut((step as usize).saturating_sub(1)) {
                    step_latencies.push(latency.as_secs_f64() * 1e3);
                }
                latencies.push(latency);
            }
        }
    }
    faults.set_step_ms(0);
    let latency = Summary::of(&latencies).context("no progress event arrived")?;
    Ok(RelayReport {
        watchers,
        jobs,
        step_ms,
        latency,
        median_by_step_ms: by_step
            .iter()
            .map(|latencies| crate::stats::median(latencies))
            .collect(),
        missing_events,
        rss_idle_kib,
        rss_watching_kib,
        peak_rss_kib: gateway.peak_rss_kib().unwrap_or(0),
        per_watcher_kib: rss_watching_kib.saturating_sub(rss_idle_kib) as f64 / watchers.max(1) as f64,
    })
}

/// One watcher: opens the stream (at most [`OPENING_AT_ONCE`] at a time), says so after the first
/// event, then notes when each progress event arrived until the job ends.
async fn watch(
    addr: SocketAddr,
    path: String,
    opening: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<()>,
) -> anyhow::Result<Watched> {
    let mut stream = {
        let _permit = opening.acquire().await?;
        SseStream::open(addr, &path).await?
    };
    let mut progress = Vec::with_capacity(8);
    let mut read_at = Instant::now();
    let mut first = true;
    while let Some(event) = stream.next(&mut read_at).await? {
        if first {
            first = false;
            let _ = ready.send(());
        }
        // Progress events are the measured ones: note them before decoding anything, so one
        // watcher's bookkeeping delays the next watcher's read as little as possible.
        if event.name == "progress" {
            progress.push((event.data, read_at));
            continue;
        }
        match JobEvent::from_sse(&event.name, &event.data)? {
            JobEvent::Completed { .. } => {
                let progress = progress
                    .into_iter()
                    .map(|(data, read_at)| match JobEvent::from_sse("progress", &data)? {
                        JobEvent::Progress { step, .. } => Ok((step, read_at)),
                        other => bail!("a progress event decoded as {other:?}"),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                return Ok(Watched { progress });
            }
            JobEvent::Failed { message, .. } => bail!("the job failed: {message}"),
            JobEvent::Cancelled {} => bail!("the job was cancelled"),
            _ => {}
        }
    }
    bail!("the stream ended before the job did")
}
