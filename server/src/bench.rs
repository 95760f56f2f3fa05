//! `zimage bench`: runs real jobs against a live ComfyUI and shows where the seconds go, stage by stage
//! (queue wait, model loading, text encoding, sampling and seconds per step, decoding, saving, image
//! transfer, end to end), for the cold first run and the warm runs apart, with the device and its VRAM.
//!
//! It speaks to ComfyUI directly through the gateway's own adapter (the HTTP client and the socket), so
//! it times ComfyUI's work and the image transfer, not the gateway. The stages come from the WebSocket
//! timeline: each `executing` message starts a node, which runs until the next one starts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::comfy::client::ComfyClient;
use crate::comfy::{ComfyEvent, OutputImage, socket};
use crate::config::BenchConfig;
use crate::i18n::Report;

/// The largest image accepted from `/view`.
const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long the WebSocket may take to connect.
const CONNECT_PATIENCE: Duration = Duration::from_secs(15);

/// A stage of a job, in the order a job goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Accepted by ComfyUI until it started executing the prompt.
    QueueWait,
    /// Loader nodes (diffusion model, text encoder, VAE): reading the files. Cached after the first run.
    ModelLoading,
    /// The text encoder turning the prompt into conditioning (includes moving it to the GPU when cold).
    TextEncoding,
    /// The sampler node, all steps.
    Sampling,
    /// From the sampler starting to its first step (loading the diffusion model onto the GPU when cold).
    FirstStep,
    /// Seconds per sampling step in steady state: the mean gap between progress messages after the first.
    PerStep,
    /// The VAE turning latents into pixels.
    Decoding,
    /// SaveImage: PNG encoding and writing the file.
    Saving,
    /// Every other node (model patches, empty latent, conditioning tweaks).
    OtherNodes,
    /// Downloading the finished image from `/view`.
    ImageTransfer,
    /// From submitting the prompt to holding the image.
    EndToEnd,
}

impl Stage {
    /// Every stage, in table order.
    pub const ALL: [Stage; 11] = [
        Stage::QueueWait,
        Stage::ModelLoading,
        Stage::TextEncoding,
        Stage::Sampling,
        Stage::FirstStep,
        Stage::PerStep,
        Stage::Decoding,
        Stage::Saving,
        Stage::OtherNodes,
        Stage::ImageTransfer,
        Stage::EndToEnd,
    ];

    /// The stage's key in the JSON report.
    pub fn key(self) -> &'static str {
        match self {
            Stage::QueueWait => "queue_wait",
            Stage::ModelLoading => "model_loading",
            Stage::TextEncoding => "text_encoding",
            Stage::Sampling => "sampling",
            Stage::FirstStep => "first_step",
            Stage::PerStep => "per_step",
            Stage::Decoding => "decoding",
            Stage::Saving => "saving",
            Stage::OtherNodes => "other_nodes",
            Stage::ImageTransfer => "image_transfer",
            Stage::EndToEnd => "end_to_end",
        }
    }

    /// The stage's name in the printed table.
    pub fn label(self, say: &Report) -> &'static str {
        let index = Stage::ALL.iter().position(|stage| *stage == self).unwrap_or(0);
        say.stages[index]
    }

    /// The stage a node of this class belongs to.
    fn of_node(class_type: &str) -> Stage {
        if class_type.contains("Loader") {
            Stage::ModelLoading
        } else if class_type.contains("TextEncode") {
            Stage::TextEncoding
        } else if class_type.contains("Sampler") {
            Stage::Sampling
        } else if class_type.starts_with("VAEDecode") {
            Stage::Decoding
        } else if class_type.starts_with("SaveImage") {
            Stage::Saving
        } else {
            Stage::OtherNodes
        }
    }
}

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("ComfyUI failed the job: {0}")]
    JobFailed(String),
    #[error("ComfyUI interrupted the job")]
    Interrupted,
    #[error("the WebSocket to ComfyUI dropped during the run, so its timeline is incomplete; run again")]
    SocketLost,
    #[error("the job did not finish within {0:?}")]
    TimedOut(Duration),
    #[error("the job finished without an image")]
    NoImage,
}

