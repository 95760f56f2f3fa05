//! ComfyUI's wire format: the WebSocket text and binary frames it sends, and the JSON bodies of the HTTP
//! answers the client reads (prompt rejections, job records, history entries, the queue, system stats).
//!
//! Decoding never panics and is lenient where ComfyUI varies between releases: unknown message types and
//! binary event types are ignored, missing optional fields take defaults, and numbers may be ints or floats.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::{ExecutionFailure, OutputImage, RemoteState};

/// One decoded WebSocket message from ComfyUI.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The queue length changed; `sid` is this socket's client id, sent once on connect.
    Status {
        queue_remaining: u32,
        sid: Option<String>,
    },
    /// ComfyUI's answer to our feature-flags handshake.
    FeatureFlags { supports_preview_metadata: bool },
    /// A prompt began executing.
    ExecutionStart { prompt_id: String },
    /// Nodes of the prompt were taken from the cache and will not run.
    ExecutionCached { prompt_id: String, nodes: Vec<String> },
    /// A node began (`node: Some`) or the prompt is done (`node: None`). On connect ComfyUI may replay the
    /// running node without a `prompt_id`.
    Executing {
        prompt_id: Option<String>,
        node: Option<String>,
    },
    /// A node's progress, e.g. KSampler step `value` of `max`.
    Progress {
        prompt_id: Option<String>,
        node: Option<String>,
        value: u32,
        max: u32,
    },
    /// A node produced UI output: the files SaveImage wrote.
    Executed {
        prompt_id: String,
        node: String,
        images: Vec<OutputImage>,
    },
    /// The prompt ran to the end.
    ExecutionSuccess { prompt_id: String },
    /// A node raised an exception; the prompt failed.
    ExecutionError {
        prompt_id: String,
        failure: ExecutionFailure,
    },
    /// The prompt was interrupted.
    ExecutionInterrupted {
        prompt_id: String,
        node_id: Option<String>,
    },
    /// A live preview image (binary frame type 1, or type 4 with its metadata).
    Preview(Preview),
}

/// A preview image from a binary frame. Type-1 frames carry no prompt id: the socket attributes them to
/// the prompt of the latest `progress` message.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Present in type-4 frames only.
    pub prompt_id: Option<String>,
    /// The node that made it (KSampler), present in type-4 frames only.
    pub node: Option<String>,
    pub image: Bytes,
    /// `image/jpeg` or `image/png`.
    pub mime: &'static str,
}

/// Why a frame could not be decoded. The socket logs it and goes on: one bad frame is not a dead socket.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("text frame is not a JSON message with a type: {0}")]
    NotAMessage(serde_json::Error),
    #[error("{kind} message has an unexpected shape: {source}")]
    BadShape { kind: String, source: serde_json::Error },
    #[error("binary frame of {len} bytes is too short")]
    TooShort { len: usize },
    #[error("binary preview has unknown image format {0}")]
    UnknownImageFormat(u32),
    #[error("binary preview metadata claims {claimed} bytes but the frame has {available}")]
    MetadataTooLong { claimed: usize, available: usize },
    #[error("binary preview metadata is not valid: {0}")]
    BadMetadata(serde_json::Error),
    #[error("binary preview has unknown image type {0:?}")]
    UnknownImageType(String),
}

/// The text frame a client sends first to get previews as type-4 frames tagged with their prompt id.
pub fn feature_flags_handshake() -> String {
    serde_json::json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}).to_string()
}

/// Decodes a text frame. `Ok(None)` for message types the gateway does not use (or does not know).
pub fn decode_text(text: &str) -> Result<Option<ServerMessage>, DecodeError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        data: Value,
    }
    let envelope: Envelope = serde_json::from_str(text).map_err(DecodeError::NotAMessage)?;
    let data = envelope.data;
    let shape = |source| DecodeError::BadShape {
        kind: envelope.kind.clone(),
        source,
    };
    let message = match envelope.kind.as_str() {
        "status" => {
            let status: StatusData = serde_json::from_value(data).map_err(shape)?;
            ServerMessage::Status {
                queue_remaining: status.status.exec_info.queue_remaining,
                sid: status.sid,
            }
        }
        "feature_flags" => {
            let flags: FeatureFlagsData = serde_json::from_value(data).map_err(shape)?;
            ServerMessage::FeatureFlags {
                supports_preview_metadata: flags.supports_preview_metadata,
            }
        }
        "execution_start" | "execution_success" => {
            let data: PromptData = serde_json::from_value(data).map_err(shape)?;
            if envelope.kind == "execution_start" {
                ServerMessage::ExecutionStart {
                    prompt_id: data.prompt_id,
                }
            } else {
                ServerMessage::ExecutionSuccess {
                    prompt_id: data.prompt_id,
                }
            }
        }
        "execution_cached" => {
            let data: CachedData = serde_json::from_value(data).map_err(shape)?;
            ServerMessage::ExecutionCached {
                prompt_id: data.prompt_id,
                nodes: data.nodes,
            }
        }
        "executing" => {
            let data: ExecutingData = serde_json::from_value(data).map_err(shape)?;
            ServerMessage::Executing {
                prompt_id: data.prompt_id,
                node: data.node,
            }
        }
        "progress" => {
            let data: ProgressData = serde_json::from_value(data).map_err(shape)?;
            ServerMessage::Progress {
                prompt_id: data.prompt_id,
                node: data.node,
                value: count(data.value),
                max: count(data.max),
            }
        }
        "executed" => {
            let data: ExecutedData = serde_json::from_value(data).map_err(shape)?;
            let images = data.output.images.into_iter().map(OutputImage::from).collect();
            ServerMessage::Executed {
                prompt_id: data.prompt_id,
                node: data.node,
                images,
            }
        }
        "execution_error" => {
            let data: ExecutionErrorData = serde_json::from_value(data).map_err(shape)?;
            let prompt_id = data.prompt_id.clone();
            ServerMessage::ExecutionError {
                prompt_id,
                failure: data.into(),
            }
        }
        "execution_interrupted" => {
            let data: InterruptedData = serde_json::from_value(data).map_err(shape)?;
            ServerMessage::ExecutionInterrupted {
                prompt_id: data.prompt_id,
                node_id: data.node_id,
            }
        }
        // `progress_state` repeats what `progress` and `executing` say; other types (from newer releases
        // or custom nodes) are not ours to interpret.
        _ => return Ok(None),
    };
    Ok(Some(message))
}

/// Binary event types (ComfyUI `protocol.py` `BinaryEventTypes`).
const PREVIEW_IMAGE: u32 = 1;
const PREVIEW_IMAGE_WITH_METADATA: u32 = 4;

/// Decodes a binary frame: `u32be event type`, then for type 1 `u32be format (1 JPEG, 2 PNG)` and the
/// image, for type 4 `u32be json length`, the JSON metadata and the image. Other types (3 is streamed
/// node text) are ignored with `Ok(None)`.
pub fn decode_binary(frame: &Bytes) -> Result<Option<ServerMessage>, DecodeError> {
    let too_short = || DecodeError::TooShort { len: frame.len() };
    let event_type = read_u32(frame, 0).ok_or_else(too_short)?;
    match event_type {
        PREVIEW_IMAGE => {
            let format = read_u32(frame, 4).ok_or_else(too_short)?;
            let mime = match format {
                1 => "image/jpeg",
                2 => "image/png",
                other => return Err(DecodeError::UnknownImageFormat(other)),
            };
            Ok(Some(ServerMessage::Preview(Preview {
                prompt_id: None,
                node: None,
                image: frame.slice(8..),
                mime,
            })))
        }
        PREVIEW_IMAGE_WITH_METADATA => {
            let claimed = read_u32(frame, 4).ok_or_else(too_short)? as usize;
            let available = frame.len() - 8;
            if claimed > available {
                return Err(DecodeError::MetadataTooLong { claimed, available });
            }
            let metadata: PreviewMetadata =
                serde_json::from_slice(&frame[8..8 + claimed]).map_err(DecodeError::BadMetadata)?;
            let image = frame.slice(8 + claimed..);
            let mime = match metadata.image_type.as_deref() {
                Some("image/jpeg") => "image/jpeg",
                Some("image/png") => "image/png",
                Some(other) => return Err(DecodeError::UnknownImageType(other.to_owned())),
                None => sniff_image(&image).ok_or_else(|| DecodeError::UnknownImageType(String::new()))?,
            };
            let node = metadata.display_node_id.or(metadata.node_id);
            Ok(Some(ServerMessage::Preview(Preview {
                prompt_id: metadata.prompt_id,
                node,
                image,
                mime,
            })))
        }
        _ => Ok(None),
    }
}

