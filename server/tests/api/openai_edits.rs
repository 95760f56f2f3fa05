//! `POST /v1/images/edits` through the real gateway and the simulator, driven as its clients drive it:
//! the exact multipart forms Open WebUI and LibreChat send, OpenAI's JSON form with `data:` URLs, a mask
//! that keeps all but its transparent part, a stream of `image_edit.*` events, and every bad input
//! refused in OpenAI's shape, naming its `param`, with nothing sent to ComfyUI.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::io::Cursor;

use base64::Engine as _;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use image::{Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use zimage_contract::pictures::MAX_PICTURE_BYTES;

use crate::openai::{decoded_png, openai_error, read, sdk};
use crate::support::{PATIENCE, TestApp, check_documented, check_schema, eventually, spawn_app};

const EDITS: &str = "/v1/images/edits";

/// The colour of the test picture: far from anything the simulator's pattern makes everywhere.
const RED: [u8; 3] = [200, 30, 40];

fn png_of(image: image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A plain red picture.
fn picture(width: u32, height: u32) -> Vec<u8> {
    png_of(RgbImage::from_pixel(width, height, Rgb(RED)).into())
}

/// A mask whose left half is transparent (to change) and right half opaque (to keep).
fn left_half_mask(width: u32, height: u32) -> Vec<u8> {
    png_of(
        RgbaImage::from_fn(width, height, |x, _| {
            Rgba([0, 0, 0, if x < width / 2 { 0 } else { 255 }])
        })
        .into(),
    )
}

fn file(bytes: Vec<u8>, name: &str, mime: &str) -> Part {
    Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str(mime)
        .unwrap()
}

/// Posts a multipart form as an SDK does (a bearer key, no cookies).
async fn post_form(app: &TestApp, form: Form) -> (StatusCode, Value) {
    let response = sdk()
        .post(app.url(EDITS))
        .bearer_auth("sk-edits")
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read("post", response).await;
    (status, body)
}

async fn post_json(app: &TestApp, body: &Value) -> (StatusCode, Value) {
    let response = sdk()
        .post(app.url(EDITS))
        .bearer_auth("sk-edits")
        .json(body)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read("post", response).await;
    (status, body)
}

fn data_url(bytes: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The images of an answer, decoded (each a PNG).
fn images_of(body: &Value) -> Vec<RgbImage> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|image| decoded_png(image["b64_json"].as_str().unwrap()).into_rgb8())
        .collect()
}

/// Whether the pixel is the picture's red, exactly.
fn is_red(image: &RgbImage, x: u32, y: u32) -> bool {
    image.get_pixel(x, y).0 == RED
}

/// The graphs ComfyUI was sent.
fn graphs(app: &TestApp) -> Vec<Value> {
    app.sim
        .faults()
        .prompts_received()
        .into_iter()
        .map(|body| body["prompt"].clone())
        .collect()
}

fn nodes_of_class<'a>(graph: &'a Value, class: &str) -> Vec<&'a Value> {
    graph
        .as_object()
        .unwrap()
        .values()
        .filter(|node| node["class_type"] == class)
        .collect()
}

fn assert_nothing_reached_comfyui(app: &TestApp) {
    assert!(app.sim.faults().prompts_received().is_empty());
    assert_eq!(app.sim.faults().requests_to("POST /upload/image"), 0);
}

