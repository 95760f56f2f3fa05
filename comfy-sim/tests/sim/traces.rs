//! Replays the recorded ComfyUI 0.8.0 runs (`fixtures/traces/*.jsonl`) against the simulator,
//! run by run in the recorded order, and compares every WebSocket frame and HTTP answer: message
//! types, order and fields, with timestamps and tracebacks left out.
//!
//! Each recorded run is replayed with its own `clientId` and `prompt_id` (ComfyUI accepts both from
//! clients), its graph taken from the recorded history (in its recorded key order), and the
//! simulator's fault knobs standing in for the slow nodes the recording interrupted.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a broken fixture must fail the test loudly"
)]

use std::fmt;

use comfy_sim::{FailureKind, SimOptions};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Value, json};

use crate::support::{Frame, Sim, Ws};
use crate::validation::normalized;

/// JSON that keeps object keys in their written order, to resend recorded graphs as they were.
#[derive(Debug, Clone)]
enum Ordered {
    Plain(Value),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl Ordered {
    fn get(&self, key: &str) -> &Ordered {
        match self {
            Ordered::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v).unwrap(),
            other => panic!("not an object: {other:?}"),
        }
    }

    fn at(&self, index: usize) -> &Ordered {
        match self {
            Ordered::Array(items) => &items[index],
            other => panic!("not an array: {other:?}"),
        }
    }

    fn only_value(&self) -> &Ordered {
        match self {
            Ordered::Object(entries) => &entries[0].1,
            other => panic!("not an object: {other:?}"),
        }
    }

    fn text(&self) -> String {
        serde_json::to_string(self).unwrap()
    }
}

