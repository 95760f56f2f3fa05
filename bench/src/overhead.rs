//! Measurement 1, the gateway's cost per job: the same jobs on the same simulator (no step delay), once
//! by a minimal ComfyUI client (POST /prompt, its WebSocket until the prompt is done, GET /view) and
//! once through the gateway (POST /api/jobs, the job's SSE until `completed`, GET the image). Runs
//! alternate between the two paths (ABBA) so that drift in the machine's load hits both alike.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::StreamExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zimage_contract::{CreateJobRequest, JobAccepted, JobEvent};

use crate::sse::SseStream;
use crate::stats::{Summary, median};

/// The prompt every benchmark job asks for.
pub(crate) const PROMPT: &str = "a lighthouse on a cliff at dawn, volumetric light, film grain";

/// Where the time of one job went, for either path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JobTiming {
    /// Submitting: until the job was accepted.
    pub(crate) submit: Duration,
    /// From acceptance until the client learnt the image is ready.
    pub(crate) wait: Duration,
    /// Downloading the image.
    pub(crate) image: Duration,
    pub(crate) total: Duration,
    pub(crate) image_bytes: usize,
}

/// The result of measurement 1.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OverheadReport {
    pub(crate) jobs_per_path: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) image_bytes: usize,
    pub(crate) direct: PathReport,
    pub(crate) gateway: PathReport,
    /// Median of the gateway's job times minus the median of the direct ones.
    pub(crate) added_median_ms: f64,
    /// 99th percentile of the gateway's job times minus that of the direct ones.
    pub(crate) added_p99_ms: f64,
    /// Median of the per-pair differences (gateway minus the direct job run beside it).
    pub(crate) added_paired_median_ms: f64,
    /// The same jobs through a second gateway binary (`--baseline-zimage`, another commit's build), in
    /// the same rotation.
    pub(crate) baseline_build: Option<PathReport>,
    pub(crate) baseline_build_added_median_ms: Option<f64>,
    pub(crate) baseline_build_added_p99_ms: Option<f64>,
    /// The disk's own cost of a durable write, in the folder the gateways keep their data in, taken
    /// between the jobs.
    pub(crate) disk: Option<DiskCost>,
}

/// What the data folder's disk takes to write a file and flush it (`write` then `fsync`), timed
/// between the jobs of measurement 1: the floor of any save that a crash cannot undo.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DiskCost {
    /// The file system (as `df` names it).
    pub(crate) filesystem: String,
    /// A new file of `large_bytes` (the size of a photograph-like 1024x1024 PNG), written and flushed.
    pub(crate) large_bytes: usize,
    pub(crate) large: Summary,
    /// A new file the size of the jobs' own image, written and flushed.
    pub(crate) image_sized: Summary,
}

/// Times durable writes in a folder: a fresh file each time, written and flushed, removed untimed.
pub(crate) struct DiskProbe {
    folder: tempfile::TempDir,
    large: bytes::Bytes,
    large_times: Vec<Duration>,
    image_times: Vec<Duration>,
}

impl DiskProbe {
    /// A probe writing in a new folder under `parent` (the system's temporary folder when `None`),
    /// its large file being `large`.
    pub(crate) fn new(parent: Option<&std::path::Path>, large: bytes::Bytes) -> anyhow::Result<DiskProbe> {
        let builder = {
            let mut builder = tempfile::Builder::new();
            builder.prefix("zimage-bench-disk");
            builder
        };
        let folder = match parent {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        Ok(DiskProbe {
            folder,
            large,
            large_times: Vec::new(),
            image_times: Vec::new(),
        })
    }

    /// One flushed write of the large file and one of `image_bytes` bytes.
    async fn sample(&mut self, image_bytes: usize) -> anyhow::Result<()> {
        let large = self.large.clone();
        let small = bytes::Bytes::from(vec![0x5a_u8; image_bytes.max(1)]);
        let folder = self.folder.path().to_owned();
        let (large_time, image_time) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let write = |name: &str, bytes: &[u8]| -> std::io::Result<Duration> {
                use std::io::Write as _;
                let path = folder.join(name);
                let started = Instant::now();
                let mut file = std::fs::File::create(&path)?;
                file.write_all(bytes)?;
                file.sync_all()?;
                let elapsed = started.elapsed();
                drop(file);
                std::fs::remove_file(&path)?;
                Ok(elapsed)
            };
            Ok((write("large.png", &large)?, write("image.png", &small)?))
        })
        .await??;
        self.large_times.push(large_time);
        self.image_times.push(image_time);
        Ok(())
    }

    fn report(&self) -> Option<DiskCost> {
        Some(DiskCost {
            filesystem: crate::saving::filesystem(self.folder.path()),
            large_bytes: self.large.len(),
            large: Summary::of(&self.large_times)?,
            image_sized: Summary::of(&self.image_times)?,
        })
    }
}