#[tokio::test]
async fn open_webuis_edit_form_changes_the_picture_it_sends() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // `backend/open_webui/routers/images.py`, `image_edits`, engine "openai": an aiohttp form with
    // model, prompt, n, the configured size, `response_format: b64_json` for models outside
    // `^gpt-image`, then the picture from the chat as `image` (one) with a random `.png` name.
    let form = Form::new()
        .text("model", "dall-e-2")
        .text("prompt", "the same room, in autumn light")
        .text("n", "1")
        .text("size", "512x512")
        .text("response_format", "b64_json")
        .part(
            "image",
            file(
                picture(640, 480),
                "1f0e6a3c-5b7d-4f1e-9a51-3c2b8d7e6f10.png",
                "image/png",
            ),
        );
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let images = images_of(&body);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].dimensions(), (512, 512));
    assert_eq!(body["size"], "512x512");

    // Several pictures in the chat: `image[]`, one part each. One is what the studio changes.
    let form = Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "make it snow")
        .text("n", "1")
        .part("image[]", file(picture(256, 256), "a.png", "image/png"));
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No size: the picture's own.
    assert_eq!(images_of(&body)[0].dimensions(), (256, 256));
    assert_eq!(body["size"], "256x256");

    // The job started from the uploaded picture (image to image, the default strength).
    for graph in graphs(&app) {
        assert_eq!(nodes_of_class(&graph, "LoadImage").len(), 1, "{graph}");
        assert_eq!(
            nodes_of_class(&graph, "KSampler")[0]["inputs"]["denoise"],
            json!(0.6)
        );
    }
    // Each image is in the history with its source.
    eventually("both edits in the history", || async {
        let page = app.get("/api/history").await;
        let items = page.body["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 2 && items.iter().all(|item| item["source"]["picture"].is_string())).then_some(())
    })
    .await;
}

#[tokio::test]
async fn librechats_edit_tool_gets_its_png_at_the_pictures_size() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // `api/app/clients/tools/structured/OpenAIImageTools.js`, the image edit tool: a form-data form
    // with model, prompt, quality and size `auto`, and each referenced file as `image[]` with its
    // stored name and type; it reads `data[0].b64_json` as a PNG.
    let form = Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "add a small boat on the lake")
        .text("quality", "auto")
        .text("size", "auto")
        .part("image[]", file(picture(768, 512), "lake photo.png", "image/png"));
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(images_of(&body)[0].dimensions(), (768, 512));
    assert_eq!(
        (&body["quality"], &body["size"]),
        (&json!("auto"), &json!("768x512"))
    );

    // Two referenced pictures: refused, naming `image`, before anything is decoded.
    let form = Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "put the cat from the second into the first")
        .text("quality", "auto")
        .text("size", "auto")
        .part("image[]", file(picture(256, 256), "a.png", "image/png"))
        .part("image[]", file(picture(256, 256), "b.png", "image/png"));
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(openai_error(&body).1.as_deref(), Some("image"));
}

#[tokio::test]
async fn a_mask_changes_only_its_transparent_part() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let form = Form::new()
        .text("prompt", "a window on the left wall")
        .text("seed", "7")
        .part("image", file(picture(256, 256), "room.png", "image/png"))
        .part("mask", file(left_half_mask(256, 256), "mask.png", "image/png"));
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let image = &images_of(&body)[0];
    assert_eq!(image.dimensions(), (256, 256));
    // The right half is the picture, pixel for pixel; the left half was made anew.
    for y in (0..256).step_by(16) {
        for x in (136..256).step_by(8) {
            assert!(
                is_red(image, x, y),
                "({x}, {y}) was kept: {:?}",
                image.get_pixel(x, y)
            );
        }
    }
    let changed = (0..120)
        .step_by(4)
        .flat_map(|x| (0..256).step_by(16).map(move |y| (x, y)))
        .filter(|&(x, y)| !is_red(image, x, y))
        .count();
    assert!(changed > 200, "only {changed} pixels of the masked half changed");
    let graph = &graphs(&app)[0];
    assert_eq!(nodes_of_class(graph, "SetLatentNoiseMask").len(), 1, "{graph}");
    assert_eq!(
        nodes_of_class(graph, "KSampler")[0]["inputs"]["denoise"],
        json!(1.0)
    );

    // A mask of the picture as sent, larger than the studio keeps it: scaled with the picture.
    let form = Form::new()
        .text("prompt", "a window on the left wall")
        .part("image", file(picture(2048, 1024), "wide.png", "image/png"))
        .part("mask", file(left_half_mask(2048, 1024), "mask.png", "image/png"));
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let image = &images_of(&body)[0];
    assert_eq!(image.dimensions(), (1024, 512));
    assert!(is_red(image, 1000, 256) && !is_red(image, 100, 256));
}

