//! `zimage-bench`: the benchmark suite of the gateway and the web UI (`scripts/bench` builds and runs
//! it). Each number is measured against a baseline taken in the same run, as medians over repeats:
//! the gateway's added latency per job (`overhead`), progress relay latency and memory per SSE watcher
//! (`relay`), API throughput under load (`load`), cold start and binary size (`startup`), the web
//! bundle's size and page load on a phone (`bundle`), `zimage bench` against the simulator
//! (`studio`), what saving a finished image durably adds per job (`saving`), and how throughput grows
//! with several ComfyUI backends, with the scheduler's own cost per job (`backends`), and what taking a
//! 12-megapixel phone photo to start a job from costs, in time and memory (`pictures`). Prints a Markdown
//! table and writes every number as JSON, the table beside it.
//!
//! The simulator runs in this process on a runtime of its own; the gateway under test is the release
//! `zimage` binary in its own process, optionally pinned to chosen CPUs.

mod backends;
mod bundle;
mod gallery;
mod gateway;
mod load;
mod openai;
mod overhead;
mod pictures;
mod proxy;
mod relay;
mod report;
mod saving;
mod sse;
mod startup;
mod stats;
mod studio;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use comfy_sim::{SimHandle, SimOptions, Simulator};
use serde_json::Value;

use crate::gateway::{Gateway, GatewaySpec};
use crate::overhead::{DirectClient, GatewayClient};
use crate::report::Results;

/// The benchmark suite of z-image-local. Run from the repository root (`scripts/bench` does).
#[derive(Debug, Parser)]
#[command(name = "zimage-bench")]
struct Args {
    /// Where the numbers go (JSON); the table is written beside it as `.md`.
    #[arg(long, default_value = "target/bench/results.json")]
    out: PathBuf,
    /// The release gateway binary under test.
    #[arg(long, default_value = "target/release/zimage")]
    zimage: PathBuf,
    /// A second gateway binary (another commit's release build) measured in the same run: its jobs
    /// join the overhead's rotation, and the relay is measured on it too, right after.
    #[arg(long)]
    baseline_zimage: Option<PathBuf>,
    /// The simulator binary, the baseline of the start-up measurement.
    #[arg(long, default_value = "target/release/comfy-sim")]
    comfy_sim: PathBuf,
    /// The workflow template the gateway fills.
    #[arg(long, default_value = "backend/workflows/z_image_turbo.json")]
    workflow: PathBuf,
    /// The built web UI (Trunk's output), for the bundle and page-load measurements.
    #[arg(long, default_value = "target/site")]
    site_root: PathBuf,
    /// The size budgets that `scripts/check-budgets` enforces, shown beside the sizes.
    #[arg(long, default_value = "bench/budgets.env")]
    budgets: PathBuf,
    /// The page-load script (Node, Playwright from end2end/).
    #[arg(long, default_value = "bench/web/page-load.mjs")]
    page_script: PathBuf,
    /// CPUs the gateway under load runs on (`taskset -c` list); unpinned when absent.
    #[arg(long)]
    gateway_cpus: Option<String>,
    /// Folder in which the gateways' data folders are made (default: the system's temporary folder).
    /// A tmpfs here (`/dev/shm`) takes the disk's flush latency out of the numbers, for profiling.
    #[arg(long)]
    data_parent: Option<PathBuf>,
    /// Recorded jobs per path in the overhead measurement.
    #[arg(long, default_value_t = 200)]
    jobs: usize,
    /// Rounds of the OpenAI-compatible measurement (each one job on each of its four paths).
    #[arg(long, default_value_t = 50)]
    openai_jobs: usize,
    /// Watcher counts of the relay measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 200, 1000])]
    watchers: Vec<usize>,
    /// Jobs per watcher count in the relay measurement (default: enough for a few hundred samples, at
    /// least three).
    #[arg(long)]
    relay_jobs: Option<usize>,
    /// Milliseconds between sampling steps while the relay is measured.
    #[arg(long, default_value_t = 50)]
    step_ms: u64,
    /// Seconds of each load-generator run.
    #[arg(long, default_value_t = 5)]
    load_seconds: u64,
    /// Load-generator rounds per endpoint (the median is reported).
    #[arg(long, default_value_t = 3)]
    load_rounds: usize,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    load_connections: usize,
    /// Start-ups measured.
    #[arg(long, default_value_t = 10)]
    startup_runs: usize,
    /// Page loads measured (with and without JavaScript each).
    #[arg(long, default_value_t = 5)]
    page_runs: usize,
    /// CPU slowdown of the phone profile (Chrome DevTools' throttling rate).
    #[arg(long, default_value_t = 4)]
    cpu_slowdown: u32,
    /// Runs of `zimage bench` against the simulator.
    #[arg(long, default_value_t = 4)]
    studio_runs: usize,
    /// Images in the large-gallery measurement.
    #[arg(long, default_value_t = 100_000)]
    gallery_records: usize,
    /// Start-ups measured on the large gallery.
    #[arg(long, default_value_t = 5)]
    gallery_starts: usize,
    /// Requests per kind of search on the large gallery.
    #[arg(long, default_value_t = 60)]
    gallery_searches: usize,
    /// Images saved (and as many baseline writes) in the saving measurement.
    #[arg(long, default_value_t = 200)]
    saves: usize,
    /// Backend counts of the scaling measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    backend_counts: Vec<usize>,
    /// Jobs per backend in each scaling run.
    #[arg(long, default_value_t = 6)]
    backend_jobs: usize,
    /// Milliseconds per sampling step of the simulated backends in the scaling measurement (eight steps
    /// make an image).
    #[arg(long, default_value_t = 100)]
    backend_step_ms: u64,
    /// Recorded rounds of the phone-photo measurement (each one upload, one job from it, one text job).
    #[arg(long, default_value_t = 30)]
    picture_rounds: usize,
    /// Different phone photos sent at once in the memory measurement.
    #[arg(long, default_value_t = 10)]
    picture_burst: usize,
    /// Only these sections (all when absent).
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// Few repeats of everything: checks that the suite works, numbers are rough.
    #[arg(long)]
    quick: bool,
}

