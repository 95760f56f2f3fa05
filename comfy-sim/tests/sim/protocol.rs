//! The protocol a client sees on a normal day: a prompt's messages, its image, the queue, the
//! history, the jobs API and the read-only endpoints.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Frame, Sim, fast, kinds, zimage_body, zimage_body_with, zimage_graph};

#[tokio::test]
async fn a_zimage_prompt_streams_the_recorded_sequence_and_saves_a_png_of_its_size() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("client-a").await;
    let greeting = ws.next().await;
    assert_eq!(greeting.kind(), "status");
    assert_eq!(greeting.data()["sid"], "client-a");
    assert_eq!(greeting.data()["status"]["exec_info"]["queue_remaining"], 0);

    let (status, answer) = sim
        .post_text("/prompt", &zimage_body("client-a", 42, 320, 192))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["number"], 0);
    assert_eq!(answer["node_errors"], json!({}));
    let prompt_id = answer["prompt_id"].as_str().unwrap().to_owned();

    let frames = ws.until_done(&prompt_id).await;
    let sequence: Vec<String> = frames
        .iter()
        .filter(|f| f.kind() != "progress_state")
        .map(Frame::kind)
        .collect();
    let mut expected = vec!["status", "status", "execution_start", "execution_cached"];
    expected.extend(std::iter::repeat_n("executing", 8));
    expected.extend(std::iter::repeat_n("progress", 8));
    expected.extend([
        "executing",
        "executing",
        "executed",
        "execution_success",
        "status",
        "executing",
    ]);
    assert_eq!(sequence, expected);
    let executing: Vec<&Value> = frames
        .iter()
        .filter(|f| f.kind() == "executing")
        .map(|f| &f.data()["node"])
        .collect();
    assert_eq!(
        executing,
        [
            &json!("8"),
            &json!("6"),
            &json!("2"),
            &json!("3"),
            &json!("4"),
            &json!("1"),
            &json!("5"),
            &json!("7"),
            &json!("9"),
            &json!("10"),
            &Value::Null
        ]
    );
    let steps: Vec<u64> = frames
        .iter()
        .filter(|f| f.kind() == "progress")
        .map(|f| f.data()["value"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [1, 2, 3, 4, 5, 6, 7, 8]);

    let executed = frames.iter().find(|f| f.kind() == "executed").unwrap();
    let image = &executed.data()["output"]["images"][0];
    assert_eq!(
        image,
        &json!({"filename": "gen_00001_.png", "subfolder": "zimage", "type": "output"})
    );

    let response = sim
        .http
        .get(sim.url("/view?filename=gen_00001_.png&subfolder=zimage&type=output"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    assert_eq!(
        response.headers()["content-disposition"],
        "filename=\"gen_00001_.png\""
    );
    let png = response.bytes().await.unwrap();
    let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), (320, 192));
    assert_eq!(
        decoded.get_pixel(10, 20).0,
        comfy_sim::images::seed_pixel(42, 10, 20, 320, 192)
    );
}

