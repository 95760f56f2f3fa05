//! `zimage bench` against the ComfyUI simulator: it runs its jobs, times every stage from the
//! WebSocket timeline, tells the cold run from the warm ones and writes its numbers as JSON. The
//! numbers are the simulator's; only their presence and shape are checked, never their values.

use std::path::PathBuf;

use clap::Parser as _;
use comfy_sim::{SimOptions, Simulator};
use serde_json::Value;
use zimage::config::{Cli, Command};

fn workspace_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

#[tokio::test]
async fn the_bench_times_each_stage_of_a_cold_and_a_warm_run_and_writes_them_as_json() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = SimOptions {
        step_ms: 2,
        ..SimOptions::default()
    };
    let sim = Simulator::spawn(listener, options).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("bench.json");
    let template = workspace_file("backend/workflows/z_image_turbo.json");
    let cli = Cli::try_parse_from([
        "zimage",
        "bench",
        "--comfyui",
        &sim.url(),
        "--runs",
        "2",
        "--width",
        "256",
        "--height",
        "256",
        "--workflow",
        template.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ])
    .unwrap();
    let Command::Bench(config) = cli.command else {
        panic!("not the bench command")
    };
    zimage::bench::run(config).await.unwrap();

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 2);
    assert_eq!(report["runs"][0]["cold"], true);
    assert_eq!(report["runs"][1]["cold"], false);
    assert_eq!(report["unloaded_first"], true);
    for stage in [
        "queue_wait",
        "text_encoding",
        "sampling",
        "per_step",
        "decoding",
        "saving",
        "image_transfer",
        "end_to_end",
    ] {
        assert!(
            report["cold_ms"][stage].is_number(),
            "cold run has no {stage}: {report}"
        );
        assert!(
            report["warm_median_ms"][stage].is_number(),
            "warm runs have no {stage}: {report}"
        );
    }
    // The simulator reports a device, as ComfyUI's /system_stats does.
    assert!(report["device"]["name"].is_string(), "{report}");
    sim.shutdown();
}