/// One path's job times, whole and by stage.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PathReport {
    pub(crate) total: Summary,
    pub(crate) submit_median_ms: f64,
    pub(crate) wait_median_ms: f64,
    pub(crate) image_median_ms: f64,
}

impl PathReport {
    fn of(timings: &[JobTiming]) -> Option<PathReport> {
        let millis = |pick: fn(&JobTiming) -> Duration| -> Vec<f64> {
            timings
                .iter()
                .map(|timing| pick(timing).as_secs_f64() * 1e3)
                .collect()
        };
        Some(PathReport {
            total: Summary::of(&timings.iter().map(|timing| timing.total).collect::<Vec<_>>())?,
            submit_median_ms: median(&millis(|timing| timing.submit)),
            wait_median_ms: median(&millis(|timing| timing.wait)),
            image_median_ms: median(&millis(|timing| timing.image)),
        })
    }
}

/// A minimal ComfyUI client: one WebSocket kept open (as any real client keeps it), prompts submitted
/// under its client id.
pub(crate) struct DirectClient {
    http: reqwest::Client,
    base: String,
    client_id: String,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The gateway's filled workflow, replayed with other seeds.
    graph: Value,
    /// The gateway's `extra_data` (it asks for live previews), so ComfyUI does the same work.
    extra_data: Value,
    sampler: String,
}

impl DirectClient {
    /// Connects to the simulator at `base` and takes `submitted` (a `POST /prompt` body the gateway
    /// sent) as the job to run.
    pub(crate) async fn connect(base: &str, submitted: &Value) -> anyhow::Result<DirectClient> {
        let graph = submitted["prompt"].clone();
        let extra_data = submitted.get("extra_data").cloned().unwrap_or(Value::Null);
        let sampler = graph
            .as_object()
            .and_then(|nodes| {
                nodes
                    .iter()
                    .find(|(_, node)| node["class_type"] == "KSampler")
                    .map(|(id, _)| id.clone())
            })
            .context("the workflow has no KSampler")?;
        let client_id = format!("bench-{}", uuid::Uuid::new_v4().simple());
        let ws_url = format!("{}/ws?clientId={client_id}", base.replacen("http", "ws", 1));
        let (socket, _) = tokio_tungstenite::connect_async(&ws_url)
            .await
            .context("WebSocket to the simulator")?;
        Ok(DirectClient {
            http: http_client(),
            base: base.to_owned(),
            client_id,
            socket,
            graph,
            extra_data,
            sampler,
        })
    }