#[tokio::test]
async fn the_same_seed_draws_the_same_image_and_the_counter_moves_on() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let mut files = Vec::new();
    // The same graph twice in a row would be fully cached (no new file); the cache keeps only the
    // last prompt, so seed 5 after seed 6 runs again.
    for seed in [5, 6, 5] {
        let prompt_id = sim.queue(&zimage_body("c", seed, 64, 64)).await;
        let frames = ws.until_done(&prompt_id).await;
        let executed = frames.iter().find(|f| f.kind() == "executed").unwrap();
        let name = executed.data()["output"]["images"][0]["filename"]
            .as_str()
            .unwrap()
            .to_owned();
        let bytes = sim
            .http
            .get(sim.url(&format!("/view?filename={name}&subfolder=zimage")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        files.push((name, bytes));
    }
    assert_eq!(files[0].0, "gen_00001_.png");
    assert_eq!(files[1].0, "gen_00002_.png");
    assert_eq!(files[2].0, "gen_00003_.png");
    assert_eq!(files[0].1, files[2].1);
    assert_ne!(files[0].1, files[1].1);
}

#[tokio::test]
async fn a_warm_run_reports_the_loaders_as_cached_and_skips_them() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let first = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until_done(&first).await;
    let second = sim.queue(&zimage_body("c", 2, 64, 64)).await;
    let frames = ws.until_done(&second).await;
    let cached = frames.iter().find(|f| f.kind() == "execution_cached").unwrap();
    assert_eq!(cached.data()["nodes"], json!(["1", "2", "3", "4", "5", "6", "8"]));
    let executing: Vec<&Value> = frames
        .iter()
        .filter(|f| f.kind() == "executing")
        .map(|f| &f.data()["node"])
        .collect();
    assert_eq!(executing, [&json!("7"), &json!("9"), &json!("10"), &Value::Null]);
}

#[tokio::test]
async fn events_go_only_to_the_submitting_client_and_status_to_everyone() {
    let sim = Sim::start(fast()).await;
    let mut owner = sim.connect("owner").await;
    let mut other = sim.connect("other").await;
    owner.next().await;
    other.next().await;
    let prompt_id = sim.queue(&zimage_body("owner", 1, 64, 64)).await;
    owner.until_done(&prompt_id).await;
    // Let a second prompt finish so `other` has seen everything of the first by then.
    let marker = sim.queue(&zimage_body("other", 1, 64, 64)).await;
    let seen = other.until_done(&marker).await;
    let before_marker: Vec<&Frame> = seen
        .iter()
        .take_while(|f| f.data()["prompt_id"] != marker.as_str())
        .collect();
    assert!(
        before_marker.iter().all(|f| f.kind() == "status"),
        "{:?}",
        kinds(&seen)
    );
}

#[tokio::test]
async fn a_prompt_without_client_id_broadcasts_progress_but_not_executing() {
    let sim = Sim::start(fast()).await;
    let mut watcher = sim.connect("watcher").await;
    watcher.next().await;
    let prompt_id = sim
        .queue(&format!(
            r#"{{"prompt": {}}}"#,
            zimage_graph("x", 1, 64, 64, "anon")
        ))
        .await;
    let mut seen = Vec::new();
    loop {
        let frame = watcher.next().await;
        let last = frame.kind() == "execution_interrupted"
            || (frame.kind() == "status" && frame.data()["status"]["exec_info"]["queue_remaining"] == 0);
        seen.push(frame);
        if last {
            break;
        }
    }
    let kinds = kinds(&seen);
    assert!(kinds.contains(&"progress".to_owned()));
    assert!(kinds.contains(&"progress_state".to_owned()));
    assert!(!kinds.contains(&"executing".to_owned()));
    assert!(!kinds.contains(&"execution_start".to_owned()));
    let history = sim.wait_for_history(&prompt_id).await;
    assert_eq!(history["status"]["status_str"], "success");
}

#[tokio::test]
async fn history_is_empty_until_the_prompt_is_done_then_complete() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    faults.hold_at_step(Some(3));
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 9, 64, 64)).await;
    ws.until("progress").await;
    assert_eq!(sim.get(&format!("/history/{prompt_id}")).await.1, json!({}));
    let (_, queue) = sim.get("/queue").await;
    assert_eq!(queue["queue_running"][0][1], prompt_id.as_str());
    assert_eq!(queue["queue_running"][0].as_array().unwrap().len(), 5);
    assert_eq!(queue["queue_running"][0][3]["client_id"], "c");
    assert!(queue["queue_running"][0][3]["create_time"].is_i64());
    faults.release();
    ws.until_done(&prompt_id).await;
    let (_, history) = sim.get(&format!("/history/{prompt_id}")).await;
    let entry = &history[prompt_id.as_str()];
    assert_eq!(entry["prompt"][0], 0);
    assert_eq!(entry["prompt"][4], json!(["10"]));
    assert_eq!(entry["outputs"]["10"]["images"][0]["filename"], "gen_00001_.png");
    assert_eq!(entry["status"]["completed"], true);
    let events: Vec<&str> = entry["status"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["execution_start", "execution_cached", "execution_success"]
    );
    assert_eq!(entry["meta"]["10"]["node_id"], "10");
}

