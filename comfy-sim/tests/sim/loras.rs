//! LoRA files: listed by `LoraLoaderModelOnly` as ComfyUI lists models/loras (and again after a file is
//! dropped in or taken out), a name not listed refused as ComfyUI refuses a combo value, each file's
//! metadata served by `/view_metadata/loras`, and an image made with a LoRA that differs from one
//! made without.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a broken answer must fail the test loudly"
)]

use comfy_sim::SimOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Sim, fast, zimage_graph};

fn with_loras() -> SimOptions {
    SimOptions {
        loras: vec!["styles/ink.safetensors".to_owned(), "a.safetensors".to_owned()],
        lora_triggers: [("a.safetensors".to_owned(), "zzstyle".to_owned())].into(),
        ..fast()
    }
}

/// The recorded Z-Image graph with a `LoraLoaderModelOnly` between the model loader and
/// `ModelSamplingAuraFlow`, as a prompt body.
fn body_with_lora(name: &str, strength: f64) -> Value {
    let mut graph: Value = serde_json::from_str(&zimage_graph("a fox", 5, 64, 64, "zimage/lora")).unwrap();
    graph["20"] = json!({"class_type": "LoraLoaderModelOnly", "inputs": {
        "model": ["1", 0], "lora_name": name, "strength_model": strength,
    }});
    graph["5"]["inputs"]["model"] = json!(["20", 0]);
    json!({"prompt": graph, "client_id": "lora-test"})
}

#[tokio::test]
async fn the_lora_files_are_listed_checked_and_relisted_when_they_change() {
    let sim = Sim::start(with_loras()).await;
    let (status, info) = sim.get("/object_info/LoraLoaderModelOnly").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        info["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0],
        json!(["a.safetensors", "styles/ink.safetensors"])
    );
    let (status, answer) = sim
        .post("/prompt", &body_with_lora("nope.safetensors", 1.0))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["type"], "prompt_outputs_failed_validation");
    let errors = &answer["node_errors"]["20"]["errors"];
    assert_eq!(errors[0]["type"], "value_not_in_list", "{answer}");
    assert_eq!(errors[0]["extra_info"]["input_name"], "lora_name");
    let (status, answer) = sim.post("/prompt", &body_with_lora("a.safetensors", 0.8)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    sim.handle.set_loras(vec!["nope.safetensors".to_owned()]);
    assert_eq!(sim.handle.loras(), ["nope.safetensors"]);
    let (_, info) = sim.get("/object_info/LoraLoaderModelOnly").await;
    assert_eq!(
        info["LoraLoaderModelOnly"]["input"]["required"]["lora_name"][0],
        json!(["nope.safetensors"])
    );
    let (status, answer) = sim.post("/prompt", &body_with_lora("a.safetensors", 0.8)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn a_lora_files_metadata_is_served_with_its_trigger_phrase() {
    let sim = Sim::start(with_loras()).await;
    let (status, metadata) = sim.get("/view_metadata/loras?filename=a.safetensors").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["modelspec.trigger_phrase"], "zzstyle");
    assert_eq!(metadata["ss_output_name"], "a");
    let (status, metadata) = sim
        .get("/view_metadata/loras?filename=styles%2Fink.safetensors")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(metadata.get("modelspec.trigger_phrase").is_none());
    for path in [
        "/view_metadata/loras?filename=missing.safetensors",
        "/view_metadata/loras",
        "/view_metadata/checkpoints?filename=a.safetensors",
    ] {
        assert_eq!(sim.get(path).await.0, StatusCode::NOT_FOUND, "{path}");
    }
}
