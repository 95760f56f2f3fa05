//! The happy path: a request becomes a ComfyUI prompt, progress streams back, the image is stored.

use image::GenericImageView as _;
use serde_json::json;
use zimage_contract::{HistoryPage, JobEvent, JobStatus};

use crate::support::{fetch_image, spawn_app};

#[tokio::test]
async fn a_job_streams_its_progress_in_order_and_stores_a_png_of_the_requested_size() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let accepted = app
        .create_job(json!({"prompt": "a red fox in snow", "seed": 1234, "aspect_ratio": "16:9"}))
        .await;
    assert_eq!(
        (accepted.seed, accepted.width, accepted.height, accepted.status),
        (1234, 1024, 576, JobStatus::Queued)
    );

    let events = app.events_until_end(&accepted.id).await;
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids must increase: {ids:?}"
    );
    let steps: Vec<u32> = events
        .iter()
        .filter_map(|(_, event)| match event {
            JobEvent::Progress { step, total: 8 } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());
    let running = events
        .iter()
        .position(|(_, event)| *event == JobEvent::Running {})
        .expect("a running event");
    let first_progress = events
        .iter()
        .position(|(_, event)| matches!(event, JobEvent::Progress { .. }))
        .unwrap();
    assert!(running < first_progress);
    let Some((
        _,
        JobEvent::Completed {
            image_url,
            thumbnail_url,
            seed,
            width,
            height,
            ..
        },
    )) = events.last()
    else {
        panic!("no completion: {events:?}");
    };
    assert_eq!((*seed, *width, *height), (1234, 1024, 576));

    let (content_type, image, _) = fetch_image(&app, image_url).await;
    assert_eq!(content_type, "image/png");
    assert_eq!(image.dimensions(), (1024, 576));
    let (content_type, thumbnail, _) = fetch_image(&app, thumbnail_url).await;
    assert_eq!(content_type, "image/jpeg");
    assert!(thumbnail.width() <= 384 && thumbnail.height() <= 384);

    let job = app.job(&accepted.id).await;
    assert_eq!(job.status, JobStatus::Completed);
    assert_eq!(job.step, 8);
    assert!(job.timings.started_at.is_some() && job.timings.finished_at.is_some());
    assert_eq!(job.image_url.as_deref(), Some(image_url.as_str()));

    let history: HistoryPage = serde_json::from_value(app.get("/api/history").await.body).unwrap();
    assert_eq!(history.items.len(), 1);
    assert_eq!(history.items[0].id, accepted.id);
    assert_eq!(history.items[0].prompt, "a red fox in snow");
}

#[tokio::test]
async fn only_prompt_seed_size_and_the_configured_models_reach_comfyui() {
    let app = spawn_app().await;
    let accepted = app
        .create_job(json!({"prompt": "  狐狸 in the snow ", "seed": 99, "width": 512, "height": 768}))
        .await;
    app.events_until_end(&accepted.id).await;
    let prompts = app.wait_prompts_received(1).await;
    let body = &prompts[0];
    assert_eq!(body["prompt_id"], accepted.id);
    let graph = &body["prompt"];
    assert_eq!(graph["5"]["inputs"]["text"], "狐狸 in the snow");
    assert_eq!(graph["8"]["inputs"]["seed"], 99);
    assert_eq!(graph["8"]["inputs"]["steps"], 8);
    assert_eq!(graph["8"]["inputs"]["cfg"], 1.0);
    assert_eq!(graph["8"]["inputs"]["sampler_name"], "res_multistep");
    assert_eq!(graph["8"]["inputs"]["scheduler"], "simple");
    assert_eq!(
        (
            graph["7"]["inputs"]["width"].clone(),
            graph["7"]["inputs"]["height"].clone()
        ),
        (json!(512), json!(768))
    );
    assert_eq!(graph["7"]["inputs"]["batch_size"], 1);
    assert_eq!(graph["1"]["inputs"]["unet_name"], "z_image_turbo-Q8_0.gguf");
    assert_eq!(graph["2"]["inputs"]["clip_name"], "Qwen3-4B-Q4_K_M.gguf");
    assert_eq!(graph["2"]["inputs"]["type"], "lumina2");
    assert_eq!(graph["3"]["inputs"]["vae_name"], "ae.safetensors");
    assert!(body["client_id"].as_str().is_some_and(|id| !id.is_empty()));
}

#[tokio::test]
async fn the_same_seed_and_size_give_the_same_image_and_another_seed_another() {
    let app = spawn_app().await;
    let mut pixels = Vec::new();
    for seed in [7, 7, 8] {
        let accepted = app
            .create_job(json!({"prompt": "fox", "seed": seed, "width": 256, "height": 256}))
            .await;
        let events = app.events_until_end(&accepted.id).await;
        let Some((_, JobEvent::Completed { image_url, .. })) = events.last() else {
            panic!("{events:?}")
        };
        pixels.push(fetch_image(&app, image_url).await.1.to_rgb8().into_raw());
    }
    assert_eq!(pixels[0], pixels[1]);
    assert_ne!(pixels[0], pixels[2]);
}

#[tokio::test]
async fn a_seed_left_out_is_chosen_and_returned() {
    let app = spawn_app().await;
    let accepted = app.create_job(json!({"prompt": "fox"})).await;
    assert!(accepted.seed <= zimage_contract::MAX_SEED);
    assert_eq!((accepted.width, accepted.height), (1024, 1024));
    app.events_until_end(&accepted.id).await;
    let prompts = app.wait_prompts_received(1).await;
    assert_eq!(prompts[0]["prompt"]["8"]["inputs"]["seed"], accepted.seed);
}

#[tokio::test]
async fn live_previews_are_relayed_and_served() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(3));
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    let mut events = app.events(&accepted.id, None).await;
    let (_, preview) = events
        .until(|event| matches!(event, JobEvent::Preview { .. }))
        .await;
    let JobEvent::Preview { url } = preview else {
        unreachable!()
    };
    let response = app.http.get(app.url(&url)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("image/")
    );
    assert!(!response.bytes().await.unwrap().is_empty());
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();
    events.until(JobEvent::is_terminal).await;
}

#[tokio::test]
async fn history_pages_newest_first_and_deleting_removes_the_image() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let accepted = app
            .create_job(json!({"prompt": format!("fox {n}"), "width": 256, "height": 256}))
            .await;
        app.events_until_end(&accepted.id).await;
        ids.push(accepted.id);
    }
    let first: HistoryPage = serde_json::from_value(app.get("/api/history?limit=2").await.body).unwrap();
    assert_eq!(
        first.items.iter().map(|item| item.id.clone()).collect::<Vec<_>>(),
        vec![ids[2].clone(), ids[1].clone()]
    );
    let before = first.next_before.expect("a next page");
    let second: HistoryPage = serde_json::from_value(
        app.get(&format!("/api/history?limit=2&before={before}"))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(
        second
            .items
            .iter()
            .map(|item| item.id.clone())
            .collect::<Vec<_>>(),
        vec![ids[0].clone()]
    );
    assert_eq!(second.next_before, None);

    assert_eq!(app.delete(&format!("/api/history/{}", ids[1])).await.status, 204);
    assert_eq!(app.get(&format!("/api/images/{}", ids[1])).await.status, 404);
    assert_eq!(app.delete(&format!("/api/history/{}", ids[1])).await.status, 404);
    let after: HistoryPage = serde_json::from_value(app.get("/api/history").await.body).unwrap();
    assert_eq!(after.items.len(), 2);
}
