//! Rejected prompts answer exactly like the recorded `fixtures/errors/*.json` of ComfyUI 0.8.0.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a broken fixture must fail the test loudly"
)]

use comfy_sim::SimOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Sim, fast};

/// The models the recording server had, so the option lists in the errors match.
pub(crate) fn recorded_models() -> SimOptions {
    SimOptions {
        unet_models: vec![
            "broken-not-really.gguf".to_owned(),
            "zimage-random-dim3840-1L-F32.gguf".to_owned(),
        ],
        text_encoders: vec!["qwen3-4b-random-Q4_0.gguf".to_owned()],
        vaes: vec!["tiny-flux-vae.safetensors".to_owned()],
        ..fast()
    }
}

fn recorded(name: &str) -> (StatusCode, Value) {
    let path = format!("{}/fixtures/errors/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    (
        StatusCode::from_u16(u16::try_from(file["status"].as_u64().unwrap()).unwrap()).unwrap(),
        file["body"].clone(),
    )
}

/// ComfyUI lists a node's errors in set order, which varies run to run: compare them sorted.
pub(crate) fn normalized(mut body: Value) -> Value {
    if let Some(nodes) = body.get_mut("node_errors").and_then(Value::as_object_mut) {
        for node in nodes.values_mut() {
            if let Some(errors) = node.get_mut("errors").and_then(Value::as_array_mut) {
                errors.sort_by_key(|e| e.to_string());
            }
        }
    }
    body
}

async fn assert_matches_recording(name: &str, body: &str) {
    let sim = Sim::start(recorded_models()).await;
    let response = sim
        .http
        .post(sim.url("/prompt"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    let response = response.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let (want_status, want_body) = recorded(name);
    assert_eq!(status, want_status, "{name}: {text}");
    let got = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert_eq!(normalized(got), normalized(want_body), "{name}");
}

/// Bodies that make ComfyUI answer each recorded error, by fixture name, in the recorded order.
pub(crate) const ERROR_CASES: [(&str, &str); 8] = [
    (
        "unknown_class",
        r#"{"prompt": {"1": {"class_type": "NoSuchNodeXYZ", "inputs": {}}}}"#,
    ),
    (
        "int_out_of_range",
        r#"{"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 99999, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "peer_err"}}}}"#,
    ),
    (
        "missing_model",
        r#"{"prompt": {
        "1": {"class_type": "UnetLoaderGGUF", "inputs": {"unet_name": "does-not-exist.gguf"}},
        "2": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": 3.0}},
        "3": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "CLIPLoaderGGUF", "inputs": {"clip_name": "missing-te.gguf", "type": "lumina2"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 0]}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["2", 0], "seed": 1, "steps": 8, "cfg": 1.0, "sampler_name": "euler", "scheduler": "simple", "positive": ["5", 0], "negative": ["5", 0], "latent_image": ["3", 0], "denoise": 1.0}},
        "7": {"class_type": "VAELoader", "inputs": {"vae_name": "missing-vae.safetensors"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["7", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "peer_err"}}}}"#,
    ),
    (
        "no_output",
        r#"{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}}"#,
    ),
    (
        "bad_link",
        r#"{"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "peer_err"}}}}"#,
    ),
    (
        "runtime_bad_enum_float",
        r#"{"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "nope", "width": 16.5, "height": 16, "crop": "disabled"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "peer_err"}}}}"#,
    ),
    ("non_json_body", "this is { not json"),
    ("no_prompt", r#"{"client_id": "x"}"#),
];

#[tokio::test]
async fn every_recorded_rejection_is_answered_the_same() {
    for (name, body) in ERROR_CASES {
        assert_matches_recording(name, body).await;
    }
}

#[tokio::test]
async fn rejected_prompts_use_up_queue_numbers() {
    let sim = Sim::start(fast()).await;
    sim.post(
        "/prompt",
        &json!({"prompt": {"1": {"class_type": "Nope", "inputs": {}}}}),
    )
    .await;
    sim.post("/prompt", &json!({"client_id": "no prompt here"})).await;
    let body = r#"{"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "n"}}}}"#;
    let (status, answer) = sim.post_text("/prompt", body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["number"], 2);
}

#[tokio::test]
async fn a_missing_required_input_and_a_bad_sampler_are_reported_per_node() {
    let sim = Sim::start(fast()).await;
    let body = r#"{"prompt": {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "n"}}}}"#;
    let (status, answer) = sim.post_text("/prompt", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["type"], "prompt_outputs_failed_validation");
    assert_eq!(
        answer["node_errors"]["1"]["errors"][0],
        json!({"type": "required_input_missing", "message": "Required input is missing", "details": "height", "extra_info": {"input_name": "height"}})
    );
}
