//! Each fault knob, observed from the outside the way the gateway would meet it.

use std::time::Duration;

use comfy_sim::FailureKind;
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Frame, PATIENCE, Sim, fast, kinds, zimage_body};
use futures_util::{SinkExt, StreamExt};

#[tokio::test]
async fn refusing_connections_cuts_sockets_and_refuses_requests_until_lifted() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    ws.next().await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until_done(&prompt_id).await;

    sim.handle.faults().refuse_connections(true);
    while ws.try_next().await.is_some() {}
    let fresh = reqwest::Client::new();
    assert!(fresh.get(sim.url("/queue")).send().await.is_err());
    assert!(sim.http.get(sim.url("/queue")).send().await.is_err());
    let url = format!("ws://{}/ws?clientId=c", sim.handle.addr());
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_err());

    sim.handle.faults().refuse_connections(false);
    let (status, history) = sim.get(&format!("/history/{prompt_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(history[prompt_id.as_str()]["status"]["status_str"], "success");
    let mut ws = sim.connect("c").await;
    assert_eq!(ws.next().await.kind(), "status");
}

#[tokio::test]
async fn a_step_length_change_applies_to_the_step_under_way() {
    let sim = Sim::start(comfy_sim::SimOptions {
        step_ms: 3_600_000,
        ..fast()
    })
    .await;
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    loop {
        let frame = ws.next().await;
        if frame.kind() == "executing" && frame.data()["node"] == "7" {
            break;
        }
    }
    // An hour per step: only the change can let the sampler finish within the test's patience.
    sim.handle.faults().set_step_ms(0);
    let frames = ws.until_done(&prompt_id).await;
    assert_eq!(kinds(&frames).iter().filter(|k| *k == "progress").count(), 8);
}

#[tokio::test]
async fn a_hold_stops_before_its_step_keeps_later_prompts_pending_and_release_resumes() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    faults.hold_at_step(Some(3));
    let mut ws = sim.connect("c").await;
    let first = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    let second = sim.queue(&zimage_body("c", 2, 64, 64)).await;
    let mut steps = Vec::new();
    while steps.len() < 2 {
        let frame = ws.next().await;
        if frame.kind() == "progress" {
            steps.push(frame.data()["value"].as_u64().unwrap());
        }
    }
    assert_eq!(steps, [1, 2]);
    let (_, queue) = sim.get("/queue").await;
    assert_eq!(queue["queue_running"][0][1], first.as_str());
    assert_eq!(queue["queue_pending"][0][1], second.as_str());
    assert_eq!(sim.get(&format!("/history/{first}")).await.1, json!({}));

    faults.release();
    let frames = ws.until_done(&first).await;
    let rest: Vec<u64> = frames
        .iter()
        .filter(|f| f.kind() == "progress")
        .map(|f| f.data()["value"].as_u64().unwrap())
        .collect();
    assert_eq!(rest, [3, 4, 5, 6, 7, 8]);
    ws.until_done(&second).await;
}

#[tokio::test]
async fn a_node_hold_lets_a_client_interrupt_during_text_encoding() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    faults.hold_at_node(Some("3".to_owned()));
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    loop {
        let frame = ws.next().await;
        if frame.kind() == "executing" && frame.data()["node"] == "3" {
            break;
        }
    }
    sim.post("/interrupt", &json!({})).await;
    let frames = ws.until_done(&prompt_id).await;
    let interrupted = frames
        .iter()
        .find(|f| f.kind() == "execution_interrupted")
        .unwrap();
    assert_eq!(interrupted.data()["node_id"], "3");
    assert_eq!(interrupted.data()["node_type"], "CLIPTextEncode");
    assert_eq!(interrupted.data()["executed"], json!(["8", "6", "2"]));
    faults.release();
}