#[tokio::test]
async fn one_prompt_runs_at_a_time_and_a_pending_one_can_be_deleted() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    faults.hold_at_step(Some(1));
    let mut ws = sim.connect("c").await;
    let first = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until("progress_state").await;
    let second = sim.queue(&zimage_body("c", 2, 64, 64)).await;
    let (_, queue) = sim.get("/queue").await;
    assert_eq!(queue["queue_running"][0][1], first.as_str());
    assert_eq!(queue["queue_pending"][0][1], second.as_str());
    let (_, job) = sim.get(&format!("/api/jobs/{second}")).await;
    assert_eq!(job["status"], "pending");

    let (status, _) = sim.post("/queue", &json!({"delete": [second]})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, queue) = sim.get("/queue").await;
    assert_eq!(queue["queue_pending"], json!([]));
    assert_eq!(sim.get(&format!("/history/{second}")).await.1, json!({}));
    assert_eq!(
        sim.get(&format!("/api/jobs/{second}")).await.0,
        StatusCode::NOT_FOUND
    );
    faults.release();
    ws.until_done(&first).await;
}

#[tokio::test]
async fn interrupting_another_prompt_id_does_nothing_and_the_running_one_stops() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    faults.hold_at_step(Some(2));
    let mut ws = sim.connect("c").await;
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    ws.until("progress").await;
    let (status, body) = sim.post("/interrupt", &json!({"prompt_id": "not-running"})).await;
    assert_eq!((status, body), (StatusCode::OK, Value::String(String::new())));
    let (_, job) = sim.get(&format!("/api/jobs/{prompt_id}")).await;
    assert_eq!(job["status"], "in_progress");
    sim.post("/interrupt", &json!({"prompt_id": prompt_id})).await;
    let frames = ws.until_done(&prompt_id).await;
    let tail: Vec<String> = kinds(&frames).into_iter().rev().take(3).collect();
    assert_eq!(tail, ["executing", "status", "execution_interrupted"]);
    let interrupted = frames
        .iter()
        .find(|f| f.kind() == "execution_interrupted")
        .unwrap();
    assert_eq!(interrupted.data()["node_id"], "7");
    assert_eq!(interrupted.data()["node_type"], "KSampler");
    assert_eq!(
        interrupted.data()["executed"],
        json!(["8", "6", "2", "3", "4", "1", "5"])
    );
    let (_, job) = sim.get(&format!("/api/jobs/{prompt_id}")).await;
    assert_eq!(job["status"], "failed");
    assert!(job.get("execution_error").is_none());
    faults.release();
}

#[tokio::test]
async fn a_global_interrupt_while_idle_is_forgotten_by_the_next_prompt() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let response = sim.http.post(sim.url("/interrupt")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let prompt_id = sim.queue(&zimage_body("c", 1, 64, 64)).await;
    let frames = ws.until_done(&prompt_id).await;
    assert!(kinds(&frames).contains(&"execution_success".to_owned()));
}

