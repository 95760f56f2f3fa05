//! The OpenAI-compatible images API driven the way OpenAI's SDKs and Open WebUI drive it: a JSON body
//! with `Authorization: Bearer`, no cookies, one answer once the images exist, and errors in OpenAI's
//! shape with the statuses the SDKs turn into their exceptions.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use base64::Engine as _;
use comfy_sim::SimOptions;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use zimage_contract::openai::{ImagesResponse, ModelList};
use zimage_contract::{HistoryPage, JobStatus};

use crate::support::{
    TestApp, check_documented, eventually, fetch_image, is_json, quick_sim, spawn_app, spawn_app_with,
    spawn_app_with_args,
};

const SECRET: &str = "correct horse battery staple";
pub(crate) const GENERATIONS: &str = "/v1/images/generations";

/// What an OpenAI SDK is: a client without cookies that sends its key as a bearer token.
pub(crate) fn sdk() -> Client {
    Client::new()
}

/// Posts `body` as an SDK does, with `key` as the API key.
pub(crate) async fn generate(app: &TestApp, key: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
    let response = sdk()
        .post(app.url(GENERATIONS))
        .bearer_auth(key)
        .header("user-agent", "OpenAI/Python 1.0")
        .json(body)
        .send()
        .await
        .unwrap();
    read("post", response).await
}

/// Status, headers and JSON body of an answer, checked against the OpenAPI document.
pub(crate) async fn read(method: &str, response: reqwest::Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let path = response.url().path().to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    assert!(is_json(&headers), "{status} {path} is not labelled JSON");
    check_documented(method, &path, status.as_u16(), Some(&body));
    (status, headers, body)
}

/// Checks the body is OpenAI's error object and returns `(type, param, code)`.
pub(crate) fn openai_error(body: &Value) -> (String, Option<String>, Option<String>) {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{body}"
    );
    // OpenAI always sends all four, `param` and `code` as null when they do not apply.
    for key in ["message", "type", "param", "code"] {
        assert!(error.contains_key(key), "{key} missing: {body}");
    }
    let text = |key: &str| error[key].as_str().map(str::to_owned);
    (text("type").unwrap(), text("param"), text("code"))
}

pub(crate) fn decoded_png(b64: &str) -> image::DynamicImage {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    image::load_from_memory(&bytes).unwrap()
}

async fn history(app: &TestApp) -> HistoryPage {
    let answer = app.get("/api/history").await;
    assert_eq!(answer.status, 200);
    serde_json::from_value(answer.body).unwrap()
}