#[tokio::test]
async fn dropped_sockets_close_at_the_step_and_the_prompt_still_completes() {
    let sim = Sim::start(fast()).await;
    sim.handle.faults().drop_websockets_at_step(Some(4));
    let mut ws = sim.connect("c").await;
    let mut bystander = sim.connect("b").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    let mut seen = Vec::new();
    while let Some(frame) = ws.try_next().await {
        seen.push(frame);
    }
    let steps: Vec<u64> = seen
        .iter()
        .filter(|f| f.kind() == "progress")
        .map(|f| f.data()["value"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    while bystander.try_next().await.is_some() {}

    let entry = sim.wait_for_history(&prompt_id).await;
    assert_eq!(entry["status"]["status_str"], "success");
    let (_, job) = sim.get(&format!("/api/jobs/{prompt_id}")).await;
    assert_eq!(job["status"], "completed");
    sim.handle.faults().drop_websockets_at_step(None);
    let mut again = sim.connect("c").await;
    assert_eq!(again.next().await.kind(), "status");
}

#[tokio::test]
async fn stalled_sockets_go_silent_without_closing_and_answer_no_pings() {
    let sim = Sim::start(fast()).await;
    sim.handle.faults().stall_websockets_at_step(Some(4));
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    let entry = sim.wait_for_history(&prompt_id).await;
    assert_eq!(entry["status"]["status_str"], "success");
    ws.stream
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();

    // A new socket is served normally while the stalled one stays open.
    sim.handle.faults().stall_websockets_at_step(None);
    let mut fresh = sim.connect("fresh").await;
    let second = sim.queue(&zimage_body("fresh", 2, 64, 64)).await;
    fresh.until_done(&second).await;

    // Cutting every connection ends the stalled socket; what it got before is all it ever got.
    sim.handle.faults().restart();
    let mut frames = Vec::new();
    let mut pongs = 0;
    loop {
        let next = tokio::time::timeout(PATIENCE, futures_util::StreamExt::next(&mut ws.stream))
            .await
            .unwrap();
        match next {
            Some(Ok(Message::Text(text))) => {
                frames.push(Frame::Json(serde_json::from_str(text.as_str()).unwrap()))
            }
            Some(Ok(Message::Pong(_))) => pongs += 1,
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(pongs, 0);
    let steps: Vec<u64> = frames
        .iter()
        .filter(|f| f.kind() == "progress")
        .map(|f| f.data()["value"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3]);
    assert!(!kinds(&frames).contains(&"execution_success".to_owned()));
}

#[tokio::test]
async fn a_failing_node_sends_execution_error_and_the_job_fails() {
    let sim = Sim::start(fast()).await;
    sim.handle
        .faults()
        .fail_node(Some(("1".to_owned(), FailureKind::Generic)));
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    let frames = ws.until_done(&prompt_id).await;
    let tail: Vec<String> = kinds(&frames).into_iter().rev().take(4).collect();
    assert_eq!(tail, ["executing", "status", "execution_error", "executing"]);
    let error = frames
        .iter()
        .find(|f| f.kind() == "execution_error")
        .unwrap()
        .data()
        .clone();
    assert_eq!(error["node_id"], "1");
    assert_eq!(error["node_type"], "UnetLoaderGGUF");
    assert_eq!(error["exception_type"], "ValueError");
    assert_eq!(error["exception_message"], "GGUF magic invalid\n");
    assert_eq!(error["executed"], json!(["8", "6", "2", "3", "4"]));
    assert_eq!(
        error["current_inputs"],
        json!({"unet_name": ["z_image_turbo-Q8_0.gguf"]})
    );
    assert_eq!(error["current_outputs"].as_array().unwrap().len(), 10);
    assert!(!error["traceback"].as_array().unwrap().is_empty());

    let (_, job) = sim.get(&format!("/api/jobs/{prompt_id}")).await;
    assert_eq!(job["status"], "failed");
    assert_eq!(job["execution_error"]["node_id"], "1");
    let (_, history) = sim.get(&format!("/history/{prompt_id}")).await;
    assert_eq!(history[prompt_id.as_str()]["status"]["status_str"], "error");
}

#[tokio::test]
async fn an_out_of_memory_failure_carries_comfyuis_tip() {
    let sim = Sim::start(fast()).await;
    sim.handle
        .faults()
        .fail_node(Some(("7".to_owned(), FailureKind::OutOfMemory)));
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    let frames = ws.until_done(&prompt_id).await;
    let error = frames
        .iter()
        .find(|f| f.kind() == "execution_error")
        .unwrap()
        .data()
        .clone();
    assert_eq!(error["node_type"], "KSampler");
    assert_eq!(error["exception_type"], "torch.OutOfMemoryError");
    let message = error["exception_message"].as_str().unwrap();
    assert!(
        message.contains("This error means you ran out of memory on your GPU."),
        "{message}"
    );
    assert!(
        message.contains("TIPS: If the workflow worked before"),
        "{message}"
    );
    assert_eq!(error["current_inputs"]["seed"], json!([1]));
    assert_eq!(error["current_inputs"]["sampler_name"], json!(["res_multistep"]));
    assert!(
        error["current_inputs"]["model"][0]
            .as_str()
            .unwrap()
            .contains("ModelPatcher")
    );

    // Cleared, the same prompt runs (its loaders now come from the cache).
    sim.handle.faults().fail_node(None);
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    assert!(kinds(&ws.until_done(&prompt_id).await).contains(&"execution_success".to_owned()));
}

#[tokio::test]
async fn a_slow_view_waits_for_the_knob_and_answers_once_it_changes() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until_done(&prompt_id).await;
    sim.handle.faults().slow_view(Some(Duration::MAX));
    let url = sim.url("/view?filename=gen_00001_.png&subfolder=zimage");
    let client = sim.http.clone();
    let pending = tokio::spawn(async move { client.get(url).send().await.unwrap().status() });
    // Other requests are answered meanwhile; the image is not.
    for _ in 0..3 {
        assert_eq!(sim.get("/queue").await.0, StatusCode::OK);
    }
    assert!(!pending.is_finished());
    sim.handle.faults().slow_view(None);
    let status = tokio::time::timeout(PATIENCE, pending).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_restart_loses_queue_history_and_the_running_prompt() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    let mut ws = sim.connect("c").await;
    let done = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until_done(&done).await;
    faults.hold_at_step(Some(2));
    let running = sim.queue(&zimage_body("c", 2, 64, 64)).await;
    let pending = sim.queue(&zimage_body("c", 3, 64, 64)).await;
    ws.until("progress").await;

    faults.restart();
    while ws.try_next().await.is_some() {}
    faults.release();
    assert_eq!(
        sim.get("/queue").await.1,
        json!({"queue_running": [], "queue_pending": []})
    );
    for id in [&done, &running, &pending] {
        assert_eq!(sim.get(&format!("/history/{id}")).await.1, json!({}));
        assert_eq!(sim.get(&format!("/api/jobs/{id}")).await.0, StatusCode::NOT_FOUND);
    }
    let mut ws = sim.connect("c").await;
    assert_eq!(
        ws.next().await.data()["status"]["exec_info"]["queue_remaining"],
        0
    );
    let (_, answer) = sim.post_text("/prompt", &zimage_body("c", 4, 64, 64)).await;
    assert_eq!(answer["number"], 0);
    let frames = ws.until_done(answer["prompt_id"].as_str().unwrap()).await;
    let cached = frames.iter().find(|f| f.kind() == "execution_cached").unwrap();
    assert_eq!(cached.data()["nodes"], json!([]));
    // Files on disk survive, so the counter goes on after the one image saved before the restart.
    let executed = frames.iter().find(|f| f.kind() == "executed").unwrap();
    assert_eq!(
        executed.data()["output"]["images"][0]["filename"],
        "gen_00002_.png"
    );
    assert_eq!(faults.prompts_received().len(), 4);
}

#[tokio::test]
async fn prompts_received_records_accepted_bodies_only() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 77, 64, 64)).await;
    sim.post(
        "/prompt",
        &json!({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}),
    )
    .await;
    ws.until_done(&prompt_id).await;
    let received = sim.handle.faults().prompts_received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["client_id"], "c");
    assert_eq!(received[0]["prompt"]["7"]["inputs"]["seed"], 77);
}