fn read_u32(frame: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = frame.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn sniff_image(image: &[u8]) -> Option<&'static str> {
    if image.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if image.starts_with(b"\x89PNG") {
        Some("image/png")
    } else {
        None
    }
}

/// Progress numbers arrive as ints or floats; negative, NaN and huge values saturate instead of failing.
fn count(value: f64) -> u32 {
    // `as` from float to int saturates and maps NaN to 0.
    value as u32
}

#[derive(Deserialize)]
struct StatusData {
    status: StatusInner,
    #[serde(default)]
    sid: Option<String>,
}

#[derive(Deserialize)]
struct StatusInner {
    exec_info: ExecInfo,
}

#[derive(Deserialize)]
struct ExecInfo {
    queue_remaining: u32,
}

#[derive(Deserialize)]
struct FeatureFlagsData {
    #[serde(default)]
    supports_preview_metadata: bool,
}

#[derive(Deserialize)]
struct PromptData {
    prompt_id: String,
}

#[derive(Deserialize)]
struct CachedData {
    prompt_id: String,
    #[serde(default)]
    nodes: Vec<String>,
}

#[derive(Deserialize)]
struct ExecutingData {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    prompt_id: Option<String>,
}

#[derive(Deserialize)]
struct ProgressData {
    value: f64,
    max: f64,
    #[serde(default)]
    prompt_id: Option<String>,
    #[serde(default)]
    node: Option<String>,
}

#[derive(Deserialize)]
struct ExecutedData {
    prompt_id: String,
    node: String,
    #[serde(default)]
    output: NodeOutput,
}

#[derive(Deserialize, Default)]
struct NodeOutput {
    #[serde(default)]
    images: Vec<WireImage>,
}

/// A file in ComfyUI's `{filename, subfolder, type}` form.
#[derive(Debug, Deserialize)]
struct WireImage {
    filename: String,
    #[serde(default)]
    subfolder: String,
    #[serde(rename = "type", default = "default_folder_type")]
    folder_type: String,
}

fn default_folder_type() -> String {
    "output".to_owned()
}

impl From<WireImage> for OutputImage {
    fn from(image: WireImage) -> OutputImage {
        OutputImage {
            filename: image.filename,
            subfolder: image.subfolder,
            folder_type: image.folder_type,
        }
    }
}

#[derive(Deserialize)]
struct ExecutionErrorData {
    #[serde(default)]
    prompt_id: String,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    node_type: Option<String>,
    #[serde(default)]
    exception_type: Option<String>,
    #[serde(default)]
    exception_message: Option<String>,
}

