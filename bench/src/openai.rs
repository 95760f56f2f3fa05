//! Measurement 11, the OpenAI-compatible path: the same jobs on the same gateway and simulator, once
//! as the studio's page runs them (`POST /api/jobs`, the job's events until `completed`, the PNG) and
//! once as an OpenAI SDK does (`POST /v1/images/generations`, one answer with the image as base64),
//! as PNG, JPEG and WebP, rotating between the paths so that drift hits all alike; and, in process, what
//! transcoding the gateway's 1024x1024 PNG to JPEG and WebP costs per image.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde::Serialize;
use serde_json::json;
use zimage::openai::Encoding;
use zimage_contract::openai::OutputFormat;

use crate::overhead::{GatewayClient, PROMPT};
use crate::stats::{Summary, median};

/// The result of measurement 11.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct OpenAiReport {
    pub(crate) jobs_per_path: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// `/api/jobs`: submit, events until `completed`, the PNG.
    pub(crate) api: Summary,
    /// `/v1/images/generations`, PNG as base64.
    pub(crate) v1_png: Summary,
    pub(crate) v1_jpeg: Summary,
    pub(crate) v1_webp: Summary,
    /// Median of the per-round differences, `/v1` PNG minus `/api/jobs`.
    pub(crate) v1_added_median_ms: f64,
    /// The same for JPEG and WebP answers, over the `/v1` PNG answer.
    pub(crate) jpeg_added_median_ms: f64,
    pub(crate) webp_added_median_ms: f64,
    /// In process, the stored PNG transcoded (one image at a time, one thread).
    pub(crate) transcode_jpeg: Summary,
    pub(crate) transcode_webp: Summary,
    pub(crate) png_bytes: usize,
    pub(crate) jpeg_bytes: usize,
    pub(crate) webp_bytes: usize,
}

/// One `/v1/images/generations` request of a 1024x1024 image in `format`, answered as base64: the
/// time until the whole answer is read.
async fn v1(
    http: &reqwest::Client,
    client: &GatewayClient,
    seed: u64,
    format: &str,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answer = http
        .post(format!("http://{}/v1/images/generations", client.addr()))
        .json(
            &json!({"model": "gpt-image-1", "prompt": PROMPT, "size": "1024x1024", "seed": seed,
                      "output_format": format, "output_compression": 90}),
        )
        .send()
        .await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!(
            "POST /v1/images/generations answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    anyhow::ensure!(body.len() > 1000, "the answer holds no image");
    Ok(elapsed)
}

/// Runs `jobs` rounds (after `warmup`), each one job on every path, the order rotating each round.
pub(crate) async fn measure(
    client: &GatewayClient,
    warmup: usize,
    jobs: usize,
    mut next_seed: impl FnMut() -> u64,
) -> anyhow::Result<OpenAiReport> {
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    const PATHS: usize = 4;
    let mut times: [Vec<Duration>; PATHS] = Default::default();
    for round in 0..warmup + jobs {
        let mut this_round = [Duration::ZERO; PATHS];
        for turn in 0..PATHS {
            let path = (round + turn) % PATHS;
            let seed = next_seed();
            this_round[path] = match path {
                0 => client.run(seed).await?.total,
                1 => v1(&http, client, seed, "png").await?,
                2 => v1(&http, client, seed, "jpeg").await?,
                _ => v1(&http, client, seed, "webp").await?,
            };
        }
        if round >= warmup {
            for (path, time) in this_round.into_iter().enumerate() {
                times[path].push(time);
            }
        }
    }
    let millis = |time: &Duration| time.as_secs_f64() * 1e3;
    let paired = |a: usize, b: usize| {
        let differences: Vec<f64> = times[a]
            .iter()
            .zip(&times[b])
            .map(|(later, earlier)| millis(later) - millis(earlier))
            .collect();
        median(&differences)
    };
    let summary = |path: usize| Summary::of(&times[path]).context("no jobs measured");

    // The image the gateway stores, as it stored it (with its text chunks), transcoded here.
    let png = client
        .get_bytes(&run_and_image(client, next_seed()).await?)
        .await?;
    let decoded = image::load_from_memory(&png)?;
    let rounds = jobs.max(5);
    let (transcode_jpeg, jpeg_bytes) = transcode(&png, OutputFormat::Jpeg, rounds)?;
    let (transcode_webp, webp_bytes) = transcode(&png, OutputFormat::Webp, rounds)?;
    Ok(OpenAiReport {
        jobs_per_path: jobs,
        width: decoded.width(),
        height: decoded.height(),
        api: summary(0)?,
        v1_png: summary(1)?,
        v1_jpeg: summary(2)?,
        v1_webp: summary(3)?,
        v1_added_median_ms: paired(1, 0),
        jpeg_added_median_ms: paired(2, 1),
        webp_added_median_ms: paired(3, 1),
        transcode_jpeg,
        transcode_webp,
        png_bytes: png.len(),
        jpeg_bytes,
        webp_bytes,
    })
}

/// Runs one job through `/api/jobs` and gives its image's path.
async fn run_and_image(client: &GatewayClient, seed: u64) -> anyhow::Result<String> {
    let accepted = client.submit(seed).await?;
    let path = zimage_contract::paths::image(&accepted.id);
    // The image exists once the job is done; the run above waits for that on other jobs, so here
    // poll the image itself, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if client.get_bytes(&path).await.is_ok() {
            return Ok(path);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the job's image never came")
}

/// `rounds` transcodes of `png` to `format` at quality 90: their times and the result's size.
fn transcode(png: &Bytes, format: OutputFormat, rounds: usize) -> anyhow::Result<(Summary, usize)> {
    let encoding = Encoding::new(format, 90);
    let mut times = Vec::with_capacity(rounds);
    let mut size = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        let out = encoding.transcode(png.clone(), "image/png")?;
        times.push(started.elapsed());
        size = out.len();
    }
    Ok((Summary::of(&times).context("no transcodes")?, size))
}