#[tokio::test]
async fn a_slow_prompt_queues_nothing_until_the_knob_changes() {
    let sim = Sim::start(fast()).await;
    sim.handle.faults().slow_prompt(Some(Duration::MAX));
    let body = zimage_body("c", 1, 64, 64);
    let (url, client) = (sim.url("/prompt"), sim.http.clone());
    let pending = tokio::spawn(async move {
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        response.status()
    });
    // Other requests are answered meanwhile; the prompt is neither answered nor queued.
    for _ in 0..3 {
        assert_eq!(
            sim.get("/queue").await.1,
            json!({"queue_running": [], "queue_pending": []})
        );
    }
    assert!(!pending.is_finished());
    assert!(sim.handle.faults().prompts_received().is_empty());
    sim.handle.faults().slow_prompt(None);
    let status = tokio::time::timeout(PATIENCE, pending).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sim.handle.faults().prompts_received().len(), 1);
}

#[tokio::test]
async fn the_peak_queue_counts_the_most_prompts_held_at_once() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    assert_eq!(faults.peak_queue_remaining(), 0);
    let mut ws = sim.connect("c").await;
    let first = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until_done(&first).await;
    let second = sim.queue(&zimage_body("c", 2, 64, 64)).await;
    ws.until_done(&second).await;
    assert_eq!(faults.peak_queue_remaining(), 1, "one at a time never queues two");

    faults.hold_at_step(Some(2));
    let held = sim.queue(&zimage_body("c", 3, 64, 64)).await;
    sim.queue(&zimage_body("c", 4, 64, 64)).await;
    sim.queue(&zimage_body("c", 5, 64, 64)).await;
    assert_eq!(faults.peak_queue_remaining(), 3);
    faults.release();
    ws.until_done(&held).await;
    assert_eq!(
        faults.peak_queue_remaining(),
        3,
        "the peak stays when the queue drains"
    );
}