/// A part of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Overhead,
    Load,
    Startup,
    Relay,
    Bundle,
    Studio,
    Saving,
    Backends,
    Gallery,
    Openai,
    Pictures,
}

impl Args {
    fn wants(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    /// Shrinks every repeat count for `--quick`.
    fn apply_quick(&mut self) {
        if self.quick {
            self.jobs = self.jobs.min(20);
            self.openai_jobs = self.openai_jobs.min(10);
            self.load_seconds = 1;
            self.load_rounds = 1;
            self.startup_runs = self.startup_runs.min(3);
            self.page_runs = self.page_runs.min(1);
            self.studio_runs = self.studio_runs.min(2);
            self.saves = self.saves.min(20);
            self.backend_jobs = self.backend_jobs.min(2);
            self.gallery_records = self.gallery_records.min(5_000);
            self.gallery_starts = self.gallery_starts.min(2);
            self.gallery_searches = self.gallery_searches.min(10);
            self.picture_rounds = self.picture_rounds.min(5);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.apply_quick();
    // Only the saving measurement runs without the release gateway.
    let needs_gateway = [
        Section::Overhead,
        Section::Load,
        Section::Startup,
        Section::Relay,
        Section::Bundle,
        Section::Studio,
        Section::Backends,
        Section::Gallery,
        Section::Openai,
        Section::Pictures,
    ]
    .into_iter()
    .any(|section| args.wants(section));
    anyhow::ensure!(
        !needs_gateway || args.zimage.is_file(),
        "{} is missing: build it with `cargo build --release -p server` (scripts/bench does)",
        args.zimage.display()
    );
    // Three runtimes on threads of their own: the simulator's (at a lower priority: it stands for
    // ComfyUI on its GPU, and on a shared core its work must not delay the measuring clients' reads),
    // the proxy's that clocks its messages, and the clients'.
    let simulator_runtime = std::thread::spawn(|| {
        lower_this_threads_priority();
        // Its threads are made now, from this thread, and inherit its priority.
        single_thread_runtime("simulator")
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the simulator's runtime could not be built"))??;
    let sim = simulator_runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        Simulator::spawn(
            listener,
            SimOptions {
                step_ms: 0,
                ..SimOptions::default()
            },
        )
        .await
    })?;
    let proxy_runtime = single_thread_runtime("proxy")?;
    let (proxy_addr, clock) = proxy_runtime.block_on(proxy::spawn(sim.addr()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let results = runtime.block_on(run(&args, &sim, (proxy_addr, clock)))?;
    drop(runtime);
    sim.shutdown();
    drop(proxy_runtime);
    drop(simulator_runtime);

    let table = report::table(&results);
    println!("\n{table}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&results)?)?;
    std::fs::write(args.out.with_extension("md"), &table)?;
    println!(
        "Numbers written to {} (table: {}).",
        args.out.display(),
        args.out.with_extension("md").display()
    );
    Ok(())
}

/// A runtime with one worker thread named `name`.
fn single_thread_runtime(name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
}

/// Lowers the calling thread's scheduling priority (`renice` of its thread id), so that on a shared
/// core the threads it creates yield to the measuring ones. Best effort: the numbers stay valid
/// without it, only noisier.
fn lower_this_threads_priority() {
    let thread_id = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|link| link.file_name().map(|name| name.to_string_lossy().into_owned()));
    if let Some(thread_id) = thread_id {
        let _ = std::process::Command::new("renice")
            .args(["-n", "10", "-p", &thread_id])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// Seeds for the jobs: each job gets one no other job had, so no result is served from a cache.
struct Seeds(u64);

impl Seeds {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
}

async fn run(
    args: &Args,
    sim: &SimHandle,
    (proxy_addr, clock): (std::net::SocketAddr, proxy::ProgressClock),
) -> anyhow::Result<Results> {
    let mut results = Results {
        machine: machine_before(args),
        ..Results::default()
    };
    results.budgets = std::fs::read_to_string(&args.budgets)
        .map(|text| report::parse_budgets(&text))
        .unwrap_or_default();
    let mut seeds = Seeds(1_000);
    // The API measurements use a site root of their own, holding the static baseline file.
    let api_site = tempfile::Builder::new().prefix("zimage-bench-site").tempdir()?;
    let spec = GatewaySpec {
        binary: args.zimage.clone(),
        comfyui: sim.url(),
        workflow: args.workflow.clone(),
        site_root: api_site.path().to_owned(),
        cpus: args.gateway_cpus.clone(),
        data_parent: args.data_parent.clone(),
    };

    let mut history_data = None;
    if args.wants(Section::Overhead)
        || args.wants(Section::Load)
        || args.wants(Section::Startup)
        || args.wants(Section::Openai)
    {
        let gateway = Gateway::start(&spec).await?;
        gateway.wait_ready().await?;
        let client = GatewayClient::new(gateway.addr);
        if args.wants(Section::Overhead) {
            section("1. gateway overhead per job");
            let baseline = match &args.baseline_zimage {
                Some(binary) => {
                    let baseline = Gateway::start(&GatewaySpec {
                        binary: binary.clone(),
                        ..spec.clone()
                    })
                    .await?;
                    baseline.wait_ready().await?;
                    Some(baseline)
                }
                None => None,
            };
            match measure_overhead(args, sim, (&client, baseline.as_ref()), &mut seeds).await {
                Ok(overhead) => results.overhead = Some(overhead),
                Err(error) => skip(&mut results, "overhead", &error),
            }
            if let Some(baseline) = baseline {
                drop(baseline.stop().await);
            }
        } else {
            // The other sections want a history to read and to load.
            for _ in 0..24 {
                client.run(seeds.next()).await?;
            }
        }
        if args.wants(Section::Openai) {
            section("11. the OpenAI-compatible path and transcoding");
            let warmup = if args.quick { 1 } else { 5 };
            match openai::measure(&client, warmup, args.openai_jobs, || seeds.next()).await {
                Ok(report) => {
                    println!(
                        "   /api/jobs {:.2} ms, /v1 png {:.2} ms median: +{:.2} ms; jpeg +{:.2} ms, webp +{:.2} ms",
                        report.api.median_ms,
                        report.v1_png.median_ms,
                        report.v1_added_median_ms,
                        report.jpeg_added_median_ms,
                        report.webp_added_median_ms
                    );
                    results.openai = Some(report);
                }
                Err(error) => skip(&mut results, "openai", &error),
            }
        }
        if args.wants(Section::Load) {
            section("4. API throughput under load");
            match measure_load(args, &gateway, &client, api_site.path()).await {
                Ok(load) => results.load = load,
                Err(error) => skip(&mut results, "load", &error),
            }
        }
        history_data = Some(gateway.stop().await);
    }

    if args.wants(Section::Startup) {
        section("5. cold start and binary size");
        let history = history_data.as_ref().map(|data| {
            let records =
                zimage::history::History::open_blocking(data.path()).map_or(0, |history| history.len());
            (data.path().to_owned(), records)
        });
        let comfy_sim = args.comfy_sim.is_file().then_some(args.comfy_sim.as_path());
        let comfyui = sim.url();
        let measured = tokio::task::block_in_place(|| {
            startup::measure(&startup::StartupSpec {
                zimage: &args.zimage,
                comfy_sim,
                comfyui: &comfyui,
                workflow: &args.workflow,
                site_root: api_site.path(),
                history_dir: history.as_ref().map(|(path, records)| (path.as_path(), *records)),
                runs: args.startup_runs,
            })
        });
        match measured {
            Ok(startup) => results.startup = Some(startup),
            Err(error) => skip(&mut results, "startup", &error),
        }
    }
    drop(history_data);

    if args.wants(Section::Gallery) {
        section("9. a large gallery: start-up and search");
        let measured = tokio::task::block_in_place(|| {
            gallery::measure(&gallery::GallerySpec {
                zimage: &args.zimage,
                comfyui: &sim.url(),
                workflow: &args.workflow,
                site_root: api_site.path(),
                cpus: args.gateway_cpus.as_deref(),
                data_parent: args.data_parent.as_deref(),
                records: args.gallery_records,
                starts: args.gallery_starts,
                searches: args.gallery_searches,
            })
        });
        match measured {
            Ok(gallery) => results.gallery = Some(gallery),
            Err(error) => skip(&mut results, "gallery", &error),
        }
    }

    if args.wants(Section::Relay) {
        section("2-3. progress relay latency and memory per watcher");
        let relay_spec = GatewaySpec {
            comfyui: format!("http://{proxy_addr}"),
            ..spec.clone()
        };
        match measure_relay(args, sim, &relay_spec, &clock, &mut seeds, &mut results).await {
            Ok(reports) => results.relay = reports,
            Err(error) => skip(&mut results, "relay", &error),
        }
        if let Some(binary) = &args.baseline_zimage {
            println!("   the baseline build ({}):", binary.display());
            let baseline_spec = GatewaySpec {
                binary: binary.clone(),
                ..relay_spec.clone()
            };
            sim.faults().release();
            // Its threads and CPUs are the same as this build's; only its reports are kept.
            let mut scratch = Results::default();
            match measure_relay(args, sim, &baseline_spec, &clock, &mut seeds, &mut scratch).await {
                Ok(reports) => results.relay_baseline_build = reports,
                Err(error) => skip(&mut results, "relay (baseline build)", &error),
            }
        }
        sim.faults().release();
        sim.faults().set_step_ms(0);
    }

    if args.wants(Section::Bundle) {
        section("6. web bundle and page load");
        if let Err(error) = measure_bundle(args, sim, &mut results).await {
            skip(&mut results, "bundle", &error);
        }
    }

    if args.wants(Section::Studio) {
        section("7. zimage bench against the simulator");
        // A pace like a fast GPU's, so the stages have something to show.
        sim.faults().set_step_ms(40);
        match studio::run(&args.zimage, &sim.url(), &args.workflow, args.studio_runs).await {
            Ok((studio, printed)) => {
                println!("{printed}");
                results.studio_bench = Some(studio);
            }
            Err(error) => skip(&mut results, "studio", &error),
        }
        sim.faults().set_step_ms(0);
    }

    if args.wants(Section::Saving) {
        section("8. cost of saving");
        match saving::measure(args.saves, args.data_parent.as_deref()).await {
            Ok(saving) => {
                println!(
                    "   durable {:.2} ms median, {:.2} ms p95; without flushes {:.2} ms median ({}, {:.2} MiB PNG)",
                    saving.durable.median_ms,
                    saving.durable_p95_ms,
                    saving.baseline.median_ms,
                    saving.filesystem,
                    saving.png_bytes as f64 / (1024.0 * 1024.0)
                );
                results.saving = Some(saving);
            }
            Err(error) => skip(&mut results, "saving", &error),
        }
    }

    if args.wants(Section::Backends) {
        section("10. several backends: images per minute and the scheduler's cost");
        match backends::measure(
            &spec,
            &args.backend_counts,
            args.backend_jobs,
            args.backend_step_ms,
        )
        .await
        {
            Ok(report) => results.backends = Some(report),
            Err(error) => skip(&mut results, "backends", &error),
        }
    }

    if args.wants(Section::Pictures) {
        section("13. taking a 12-megapixel phone photo");
        match pictures::measure(&spec, args.picture_rounds, args.picture_burst, || seeds.next()).await {
            Ok(report) => {
                println!(
                    "   upload {:.1} ms median (stages in process: decode {:.1}, scale {:.1}, turn {:.1}, PNG {:.1} ms); hand-over +{:.1} ms over a text job ({:.1} ms); {} at once: {:.1} MiB peak",
                    report.upload.median_ms,
                    report.stages.decode.median_ms,
                    report.stages.scale.median_ms,
                    report.stages.turn.median_ms,
                    report.stages.encode_fast.median_ms,
                    report.handover_added_median_ms,
                    report.text_job.median_ms,
                    report.burst.uploads,
                    report.burst.rss_peak_kib as f64 / 1024.0
                );
                results.pictures = Some(report);
            }
            Err(error) => skip(&mut results, "pictures", &error),
        }
    }

    results.machine.load_average_after = load_average();
    results.machine.finished_at = command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    Ok(results)
}

fn section(name: &str) {
    println!("== {name}");
}

fn skip(results: &mut Results, section: &str, error: &anyhow::Error) {
    eprintln!("   {section} could not be measured: {error:#}");
    results.skipped.insert(section.to_owned(), format!("{error:#}"));
}

async fn measure_overhead(
    args: &Args,
    sim: &SimHandle,
    (client, baseline): (&GatewayClient, Option<&Gateway>),
    seeds: &mut Seeds,
) -> anyhow::Result<overhead::OverheadReport> {
    // The direct client replays the very graph the gateway submits, with its own seeds.
    client.run(seeds.next()).await?;
    let submitted = sim
        .faults()
        .prompts_received()
        .pop()
        .context("the simulator received no prompt")?;
    let size = image_size(&submitted["prompt"]).context("the workflow has no image size")?;
    let mut direct = DirectClient::connect(&sim.url(), &submitted).await?;
    let warmup = if args.quick { 2 } else { 10 };
    let baseline = baseline.map(|baseline| GatewayClient::new(baseline.addr));
    let large = tokio::task::spawn_blocking(saving::photo_like_png).await??;
    let mut disk = overhead::DiskProbe::new(args.data_parent.as_deref(), large)?;
    let report = overhead::measure(
        &mut direct,
        client,
        baseline.as_ref(),
        Some(&mut disk),
        (warmup, args.jobs),
        size,
        || seeds.next(),
    )
    .await;
    direct.close().await;
    let report = report?;
    println!(
        "   direct {:.2} ms, gateway {:.2} ms median: +{:.2} ms (p99 +{:.2} ms)",
        report.direct.total.median_ms,
        report.gateway.total.median_ms,
        report.added_median_ms,
        report.added_p99_ms
    );
    if let (Some(median), Some(p99)) = (
        report.baseline_build_added_median_ms,
        report.baseline_build_added_p99_ms,
    ) {
        println!("   baseline build: +{median:.2} ms (p99 +{p99:.2} ms)");
    }
    if let Some(disk) = &report.disk {
        println!(
            "   the disk ({}): {:.2} ms median to write and flush {} bytes, {:.2} ms for {} bytes",
            disk.filesystem,
            disk.large.median_ms,
            disk.large_bytes,
            disk.image_sized.median_ms,
            report.image_bytes
        );
    }
    Ok(report)
}

/// The width and height inputs of the graph's latent image node.
fn image_size(graph: &Value) -> Option<(u32, u32)> {
    graph.as_object()?.values().find_map(|node| {
        let inputs = &node["inputs"];
        let width = u32::try_from(inputs["width"].as_u64()?).ok()?;
        let height = u32::try_from(inputs["height"].as_u64()?).ok()?;
        Some((width, height))
    })
}

async fn measure_load(
    args: &Args,
    gateway: &Gateway,
    client: &GatewayClient,
    site_root: &Path,
) -> anyhow::Result<Vec<load::LoadReport>> {
    anyhow::ensure!(
        load::wrk_available(),
        "wrk is not installed (Debian: apt-get install -y wrk)"
    );
    let history_path = format!(
        "{}?limit={}",
        zimage_contract::paths::HISTORY,
        zimage_contract::DEFAULT_HISTORY_LIMIT
    );
    let history = client.get_bytes(&history_path).await?;
    let page: zimage_contract::HistoryPage = serde_json::from_slice(&history)?;
    let newest = page.items.first().context("the history is empty")?;
    let job_path = zimage_contract::paths::job(&newest.id);
    let job = client.get_bytes(&job_path).await?;
    let static_path = load::write_static_copy(site_root, "history-page.json", &history)?;
    let healthz = client.get_bytes(zimage_contract::paths::HEALTHZ).await?;
    let endpoints = [
        ("static", static_path, history.len()),
        (
            "healthz",
            zimage_contract::paths::HEALTHZ.to_owned(),
            healthz.len(),
        ),
        ("job status", job_path, job.len()),
        ("history page", history_path, history.len()),
    ];
    let spec = load::LoadSpec {
        connections: args.load_connections,
        duration: Duration::from_secs(args.load_seconds),
        rounds: args.load_rounds,
    };
    let reports = load::measure(&gateway.url(""), &endpoints, spec).await?;
    for report in &reports {
        println!("   {}: {:.0} req/s", report.name, report.requests_per_second);
    }
    Ok(reports)
}

async fn measure_relay(
    args: &Args,
    sim: &SimHandle,
    spec: &GatewaySpec,
    clock: &proxy::ProgressClock,
    seeds: &mut Seeds,
    results: &mut Results,
) -> anyhow::Result<Vec<relay::RelayReport>> {
    let gateway = Gateway::start(spec).await?;
    gateway.wait_ready().await?;
    let client = GatewayClient::new(gateway.addr);
    for _ in 0..3 {
        client.run(seeds.next()).await?;
    }
    let (threads, cpus) = gateway.threads_and_cpus();
    results.machine.gateway_threads = threads;
    results.machine.gateway_cpus = cpus;
    let mut reports = Vec::new();
    for &watchers in &args.watchers {
        // Enough jobs for a few hundred samples, at least three.
        let jobs = match args.relay_jobs {
            Some(jobs) => jobs.max(1),
            None if args.quick => 1,
            None => 200_usize.div_ceil(watchers.max(1)).clamp(3, 30),
        };
        let report = relay::measure(
            &gateway,
            &client,
            sim.faults(),
            clock,
            (watchers, jobs, args.step_ms),
            || seeds.next(),
        )
        .await?;
        println!(
            "   {watchers} watchers: {:.2} ms median, {:.2} ms p99; {:.1} MiB resident",
            report.latency.median_ms,
            report.latency.p99_ms,
            report.rss_watching_kib as f64 / 1024.0
        );
        reports.push(report);
    }
    gateway.stop().await;
    Ok(reports)
}

async fn measure_bundle(args: &Args, sim: &SimHandle, results: &mut Results) -> anyhow::Result<()> {
    let pkg = args.site_root.join("pkg");
    let sizes = bundle::sizes(&pkg)?.with_context(|| {
        format!(
            "no bundle in {}: build it with `trunk build --release` (scripts/e2e does)",
            pkg.display()
        )
    })?;
    println!("   wasm + JS: {} bytes gzipped", sizes.total_gzip_bytes);
    results.bundle = Some(sizes);
    anyhow::ensure!(
        Path::new("end2end/node_modules/playwright-core").is_dir(),
        "Playwright is not installed: `npm ci --prefix end2end`"
    );
    let spec = GatewaySpec {
        binary: args.zimage.clone(),
        comfyui: sim.url(),
        workflow: args.workflow.clone(),
        site_root: args.site_root.clone(),
        cpus: None,
        data_parent: args.data_parent.clone(),
    };
    let gateway = Gateway::start(&spec).await?;
    gateway.wait_ready().await?;
    let page = bundle::page_load(
        &args.page_script,
        &gateway.url("/"),
        args.page_runs,
        args.cpu_slowdown,
    )
    .await;
    gateway.stop().await;
    let page = page?;
    println!(
        "   first render {:.0} ms, hydrated {:.0} ms",
        page.first_contentful_paint_ms, page.hydrated_ms
    );
    results.page_load = Some(page);
    Ok(())
}

fn machine_before(args: &Args) -> report::Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    report::Machine {
        cpus: cpuinfo
            .lines()
            .filter(|line| line.starts_with("processor"))
            .count(),
        cpu_model: cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_default(),
        load_average_before: load_average(),
        gateway_cpus: args.gateway_cpus.clone(),
        git_commit: command_output("git", &["describe", "--always", "--dirty"]),
        ..report::Machine::default()
    }
}

/// Runs a program to its end without holding up the runtime; its output.
pub(crate) async fn run_program(mut command: std::process::Command) -> std::io::Result<std::process::Output> {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(std::io::Error::other)?
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn command_output(program: &str, arguments: &[&str]) -> String {
    std::process::Command::new(program)
        .args(arguments)
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_size_is_read_from_the_latent_node() {
        let graph = serde_json::json!({
            "3": {"class_type": "KSampler", "inputs": {"seed": 1}},
            "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 1024, "height": 576, "batch_size": 1}},
        });
        assert_eq!(image_size(&graph), Some((1024, 576)));
        assert_eq!(image_size(&serde_json::json!({})), None);
    }

    #[test]
    fn quick_runs_shrink_every_repeat() {
        let mut args = Args::parse_from(["zimage-bench", "--quick"]);
        args.apply_quick();
        assert_eq!((args.jobs, args.load_rounds, args.page_runs), (20, 1, 1));
        assert_eq!(args.saves, 20);
        assert!(args.wants(Section::Relay));
        let only = Args::parse_from(["zimage-bench", "--only", "relay,load"]);
        assert!(only.wants(Section::Load) && !only.wants(Section::Bundle));
    }
}
