//! `POST /upload/image`, the input folder and graphs that start from a picture, as ComfyUI 0.8.0 was
//! recorded doing them (renames, the 400s, any bytes taken, LoadImage's own check of its file), and
//! an output that shows which picture was used and which part was painted over.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a broken fixture must fail the test loudly"
)]

use std::io::Cursor;

use image::{Rgb, RgbImage, Rgba, RgbaImage};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::{Sim, fast};
use crate::validation::{normalized, recorded_models};

fn png_of(image: image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

fn solid(color: [u8; 3]) -> Vec<u8> {
    png_of(RgbImage::from_pixel(64, 64, Rgb(color)).into())
}

impl Sim {
    /// Uploads `bytes` as `file_name` with these extra text fields; the status and the body's text.
    async fn upload(&self, file_name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let mut form = Form::new().part("image", Part::bytes(bytes).file_name(file_name.to_owned()));
        for (name, value) in fields {
            form = form.text((*name).to_owned(), (*value).to_owned());
        }
        let response = self
            .http
            .post(self.url("/upload/image"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn upload_json(&self, file_name: &str, bytes: Vec<u8>, fields: &[(&str, &str)]) -> Value {
        let (status, body) = self.upload(file_name, bytes, fields).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn view(&self, query: &str) -> (StatusCode, Vec<u8>) {
        let response = self
            .http
            .get(self.url(&format!("/view?{query}")))
            .send()
            .await
            .unwrap();
        (response.status(), response.bytes().await.unwrap().to_vec())
    }

    /// Runs a graph to its end and answers its saved picture.
    async fn run_to_picture(&self, graph: &Value) -> RgbImage {
        let prompt_id = self.queue(&json!({"prompt": graph}).to_string()).await;
        let entry = self.wait_for_history(&prompt_id).await;
        assert_eq!(entry["status"]["status_str"], "success", "{entry}");
        let image = &entry["outputs"]["10"]["images"][0];
        let query = format!(
            "filename={}&subfolder={}&type=output",
            image["filename"].as_str().unwrap(),
            image["subfolder"].as_str().unwrap()
        );
        let (status, png) = self.view(&query).await;
        assert_eq!(status, StatusCode::OK);
        image::load_from_memory(&png).unwrap().to_rgb8()
    }
}

/// The recorded image-to-image graph (`graphs/img2img_64.json`) with the simulator's model files,
/// loading `image` with this `denoise`, or the recorded paint-over graph when `masked`.
fn graph(image: &str, seed: u64, denoise: f64, masked: bool) -> Value {
    let recorded = if masked {
        include_str!("../../../server/src/comfy/fixtures/graphs/inpaint_64.json")
    } else {
        include_str!("../../../server/src/comfy/fixtures/graphs/img2img_64.json")
    };
    let mut graph: Value = serde_json::from_str(recorded).unwrap();
    graph["1"]["inputs"]["unet_name"] = json!("z_image_turbo-Q8_0.gguf");
    graph["2"]["inputs"]["clip_name"] = json!("Qwen3-4B-Q4_K_M.gguf");
    graph["8"]["inputs"]["vae_name"] = json!("ae.safetensors");
    graph["7"]["inputs"]["seed"] = json!(seed);
    graph["7"]["inputs"]["denoise"] = json!(denoise);
    graph["11"]["inputs"]["image"] = json!(image);
    graph
}

fn mix(picture: u8, pattern: u8, weight: f32) -> u8 {
    (f32::from(picture) * (1.0 - weight) + f32::from(pattern) * weight).round() as u8
}

#[tokio::test]
async fn uploads_keep_same_bytes_rename_other_bytes_and_replace_when_told() {
    let sim = Sim::start(fast()).await;
    let red = solid([255, 0, 0]);
    let blue = solid([0, 0, 255]);
    let first = sim.upload_json("red.png", red.clone(), &[]).await;
    assert_eq!(
        first,
        json!({"name": "red.png", "subfolder": "", "type": "input"})
    );
    assert_eq!(
        sim.upload_json("red.png", red.clone(), &[]).await["name"],
        "red.png"
    );
    assert_eq!(
        sim.upload_json("red.png", blue.clone(), &[]).await["name"],
        "red (1).png"
    );
    assert_eq!(
        sim.view("filename=red%20(1).png&type=input").await,
        (StatusCode::OK, blue.clone())
    );
    assert_eq!(
        sim.view("filename=red.png&type=input").await,
        (StatusCode::OK, red)
    );
    let replaced = sim
        .upload_json("red.png", blue.clone(), &[("overwrite", "true")])
        .await;
    assert_eq!(replaced["name"], "red.png");
    assert_eq!(
        sim.view("filename=red.png&type=input").await,
        (StatusCode::OK, blue)
    );
}

#[tokio::test]
async fn a_subfolder_holds_uploads_and_paths_out_of_input_or_no_image_are_400_without_body() {
    let sim = Sim::start(fast()).await;
    let answer = sim
        .upload_json(
            "zimage-a.png",
            solid([1, 2, 3]),
            &[("subfolder", "zimage"), ("overwrite", "true")],
        )
        .await;
    assert_eq!(
        answer,
        json!({"name": "zimage-a.png", "subfolder": "zimage", "type": "input"})
    );
    assert_eq!(
        sim.view("filename=zimage-a.png&subfolder=zimage&type=input")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        sim.upload("x.png", solid([0, 0, 0]), &[("subfolder", "../../x")])
            .await,
        (StatusCode::BAD_REQUEST, String::new())
    );
    assert_eq!(
        sim.upload("../escape.png", solid([0, 0, 0]), &[]).await,
        (StatusCode::BAD_REQUEST, String::new())
    );
    let form = Form::new().text("subfolder", "zimage");
    let response = sim
        .http
        .post(sim.url("/upload/image"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "");
    // Not a form at all: aiohttp reads an empty form, so no image either.
    let (status, body) = sim.post_text("/upload/image", "{}").await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, Value::String(String::new()))
    );
}

#[tokio::test]
async fn any_bytes_are_taken_and_fail_only_when_loaded() {
    let sim = Sim::start(fast()).await;
    let answer = sim
        .upload_json("bad.png", b"not a png at all".to_vec(), &[])
        .await;
    assert_eq!(answer["name"], "bad.png");
    // LoadImage lists the files directly in input/ (not those of subfolders).
    sim.upload_json("sub.png", solid([9, 9, 9]), &[("subfolder", "zimage")])
        .await;
    let (_, info) = sim.get("/object_info/LoadImage").await;
    assert_eq!(
        info["LoadImage"]["input"]["required"]["image"][0],
        json!(["bad.png"])
    );
    let (_, all) = sim.get("/object_info").await;
    assert_eq!(all["LoadImage"]["output"], json!(["IMAGE", "MASK"]));
    // The file exists, so the prompt is accepted; opening it fails while it runs.
    let prompt_id = sim
        .queue(&json!({"prompt": graph("bad.png", 1, 0.6, false)}).to_string())
        .await;
    let entry = sim.wait_for_history(&prompt_id).await;
    assert_eq!(entry["status"]["status_str"], "error", "{entry}");
    let messages = entry["status"]["messages"].to_string();
    assert!(messages.contains("cannot identify image file"), "{messages}");
}

#[tokio::test]
async fn a_missing_file_is_refused_as_recorded() {
    let sim = Sim::start(recorded_models()).await;
    let mut graph: Value = serde_json::from_str(include_str!(
        "../../../server/src/comfy/fixtures/graphs/img2img_64.json"
    ))
    .unwrap();
    graph["11"]["inputs"]["image"] = json!("no-such-file.png");
    let (status, body) = sim.post("/prompt", &json!({"prompt": graph})).await;
    let recorded: Value =
        serde_json::from_str(include_str!("../../fixtures/errors/loadimage_missing_file.json")).unwrap();
    assert_eq!(status.as_u16(), recorded["status"]);
    assert_eq!(normalized(body), normalized(recorded["body"].clone()));
}

#[tokio::test]
async fn an_image_to_image_output_is_the_picture_moved_towards_the_pattern_by_the_denoise() {
    let sim = Sim::start(fast()).await;
    sim.upload_json(
        "source-0.png",
        solid([255, 0, 0]),
        &[("subfolder", "zimage"), ("overwrite", "true")],
    )
    .await;
    let output = sim
        .run_to_picture(&graph("zimage/source-0.png", 42, 0.6, false))
        .await;
    assert_eq!(output.dimensions(), (64, 64));
    for (x, y) in [(0, 0), (10, 20), (63, 63)] {
        let pattern = comfy_sim::images::seed_pixel(42, x, y, 64, 64);
        let expected = [
            mix(255, pattern[0], 0.6),
            mix(0, pattern[1], 0.6),
            mix(0, pattern[2], 0.6),
        ];
        assert_eq!(output.get_pixel(x, y).0, expected, "({x}, {y})");
    }
    // The same name replaced by another picture: the next run loads the new one (not a cached load).
    sim.upload_json(
        "source-0.png",
        solid([0, 0, 255]),
        &[("subfolder", "zimage"), ("overwrite", "true")],
    )
    .await;
    let again = sim
        .run_to_picture(&graph("zimage/source-0.png", 42, 0.6, false))
        .await;
    let pattern = comfy_sim::images::seed_pixel(42, 10, 20, 64, 64);
    assert_eq!(again.get_pixel(10, 20).0[2], mix(255, pattern[2], 0.6));
    assert_ne!(again, output);
}

#[tokio::test]
async fn painting_over_changes_only_the_transparent_part() {
    let sim = Sim::start(fast()).await;
    // Green, transparent (to repaint) on the left half.
    let picture = RgbaImage::from_fn(64, 64, |x, _| Rgba([0, 200, 0, if x < 32 { 0 } else { 255 }]));
    sim.upload_json(
        "source-1.png",
        png_of(picture.into()),
        &[("subfolder", "zimage"), ("overwrite", "true")],
    )
    .await;
    let output = sim
        .run_to_picture(&graph("zimage/source-1.png", 7, 1.0, true))
        .await;
    for y in [0, 31, 63] {
        assert_eq!(
            output.get_pixel(5, y).0,
            comfy_sim::images::seed_pixel(7, 5, y, 64, 64)
        );
        assert_eq!(output.get_pixel(50, y).0, [0, 200, 0]);
    }
}