/// Long enough for a frame or an answer to come back from an idle local simulator many times over:
/// only used to check that nothing comes while the simulator is stalled.
const QUIET: Duration = Duration::from_millis(300);

#[tokio::test]
async fn a_stall_freezes_every_connection_until_it_is_lifted() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    let mut ws = sim.connect("c").await;
    assert_eq!(ws.next().await.kind(), "status");

    faults.stall(true);
    // A new connection is accepted (as the OS does for a frozen process) but never answered.
    let fresh = reqwest::Client::new();
    let request = tokio::spawn(fresh.get(sim.url("/system_stats")).send());
    // The open socket answers no ping.
    ws.stream
        .send(Message::Ping(b"alive?".to_vec().into()))
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(QUIET, ws.stream.next()).await.is_err(),
        "a stalled simulator sent a frame"
    );
    assert!(!request.is_finished(), "a stalled simulator answered HTTP");

    faults.stall(false);
    let pong = tokio::time::timeout(PATIENCE, ws.stream.next()).await.unwrap();
    assert!(
        matches!(pong, Some(Ok(Message::Pong(ref payload))) if payload.as_ref() == b"alive?"),
        "{pong:?}"
    );
    let answered = tokio::time::timeout(PATIENCE, request)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(answered.status(), StatusCode::OK);
}

#[tokio::test]
async fn sampling_stops_while_stalled_and_goes_on_after() {
    // Eight steps of 100 ms: the prompt would be done well within the stall if sampling went on.
    let sim = Sim::start(comfy_sim::SimOptions {
        step_ms: 100,
        ..fast()
    })
    .await;
    let faults = sim.handle.faults();
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until("progress").await;

    faults.stall(true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    faults.stall(false);
    let (_, job) = sim.get(&format!("/api/jobs/{prompt_id}")).await;
    assert_eq!(job["status"], "in_progress", "{job}");
    let frames = ws.until_done(&prompt_id).await;
    assert!(kinds(&frames).iter().any(|kind| kind == "execution_success"));
}

#[tokio::test]
async fn requests_and_open_connections_are_counted() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    assert_eq!(faults.open_connections(), 0);
    sim.get("/object_info/KSampler").await;
    sim.get("/object_info/KSampler").await;
    sim.get("/api/object_info/VAELoader").await;
    sim.get("/system_stats").await;
    let counts = faults.requests_received();
    assert_eq!(counts["GET /object_info/KSampler"], 2, "{counts:?}");
    assert_eq!(counts["GET /api/object_info/VAELoader"], 1, "{counts:?}");
    assert_eq!(faults.requests_to("GET /object_info"), 2);
    assert_eq!(faults.requests_to("GET /"), 4);
    // One keep-alive connection carried the four requests.
    assert_eq!(faults.open_connections(), 1);

    let ws = sim.connect("c").await;
    assert_eq!(faults.requests_received()["GET /ws"], 1);
    assert_eq!(faults.open_connections(), 2);
    drop(ws);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while faults.open_connections() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed socket still counts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
