//! ComfyUI adapter: the only code that knows ComfyUI's protocol (HTTP routes, WebSocket messages,
//! binary preview frames, error bodies, workflow graphs). The rest of the gateway sees the plain types
//! of this module: [`ComfyEvent`] and [`Link`] from the socket, [`RemoteState`] from polling,
//! [`Error`] from calls.

pub mod client;
pub mod messages;
pub mod socket;
pub mod workflow;

#[cfg(test)]
mod against_simulator;

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

/// The state of the gateway's WebSocket to ComfyUI, as [`socket::SocketHandle::link`] publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No connection: not yet made, lost, or failing to open. `reason` says why, in words.
    Down { reason: String },
    /// Connected under `client_id`: prompts submitted under this id have their events sent here.
    Up { client_id: String },
}

impl Link {
    /// The client id of the open connection, if there is one.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            Link::Up { client_id } => Some(client_id),
            Link::Down { .. } => None,
        }
    }
}

/// What the ComfyUI WebSocket said, decoded and attributed to a prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum ComfyEvent {
    /// The socket is (re)connected under `client_id`, a fresh id for every connection: prompts must
    /// be submitted under it to have their events sent to this connection. Events of prompts
    /// submitted before (under an older id) are lost, so every unfinished job must be reconciled by
    /// polling.
    Connected { client_id: String },
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
    /// [`Error::MODEL_NOT_INSTALLED`], [`Error::INVALID_OPTION`], [`Error::OUT_OF_RANGE`],
    /// [`Error::SOURCE_MISSING`] or [`Error::INVALID_WORKFLOW`]; `message` says what to do, naming the node pack or model file.
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
    /// `LoadImage` names a file ComfyUI's `input/` does not hold: upload the source again, then submit.
    pub const SOURCE_MISSING: &'static str = messages::rejection_code::SOURCE_MISSING;
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
}