/// What the WebSocket told of one job, with the instants the messages arrived.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub submitted: Instant,
    pub accepted: Instant,
    pub started: Option<Instant>,
    /// Nodes in the order they began executing, with their class.
    pub nodes: Vec<(String, Instant)>,
    /// Arrival of each progress message of the sampler.
    pub steps: Vec<Instant>,
    /// The prompt was done (`executing` with no node).
    pub finished: Instant,
    /// The image was downloaded.
    pub fetched: Instant,
}

impl Timeline {
    /// Durations of every stage the timeline shows. `classes` maps node ids to class types.
    pub fn stages(&self, classes: &BTreeMap<String, String>) -> BTreeMap<Stage, Duration> {
        let mut stages = BTreeMap::new();
        let started = self
            .started
            .or_else(|| self.nodes.first().map(|(_, at)| *at))
            .unwrap_or(self.finished);
        stages.insert(Stage::QueueWait, started.saturating_duration_since(self.accepted));
        let mut sampler_started = None;
        for (index, (node, at)) in self.nodes.iter().enumerate() {
            let until = self.nodes.get(index + 1).map_or(self.finished, |(_, next)| *next);
            let class_type = classes.get(node).map_or("", String::as_str);
            let stage = Stage::of_node(class_type);
            if stage == Stage::Sampling && sampler_started.is_none() {
                sampler_started = Some(*at);
            }
            *stages.entry(stage).or_insert(Duration::ZERO) += until.saturating_duration_since(*at);
        }
        if let (Some(sampler_started), Some(first)) = (sampler_started, self.steps.first()) {
            stages.insert(Stage::FirstStep, first.saturating_duration_since(sampler_started));
        }
        if let (Some(first), Some(last)) = (self.steps.first(), self.steps.last())
            && self.steps.len() > 1
        {
            let gaps = u32::try_from(self.steps.len() - 1).unwrap_or(u32::MAX);
            stages.insert(Stage::PerStep, last.saturating_duration_since(*first) / gaps);
        }
        stages.insert(
            Stage::ImageTransfer,
            self.fetched.saturating_duration_since(self.finished),
        );
        stages.insert(
            Stage::EndToEnd,
            self.fetched.saturating_duration_since(self.submitted),
        );
        stages
    }
}

/// One run's stages in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub cold: bool,
    pub stages_ms: BTreeMap<&'static str, f64>,
}

/// Everything `zimage bench` found; written with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub comfyui: String,
    pub comfyui_version: Option<String>,
    pub device: Option<zimage_contract::DeviceInfo>,
    pub vram_free_after_bytes: Option<u64>,
    pub models: BTreeMap<&'static str, String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    /// Whether the models were unloaded before the first run.
    pub unloaded_first: bool,
    pub runs: Vec<RunReport>,
    /// The first run's stages.
    pub cold_ms: BTreeMap<&'static str, f64>,
    /// The median of each stage over the later runs.
    pub warm_median_ms: BTreeMap<&'static str, f64>,
}