    /// Runs one job with `seed` and downloads its image.
    pub(crate) async fn run(&mut self, seed: u64) -> anyhow::Result<JobTiming> {
        let mut graph = self.graph.clone();
        graph[&self.sampler]["inputs"]["seed"] = json!(seed);
        let prompt_id = uuid::Uuid::new_v4().to_string();
        let mut body = json!({"prompt": graph, "client_id": self.client_id, "prompt_id": prompt_id});
        if !self.extra_data.is_null() {
            body["extra_data"] = self.extra_data.clone();
        }
        let started = Instant::now();
        let answer = self
            .http
            .post(format!("{}/prompt", self.base))
            .json(&body)
            .send()
            .await?;
        if !answer.status().is_success() {
            bail!(
                "POST /prompt answered {}: {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        let _accepted: Value = answer.json().await?;
        let accepted = Instant::now();
        let mut image = None;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .context("the simulator went quiet")?
                .context("the simulator closed the WebSocket")??;
            let Message::Text(text) = message else { continue };
            let message: Value = serde_json::from_str(&text)?;
            let data = &message["data"];
            if data["prompt_id"] != prompt_id.as_str() {
                continue;
            }
            match message["type"].as_str() {
                Some("executed") => image = data["output"]["images"].get(0).cloned(),
                Some("execution_error") => bail!("the simulator failed the job: {data}"),
                Some("executing") if data["node"].is_null() => break,
                _ => {}
            }
        }
        let done = Instant::now();
        let image = image.context("the job produced no image")?;
        let view = self
            .http
            .get(format!("{}/view", self.base))
            .query(&[
                ("filename", image["filename"].as_str().unwrap_or_default()),
                ("subfolder", image["subfolder"].as_str().unwrap_or_default()),
                ("type", image["type"].as_str().unwrap_or("output")),
            ])
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let finished = Instant::now();
        Ok(JobTiming {
            submit: accepted - started,
            wait: done - accepted,
            image: finished - done,
            total: finished - started,
            image_bytes: view.len(),
        })
    }

    /// Closes the WebSocket politely.
    pub(crate) async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The browser's path through the gateway.
pub(crate) struct GatewayClient {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl GatewayClient {
    /// A client of the gateway at `addr`.
    pub(crate) fn new(addr: SocketAddr) -> GatewayClient {
        GatewayClient {
            http: http_client(),
            addr,
        }
    }

    /// The gateway's address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Submits a job (of the default size); the gateway's answer.
    pub(crate) async fn submit(&self, seed: u64) -> anyhow::Result<JobAccepted> {
        self.submit_sized(seed, None).await
    }

    /// Submits a job of `size` (the default when `None`); the gateway's answer.
    pub(crate) async fn submit_sized(
        &self,
        seed: u64,
        size: Option<(u32, u32)>,
    ) -> anyhow::Result<JobAccepted> {
        self.submit_request(&CreateJobRequest {
            prompt: PROMPT.to_owned(),
            seed: Some(seed),
            width: size.map(|(width, _)| width),
            height: size.map(|(_, height)| height),
            ..CreateJobRequest::default()
        })
        .await
    }

    /// Submits `request` as it is; the gateway's answer.
    pub(crate) async fn submit_request(&self, request: &CreateJobRequest) -> anyhow::Result<JobAccepted> {
        let answer = self
            .http
            .post(format!("http://{}/api/jobs", self.addr))
            .json(request)
            .send()
            .await?;
        if answer.status().as_u16() != 202 {
            bail!(
                "POST /api/jobs answered {}: {}",
                answer.status(),
                answer.text().await.unwrap_or_default()
            );
        }
        Ok(answer.json::<JobAccepted>().await?)
    }

    /// Runs one job with `seed` as the studio page does and downloads its image.
    pub(crate) async fn run(&self, seed: u64) -> anyhow::Result<JobTiming> {
        self.run_request(&CreateJobRequest {
            prompt: PROMPT.to_owned(),
            seed: Some(seed),
            ..CreateJobRequest::default()
        })
        .await
    }

    /// Runs the job `request` asks for as the studio page does and downloads its image.
    pub(crate) async fn run_request(&self, request: &CreateJobRequest) -> anyhow::Result<JobTiming> {
        let started = Instant::now();
        let id = self.submit_request(request).await?.id;
        let accepted = Instant::now();
        let mut events = SseStream::open(self.addr, &zimage_contract::paths::job_events(&id)).await?;
        let mut read_at = Instant::now();
        let (image_url, thumbnail_url) = loop {
            let event = tokio::time::timeout(Duration::from_secs(60), events.next(&mut read_at))
                .await
                .context("the gateway went quiet")??
                .context("the event stream ended before the job did")?;
            match JobEvent::from_sse(&event.name, &event.data)? {
                JobEvent::Completed {
                    image_url,
                    thumbnail_url,
                    ..
                } => break (image_url, thumbnail_url),
                JobEvent::Failed { message, .. } => bail!("the job failed: {message}"),
                JobEvent::Cancelled {} => bail!("the job was cancelled"),
                _ => {}
            }
        };
        let done = Instant::now();
        drop(events);
        let image = self
            .http
            .get(format!("http://{}{image_url}", self.addr))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        let finished = Instant::now();
        // Untimed, as the studio's gallery does next: the thumbnail, which is ready once the image is
        // on disk. So the next job starts with the gateway idle, as jobs seconds apart would.
        self.get_bytes(&thumbnail_url).await?;
        Ok(JobTiming {
            submit: accepted - started,
            wait: done - accepted,
            image: finished - done,
            total: finished - started,
            image_bytes: image.len(),
        })
    }

    /// Fetches `path` and returns the body.
    pub(crate) async fn get_bytes(&self, path: &str) -> anyhow::Result<bytes::Bytes> {
        Ok(self
            .http
            .get(format!("http://{}{path}", self.addr))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?)
    }
}

/// The same HTTP client settings for both paths: keep-alive, no proxy, no compression.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Runs `jobs` jobs on each path after `warmup` unrecorded ones, in an order that turns each round
/// (ABBA with two paths), and between rounds a sample of the disk's durable write.
pub(crate) async fn measure(
    direct: &mut DirectClient,
    gateway: &GatewayClient,
    baseline_build: Option<&GatewayClient>,
    mut disk: Option<&mut DiskProbe>,
    (warmup, jobs): (usize, usize),
    size: (u32, u32),
    mut next_seed: impl FnMut() -> u64,
) -> anyhow::Result<OverheadReport> {
    let paths = if baseline_build.is_some() { 3 } else { 2 };
    let mut times: Vec<Vec<JobTiming>> = vec![Vec::with_capacity(jobs); paths];
    for round in 0..warmup + jobs {
        // Round r runs the paths starting from r mod n, forwards on even turns and backwards on odd
        // ones: each path comes first, last and in between equally often.
        let turn = round / paths;
        let mut order: Vec<usize> = (0..paths).map(|index| (index + round) % paths).collect();
        if turn % 2 == 1 {
            order.reverse();
        }
        for path in order {
            let seed = next_seed();
            let timing = match path {
                0 => direct.run(seed).await?,
                1 => gateway.run(seed).await?,
                _ => match baseline_build {
                    Some(baseline) => baseline.run(seed).await?,
                    None => continue,
                },
            };
            if round >= warmup {
                times[path].push(timing);
            }
        }
        if round >= warmup
            && let Some(disk) = disk.as_deref_mut()
        {
            let image_bytes = times[1].last().map_or(0, |timing| timing.image_bytes);
            disk.sample(image_bytes).await?;
        }
    }
    let direct_report = PathReport::of(&times[0]).context("no direct jobs")?;
    let gateway_report = PathReport::of(&times[1]).context("no gateway jobs")?;
    let baseline_report = times.get(2).and_then(|timings| PathReport::of(timings));
    let paired: Vec<f64> = times[0]
        .iter()
        .zip(&times[1])
        .map(|(direct, gateway)| (gateway.total.as_secs_f64() - direct.total.as_secs_f64()) * 1e3)
        .collect();
    Ok(OverheadReport {
        jobs_per_path: jobs,
        width: size.0,
        height: size.1,
        image_bytes: times[1].last().map_or(0, |timing| timing.image_bytes),
        added_median_ms: gateway_report.total.median_ms - direct_report.total.median_ms,
        added_p99_ms: gateway_report.total.p99_ms - direct_report.total.p99_ms,
        added_paired_median_ms: median(&paired),
        baseline_build_added_median_ms: baseline_report
            .as_ref()
            .map(|report| report.total.median_ms - direct_report.total.median_ms),
        baseline_build_added_p99_ms: baseline_report
            .as_ref()
            .map(|report| report.total.p99_ms - direct_report.total.p99_ms),
        baseline_build: baseline_report,
        disk: disk.and_then(|disk| disk.report()),
        direct: direct_report,
        gateway: gateway_report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_disk_probe_writes_for_real_and_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let mut probe = DiskProbe::new(Some(parent.path()), bytes::Bytes::from(vec![7_u8; 300_000])).unwrap();
        assert!(probe.report().is_none(), "nothing measured yet");
        probe.sample(40_000).await.unwrap();
        probe.sample(40_000).await.unwrap();
        let report = probe.report().unwrap();
        assert_eq!((report.large.count, report.image_sized.count), (2, 2));
        assert_eq!(report.large_bytes, 300_000);
        assert!(report.large.median_ms > 0.0 && !report.filesystem.is_empty());
        assert_eq!(std::fs::read_dir(probe.folder.path()).unwrap().count(), 0);
        drop(probe);
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
