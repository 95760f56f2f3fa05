//! The HTTP side of the adapter: submit, cancel and look up prompts, fetch finished images, and probe
//! whether ComfyUI has everything the workflow needs.
//!
//! Every call has a timeout, so a hung ComfyUI never holds a caller. The job lookup prefers ComfyUI
//! 0.8.0's `/api/jobs/{id}` and falls back, once and for good, to `/history/{id}` + `/queue` on older
//! releases (never the full `/history`, which grows without bound).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use super::messages::{self, JobRecord, PromptAccepted, QueueSnapshot, SystemStats};
use super::workflow::{Problem, Workflow};
use super::{Error, OutputImage, RemoteState};

/// How long each kind of call may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening the TCP connection.
    pub connect: Duration,
    /// A whole control call (submit, cancel, lookups, probe), answer included.
    pub request: Duration,
    /// A whole image download from `/view`.
    pub download: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(3),
            request: Duration::from_secs(10),
            download: Duration::from_secs(60),
        }
    }
}

/// The options of `LoraLoaderModelOnly`'s `lora_name` in an `/object_info` answer, sorted and without
/// repeats: ComfyUI 0.8.0 writes a combo as `[[names...], {...}]`, newer releases as
/// `["COMBO", {"options": [names...]}]`; both are read. Anything else lists nothing.
pub fn lora_names(object_info: &Value) -> Vec<String> {
    let class = crate::comfy::workflow::LORA_CLASS;
    let input = crate::comfy::workflow::LORA_NAME_INPUT;
    let Some(spec) = object_info.pointer(&format!("/{class}/input/required/{input}")) else {
        return Vec::new();
    };
    let options = match spec.get(0) {
        Some(Value::Array(options)) => Some(options),
        Some(Value::String(kind)) if kind == "COMBO" => spec
            .get(1)
            .and_then(|extra| extra.get("options"))
            .and_then(Value::as_array),
        _ => None,
    };
    let names: std::collections::BTreeSet<String> = options
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    names.into_iter().collect()
}

/// The trigger words in a safetensors file's `__metadata__`: `modelspec.trigger_phrase` (the
/// Stability model-spec key), else `ss_trigger_words` or `trigger_words` (written by some trainers),
/// each a comma-separated text; the first key present decides. Repeats and blanks are left out.
pub fn trigger_words(metadata: &Value) -> Vec<String> {
    let text = ["modelspec.trigger_phrase", "ss_trigger_words", "trigger_words"]
        .iter()
        .find_map(|key| {
            metadata
                .get(key)
                .and_then(Value::as_str)
                .filter(|text| !text.trim().is_empty())
        });
    let mut words: Vec<String> = Vec::new();
    for word in text.unwrap_or_default().split(',').map(str::trim) {
        if !word.is_empty() && !words.iter().any(|known| known == word) {
            words.push(word.to_owned());
        }
    }
    words
}

/// What `probe` found: what is missing for the workflow to run, and what ComfyUI runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Node classes the workflow uses that ComfyUI does not know (a node pack is missing).
    pub missing_nodes: Vec<String>,
    /// Configured model files the loaders do not offer.
    pub missing_models: Vec<String>,
    /// Anything else ComfyUI would refuse (options not offered, numbers out of range), in words.
    pub other_problems: Vec<String>,
    /// What ComfyUI would refuse only in jobs that start from a picture (a node it lacks), in words.
    /// Not part of [`Probe::is_ready`]: jobs made from words alone run without these.
    pub source_problems: Vec<String>,
    /// The device ComfyUI computes on (the first of `/system_stats`), with its VRAM in bytes.
    pub device: Option<zimage_contract::DeviceInfo>,
    /// ComfyUI's release, e.g. `0.8.0`.
    pub comfyui_version: Option<String>,
}

impl Probe {
    /// True when ComfyUI has every node and model the workflow needs.
    pub fn is_ready(&self) -> bool {
        self.missing_nodes.is_empty() && self.missing_models.is_empty() && self.other_problems.is_empty()
    }
}

/// A cheap-to-clone handle to one ComfyUI server.
#[derive(Debug, Clone)]
pub struct ComfyClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    timeouts: Timeouts,
    /// Which job lookup works: [`JOBS_API_UNKNOWN`], [`JOBS_API_PRESENT`] or [`JOBS_API_ABSENT`].
    jobs_api: AtomicU8,
    /// Which source picture each of the reused upload names holds now.
    sources: Mutex<SourceSlots>,
}

/// The subfolder of ComfyUI's `input/` that holds the gateway's uploads (and nothing else).
pub const UPLOAD_SUBFOLDER: &str = "zimage";

