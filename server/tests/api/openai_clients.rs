//! The OpenAI-compatible API as real clients use it: the exact bodies LibreChat's image tool, Open
//! WebUI's image router and SillyTavern send, the streamed answer (`stream: true`) read as OpenAI's
//! SDKs read it, and a Rust client of OpenAI's API (`async-openai`) pointed at the studio.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use async_openai::config::OpenAIConfig;
use async_openai::types::images::{
    CreateImageRequestArgs, Image, ImageBackground, ImageGenStreamEvent, ImageModel, ImageOutputFormat,
    ImageResponseFormat, ImageSize,
};
use comfy_sim::SimOptions;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::openai::{GENERATIONS, decoded_png, generate, openai_error, sdk};
use crate::support::{
    TestApp, check_documented, check_schema, eventually, quick_sim, spawn_app, spawn_app_with,
};

/// LibreChat's image tool (`api/app/clients/tools/structured/OpenAIImageTools.js`), its defaults:
/// `openai.images.generate` with exactly these fields, no `response_format`, reading
/// `data[0].b64_json` as a `data:image/png` URL.
fn librechat_body(prompt: &str) -> Value {
    json!({"model": "gpt-image-1", "prompt": prompt, "n": 1, "background": "auto",
           "output_format": "png", "output_compression": 100, "quality": "auto", "size": "auto"})
}

