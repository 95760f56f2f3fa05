//! When ComfyUI misbehaves: down at start, sockets dropped or stalled mid-job, nodes failing, a
//! restart that loses the queue, and a gateway restart. No job may hang and no image may be lost.

use comfy_sim::{FailureKind, SimOptions};
use serde_json::json;
use zimage_contract::{BackendState, JobEvent, JobStatus};

use crate::support::{completed_image, fetch_image, quick_sim, spawn_app, spawn_app_with};

#[tokio::test]
async fn comfyui_down_at_start_then_up_flips_readiness_and_a_job_then_succeeds() {
    let app = spawn_app().await;
    app.sim.faults().refuse_connections(true);
    let readiness = app.wait_readiness(false).await;
    assert_eq!(readiness.state, BackendState::Unreachable);
    assert!(readiness.message.contains("ComfyUI"), "{}", readiness.message);

    let answer = app.post_json("/api/jobs", &json!({"prompt": "fox"})).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "comfyui_unreachable");

    app.sim.faults().refuse_connections(false);
    let readiness = app.wait_ready().await;
    assert_eq!(readiness.state, BackendState::Ready);
    assert!(readiness.device.is_some());
    let (_, events) = app.run_small_job("fox").await;
    completed_image(&events);
}

#[tokio::test]
async fn a_missing_model_file_is_named_by_readyz_and_by_a_refused_job() {
    let app = spawn_app_with(SimOptions {
        unet_models: vec!["other.gguf".to_owned()],
        ..quick_sim()
    })
    .await;
    // The gateway has looked at ComfyUI once before the app is handed over (support.rs), so this is
    // the probe's verdict, not the state before any probe.
    let readiness = app.wait_readiness(false).await;
    assert_eq!(readiness.state, BackendState::Starting);
    assert_eq!(
        readiness.missing_models,
        vec!["z_image_turbo-Q8_0.gguf".to_owned()]
    );
    assert!(readiness.message.contains("z_image_turbo-Q8_0.gguf"));

    let answer = app.post_json("/api/jobs", &json!({"prompt": "fox"})).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("z_image_turbo-Q8_0.gguf"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_websocket_dropped_mid_job_still_ends_with_the_image() {
    let app = spawn_app().await;
    app.wait_ready().await;
    app.sim.faults().drop_websockets_at_step(Some(3));
    let (_, events) = app.run_small_job("fox").await;
    let Some((_, JobEvent::Completed { image_url, .. })) = events.last() else {
        panic!("{events:?}")
    };
    app.sim.faults().drop_websockets_at_step(None);
    assert_eq!(fetch_image(&app, image_url).await.0, "image/png");
}

#[tokio::test]
async fn a_websocket_that_stalls_mid_job_does_not_hang_the_job() {
    let app = spawn_app().await;
    app.wait_ready().await;
    app.sim.faults().stall_websockets_at_step(Some(2));
    let (_, events) = app.run_small_job("fox").await;
    app.sim.faults().stall_websockets_at_step(None);
    completed_image(&events);
    // The gateway reconnected: the next job runs normally.
    let (_, events) = app.run_small_job("fox again").await;
    completed_image(&events);
}

#[tokio::test]
async fn an_execution_error_fails_the_job_with_a_readable_message() {
    let app = spawn_app().await;
    app.sim
        .faults()
        .fail_node(Some(("9".to_owned(), FailureKind::Generic)));
    let (accepted, events) = app.run_small_job("fox").await;
    let Some((_, JobEvent::Failed { code, message })) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(code, "execution_error");
    assert!(message.contains("VAEDecode"), "{message}");
    let job = app.job(&accepted.id).await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.error.map(|error| error.code).as_deref(),
        Some("execution_error")
    );
}

#[tokio::test]
async fn running_out_of_gpu_memory_says_what_to_try() {
    let app = spawn_app().await;
    app.sim
        .faults()
        .fail_node(Some(("8".to_owned(), FailureKind::OutOfMemory)));
    let (_, events) = app.run_small_job("fox").await;
    let Some((_, JobEvent::Failed { code, message })) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(code, "out_of_memory");
    assert!(message.to_lowercase().contains("memory"), "{message}");
    // ComfyUI recovers by unloading models; the next job works.
    app.sim.faults().fail_node(None);
    let next = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    assert!(matches!(
        app.events_until_end(&next.id).await.last(),
        Some((_, JobEvent::Completed { .. }))
    ));
}

#[tokio::test]
async fn a_comfyui_restart_that_loses_the_job_sends_it_again_and_it_completes() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let (accepted, mut events) = app.start_held_job("fox", 2, 1).await;
    app.sim.faults().restart();
    app.sim.faults().hold_at_step(None);
    let (_, last) = events.until(JobEvent::is_terminal).await;
    assert!(matches!(last, JobEvent::Completed { .. }), "{last:?}");
    // The same prompt, seed and size went to ComfyUI twice, so the image is the one asked for.
    let prompts = app.sim.faults().prompts_received();
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert_eq!(prompts[0]["prompt"], prompts[1]["prompt"]);
    assert_eq!(prompts[0]["prompt_id"], prompts[1]["prompt_id"]);
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"][0]["id"], accepted.id);
    assert_eq!(history.body["items"][0]["seed"], accepted.seed);
}