/// How many source pictures one ComfyUI keeps from the gateway. ComfyUI never removes an upload and has
/// no call to do so, so the gateway reuses a few fixed names (`zimage/source-0.png` ...), replacing the
/// least recently used: `input/` never holds more than this many files of ours, whatever the number of
/// jobs. The engine holds one job per ComfyUI at a time, so the name of the job running (the most recently
/// used) is never the one replaced by the next job's upload; four leave room for a job sent again.
pub const SOURCE_SLOTS: usize = 4;

/// The names reused for source pictures, least recently used first, each with the digest of what it holds.
#[derive(Debug, Default)]
struct SourceSlots {
    /// `(slot, digest)`, the most recently used last.
    used: Vec<(usize, String)>,
}

impl SourceSlots {
    /// The slot for the picture of `digest`: the one that holds it already, else a free one, else the
    /// least recently used. It becomes the most recently used.
    fn slot_for(&mut self, digest: &str) -> usize {
        let slot = if let Some(at) = self.used.iter().position(|(_, held)| held == digest) {
            self.used.remove(at).0
        } else if self.used.len() < SOURCE_SLOTS {
            (0..SOURCE_SLOTS)
                .find(|slot| self.used.iter().all(|(used, _)| used != slot))
                .unwrap_or(0)
        } else {
            self.used.remove(0).0
        };
        self.used.push((slot, digest.to_owned()));
        slot
    }

    /// Forgets what a slot holds (its upload failed: its content is unknown).
    fn forget(&mut self, slot: usize) {
        self.used.retain(|(used, _)| *used != slot);
    }
}

/// The file name of source slot `slot` in [`UPLOAD_SUBFOLDER`].
pub fn source_file_name(slot: usize) -> String {
    format!("source-{slot}.png")
}

const JOBS_API_UNKNOWN: u8 = 0;
const JOBS_API_PRESENT: u8 = 1;
const JOBS_API_ABSENT: u8 = 2;

/// Largest JSON answer read from ComfyUI; ours are a few KiB, a queue of big graphs a few MiB.
const MAX_JSON_BYTES: usize = 16 * 1024 * 1024;

/// Idle connections kept open to ComfyUI: enough for a submit next to a lookup or a download.
const MAX_IDLE_CONNECTIONS: usize = 2;

/// How long an unused connection stays open (reqwest's default is 90 s).
const IDLE_CONNECTION_LIFETIME: Duration = Duration::from_secs(30);

impl ComfyClient {
    /// A client for the ComfyUI at `base` (e.g. `http://comfyui:8188`) with the default [`Timeouts`].
    pub fn new(base: Url) -> ComfyClient {
        ComfyClient::with_timeouts(base, Timeouts::default())
    }

