//! Helpers shared by the simulator's tests: a simulator on port 0, a WebSocket client that waits
//! for messages with a timeout (never sleeps), and the prompts the recordings used.
#![expect(
    clippy::unwrap_used,
    reason = "test support: a failed setup step must fail the test loudly"
)]

use std::time::Duration;

use comfy_sim::{SimHandle, SimOptions, Simulator};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that should happen; generous for slow CI machines.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// Options for fast tests: no delay between sampling steps.
pub(crate) fn fast() -> SimOptions {
    SimOptions {
        step_ms: 0,
        ..SimOptions::default()
    }
}

/// A simulator on 127.0.0.1:0 and an HTTP client for it.
pub(crate) struct Sim {
    pub(crate) handle: SimHandle,
    pub(crate) http: reqwest::Client,
}

impl Sim {
    pub(crate) async fn start(options: SimOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let handle = Simulator::spawn(listener, options).await.unwrap();
        Self {
            handle,
            http: reqwest::Client::new(),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.handle.url())
    }

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.http.post(self.url(path)).json(body).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Posts JSON text as it is (key order included).
    pub(crate) async fn post_text(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Queues a prompt (JSON text) and returns its id (panics unless ComfyUI accepted it).
    pub(crate) async fn queue(&self, body: &str) -> String {
        let (status, answer) = self.post_text("/prompt", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["prompt_id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn connect(&self, client_id: &str) -> Ws {
        Ws::connect(&format!("ws://{}/ws?clientId={client_id}", self.handle.addr())).await
    }

    /// Connects and sends the feature_flags handshake first (type-4 previews).
    pub(crate) async fn connect_ff(&self, client_id: &str) -> Ws {
        let mut ws = self.connect(client_id).await;
        let flags = json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}});
        ws.stream
            .send(Message::Text(flags.to_string().into()))
            .await
            .unwrap();
        ws
    }

    /// Polls `/history/{id}` until the prompt is recorded (the socket may be gone in fault tests).
    pub(crate) async fn wait_for_history(&self, prompt_id: &str) -> Value {
        tokio::time::timeout(PATIENCE, async {
            loop {
                let (_, history) = self.get(&format!("/history/{prompt_id}")).await;
                if let Some(entry) = history.get(prompt_id) {
                    return entry.clone();
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the prompt never reached the history")
    }
}

/// One WebSocket frame, decoded.
#[derive(Debug, Clone)]
pub(crate) enum Frame {
    Json(Value),
    Binary(Vec<u8>),
}

impl Frame {
    pub(crate) fn kind(&self) -> String {
        match self {
            Frame::Json(v) => v["type"].as_str().unwrap_or_default().to_owned(),
            Frame::Binary(bytes) => format!("binary{}", bytes.get(3).copied().unwrap_or(0)),
        }
    }

    pub(crate) fn data(&self) -> &Value {
        match self {
            Frame::Json(v) => &v["data"],
            Frame::Binary(_) => &Value::Null,
        }
    }
}

pub(crate) struct Ws {
    pub(crate) stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub(crate) async fn connect(url: &str) -> Self {
        let (stream, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self { stream }
    }

    /// The next text or binary frame; `None` when the server closed the socket.
    pub(crate) async fn try_next(&mut self) -> Option<Frame> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.stream.next())
                .await
                .expect("no frame in time")?;
            match message {
                Ok(Message::Text(text)) => {
                    return Some(Frame::Json(serde_json::from_str(text.as_str()).unwrap()));
                }
                Ok(Message::Binary(bytes)) => return Some(Frame::Binary(bytes.to_vec())),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    pub(crate) async fn next(&mut self) -> Frame {
        self.try_next().await.expect("the socket closed")
    }

    /// Frames up to and including `executing {node: null}` for this prompt.
    pub(crate) async fn until_done(&mut self, prompt_id: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        loop {
            let frame = self.next().await;
            let done = frame.kind() == "executing"
                && frame.data()["node"].is_null()
                && frame.data()["prompt_id"] == prompt_id;
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    /// Skips frames until one of this type arrives, and returns it.
    pub(crate) async fn until(&mut self, kind: &str) -> Frame {
        loop {
            let frame = self.next().await;
            if frame.kind() == kind {
                return frame;
            }
        }
    }
}

/// The Z-Image graph of the recordings as JSON text, keys in the recorded order (the order of
/// nodes and inputs decides the execution order, so it cannot go through a sorted map).
pub(crate) fn zimage_graph(text: &str, seed: u64, width: u32, height: u32, prefix: &str) -> String {
    let text = Value::String(text.to_owned());
    let prefix = Value::String(prefix.to_owned());
    format!(
        r#"{{"1": {{"class_type": "UnetLoaderGGUF", "inputs": {{"unet_name": "z_image_turbo-Q8_0.gguf"}}}},
        "2": {{"class_type": "CLIPLoaderGGUF", "inputs": {{"clip_name": "Qwen3-4B-Q4_K_M.gguf", "type": "lumina2"}}}},
        "3": {{"class_type": "CLIPTextEncode", "inputs": {{"text": {text}, "clip": ["2", 0]}}}},
        "4": {{"class_type": "ConditioningZeroOut", "inputs": {{"conditioning": ["3", 0]}}}},
        "5": {{"class_type": "ModelSamplingAuraFlow", "inputs": {{"model": ["1", 0], "shift": 3.0}}}},
        "6": {{"class_type": "EmptySD3LatentImage", "inputs": {{"width": {width}, "height": {height}, "batch_size": 1}}}},
        "7": {{"class_type": "KSampler", "inputs": {{"model": ["5", 0], "seed": {seed}, "steps": 8, "cfg": 1.0, "sampler_name": "res_multistep", "scheduler": "simple", "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["6", 0], "denoise": 1.0}}}},
        "8": {{"class_type": "VAELoader", "inputs": {{"vae_name": "ae.safetensors"}}}},
        "9": {{"class_type": "VAEDecode", "inputs": {{"samples": ["7", 0], "vae": ["8", 0]}}}},
        "10": {{"class_type": "SaveImage", "inputs": {{"images": ["9", 0], "filename_prefix": {prefix}}}}}}}"#
    )
}

/// A POST /prompt body (JSON text) for the Z-Image graph with these `extra_data`.
pub(crate) fn zimage_body_with(
    client_id: &str,
    seed: u64,
    width: u32,
    height: u32,
    extra_data: &Value,
) -> String {
    let graph = zimage_graph("a red fox in snow", seed, width, height, "zimage/gen");
    format!(
        r#"{{"prompt": {graph}, "client_id": {}, "extra_data": {extra_data}}}"#,
        Value::String(client_id.to_owned())
    )
}

/// A POST /prompt body (JSON text) for the Z-Image graph.
pub(crate) fn zimage_body(client_id: &str, seed: u64, width: u32, height: u32) -> String {
    zimage_body_with(client_id, seed, width, height, &json!({}))
}

/// The types of the frames, in order.
pub(crate) fn kinds(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(Frame::kind).collect()
}