#[tokio::test]
async fn librechats_image_tool_gets_its_png() {
    let app = spawn_app().await;
    let (status, headers, body) = generate(&app, "sk-librechat", &librechat_body("a red fox in snow")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-zimage-model"], "z-image-turbo");
    let png = decoded_png(body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!((png.width(), png.height()), (1024, 1024));
    // LibreChat asks for JPEG or WebP when set up so, with its `output_compression`.
    let mut jpeg = librechat_body("a red fox in snow");
    jpeg["output_format"] = json!("jpeg");
    jpeg["output_compression"] = json!(80);
    jpeg["size"] = json!("1024x1536");
    let (status, _, body) = generate(&app, "sk-librechat", &jpeg).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["size"], "1024x1536");
    let bytes = base64_decode(body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Jpeg);
    let picture = image::load_from_memory(&bytes).unwrap();
    assert_eq!((picture.width(), picture.height()), (672, 1024));
}

#[tokio::test]
async fn open_webuis_image_router_gets_its_images() {
    let app = spawn_app().await;
    // `backend/open_webui/routers/images.py`, engine "openai": model, prompt, n, the configured
    // size (512x512 by default), and `response_format: b64_json` unless the model matches
    // `^gpt-image` (IMAGE_URL_RESPONSE_MODELS_REGEX_PATTERN); it reads `url` or else `b64_json`.
    for body in [
        json!({"model": "gpt-image-1", "prompt": "a lighthouse at dusk", "n": 1, "size": "512x512"}),
        json!({"model": "dall-e-2", "prompt": "a lighthouse at dusk", "n": 1, "size": "512x512",
               "response_format": "b64_json"}),
        json!({"model": "z-image-turbo", "prompt": "a lighthouse at dusk", "n": 2, "size": "768x512",
               "response_format": "b64_json"}),
    ] {
        let (status, _, answer) = generate(&app, "sk-openwebui", &body).await;
        assert_eq!(status, StatusCode::OK, "{body} → {answer}");
        let data = answer["data"].as_array().unwrap();
        assert_eq!(data.len() as u64, body["n"].as_u64().unwrap());
        for image in data {
            let png = decoded_png(image["b64_json"].as_str().unwrap());
            let size = format!("{}x{}", png.width(), png.height());
            assert_eq!(size, body["size"].as_str().unwrap());
        }
    }
}

#[tokio::test]
async fn sillytaverns_openai_source_gets_its_image() {
    let app = spawn_app().await;
    // `public/scripts/extensions/stable-diffusion/index.js` (`generateOpenAiImage`), relayed as it is
    // by `src/endpoints/openai.js`: dall-e-3 with its quality and style, a 1792 side for wide images.
    let body = json!({"prompt": "a castle on a hill", "model": "dall-e-3", "size": "1792x1024", "n": 1,
                      "quality": "standard", "style": "vivid", "response_format": "b64_json"});
    let (status, _, answer) = generate(&app, "sk-tavern", &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let png = decoded_png(answer["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!((png.width(), png.height()), (1024, 576));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).unwrap()
}

/// The events of a streamed answer, each checked against the document: `(event name, data)`.
async fn stream_events(app: &TestApp, body: &Value) -> Vec<(String, Value)> {
    let response = sdk()
        .post(app.url(GENERATIONS))
        .bearer_auth("sk-x")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["x-zimage-model"], "z-image-turbo");
    check_documented("post", GENERATIONS, 200, None);
    let mut events = Vec::new();
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        let schema = if event.event == "error" {
            json!({"$ref": "#/components/schemas/OpenAiErrorBody"})
        } else {
            assert_eq!(data["type"], event.event.as_str(), "{data}");
            json!({"$ref": "#/components/schemas/ImageStreamEvent"})
        };
        check_schema(&schema, &data, "a streamed image event");
        events.push((event.event, data));
    }
    events
}

/// Previews go out only while a job runs long enough for them to be seen.
fn visible_steps() -> SimOptions {
    SimOptions {
        step_ms: 60,
        ..quick_sim()
    }
}

#[tokio::test]
async fn a_stream_sends_partial_images_from_the_live_previews_then_each_image() {
    let app = spawn_app_with(visible_steps()).await;
    let events = stream_events(
        &app,
        &json!({"model": "gpt-image-1", "prompt": "fox", "size": "256x256", "n": 2, "stream": true,
                "partial_images": 2, "output_format": "jpeg", "seed": 9}),
    )
    .await;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    let completed: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "image_generation.completed")
        .map(|(_, data)| data)
        .collect();
    assert_eq!(completed.len(), 2, "{names:?}");
    assert_eq!(names.last(), Some(&"image_generation.completed"));
    for image in 0..2 {
        let partials: Vec<&Value> = events
            .iter()
            .filter(|(name, data)| name == "image_generation.partial_image" && data["image_index"] == image)
            .map(|(_, data)| data)
            .collect();
        // Up to two per image, numbered from 0, each a JPEG as asked, before its image.
        assert!(!partials.is_empty() && partials.len() <= 2, "{names:?}");
        for (index, partial) in partials.iter().enumerate() {
            assert_eq!(partial["partial_image_index"], index as u64);
            assert_eq!(partial["output_format"], "jpeg");
            let bytes = base64_decode(partial["b64_json"].as_str().unwrap());
            assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Jpeg);
        }
        let done = completed
            .iter()
            .find(|data| data["image_index"] == image)
            .unwrap();
        let bytes = base64_decode(done["b64_json"].as_str().unwrap());
        let picture = image::load_from_memory(&bytes).unwrap();
        assert_eq!((picture.width(), picture.height()), (256, 256));
        assert_eq!(done["usage"]["total_tokens"], 0);
    }
    // Both images are in the history, as any other.
    eventually("both images in the history", || async {
        let page = app.get("/api/history").await;
        (page.body["items"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stream_without_partial_images_sends_the_image_alone_and_a_failure_as_an_error_event() {
    let app = spawn_app().await;
    let events = stream_events(&app, &json!({"prompt": "fox", "size": "256x256", "stream": true})).await;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["image_generation.completed"]);
    decoded_png(events[0].1["b64_json"].as_str().unwrap());

    app.sim
        .faults()
        .fail_node(Some(("9".to_owned(), comfy_sim::FailureKind::Generic)));
    let events = stream_events(&app, &json!({"prompt": "fox", "size": "256x256", "stream": true})).await;
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(openai_error(data).2.as_deref(), Some("generation_failed"));
}

#[tokio::test]
async fn a_streaming_client_that_hangs_up_cancels_its_jobs() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(2));
    let response = sdk()
        .post(app.url(GENERATIONS))
        .json(&json!({"prompt": "fox", "size": "256x256", "n": 2, "stream": true, "partial_images": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let prompts = app.wait_prompts_received(1).await;
    let id = prompts[0]["prompt_id"].as_str().unwrap().to_owned();
    // The client goes away: its connection closes.
    drop(response);
    eventually("the abandoned job to be cancelled", || async {
        (app.job(&id).await.status == zimage_contract::JobStatus::Cancelled).then_some(())
    })
    .await;
    app.sim.faults().release();
    // The second image, waiting in line, was cancelled too: it never reaches ComfyUI.
    let (accepted, events) = app.run_small_job("after").await;
    crate::support::completed_image(&events);
    for prompt in app.sim.faults().prompts_received() {
        let other = prompt["prompt_id"].as_str().unwrap();
        if other != accepted.id {
            assert_eq!(
                app.job(other).await.status,
                zimage_contract::JobStatus::Cancelled,
                "{other}"
            );
        }
    }
}

/// A Rust program using OpenAI's API through `async-openai`, with the studio as its base URL.
fn rust_client(app: &TestApp) -> async_openai::Client<OpenAIConfig> {
    async_openai::Client::with_config(
        OpenAIConfig::new()
            .with_api_base(app.url("/v1"))
            .with_api_key("sk-rust"),
    )
}

#[tokio::test]
async fn the_async_openai_crate_generates_streams_and_reads_refusals() {
    let app = spawn_app_with(visible_steps()).await;
    let client = rust_client(&app);

    let request = CreateImageRequestArgs::default()
        .model(ImageModel::GptImage1)
        .prompt("a fox")
        .n(2)
        .size(ImageSize::S256x256)
        .build()
        .unwrap();
    let answer = client.images().generate(request).await.unwrap();
    assert_eq!(answer.data.len(), 2);
    assert_eq!(answer.output_format, Some(ImageOutputFormat::Png));
    for image in &answer.data {
        let Image::B64Json { b64_json, .. } = image.as_ref() else {
            panic!("not base64: {image:?}")
        };
        assert_eq!(decoded_png(b64_json).width(), 256);
    }

    let request = CreateImageRequestArgs::default()
        .model(ImageModel::DallE2)
        .prompt("a fox")
        .size(ImageSize::S256x256)
        .response_format(ImageResponseFormat::Url)
        .build()
        .unwrap();
    let answer = client.images().generate(request).await.unwrap();
    let Image::Url { url, .. } = answer.data[0].as_ref() else {
        panic!("not a url: {:?}", answer.data[0])
    };
    assert!(url.starts_with(&app.address), "{url}");

    let request = CreateImageRequestArgs::default()
        .model(ImageModel::GptImage1)
        .prompt("a fox")
        .size(ImageSize::S256x256)
        .partial_images(2u8)
        .build()
        .unwrap();
    let mut stream = client.images().generate_stream(request).await.unwrap();
    let (mut partials, mut completed) = (0, 0);
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            ImageGenStreamEvent::PartialImage(partial) => {
                assert_eq!(partial.partial_image_index, partials);
                partials += 1;
            }
            ImageGenStreamEvent::Completed(done) => {
                assert_eq!(decoded_png(&done.b64_json).width(), 256);
                completed += 1;
            }
        }
    }
    assert_eq!(completed, 1);
    assert!((1..=2).contains(&partials), "{partials}");

    let refused = CreateImageRequestArgs::default()
        .model(ImageModel::GptImage1)
        .prompt("a fox")
        .background(ImageBackground::Transparent)
        .build()
        .unwrap();
    match client.images().generate(refused).await {
        Err(async_openai::error::OpenAIError::ApiError(error)) => {
            assert_eq!(error.param.as_deref(), Some("background"), "{error:?}");
        }
        other => panic!("not refused: {other:?}"),
    }
}