/// Runs `zimage bench`.
pub async fn run(config: BenchConfig) -> anyhow::Result<()> {
    let workflow = config.workflow.load()?;
    let client = ComfyClient::new(config.comfyui.clone());
    let probe = client
        .probe(&workflow)
        .await
        .with_context(|| format!("cannot reach ComfyUI at {}", config.comfyui))?;
    anyhow::ensure!(
        probe.is_ready(),
        "ComfyUI at {} cannot run the workflow: missing nodes {:?}, missing models {:?}, other problems {:?}",
        config.comfyui,
        probe.missing_nodes,
        probe.missing_models,
        probe.other_problems
    );
    let say = Report::of(crate::config::terminal_language());
    println!(
        "{}",
        describe_backend(&config, &probe.comfyui_version, probe.device.as_ref(), say)
    );

    let (events_sender, mut events) = mpsc::channel(1024);
    let (stop, stopped) = oneshot::channel::<()>();
    let socket = socket::spawn(config.comfyui.clone(), events_sender, stopped);
    // A lost connection fails the run, so this id stays the live one throughout.
    let client_id = wait_connected(&mut events).await?;

    let unloaded_first = !config.keep_models;
    if unloaded_first {
        client
            .free_models()
            .await
            .context("cannot ask ComfyUI to unload its models")?;
    }
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let runs_wanted = usize::try_from(config.runs).unwrap_or(usize::MAX);
    let mut runs = Vec::with_capacity(runs_wanted);
    for index in 0..runs_wanted {
        // A prompt of its own for every run, so ComfyUI's cache never skips the text encoder.
        let prompt = format!("{} (benchmark {nonce} run {})", config.prompt, index + 1);
        let graph = workflow.fill(
            &prompt,
            rand::random::<u64>() % zimage_contract::MAX_SEED,
            config.width,
            config.height,
        );
        let classes = class_types(&graph);
        let timeline = run_once(
            &client,
            &client_id,
            &mut events,
            graph,
            workflow.sampler_node(),
            config.timeout(),
        )
        .await?;
        let stages = timeline.stages(&classes);
        let report = RunReport {
            cold: index == 0,
            stages_ms: stages
                .iter()
                .map(|(stage, duration)| (stage.key(), millis(*duration)))
                .collect(),
        };
        println!(
            "{}",
            (say.run)(
                index + 1,
                config.runs,
                index == 0,
                millis(stages.get(&Stage::EndToEnd).copied().unwrap_or_default()) / 1e3
            )
        );
        runs.push(report);
    }
    let _ = stop.send(());
    socket.stopped().await;

    let after = client.probe(&workflow).await.ok().and_then(|probe| probe.device);
    let report = BenchReport {
        comfyui: config.comfyui.to_string(),
        comfyui_version: probe.comfyui_version.clone(),
        device: probe.device.clone(),
        vram_free_after_bytes: after.map(|device| device.vram_free_bytes),
        models: BTreeMap::from([
            ("unet", config.workflow.unet.clone()),
            ("text_encoder", config.workflow.text_encoder.clone()),
            ("vae", config.workflow.vae.clone()),
        ]),
        width: config.width,
        height: config.height,
        steps: zimage_contract::STEPS,
        unloaded_first,
        cold_ms: runs.first().map(|run| run.stages_ms.clone()).unwrap_or_default(),
        warm_median_ms: warm_medians(&runs),
        runs,
    };
    println!("\n{}", render(&report, say));
    if let Some(path) = &config.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", (say.written)(&path.display().to_string()));
    }
    Ok(())
}

/// Waits for the socket's first connection; its client id.
async fn wait_connected(events: &mut mpsc::Receiver<ComfyEvent>) -> anyhow::Result<String> {
    let connected = async {
        while let Some(event) = events.recv().await {
            if let ComfyEvent::Connected { client_id } = event {
                return Some(client_id);
            }
        }
        None
    };
    match tokio::time::timeout(CONNECT_PATIENCE, connected).await {
        Ok(Some(client_id)) => Ok(client_id),
        _ => anyhow::bail!("cannot open ComfyUI's WebSocket within {CONNECT_PATIENCE:?}"),
    }
}

/// Submits one prompt and follows it to its image.
async fn run_once(
    client: &ComfyClient,
    client_id: &str,
    events: &mut mpsc::Receiver<ComfyEvent>,
    graph: Value,
    sampler: &str,
    patience: Duration,
) -> anyhow::Result<Timeline> {
    let prompt_id = uuid::Uuid::new_v4().to_string();
    let submitted = Instant::now();
    // Previews as the studio asks for them: they cost the GPU a little on every step.
    client
        .submit(&prompt_id, client_id, graph, true)
        .await
        .context("ComfyUI refused the prompt")?;
    let accepted = Instant::now();
    let mut timeline = Timeline {
        submitted,
        accepted,
        started: None,
        nodes: Vec::new(),
        steps: Vec::new(),
        finished: accepted,
        fetched: accepted,
    };
    let mut image: Option<OutputImage> = None;
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| BenchError::TimedOut(patience))?
            .ok_or(BenchError::SocketLost)?;
        let at = Instant::now();
        match event {
            ComfyEvent::Disconnected => return Err(BenchError::SocketLost.into()),
            ComfyEvent::Started { prompt_id: id } if id == prompt_id => timeline.started = Some(at),
            ComfyEvent::NodeStarted { prompt_id: id, node } if id == prompt_id => {
                timeline.nodes.push((node, at))
            }
            ComfyEvent::Progress {
                prompt_id: id, node, ..
            } if id == prompt_id && node == sampler => {
                timeline.steps.push(at);
            }
            ComfyEvent::Output {
                prompt_id: id,
                images,
                ..
            } if id == prompt_id => {
                image = image.or_else(|| images.into_iter().next());
            }
            ComfyEvent::Failed {
                prompt_id: id,
                failure,
            } if id == prompt_id => {
                return Err(BenchError::JobFailed(failure.human_message()).into());
            }
            ComfyEvent::Interrupted { prompt_id: id } if id == prompt_id => {
                return Err(BenchError::Interrupted.into());
            }
            ComfyEvent::Finished { prompt_id: id } if id == prompt_id => {
                timeline.finished = at;
                break;
            }
            _ => {}
        }
    }
    let image = image.ok_or(BenchError::NoImage)?;
    client
        .fetch_output(&image, MAX_IMAGE_BYTES)
        .await
        .context("cannot download the image")?;
    timeline.fetched = Instant::now();
    Ok(timeline)
}