#[tokio::test]
async fn the_json_form_takes_data_urls_and_n_images_with_a_strength() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let (status, body) = post_json(
        &app,
        &json!({"model": "gpt-image-1", "prompt": "the same, at night", "n": 2, "seed": 40,
                "strength": 0.5, "output_format": "png", "input_fidelity": "high",
                "images": [{"image_url": data_url(&picture(320, 320))}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let images = images_of(&body);
    assert_eq!(images.len(), 2);
    assert!(images.iter().all(|image| image.dimensions() == (320, 320)));
    let graphs = graphs(&app);
    assert_eq!(graphs.len(), 2);
    for graph in &graphs {
        assert_eq!(
            nodes_of_class(graph, "KSampler")[0]["inputs"]["denoise"],
            json!(0.5)
        );
    }
    // Consecutive seeds, as for generations.
    let page = app.get("/api/history").await;
    let mut seeds: Vec<u64> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["seed"].as_u64().unwrap())
        .collect();
    seeds.sort_unstable();
    assert_eq!(seeds, [40, 41]);

    // A mask as a data URL, and a size that crops.
    let (status, body) = post_json(
        &app,
        &json!({"prompt": "a door", "size": "512x256", "response_format": "b64_json",
                "images": [{"image_url": data_url(&picture(256, 256))}],
                "mask": {"image_url": data_url(&left_half_mask(256, 256))}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(images_of(&body)[0].dimensions(), (512, 256));
}

#[tokio::test]
async fn a_stream_sends_image_edit_events() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let form = Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "fox")
        .text("stream", "true")
        .text("partial_images", "1")
        .text("output_format", "jpeg")
        .part("image", file(picture(256, 256), "a.png", "image/png"));
    let response = sdk().post(app.url(EDITS)).multipart(form).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    check_documented("post", EDITS, 200, None);
    let mut names = Vec::new();
    let mut stream = response.bytes_stream().eventsource();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(data["type"], event.event.as_str(), "{data}");
        check_schema(
            &json!({"$ref": "#/components/schemas/ImageStreamEvent"}),
            &data,
            "a streamed edit event",
        );
        if event.event == "image_edit.completed" {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data["b64_json"].as_str().unwrap())
                .unwrap();
            assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Jpeg);
        }
        names.push(event.event);
    }
    assert_eq!(names.last().map(String::as_str), Some("image_edit.completed"));
    assert!(
        names
            .iter()
            .all(|name| name == "image_edit.completed" || name == "image_edit.partial_image"),
        "{names:?}"
    );
}