#[tokio::test]
async fn the_jobs_api_lists_and_details_jobs_with_404_for_unknown_ids() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let body = zimage_body_with(
        "c",
        3,
        64,
        64,
        &json!({"extra_pnginfo": {"workflow": {"id": "wf-1"}}}),
    );
    let prompt_id = sim.queue(&body).await;
    ws.until_done(&prompt_id).await;

    let (status, list) = sim.get("/api/jobs?limit=5").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["pagination"],
        json!({"offset": 0, "limit": 5, "total": 1, "has_more": false})
    );
    let job = &list["jobs"][0];
    assert_eq!(job["id"], prompt_id.as_str());
    assert_eq!(job["status"], "completed");
    assert_eq!(job["workflow_id"], "wf-1");
    assert_eq!(job["preview_output"]["filename"], "gen_00001_.png");
    let (_, filtered) = sim.get("/api/jobs?workflow_id=other").await;
    assert_eq!(filtered["jobs"], json!([]));

    let (status, detail) = sim.get(&format!("/api/jobs/{prompt_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["execution_status"]["status_str"], "success");
    assert_eq!(detail["workflow"]["extra_data"]["client_id"], "c");

    assert_eq!(
        sim.get("/api/jobs/does-not-exist").await,
        (StatusCode::NOT_FOUND, json!({"error": "Job not found"}))
    );
    assert_eq!(sim.get("/jobs").await.0, StatusCode::NOT_FOUND);
    assert_eq!(sim.get("/api/api/jobs?limit=1").await.0, StatusCode::OK);
    assert_eq!(
        sim.get("/api/jobs?limit=0").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "limit must be a positive integer"})
        )
    );
}