/// Node id to class type.
fn class_types(graph: &Value) -> BTreeMap<String, String> {
    graph
        .as_object()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|(id, node)| Some((id.clone(), node.get("class_type")?.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The median of each stage over every run but the first.
fn warm_medians(runs: &[RunReport]) -> BTreeMap<&'static str, f64> {
    let warm = runs.get(1..).unwrap_or_default();
    let mut medians = BTreeMap::new();
    for stage in Stage::ALL {
        let mut values: Vec<f64> = warm
            .iter()
            .filter_map(|run| run.stages_ms.get(stage.key()).copied())
            .collect();
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        let median = if values.len().is_multiple_of(2) {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        };
        medians.insert(stage.key(), median);
    }
    medians
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1 << 30))
}

fn describe_backend(
    config: &BenchConfig,
    version: &Option<String>,
    device: Option<&zimage_contract::DeviceInfo>,
    say: &Report,
) -> String {
    let version = version.as_deref().unwrap_or(say.version_unknown);
    // The usual cause of minutes-long images: the container does not see the GPU.
    let on_cpu = device.is_some_and(|device| device.kind == "cpu");
    let warning = if on_cpu { say.on_cpu } else { "" };
    let device = device.map_or(say.unknown_device.to_owned(), |device| {
        (say.device)(
            &device.name,
            &device.kind,
            &gib(device.vram_free_bytes),
            &gib(device.vram_total_bytes),
        )
    });
    let setup = (say.setup)(
        &config.workflow.unet,
        &config.workflow.text_encoder,
        &config.workflow.vae,
        config.width,
        config.height,
        zimage_contract::STEPS,
        config.runs,
    );
    format!(
        "{}{warning}\n{setup}",
        (say.backend)(version, config.comfyui.as_str(), &device)
    )
}