impl Serialize for Ordered {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Ordered::Plain(value) => value.serialize(serializer),
            Ordered::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Ordered::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Ordered, E> {
                Ok(Ordered::Plain(json!(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Ordered, E> {
                Ok(Ordered::Plain(json!(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Ordered, E> {
                Ok(Ordered::Plain(json!(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Ordered, E> {
                Ok(Ordered::Plain(json!(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Plain(json!(v)))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Plain(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered::Object(entries))
            }
        }
        deserializer.deserialize_any(OrderedVisitor)
    }
}

/// Both recordings, one record per line.
struct Trace {
    records: Vec<(Value, Ordered)>,
}

impl Trace {
    fn load() -> Self {
        let mut records = Vec::new();
        for file in ["comfyui-0.8.0-cpu.jsonl", "comfyui-0.8.0-zimage-cpu.jsonl"] {
            let path = format!("{}/fixtures/traces/{file}", env!("CARGO_MANIFEST_DIR"));
            for line in std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                records.push((
                    serde_json::from_str(line).unwrap(),
                    serde_json::from_str(line).unwrap(),
                ));
            }
        }
        Self { records }
    }

    fn run(&self, label: &str) -> Vec<&(Value, Ordered)> {
        let mut run: Vec<&(Value, Ordered)> =
            self.records.iter().filter(|(r, _)| r["label"] == label).collect();
        run.sort_by_key(|(r, _)| r["seq"].as_u64());
        assert!(!run.is_empty(), "no recorded run {label}");
        run
    }

    /// The WebSocket frames the run's client received.
    fn frames(&self, label: &str) -> Vec<Value> {
        self.run(label)
            .into_iter()
            .filter(|(r, _)| r["kind"] == "text" || r["kind"] == "binary")
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// The run's HTTP answers whose description starts with `what`.
    fn http(&self, label: &str, what: &str) -> Vec<(Value, Ordered)> {
        self.run(label)
            .into_iter()
            .filter(|(r, _)| r["kind"] == "http" && r["what"].as_str().unwrap().starts_with(what))
            .cloned()
            .collect()
    }

    /// The client id the run connected with (its greeting's `sid`).
    fn sid(&self, label: &str) -> String {
        let greeting = self
            .frames(label)
            .into_iter()
            .find(|f| f["data"]["data"]["sid"].is_string())
            .unwrap();
        greeting["data"]["data"]["sid"].as_str().unwrap().to_owned()
    }

    /// The POST /prompt body that reproduces the run: its recorded graph (in order), prompt id and
    /// extra data (without what the server adds itself).
    fn body(&self, label: &str) -> String {
        let (record, ordered) = &self.http(label, "GET /history/")[0];
        let prompt_id = record["body"].as_object().unwrap().keys().next().unwrap().clone();
        let tuple = ordered.get("body").only_value().get("prompt");
        body_from_tuple(tuple, &prompt_id)
    }
}

/// A POST /prompt body from a recorded `[number, id, graph, extra_data, outputs]` tuple.
fn body_from_tuple(tuple: &Ordered, prompt_id: &str) -> String {
    let Ordered::Object(extra) = tuple.at(3) else {
        panic!("extra_data is not an object")
    };
    let client_id = extra
        .iter()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.text())
        .unwrap_or("null".to_owned());
    let sent: Vec<(String, Ordered)> = extra
        .iter()
        .filter(|(k, _)| k != "client_id" && k != "create_time")
        .cloned()
        .collect();
    format!(
        r#"{{"prompt": {}, "client_id": {client_id}, "prompt_id": {}, "extra_data": {}}}"#,
        tuple.at(2).text(),
        Value::String(prompt_id.to_owned()),
        Ordered::Object(sent).text()
    )
}

/// Compares a recorded value with the simulator's, field by field. Recorded lists may end in a
/// `"...(N more)"` marker (the recorder shortened them); times and tracebacks only
/// need the right type; id lists that ComfyUI builds from Python sets compare as sets.
fn compare(path: &str, want: &Value, got: &Value, problems: &mut Vec<String>) {
    let key = path.rsplit('/').next().unwrap_or_default();
    let key = if path.ends_with("/prompt/4") && want.is_array() {
        "executed"
    } else {
        key
    };
    match key {
        "timestamp"
        | "create_time"
        | "execution_start_time"
        | "execution_end_time"
        | "number"
        | "priority" => {
            if want.is_number() != got.is_number() {
                problems.push(format!("{path}: {want} vs {got}"));
            }
            return;
        }
        "traceback" => {
            if !got.is_array() {
                problems.push(format!("{path}: not a list: {got}"));
            }
            return;
        }
        // Python sets: `current_outputs`, `executed`, and the outputs to execute (`prompt[4]`).
        "current_outputs" | "executed" => {
            let Some(want_items) = want.as_array() else {
                panic!("{path}: recorded {want}");
            };
            let got_items = got.as_array().cloned().unwrap_or_default();
            // A shortened recorded set: the items it shows are there, and the count adds up.
            if let Some(more) = want_items.last().and_then(Value::as_str).and_then(truncation) {
                let shown = &want_items[..want_items.len() - 1];
                if got_items.len() != shown.len() + more || !shown.iter().all(|w| got_items.contains(w)) {
                    problems.push(format!("{path}: {want} vs {got}"));
                }
                return;
            }
            let mut want_set: Vec<String> = want_items.iter().map(Value::to_string).collect();
            let mut got_set: Vec<String> = got_items.iter().map(Value::to_string).collect();
            want_set.sort();
            got_set.sort();
            if want_set != got_set {
                problems.push(format!("{path}: {want} vs {got}"));
            }
            return;
        }
        _ => {}
    }
    match (want, got) {
        (Value::Array(want_items), Value::Array(got_items)) => {
            let (prefix, expected_len) = match want_items.last().and_then(Value::as_str).and_then(truncation)
            {
                Some(more) => (&want_items[..want_items.len() - 1], want_items.len() - 1 + more),
                None => (&want_items[..], want_items.len()),
            };
            if got_items.len() != expected_len {
                problems.push(format!(
                    "{path}: {expected_len} items recorded, {} got: {got}",
                    got_items.len()
                ));
                return;
            }
            for (index, (w, g)) in prefix.iter().zip(got_items).enumerate() {
                compare(&format!("{path}/{index}"), w, g, problems);
            }
        }
        (Value::Object(want_fields), Value::Object(got_fields)) => {
            for (name, w) in want_fields {
                match got_fields.get(name) {
                    Some(g) => compare(&format!("{path}/{name}"), w, g, problems),
                    None => problems.push(format!("{path}/{name}: missing")),
                }
            }
            for name in got_fields.keys().filter(|k| !want_fields.contains_key(*k)) {
                problems.push(format!("{path}/{name}: not recorded"));
            }
        }
        _ if want != got => problems.push(format!("{path}: {want} vs {got}")),
        _ => {}
    }
}

/// `"...(N more)"` -> N.
fn truncation(marker: &str) -> Option<usize> {
    marker.strip_prefix("...(")?.strip_suffix(" more)")?.parse().ok()
}

fn assert_same(label: &str, what: &str, want: &Value, got: &Value) {
    let mut problems = Vec::new();
    compare("", want, got, &mut problems);
    assert!(
        problems.is_empty(),
        "{label} {what} differs from the recording:\n{}",
        problems.join("\n")
    );
}

/// Compares the frames a client got with the recorded ones, in order.
fn assert_frames(label: &str, recorded: &[Value], got: &[Frame]) {
    let describe = |frames: Vec<String>| frames.join(" ");
    let want_kinds: Vec<String> = recorded
        .iter()
        .map(|r| match r["kind"].as_str() {
            Some("text") => r["data"]["type"].as_str().unwrap().to_owned(),
            _ => format!("binary{}", r["event_type"]),
        })
        .collect();
    let got_kinds: Vec<String> = got.iter().map(Frame::kind).collect();
    assert_eq!(
        got_kinds,
        want_kinds,
        "{label}: frame sequence differs\nrecorded: {}\ngot:      {}",
        describe(want_kinds.clone()),
        describe(got_kinds.clone())
    );
    for (index, (want, frame)) in recorded.iter().zip(got).enumerate() {
        match frame {
            Frame::Json(message) => assert_same(label, &format!("frame {index}"), &want["data"], message),
            Frame::Binary(bytes) => {
                let event_type = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                let second = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
                assert_eq!(json!(event_type), want["event_type"], "{label} frame {index}");
                if event_type == 1 {
                    assert_eq!(
                        json!(second),
                        want["format"],
                        "{label} frame {index}: image format"
                    );
                    assert_eq!(
                        bytes[8..12] == [0x89, b'P', b'N', b'G'],
                        want["png_magic"] == true,
                        "{label} frame {index}"
                    );
                } else {
                    let len = second as usize;
                    let metadata: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
                    assert_same(
                        label,
                        &format!("frame {index} metadata"),
                        &want["metadata"],
                        &metadata,
                    );
                    let magic: String = bytes[8 + len..12 + len]
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    let want_magic = want["image_magic_hex"].as_str().unwrap();
                    assert_eq!(magic[..4], want_magic[..4], "{label} frame {index}: image bytes");
                }
            }
        }
    }
}

struct Replay {
    trace: Trace,
    sim: Sim,
}

impl Replay {
    async fn start(trace: Trace, options: SimOptions) -> Self {
        Self {
            trace,
            sim: Sim::start(options).await,
        }
    }

    /// Connects as the run's client; with the handshake when the recording sent it.
    async fn connect(&self, label: &str) -> (Ws, Vec<Frame>) {
        let sid = self.trace.sid(label);
        let handshake = self.trace.run(label).iter().any(|(r, _)| r["kind"] == "sent");
        if handshake {
            let mut ws = self.sim.connect_ff(&sid).await;
            let greeting = vec![ws.next().await, ws.next().await];
            (ws, greeting)
        } else {
            let mut ws = self.sim.connect(&sid).await;
            let greeting = vec![ws.next().await];
            (ws, greeting)
        }
    }

    async fn submit(&self, label: &str, body: &str) -> String {
        let (status, answer) = self.sim.post_text("/prompt", body).await;
        let recorded = &self.trace.http(label, "POST /prompt")[0].0;
        assert_eq!(
            status.as_u16(),
            recorded["status"].as_u64().unwrap() as u16,
            "{label}: {answer}"
        );
        assert_same(label, "POST /prompt", &recorded["body"], &answer);
        answer["prompt_id"].as_str().unwrap().to_owned()
    }

    /// Compares the run's recorded `/history/{id}` and `/view` answers with the simulator's.
    async fn check_http(&self, label: &str, prompt_id: &str) {
        for (record, _) in self.trace.http(label, "GET /history/") {
            let (_, history) = self.sim.get(&format!("/history/{prompt_id}")).await;
            assert_same(label, "GET /history/{id}", &record["body"], &history);
        }
        for (record, _) in self.trace.http(label, "GET /view") {
            let params = record["params"].as_object().unwrap();
            let query: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
                .collect();
            let response = self
                .sim
                .http
                .get(self.sim.url(&format!("/view?{}", query.join("&"))))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{label}: /view");
            assert_eq!(
                response.headers()["content-type"],
                record["content_type"].as_str().unwrap()
            );
            assert_eq!(
                response.headers()["content-disposition"],
                record["content_disposition"].as_str().unwrap()
            );
            let image = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
            assert_eq!(
                json!([image.width(), image.height()]),
                record["png_wh"],
                "{label}: image size"
            );
        }
    }

    /// A run that goes from submission to the end with nothing in between.
    async fn plain(&self, label: &str) {
        let (mut ws, mut frames) = self.connect(label).await;
        let prompt_id = self.submit(label, &self.trace.body(label)).await;
        frames.extend(ws.until_done(&prompt_id).await);
        assert_frames(label, &self.trace.frames(label), &frames);
        self.check_http(label, &prompt_id).await;
    }

    /// A run interrupted where a hold (set by `hold`) stops it, once `ready` has been seen.
    async fn interrupted(&self, label: &str, ready: impl Fn(&Frame) -> bool) {
        let (mut ws, mut frames) = self.connect(label).await;
        let prompt_id = self.submit(label, &self.trace.body(label)).await;
        loop {
            let frame = ws.next().await;
            let stop = ready(&frame);
            frames.push(frame);
            if stop {
                break;
            }
        }
        let (status, _) = self.sim.post("/interrupt", &json!({})).await;
        assert_eq!(status.as_u16(), 200);
        frames.extend(ws.until_done(&prompt_id).await);
        self.sim.handle.faults().release();
        assert_frames(label, &self.trace.frames(label), &frames);
        self.check_http(label, &prompt_id).await;
    }

    /// Compares every recorded `/api/jobs` answer of a probe run with the simulator's now.
    async fn jobs_probe(&self, label: &str) {
        for (record, _) in self.trace.http(label, "GET /api/") {
            let what = record["what"].as_str().unwrap();
            let path = what.trim_start_matches("GET ");
            if path.contains('{') {
                continue;
            }
            let (status, answer) = self.sim.get(path).await;
            assert_eq!(
                status.as_u16() as u64,
                record["status"].as_u64().unwrap(),
                "{label} {what}"
            );
            if status.as_u16() != 200 || !answer["jobs"].is_array() {
                assert_same(label, what, &record["body"], &answer);
                continue;
            }
            assert_same(label, what, &record["body"]["pagination"], &answer["pagination"]);
            let want_jobs = record["body"]["jobs"].as_array().unwrap();
            let got_jobs = answer["jobs"].as_array().unwrap();
            // Durations differ by design (the simulator is fast), so that order is not compared.
            let same_order = !what.contains("execution_duration");
            for (index, want) in want_jobs.iter().enumerate() {
                let Some(id) = want["id"].as_str() else { continue };
                let got = if same_order {
                    &got_jobs[index]
                } else {
                    got_jobs.iter().find(|j| j["id"] == id).unwrap()
                };
                assert_same(label, &format!("{what} job {id}"), want, got);
            }
        }
        for what in ["GET /queue", "GET /history?"] {
            for (record, _) in self.trace.http(label, what) {
                let path = record["what"].as_str().unwrap().trim_start_matches("GET ");
                let (_, answer) = self.sim.get(path).await;
                assert_same(label, path, &record["body"], &answer);
            }
        }
        for (record, _) in self.trace.http(label, "GET /api/jobs/{") {
            let id = record["body"]["id"].as_str().unwrap();
            let (_, answer) = self.sim.get(&format!("/api/jobs/{id}")).await;
            assert_same(label, "GET /api/jobs/{id}", &record["body"], &answer);
        }
    }
}

/// The models the recording server had.
fn recorded_models(output_dir: &std::path::Path) -> SimOptions {
    SimOptions {
        step_ms: 0,
        previews: false,
        unet_models: vec![
            "broken-not-really.gguf".to_owned(),
            "zimage-random-dim3840-1L-F32.gguf".to_owned(),
        ],
        text_encoders: vec!["qwen3-4b-random-Q4_0.gguf".to_owned()],
        vaes: vec!["tiny-flux-vae.safetensors".to_owned()],
        loras: Vec::new(),
        lora_triggers: std::collections::BTreeMap::new(),
        output_dir: Some(output_dir.to_path_buf()),
    }
}

fn is_executing(frame: &Frame, node: &str) -> bool {
    frame.kind() == "executing" && frame.data()["node"] == node
}

#[tokio::test]
async fn the_recorded_runs_replay_frame_for_frame() {
    let output = tempfile::tempdir().unwrap();
    let replay = Replay::start(Trace::load(), recorded_models(output.path())).await;
    let faults = replay.sim.handle.faults().clone();

    replay.plain("zimage_256_cold").await;
    replay.plain("zimage_256_warm_newseed").await;
    replay.plain("model_free").await;
    replay.plain("model_free_ff").await;

    // The rejected prompts of the recording use up queue numbers, as they did there.
    for (name, body) in crate::validation::ERROR_CASES {
        let label = format!("err_{name}");
        let (status, answer) = replay.sim.post_text("/prompt", body).await;
        let recorded = &replay.trace.http(&label, "POST /prompt")[0].0;
        assert_eq!(
            u64::from(status.as_u16()),
            recorded["status"].as_u64().unwrap(),
            "{label}"
        );
        assert_eq!(
            normalized(answer),
            normalized(recorded["body"].clone()),
            "{label}"
        );
    }
    // One more number went to a prompt the recording does not show.
    replay
        .sim
        .post_text("/prompt", crate::validation::ERROR_CASES[0].1)
        .await;

    // The blur chain the recording interrupted between nodes: hold where the interrupt landed.
    faults.hold_at_node(Some("3".to_owned()));
    replay.interrupted("interrupt", |f| is_executing(f, "3")).await;

    // A second client queues and deletes a prompt while the first one runs.
    faults.hold_at_node(Some("3".to_owned()));
    let (mut background, mut background_frames) = replay.connect("queue_delete_bg").await;
    let background_id = replay
        .submit("queue_delete_bg", &replay.trace.body("queue_delete_bg"))
        .await;
    loop {
        let frame = background.next().await;
        let stop = is_executing(&frame, "3");
        background_frames.push(frame);
        if stop {
            break;
        }
    }
    let (mut deleter, mut deleter_frames) = replay.connect("queue_delete").await;
    let graph = replay.trace.http("queue_delete_bg", "GET /history/")[0]
        .1
        .get("body")
        .only_value()
        .get("prompt")
        .clone();
    let deleted_id = "1a20e89b-99d5-46b3-bfb6-1259a3b6040e";
    replay
        .submit("queue_delete", &body_from_tuple(&graph, deleted_id))
        .await;
    deleter_frames.push(deleter.next().await);
    let (_, queue) = replay.sim.get("/queue").await;
    assert_eq!(queue["queue_running"][0][1], background_id.as_str());
    assert_eq!(queue["queue_pending"][0][1], deleted_id);
    replay.sim.post("/queue", &json!({"delete": [deleted_id]})).await;
    deleter_frames.extend([deleter.next().await, deleter.next().await]);
    assert_frames(
        "queue_delete",
        &replay.trace.frames("queue_delete"),
        &deleter_frames,
    );
    assert_eq!(replay.sim.get("/queue").await.1["queue_pending"], json!([]));
    assert_eq!(
        replay.sim.get(&format!("/history/{deleted_id}")).await.1,
        json!({})
    );
    drop(deleter);
    // The recording's interrupt landed as node 4 began.
    faults.hold_at_node(Some("4".to_owned()));
    loop {
        let frame = background.next().await;
        let stop = is_executing(&frame, "4");
        background_frames.push(frame);
        if stop {
            break;
        }
    }
    replay.sim.post("/interrupt", &json!({})).await;
    background_frames.extend(background.until_done(&background_id).await);
    faults.release();
    assert_frames(
        "queue_delete_bg",
        &replay.trace.frames("queue_delete_bg"),
        &background_frames,
    );
    replay.check_http("queue_delete_bg", &background_id).await;

    // The jobs API while one job runs and one waits.
    let (queue_record, queue_ordered) = &replay.trace.http("jobs_probe", "GET /queue")[0];
    let running = queue_ordered.get("body").get("queue_running").at(0);
    let pending = queue_ordered.get("body").get("queue_pending").at(0);
    faults.hold_at_node(Some("4".to_owned()));
    let running_id = queue_record["body"]["queue_running"][0][1].as_str().unwrap();
    let pending_id = queue_record["body"]["queue_pending"][0][1].as_str().unwrap();
    replay
        .sim
        .post_text("/prompt", &body_from_tuple(running, running_id))
        .await;
    // Its client is not connected (as in the recording), so watch the queue instead.
    while replay.sim.get("/queue").await.1["queue_running"][0][1] != running_id {
        tokio::task::yield_now().await;
    }
    replay
        .sim
        .post_text("/prompt", &body_from_tuple(pending, pending_id))
        .await;
    replay.jobs_probe("jobs_probe").await;
    replay.sim.post("/queue", &json!({"delete": [pending_id]})).await;
    replay.sim.post("/interrupt", &json!({})).await;
    faults.release();
    let _ = replay.sim.wait_for_history(running_id).await;

    faults.hold_at_node(Some("3".to_owned()));
    replay
        .interrupted("zimage_256_interrupt_in_cliptextencode", |f| is_executing(f, "3"))
        .await;
    replay.plain("zimage_256_preview_per_prompt_ff").await;
    replay.plain("zimage_64_warm_preview_per_prompt").await;
    replay.plain("zimage_64_warm_no_override").await;
    faults.hold_at_step(Some(2));
    replay
        .interrupted("zimage_256_interrupt_in_ksampler_te_cached", |f| {
            f.kind() == "progress"
        })
        .await;
    faults.fail_node(Some(("1".to_owned(), FailureKind::Generic)));
    replay.plain("err_runtime_broken_gguf").await;
    faults.fail_node(None);

    replay.jobs_probe("jobs_probe_idle2").await;
    replay.sim.handle.shutdown();

    // A second server, started with `--preview-method latent2rgb`, writing to the same folder.
    let replay = Replay::start(
        Trace::load(),
        SimOptions {
            previews: true,
            ..recorded_models(output.path())
        },
    )
    .await;
    replay.plain("zimage_64_cold_cli_latent2rgb").await;
    replay.plain("zimage_64_warm_cli_latent2rgb_override_none").await;
    replay.plain("zimage_64_warm_cli_latent2rgb_next_prompt").await;
    replay.sim.handle.shutdown();

    // A third one (the recording's `--fp32-text-enc` changes nothing a client sees).
    let replay = Replay::start(Trace::load(), recorded_models(output.path())).await;
    replay.plain("zimage_64_cold_fp32_text_enc").await;
    replay.sim.handle.shutdown();
}

#[test]
fn the_comparison_catches_a_wrong_field_a_wrong_type_and_a_wrong_length() {
    let mut problems = Vec::new();
    compare(
        "",
        &json!({"a": 1.0, "b": ["x", "...(2 more)"], "timestamp": 5}),
        &json!({"a": 1.0, "b": ["x", "y", "z"], "timestamp": 9}),
        &mut problems,
    );
    assert!(problems.is_empty(), "{problems:?}");
    compare("", &json!({"a": 1.0}), &json!({"a": 1}), &mut problems);
    assert_eq!(problems.len(), 1);
    compare(
        "",
        &json!({"b": ["x", "...(2 more)"]}),
        &json!({"b": ["x", "y"]}),
        &mut problems,
    );
    assert_eq!(problems.len(), 2);
    compare("", &json!({"c": "s"}), &json!({"c": "s", "d": 1}), &mut problems);
    assert_eq!(problems.len(), 3);
}
