//! The suite's results: one serialisable record (written as JSON) and the table printed from it, each
//! number beside the baseline it is compared with and the target it has to meet.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::bundle::{BundleSizes, PageLoadReport};
use crate::gallery::GalleryReport;
use crate::load::LoadReport;
use crate::overhead::OverheadReport;
use crate::pictures::TAKING_TARGET_MS;
use crate::relay::RelayReport;
use crate::saving::{IMAGE_SECONDS, SHARE_TARGET_PERCENT, SavingReport};
use crate::startup::StartupReport;
use crate::studio::StudioBench;

/// The targets of the benchmark issue.
/// The gateway's own cost per job with its data on a tmpfs, where a flush costs nothing (issue 20). On a
/// real disk the target is the disk's own durable write, measured in the same run.
pub(crate) const OVERHEAD_MEDIAN_TARGET_MS: f64 = 1.0;
pub(crate) const RELAY_P99_TARGET_MS: f64 = 5.0;
pub(crate) const RELAY_TARGET_WATCHERS: usize = 200;
pub(crate) const FANOUT_WATCHERS: usize = 1000;
pub(crate) const FANOUT_RSS_TARGET_KIB: u64 = 64 * 1024;

/// Where and when the suite ran.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Machine {
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) load_average_before: String,
    pub(crate) load_average_after: String,
    pub(crate) gateway_cpus: Option<String>,
    pub(crate) gateway_threads: Option<u64>,
    pub(crate) git_commit: String,
    pub(crate) finished_at: String,
}

/// Everything one run of the suite measured. A section that could not run says why in `skipped`.
#[derive(Debug, Clone, Serialize, Default)]
pub(crate) struct Results {
    pub(crate) machine: Machine,
    pub(crate) overhead: Option<OverheadReport>,
    pub(crate) relay: Vec<RelayReport>,
    /// The relay measured on `--baseline-zimage`, right after this build's.
    pub(crate) relay_baseline_build: Vec<RelayReport>,
    pub(crate) load: Vec<LoadReport>,
    pub(crate) startup: Option<StartupReport>,
    pub(crate) bundle: Option<BundleSizes>,
    pub(crate) page_load: Option<PageLoadReport>,
    pub(crate) studio_bench: Option<StudioBench>,
    pub(crate) saving: Option<SavingReport>,
    pub(crate) backends: Option<crate::backends::BackendsReport>,
    pub(crate) gallery: Option<GalleryReport>,
    pub(crate) openai: Option<crate::openai::OpenAiReport>,
    pub(crate) pictures: Option<crate::pictures::PicturesReport>,
    pub(crate) budgets: BTreeMap<String, u64>,
    pub(crate) skipped: BTreeMap<String, String>,
}