/// The report as a table: one row per stage, the cold run beside the warm median and range.
pub fn render(report: &BenchReport, say: &Report) -> String {
    let warm: Vec<&RunReport> = report.runs.iter().skip(1).collect();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<30} {:>12} {:>12} {:>12} {:>12}",
        say.stage,
        if report.unloaded_first {
            say.cold_run
        } else {
            say.first_run
        },
        say.warm_median,
        say.warm_min,
        say.warm_max
    );
    let show = |value: Option<f64>| value.map_or("-".to_owned(), |ms| format!("{ms:.0} ms"));
    for stage in Stage::ALL {
        let values: Vec<f64> = warm
            .iter()
            .filter_map(|run| run.stages_ms.get(stage.key()).copied())
            .collect();
        let min = values.iter().copied().reduce(f64::min);
        let max = values.iter().copied().reduce(f64::max);
        let _ = writeln!(
            text,
            "{:<30} {:>12} {:>12} {:>12} {:>12}",
            stage.label(say),
            show(report.cold_ms.get(stage.key()).copied()),
            show(report.warm_median_ms.get(stage.key()).copied()),
            show(min),
            show(max)
        );
    }
    if let (Some(device), Some(free_after)) = (&report.device, report.vram_free_after_bytes) {
        let _ = writeln!(
            text,
            "{}",
            (say.vram)(
                &gib(device.vram_free_bytes),
                &gib(free_after),
                &gib(device.vram_total_bytes)
            )
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes() -> BTreeMap<String, String> {
        [
            ("1", "UnetLoaderGGUF"),
            ("2", "CLIPLoaderGGUF"),
            ("4", "ModelSamplingAuraFlow"),
            ("5", "CLIPTextEncode"),
            ("8", "KSampler"),
            ("9", "VAEDecode"),
            ("10", "SaveImage"),
        ]
        .into_iter()
        .map(|(id, class)| (id.to_owned(), class.to_owned()))
        .collect()
    }

    #[test]
    fn the_timeline_splits_into_stages_by_node_class() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let timeline = Timeline {
            submitted: at(0),
            accepted: at(5),
            started: Some(at(15)),
            nodes: vec![
                ("1".to_owned(), at(16)),
                ("2".to_owned(), at(116)),
                ("4".to_owned(), at(216)),
                ("5".to_owned(), at(217)),
                ("8".to_owned(), at(417)),
                ("9".to_owned(), at(3417)),
                ("10".to_owned(), at(3617)),
            ],
            steps: (0..8).map(|step| at(1017 + step * 300)).collect(),
            finished: at(3667),
            fetched: at(3687),
        };
        let stages = timeline.stages(&classes());
        let ms = |stage| stages.get(&stage).map(|duration: &Duration| duration.as_millis());
        assert_eq!(ms(Stage::QueueWait), Some(10));
        assert_eq!(ms(Stage::ModelLoading), Some(200));
        assert_eq!(ms(Stage::OtherNodes), Some(1));
        assert_eq!(ms(Stage::TextEncoding), Some(200));
        assert_eq!(ms(Stage::Sampling), Some(3000));
        assert_eq!(ms(Stage::FirstStep), Some(600));
        assert_eq!(ms(Stage::PerStep), Some(300));
        assert_eq!(ms(Stage::Decoding), Some(200));
        assert_eq!(ms(Stage::Saving), Some(50));
        assert_eq!(ms(Stage::ImageTransfer), Some(20));
        assert_eq!(ms(Stage::EndToEnd), Some(3687));
    }

    #[test]
    fn cached_nodes_that_never_ran_leave_their_stage_out() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let timeline = Timeline {
            submitted: at(0),
            accepted: at(1),
            started: None,
            nodes: vec![("8".to_owned(), at(2)), ("9".to_owned(), at(10))],
            steps: vec![at(5)],
            finished: at(12),
            fetched: at(13),
        };
        let stages = timeline.stages(&classes());
        assert!(!stages.contains_key(&Stage::ModelLoading));
        assert!(
            !stages.contains_key(&Stage::PerStep),
            "one step has no steady pace"
        );
        assert_eq!(stages[&Stage::QueueWait], Duration::from_millis(1));
    }

    #[test]
    fn warm_medians_leave_out_the_cold_run() {
        let run = |cold, end_to_end| RunReport {
            cold,
            stages_ms: BTreeMap::from([("end_to_end", end_to_end)]),
        };
        let runs = [
            run(true, 9000.0),
            run(false, 3000.0),
            run(false, 3400.0),
            run(false, 3100.0),
        ];
        assert_eq!(warm_medians(&runs)["end_to_end"], 3100.0);
        assert!(warm_medians(&runs[..1]).is_empty());
    }

    #[test]
    fn the_table_has_a_row_per_stage_with_the_cold_and_warm_columns() {
        let runs = vec![
            RunReport {
                cold: true,
                stages_ms: BTreeMap::from([("end_to_end", 9000.0)]),
            },
            RunReport {
                cold: false,
                stages_ms: BTreeMap::from([("end_to_end", 3000.0)]),
            },
        ];
        let report = BenchReport {
            comfyui: "http://comfyui:8188/".to_owned(),
            comfyui_version: None,
            device: None,
            vram_free_after_bytes: None,
            models: BTreeMap::new(),
            width: 1024,
            height: 1024,
            steps: 8,
            unloaded_first: true,
            cold_ms: runs[0].stages_ms.clone(),
            warm_median_ms: warm_medians(&runs),
            runs,
        };
        let table = render(&report, &Report::EN);
        assert_eq!(table.lines().count(), 1 + Stage::ALL.len());
        let end_to_end = table.lines().find(|line| line.starts_with("end to end")).unwrap();
        assert!(
            end_to_end.contains("9000 ms") && end_to_end.contains("3000 ms"),
            "{end_to_end}"
        );
    }
}