#[tokio::test]
async fn an_sdk_gets_base64_pngs_with_consecutive_seeds_and_they_land_in_the_history() {
    let app = spawn_app().await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, _, body) = generate(
        &app,
        "sk-anything",
        &json!({"model": "z-image-turbo", "prompt": "a red fox in snow", "n": 2, "size": "512x256",
                "response_format": "b64_json", "seed": 41, "user": "someone"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // `created` is whole seconds, as the SDKs' `int` wants.
    let created = body["created"].as_u64().unwrap();
    assert!(created >= before && created < before + 600, "{created}");
    let response: ImagesResponse = serde_json::from_value(body).unwrap();
    assert_eq!(response.data.len(), 2);
    for image in &response.data {
        assert!(image.url.is_none());
        let png = decoded_png(image.b64_json.as_deref().unwrap());
        assert_eq!((png.width(), png.height()), (512, 256));
    }
    let page = history(&app).await;
    let mut seeds: Vec<u64> = page.items.iter().map(|item| item.seed).collect();
    seeds.sort_unstable();
    assert_eq!(seeds, [41, 42]);
    assert!(page.items.iter().all(|item| item.prompt == "a red fox in snow"));
    // Each image was a job of its own, with a batch of one.
    let prompts = app.sim.faults().prompts_received();
    assert_eq!(prompts.len(), 2);
    for prompt in &prompts {
        let batch = prompt.to_string();
        assert!(batch.contains("\"batch_size\":1"), "{batch}");
    }
}

#[tokio::test]
async fn the_url_format_gives_absolute_urls_of_the_stored_images() {
    let app = spawn_app().await;
    let (status, _, body) = generate(
        &app,
        "sk-anything",
        &json!({"prompt": "fox", "size": "256x256", "response_format": "url"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response: ImagesResponse = serde_json::from_value(body).unwrap();
    let url = response.data[0].url.clone().unwrap();
    assert!(response.data[0].b64_json.is_none());
    let path = url
        .strip_prefix(&app.address)
        .unwrap_or_else(|| panic!("{url} is not absolute"));
    assert!(path.starts_with("/api/images/"), "{url}");
    let (content_type, png, _) = fetch_image(&app, path).await;
    assert_eq!((content_type.as_str(), png.width()), ("image/png", 256));
}

#[tokio::test]
async fn openai_sizes_are_made_at_their_aspect_with_the_longer_side_1024() {
    let app = spawn_app().await;
    for (size, expected) in [("1792x1024", (1024, 576)), ("1024x1536", (672, 1024))] {
        let (status, _, body) = generate(&app, "sk-x", &json!({"prompt": "fox", "size": size})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let png = decoded_png(body["data"][0]["b64_json"].as_str().unwrap());
        assert_eq!((png.width(), png.height()), expected, "{size}");
    }
    // The extension: an aspect ratio of the studio's.
    let (status, _, body) = generate(&app, "sk-x", &json!({"prompt": "fox", "aspect_ratio": "3:4"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let png = decoded_png(body["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!((png.width(), png.height()), (768, 1024));
}

#[tokio::test]
async fn the_model_list_names_z_image_turbo() {
    let app = spawn_app().await;
    let (status, _, body) = read(
        "get",
        sdk()
            .get(app.url("/v1/models"))
            .bearer_auth("sk-x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let models: ModelList = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(models.data.len(), 1);
    assert_eq!(models.data[0].id, "z-image-turbo");
}

#[tokio::test]
async fn refusals_are_openai_errors_naming_the_parameter() {
    let app = spawn_app().await;
    let cases = [
        (json!({"prompt": ""}), "prompt"),
        (json!({"prompt": "x".repeat(2001)}), "prompt"),
        (json!({"prompt": "fox", "n": 5}), "n"),
        (json!({"prompt": "fox", "n": 0}), "n"),
        (json!({"prompt": "fox", "n": -1}), "n"),
        (json!({"prompt": "fox", "size": "2048x2048"}), "size"),
        (json!({"prompt": "fox", "size": "1000x1000"}), "size"),
        (json!({"prompt": "fox", "size": "large"}), "size"),
        (
            json!({"prompt": "fox", "background": "transparent"}),
            "background",
        ),
        (
            json!({"prompt": "fox", "output_compression": 101}),
            "output_compression",
        ),
        (
            json!({"prompt": "fox", "stream": true, "partial_images": 4}),
            "partial_images",
        ),
        (json!({"prompt": "fox", "quality": "ultra"}), "quality"),
        (json!({"prompt": "fox", "output_format": "gif"}), "output_format"),
        (
            json!({"prompt": "fox", "response_format": "url", "output_format": "jpeg"}),
            "output_format",
        ),
        (
            json!({"prompt": "fox", "response_format": "webp"}),
            "response_format",
        ),
        (json!({"prompt": "fox", "seed": "seven"}), "seed"),
        (
            json!({"prompt": "fox", "aspect_ratio": "16:9", "size": "512x512"}),
            "aspect_ratio",
        ),
        (json!({"prompt": "fox", "steps": 50}), "steps"),
        (json!({"n": 1}), "prompt"),
    ];
    for (body, param) in cases {
        let (status, _, answer) = generate(&app, "sk-x", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} → {answer}");
        let (kind, named, _) = openai_error(&answer);
        assert_eq!(
            (kind.as_str(), named.as_deref()),
            ("invalid_request_error", Some(param)),
            "{body}"
        );
    }
    // Broken JSON names no parameter, and nothing reached ComfyUI.
    let response = sdk()
        .post(app.url(GENERATIONS))
        .header("content-type", "application/json")
        .body("{\"prompt\": ")
        .send()
        .await
        .unwrap();
    let (status, _, answer) = read("post", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(openai_error(&answer).1, None);
    assert!(app.sim.faults().prompts_received().is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_openais_shape_too() {
    let app = spawn_app().await;
    let (status, _, body) = read("get", sdk().get(app.url("/v1/embeddings")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(openai_error(&body).0, "invalid_request_error");
    let (status, _, body) = read("get", sdk().get(app.url(GENERATIONS)).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    openai_error(&body);
}

#[tokio::test]
async fn with_a_secret_the_key_is_the_secret() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    let small = json!({"prompt": "fox", "size": "256x256"});

    // No key: 401 (an API, so never the sign-in page), in OpenAI's shape, for both routes.
    let (status, headers, body) = read(
        "post",
        sdk()
            .post(app.url(GENERATIONS))
            .json(&small)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(openai_error(&body).0, "authentication_error");
    let (status, _, body) = read("get", sdk().get(app.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    openai_error(&body);

    let (status, _, body) = generate(&app, "sk-wrong", &small).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(openai_error(&body).2.as_deref(), Some("wrong_token"));
    assert!(app.sim.faults().prompts_received().is_empty());

    let (status, _, body) = generate(
        &app,
        SECRET,
        &json!({"prompt": "fox", "size": "256x256", "response_format": "url"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The image's URL wants the key too, which Open WebUI sends along.
    let url = body["data"][0]["url"].as_str().unwrap();
    assert_eq!(
        sdk().get(url).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let fetched = sdk().get(url).bearer_auth(SECRET).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_job_rate_answers_429_with_retry_after_and_n_above_the_burst_is_refused() {
    let app = spawn_app_with_args(&["--jobs-per-minute=2"]).await;
    let (status, _, body) =
        generate(&app, "sk-x", &json!({"prompt": "fox", "size": "256x256", "n": 3})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(openai_error(&body).1.as_deref(), Some("n"));

    let (status, _, body) =
        generate(&app, "sk-x", &json!({"prompt": "fox", "size": "256x256", "n": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, headers, body) = generate(&app, "sk-x", &json!({"prompt": "fox", "size": "256x256"})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let (kind, _, code) = openai_error(&body);
    assert_eq!(
        (kind.as_str(), code.as_deref()),
        ("rate_limit_error", Some("too_many_jobs"))
    );
    // The refused request started nothing.
    assert_eq!(app.sim.faults().prompts_received().len(), 2);
}

#[tokio::test]
async fn without_a_ready_backend_the_answer_is_503() {
    let app = spawn_app_with(SimOptions {
        unet_models: vec!["other.gguf".to_owned()],
        ..quick_sim()
    })
    .await;
    app.wait_readiness(false).await;
    let (status, _, body) = generate(&app, "sk-x", &json!({"prompt": "fox"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let (kind, _, code) = openai_error(&body);
    assert_eq!(
        (kind.as_str(), code.as_deref()),
        ("server_error", Some("comfyui_not_ready"))
    );
}

#[tokio::test]
async fn a_failed_generation_is_a_server_error_the_sdks_do_not_retry() {
    let app = spawn_app().await;
    app.sim
        .faults()
        .fail_node(Some(("9".to_owned(), comfy_sim::FailureKind::Generic)));
    let (status, headers, body) = generate(&app, "sk-x", &json!({"prompt": "fox", "size": "256x256"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(headers["x-should-retry"], "false");
    let (kind, _, code) = openai_error(&body);
    assert_eq!(
        (kind.as_str(), code.as_deref()),
        ("server_error", Some("generation_failed"))
    );
}

#[tokio::test]
async fn a_client_that_hangs_up_cancels_its_jobs() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(2));
    let url = app.url(GENERATIONS);
    let request = tokio::spawn(async move {
        sdk()
            .post(url)
            .bearer_auth("sk-x")
            .json(&json!({"prompt": "fox", "size": "256x256", "n": 2}))
            .send()
            .await
    });
    // The first image is at ComfyUI, the second waits in the gateway's line.
    let prompts = app.wait_prompts_received(1).await;
    let id = prompts[0]["prompt_id"].as_str().unwrap().to_owned();
    // The client gives up: its connection closes.
    request.abort();
    assert!(request.await.unwrap_err().is_cancelled());
    eventually("the abandoned job to be cancelled", || async {
        (app.job(&id).await.status == JobStatus::Cancelled).then_some(())
    })
    .await;
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();
    // The second job was cancelled too: the next job runs after nothing else (the line is first in,
    // first out), and its image is the only one made.
    let (accepted, events) = app.run_small_job("after").await;
    crate::support::completed_image(&events);
    for prompt in app.sim.faults().prompts_received() {
        let id = prompt["prompt_id"].as_str().unwrap();
        if id != accepted.id {
            // One accepted just as the client hung up may have reached ComfyUI: cancelled there.
            assert_eq!(app.job(id).await.status, JobStatus::Cancelled, "{id}");
        }
    }
    let page = history(&app).await;
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].prompt, "after");
}

#[tokio::test]
async fn the_openapi_document_is_served_to_anyone_on_the_allowed_networks() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    let (status, _, body) = read(
        "get",
        sdk().get(app.url("/api/openapi.json")).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, *crate::support::OPENAPI);
    assert!(body["paths"]["/v1/images/generations"]["post"].is_object());
}

#[test]
fn the_document_check_refuses_an_answer_that_breaks_the_document() {
    let wrong_type = std::panic::catch_unwind(|| {
        check_documented(
            "post",
            GENERATIONS,
            200,
            Some(&json!({"created": "yesterday", "data": []})),
        );
    });
    assert!(wrong_type.is_err());
    let undocumented_status = std::panic::catch_unwind(|| check_documented("get", "/v1/models", 418, None));
    assert!(undocumented_status.is_err());
    let bad_event = std::panic::catch_unwind(|| {
        crate::support::check_schema(
            &json!({"$ref": "#/components/schemas/JobEvent"}),
            &json!({"event": "progress", "data": {"step": "three"}}),
            "an SSE event",
        );
    });
    assert!(bad_event.is_err());
    check_documented(
        "get",
        "/v1/models",
        200,
        Some(&json!({"object": "list", "data": []})),
    );
}

/// The answer's image in `b64_json`, decoded, with the format its bytes are in.
fn decoded(b64: &str) -> (image::ImageFormat, image::DynamicImage) {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let format = image::guess_format(&bytes).unwrap();
    (format, image::load_from_memory(&bytes).unwrap())
}

#[tokio::test]
async fn jpeg_and_webp_are_transcoded_and_output_compression_is_the_jpeg_quality() {
    let app = spawn_app().await;
    let mut jpeg_lengths = Vec::new();
    for (format, compression, expected) in [
        ("jpeg", 100, image::ImageFormat::Jpeg),
        ("jpeg", 10, image::ImageFormat::Jpeg),
        ("webp", 50, image::ImageFormat::WebP),
        ("png", 0, image::ImageFormat::Png),
    ] {
        let (status, _, body) = generate(
            &app,
            "sk-x",
            &json!({"model": "gpt-image-1", "prompt": "fox", "size": "512x256", "seed": 5,
                    "output_format": format, "output_compression": compression}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["output_format"], format, "{body}");
        let b64 = body["data"][0]["b64_json"].as_str().unwrap();
        let (made, picture) = decoded(b64);
        assert_eq!((made, picture.width(), picture.height()), (expected, 512, 256));
        if format == "jpeg" {
            jpeg_lengths.push(b64.len());
        }
    }
    // The same image (same seed) at quality 10 is smaller than at 100.
    assert!(jpeg_lengths[1] < jpeg_lengths[0], "{jpeg_lengths:?}");
}

#[tokio::test]
async fn every_model_name_is_served_by_the_studios_model_and_says_so() {
    let app = spawn_app().await;
    for model in [
        "gpt-image-1",
        "gpt-image-1.5",
        "gpt-image-2",
        "dall-e-3",
        "dall-e-2",
        "z-image-turbo",
        "flux-dev",
    ] {
        let (status, headers, body) = generate(
            &app,
            "sk-x",
            &json!({"model": model, "prompt": "fox", "size": "256x256"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{model}: {body}");
        assert_eq!(headers["x-zimage-model"], "z-image-turbo", "{model}");
        // As OpenAI answers: URLs by default for its dall-e models, base64 for the others.
        let image = &body["data"][0];
        if model.starts_with("dall-e") {
            assert!(
                image["url"].is_string() && image["b64_json"].is_null(),
                "{model}: {body}"
            );
        } else {
            assert!(
                image["b64_json"].is_string() && image["url"].is_null(),
                "{model}: {body}"
            );
        }
        // The settings echoed as OpenAI's answer has them, and usage in its shape.
        assert_eq!(
            (
                &body["background"],
                &body["quality"],
                &body["size"],
                &body["output_format"]
            ),
            (&json!("opaque"), &json!("auto"), &json!("256x256"), &json!("png")),
            "{body}"
        );
        assert_eq!(body["usage"]["input_tokens_details"]["text_tokens"], 0, "{body}");
    }
    // The list stays truthful: the one model the studio has.
    let (_, _, models) = read("get", sdk().get(app.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(models["data"].as_array().unwrap().len(), 1, "{models}");
}

#[tokio::test]
async fn a_transparent_background_is_refused_with_the_reason_in_the_askers_language() {
    let app = spawn_app().await;
    let body = json!({"prompt": "fox", "background": "transparent"});
    let (status, _, answer) = generate(&app, "sk-x", &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("opaque"), "{message}");
    let response = sdk()
        .post(app.url(GENERATIONS))
        .header("accept-language", "zh-CN")
        .json(&body)
        .send()
        .await
        .unwrap();
    let (_, _, answer) = read("post", response).await;
    assert!(
        answer["error"]["message"].as_str().unwrap().contains("透明"),
        "{answer}"
    );
    assert!(app.sim.faults().prompts_received().is_empty());
}

#[tokio::test]
async fn the_wait_ends_with_the_jobs_deadline() {
    let app = spawn_app_with_args(&["--job-deadline=1"]).await;
    // ComfyUI never finishes: the job's deadline ends it, and the waiting request with it.
    app.sim.faults().hold_at_step(Some(2));
    let (status, headers, body) = generate(&app, "sk-x", &json!({"prompt": "fox", "size": "256x256"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(headers["x-should-retry"], "false");
    assert_eq!(openai_error(&body).2.as_deref(), Some("generation_failed"));
    app.sim.faults().release();
}
