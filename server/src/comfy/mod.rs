//! ComfyUI adapter: the only code that knows ComfyUI's protocol (HTTP routes, WebSocket messages,
//! binary preview frames, error bodies, workflow graphs). The rest of the gateway sees the plain types
//! of this module: [`ComfyEvent`] from the socket, [`RemoteState`] from polling, [`Error`] from calls.

pub mod client;
pub mod messages;
pub mod socket;
pub mod workflow;

#[cfg(test)]
mod against_simulator;

use std::sync::{Arc, Mutex};

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
    Connected {
        /// The client id this connection is registered under: prompts submitted under it get their
        /// events on this connection.
        client_id: String,
    },
    /// The socket dropped or went silent; a reconnect is under way.
    Disconnected,
    /// ComfyUI's queue length changed (`status`).
    QueueRemaining(u32),
    /// The prompt began executing (`execution_start`).
    Started { prompt_id: String },
    /// A node began executing (`executing` with a node id).
    NodeStarted { prompt_id: String, node: String },
    /// A node reported progress (`progress`), e.g. KSampler step `value` of `max`.
    Progress {
        prompt_id: String,
        node: String,
        value: u32,
        max: u32,
    },
    /// A live preview image of the prompt (binary frame type 1 or 4).
    Preview {
        prompt_id: String,
        image: Bytes,
        mime: &'static str,
    },
    /// A node produced output files (`executed`), e.g. SaveImage.
    Output {
        prompt_id: String,
        node: String,
        images: Vec<OutputImage>,
    },
    /// The prompt ran to the end (`execution_success`).
    Succeeded { prompt_id: String },
    /// The prompt failed (`execution_error`).
    Failed {
        prompt_id: String,
        failure: ExecutionFailure,
    },
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
    Completed {
        images: Vec<OutputImage>,
    },
    Failed {
        failure: Option<ExecutionFailure>,
    },
    Cancelled,
    /// ComfyUI does not know the prompt (lost in a restart, or never queued).
    Unknown,
}

/// Why a call to ComfyUI did not give what was asked. Every call has a timeout, so none hangs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing answers at ComfyUI's address (connection refused, unknown host, connection reset).
    #[error("ComfyUI is unreachable")]
    Unreachable,
    /// ComfyUI accepted the connection but did not answer in time.
    #[error("ComfyUI did not answer in time")]
    Timeout,
    /// ComfyUI refused the prompt (HTTP 400). `code` is one of [`Error::MISSING_NODE`],
    /// [`Error::MODEL_NOT_INSTALLED`], [`Error::INVALID_OPTION`], [`Error::OUT_OF_RANGE`] or
    /// [`Error::INVALID_WORKFLOW`]; `message` says what to do, naming the node pack or model file.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    /// ComfyUI does not have what was asked for (an output file, a job).
    #[error("ComfyUI does not have it")]
    NotFound,
    /// The answer is larger than the caller allows.
    #[error("ComfyUI's answer is larger than allowed")]
    TooLarge,
    /// ComfyUI answered something this adapter does not understand.
    #[error("unexpected answer from ComfyUI: {0}")]
    Protocol(String),
}

impl Error {
    /// A node class of the workflow is unknown to ComfyUI: a node pack is not installed.
    pub const MISSING_NODE: &'static str = messages::rejection_code::MISSING_NODE;
    /// A loader does not list the configured model file: it is not installed.
    pub const MODEL_NOT_INSTALLED: &'static str = messages::rejection_code::MODEL_NOT_INSTALLED;
    /// A combo input (sampler, scheduler, CLIP type) holds a value ComfyUI does not offer.
    pub const INVALID_OPTION: &'static str = messages::rejection_code::INVALID_OPTION;
    /// A number lies outside a node's limits.
    pub const OUT_OF_RANGE: &'static str = messages::rejection_code::OUT_OF_RANGE;
    /// Any other reason ComfyUI gave for refusing the workflow.
    pub const INVALID_WORKFLOW: &'static str = messages::rejection_code::INVALID_WORKFLOW;
}

