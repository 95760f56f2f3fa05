//! ComfyUI adapter: the only code that knows ComfyUI's protocol (HTTP routes, WebSocket messages,
//! binary preview frames, error bodies, workflow graphs). The rest of the gateway sees the plain types
//! of this module: [`ComfyEvent`] from the socket, [`RemoteState`] from polling, [`Error`] from calls.

use bytes::Bytes;

/// A file ComfyUI wrote, as `executed` messages and job records name it (fetched through `/view`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputImage {
    pub filename: String,
    pub subfolder: String,
    /// ComfyUI's folder type: `output`, `temp` or `input`.
    pub folder_type: String,
}

/// Why ComfyUI failed to run a prompt (its `execution_error` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionFailure {
    pub node_id: String,
    pub node_type: String,
    pub exception_type: String,
    pub exception_message: String,
}

/// What the ComfyUI WebSocket said, decoded and attributed to a prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum ComfyEvent {
    /// The socket is (re)connected. Events of prompts submitted before may have been lost, so every
    /// unfinished job must be reconciled by polling.
    Connected,
    /// The socket dropped or went silent; a reconnect is under way.
    Disconnected,
    /// ComfyUI's queue length changed (`status`).
    QueueRemaining(u32),
    /// The prompt began executing (`execution_start`).
    Started { prompt_id: String },
    /// A node began executing (`executing` with a node id).
    NodeStarted { prompt_id: String, node: String },
    /// A node reported progress (`progress`), e.g. KSampler step `value` of `max`.
    Progress { prompt_id: String, node: String, value: u32, max: u32 },
    /// A live preview image of the prompt (binary frame type 1 or 4).
    Preview { prompt_id: String, image: Bytes, mime: &'static str },
    /// A node produced output files (`executed`), e.g. SaveImage.
    Output { prompt_id: String, node: String, images: Vec<OutputImage> },
    /// The prompt ran to the end (`execution_success`).
    Succeeded { prompt_id: String },
    /// The prompt failed (`execution_error`).
    Failed { prompt_id: String, failure: ExecutionFailure },
    /// The prompt was interrupted (`execution_interrupted`).
    Interrupted { prompt_id: String },
    /// ComfyUI is done with the prompt, whatever the outcome (`executing` with `node: null`).
    Finished { prompt_id: String },
}

/// What ComfyUI's own records say of a prompt (from `/api/jobs/{id}`, or `/history/{id}` + `/queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    Pending,
    Running,
    Completed { images: Vec<OutputImage> },
    Failed { failure: Option<ExecutionFailure> },
    Cancelled,
    /// ComfyUI does not know the prompt (lost in a restart, or never queued).
    Unknown,
}