#[tokio::test]
async fn a_gateway_restart_keeps_the_history_and_the_images() {
    let app = spawn_app().await;
    let accepted = app
        .create_job(json!({"prompt": "keep me", "seed": 5, "width": 256, "height": 256}))
        .await;
    let events = app.events_until_end(&accepted.id).await;
    let Some((_, JobEvent::Completed { image_url, .. })) = events.last().cloned() else {
        panic!("{events:?}")
    };
    let (_, _, before) = fetch_image(&app, &image_url).await;

    let app = app.restart_gateway().await;
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"][0]["id"], accepted.id);
    assert_eq!(history.body["items"][0]["prompt"], "keep me");
    let (_, _, after) = fetch_image(&app, &image_url).await;
    assert_eq!(before, after);
    let job = app.job(&accepted.id).await;
    assert_eq!(job.status, JobStatus::Completed);
    let late = app.events_until_end(&accepted.id).await;
    assert!(
        matches!(late.as_slice(), [(_, JobEvent::Completed { .. })]),
        "{late:?}"
    );
}

#[tokio::test]
async fn a_slow_view_delays_the_image_but_the_job_still_completes() {
    let app = spawn_app().await;
    app.sim
        .faults()
        .slow_view(Some(std::time::Duration::from_millis(300)));
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    // Meanwhile the studio keeps answering.
    assert_eq!(app.get("/healthz").await.status, 200);
    let events = app.events_until_end(&accepted.id).await;
    completed_image(&events);
}

#[tokio::test]
async fn a_view_that_never_answers_fails_the_job_instead_of_hanging() {
    let app = spawn_app().await;
    app.sim
        .faults()
        .slow_view(Some(std::time::Duration::from_secs(3600)));
    let (_, events) = app.run_small_job("fox").await;
    let Some((_, JobEvent::Failed { code, message })) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(code, "image_unavailable");
    assert!(message.contains("ComfyUI"), "{message}");
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/api/history").await.body["items"], json!([]));
}

#[tokio::test]
async fn a_hostile_comfyui_socket_neither_crashes_the_gateway_nor_derails_the_job() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let (_, mut events) = app.start_held_job("fox", 2, 1).await;

    let faults = app.sim.faults();
    faults.inject_text("{ not json");
    faults.inject_text(r#"{"type": "from_the_future", "data": {"x": [1, 2, 3]}}"#);
    faults.inject_text(r#"{"type": "progress", "data": "not an object"}"#);
    faults.inject_text(
        r#"{"type": "executed", "data": {"node": "10", "prompt_id": "../../etc", "output": {}}}"#,
    );
    faults.inject_text(r#"{"type": "execution_error", "data": {"prompt_id": "someone-else"}}"#);
    faults.inject_binary(vec![0u8; 3]);
    faults.inject_binary([0u32.to_be_bytes(), 1u32.to_be_bytes()].concat());
    faults.inject_binary([4u32.to_be_bytes(), u32::MAX.to_be_bytes()].concat());
    // A frame far over the socket's limit: the gateway drops that connection and opens another.
    faults.inject_binary(vec![1u8; 40 * 1024 * 1024]);
    assert_eq!(app.get("/healthz").await.status, 200);

    faults.hold_at_step(None);
    faults.release();
    let (_, last) = events.until(JobEvent::is_terminal).await;
    assert!(matches!(last, JobEvent::Completed { .. }), "{last:?}");
    // The new connection is probed before it takes new jobs again.
    app.wait_ready().await;
    let (_, events) = app.run_small_job("fox again").await;
    completed_image(&events);
}
