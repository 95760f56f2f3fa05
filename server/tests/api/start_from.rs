//! Jobs that start from a picture, through the real gateway and the simulator: the picture (and mask)
//! uploaded to the studio, the job's `source` checked against what is kept, the clean picture handed
//! to ComfyUI by the gateway itself with the image-to-image or paint-over graph, and the source kept
//! with the image: in its record, the gallery, and the PNG's story. Bad sources are clear refusals and
//! nothing reaches ComfyUI; a restart carries the job on with its picture.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::io::Cursor;
use std::sync::Arc;

use image::{ExtendedColorType, ImageEncoder as _, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::{Value, json};
use zimage_contract::pictures::paths;
use zimage_contract::{HistoryPage, JobAccepted, JobEvent, PictureUploaded, SourceInfo};

use crate::support::{TestApp, completed_image, fetch_image, spawn_app, start_gateway};

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8)
        .unwrap();
    bytes
}

/// A mask whose left half is to be painted over (transparent).
fn mask(width: u32, height: u32) -> Vec<u8> {
    let mask = RgbaImage::from_fn(width, height, |x, _| {
        Rgba([0, 0, 0, if x < width / 2 { 0 } else { 255 }])
    });
    let mut bytes = Vec::new();
    image::DynamicImage::from(mask)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

async fn upload(app: &TestApp, bytes: Vec<u8>, query: &str) -> PictureUploaded {
    let response = app
        .http
        .post(app.url(&format!("{}{query}", paths::PICTURES)))
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The graph ComfyUI was sent for `id`.
fn graph_of(app: &TestApp, id: &str) -> Value {
    app.sim
        .faults()
        .prompts_received()
        .into_iter()
        .find(|body| body["prompt_id"] == id)
        .map(|body| body["prompt"].clone())
        .unwrap()
}

fn nodes_of_class<'a>(graph: &'a Value, class: &str) -> Vec<&'a Value> {
    graph
        .as_object()
        .unwrap()
        .values()
        .filter(|node| node["class_type"] == class)
        .collect()
}

async fn gallery(app: &TestApp) -> HistoryPage {
    serde_json::from_value(app.get("/api/history").await.body).unwrap()
}

#[tokio::test]
async fn a_job_started_from_a_photo_keeps_its_shape_and_its_source() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let picture = upload(&app, jpeg(640, 480), "").await;
    let accepted = app
        .create_job(json!({"prompt": "the same street in watercolour", "source": {"picture": picture.id, "strength": 0.5}}))
        .await;
    // No size asked: the picture's.
    assert_eq!((accepted.width, accepted.height), (640, 480));
    let events = app.events_until_end(&accepted.id).await;
    let image_url = completed_image(&events);

    // The gateway uploaded the clean picture itself and sent the image-to-image graph.
    assert!(app.sim.faults().requests_to("POST /upload/image") >= 1);
    let graph = graph_of(&app, &accepted.id);
    let loads = nodes_of_class(&graph, "LoadImage");
    assert_eq!(loads.len(), 1, "{graph}");
    assert!(
        nodes_of_class(&graph, "VAEEncode").len() == 1
            && nodes_of_class(&graph, "SetLatentNoiseMask").is_empty()
    );
    let sampler = nodes_of_class(&graph, "KSampler")[0];
    assert_eq!(sampler["inputs"]["denoise"], json!(0.5));

    let expected = SourceInfo {
        picture: picture.id.clone(),
        strength: 0.5,
        masked: false,
    };
    let page = gallery(&app).await;
    assert_eq!(page.items[0].source, Some(expected));
    let (_, image, png) = fetch_image(&app, &image_url).await;
    assert_eq!((image.width(), image.height()), (640, 480));
    let story = String::from_utf8_lossy(&png);
    assert!(
        story.contains(&format!("sha256:{}", picture.id)),
        "the story names its source"
    );
}

#[tokio::test]
async fn painting_over_a_part_sends_the_mask_with_the_picture() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let picture = upload(&app, jpeg(512, 512), "").await;
    let painted = upload(&app, mask(512, 512), "?kind=mask").await;
    let accepted = app
        .create_job(json!({"prompt": "a red door", "source": {"picture": picture.id, "mask": painted.id}}))
        .await;
    completed_image(&app.events_until_end(&accepted.id).await);
    let graph = graph_of(&app, &accepted.id);
    assert_eq!(nodes_of_class(&graph, "SetLatentNoiseMask").len(), 1, "{graph}");
    // Painting over a part regenerates it fully unless told otherwise.
    assert_eq!(
        nodes_of_class(&graph, "KSampler")[0]["inputs"]["denoise"],
        json!(1.0)
    );
    let page = gallery(&app).await;
    assert_eq!(
        page.items[0].source.as_ref().map(|source| source.masked),
        Some(true)
    );
}

#[tokio::test]
async fn bad_sources_are_refused_naming_the_field_and_reach_nothing() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let picture = upload(&app, jpeg(512, 384), "").await;
    let other_size = upload(&app, mask(256, 256), "?kind=mask").await;
    let unknown = "0".repeat(64);
    let cases = [
        (json!({"picture": unknown}), "source.picture"),
        (json!({"picture": "../../etc/passwd"}), "source.picture"),
        (json!({"picture": picture.id, "strength": 5.0}), "source.strength"),
        (
            json!({"picture": picture.id, "strength": 0.01}),
            "source.strength",
        ),
        (
            json!({"picture": picture.id, "mask": other_size.id}),
            "source.mask",
        ),
        // A picture given as a mask, and a mask as the picture.
        (json!({"picture": other_size.id}), "source.picture"),
    ];
    for (source, field) in cases {
        let answer = app
            .post_json("/api/jobs", &json!({"prompt": "x", "source": source}))
            .await;
        assert_eq!(answer.status, 422, "{source}: {}", answer.body);
        assert_eq!(answer.body["error"]["field"], field, "{source}: {}", answer.body);
    }
    let wrong_type = app
        .post_json(
            "/api/jobs",
            &json!({"prompt": "x", "source": {"picture": picture.id, "strength": "a lot"}}),
        )
        .await;
    assert_eq!(wrong_type.status, 422, "{}", wrong_type.body);
    assert!(app.sim.faults().prompts_received().is_empty());
    assert_eq!(app.sim.faults().requests_to("POST /upload/image"), 0);
}

#[tokio::test]
async fn a_restart_mid_job_carries_it_on_with_its_picture() {
    let mut app = spawn_app().await;
    app.wait_ready().await;
    let picture = upload(&app, jpeg(320, 320), "").await;
    app.sim.faults().hold_at_step(Some(3));
    let accepted: JobAccepted = app
        .create_job(json!({"prompt": "kept across a restart", "source": {"picture": picture.id}}))
        .await;
    let mut events = app.events(&accepted.id, None).await;
    events
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    drop(events);
    app.crash().await;
    // ComfyUI restarts meanwhile and forgets everything: the job is sent again, picture and all.
    app.sim.faults().restart();
    app.sim.faults().release();
    let app = start_gateway(app.sim.clone(), Arc::clone(&app.data_dir)).await;
    let events = app.events_until_end(&accepted.id).await;
    completed_image(&events);
    let page = gallery(&app).await;
    assert_eq!(
        page.items[0].source.as_ref().map(|source| source.picture.clone()),
        Some(picture.id)
    );
    assert!(nodes_of_class(&graph_of(&app, &accepted.id), "LoadImage").len() == 1);
}