#[tokio::test]
async fn bad_pictures_and_settings_are_refused_naming_the_param_and_reach_nothing() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let good = || file(picture(256, 256), "a.png", "image/png");
    let cases: Vec<(Form, u16, &str)> = vec![
        (Form::new().text("prompt", "x"), 400, "image"),
        (
            Form::new().text("prompt", "x").part(
                "image",
                file(b"not a picture at all".to_vec(), "a.png", "image/png"),
            ),
            400,
            "image",
        ),
        (
            Form::new().text("prompt", "x").part(
                "image",
                file(
                    b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
                    "a.gif",
                    "image/gif",
                ),
            ),
            400,
            "image",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .part("image", good())
                .part("mask", file(left_half_mask(128, 128), "m.png", "image/png")),
            400,
            "mask",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .part("image", good())
                .part("mask", file(picture(256, 256), "m.png", "image/png")),
            400,
            "mask",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("n", "9")
                .part("image", good()),
            400,
            "n",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("n", "two")
                .part("image", good()),
            400,
            "n",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("size", "4096x4096")
                .part("image", good()),
            400,
            "size",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("background", "transparent")
                .part("image", good()),
            400,
            "background",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("strength", "0.01")
                .part("image", good()),
            400,
            "strength",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("steps", "50")
                .part("image", good()),
            400,
            "steps",
        ),
        (
            Form::new().text("prompt", " ").part("image", good()),
            400,
            "prompt",
        ),
        (
            Form::new()
                .text("prompt", "x")
                .text("prompt", "y")
                .part("image", good()),
            400,
            "prompt",
        ),
    ];
    for (index, (form, status, param)) in cases.into_iter().enumerate() {
        let (answer, body) = post_form(&app, form).await;
        assert_eq!(answer.as_u16(), status, "case {index}: {body}");
        assert_eq!(
            openai_error(&body).1.as_deref(),
            Some(param),
            "case {index}: {body}"
        );
    }
    let json_cases = [
        (json!({"prompt": "x", "images": []}), "images"),
        (
            json!({"prompt": "x", "images": [{"image_url": "https://example.com/cat.png"}]}),
            "images",
        ),
        (
            json!({"prompt": "x", "images": [{"file_id": "file-123"}]}),
            "images",
        ),
        (
            json!({"prompt": "x", "images": [{"image_url": "data:image/png;base64,@@@"}]}),
            "images",
        ),
        (
            json!({"prompt": "x", "images": [{"image_url": data_url(&picture(64, 64))}],
                   "mask": {"image_url": "http://192.168.1.10/mask.png"}}),
            "mask",
        ),
        (
            json!({"prompt": "x", "images": [{"image_url": data_url(b"plain text")}]}),
            "images",
        ),
    ];
    for (body, param) in json_cases {
        let (status, answer) = post_json(&app, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(openai_error(&answer).1.as_deref(), Some(param), "{answer}");
    }
    // A form from a page in a browser: what another site's page could send, refused at the door (the
    // page's own requests send JSON); programs send no `Sec-Fetch-Site` or `Origin`.
    let response = sdk()
        .post(app.url(EDITS))
        .header("sec-fetch-site", "same-origin")
        .multipart(Form::new().text("prompt", "x").part("image", good()))
        .send()
        .await
        .unwrap();
    let (status, _, answer) = read("post", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(openai_error(&answer).2.as_deref(), Some("unsupported_media_type"));
    let (status, answer) = {
        let response = sdk()
            .post(app.url(EDITS))
            .header("content-type", "text/plain")
            .body("prompt=x")
            .send()
            .await
            .unwrap();
        let (status, _, body) = read("post", response).await;
        (status, body)
    };
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(openai_error(&answer).2.as_deref(), Some("unsupported_media_type"));
    assert_nothing_reached_comfyui(&app);
}

#[tokio::test]
async fn forms_beyond_the_limits_are_refused_and_file_names_are_never_used() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // 500 parts.
    let mut form = String::new();
    for part in 0..500 {
        form.push_str(&format!(
            "--x\r\nContent-Disposition: form-data; name=\"field{part}\"\r\n\r\nx\r\n"
        ));
    }
    form.push_str("--x--\r\n");
    let response = sdk()
        .post(app.url(EDITS))
        .header("content-type", "multipart/form-data; boundary=x")
        .body(form)
        .send()
        .await
        .unwrap();
    let (status, _, body) = read("post", response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(openai_error(&body).2.as_deref(), Some("too_many_parts"));

    // 200 MB announced, a few bytes sent, then nothing: the answer comes without the rest.
    let stalled =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"--x\r\n"))])
            .chain(futures_util::stream::pending());
    let request = sdk()
        .post(app.url(EDITS))
        .header("content-type", "multipart/form-data; boundary=x")
        .header(reqwest::header::CONTENT_LENGTH, 200 * 1024 * 1024)
        .body(reqwest::Body::wrap_stream(stalled));
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .unwrap()
        .unwrap();
    let (status, _, body) = read("post", response).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(openai_error(&body).2.as_deref(), Some("body_too_large"));

    // A file over the pictures' limit, in a body without a length: read up to it, then refused.
    let mut huge = picture(64, 64);
    huge.resize(MAX_PICTURE_BYTES + 1024, 0);
    let form = Form::new()
        .text("prompt", "x")
        .part("image", Part::stream(huge).file_name("big.png"));
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(openai_error(&body).1.as_deref(), Some("image"));

    assert_nothing_reached_comfyui(&app);

    // A file name that climbs out of a folder changes nothing: names are never used.
    let form = Form::new().text("prompt", "x").part(
        "image",
        file(picture(128, 128), "../../../escape.png", "image/png"),
    );
    let (status, body) = post_form(&app, form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outside = app.data_dir.path().parent().unwrap().join("escape.png");
    assert!(!outside.exists());
    assert!(
        !walk(app.data_dir.path())
            .iter()
            .any(|path| path.file_name().is_some_and(|name| name == "escape.png"))
    );
}

/// Every file and folder under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}