    /// Like [`ComfyClient::new`] with chosen timeouts.
    pub fn with_timeouts(base: Url, timeouts: Timeouts) -> ComfyClient {
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            // Calls come one or a few at a time; an idle ComfyUI should not hold a pile of sockets.
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .pool_idle_timeout(IDLE_CONNECTION_LIFETIME)
            // ComfyUI is on a private network; a proxy from the environment would only get in the way.
            .no_proxy()
            .build()
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "cannot configure the HTTP client for ComfyUI; using defaults");
                reqwest::Client::new()
            });
        let inner = Inner {
            http,
            base,
            timeouts,
            jobs_api: AtomicU8::new(JOBS_API_UNKNOWN),
            sources: Mutex::new(SourceSlots::default()),
        };
        ComfyClient {
            inner: Arc::new(inner),
        }
    }

    /// ComfyUI's base URL.
    pub fn base(&self) -> &Url {
        &self.inner.base
    }

    /// Queues a filled workflow under our `prompt_id`, asking for live previews when `previews` is set
    /// (ComfyUI 0.8.0+; older releases ignore the request). ComfyUI sends the prompt's events only to
    /// the WebSocket registered under `client_id`: the id of the socket's live connection (its
    /// `Connected` event). A refusal becomes [`Error::Rejected`] with a message that names the missing
    /// node pack, model file, option or limit.
    pub async fn submit(
        &self,
        prompt_id: &str,
        client_id: &str,
        graph: Value,
        previews: bool,
    ) -> Result<(), Error> {
        let mut body = json!({
            "prompt": graph,
            "client_id": client_id,
            "prompt_id": prompt_id,
        });
        if previews {
            body["extra_data"] = json!({"preview_method": "latent2rgb"});
        }
        let response = self
            .send(self.inner.http.post(self.endpoint(&["prompt"])?).json(&body))
            .await?;
        match response.status() {
            StatusCode::OK => {
                let accepted: PromptAccepted = read_json(response).await?;
                if accepted.prompt_id != prompt_id {
                    return Err(Error::Protocol(format!(
                        "POST /prompt queued {} instead of {prompt_id}",
                        accepted.prompt_id
                    )));
                }
                // A 200 with node errors means some outputs were dropped; ours has one, so say it.
                if accepted
                    .node_errors
                    .as_object()
                    .is_some_and(|errors| !errors.is_empty())
                {
                    let node_errors = &accepted.node_errors;
                    tracing::warn!(prompt_id, %node_errors, "ComfyUI dropped part of the workflow");
                }
                Ok(())
            }
            StatusCode::BAD_REQUEST => {
                let body = read_body(response, MAX_JSON_BYTES).await?;
                let body: Value = serde_json::from_slice(&body)
                    .map_err(|_| Error::Protocol(format!("POST /prompt refused: {}", snippet(&body))))?;
                let (code, message) = messages::describe_rejection(&body);
                tracing::info!(prompt_id, code, %body, "ComfyUI refused the prompt");
                Err(Error::Rejected { code, message })
            }
            status => Err(unexpected(response, "POST /prompt", status).await),
        }
    }

    /// Puts the PNG a job starts from into ComfyUI's `input/` and answers the name to write into
    /// `LoadImage.image`. Call it right before each [`ComfyClient::submit`] of the job (a first
    /// submission, a retry, a failover to this ComfyUI): the name is one of [`SOURCE_SLOTS`] reused
    /// names, so what it holds is only certain until this ComfyUI's next upload. `digest` is the PNG's
    /// sha256 (a picture uploaded again goes to the name it had).
    pub async fn upload_source(&self, png: Bytes, digest: &str) -> Result<String, Error> {
        let slot = lock(&self.inner.sources).slot_for(digest);
        let result = self.upload_image(png, &source_file_name(slot)).await;
        if result.is_err() {
            lock(&self.inner.sources).forget(slot);
        }
        result
    }

    /// `POST /upload/image`: writes `png` as `input/zimage/<file_name>`, replacing a file of that name
    /// (`overwrite`: without it ComfyUI would keep both, as `name (1).png`). Answers the name ComfyUI
    /// gives back, with its subfolder, as `LoadImage` takes it: always that one, never the name sent.
    /// ComfyUI checks nothing of the bytes: the caller sends only pictures it decoded and re-encoded.
    pub async fn upload_image(&self, png: Bytes, file_name: &str) -> Result<String, Error> {
        let part = reqwest::multipart::Part::stream_with_length(png.clone(), png.len() as u64)
            .file_name(file_name.to_owned())
            .mime_str("image/png")
            .map_err(|error| Error::Protocol(error.to_string()))?;
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("type", "input")
            .text("subfolder", UPLOAD_SUBFOLDER)
            .text("overwrite", "true");
        let request = self
            .inner
            .http
            .post(self.endpoint(&["upload", "image"])?)
            .multipart(form)
            .timeout(self.inner.timeouts.download);
        let response = request.send().await.map_err(transport_error)?;
        match response.status() {
            StatusCode::OK => {
                let uploaded: messages::Uploaded = read_json(response).await?;
                Ok(uploaded.load_image_name())
            }
            // ComfyUI answers 400 with an empty body when the form lacks the image or names a
            // subfolder outside input/: neither can come from this call, so it is not our ComfyUI.
            status => Err(unexpected(response, "POST /upload/image", status).await),
        }
    }

    /// Removes a prompt that has not started from ComfyUI's queue (a running one needs `interrupt`).
    pub async fn delete_pending(&self, prompt_id: &str) -> Result<(), Error> {
        let request = self
            .inner
            .http
            .post(self.endpoint(&["queue"])?)
            .json(&json!({"delete": [prompt_id]}));
        self.expect_ok(request, "POST /queue").await
    }

    /// Interrupts the prompt if it is the one running; ComfyUI ignores the call otherwise. Never a global
    /// interrupt, which would stop whatever runs, another client's prompt included.
    pub async fn interrupt(&self, prompt_id: &str) -> Result<(), Error> {
        let request = self
            .inner
            .http
            .post(self.endpoint(&["interrupt"])?)
            .json(&json!({"prompt_id": prompt_id}));
        self.expect_ok(request, "POST /interrupt").await
    }

    /// What ComfyUI's records say of a prompt, for reconciling after a lost socket.
    pub async fn remote_state(&self, prompt_id: &str) -> Result<RemoteState, Error> {
        if self.inner.jobs_api.load(Ordering::Relaxed) != JOBS_API_ABSENT {
            let url = self.endpoint(&["api", "jobs", prompt_id])?;
            let response = self.send(self.inner.http.get(url)).await?;
            match response.status() {
                StatusCode::OK => {
                    self.inner.jobs_api.store(JOBS_API_PRESENT, Ordering::Relaxed);
                    let record: JobRecord = read_json(response).await?;
                    return record.remote_state().map_err(Error::Protocol);
                }
                StatusCode::NOT_FOUND => {
                    // The jobs API answers an unknown id with JSON `{"error": "Job not found"}`; a release
                    // without the API answers aiohttp's plain-text 404 for the unknown route.
                    let body = read_body(response, MAX_JSON_BYTES).await?;
                    if serde_json::from_slice::<Value>(&body).is_ok_and(|body| body.get("error").is_some()) {
                        self.inner.jobs_api.store(JOBS_API_PRESENT, Ordering::Relaxed);
                        return Ok(RemoteState::Unknown);
                    }
                    tracing::info!(
                        "ComfyUI has no /api/jobs (older than 0.8.0); using /history/{{id}} and /queue"
                    );
                    self.inner.jobs_api.store(JOBS_API_ABSENT, Ordering::Relaxed);
                }
                status => return Err(unexpected(response, "GET /api/jobs/{id}", status).await),
            }
        }
        self.legacy_remote_state(prompt_id).await
    }

    /// `/queue` first, then `/history/{id}`: a prompt that finishes between the two calls is then found
    /// in history, never reported unknown (ComfyUI moves it from the queue to history in one step).
    async fn legacy_remote_state(&self, prompt_id: &str) -> Result<RemoteState, Error> {
        let queue = self.queue().await?;
        let url = self.endpoint(&["history", prompt_id])?;
        let response = self.send(self.inner.http.get(url)).await?;
        if response.status() != StatusCode::OK {
            let status = response.status();
            return Err(unexpected(response, "GET /history/{id}", status).await);
        }
        let history: Value = read_json(response).await?;
        Ok(messages::history_state(&history, prompt_id)
            .or_else(|| queue.state_of(prompt_id))
            .unwrap_or(RemoteState::Unknown))
    }

    /// Prompt ids in the order ComfyUI will run them: the running one first, then the pending ones.
    pub async fn queue_order(&self) -> Result<Vec<String>, Error> {
        Ok(self.queue().await?.order())
    }

    async fn queue(&self) -> Result<QueueSnapshot, Error> {
        let response = self.send(self.inner.http.get(self.endpoint(&["queue"])?)).await?;
        match response.status() {
            StatusCode::OK => read_json(response).await,
            status => Err(unexpected(response, "GET /queue", status).await),
        }
    }

    /// Downloads a file ComfyUI wrote, refusing answers over `max_bytes`.
    pub async fn fetch_output(&self, image: &OutputImage, max_bytes: usize) -> Result<Bytes, Error> {
        let mut url = self.endpoint(&["view"])?;
        url.query_pairs_mut()
            .append_pair("filename", &image.filename)
            .append_pair("subfolder", &image.subfolder)
            .append_pair("type", &image.folder_type);
        let request = self.inner.http.get(url).timeout(self.inner.timeouts.download);
        let response = request.send().await.map_err(transport_error)?;
        match response.status() {
            StatusCode::OK => read_body(response, max_bytes).await,
            StatusCode::NOT_FOUND => Err(Error::NotFound),
            status => Err(unexpected(response, "GET /view", status).await),
        }
    }

    /// Asks ComfyUI to unload its models and free their memory (`POST /free`); the next prompt loads
    /// them again. `zimage bench` does this so that its first run is a cold one.
    pub async fn free_models(&self) -> Result<(), Error> {
        let request = self
            .inner
            .http
            .post(self.endpoint(&["free"])?)
            .json(&json!({"unload_models": true, "free_memory": true}));
        self.expect_ok(request, "POST /free").await
    }

    /// Asks ComfyUI what it runs on and whether it has every node class, model file and option the
    /// workflow uses (`/system_stats`, and `/object_info/{class}` for each class of the workflow).
    ///
    /// The lookups go one after another over one kept-alive connection: about ten small answers,
    /// a few milliseconds in all, where asking them all at once would open a connection each.
    pub async fn probe(&self, workflow: &Workflow) -> Result<Probe, Error> {
        let response = self
            .send(self.inner.http.get(self.endpoint(&["system_stats"])?))
            .await?;
        let stats: SystemStats = match response.status() {
            StatusCode::OK => read_json(response).await?,
            status => return Err(unexpected(response, "GET /system_stats", status).await),
        };
        let mut object_info = serde_json::Map::new();
        for class_type in workflow
            .required_classes()
            .into_iter()
            .chain(workflow.source_classes())
        {
            // An unknown class answers `{}`; a known one `{class: {...}}`.
            if let Value::Object(info) = self.object_info(class_type).await? {
                object_info.extend(info);
            }
        }
        let mut probe = Probe {
            missing_nodes: Vec::new(),
            missing_models: Vec::new(),
            other_problems: Vec::new(),
            source_problems: Vec::new(),
            device: stats.device(),
            comfyui_version: stats.comfyui_version(),
        };
        let object_info = Value::Object(object_info);
        probe.source_problems = workflow
            .check_sources_against(&object_info)
            .iter()
            .map(ToString::to_string)
            .collect();
        for problem in workflow.check_against(&object_info) {
            match problem {
                Problem::MissingNode { class_type } => probe.missing_nodes.push(class_type),
                Problem::MissingModel { file, .. } => probe.missing_models.push(file),
                other => probe.other_problems.push(other.to_string()),
            }
        }
        Ok(probe)
    }

    /// The LoRA files ComfyUI lists now (`LoraLoaderModelOnly`'s `lora_name` options), sorted; none
    /// when it lacks the node. One small request: cheap enough to repeat every few seconds.
    pub async fn loras(&self) -> Result<Vec<String>, Error> {
        let info = self.object_info(crate::comfy::workflow::LORA_CLASS).await?;
        Ok(lora_names(&info))
    }

    /// The words a LoRA file was trained to answer to, from its `__metadata__` (`GET
    /// /view_metadata/loras?filename=`, ComfyUI's server.py; 404 for a file without metadata): see
    /// [`trigger_words`]. None when the file says nothing.
    pub async fn lora_trigger_words(&self, name: &str) -> Result<Vec<String>, Error> {
        let mut url = self.endpoint(&["view_metadata", "loras"])?;
        url.query_pairs_mut().append_pair("filename", name);
        let response = self.send(self.inner.http.get(url)).await?;
        match response.status() {
            StatusCode::OK => Ok(trigger_words(&read_json(response).await?)),
            StatusCode::NOT_FOUND => Ok(Vec::new()),
            status => Err(unexpected(response, "GET /view_metadata/loras", status).await),
        }
    }

    async fn object_info(&self, class_type: &str) -> Result<Value, Error> {
        let response = self
            .send(self.inner.http.get(self.endpoint(&["object_info", class_type])?))
            .await?;
        match response.status() {
            StatusCode::OK => read_json(response).await,
            // Some releases answer 404 for a class they do not know.
            StatusCode::NOT_FOUND => Ok(json!({})),
            status => Err(unexpected(response, "GET /object_info/{class}", status).await),
        }
    }

    /// `base` + path segments, each percent-encoded (a prompt id never changes the path's shape).
    fn endpoint(&self, segments: &[&str]) -> Result<Url, Error> {
        let mut url = self.inner.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| Error::Protocol(format!("{} cannot be a base URL", self.inner.base)))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response, Error> {
        request
            .timeout(self.inner.timeouts.request)
            .send()
            .await
            .map_err(transport_error)
    }

    async fn expect_ok(&self, request: RequestBuilder, what: &str) -> Result<(), Error> {
        let response = self.send(request).await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(unexpected(response, what, status).await),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Classifies a failed call: nothing listening, too slow, or a broken answer.
fn transport_error(error: reqwest::Error) -> Error {
    let error_chain = error_chain(&error);
    if error.is_connect() {
        tracing::debug!(error = %error_chain, "ComfyUI unreachable");
        Error::Unreachable
    } else if error.is_timeout() {
        Error::Timeout
    } else if error.is_decode() {
        Error::Protocol(error_chain)
    } else {
        // The connection broke mid-call (reset, closed): as good as unreachable.
        tracing::debug!(error = %error_chain, "ComfyUI call failed");
        Error::Unreachable
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

async fn unexpected(response: Response, what: &str, status: StatusCode) -> Error {
    let body = read_body(response, 4096).await.unwrap_or_default();
    Error::Protocol(format!("{what} answered {status}: {}", snippet(&body)))
}

fn snippet(body: &[u8]) -> String {
    const LONGEST: usize = 200;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(LONGEST) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

async fn read_json<T: DeserializeOwned>(response: Response) -> Result<T, Error> {
    let url = response.url().path().to_owned();
    let body = read_body(response, MAX_JSON_BYTES).await?;
    serde_json::from_slice(&body)
        .map_err(|error| Error::Protocol(format!("{url} answered unexpected JSON: {error}")))
}

/// Reads a body up to `max_bytes`, refusing larger ones before or while reading them.
async fn read_body(mut response: Response, max_bytes: usize) -> Result<Bytes, Error> {
    let declared = response.content_length();
    if declared.is_some_and(|declared| declared > max_bytes as u64) {
        return Err(Error::TooLarge);
    }
    let mut body = BytesMut::with_capacity(declared.map_or(0, |declared| declared as usize));
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > max_bytes {
            return Err(Error::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use axum::Router;
    use axum::extract::{Path, Query};
    use axum::http::StatusCode as AxumStatus;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    use super::*;
    use crate::comfy::workflow::ModelFiles;

    #[test]
    fn trigger_words_come_from_the_model_spec_or_the_trainers_keys() {
        assert_eq!(
            trigger_words(
                &json!({"modelspec.trigger_phrase": "inkwash, sumi-e , inkwash", "ss_trigger_words": "x"})
            ),
            ["inkwash", "sumi-e"]
        );
        assert_eq!(
            trigger_words(&json!({"ss_trigger_words": "zzstyle"})),
            ["zzstyle"]
        );
        assert_eq!(
            trigger_words(&json!({"modelspec.trigger_phrase": " ", "trigger_words": "a"})),
            ["a"]
        );
        assert_eq!(
            trigger_words(&json!({"ss_output_name": "ink"})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn lora_lists_are_read_in_the_old_and_the_new_combo_forms() {
        let recorded: Value =
            serde_json::from_str(include_str!("fixtures/object_info_image_input.json")).unwrap();
        assert_eq!(lora_names(&recorded), Vec::<String>::new());
        let old = json!({"LoraLoaderModelOnly": {"input": {"required": {
            "lora_name": [["b.safetensors", "a/ink.safetensors", "b.safetensors"]]
        }}}});
        assert_eq!(lora_names(&old), ["a/ink.safetensors", "b.safetensors"]);
        let new = json!({"LoraLoaderModelOnly": {"input": {"required": {
            "lora_name": ["COMBO", {"options": ["z.safetensors", "a.safetensors"]}]
        }}}});
        assert_eq!(lora_names(&new), ["a.safetensors", "z.safetensors"]);
        assert_eq!(lora_names(&json!({})), Vec::<String>::new());
        assert_eq!(
            lora_names(
                &json!({"LoraLoaderModelOnly": {"input": {"required": {"lora_name": ["STRING", {}]}}}})
            ),
            Vec::<String>::new()
        );
    }
    use crate::comfy::workflow::fixtures::{committed_workflow, default_models};

    #[test]
    fn source_slots_reuse_a_pictures_name_and_replace_the_least_recently_used() {
        let mut slots = SourceSlots::default();
        let taken: Vec<usize> = ["a", "b", "c", "d"]
            .iter()
            .map(|digest| slots.slot_for(digest))
            .collect();
        assert_eq!(taken, [0, 1, 2, 3]);
        // "a" again: its own name, and now the most recently used.
        assert_eq!(slots.slot_for("a"), 0);
        // A fifth picture replaces the least recently used ("b"), then "c".
        assert_eq!(slots.slot_for("e"), 1);
        assert_eq!(slots.slot_for("f"), 2);
        assert_eq!(slots.slot_for("b"), 3);
        // A failed upload leaves its name free for the next.
        slots.forget(0);
        assert_eq!(slots.slot_for("g"), 0);
        assert_eq!(source_file_name(2), "source-2.png");
    }

    /// What the stub ComfyUI was sent.
    #[derive(Default)]
    struct Recorded {
        bodies: Vec<(String, Value)>,
        paths: Vec<String>,
    }

    type Shared = Arc<Mutex<Recorded>>;

    async fn serve(router: Router) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Url::parse(&format!("http://{address}")).unwrap()
    }

    fn recorded_error_body(name: &str) -> Value {
        let text = match name {
            "missing_model" => include_str!("fixtures/errors/missing_model.json"),
            "unknown_class" => include_str!("fixtures/errors/unknown_class.json"),
            _ => unreachable!(),
        };
        serde_json::from_str::<Value>(text).unwrap()["body"].clone()
    }

    /// A stub with the routes of ComfyUI 0.8.0 that the client uses, answering recorded shapes.
    fn comfyui_stub(shared: Shared, with_jobs_api: bool) -> Router {
        let record = |shared: &Shared, what: &str, body: Value| {
            shared.lock().unwrap().bodies.push((what.to_owned(), body));
        };
        let prompt = {
            let shared = shared.clone();
            move |axum::Json(body): axum::Json<Value>| async move {
                record(&shared, "prompt", body.clone());
                if body["prompt"]["1"]["inputs"]["unet_name"] == "missing.gguf" {
                    return (
                        AxumStatus::BAD_REQUEST,
                        axum::Json(recorded_error_body("missing_model")),
                    );
                }
                let accepted = json!({"prompt_id": body["prompt_id"], "number": 3, "node_errors": {}});
                (AxumStatus::OK, axum::Json(accepted))
            }
        };
        let queue_post = {
            let shared = shared.clone();
            move |axum::Json(body): axum::Json<Value>| async move { record(&shared, "queue", body) }
        };
        let interrupt = {
            let shared = shared.clone();
            move |axum::Json(body): axum::Json<Value>| async move { record(&shared, "interrupt", body) }
        };
        let jobs = {
            let shared = shared.clone();
            move |Path(id): Path<String>| async move {
                shared.lock().unwrap().paths.push(format!("/api/jobs/{id}"));
                if !with_jobs_api {
                    return (AxumStatus::NOT_FOUND, "404: Not Found").into_response();
                }
                match id.as_str() {
                    "running" => axum::Json(
                        json!({"id": id, "status": "in_progress", "priority": 4, "create_time": 1,
                        "outputs_count": 0}),
                    )
                    .into_response(),
                    _ => (
                        AxumStatus::NOT_FOUND,
                        axum::Json(json!({"error": "Job not found"})),
                    )
                        .into_response(),
                }
            }
        };
        let history = {
            let shared = shared.clone();
            move |Path(id): Path<String>| async move {
                shared.lock().unwrap().paths.push(format!("/history/{id}"));
                match id.as_str() {
                    "done" => axum::Json(
                        json!({"done": {"outputs": {"10": {"images": [{"filename": "gen_00001_.png",
                        "subfolder": "zimage", "type": "output"}]}}, "status": {"status_str": "success",
                        "completed": true, "messages": []}}}),
                    ),
                    _ => axum::Json(json!({})),
                }
            }
        };
        let queue_get = {
            let shared = shared.clone();
            move || async move {
                shared.lock().unwrap().paths.push("/queue".to_owned());
                axum::Json(json!({"queue_running": [[4, "running", {}, {}, []]],
                    "queue_pending": [[9, "later", {}, {}, []], [6, "next", {}, {}, []]]}))
            }
        };
        let view = |Query(query): Query<HashMap<String, String>>| async move {
            match (
                query.get("filename").map(String::as_str),
                query.get("subfolder").map(String::as_str),
            ) {
                (Some("gen 00001_&.png"), Some("zimage")) => {
                    (AxumStatus::OK, vec![7u8; 1000]).into_response()
                }
                _ => (AxumStatus::NOT_FOUND, "").into_response(),
            }
        };
        let object_info = |Path(class_type): Path<String>| async move {
            let all: Value = serde_json::from_str(include_str!("fixtures/object_info.json")).unwrap();
            match all.get(&class_type) {
                Some(info) if class_type != "UnetLoaderGGUF" => axum::Json(json!({ class_type: info })),
                _ => axum::Json(json!({})),
            }
        };
        let system_stats = || async {
            axum::Json(serde_json::from_str::<Value>(include_str!("fixtures/system_stats.json")).unwrap())
        };
        Router::new()
            .route("/prompt", post(prompt))
            .route("/queue", post(queue_post).get(queue_get))
            .route("/interrupt", post(interrupt))
            .route("/api/jobs/{id}", get(jobs))
            .route("/history/{id}", get(history))
            .route("/view", get(view))
            .route("/object_info/{class}", get(object_info))
            .route("/system_stats", get(system_stats))
            .with_state(())
    }

    async fn stub(with_jobs_api: bool) -> (ComfyClient, Shared) {
        let shared = Shared::default();
        let base = serve(comfyui_stub(shared.clone(), with_jobs_api)).await;
        (ComfyClient::new(base), shared)
    }

    #[tokio::test]
    async fn submit_sends_the_graph_under_the_given_ids_and_asks_for_previews_per_prompt() {
        let (client, shared) = stub(true).await;
        let graph = committed_workflow(default_models()).fill("a fox", 7, 512, 512);
        client
            .submit("prompt-1", "zimage-a", graph.clone(), true)
            .await
            .unwrap();
        client
            .submit("prompt-2", "zimage-b", graph.clone(), false)
            .await
            .unwrap();
        let recorded = shared.lock().unwrap();
        let (_, with_previews) = &recorded.bodies[0];
        assert_eq!(with_previews["prompt"], graph);
        assert_eq!(with_previews["prompt_id"], "prompt-1");
        assert_eq!(with_previews["client_id"], "zimage-a");
        assert_eq!(
            with_previews["extra_data"],
            json!({"preview_method": "latent2rgb"})
        );
        let (_, without_previews) = &recorded.bodies[1];
        assert_eq!(without_previews["client_id"], "zimage-b");
        assert!(without_previews.get("extra_data").is_none());
    }

    #[tokio::test]
    async fn a_refused_prompt_names_the_missing_model_file() {
        let (client, _) = stub(true).await;
        let graph = committed_workflow(ModelFiles {
            unet: "missing.gguf".to_owned(),
            ..default_models()
        })
        .fill("a fox", 7, 512, 512);
        let error = client
            .submit("prompt-1", "zimage-a", graph, false)
            .await
            .unwrap_err();
        let Error::Rejected { code, message } = error else {
            panic!("{error:?}")
        };
        assert_eq!(code, Error::MODEL_NOT_INSTALLED);
        assert!(message.contains("does-not-exist.gguf"), "{message}");
    }

    #[tokio::test]
    async fn cancel_calls_name_only_our_prompt() {
        let (client, shared) = stub(true).await;
        client.delete_pending("p-1").await.unwrap();
        client.interrupt("p-2").await.unwrap();
        let recorded = shared.lock().unwrap();
        assert_eq!(
            recorded.bodies[0],
            ("queue".to_owned(), json!({"delete": ["p-1"]}))
        );
        assert_eq!(
            recorded.bodies[1],
            ("interrupt".to_owned(), json!({"prompt_id": "p-2"}))
        );
    }

    #[tokio::test]
    async fn remote_state_uses_the_jobs_api_when_present() {
        let (client, shared) = stub(true).await;
        assert_eq!(
            client.remote_state("running").await.unwrap(),
            RemoteState::Running
        );
        assert_eq!(client.remote_state("nobody").await.unwrap(), RemoteState::Unknown);
        assert_eq!(
            shared.lock().unwrap().paths,
            ["/api/jobs/running", "/api/jobs/nobody"]
        );
    }

    #[tokio::test]
    async fn remote_state_falls_back_to_history_and_queue_once_and_remembers() {
        let (client, shared) = stub(false).await;
        assert!(matches!(
            client.remote_state("done").await.unwrap(),
            RemoteState::Completed { images } if images[0].subfolder == "zimage"
        ));
        assert_eq!(client.remote_state("next").await.unwrap(), RemoteState::Pending);
        assert_eq!(
            client.remote_state("running").await.unwrap(),
            RemoteState::Running
        );
        assert_eq!(client.remote_state("gone").await.unwrap(), RemoteState::Unknown);
        let paths = shared.lock().unwrap().paths.clone();
        assert_eq!(
            paths.iter().filter(|path| path.starts_with("/api/jobs/")).count(),
            1,
            "{paths:?}"
        );
        assert!(
            paths.iter().all(|path| path != "/history"),
            "never the full history"
        );
    }

    #[tokio::test]
    async fn queue_order_lists_running_then_pending_by_number() {
        let (client, _) = stub(true).await;
        assert_eq!(client.queue_order().await.unwrap(), ["running", "next", "later"]);
    }

    #[tokio::test]
    async fn fetch_output_encodes_the_query_and_refuses_big_bodies() {
        let (client, _) = stub(true).await;
        let image = OutputImage {
            filename: "gen 00001_&.png".to_owned(),
            subfolder: "zimage".to_owned(),
            folder_type: "output".to_owned(),
        };
        assert_eq!(client.fetch_output(&image, 1000).await.unwrap().len(), 1000);
        assert!(matches!(
            client.fetch_output(&image, 999).await,
            Err(Error::TooLarge)
        ));
        let missing = OutputImage {
            filename: "other.png".to_owned(),
            ..image
        };
        assert!(matches!(
            client.fetch_output(&missing, 1000).await,
            Err(Error::NotFound)
        ));
    }

    #[tokio::test]
    async fn probe_reports_missing_node_classes_and_the_device() {
        let (client, _) = stub(true).await;
        let probe = client.probe(&committed_workflow(default_models())).await.unwrap();
        assert_eq!(probe.missing_nodes, ["UnetLoaderGGUF"]);
        assert!(probe.missing_models.is_empty());
        assert!(probe.other_problems.is_empty(), "{:?}", probe.other_problems);
        assert_eq!(probe.comfyui_version.as_deref(), Some("0.8.0"));
        assert_eq!(probe.device.unwrap().kind, "cpu");
    }

    #[tokio::test]
    async fn probe_reports_model_files_the_loaders_lack() {
        let (client, _) = stub(true).await;
        let probe = client
            .probe(&committed_workflow(ModelFiles {
                vae: "other.safetensors".to_owned(),
                ..default_models()
            }))
            .await
            .unwrap();
        assert_eq!(probe.missing_models, ["other.safetensors"]);
        assert!(!probe.is_ready());
    }

    #[tokio::test]
    async fn nothing_listening_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let client = ComfyClient::new(Url::parse(&format!("http://{address}")).unwrap());
        assert!(matches!(client.queue_order().await, Err(Error::Unreachable)));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let never = Router::new().route("/queue", get(std::future::pending::<String>));
        let base = serve(never).await;
        let timeouts = Timeouts {
            request: Duration::from_millis(200),
            ..Timeouts::default()
        };
        let client = ComfyClient::with_timeouts(base, timeouts);
        assert!(matches!(client.queue_order().await, Err(Error::Timeout)));
    }

    #[test]
    fn a_prompt_id_is_one_path_segment() {
        let client = ComfyClient::new(Url::parse("http://127.0.0.1:8188").unwrap());
        let url = client.endpoint(&["api", "jobs", "../view?x=1"]).unwrap();
        assert_eq!(url.path_segments().unwrap().count(), 3, "{url}");
        assert!(url.query().is_none(), "{url}");
        let prefixed = ComfyClient::new(Url::parse("http://comfy.lan/sub/").unwrap());
        assert_eq!(
            prefixed.endpoint(&["prompt"]).unwrap().as_str(),
            "http://comfy.lan/sub/prompt"
        );
    }

    #[test]
    fn states_are_shared_between_clones() {
        let client = ComfyClient::new(Url::parse("http://127.0.0.1:1").unwrap());
        let clone = client.clone();
        client.inner.jobs_api.store(JOBS_API_ABSENT, Ordering::Relaxed);
        assert_eq!(clone.inner.jobs_api.load(Ordering::Relaxed), JOBS_API_ABSENT);
    }
}