fn verdict(met: bool) -> &'static str {
    if met { "yes" } else { "NO" }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn bytes(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

/// The results as a Markdown table: measure, result, baseline from the same run, target, met.
pub(crate) fn table(results: &Results) -> String {
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut row = |measure: String, result: String, baseline: String, target: String, met: String| {
        rows.push([measure, result, baseline, target, met]);
    };
    if let Some(overhead) = &results.overhead {
        // On a tmpfs a flush costs nothing, and the target is the gateway's own work; on a disk, the
        // disk's cost of the one durable write the promise needs.
        let disk = overhead.disk.as_ref().filter(|disk| disk.filesystem != "tmpfs");
        let (folder, target, met) = match disk {
            Some(disk) => (
                format!("on the disk ({})", disk.filesystem),
                "no more than the disk's durable write (next row)".to_owned(),
                overhead.added_median_ms <= disk.large.median_ms,
            ),
            None => (
                "on a tmpfs".to_owned(),
                format!("< {OVERHEAD_MEDIAN_TARGET_MS} ms added (median)"),
                overhead.added_median_ms < OVERHEAD_MEDIAN_TARGET_MS,
            ),
        };
        row(
            format!(
                "1. Gateway overhead per job, data folder {folder} ({}x{}, {} jobs per path)",
                overhead.width, overhead.height, overhead.jobs_per_path
            ),
            format!(
                "+{:.2} ms median, +{:.2} ms p99 (through the gateway: {:.2} ms median, {:.2} ms p99)",
                overhead.added_median_ms,
                overhead.added_p99_ms,
                overhead.gateway.total.median_ms,
                overhead.gateway.total.p99_ms
            ),
            format!(
                "direct ComfyUI client: {:.2} ms median, {:.2} ms p99{}",
                overhead.direct.total.median_ms,
                overhead.direct.total.p99_ms,
                match (
                    &overhead.baseline_build,
                    overhead.baseline_build_added_median_ms,
                    overhead.baseline_build_added_p99_ms
                ) {
                    (Some(build), Some(median), Some(p99)) => format!(
                        "; the baseline build: +{median:.2} ms median, +{p99:.2} ms p99 ({:.2} ms median)",
                        build.total.median_ms
                    ),
                    _ => String::new(),
                }
            ),
            target,
            verdict(met).to_owned(),
        );
        if let Some(disk) = &overhead.disk {
            row(
                format!(
                    "1. The data folder's disk ({}): a new file written and flushed (`fsync`), between the jobs",
                    disk.filesystem
                ),
                format!(
                    "{}: {:.2} ms median, {:.2} ms p99",
                    bytes(disk.large_bytes as u64),
                    disk.large.median_ms,
                    disk.large.p99_ms
                ),
                format!(
                    "the jobs' image ({}): {:.2} ms median",
                    bytes(overhead.image_bytes as u64),
                    disk.image_sized.median_ms
                ),
                "-".to_owned(),
                "-".to_owned(),
            );
        }
    }
    let one_watcher = results.relay.iter().find(|report| report.watchers == 1);
    for relay in &results.relay {
        let baseline = match one_watcher {
            Some(one) if relay.watchers != 1 => format!("1 watcher: {:.2} ms p99", one.latency.p99_ms),
            _ => "simulator's write (clock at the proxy)".to_owned(),
        };
        let (target, met) = if relay.watchers == RELAY_TARGET_WATCHERS {
            (
                format!("p99 < {RELAY_P99_TARGET_MS} ms"),
                verdict(relay.latency.p99_ms < RELAY_P99_TARGET_MS).to_owned(),
            )
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        row(
            format!(
                "2. Progress relay latency, {} watcher(s), {} events",
                relay.watchers, relay.latency.count
            ),
            format!(
                "{:.2} ms median, {:.2} ms p99, {:.2} ms max{}",
                relay.latency.median_ms,
                relay.latency.p99_ms,
                relay.latency.max_ms,
                if relay.missing_events > 0 {
                    format!(", {} events missing", relay.missing_events)
                } else {
                    String::new()
                }
            ),
            baseline,
            target,
            met,
        );
    }
    for relay in &results.relay_baseline_build {
        row(
            format!(
                "2. Progress relay latency, {} watcher(s), {} events, the baseline build",
                relay.watchers, relay.latency.count
            ),
            format!(
                "{:.2} ms median, {:.2} ms p99, {:.2} ms max; {} resident (idle {})",
                relay.latency.median_ms,
                relay.latency.p99_ms,
                relay.latency.max_ms,
                mib(relay.rss_watching_kib),
                mib(relay.rss_idle_kib)
            ),
            "this build's row above".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        );
    }
    if let Some(fanout) = results
        .relay
        .iter()
        .find(|report| report.watchers == FANOUT_WATCHERS)
    {
        let cores = results
            .machine
            .gateway_cpus
            .as_deref()
            .map_or("unpinned".to_owned(), |cpus| format!("CPU {cpus}"));
        row(
            format!("3. {FANOUT_WATCHERS} SSE watchers on one core ({cores})"),
            format!(
                "{} resident with {} watchers (peak {}), {:.1} KiB per watcher",
                mib(fanout.rss_watching_kib),
                fanout.watchers,
                mib(fanout.peak_rss_kib),
                fanout.per_watcher_kib
            ),
            format!("idle gateway: {}", mib(fanout.rss_idle_kib)),
            format!("< {}", mib(FANOUT_RSS_TARGET_KIB)),
            verdict(fanout.rss_watching_kib < FANOUT_RSS_TARGET_KIB && fanout.missing_events == 0).to_owned(),
        );
    }
    let static_file = results.load.iter().find(|report| report.name == "static");
    for load in results.load.iter().filter(|report| report.name != "static") {
        row(
            format!("4. Throughput: {} ({} B)", load.name, load.body_bytes),
            format!(
                "{:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                load.requests_per_second, load.latency_p50_ms, load.latency_p99_ms
            ),
            static_file.map_or("-".to_owned(), |baseline| {
                format!(
                    "static file of {} B: {:.0} req/s ({:.2}x)",
                    baseline.body_bytes, baseline.requests_per_second, load.relative_to_static
                )
            }),
            "reported".to_owned(),
            "-".to_owned(),
        );
    }
    if let Some(startup) = &results.startup {
        let simulator = startup.simulator.map_or(String::new(), |simulator| {
            format!("; comfy-sim: {:.1} ms", simulator.median_ms)
        });
        row(
            "5. Cold start, spawn to /healthz 200 (empty data folder)".to_owned(),
            format!(
                "{:.1} ms median, {:.1} ms p90",
                startup.gateway_empty.median_ms, startup.gateway_empty.p90_ms
            ),
            format!(
                "spawning `true`: {:.1} ms{simulator}",
                startup.process_spawn.median_ms
            ),
            "reported".to_owned(),
            "-".to_owned(),
        );
        if let Some(history) = startup.gateway_with_history {
            row(
                format!(
                    "5. Cold start with a history of {} images",
                    startup.history_records
                ),
                format!("{:.1} ms median", history.median_ms),
                format!("empty: {:.1} ms", startup.gateway_empty.median_ms),
                "reported".to_owned(),
                "-".to_owned(),
            );
        }
        let budget = results.budgets.get("BINARY_MAX_BYTES").copied();
        row(
            "5. Release binary size (zimage)".to_owned(),
            bytes(startup.gateway_binary_bytes),
            startup.simulator_binary_bytes.map_or("-".to_owned(), |size| {
                format!("comfy-sim (axum, no UI): {}", bytes(size))
            }),
            budget.map_or("-".to_owned(), |budget| format!("budget {}", bytes(budget))),
            budget.map_or("-".to_owned(), |budget| {
                verdict(startup.gateway_binary_bytes <= budget).to_owned()
            }),
        );
    }
    if let Some(gallery) = &results.gallery {
        row(
            format!(
                "9. Start-up with {} images after a clean stop, spawn to /healthz 200",
                gallery.records
            ),
            format!(
                "{:.1} ms median, {:.1} ms p90",
                gallery.start.median_ms, gallery.start.p90_ms
            ),
            format!(
                "the previous JSON folder's load: {:.0} ms; first start, importing it: {:.0} ms",
                gallery.json_folder_load.median_ms, gallery.first_start_ms
            ),
            "< 300 ms".to_owned(),
            verdict(gallery.start.median_ms < 300.0).to_owned(),
        );
        row(
            format!(
                "9. Start-up with {} images after a kill (the crash recovery checks every image)",
                gallery.records
            ),
            format!(
                "{:.1} ms median, {:.1} ms p90",
                gallery.start_after_crash.median_ms, gallery.start_after_crash.p90_ms
            ),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        );
        for search in &gallery.searches {
            row(
                format!("9. Search, {} (`{}`)", search.kind, search.example),
                format!(
                    "p50 {:.2} ms, p90 {:.2} ms",
                    search.latency.median_ms, search.latency.p90_ms
                ),
                format!("{} on the first page", search.found),
                "p50 < 20 ms".to_owned(),
                verdict(search.latency.median_ms < 20.0).to_owned(),
            );
        }
    }
    if let Some(bundle) = &results.bundle {
        let budget = results.budgets.get("BUNDLE_GZIP_MAX_BYTES").copied();
        row(
            "6. Web bundle, wasm + JS gzipped".to_owned(),
            format!(
                "{} (wasm {} of {} raw, JS {} of {} raw)",
                bytes(bundle.total_gzip_bytes),
                bytes(bundle.wasm_gzip_bytes),
                bytes(bundle.wasm_bytes),
                bytes(bundle.js_gzip_bytes),
                bytes(bundle.js_bytes)
            ),
            bundle
                .css_gzip_bytes
                .map_or("-".to_owned(), |css| format!("stylesheet: {}", bytes(css))),
            budget.map_or("-".to_owned(), |budget| format!("budget {}", bytes(budget))),
            budget.map_or("-".to_owned(), |budget| {
                verdict(bundle.total_gzip_bytes <= budget).to_owned()
            }),
        );
    }
    if let Some(page) = &results.page_load {
        row(
            format!(
                "6. Studio page on a phone ({}, CPU {}x slower, Wi-Fi), {} loads",
                page.device, page.cpu_slowdown, page.runs
            ),
            format!(
                "first render {:.0} ms, hydrated {:.0} ms ({} over the network)",
                page.first_contentful_paint_ms,
                page.hydrated_ms,
                bytes(page.network_bytes as u64)
            ),
            format!(
                "same page without JavaScript: first render {:.0} ms ({})",
                page.without_js_first_contentful_paint_ms,
                bytes(page.without_js_network_bytes as u64)
            ),
            "reported".to_owned(),
            "-".to_owned(),
        );
    }
    if let Some(studio) = &results.studio_bench {
        let stages = |stages: &BTreeMap<String, f64>| {
            stages
                .iter()
                .map(|(stage, ms)| format!("{stage} {ms:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        row(
            "7. `zimage bench` against the simulator (ms)".to_owned(),
            format!("warm median: {}", stages(&studio.warm_median_ms)),
            format!("cold first run: {}", stages(&studio.cold_ms)),
            "runs".to_owned(),
            "-".to_owned(),
        );
    }
    if let Some(openai) = &results.openai {
        row(
            format!(
                "11. `/v1/images/generations` over `/api/jobs` ({}x{}, {} jobs per path)",
                openai.width, openai.height, openai.jobs_per_path
            ),
            format!(
                "PNG as base64: +{:.2} ms median per image ({:.2} ms); JPEG +{:.2} ms, WebP +{:.2} ms over PNG",
                openai.v1_added_median_ms,
                openai.v1_png.median_ms,
                openai.jpeg_added_median_ms,
                openai.webp_added_median_ms
            ),
            format!("`/api/jobs`, events, PNG: {:.2} ms median", openai.api.median_ms),
            "reported".to_owned(),
            "-".to_owned(),
        );
        row(
            format!(
                "11. Transcoding a {}x{} PNG ({}), one thread",
                openai.width,
                openai.height,
                bytes(openai.png_bytes as u64)
            ),
            format!(
                "JPEG (quality 90): {:.2} ms median ({}); WebP (lossless): {:.2} ms median ({})",
                openai.transcode_jpeg.median_ms,
                bytes(openai.jpeg_bytes as u64),
                openai.transcode_webp.median_ms,
                bytes(openai.webp_bytes as u64)
            ),
            "PNG: none (sent as stored)".to_owned(),
            "reported".to_owned(),
            "-".to_owned(),
        );
    }
    if let Some(pictures) = &results.pictures {
        let stages = &pictures.stages;
        row(
            format!(
                "13. Taking a {}x{} phone JPEG ({}) to a {}x{} picture, {} rounds",
                pictures.photo_width,
                pictures.photo_height,
                bytes(pictures.photo_bytes as u64),
                pictures.clean_width,
                pictures.clean_height,
                pictures.rounds
            ),
            format!(
                "{:.1} ms median: upload {:.1} ms median, {:.1} ms p90 (in process: decode {:.1}, scale {:.1}, turn {:.1}, PNG {:.1} ms); hand-over to ComfyUI +{:.1} ms",
                pictures.taking_median_ms,
                pictures.upload.median_ms,
                pictures.upload.p90_ms,
                stages.decode.median_ms,
                stages.scale.median_ms,
                stages.turn.median_ms,
                stages.encode_fast.median_ms,
                pictures.handover_added_median_ms
            ),
            format!(
                "text-only job of that size: {:.1} ms median; from the picture: {:.1} ms",
                pictures.text_job.median_ms, pictures.source_job.median_ms
            ),
            format!("< {TAKING_TARGET_MS} ms (median, one core)"),
            verdict(pictures.taking_median_ms < TAKING_TARGET_MS).to_owned(),
        );
        row(
            format!("13. {} different phone JPEGs at once", pictures.burst.uploads),
            format!(
                "{} peak resident, all kept in {:.0} ms",
                mib(pictures.burst.rss_peak_kib),
                pictures.burst.wall_ms
            ),
            format!(
                "before, after one text job: {}",
                mib(pictures.burst.rss_before_kib)
            ),
            "reported".to_owned(),
            "-".to_owned(),
        );
    }
    if let Some(saving) = &results.saving {
        row(
            format!(
                "8. Saving a finished {}x{} PNG ({}) and its record durably, {} saves ({})",
                saving.width,
                saving.height,
                bytes(saving.png_bytes as u64),
                saving.saves,
                saving.filesystem
            ),
            format!(
                "{:.2} ms median, {:.2} ms p95: +{:.2} ms over the baseline, {:.2} % of a {IMAGE_SECONDS} s image",
                saving.durable.median_ms, saving.durable_p95_ms, saving.added_median_ms, saving.share_percent
            ),
            format!(
                "same bytes without flushes: {:.2} ms median, {:.2} ms p95",
                saving.baseline.median_ms, saving.baseline_p95_ms
            ),
            format!("< {SHARE_TARGET_PERCENT} % of a {IMAGE_SECONDS} s image (median)"),
            verdict(saving.share_percent < SHARE_TARGET_PERCENT).to_owned(),
        );
    }
    if let Some(backends) = &results.backends {
        for run in &backends.runs {
            let target = run.backends > 1;
            row(
                format!(
                    "10. Images per minute with {} backend(s), {} jobs at once, {} ms per step",
                    run.backends, run.jobs, backends.step_ms
                ),
                format!(
                    "{:.1} images/min ({:.0} % of ideal)",
                    run.images_per_minute,
                    100.0 * run.efficiency
                ),
                format!(
                    "{} x the one-backend rate: {:.1} images/min",
                    run.backends, run.ideal_images_per_minute
                ),
                if target {
                    format!(">= {:.0} % of ideal", 100.0 * crate::backends::SCALING_TARGET)
                } else {
                    "-".to_owned()
                },
                if target {
                    verdict(run.efficiency >= crate::backends::SCALING_TARGET).to_owned()
                } else {
                    "-".to_owned()
                },
            );
        }
        let cost = &backends.scheduler;
        row(
            format!(
                "10. Scheduler's own cost per job ({} waiting, {} clients, {} backends)",
                cost.line_length, cost.clients, cost.backends
            ),
            format!(
                "{:.0} ns per job; {:.0} ns when each job needs two LoRAs and each backend lists its own 25",
                cost.fair_ns_per_job, cost.fair_with_loras_ns_per_job
            ),
            format!("plain FIFO queue: {:.0} ns per job", cost.fifo_ns_per_job),
            "-".to_owned(),
            "-".to_owned(),
        );
        if let Some(run) = &backends.lora_run {
            row(
                format!(
                    "10. Images per minute, 4 backends, every job needing a LoRA that 2 of them have, {} jobs at once",
                    run.jobs
                ),
                format!(
                    "{:.1} images/min ({:.0} % of ideal)",
                    run.images_per_minute,
                    100.0 * run.efficiency
                ),
                format!(
                    "2 x the one-backend rate: {:.1} images/min",
                    run.ideal_images_per_minute
                ),
                format!(">= {:.0} % of ideal", 100.0 * crate::backends::SCALING_TARGET),
                verdict(run.efficiency >= crate::backends::SCALING_TARGET).to_owned(),
            );
        }
        let refresh = &backends.lora_refresh;
        row(
            format!(
                "10. Reading the LoRA lists of {} backends at once ({} files each)",
                refresh.backends, refresh.loras_each
            ),
            format!("{:.2} ms median, {:.2} ms p90", refresh.median_ms, refresh.p90_ms),
            "-".to_owned(),
            "reported".to_owned(),
            "-".to_owned(),
        );
    }
    let mut text = String::new();
    let _ = writeln!(text, "| Measure | Result | Baseline (same run) | Target | Met |");
    let _ = writeln!(text, "|---|---|---|---|---|");
    for [measure, result, baseline, target, met] in rows {
        let _ = writeln!(text, "| {measure} | {result} | {baseline} | {target} | {met} |");
    }
    for (section, reason) in &results.skipped {
        let _ = writeln!(text, "\nSkipped {section}: {reason}");
    }
    text
}

/// Reads `KEY=VALUE` lines (comments and blank lines allowed), the format of `bench/budgets.env`
/// that `scripts/check-budgets` sources.
pub(crate) fn parse_budgets(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some((key.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Summary;

    #[test]
    fn budgets_are_read_from_key_value_lines() {
        let budgets = parse_budgets("# sizes\nBINARY_MAX_BYTES=100\n\n BUNDLE_GZIP_MAX_BYTES = 20 \nBAD=x\n");
        assert_eq!(budgets.get("BINARY_MAX_BYTES"), Some(&100));
        assert_eq!(budgets.get("BUNDLE_GZIP_MAX_BYTES"), Some(&20));
        assert_eq!(budgets.len(), 2);
    }

    #[test]
    fn a_missed_target_is_marked_in_the_table() {
        let latency = Summary::of_millis(&[1.0, 9.0]).unwrap();
        let relay = |watchers| RelayReport {
            watchers,
            jobs: 1,
            step_ms: 50,
            latency,
            median_by_step_ms: vec![1.0; 8],
            missing_events: 0,
            rss_idle_kib: 10_000,
            rss_watching_kib: 20_000,
            peak_rss_kib: 21_000,
            per_watcher_kib: 10.0,
        };
        let results = Results {
            relay: vec![relay(1), relay(200)],
            ..Results::default()
        };
        let table = table(&results);
        assert!(
            table.contains("| 2. Progress relay latency, 200 watcher(s), 2 events"),
            "{table}"
        );
        assert!(table.contains("| p99 < 5 ms | NO |"), "{table}");
        assert!(table.contains("1 watcher: 9.00 ms p99"), "{table}");
    }

    #[test]
    fn the_cost_of_saving_is_judged_as_a_share_of_an_image() {
        let saving = |median: f64| SavingReport {
            saves: 2,
            png_bytes: 2 * 1024 * 1024,
            width: 1024,
            height: 1024,
            filesystem: "ext4".to_owned(),
            durable: Summary::of_millis(&[median, median]).unwrap(),
            durable_p95_ms: median,
            baseline: Summary::of_millis(&[1.0, 1.0]).unwrap(),
            baseline_p95_ms: 1.0,
            added_median_ms: median - 1.0,
            share_percent: median / 30.0,
        };
        let quick = table(&Results {
            saving: Some(saving(6.0)),
            ..Results::default()
        });
        assert!(
            quick.contains("6.00 ms median, 6.00 ms p95: +5.00 ms over the baseline, 0.20 % of a 3 s image"),
            "{quick}"
        );
        assert!(
            quick.contains("| < 1 % of a 3 s image (median) | yes |"),
            "{quick}"
        );
        let slow = table(&Results {
            saving: Some(saving(45.0)),
            ..Results::default()
        });
        assert!(slow.contains("| NO |"), "{slow}");
    }
}