#[tokio::test]
async fn read_only_endpoints_answer_from_the_recordings_and_the_configured_models() {
    let sim = Sim::start(fast()).await;
    let (_, stats) = sim.get("/system_stats").await;
    assert_eq!(stats["system"]["comfyui_version"], "0.8.0");
    assert_eq!(stats["devices"][0]["type"], "cpu");
    let (_, info) = sim.get("/api/object_info/UnetLoaderGGUF").await;
    assert_eq!(
        info["UnetLoaderGGUF"]["input"]["required"]["unet_name"][0],
        json!(["z_image_turbo-Q8_0.gguf"])
    );
    assert_eq!(
        sim.get("/object_info/NoSuchNode").await,
        (StatusCode::OK, json!({}))
    );
    let (_, all) = sim.get("/object_info").await;
    assert!(all.get("KSampler").is_some() && all.get("SaveImage").is_some());
    let (_, features) = sim.get("/features").await;
    assert_eq!(features["supports_preview_metadata"], true);
    assert_eq!(
        sim.get("/prompt").await.1,
        json!({"exec_info": {"queue_remaining": 0}})
    );
    assert_eq!(
        sim.post("/free", &json!({"unload_models": true, "free_memory": true}))
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn view_guards_paths_like_comfyui() {
    let sim = Sim::start(fast()).await;
    std::fs::create_dir_all(sim.handle.output_dir().join("sub")).unwrap();
    std::fs::write(sim.handle.output_dir().join("sub/a.png"), b"not really a png").unwrap();
    let status = |path: &'static str| {
        let sim = &sim;
        async move { sim.http.get(sim.url(path)).send().await.unwrap().status() }
    };
    assert_eq!(status("/view?filename=a.png&subfolder=sub").await, StatusCode::OK);
    assert_eq!(
        status("/api/view?filename=a.png&subfolder=sub&type=output").await,
        StatusCode::OK
    );
    assert_eq!(
        status("/view?filename=a.png%20[output]&subfolder=sub").await,
        StatusCode::OK
    );
    assert_eq!(status("/view?filename=").await, StatusCode::BAD_REQUEST);
    assert_eq!(
        status("/view?filename=/etc/passwd").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(status("/view?filename=..%2Fx.png").await, StatusCode::BAD_REQUEST);
    assert_eq!(
        status("/view?filename=a.png&type=secret").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        status("/view?filename=a.png&subfolder=../..").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status("/view?filename=a.png&subfolder=/etc").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(status("/view?filename=missing.png").await, StatusCode::NOT_FOUND);
    assert_eq!(status("/view").await, StatusCode::NOT_FOUND);
    assert_eq!(
        status("/view?filename=a.png&subfolder=sub&type=input").await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn previews_asked_per_prompt_arrive_after_progress_as_type_1_jpegs() {
    let sim = Sim::start(fast()).await;
    let mut ws = sim.connect("c").await;
    let body = zimage_body_with("c", 4, 256, 256, &json!({"preview_method": "latent2rgb"}));
    let prompt_id = sim.queue(&body).await;
    let frames = ws.until_done(&prompt_id).await;
    let sequence = kinds(&frames);
    let first_progress = sequence.iter().position(|k| k == "progress").unwrap();
    assert_eq!(sequence[first_progress + 1], "binary1");
    let Frame::Binary(bytes) = &frames[first_progress + 1] else {
        unreachable!()
    };
    assert_eq!(&bytes[..8], &[0, 0, 0, 1, 0, 0, 0, 1]);
    assert_eq!(&bytes[8..10], &[0xff, 0xd8]);
    assert_eq!(sequence.iter().filter(|k| *k == "binary1").count(), 8);

    // The next prompt without the option has none (the server default is off).
    let prompt_id = sim.queue(&zimage_body("c", 5, 64, 64)).await;
    let frames = ws.until_done(&prompt_id).await;
    assert!(!kinds(&frames).iter().any(|k| k.starts_with("binary")));
}

#[tokio::test]
async fn after_the_feature_flags_handshake_previews_are_type_4_and_come_before_progress() {
    let sim = Sim::start(comfy_sim::SimOptions {
        previews: true,
        ..fast()
    })
    .await;
    let mut ws = sim.connect_ff("ff").await;
    assert_eq!(ws.next().await.kind(), "status");
    let reply = ws.next().await;
    assert_eq!(reply.kind(), "feature_flags");
    assert_eq!(reply.data()["supports_preview_metadata"], true);
    let prompt_id = sim.queue(&zimage_body("ff", 4, 128, 64)).await;
    let frames = ws.until_done(&prompt_id).await;
    let sequence = kinds(&frames);
    let first_progress = sequence.iter().position(|k| k == "progress").unwrap();
    assert_eq!(sequence[first_progress - 1], "binary4");
    let Frame::Binary(bytes) = &frames[first_progress - 1] else {
        unreachable!()
    };
    let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    let metadata: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    assert_eq!(metadata["node_id"], "7");
    assert_eq!(metadata["prompt_id"], prompt_id.as_str());
    assert_eq!(metadata["image_type"], "image/jpeg");
    assert_eq!(&bytes[8 + len..10 + len], &[0xff, 0xd8]);

    // A prompt can switch the server-wide previews off for itself.
    let body = zimage_body_with("ff", 5, 64, 64, &json!({"preview_method": "none"}));
    let prompt_id = sim.queue(&body).await;
    assert!(
        !kinds(&ws.until_done(&prompt_id).await)
            .iter()
            .any(|k| k.starts_with("binary"))
    );
}

#[tokio::test]
async fn the_api_prefixed_websocket_works_too_and_reconnecting_owner_learns_the_node() {
    let sim = Sim::start(fast()).await;
    let faults = sim.handle.faults();
    faults.hold_at_step(Some(1));
    let mut ws =
        crate::support::Ws::connect(&format!("ws://{}/api/ws?clientId=owner", sim.handle.addr())).await;
    let prompt_id = sim.queue(&zimage_body("owner", 1, 64, 64)).await;
    ws.until("execution_cached").await;
    loop {
        let frame = ws.next().await;
        if frame.kind() == "executing" && frame.data()["node"] == "7" {
            break;
        }
    }
    ws.stream.close(None).await.unwrap();
    while ws.try_next().await.is_some() {}
    let mut again = sim.connect("owner").await;
    assert_eq!(again.next().await.kind(), "status");
    let executing = again.next().await;
    assert_eq!(executing.kind(), "executing");
    assert_eq!(executing.data(), &json!({"node": "7"}));
    faults.release();
    again.until_done(&prompt_id).await;
}
