//! The gateway's link to ComfyUI, seen from outside: `/readyz` follows a frozen and a resumed
//! ComfyUI within seconds, the first job once it says ready reports its progress, and an idle
//! gateway leaves ComfyUI alone (no probes, few connections).

#![allow(
    clippy::unwrap_used,
    reason = "tests unwrap: a failure there is the test failing"
)]

use std::time::Duration;

use zimage_contract::{BackendState, JobEvent, Readiness};

use crate::support::{PATIENCE, TestApp, completed_image, poll_within, spawn_app};

/// How soon `/readyz` must turn 503 after ComfyUI freezes: a few seconds, against the gateway's
/// 1 s silence limit in these tests (the default is 5 s). Before the fix it took the probe's 10 s
/// request timeout and more.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

async fn readiness(app: &TestApp) -> Readiness {
    let answer = app.get("/readyz").await;
    let readiness: Readiness = serde_json::from_value(answer.body).unwrap();
    assert_eq!(
        answer.status == 200,
        readiness.ready,
        "the status follows the body"
    );
    readiness
}

/// Freezes the simulator and waits for `/readyz` to say so.
async fn freeze(app: &TestApp) -> Readiness {
    app.sim.faults().stall(true);
    poll_within(NOTICED_WITHIN, "/readyz turning 503", || async {
        Some(readiness(app).await).filter(|readiness| !readiness.ready)
    })
    .await
}

#[tokio::test]
async fn a_frozen_comfyui_turns_readyz_503_within_seconds_and_says_why() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let frozen = freeze(&app).await;
    assert_eq!(frozen.state, BackendState::Unreachable);
    assert!(
        frozen.message.contains("WebSocket") && frozen.message.contains("no pong"),
        "{}",
        frozen.message
    );

    app.sim.faults().stall(false);
    let ready = app.wait_ready().await;
    assert_eq!(ready.state, BackendState::Ready);
}

#[tokio::test]
async fn the_first_job_after_a_freeze_reports_progress_once_readyz_says_ready() {
    let app = spawn_app().await;
    app.wait_ready().await;
    freeze(&app).await;
    // Long enough for the reconnect backoff to reach its cap.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.sim.faults().stall(false);
    app.wait_ready().await;

    let (_, events) = app.run_small_job("after the freeze").await;
    completed_image(&events);
    let steps = events
        .iter()
        .filter(|(_, event)| matches!(event, JobEvent::Progress { .. }))
        .count();
    assert!(
        steps > 0,
        "no progress: its events went to a dead socket: {events:?}"
    );
}

#[tokio::test]
async fn an_idle_ready_gateway_sends_comfyui_nothing_and_holds_few_connections() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let faults = app.sim.faults();
    assert!(faults.requests_to("GET /object_info/") > 0, "probed once");
    const LORA_LIST: &str = "GET /object_info/LoraLoaderModelOnly";
    // Every request but the LoRA list's, and how many of those.
    let counts = || {
        let mut all = faults.requests_received();
        let lists = all.remove(LORA_LIST).unwrap_or(0);
        (all, lists)
    };
    let (before, lists_before) = counts();

    // Several of the old 300 ms probe periods (in these tests) and of the 200 ms ping periods.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Beside the socket's ping, the one request of an idle gateway is the LoRA list's refresh (so a
    // file dropped into `models/loras` is found without a restart): nothing else is probed again.
    let (after, lists_after) = counts();
    assert!(
        lists_after > lists_before,
        "the LoRA list is refreshed while idle"
    );
    assert_eq!(after, before, "liveness while idle is the socket's ping");
    // The WebSocket, and the one kept-alive connection the probe used.
    assert!(
        faults.open_connections() <= 3,
        "{} connections open",
        faults.open_connections()
    );
    assert!(readiness(&app).await.ready, "still ready on pings alone");
}

#[tokio::test]
async fn a_restarted_comfyui_is_probed_again() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let faults = app.sim.faults();
    let probes = faults.requests_to("GET /system_stats");
    assert_eq!(probes, 1);

    faults.restart();
    poll_within(PATIENCE, "a probe of the new connection", || async {
        (faults.requests_to("GET /system_stats") > probes).then_some(())
    })
    .await;
    app.wait_ready().await;
    let (_, events) = app.run_small_job("after the restart").await;
    completed_image(&events);
}