impl ExecutionFailure {
    /// `"out_of_memory"` when the GPU (or the CPU's RAM) ran out of memory, else `"execution_error"`.
    pub fn code(&self) -> &'static str {
        if self.is_out_of_memory() {
            "out_of_memory"
        } else {
            "execution_error"
        }
    }

    /// One or two sentences for the person who asked for the image.
    pub fn human_message(&self) -> String {
        let node = if self.node_type.is_empty() {
            "a node"
        } else {
            self.node_type.as_str()
        };
        if self.is_out_of_memory() {
            return format!(
                "The GPU ran out of memory while running {node}. Try a smaller size, close other programs \
                 using the GPU, or use a smaller model quantization."
            );
        }
        // The first line of the exception says what happened; the rest is usually ComfyUI's tips or noise.
        let first_line = self
            .exception_message
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty());
        match first_line {
            Some(line) => {
                const LONGEST: usize = 300;
                let mut line = line.to_owned();
                if let Some((cut, _)) = line.char_indices().nth(LONGEST) {
                    line.truncate(cut);
                    line.push('…');
                }
                format!("ComfyUI failed while running {node}: {line}")
            }
            None if self.exception_type.is_empty() => format!("ComfyUI failed while running {node}."),
            None => format!("ComfyUI failed while running {node} ({}).", self.exception_type),
        }
    }

    /// PyTorch raises `torch.OutOfMemoryError` ("CUDA out of memory", "Allocation on device ... would
    /// exceed allowed memory"), and ComfyUI appends a tip that says "you ran out of memory on your GPU".
    fn is_out_of_memory(&self) -> bool {
        let message = self.exception_message.to_lowercase();
        self.exception_type.contains("OutOfMemory")
            || message.contains("out of memory")
            || (message.contains("allocation on device") && message.contains("exceed"))
    }
}

/// The client id the gateway's WebSocket is registered under, shared by the socket (which picks a fresh
/// one on every reconnect) and the HTTP client (which submits prompts under the current one).
///
/// A fresh id per connection dodges ComfyUI's same-clientId reconnect bug (an old socket closing late
/// unregisters the new one); events of prompts submitted under an older id are then lost, which the
/// `Connected` event tells the gateway to make up for by polling.
#[derive(Debug, Clone)]
pub struct ClientId {
    current: Arc<Mutex<String>>,
}

impl ClientId {
    /// A new handle holding a fresh random id.
    pub fn new() -> ClientId {
        ClientId {
            current: Arc::new(Mutex::new(ClientId::fresh())),
        }
    }

    /// The id prompts are submitted under now.
    pub fn current(&self) -> String {
        // The lock only guards a String swap, so a poisoned lock still holds a valid id.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replaces the id with a fresh one and returns it.
    pub fn rotate(&self) -> String {
        let fresh = ClientId::fresh();
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh.clone();
        fresh
    }

    fn fresh() -> String {
        format!("zimage-{}", uuid::Uuid::new_v4().simple())
    }
}

impl Default for ClientId {
    fn default() -> ClientId {
        ClientId::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(exception_type: &str, exception_message: &str) -> ExecutionFailure {
        ExecutionFailure {
            node_id: "8".to_owned(),
            node_type: "KSampler".to_owned(),
            exception_type: exception_type.to_owned(),
            exception_message: exception_message.to_owned(),
        }
    }

    #[test]
    fn comfyui_out_of_memory_tip_gives_the_out_of_memory_code() {
        let oom = failure(
            "torch.OutOfMemoryError",
            "Allocation on device \nThis error means you ran out of memory on your GPU.\n\nTIPS: If the workflow \
             worked before you might have accidentally set the batch_size to a large number.",
        );
        assert_eq!(oom.code(), "out_of_memory");
        assert!(
            oom.human_message()
                .starts_with("The GPU ran out of memory while running KSampler. Try a smaller size")
        );
        assert_eq!(
            failure("RuntimeError", "CUDA out of memory. Tried to allocate 2 GiB").code(),
            "out_of_memory"
        );
        assert_eq!(failure("torch.cuda.OutOfMemoryError", "").code(), "out_of_memory");
    }

    #[test]
    fn other_failures_keep_the_first_line_of_the_exception() {
        let broken = failure(
            "RuntimeError",
            "mat1 and mat2 shapes cannot be multiplied (1x2304 and 2048x2304)\n",
        );
        assert_eq!(broken.code(), "execution_error");
        assert_eq!(
            broken.human_message(),
            "ComfyUI failed while running KSampler: mat1 and mat2 shapes cannot be multiplied \
             (1x2304 and 2048x2304)"
        );
        assert_eq!(
            failure("ExecutionBlocked", "").human_message(),
            "ComfyUI failed while running KSampler (ExecutionBlocked)."
        );
        let long = failure("ValueError", &"x".repeat(1000)).human_message();
        assert!(long.chars().count() < 400, "{long}");
    }

    #[test]
    fn rotating_the_client_id_changes_it_for_every_holder() {
        let socket_side = ClientId::new();
        let client_side = socket_side.clone();
        let before = client_side.current();
        let after = socket_side.rotate();
        assert_ne!(before, after);
        assert_eq!(client_side.current(), after);
        assert!(after.starts_with("zimage-"));
    }
}