impl From<ExecutionErrorData> for ExecutionFailure {
    fn from(data: ExecutionErrorData) -> ExecutionFailure {
        ExecutionFailure {
            node_id: data.node_id.unwrap_or_default(),
            node_type: data.node_type.unwrap_or_default(),
            exception_type: data.exception_type.unwrap_or_default(),
            exception_message: data.exception_message.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct InterruptedData {
    prompt_id: String,
    #[serde(default)]
    node_id: Option<String>,
}

#[derive(Deserialize)]
struct PreviewMetadata {
    #[serde(default)]
    prompt_id: Option<String>,
    #[serde(default)]
    node_id: Option<String>,
    #[serde(default)]
    display_node_id: Option<String>,
    #[serde(default)]
    image_type: Option<String>,
}

// ---------------------------------------------------------------------------------------------------
// HTTP bodies. Private to the adapter: the rest of the gateway sees `RemoteState`, `Probe` and `Error`.
// ---------------------------------------------------------------------------------------------------

/// The `200` answer of `POST /prompt`.
#[derive(Debug, Deserialize)]
pub(super) struct PromptAccepted {
    pub(super) prompt_id: String,
    #[serde(default)]
    pub(super) node_errors: Value,
}

/// The `200` answer of `POST /upload/image`: `{"name": "red (1).png", "subfolder": "zimage", "type": "input"}`.
#[derive(Debug, Deserialize)]
pub(super) struct Uploaded {
    pub(super) name: String,
    #[serde(default)]
    pub(super) subfolder: String,
}

impl Uploaded {
    /// The value of `LoadImage.image` for this file: `subfolder/name`, or the name alone.
    pub(super) fn load_image_name(&self) -> String {
        if self.subfolder.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{}", self.subfolder, self.name)
        }
    }
}

/// Codes of [`super::Error::Rejected`], picked by what a person has to do about the rejection.
pub(super) mod rejection_code {
    pub(in crate::comfy) const MISSING_NODE: &str = "missing_node";
    pub(in crate::comfy) const MODEL_NOT_INSTALLED: &str = "model_not_installed";
    pub(in crate::comfy) const INVALID_OPTION: &str = "invalid_option";
    pub(in crate::comfy) const OUT_OF_RANGE: &str = "out_of_range";
    pub(in crate::comfy) const INVALID_WORKFLOW: &str = "invalid_workflow";
    pub(in crate::comfy) const SOURCE_MISSING: &str = "source_missing";
}

/// Turns the body of a `400` from `POST /prompt` into a code and a sentence a person can act on.
/// The order of `node_errors` varies between runs, so nodes are read in id order.
pub(super) fn describe_rejection(body: &Value) -> (&'static str, String) {
    let error = body.get("error");
    let error_type = error
        .and_then(|error| error.get("type"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let error_message = error
        .and_then(|error| error.get("message").or(Some(error)))
        .and_then(Value::as_str)
        .unwrap_or("ComfyUI refused the workflow")
        .to_owned();
    match error_type {
        "invalid_prompt" if error_message.contains("does not exist") => {
            let class_type = error_message
                .split_once("node ")
                .and_then(|(_, rest)| rest.split_once(" does not exist"))
                .map(|(class_type, _)| class_type.to_owned())
                .unwrap_or_default();
            (rejection_code::MISSING_NODE, missing_node_message(&class_type))
        }
        "prompt_no_outputs" => (
            rejection_code::INVALID_WORKFLOW,
            "The workflow has no output node (such as SaveImage), so ComfyUI would produce nothing."
                .to_owned(),
        ),
        _ => {
            let reasons = node_error_reasons(body.get("node_errors"));
            match reasons.iter().min_by_key(|(code, _)| code_rank(code)) {
                Some((code, _)) => {
                    let sentences: Vec<&str> =
                        reasons.iter().map(|(_, sentence)| sentence.as_str()).collect();
                    (code, sentences.join(" "))
                }
                None => {
                    let details = error
                        .and_then(|error| error.get("details"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let message = if details.is_empty() || details == error_message {
                        format!("ComfyUI refused the workflow: {error_message}.")
                    } else {
                        format!("ComfyUI refused the workflow: {error_message} ({details}).")
                    };
                    (rejection_code::INVALID_WORKFLOW, message)
                }
            }
        }
    }
}

fn missing_node_message(class_type: &str) -> String {
    match super::workflow::node_pack_hint(class_type) {
        Some(pack) => {
            format!(
                "ComfyUI has no node type {class_type}: install the {pack} node pack and restart ComfyUI."
            )
        }
        None => format!(
            "ComfyUI has no node type {class_type}: install the node pack that provides it and restart \
             ComfyUI."
        ),
    }
}

/// Lower ranks name the more fundamental problem, which picks the code of a multi-error rejection.
fn code_rank(code: &str) -> u8 {
    match code {
        rejection_code::MISSING_NODE => 0,
        rejection_code::MODEL_NOT_INSTALLED => 1,
        rejection_code::INVALID_OPTION => 2,
        rejection_code::OUT_OF_RANGE => 3,
        _ => 4,
    }
}

fn node_error_reasons(node_errors: Option<&Value>) -> Vec<(&'static str, String)> {
    let Some(node_errors) = node_errors.and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut nodes: Vec<(&String, &Value)> = node_errors.iter().collect();
    nodes.sort_by(|(left, _), (right, _)| {
        (left.parse::<u64>().ok(), *left).cmp(&(right.parse::<u64>().ok(), *right))
    });
    let mut reasons = Vec::new();
    for (node, entry) in nodes {
        let class_type = entry.get("class_type").and_then(Value::as_str).unwrap_or("node");
        let errors = entry
            .get("errors")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut node_reasons: Vec<(&'static str, String)> = errors
            .iter()
            .map(|error| describe_node_error(node, class_type, error))
            .collect();
        node_reasons.sort();
        reasons.extend(node_reasons);
    }
    reasons.dedup();
    reasons
}

fn describe_node_error(node: &str, class_type: &str, error: &Value) -> (&'static str, String) {
    let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or_default();
    let extra = error.get("extra_info");
    let input = extra
        .and_then(|extra| extra.get("input_name"))
        .and_then(Value::as_str)
        .unwrap_or(text("details"));
    let received = extra
        .and_then(|extra| extra.get("received_value"))
        .map(|value| {
            value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string())
        })
        .unwrap_or_default();
    match text("type") {
        // `LoadImage` names a file that is not in input/ (recorded: "image - Invalid image file: x.png").
        "custom_validation_failed" if class_type == "LoadImage" => (
            rejection_code::SOURCE_MISSING,
            format!(
                "ComfyUI does not have the picture the job starts from ({}); upload it again.",
                text("details")
            ),
        ),
        "value_not_in_list" if class_type.contains("Loader") && input.ends_with("_name") => (
            rejection_code::MODEL_NOT_INSTALLED,
            format!("The model file {received} is not installed in ComfyUI ({class_type} does not list it)."),
        ),
        "value_not_in_list" => (
            rejection_code::INVALID_OPTION,
            format!("ComfyUI does not offer {received:?} for {input} of {class_type} (node {node})."),
        ),
        "value_smaller_than_min" | "value_bigger_than_max" => (
            rejection_code::OUT_OF_RANGE,
            format!(
                "{input} of {class_type} (node {node}) is out of range: {}.",
                text("message")
            ),
        ),
        _ => {
            let details = text("details");
            let message = text("message");
            let sentence = if details.is_empty() {
                format!("{class_type} (node {node}): {message}.")
            } else {
                format!("{class_type} (node {node}): {message}: {details}.")
            };
            (rejection_code::INVALID_WORKFLOW, sentence)
        }
    }
}

/// A job record of `GET /api/jobs/{id}` (ComfyUI 0.8.0+). Keys without a value are absent.
#[derive(Debug, Deserialize)]
pub(super) struct JobRecord {
    status: String,
    #[serde(default)]
    outputs: Option<Value>,
    #[serde(default)]
    preview_output: Option<WireImage>,
    #[serde(default)]
    execution_error: Option<Value>,
    #[serde(default)]
    execution_status: Option<ExecutionStatus>,
}

/// The `status` of a history entry, also `execution_status` of a job record.
#[derive(Debug, Deserialize, Default)]
struct ExecutionStatus {
    #[serde(default)]
    status_str: Option<String>,
    #[serde(default)]
    messages: Vec<Value>,
}

impl ExecutionStatus {
    /// The data of the first message of the given type (`[type, data]` pairs).
    fn message(&self, kind: &str) -> Option<&Value> {
        self.messages
            .iter()
            .find(|message| message.get(0).and_then(Value::as_str) == Some(kind))?
            .get(1)
    }

    fn failure(&self) -> Option<ExecutionFailure> {
        let data = self.message("execution_error")?;
        serde_json::from_value::<ExecutionErrorData>(data.clone())
            .ok()
            .map(ExecutionFailure::from)
    }
}

impl JobRecord {
    /// What the record says of the prompt.
    pub(super) fn remote_state(self) -> Result<RemoteState, String> {
        let status = self.execution_status.unwrap_or_default();
        match self.status.as_str() {
            "pending" => Ok(RemoteState::Pending),
            "in_progress" => Ok(RemoteState::Running),
            "completed" => {
                let mut images = self.outputs.as_ref().map(output_images).unwrap_or_default();
                // The list form of a job has no `outputs`, only the first one as `preview_output`.
                if images.is_empty() {
                    images.extend(self.preview_output.map(OutputImage::from));
                }
                Ok(RemoteState::Completed { images })
            }
            // 0.8.0 reports an interrupted prompt as `failed` without `execution_error`.
            "failed" | "cancelled" => {
                let failure = self
                    .execution_error
                    .and_then(|data| serde_json::from_value::<ExecutionErrorData>(data).ok())
                    .map(ExecutionFailure::from)
                    .or_else(|| status.failure());
                let interrupted = status.message("execution_interrupted").is_some();
                if self.status == "cancelled" || (failure.is_none() && interrupted) {
                    Ok(RemoteState::Cancelled)
                } else {
                    Ok(RemoteState::Failed { failure })
                }
            }
            other => Err(format!("unknown job status {other:?}")),
        }
    }
}

/// Reads the answer of `GET /history/{id}`: `None` when the prompt is not there (`{}`: unknown, or not
/// finished yet), else its final state.
pub(super) fn history_state(body: &Value, prompt_id: &str) -> Option<RemoteState> {
    let entry = body.get(prompt_id)?;
    let status: ExecutionStatus = entry
        .get("status")
        .and_then(|status| serde_json::from_value(status.clone()).ok())
        .unwrap_or_default();
    if status.status_str.as_deref() == Some("success") {
        let images = entry.get("outputs").map(output_images).unwrap_or_default();
        return Some(RemoteState::Completed { images });
    }
    let failure = status.failure();
    if failure.is_none() && status.message("execution_interrupted").is_some() {
        return Some(RemoteState::Cancelled);
    }
    Some(RemoteState::Failed { failure })
}

/// Every image of an `outputs` object (`{node_id: {images: [...]}}`), in node id order.
fn output_images(outputs: &Value) -> Vec<OutputImage> {
    let Some(outputs) = outputs.as_object() else {
        return Vec::new();
    };
    let by_node: BTreeMap<(Option<u64>, &String), &Value> = outputs
        .iter()
        .map(|(node, output)| ((node.parse::<u64>().ok(), node), output))
        .collect();
    by_node
        .into_values()
        .filter_map(|output| output.get("images"))
        .filter_map(|images| serde_json::from_value::<Vec<WireImage>>(images.clone()).ok())
        .flatten()
        .map(OutputImage::from)
        .collect()
}

/// `GET /queue`: items are `[number, prompt_id, graph, extra_data, outputs]` lists.
#[derive(Debug, Deserialize)]
pub(super) struct QueueSnapshot {
    #[serde(default)]
    queue_running: Vec<Vec<Value>>,
    #[serde(default)]
    queue_pending: Vec<Vec<Value>>,
}

impl QueueSnapshot {
    /// Prompt ids: the running one(s) first, then the pending ones by queue number (the queue is a heap,
    /// so ComfyUI's own order is not the execution order).
    pub(super) fn order(&self) -> Vec<String> {
        let id = |item: &Vec<Value>| item.get(1).and_then(Value::as_str).map(str::to_owned);
        let mut pending: Vec<(f64, String)> = self
            .queue_pending
            .iter()
            .filter_map(|item| {
                Some((
                    item.first().and_then(Value::as_f64).unwrap_or(f64::MAX),
                    id(item)?,
                ))
            })
            .collect();
        pending.sort_by(|(left, _), (right, _)| left.total_cmp(right));
        self.queue_running
            .iter()
            .filter_map(id)
            .chain(pending.into_iter().map(|(_, id)| id))
            .collect()
    }

    pub(super) fn state_of(&self, prompt_id: &str) -> Option<RemoteState> {
        let holds = |items: &[Vec<Value>]| {
            items
                .iter()
                .any(|item| item.get(1).and_then(Value::as_str) == Some(prompt_id))
        };
        if holds(&self.queue_running) {
            Some(RemoteState::Running)
        } else if holds(&self.queue_pending) {
            Some(RemoteState::Pending)
        } else {
            None
        }
    }
}

/// `GET /system_stats`.
#[derive(Debug, Deserialize)]
pub(super) struct SystemStats {
    #[serde(default)]
    system: SystemInfo,
    #[serde(default)]
    devices: Vec<DeviceStats>,
}

#[derive(Debug, Deserialize, Default)]
struct SystemInfo {
    #[serde(default)]
    comfyui_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct DeviceStats {
    #[serde(default)]
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    vram_total: f64,
    #[serde(default)]
    vram_free: f64,
}

impl SystemStats {
    pub(super) fn comfyui_version(&self) -> Option<String> {
        self.system.comfyui_version.clone()
    }

    /// The first device: the one ComfyUI computes on.
    pub(super) fn device(&self) -> Option<zimage_contract::DeviceInfo> {
        self.devices.first().map(|device| zimage_contract::DeviceInfo {
            name: device.name.clone(),
            kind: device.kind.clone(),
            // Bytes; floats because some releases report them as such. `as` saturates.
            vram_total_bytes: device.vram_total as u64,
            vram_free_bytes: device.vram_free as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const TRACES: [(&str, &str); 3] = [
        ("0.3.64", include_str!("fixtures/traces/comfyui-0.3.64-cpu.jsonl")),
        ("0.8.0", include_str!("fixtures/traces/comfyui-0.8.0-cpu.jsonl")),
        (
            "0.8.0-zimage",
            include_str!("fixtures/traces/comfyui-0.8.0-zimage-cpu.jsonl"),
        ),
    ];

    fn trace_records() -> Vec<(String, Value)> {
        TRACES
            .iter()
            .flat_map(|(name, trace)| {
                trace.lines().enumerate().map(move |(line, text)| {
                    (
                        format!("{name}:{}", line + 1),
                        serde_json::from_str(text).unwrap(),
                    )
                })
            })
            .collect()
    }

    /// Rebuilds a recorded binary frame: the trace keeps its length, first 16 bytes and (type 4) metadata.
    fn rebuild_binary_frame(record: &Value) -> Vec<u8> {
        let header = record["header_hex"].as_str().unwrap();
        let header: Vec<u8> = (0..header.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&header[at..at + 2], 16).unwrap())
            .collect();
        let len = record["len"].as_u64().unwrap() as usize;
        let mut frame = header[..8].to_vec();
        if record["event_type"] == 4 {
            // Python's json.dumps spelling, whose length the frame header declares.
            let metadata = python_json(&record["metadata"]);
            assert_eq!(
                metadata.len() as u64,
                record["format"].as_u64().unwrap(),
                "{record}"
            );
            frame.extend_from_slice(metadata.as_bytes());
            let magic = record["image_magic_hex"].as_str().unwrap();
            frame.extend(
                (0..magic.len())
                    .step_by(2)
                    .map(|at| u8::from_str_radix(&magic[at..at + 2], 16).unwrap()),
            );
        } else {
            frame.extend_from_slice(&header[8..]);
        }
        frame.resize(len, 0);
        frame
    }

    /// `json.dumps` with its default separators, keys in the recorded order.
    fn python_json(value: &Value) -> String {
        let fields = [
            "node_id",
            "prompt_id",
            "display_node_id",
            "parent_node_id",
            "real_node_id",
            "image_type",
        ];
        let parts: Vec<String> = fields
            .iter()
            .map(|field| format!("\"{field}\": {}", value[field]))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    #[test]
    fn every_recorded_text_frame_decodes() {
        let mut decoded_types = std::collections::BTreeSet::new();
        for (place, record) in trace_records() {
            if record["kind"] != "text" {
                continue;
            }
            let text = record["data"].to_string();
            let kind = record["data"]["type"].as_str().unwrap().to_owned();
            let message = decode_text(&text).unwrap_or_else(|error| panic!("{place}: {error}"));
            match (kind.as_str(), &message) {
                ("progress_state", None) => {}
                (_, None) => panic!("{place}: {kind} was not decoded"),
                (_, Some(_)) => {
                    decoded_types.insert(kind);
                }
            }
        }
        let expected = [
            "executed",
            "executing",
            "execution_cached",
            "execution_error",
            "execution_interrupted",
            "execution_start",
            "execution_success",
            "feature_flags",
            "progress",
            "status",
        ];
        assert_eq!(decoded_types.into_iter().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn every_recorded_binary_frame_decodes_to_a_preview() {
        let mut seen = 0;
        for (place, record) in trace_records() {
            if record["kind"] != "binary" {
                continue;
            }
            let frame = Bytes::from(rebuild_binary_frame(&record));
            let Ok(Some(ServerMessage::Preview(preview))) = decode_binary(&frame) else {
                panic!("{place}: not a preview");
            };
            if record["event_type"] == 4 {
                assert_eq!(
                    preview.prompt_id.as_deref(),
                    record["metadata"]["prompt_id"].as_str(),
                    "{place}"
                );
                assert_eq!(
                    preview.mime,
                    record["metadata"]["image_type"].as_str().unwrap(),
                    "{place}"
                );
                assert_eq!(sniff_image(&preview.image), Some(preview.mime), "{place}");
            } else {
                assert_eq!(preview.prompt_id, None);
                let expected = if record["format"] == 1 {
                    "image/jpeg"
                } else {
                    "image/png"
                };
                assert_eq!(preview.mime, expected, "{place}");
                assert_eq!(sniff_image(&preview.image), Some(expected), "{place}");
            }
            seen += 1;
        }
        assert_eq!(seen, 75);
    }

    #[test]
    fn a_progress_message_decodes_with_its_prompt_and_node() {
        let text = r#"{"type": "progress", "data": {"value": 3, "max": 8, "prompt_id": "p", "node": "8"}}"#;
        assert_eq!(
            decode_text(text).unwrap(),
            Some(ServerMessage::Progress {
                prompt_id: Some("p".to_owned()),
                node: Some("8".to_owned()),
                value: 3,
                max: 8
            })
        );
    }

    #[test]
    fn the_executing_replay_on_connect_has_no_prompt_id() {
        let text = r#"{"type": "executing", "data": {"node": "8"}}"#;
        assert_eq!(
            decode_text(text).unwrap(),
            Some(ServerMessage::Executing {
                prompt_id: None,
                node: Some("8".to_owned())
            })
        );
    }

    #[test]
    fn executed_names_the_saved_files() {
        let text = r#"{"type": "executed", "data": {"node": "10", "display_node": "10", "output": {"images":
            [{"filename": "gen_00001_.png", "subfolder": "zimage", "type": "output"}]}, "prompt_id": "p"}}"#;
        assert_eq!(
            decode_text(text).unwrap(),
            Some(ServerMessage::Executed {
                prompt_id: "p".to_owned(),
                node: "10".to_owned(),
                images: vec![OutputImage {
                    filename: "gen_00001_.png".to_owned(),
                    subfolder: "zimage".to_owned(),
                    folder_type: "output".to_owned()
                }]
            })
        );
    }

    #[test]
    fn unknown_message_types_are_ignored_and_garbage_is_an_error() {
        assert_eq!(
            decode_text(r#"{"type": "crystools.monitor", "data": {"cpu": 3}}"#).unwrap(),
            None
        );
        assert_eq!(
            decode_text(r#"{"type": "progress_state", "data": {}}"#).unwrap(),
            None
        );
        assert!(decode_text("not json").is_err());
        assert!(decode_text(r#"{"type": "progress", "data": {"value": "x"}}"#).is_err());
    }

    #[test]
    fn binary_frames_of_other_types_are_ignored_and_truncated_ones_refused() {
        let text_frame = Bytes::from_static(b"\x00\x00\x00\x03\x00\x00\x00\x018hello");
        assert_eq!(decode_binary(&text_frame).unwrap(), None);
        assert!(matches!(
            decode_binary(&Bytes::from_static(b"\x00\x00")),
            Err(DecodeError::TooShort { len: 2 })
        ));
        assert!(matches!(
            decode_binary(&Bytes::from_static(b"\x00\x00\x00\x01\x00")),
            Err(DecodeError::TooShort { .. })
        ));
        let lying = Bytes::from_static(b"\x00\x00\x00\x04\x00\x00\xff\xff{}");
        assert!(matches!(
            decode_binary(&lying),
            Err(DecodeError::MetadataTooLong { .. })
        ));
        let bad_format = Bytes::from_static(b"\x00\x00\x00\x01\x00\x00\x00\x09abc");
        assert!(matches!(
            decode_binary(&bad_format),
            Err(DecodeError::UnknownImageFormat(9))
        ));
    }

    #[test]
    fn a_type_four_frame_carries_its_prompt_id_and_display_node() {
        let metadata =
            br#"{"node_id": "8", "prompt_id": "p", "display_node_id": "8", "image_type": "image/png"}"#;
        let mut frame = vec![0, 0, 0, 4];
        frame.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
        frame.extend_from_slice(metadata);
        frame.extend_from_slice(b"\x89PNGrest");
        let Some(ServerMessage::Preview(preview)) = decode_binary(&Bytes::from(frame)).unwrap() else {
            panic!()
        };
        assert_eq!(preview.prompt_id.as_deref(), Some("p"));
        assert_eq!(preview.node.as_deref(), Some("8"));
        assert_eq!(preview.mime, "image/png");
        assert_eq!(&preview.image[..], b"\x89PNGrest");
    }

    #[test]
    fn the_handshake_asks_for_preview_metadata() {
        let handshake: Value = serde_json::from_str(&feature_flags_handshake()).unwrap();
        assert_eq!(
            handshake,
            json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}})
        );
    }

    fn recorded_error(name: &str) -> Value {
        let text = match name {
            "missing_model" => include_str!("fixtures/errors/missing_model.json"),
            "unknown_class" => include_str!("fixtures/errors/unknown_class.json"),
            "int_out_of_range" => include_str!("fixtures/errors/int_out_of_range.json"),
            "runtime_bad_enum_float" => include_str!("fixtures/errors/runtime_bad_enum_float.json"),
            "no_output" => include_str!("fixtures/errors/no_output.json"),
            "no_prompt" => include_str!("fixtures/errors/no_prompt.json"),
            "bad_link" => include_str!("fixtures/errors/bad_link.json"),
            _ => unreachable!(),
        };
        let recorded: Value = serde_json::from_str(text).unwrap();
        recorded["body"].clone()
    }

    #[test]
    fn a_missing_node_pack_is_named() {
        let (code, message) = describe_rejection(&recorded_error("unknown_class"));
        assert_eq!(code, "missing_node");
        assert!(message.contains("NoSuchNodeXYZ"), "{message}");
        let gguf = json!({
            "error": {
                "type": "invalid_prompt",
                "message": "Cannot execute because node UnetLoaderGGUF does not exist.",
                "details": "Node ID '#1'",
                "extra_info": {}
            },
            "node_errors": {}
        });
        let (_, message) = describe_rejection(&gguf);
        assert_eq!(
            message,
            "ComfyUI has no node type UnetLoaderGGUF: install the ComfyUI-GGUF node pack and restart ComfyUI."
        );
    }

    #[test]
    fn missing_model_files_are_named_in_node_order() {
        let (code, message) = describe_rejection(&recorded_error("missing_model"));
        assert_eq!(code, "model_not_installed");
        assert_eq!(
            message,
            "The model file does-not-exist.gguf is not installed in ComfyUI (UnetLoaderGGUF does not list it). \
             The model file missing-te.gguf is not installed in ComfyUI (CLIPLoaderGGUF does not list it). \
             The model file missing-vae.safetensors is not installed in ComfyUI (VAELoader does not list it)."
        );
    }

    #[test]
    fn out_of_range_and_invalid_options_are_explained() {
        let (code, message) = describe_rejection(&recorded_error("int_out_of_range"));
        assert_eq!(code, "out_of_range");
        assert!(
            message.contains(
                "height of EmptyImage (node 1) is out of range: Value 99999 bigger than max of 16384."
            ),
            "{message}"
        );
        assert!(
            message.contains("width of EmptyImage (node 1) is out of range: Value 0 smaller than min of 1."),
            "{message}"
        );
        let (code, message) = describe_rejection(&recorded_error("runtime_bad_enum_float"));
        assert_eq!(code, "invalid_option");
        assert_eq!(
            message,
            "ComfyUI does not offer \"nope\" for upscale_method of ImageScale (node 2)."
        );
    }

    #[test]
    fn other_rejections_are_workflow_errors_with_comfyui_words() {
        for name in ["no_output", "no_prompt", "bad_link"] {
            let (code, message) = describe_rejection(&recorded_error(name));
            assert_eq!(code, "invalid_workflow", "{name}");
            assert!(!message.is_empty(), "{name}");
        }
        let (_, message) = describe_rejection(&recorded_error("bad_link"));
        assert!(
            message.contains("SaveImage (node 2): Exception when validating node: '99'."),
            "{message}"
        );
        let (code, _) = describe_rejection(&json!("plain text"));
        assert_eq!(code, "invalid_workflow");
    }

    fn recorded_http(what: &str, label: &str) -> Value {
        trace_records()
            .into_iter()
            .map(|(_, record)| record)
            .find(|record| record["kind"] == "http" && record["what"] == what && record["label"] == label)
            .unwrap_or_else(|| panic!("no {what} in {label}"))["body"]
            .clone()
    }

    fn job_state(body: Value) -> RemoteState {
        serde_json::from_value::<JobRecord>(body)
            .unwrap()
            .remote_state()
            .unwrap()
    }

    #[test]
    fn recorded_job_records_map_to_remote_states() {
        let pending = recorded_http("GET /api/jobs/636e312d-5bb7-4a16-98cf-a64ff363409f", "jobs_probe");
        assert_eq!(job_state(pending), RemoteState::Pending);
        let running = recorded_http("GET /api/jobs/451b9045-e927-48e1-94a8-0bf1cbeb2800", "jobs_probe");
        assert_eq!(job_state(running), RemoteState::Running);
        let completed = recorded_http("GET /api/jobs/{completed id}", "jobs_probe");
        assert_eq!(
            job_state(completed),
            RemoteState::Completed {
                images: vec![OutputImage {
                    filename: "peer_modelfree_00001_.png".to_owned(),
                    subfolder: String::new(),
                    folder_type: "output".to_owned()
                }]
            }
        );
        let interrupted = recorded_http("GET /api/jobs/{failed id}", "jobs_probe");
        assert_eq!(job_state(interrupted), RemoteState::Cancelled);
    }

    #[test]
    fn a_failed_job_carries_its_execution_error() {
        let record = json!({"id": "p", "status": "failed", "execution_error": {"node_id": "8",
            "node_type": "KSampler",
            "exception_type": "torch.OutOfMemoryError", "exception_message": "Allocation on device"}});
        let RemoteState::Failed {
            failure: Some(failure),
        } = job_state(record)
        else {
            panic!()
        };
        assert_eq!(failure.node_type, "KSampler");
        assert_eq!(failure.exception_type, "torch.OutOfMemoryError");
        assert_eq!(
            job_state(json!({"id": "p", "status": "failed"})),
            RemoteState::Failed { failure: None }
        );
        assert!(
            serde_json::from_value::<JobRecord>(json!({"id": "p", "status": "bogus"}))
                .unwrap()
                .remote_state()
                .is_err()
        );
    }

    #[test]
    fn recorded_history_entries_map_to_remote_states() {
        let done = recorded_http("GET /history/738ce9f9-abf3-4f50-ac05-3e949014f96c", "model_free");
        assert!(matches!(
            history_state(&done, "738ce9f9-abf3-4f50-ac05-3e949014f96c"),
            Some(RemoteState::Completed { images }) if images.len() == 1
        ));
        let interrupted = recorded_http("GET /history/1ba1a053-2f0a-415b-ae2d-3d239a3f4388", "interrupt");
        assert_eq!(
            history_state(&interrupted, "1ba1a053-2f0a-415b-ae2d-3d239a3f4388"),
            Some(RemoteState::Cancelled)
        );
        assert_eq!(
            history_state(&json!({}), "1ba1a053-2f0a-415b-ae2d-3d239a3f4388"),
            None
        );
    }

    #[test]
    fn a_failed_history_entry_carries_the_error_message() {
        let entry = trace_records()
            .into_iter()
            .map(|(_, record)| record)
            .find(|record| {
                record["kind"] == "http"
                    && record["what"].as_str().unwrap().starts_with("GET /history/")
                    && record["body"].to_string().contains("\"execution_error\"")
            })
            .unwrap();
        let body = &entry["body"];
        let prompt_id = body.as_object().unwrap().keys().next().unwrap();
        let Some(RemoteState::Failed {
            failure: Some(failure),
        }) = history_state(body, prompt_id)
        else {
            panic!()
        };
        assert!(!failure.exception_message.is_empty());
    }

    #[test]
    fn queue_order_puts_the_running_prompt_first_then_pending_by_number() {
        let queue: QueueSnapshot = serde_json::from_value(json!({
            "queue_running": [[5, "run", {}, {}, []]],
            "queue_pending": [[9, "third", {}, {}, []], [-2, "first", {}, {}, []], [7, "second", {}, {}, []]]
        }))
        .unwrap();
        assert_eq!(queue.order(), ["run", "first", "second", "third"]);
        assert_eq!(queue.state_of("second"), Some(RemoteState::Pending));
        assert_eq!(queue.state_of("run"), Some(RemoteState::Running));
        assert_eq!(queue.state_of("gone"), None);
        let recorded: QueueSnapshot =
            serde_json::from_value(recorded_http("GET /queue", "jobs_probe")).unwrap();
        assert_eq!(
            recorded.order(),
            [
                "451b9045-e927-48e1-94a8-0bf1cbeb2800",
                "636e312d-5bb7-4a16-98cf-a64ff363409f"
            ]
        );
    }

    #[test]
    fn system_stats_give_the_device_and_version() {
        for text in [
            include_str!("fixtures/system_stats.json"),
            include_str!("fixtures/0.3.64/system_stats.json"),
        ] {
            let stats: SystemStats = serde_json::from_str(text).unwrap();
            let device = stats.device().unwrap();
            assert_eq!(device.kind, "cpu");
            assert_eq!(device.vram_total_bytes, 25_276_510_208);
            assert!(stats.comfyui_version().is_some());
        }
    }

    /// The message types `decode_text` reads; every other type is ignored.
    const KNOWN_TYPES: [&str; 10] = [
        "status",
        "feature_flags",
        "execution_start",
        "execution_cached",
        "executing",
        "progress",
        "executed",
        "execution_success",
        "execution_error",
        "execution_interrupted",
    ];

    /// The wire type a decoded message came from (`preview` for binary frames).
    fn message_type(message: &ServerMessage) -> &'static str {
        match message {
            ServerMessage::Status { .. } => "status",
            ServerMessage::FeatureFlags { .. } => "feature_flags",
            ServerMessage::ExecutionStart { .. } => "execution_start",
            ServerMessage::ExecutionCached { .. } => "execution_cached",
            ServerMessage::Executing { .. } => "executing",
            ServerMessage::Progress { .. } => "progress",
            ServerMessage::Executed { .. } => "executed",
            ServerMessage::ExecutionSuccess { .. } => "execution_success",
            ServerMessage::ExecutionError { .. } => "execution_error",
            ServerMessage::ExecutionInterrupted { .. } => "execution_interrupted",
            ServerMessage::Preview(_) => "preview",
        }
    }

    /// The prompt id a decoded message carries (`""` for none), or `None` for types without one.
    fn message_prompt_id(message: &ServerMessage) -> Option<&str> {
        match message {
            ServerMessage::Status { .. } | ServerMessage::FeatureFlags { .. } => None,
            ServerMessage::ExecutionStart { prompt_id }
            | ServerMessage::ExecutionCached { prompt_id, .. }
            | ServerMessage::Executed { prompt_id, .. }
            | ServerMessage::ExecutionSuccess { prompt_id }
            | ServerMessage::ExecutionError { prompt_id, .. }
            | ServerMessage::ExecutionInterrupted { prompt_id, .. } => Some(prompt_id),
            ServerMessage::Executing { prompt_id, .. } | ServerMessage::Progress { prompt_id, .. } => {
                Some(prompt_id.as_deref().unwrap_or_default())
            }
            ServerMessage::Preview(preview) => Some(preview.prompt_id.as_deref().unwrap_or_default()),
        }
    }

    /// A field of a struct as serde reads it from JSON: by name from an object, by position from an
    /// array (serde reads structs from both).
    fn struct_field<'a>(value: &'a Value, name: &str, position: usize) -> Option<&'a Value> {
        match value {
            Value::Object(fields) => fields.get(name),
            Value::Array(items) => items.get(position),
            _ => None,
        }
    }

    /// Every string anywhere in `value`.
    fn strings_in(value: &Value) -> Vec<&str> {
        match value {
            Value::String(text) => vec![text],
            Value::Array(items) => items.iter().flat_map(strings_in).collect(),
            Value::Object(fields) => fields.values().flat_map(strings_in).collect(),
            _ => Vec::new(),
        }
    }

    fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
        let word: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(word))
    }

    /// The image type the magic bytes say.
    fn magic_mime(image: &[u8]) -> Option<&'static str> {
        if image.starts_with(b"\xff\xd8\xff") {
            Some("image/jpeg")
        } else if image.starts_with(b"\x89PNG") {
            Some("image/png")
        } else {
            None
        }
    }

    /// Decodes `frame` and checks what came out against the frame's own bytes: its event type (first
    /// word), its format or metadata length (second word) and the image after them.
    fn check_binary_frame(frame: &[u8]) -> Result<(), TestCaseError> {
        let event = be_u32(frame, 0);
        let word = be_u32(frame, 4);
        match decode_binary(&Bytes::copy_from_slice(frame)) {
            Ok(None) => prop_assert!(event.is_some_and(|event| event != 1 && event != 4), "{event:?}"),
            Err(DecodeError::TooShort { len }) => {
                prop_assert_eq!(len, frame.len());
                prop_assert!(event.is_none() || (matches!(event, Some(1 | 4)) && word.is_none()));
            }
            Err(DecodeError::UnknownImageFormat(format)) => {
                prop_assert_eq!(event, Some(1));
                prop_assert_eq!(word, Some(format));
                prop_assert!(format != 1 && format != 2);
            }
            Err(DecodeError::MetadataTooLong { claimed, available }) => {
                prop_assert_eq!(event, Some(4));
                prop_assert_eq!(word.map(|word| word as usize), Some(claimed));
                prop_assert_eq!(available, frame.len() - 8);
                prop_assert!(claimed > available);
            }
            Err(DecodeError::BadMetadata(_)) => {
                prop_assert_eq!(event, Some(4));
                prop_assert!(word.is_some_and(|claimed| claimed as usize <= frame.len() - 8));
            }
            Err(DecodeError::UnknownImageType(kind)) => {
                prop_assert_eq!(event, Some(4));
                prop_assert!(kind != "image/jpeg" && kind != "image/png", "{kind}");
                // Named by the metadata, or not named and not recognisable by its magic bytes.
                let claimed = word.unwrap() as usize;
                let metadata: Value = serde_json::from_slice(&frame[8..8 + claimed]).unwrap();
                let named = struct_field(&metadata, "image_type", 3).and_then(Value::as_str);
                prop_assert_eq!(named.unwrap_or_default(), kind.as_str());
                if named.is_none() {
                    prop_assert_eq!(magic_mime(&frame[8 + claimed..]), None);
                }
            }
            Ok(Some(ServerMessage::Preview(preview))) => {
                prop_assert!(frame.ends_with(&preview.image));
                match event {
                    Some(1) => {
                        prop_assert_eq!(&preview.image[..], &frame[8..]);
                        prop_assert!(preview.prompt_id.is_none() && preview.node.is_none());
                        let expected = if word == Some(1) {
                            "image/jpeg"
                        } else {
                            "image/png"
                        };
                        prop_assert!(matches!(word, Some(1 | 2)), "{word:?}");
                        prop_assert_eq!(preview.mime, expected);
                    }
                    Some(4) => {
                        let claimed = word.unwrap() as usize;
                        prop_assert_eq!(&preview.image[..], &frame[8 + claimed..]);
                        let metadata: Value = serde_json::from_slice(&frame[8..8 + claimed]).unwrap();
                        let text = |name: &str, position: usize| {
                            struct_field(&metadata, name, position).and_then(Value::as_str)
                        };
                        prop_assert_eq!(preview.prompt_id.as_deref(), text("prompt_id", 0));
                        prop_assert_eq!(
                            preview.node.as_deref(),
                            text("display_node_id", 2).or(text("node_id", 1))
                        );
                        let mime = text("image_type", 3).or(magic_mime(&preview.image));
                        prop_assert_eq!(Some(preview.mime), mime);
                    }
                    other => {
                        return Err(TestCaseError::fail(format!(
                            "event {other:?} decoded to a preview"
                        )));
                    }
                }
            }
            other => {
                return Err(TestCaseError::fail(format!(
                    "a binary frame decoded to {other:?}"
                )));
            }
        }
        Ok(())
    }

    /// A type-4 frame: event type, metadata length, metadata, image.
    fn type_four_frame(metadata: &[u8], image: &[u8]) -> Vec<u8> {
        let mut frame = 4u32.to_be_bytes().to_vec();
        frame.extend_from_slice(&u32::try_from(metadata.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(metadata);
        frame.extend_from_slice(image);
        frame
    }

    proptest! {
        #[test]
        fn a_decoded_binary_frame_agrees_with_its_bytes(
            frame in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                // The event types and formats of previews, which arbitrary bytes would never hit.
                (0u32..6, 0u32..4, proptest::collection::vec(any::<u8>(), 0..60)).prop_map(|(event, word, rest)| {
                    let mut frame = event.to_be_bytes().to_vec();
                    frame.extend_from_slice(&word.to_be_bytes());
                    frame.extend(rest);
                    frame
                }),
            ],
        ) {
            check_binary_frame(&frame)?;
        }

        #[test]
        fn a_decoded_binary_header_agrees_with_its_bytes(
            event in 0u32..6,
            length in prop_oneof![0u32..48, any::<u32>()],
            metadata in prop_oneof![
                Just(Vec::new()),
                arbitrary_json().prop_map(|metadata| metadata.to_string().into_bytes()),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut frame = event.to_be_bytes().to_vec();
            frame.extend_from_slice(&length.to_be_bytes());
            frame.extend_from_slice(&metadata);
            frame.extend_from_slice(&tail);
            check_binary_frame(&frame)?;
        }

        #[test]
        fn a_type_one_frame_decodes_to_its_format_and_image(
            format in 1u32..=2,
            image in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut frame = 1u32.to_be_bytes().to_vec();
            frame.extend_from_slice(&format.to_be_bytes());
            frame.extend_from_slice(&image);
            let decoded = decode_binary(&Bytes::from(frame)).unwrap();
            let mime = if format == 1 { "image/jpeg" } else { "image/png" };
            prop_assert_eq!(
                decoded,
                Some(ServerMessage::Preview(Preview { prompt_id: None, node: None, image: Bytes::from(image), mime }))
            );
        }

        #[test]
        fn a_type_four_frame_decodes_to_the_metadata_and_image_it_was_built_from(
            prompt_id in prop::option::of("[a-z0-9-]{0,12}"),
            node_id in prop::option::of("[0-9]{1,3}"),
            display_node_id in prop::option::of("[0-9]{1,3}"),
            image_type in prop::option::of(prop::sample::select(vec!["image/jpeg", "image/png", "image/webp", ""])),
            magic in prop::sample::select(vec![&b""[..], b"\xff\xd8\xff", b"\x89PNG"]),
            rest in proptest::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut metadata = serde_json::Map::new();
            for (key, value) in [
                ("prompt_id", prompt_id.as_deref()),
                ("node_id", node_id.as_deref()),
                ("display_node_id", display_node_id.as_deref()),
                ("image_type", image_type),
            ] {
                if let Some(value) = value {
                    metadata.insert(key.to_owned(), Value::from(value));
                }
            }
            let image = [magic, &rest[..]].concat();
            let frame = type_four_frame(Value::Object(metadata).to_string().as_bytes(), &image);
            let decoded = decode_binary(&Bytes::from(frame));
            let mime = match image_type {
                Some(kind @ ("image/jpeg" | "image/png")) => Some(kind),
                Some(_) => None,
                None => magic_mime(&image),
            };
            match (decoded, mime) {
                (Ok(Some(ServerMessage::Preview(preview))), Some(mime)) => prop_assert_eq!(
                    preview,
                    Preview { prompt_id, node: display_node_id.or(node_id), image: Bytes::from(image), mime }
                ),
                (Err(DecodeError::UnknownImageType(kind)), None) => {
                    prop_assert_eq!(kind.as_str(), image_type.unwrap_or_default());
                }
                (decoded, mime) => {
                    return Err(TestCaseError::fail(format!("{decoded:?} where {mime:?} was expected")));
                }
            }
        }

        #[test]
        fn arbitrary_text_decodes_only_to_the_message_its_type_names(
            text in prop_oneof![
                ".{0,64}",
                (
                    prop_oneof![prop::sample::select(KNOWN_TYPES.to_vec()), Just("progress_state"), Just("crystools.monitor")],
                    prop::sample::select(vec![
                        "", ", \"data\": null", ", \"data\": {}", ", \"data\": []", ", \"data\": 7",
                        ", \"data\": {\"prompt_id\": \"p\"}", ", \"data\": {\"value\": 1, \"max\": 2}",
                    ]),
                    any::<bool>(),
                )
                    .prop_map(|(kind, data, array)| if array {
                        format!("[\"{kind}\"]")
                    } else {
                        format!("{{\"type\": \"{kind}\"{data}}}")
                    }),
            ],
        ) {
            let json: Option<Value> = serde_json::from_str(&text).ok();
            let kind = json.as_ref().and_then(|json| struct_field(json, "type", 0)).and_then(Value::as_str);
            let decoded = decode_text(&text);
            if json.is_none() {
                prop_assert!(matches!(decoded, Err(DecodeError::NotAMessage(_))), "{decoded:?}");
            }
            match decoded {
                Ok(Some(message)) => prop_assert_eq!(Some(message_type(&message)), kind),
                // Types from newer releases or custom nodes are reported as not ours.
                Ok(None) => prop_assert!(kind.is_some_and(|kind| !KNOWN_TYPES.contains(&kind)), "{kind:?}"),
                Err(DecodeError::BadShape { kind: named, .. }) => {
                    prop_assert_eq!(Some(named.as_str()), kind);
                    prop_assert!(KNOWN_TYPES.contains(&named.as_str()));
                }
                Err(DecodeError::NotAMessage(_)) => {}
                Err(other) => return Err(TestCaseError::fail(format!("a text frame failed as {other}"))),
            }
        }

        #[test]
        fn a_message_decodes_as_its_known_type_or_a_shape_error_and_other_types_are_ignored(
            kind in prop_oneof![
                3 => prop::sample::select(KNOWN_TYPES.to_vec()).prop_map(str::to_owned),
                1 => prop::sample::select(vec!["progress_state", "crystools.monitor", "", "Status"]).prop_map(str::to_owned),
                1 => "[a-z_.]{1,16}",
            ],
            data in arbitrary_json(),
        ) {
            let text = json!({"type": kind, "data": data}).to_string();
            let known = KNOWN_TYPES.contains(&kind.as_str());
            match decode_text(&text) {
                Ok(Some(message)) => {
                    prop_assert_eq!(message_type(&message), kind.as_str());
                    // The prompt id comes from the data (missing ones read as empty).
                    if let (Some(prompt_id), Value::Object(fields)) = (message_prompt_id(&message), &data) {
                        let sent = fields.get("prompt_id").and_then(Value::as_str).unwrap_or_default();
                        prop_assert_eq!(prompt_id, sent);
                    }
                }
                Ok(None) => prop_assert!(!known, "{kind} was ignored"),
                Err(DecodeError::BadShape { kind: named, .. }) => {
                    prop_assert!(known);
                    prop_assert_eq!(named, kind);
                }
                Err(other) => return Err(TestCaseError::fail(format!("{kind} failed as {other}"))),
            }
        }
    }

    fn arbitrary_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
            prop::sample::select(vec!["prompt_id", "node", "value", "max", "p"]).prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "prompt_id",
                        "node",
                        "value",
                        "max",
                        "status",
                        "exec_info",
                        "queue_remaining",
                        "output",
                        "images",
                        "filename",
                        "nodes"
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..5
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    /// `body` as an object with `key` set to `value` (a body that is no object is replaced).
    fn with_key(body: Value, key: &str, value: Value) -> Value {
        let mut fields = match body {
            Value::Object(fields) => fields,
            _ => serde_json::Map::new(),
        };
        fields.insert(key.to_owned(), value);
        Value::Object(fields)
    }

    /// Job records: arbitrary bodies, and bodies with each status ComfyUI reports (and a few it does not).
    fn job_record() -> impl Strategy<Value = Value> {
        let status = prop::sample::select(vec![
            "pending",
            "in_progress",
            "completed",
            "failed",
            "cancelled",
            "bogus",
            "",
        ]);
        prop_oneof![
            arbitrary_http_json(),
            (status, arbitrary_http_json()).prop_map(|(status, body)| with_key(
                body,
                "status",
                Value::from(status)
            )),
        ]
    }

    /// History entries: arbitrary ones, and ones whose `status` has the shape ComfyUI gives it.
    fn history_entry() -> impl Strategy<Value = Value> {
        let messages = prop::collection::vec(
            (
                prop::sample::select(vec![
                    "execution_start",
                    "execution_error",
                    "execution_interrupted",
                    "p",
                ]),
                arbitrary_http_json(),
            )
                .prop_map(|(kind, data)| json!([kind, data])),
            0..3,
        );
        prop_oneof![
            arbitrary_http_json(),
            (
                prop::sample::select(vec!["success", "error", "p"]),
                messages,
                arbitrary_http_json(),
            )
                .prop_map(|(status_str, messages, body)| {
                    with_key(
                        body,
                        "status",
                        json!({"status_str": status_str, "messages": messages}),
                    )
                }),
        ]
    }

    /// `GET /queue` answers: arbitrary ones, and ones made of items of the `[number, prompt_id, ...]` shape
    /// (some cut short, some with a number or id of another type).
    fn queue_body() -> impl Strategy<Value = Value> {
        let item = (
            prop_oneof![
                any::<i64>().prop_map(Value::from),
                (-5i64..5).prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                Just(Value::Null),
            ],
            prop_oneof![
                4 => "[a-e]{1,2}".prop_map(Value::from),
                1 => Just(Value::Null),
                1 => any::<i64>().prop_map(Value::from),
            ],
            0usize..=5,
        )
            .prop_map(|(number, id, length)| {
                let mut item = vec![number, id, json!({}), json!({}), json!([])];
                item.truncate(length);
                Value::from(item)
            });
        prop_oneof![
            arbitrary_http_json(),
            (
                prop::collection::vec(item.clone(), 0..3),
                prop::collection::vec(item, 0..6)
            )
                .prop_map(|(running, pending)| json!({"queue_running": running, "queue_pending": pending})),
        ]
    }

    /// `(number, prompt id)` of the queue items that have an id, a missing number counting as the largest.
    fn queued(items: Option<&Value>) -> Vec<(f64, String)> {
        items
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| {
                let id = item.get(1)?.as_str()?.to_owned();
                Some((item.get(0).and_then(Value::as_f64).unwrap_or(f64::MAX), id))
            })
            .collect()
    }

    /// `GET /system_stats` answers: arbitrary ones, and ones with a version and devices, some of whose
    /// fields are missing or of another type.
    fn system_stats() -> impl Strategy<Value = Value> {
        let number = prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(Value::from("1")),
        ];
        let device = (
            prop::option::of("[a-z0-9 ]{0,8}".prop_map(Value::from)),
            prop::option::of(prop::sample::select(vec!["cuda", "cpu", "mps"]).prop_map(Value::from)),
            prop::option::of(number.clone()),
            prop::option::of(number),
        )
            .prop_map(|(name, kind, vram_total, vram_free)| {
                let mut device = serde_json::Map::new();
                for (key, value) in [
                    ("name", name),
                    ("type", kind),
                    ("vram_total", vram_total),
                    ("vram_free", vram_free),
                ] {
                    if let Some(value) = value {
                        device.insert(key.to_owned(), value);
                    }
                }
                Value::Object(device)
            });
        prop_oneof![
            arbitrary_http_json(),
            (
                prop::option::of("[0-9.]{1,8}"),
                prop::collection::vec(device, 0..4)
            )
                .prop_map(
                    |(version, devices)| json!({"system": {"comfyui_version": version}, "devices": devices})
                ),
        ]
    }

    /// Checks that every image of a state names a file the body names.
    fn images_come_from(state: &RemoteState, body: &Value) -> Result<(), TestCaseError> {
        if let RemoteState::Completed { images } = state {
            let strings = strings_in(body);
            for image in images {
                prop_assert!(strings.contains(&image.filename.as_str()), "{}", image.filename);
            }
        }
        Ok(())
    }

    // ComfyUI's HTTP answers are outside input too: whatever a broken or hostile ComfyUI answers,
    // reading it must not panic, and a refusal always becomes a sentence a person can read.
    proptest! {
        #[test]
        fn any_refusal_body_becomes_a_readable_sentence(body in arbitrary_http_json()) {
            let (code, message) = describe_rejection(&body);
            prop_assert!(!code.is_empty() && !message.is_empty());
        }

        #[test]
        fn a_job_record_reads_as_the_state_its_status_names(body in job_record()) {
            let Ok(record) = serde_json::from_value::<JobRecord>(body.clone()) else {
                return Ok(());
            };
            // A record that reads has a status: serde takes it by name, or first from an array.
            let status = struct_field(&body, "status", 0).and_then(Value::as_str).unwrap();
            let state = record.remote_state();
            match (status, &state) {
                ("pending", Ok(RemoteState::Pending))
                | ("in_progress", Ok(RemoteState::Running))
                | ("completed", Ok(RemoteState::Completed { .. }))
                | ("failed", Ok(RemoteState::Failed { .. }))
                | ("cancelled", Ok(RemoteState::Cancelled)) => {}
                // 0.8.0 reports an interruption as a failure, with the interruption among the messages.
                ("failed", Ok(RemoteState::Cancelled)) => {
                    prop_assert!(strings_in(&body).contains(&"execution_interrupted"));
                }
                (status, Err(_)) if !["pending", "in_progress", "completed", "failed", "cancelled"].contains(&status) => {}
                (status, state) => {
                    return Err(TestCaseError::fail(format!("status {status:?} read as {state:?}")));
                }
            }
            if let Ok(state) = &state {
                images_come_from(state, &body)?;
            }
        }

        #[test]
        fn a_history_entry_is_completed_exactly_when_its_status_says_success(body in history_entry()) {
            prop_assert_eq!(history_state(&json!({"q": body.clone()}), "p"), None);
            let state = history_state(&json!({"p": body.clone()}), "p");
            let status = body
                .get("status")
                .and_then(|status| serde_json::from_value::<ExecutionStatus>(status.clone()).ok());
            let success = status.is_some_and(|status| status.status_str.as_deref() == Some("success"));
            match &state {
                Some(RemoteState::Completed { .. }) => prop_assert!(success),
                Some(RemoteState::Failed { .. }) => prop_assert!(!success),
                Some(RemoteState::Cancelled) => {
                    prop_assert!(!success);
                    prop_assert!(strings_in(&body).contains(&"execution_interrupted"));
                }
                other => return Err(TestCaseError::fail(format!("a history entry read as {other:?}"))),
            }
            images_come_from(state.as_ref().unwrap(), &body)?;
        }

        #[test]
        fn the_queue_lists_running_prompts_first_then_pending_ones_by_number(body in queue_body()) {
            let Ok(queue) = serde_json::from_value::<QueueSnapshot>(body.clone()) else {
                return Ok(());
            };
            let running: Vec<String> = queued(struct_field(&body, "queue_running", 0))
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            let mut pending = queued(struct_field(&body, "queue_pending", 1));
            pending.sort_by(|(left, _), (right, _)| left.total_cmp(right));
            let expected: Vec<String> = running.iter().cloned().chain(pending.into_iter().map(|(_, id)| id)).collect();
            let order = queue.order();
            prop_assert_eq!(&order, &expected);
            // A prompt has a queue state exactly when the order lists it: running ones as running.
            for id in order.iter().map(String::as_str).chain(["p", "zz"]) {
                let state = queue.state_of(id);
                prop_assert_eq!(state.is_some(), order.iter().any(|listed| listed == id), "{}", id);
                if running.iter().any(|listed| listed == id) {
                    prop_assert_eq!(state, Some(RemoteState::Running));
                }
            }
        }

        #[test]
        fn system_stats_give_the_first_devices_numbers_and_the_version(body in system_stats()) {
            let Ok(stats) = serde_json::from_value::<SystemStats>(body.clone()) else {
                return Ok(());
            };
            let version = struct_field(&body, "system", 0)
                .and_then(|system| struct_field(system, "comfyui_version", 0))
                .and_then(Value::as_str);
            let read = stats.comfyui_version();
            prop_assert_eq!(read.as_deref(), version);
            let first = struct_field(&body, "devices", 1)
                .and_then(Value::as_array)
                .and_then(|devices| devices.first());
            match (stats.device(), first) {
                (None, None) => {}
                (Some(device), Some(first)) => {
                    let text = |name: &str, position: usize| {
                        struct_field(first, name, position).and_then(Value::as_str).unwrap_or_default()
                    };
                    // Bytes, floats read as such and saturated, absent ones as 0.
                    let bytes = |name: &str, position: usize| {
                        struct_field(first, name, position).and_then(Value::as_f64).map_or(0, |bytes| bytes as u64)
                    };
                    prop_assert_eq!(device.name.as_str(), text("name", 0));
                    prop_assert_eq!(device.kind.as_str(), text("type", 1));
                    prop_assert_eq!(device.vram_total_bytes, bytes("vram_total", 2));
                    prop_assert_eq!(device.vram_free_bytes, bytes("vram_free", 3));
                }
                (device, first) => {
                    return Err(TestCaseError::fail(format!("device {device:?} from {first:?}")));
                }
            }
        }
    }

    /// JSON shaped like ComfyUI's HTTP answers: their keys, any values, a few levels deep.
    fn arbitrary_http_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop::sample::select(vec![
                "completed",
                "failed",
                "cancelled",
                "in_progress",
                "pending",
                "success",
                "execution_error",
                "execution_interrupted",
                "invalid_prompt",
                "p"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map(
                    prop::sample::select(vec![
                        "status",
                        "status_str",
                        "messages",
                        "outputs",
                        "preview_output",
                        "execution_status",
                        "execution_error",
                        "error",
                        "type",
                        "message",
                        "details",
                        "node_errors",
                        "errors",
                        "class_type",
                        "extra_info",
                        "input_name",
                        "images",
                        "filename",
                        "subfolder",
                        "queue_running",
                        "queue_pending",
                        "system",
                        "devices",
                        "comfyui_version",
                        "vram_total",
                        "vram_free",
                        "name",
                        "id",
                        "p",
                        "1",
                        "9"
                    ])
                    .prop_map(str::to_owned),
                    inner,
                    0..6,
                )
                .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }
}
