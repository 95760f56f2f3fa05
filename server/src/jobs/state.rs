//! A job's life as one enum and the one function that moves it: [`Phase`] owns each stage's data
//! (where a job is held and since when lives in the variants that hold it), [`advance`] takes a phase
//! and an [`Input`] (something ComfyUI, the engine, a person or the clock said) and gives the next
//! phase, the events for watchers and the I/O to start ([`Effect`], each naming the backend it goes
//! to). No I/O happens here; the engine (`engine.rs`) runs the effects and feeds their results back.
//! Which backend is busy is never stored: a backend holds the one job whose phase says it does.
//!
//! ```text
//! Waiting ─Dispatch─▶ Submitting ─Accepted─▶ Queued ─Started─▶ Running ─Succeeded─▶ Saving ─Saved─▶ Completed
//!    ▲                    │ unsure/lost          │ lost           │ lost                 │
//!    └────────────────────┴──────────────────────┴────────────────┘ (sent again)         └─▶ Failed
//! any unfinished but Saving ─Cancel─▶ Cancelled (waiting) or Cancelling ─anything ComfyUI says─▶ Cancelled
//! at ComfyUI ─Deadline─▶ Failed (timed_out)      ComfyUI's verdict ─▶ Failed
//! at a backend ─BackendLost─▶ Waiting (retrying, for another backend) or Failed (backend_lost)
//! ```
//!
//! A cancel is final: once a person's cancel is accepted the job ends `cancelled` whatever ComfyUI
//! does next, and an image it finishes anyway is never fetched.

use std::time::{Duration, Instant};

use zimage_contract::{JobEvent, JobFailure, JobStatus};

use crate::comfy::{OutputImage, RemoteState};
use crate::history::HistoryRecord;

/// How often a job ComfyUI lost (it restarted, or a submission's answer never came) is sent again
/// before it fails. Sending again is safe: the same prompt, seed and size make the same image.
pub const MAX_RESUBMITS: u32 = 3;

/// How often a job whose backend died or stopped answering is moved to another before it fails.
pub const MAX_FAILOVERS: u32 = 2;

/// Where a job was handed: which backend, which hand-over of the job it is (answers about an earlier
/// one are not this one's), and when (the deadline runs from here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// The backend's index.
    pub backend: usize,
    /// Counts the job's hand-overs, from 1.
    pub attempt: u32,
    pub since: Instant,
}

/// Where a job is in its life. Each variant holds what exists at that stage and nothing else.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// In the gateway's waiting line; no ComfyUI has it.
    Waiting,
    /// Being handed to a backend (`POST /prompt` under way).
    Submitting(At),
    /// The backend holds it and has not started it.
    Queued(At),
    /// The backend is working on it: the sampler's step so far and the output files announced so far.
    Running {
        at: At,
        step: u32,
        outputs: Vec<OutputImage>,
    },
    /// A person cancelled it while a backend held it; waiting for the backend to let go of it.
    Cancelling(At),
    /// The backend finished it; the image is being fetched from there and written to disk.
    Saving(At),
    /// The image and its record are on disk.
    Completed {
        record: HistoryRecord,
    },
    Failed {
        failure: JobFailure,
    },
    Cancelled,
}

/// What can happen to a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The engine picked the job to run next, on this backend.
    Dispatch { at: At },
    /// ComfyUI accepted the prompt.
    SubmitAccepted,
    /// ComfyUI refused the prompt, for a reason sending it again would not change.
    SubmitRefused { failure: JobFailure },
    /// Nothing answered the submission: ComfyUI cannot have it.
    SubmitUnreachable,
    /// The submission's answer never came: ComfyUI may or may not have it.
    SubmitUncertain,
    /// ComfyUI began executing it.
    Started,
    /// The sampler reported step `step` of `total`.
    Progress { step: u32, total: u32 },
    /// The output node named its files.
    Output { images: Vec<OutputImage> },
    /// ComfyUI ran it to the end.
    Succeeded,
    /// ComfyUI failed it.
    ComfyFailed { failure: JobFailure },
    /// ComfyUI interrupted it.
    Interrupted,
    /// ComfyUI is done with it without an earlier verdict (`executing {node: null}`).
    Finished,
    /// ComfyUI's own records, asked for because events may have been lost.
    Remote(RemoteState),
    /// The image and its record are on disk.
    Saved { record: HistoryRecord },
    /// The image could not be fetched or kept.
    SaveFailed { failure: JobFailure },
    /// A person asked to cancel.
    Cancel,
    /// The job held its backend for longer than its deadline, or (waiting) no backend could take a
    /// job for that long.
    Deadline { limit: Duration },
    /// The backend holding the job died or stopped answering, and another backend is ready: `reason`
    /// says which and how, for people.
    BackendLost { reason: String },
    /// A waiting job no backend can run any more (every backend that had one of its LoRAs dropped it).
    Unrunnable { failure: JobFailure },
}

/// I/O the engine starts after a transition, each at the backend it names.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// `POST /prompt` under the backend's current connection's client id.
    Submit(At),
    /// Ask the backend's records what became of the job.
    Reconcile(At),
    /// Drop the job from the backend's queue (it has not started).
    DeletePending { backend: usize },
    /// Interrupt the job (by its prompt id only, never someone else's).
    Interrupt { backend: usize },
    /// Fetch the finished image (from these files, or from the backend's records when none are
    /// known) and write it and its record to disk.
    Save { at: At, outputs: Vec<OutputImage> },
}

/// The result of a legal input.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub next: Phase,
    pub events: Vec<JobEvent>,
    pub effects: Vec<Effect>,
    /// The job goes back into the waiting line to be sent again (ComfyUI lost it, or its backend).
    pub requeue: bool,
}

/// An input that makes no sense in the phase (a late or duplicated message): logged and ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input} does not apply to a job that is {phase}")]
pub struct Illegal {
    pub phase: &'static str,
    pub input: &'static str,
}

/// Why a cancel is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CancelRefused {
    #[error("the job has already ended")]
    AlreadyEnded,
    #[error("the image is already being saved")]
    Saving,
}

impl Phase {
    /// The status the API shows.
    pub fn status(&self) -> JobStatus {
        match self {
            Phase::Waiting | Phase::Submitting(_) | Phase::Queued(_) => JobStatus::Queued,
            Phase::Running { .. } | Phase::Cancelling(_) | Phase::Saving(_) => JobStatus::Running,
            Phase::Completed { .. } => JobStatus::Completed,
            Phase::Failed { .. } => JobStatus::Failed,
            Phase::Cancelled => JobStatus::Cancelled,
        }
    }

    /// True once the job can no longer change.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::Completed { .. } | Phase::Failed { .. } | Phase::Cancelled
        )
    }

    /// Where the job is at a backend (held there, or being saved from there).
    pub fn at(&self) -> Option<At> {
        match self {
            Phase::Submitting(at)
            | Phase::Queued(at)
            | Phase::Running { at, .. }
            | Phase::Cancelling(at)
            | Phase::Saving(at) => Some(*at),
            _ => None,
        }
    }

    /// The backend the job holds: it is handed to it, queued or running there, or being taken back.
    /// That backend gets no other job meanwhile. A job being saved needs only the disk (and one
    /// download): its backend can start the next job.
    pub fn holder(&self) -> Option<At> {
        match self {
            Phase::Saving(_) => None,
            phase => phase.at(),
        }
    }

    /// The sampler step reached so far.
    pub fn step(&self) -> u32 {
        match self {
            Phase::Running { step, .. } => *step,
            Phase::Saving(_) | Phase::Completed { .. } => zimage_contract::STEPS,
            _ => 0,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Submitting(_) => "submitting",
            Phase::Queued(_) => "queued",
            Phase::Running { .. } => "running",
            Phase::Cancelling(_) => "cancelling",
            Phase::Saving(_) => "saving",
            Phase::Completed { .. } => "completed",
            Phase::Failed { .. } => "failed",
            Phase::Cancelled => "cancelled",
        }
    }
}

impl Input {
    fn name(&self) -> &'static str {
        match self {
            Input::Dispatch { .. } => "dispatch",
            Input::SubmitAccepted => "submit accepted",
            Input::SubmitRefused { .. } => "submit refused",
            Input::SubmitUnreachable => "submit unreachable",
            Input::SubmitUncertain => "submit uncertain",
            Input::Started => "started",
            Input::Progress { .. } => "progress",
            Input::Output { .. } => "output",
            Input::Succeeded => "succeeded",
            Input::ComfyFailed { .. } => "ComfyUI failure",
            Input::Interrupted => "interrupted",
            Input::Finished => "finished",
            Input::Remote(_) => "ComfyUI's records",
            Input::Saved { .. } => "saved",
            Input::SaveFailed { .. } => "save failed",
            Input::Cancel => "cancel",
            Input::Deadline { .. } => "deadline",
            Input::BackendLost { .. } => "backend lost",
            Input::Unrunnable { .. } => "unrunnable",
        }
    }
}

/// Checks a cancel before it is applied, so the person gets a clear answer.
pub fn may_cancel(phase: &Phase) -> Result<(), CancelRefused> {
    match phase {
        Phase::Saving(_) => Err(CancelRefused::Saving),
        phase if phase.is_final() => Err(CancelRefused::AlreadyEnded),
        _ => Ok(()),
    }
}

/// The one place a job changes phase. `resubmits` is how often it was sent again already.
pub fn advance(phase: &Phase, input: Input, resubmits: u32) -> Result<Transition, Illegal> {
    let illegal = |input: &Input| Illegal {
        phase: phase.name(),
        input: input.name(),
    };
    let lost = |why: &str| {
        if resubmits < MAX_RESUBMITS {
            retrying(why.to_owned(), resubmits)
        } else {
            fail(
                "lost",
                format!("{why} It was sent again {resubmits} times; please generate it again."),
            )
        }
    };
    let transition = match (phase, input) {
        (phase, input) if phase.is_final() => return Err(illegal(&input)),

        // Into ComfyUI.
        (Phase::Waiting, Input::Dispatch { at }) => {
            with_effects(to(Phase::Submitting(at)), [Effect::Submit(at)])
        }
        (Phase::Submitting(at), Input::SubmitAccepted) => to(Phase::Queued(*at)),
        (Phase::Submitting(_), Input::SubmitRefused { failure }) => failed(failure),
        (Phase::Submitting(_), Input::SubmitUnreachable) => Transition {
            requeue: true,
            ..to(Phase::Waiting)
        },
        (Phase::Submitting(at), Input::SubmitUncertain) => {
            with_effects(to(Phase::Queued(*at)), [Effect::Reconcile(*at)])
        }

        // ComfyUI's events. A start or a step may arrive before the submission's own answer.
        (Phase::Submitting(at) | Phase::Queued(at), Input::Started) => started(*at, Vec::new(), None),
        (Phase::Submitting(at) | Phase::Queued(at), Input::Progress { step, total }) => {
            started(*at, Vec::new(), Some((step, total)))
        }
        // Every node's start reads as `Started`; only the first one matters.
        (Phase::Running { .. }, Input::Started) => to(phase.clone()),
        (Phase::Running { at, step, outputs }, Input::Progress { step: new, total }) => {
            if new > *step {
                let step = new.min(total);
                Transition {
                    events: vec![JobEvent::Progress { step, total }],
                    ..to(Phase::Running {
                        at: *at,
                        step,
                        outputs: outputs.clone(),
                    })
                }
            } else {
                to(phase.clone())
            }
        }
        (Phase::Submitting(at) | Phase::Queued(at), Input::Output { images }) => started(*at, images, None),
        (Phase::Running { at, step, .. }, Input::Output { images }) => to(Phase::Running {
            at: *at,
            step: *step,
            outputs: images,
        }),
        (Phase::Running { at, outputs, .. }, Input::Succeeded) => saving(*at, outputs.clone()),
        (Phase::Submitting(at) | Phase::Queued(at), Input::Succeeded) => saving(*at, Vec::new()),
        (Phase::Submitting(_) | Phase::Queued(_) | Phase::Running { .. }, Input::ComfyFailed { failure }) => {
            failed(failure)
        }
        // Interrupted from outside the studio (ComfyUI's own page): the job ends as cancelled.
        (Phase::Submitting(_) | Phase::Queued(_) | Phase::Running { .. }, Input::Interrupted) => cancelled(),
        (Phase::Submitting(at) | Phase::Queued(at) | Phase::Running { at, .. }, Input::Finished) => {
            with_effects(to(phase.clone()), [Effect::Reconcile(*at)])
        }

        // ComfyUI's records.
        (Phase::Queued(at) | Phase::Submitting(at), Input::Remote(RemoteState::Pending)) => {
            to(Phase::Queued(*at))
        }
        (Phase::Queued(at) | Phase::Submitting(at), Input::Remote(RemoteState::Running)) => {
            started(*at, Vec::new(), None)
        }
        (Phase::Running { .. }, Input::Remote(RemoteState::Pending | RemoteState::Running)) => {
            to(phase.clone())
        }
        (
            Phase::Submitting(at) | Phase::Queued(at) | Phase::Running { at, .. },
            Input::Remote(RemoteState::Completed { images }),
        ) => saving(*at, images),
        (
            Phase::Submitting(_) | Phase::Queued(_) | Phase::Running { .. },
            Input::Remote(RemoteState::Failed { failure }),
        ) => failed(failure.map_or_else(
            || JobFailure {
                code: "execution_error".to_owned(),
                message: "ComfyUI stopped the job.".to_owned(),
            },
            |failure| JobFailure {
                code: failure.code().to_owned(),
                message: failure.human_message(),
            },
        )),
        (
            Phase::Submitting(_) | Phase::Queued(_) | Phase::Running { .. },
            Input::Remote(RemoteState::Cancelled),
        ) => cancelled(),
        (
            Phase::Submitting(_) | Phase::Queued(_) | Phase::Running { .. },
            Input::Remote(RemoteState::Unknown),
        ) => lost("ComfyUI no longer knows this job (it probably restarted)."),

        // Saving.
        (Phase::Saving(_), Input::Saved { record }) => {
            let event = completed_event(&record);
            Transition {
                events: vec![event],
                ..to(Phase::Completed { record })
            }
        }
        (Phase::Saving(_), Input::SaveFailed { failure }) => failed(failure),

        // A person. The cancel is final: from here on the job ends `cancelled`, and the backend is only
        // told to let go of it (the slot stays taken until it has, so the next job does not queue
        // behind a prompt that is still running).
        (Phase::Waiting, Input::Cancel) => cancelled(),
        (Phase::Submitting(at), Input::Cancel) => to(Phase::Cancelling(*at)),
        (Phase::Queued(at), Input::Cancel) => with_effects(
            to(Phase::Cancelling(*at)),
            [
                Effect::DeletePending { backend: at.backend },
                Effect::Reconcile(*at),
            ],
        ),
        (Phase::Running { at, .. }, Input::Cancel) => with_effects(
            to(Phase::Cancelling(*at)),
            [Effect::Interrupt { backend: at.backend }],
        ),
        (Phase::Cancelling(at), Input::SubmitAccepted | Input::SubmitUncertain) => with_effects(
            to(Phase::Cancelling(*at)),
            [
                Effect::DeletePending { backend: at.backend },
                Effect::Reconcile(*at),
            ],
        ),
        (Phase::Cancelling(at), Input::Remote(RemoteState::Pending)) => with_effects(
            to(Phase::Cancelling(*at)),
            [
                Effect::DeletePending { backend: at.backend },
                Effect::Reconcile(*at),
            ],
        ),
        (Phase::Cancelling(at), Input::Remote(RemoteState::Running)) => with_effects(
            to(Phase::Cancelling(*at)),
            [Effect::Interrupt { backend: at.backend }],
        ),
        (Phase::Cancelling(_), Input::Started | Input::Progress { .. } | Input::Output { .. }) => {
            to(phase.clone())
        }
        // Whatever ComfyUI's last word (it finished anyway, failed, stopped, forgot the job, or is
        // gone), the person's cancel stands; a finished image is not fetched.
        (
            Phase::Cancelling(_),
            Input::SubmitRefused { .. }
            | Input::SubmitUnreachable
            | Input::Succeeded
            | Input::ComfyFailed { .. }
            | Input::Interrupted
            | Input::Finished
            | Input::Remote(_)
            | Input::BackendLost { .. },
        ) => cancelled(),
        (Phase::Cancelling(at), Input::Deadline { .. }) => with_effects(
            cancelled(),
            [
                Effect::DeletePending { backend: at.backend },
                Effect::Interrupt { backend: at.backend },
            ],
        ),

        // The clock. ComfyUI is told to drop the job, so the GPU is free for the next one.
        (
            Phase::Submitting(at) | Phase::Queued(at) | Phase::Running { at, .. },
            Input::Deadline { limit },
        ) => {
            let effect = if matches!(phase, Phase::Running { .. }) {
                Effect::Interrupt { backend: at.backend }
            } else {
                Effect::DeletePending { backend: at.backend }
            };
            with_effects(
                fail(
                    "timed_out",
                    format!(
                        "ComfyUI did not finish this image within {}; the studio stopped waiting for it. \
                         Check that ComfyUI is running and not stuck, then generate it again.",
                        human_duration(limit)
                    ),
                ),
                [effect],
            )
        }

        (Phase::Waiting, Input::Unrunnable { failure }) => failed(failure),

        // No backend could take a job for a whole deadline: the line cannot move.
        (Phase::Waiting, Input::Deadline { limit }) => fail(
            "timed_out",
            format!(
                "No ComfyUI backend was ready for {}, so this image was never started. Check that \
                 ComfyUI is running and has its models, then generate it again.",
                human_duration(limit)
            ),
        ),

        // The backend is gone: the job starts over elsewhere (same prompt, seed and size, so the same
        // image), unless it moved too often already. Mid-submission, the submission's own answer
        // decides.
        (Phase::Queued(_) | Phase::Running { .. } | Phase::Saving(_), Input::BackendLost { reason }) => {
            if resubmits < MAX_FAILOVERS {
                retrying(reason, resubmits)
            } else {
                fail(
                    "backend_lost",
                    format!(
                        "{reason} This image was already sent again {resubmits} times and no backend \
                         finished it; please generate it again."
                    ),
                )
            }
        }

        (_, input) => return Err(illegal(&input)),
    };
    Ok(transition)
}

/// The `completed` event of a stored record.
pub fn completed_event(record: &HistoryRecord) -> JobEvent {
    let item = record.item();
    JobEvent::Completed {
        image_url: item.image_url,
        thumbnail_url: item.thumbnail_url,
        seed: item.seed,
        width: item.width,
        height: item.height,
        elapsed_ms: record.elapsed_ms,
        backend: record.backend.clone(),
    }
}

fn to(next: Phase) -> Transition {
    Transition {
        next,
        events: Vec::new(),
        effects: Vec::new(),
        requeue: false,
    }
}

/// Back to the line, to be sent again, telling the watchers why.
fn retrying(reason: String, resubmits: u32) -> Transition {
    Transition {
        next: Phase::Waiting,
        events: vec![JobEvent::Retrying {
            reason,
            attempt: resubmits.saturating_add(1),
        }],
        effects: Vec::new(),
        requeue: true,
    }
}

fn with_effects<const N: usize>(mut transition: Transition, effects: [Effect; N]) -> Transition {
    transition.effects.extend(effects);
    transition
}

fn started(at: At, outputs: Vec<OutputImage>, progress: Option<(u32, u32)>) -> Transition {
    let mut events = vec![JobEvent::Running {}];
    let mut step = 0;
    if let Some((value, total)) = progress {
        step = value.min(total);
        events.push(JobEvent::Progress { step, total });
    }
    Transition {
        next: Phase::Running { at, step, outputs },
        events,
        effects: Vec::new(),
        requeue: false,
    }
}

fn saving(at: At, outputs: Vec<OutputImage>) -> Transition {
    Transition {
        next: Phase::Saving(at),
        events: Vec::new(),
        effects: vec![Effect::Save { at, outputs }],
        requeue: false,
    }
}

fn failed(failure: JobFailure) -> Transition {
    Transition {
        events: vec![JobEvent::Failed {
            code: failure.code.clone(),
            message: failure.message.clone(),
        }],
        next: Phase::Failed { failure },
        effects: Vec::new(),
        requeue: false,
    }
}

fn fail(code: &str, message: String) -> Transition {
    failed(JobFailure {
        code: code.to_owned(),
        message,
    })
}

fn cancelled() -> Transition {
    Transition {
        next: Phase::Cancelled,
        events: vec![JobEvent::Cancelled {}],
        effects: Vec::new(),
        requeue: false,
    }
}

/// "10 minutes", "90 seconds": for sentences.
fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 120 && seconds.is_multiple_of(60) {
        format!("{} minutes", seconds / 60)
    } else {
        format!("{seconds} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comfy::ExecutionFailure;
    use crate::job_id::JobId;

    /// One fixed place at backend 0, so phases compare equal.
    fn at() -> At {
        static SINCE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        At {
            backend: 0,
            attempt: 1,
            since: *SINCE.get_or_init(Instant::now),
        }
    }

    fn running(step: u32) -> Phase {
        Phase::Running {
            at: at(),
            step,
            outputs: Vec::new(),
        }
    }

    fn image() -> OutputImage {
        OutputImage {
            filename: "z_00001_.png".to_owned(),
            subfolder: String::new(),
            folder_type: "output".to_owned(),
        }
    }

    fn failure(code: &str) -> JobFailure {
        JobFailure {
            code: code.to_owned(),
            message: "It went wrong.".to_owned(),
        }
    }

    fn record() -> HistoryRecord {
        HistoryRecord {
            id: JobId::new(),
            owner: None,
            prompt: "fox".to_owned(),
            seed: 1,
            width: 512,
            height: 512,
            timings: zimage_contract::Timings::default(),
            elapsed_ms: 900,
            backend: None,
            source: None,
            loras: Vec::new(),
        }
    }

    /// (phase, input) -> (next phase, events, effects, back in line?)
    fn check(
        phase: Phase,
        input: Input,
        next: Phase,
        events: Vec<JobEvent>,
        effects: Vec<Effect>,
        requeue: bool,
    ) {
        let label = format!("{phase:?} + {input:?}");
        let transition = advance(&phase, input, 0).unwrap_or_else(|illegal| panic!("{label}: {illegal}"));
        assert_eq!(transition.next, next, "{label}");
        assert_eq!(transition.events, events, "{label}");
        assert_eq!(transition.effects, effects, "{label}");
        assert_eq!(transition.requeue, requeue, "{label}");
    }

    fn failed_with(code: &str, transition: &Transition) -> String {
        let Phase::Failed { failure } = &transition.next else {
            panic!("not failed: {transition:?}")
        };
        assert_eq!(failure.code, code);
        assert_eq!(
            transition.events,
            vec![JobEvent::Failed {
                code: failure.code.clone(),
                message: failure.message.clone()
            }]
        );
        failure.message.clone()
    }

    #[test]
    fn the_happy_path_from_the_line_to_the_disk() {
        check(
            Phase::Waiting,
            Input::Dispatch { at: at() },
            Phase::Submitting(at()),
            vec![],
            vec![Effect::Submit(at())],
            false,
        );
        check(
            Phase::Submitting(at()),
            Input::SubmitAccepted,
            Phase::Queued(at()),
            vec![],
            vec![],
            false,
        );
        check(
            Phase::Queued(at()),
            Input::Started,
            running(0),
            vec![JobEvent::Running {}],
            vec![],
            false,
        );
        check(
            running(0),
            Input::Progress { step: 1, total: 8 },
            running(1),
            vec![JobEvent::Progress { step: 1, total: 8 }],
            vec![],
            false,
        );
        let with_output = Phase::Running {
            at: at(),
            step: 8,
            outputs: vec![image()],
        };
        check(
            running(8),
            Input::Output {
                images: vec![image()],
            },
            with_output.clone(),
            vec![],
            vec![],
            false,
        );
        check(
            with_output,
            Input::Succeeded,
            Phase::Saving(at()),
            vec![],
            vec![Effect::Save {
                at: at(),
                outputs: vec![image()],
            }],
            false,
        );
        let record = record();
        check(
            Phase::Saving(at()),
            Input::Saved {
                record: record.clone(),
            },
            Phase::Completed {
                record: record.clone(),
            },
            vec![completed_event(&record)],
            vec![],
            false,
        );
    }

    #[test]
    fn events_that_overtake_the_submissions_answer_still_count() {
        check(
            Phase::Submitting(at()),
            Input::Started,
            running(0),
            vec![JobEvent::Running {}],
            vec![],
            false,
        );
        check(
            Phase::Queued(at()),
            Input::Progress { step: 3, total: 8 },
            running(3),
            vec![JobEvent::Running {}, JobEvent::Progress { step: 3, total: 8 }],
            vec![],
            false,
        );
        // Steps never go back, and later node starts change nothing.
        check(
            running(5),
            Input::Progress { step: 4, total: 8 },
            running(5),
            vec![],
            vec![],
            false,
        );
        check(running(5), Input::Started, running(5), vec![], vec![], false);
        // A step beyond the total is clamped.
        check(
            running(5),
            Input::Progress { step: 12, total: 8 },
            running(8),
            vec![JobEvent::Progress { step: 8, total: 8 }],
            vec![],
            false,
        );
    }

    #[test]
    fn submissions_that_fail_end_or_go_back_to_the_line_as_their_cause_says() {
        let refused = advance(
            &Phase::Submitting(at()),
            Input::SubmitRefused {
                failure: failure("model_not_installed"),
            },
            0,
        )
        .unwrap();
        failed_with("model_not_installed", &refused);
        check(
            Phase::Submitting(at()),
            Input::SubmitUnreachable,
            Phase::Waiting,
            vec![],
            vec![],
            true,
        );
        check(
            Phase::Submitting(at()),
            Input::SubmitUncertain,
            Phase::Queued(at()),
            vec![],
            vec![Effect::Reconcile(at())],
            false,
        );
    }

    #[test]
    fn comfyuis_records_decide_when_events_were_lost() {
        check(
            Phase::Queued(at()),
            Input::Remote(RemoteState::Pending),
            Phase::Queued(at()),
            vec![],
            vec![],
            false,
        );
        check(
            Phase::Queued(at()),
            Input::Remote(RemoteState::Running),
            running(0),
            vec![JobEvent::Running {}],
            vec![],
            false,
        );
        check(
            running(3),
            Input::Remote(RemoteState::Running),
            running(3),
            vec![],
            vec![],
            false,
        );
        check(
            running(3),
            Input::Remote(RemoteState::Completed {
                images: vec![image()],
            }),
            Phase::Saving(at()),
            vec![],
            vec![Effect::Save {
                at: at(),
                outputs: vec![image()],
            }],
            false,
        );
        check(
            running(3),
            Input::Remote(RemoteState::Cancelled),
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        let oom = ExecutionFailure {
            node_id: "3".to_owned(),
            node_type: "KSampler".to_owned(),
            exception_type: "torch.OutOfMemoryError".to_owned(),
            exception_message: "CUDA out of memory. Tried to allocate 2.00 GiB".to_owned(),
        };
        let failed = advance(
            &running(3),
            Input::Remote(RemoteState::Failed { failure: Some(oom) }),
            0,
        )
        .unwrap();
        assert!(failed_with("out_of_memory", &failed).contains("memory"));
        let stopped = advance(
            &running(3),
            Input::Remote(RemoteState::Failed { failure: None }),
            0,
        )
        .unwrap();
        failed_with("execution_error", &stopped);
        // `executing {node: null}` without a verdict: ask.
        check(
            running(3),
            Input::Finished,
            running(3),
            vec![],
            vec![Effect::Reconcile(at())],
            false,
        );
    }

    #[test]
    fn a_job_comfyui_lost_is_sent_again_a_few_times_then_fails() {
        for phase in [Phase::Submitting(at()), Phase::Queued(at()), running(4)] {
            for resubmits in 0..MAX_RESUBMITS {
                let again = advance(&phase, Input::Remote(RemoteState::Unknown), resubmits).unwrap();
                assert_eq!((again.next, again.requeue), (Phase::Waiting, true), "{phase:?}");
                assert!(
                    matches!(&again.events[..], [JobEvent::Retrying { reason, attempt }]
                        if reason.contains("restarted") && *attempt == resubmits + 1),
                    "{:?}",
                    again.events
                );
            }
            let lost = advance(&phase, Input::Remote(RemoteState::Unknown), MAX_RESUBMITS).unwrap();
            assert!(!lost.requeue);
            assert!(failed_with("lost", &lost).contains("generate it again"));
        }
    }

    #[test]
    fn a_job_whose_backend_is_lost_moves_to_another_at_most_twice_then_fails_with_a_sentence() {
        let lost = || Input::BackendLost {
            reason: "The backend gpu0 stopped answering.".to_owned(),
        };
        for phase in [Phase::Queued(at()), running(5), Phase::Saving(at())] {
            for resubmits in 0..MAX_FAILOVERS {
                let again = advance(&phase, lost(), resubmits).unwrap();
                assert_eq!((again.next, again.requeue), (Phase::Waiting, true), "{phase:?}");
                assert_eq!(
                    again.events,
                    vec![JobEvent::Retrying {
                        reason: "The backend gpu0 stopped answering.".to_owned(),
                        attempt: resubmits + 1,
                    }]
                );
                assert!(again.effects.is_empty());
            }
            let given_up = advance(&phase, lost(), MAX_FAILOVERS).unwrap();
            assert!(!given_up.requeue);
            let message = failed_with("backend_lost", &given_up);
            assert!(message.contains("gpu0 stopped answering"), "{message}");
            assert!(message.contains("no backend finished it"), "{message}");
        }
        // A cancel under way has nothing left to cancel; a submission's own answer decides for it.
        check(
            Phase::Cancelling(at()),
            lost(),
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        assert!(advance(&Phase::Submitting(at()), lost(), 0).is_err());
        assert!(advance(&Phase::Waiting, lost(), 0).is_err());
    }

    #[test]
    fn comfyuis_verdicts_end_the_job() {
        let failed = advance(
            &running(2),
            Input::ComfyFailed {
                failure: failure("execution_error"),
            },
            0,
        )
        .unwrap();
        failed_with("execution_error", &failed);
        check(
            running(2),
            Input::Interrupted,
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        // Succeeded without an `executed` message: the records name the file.
        check(
            Phase::Queued(at()),
            Input::Succeeded,
            Phase::Saving(at()),
            vec![],
            vec![Effect::Save {
                at: at(),
                outputs: vec![],
            }],
            false,
        );
        let unsaved = advance(
            &Phase::Saving(at()),
            Input::SaveFailed {
                failure: failure("storage_failed"),
            },
            0,
        )
        .unwrap();
        failed_with("storage_failed", &unsaved);
    }

    #[test]
    fn cancelling_depends_on_where_the_job_is() {
        check(
            Phase::Waiting,
            Input::Cancel,
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Submitting(at()),
            Input::Cancel,
            Phase::Cancelling(at()),
            vec![],
            vec![],
            false,
        );
        check(
            Phase::Queued(at()),
            Input::Cancel,
            Phase::Cancelling(at()),
            vec![],
            vec![Effect::DeletePending { backend: 0 }, Effect::Reconcile(at())],
            false,
        );
        check(
            running(3),
            Input::Cancel,
            Phase::Cancelling(at()),
            vec![],
            vec![Effect::Interrupt { backend: 0 }],
            false,
        );
        // The submission lands after the cancel: take it back at once.
        check(
            Phase::Cancelling(at()),
            Input::SubmitAccepted,
            Phase::Cancelling(at()),
            vec![],
            vec![Effect::DeletePending { backend: 0 }, Effect::Reconcile(at())],
            false,
        );
        check(
            Phase::Cancelling(at()),
            Input::SubmitUnreachable,
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Cancelling(at()),
            Input::Interrupted,
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Cancelling(at()),
            Input::Remote(RemoteState::Unknown),
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Cancelling(at()),
            Input::Remote(RemoteState::Running),
            Phase::Cancelling(at()),
            vec![],
            vec![Effect::Interrupt { backend: 0 }],
            false,
        );
        // The cancel is final: whatever ComfyUI says last, the job ends cancelled and a finished image
        // is never fetched.
        for last_word in [
            Input::Succeeded,
            Input::Remote(RemoteState::Completed {
                images: vec![image()],
            }),
            Input::ComfyFailed {
                failure: failure("execution_error"),
            },
            Input::Finished,
            Input::Remote(RemoteState::Failed { failure: None }),
        ] {
            check(
                Phase::Cancelling(at()),
                last_word,
                Phase::Cancelled,
                vec![JobEvent::Cancelled {}],
                vec![],
                false,
            );
        }
        // Its progress changes nothing.
        check(
            Phase::Cancelling(at()),
            Input::Progress { step: 8, total: 8 },
            Phase::Cancelling(at()),
            vec![],
            vec![],
            false,
        );
        // Out of time while ComfyUI still holds it: cancelled all the same, and told again to let go.
        check(
            Phase::Cancelling(at()),
            Input::Deadline {
                limit: Duration::from_secs(60),
            },
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![
                Effect::DeletePending { backend: 0 },
                Effect::Interrupt { backend: 0 },
            ],
            false,
        );
        assert_eq!(may_cancel(&Phase::Saving(at())), Err(CancelRefused::Saving));
        assert_eq!(may_cancel(&Phase::Cancelled), Err(CancelRefused::AlreadyEnded));
        assert_eq!(may_cancel(&running(1)), Ok(()));
    }

    #[test]
    fn the_deadline_fails_the_job_and_frees_comfyui() {
        let limit = Duration::from_secs(600);
        let running = advance(&running(3), Input::Deadline { limit }, 0).unwrap();
        let message = failed_with("timed_out", &running);
        assert!(message.contains("10 minutes"), "{message}");
        assert_eq!(running.effects, vec![Effect::Interrupt { backend: 0 }]);
        let queued = advance(&Phase::Queued(at()), Input::Deadline { limit }, 0).unwrap();
        assert_eq!(queued.effects, vec![Effect::DeletePending { backend: 0 }]);
        let waiting = advance(
            &Phase::Waiting,
            Input::Deadline {
                limit: Duration::from_secs(45),
            },
            0,
        )
        .unwrap();
        assert!(failed_with("timed_out", &waiting).contains("45 seconds"));
        // Saving has its own time limits (the download's); the deadline does not cut a save short.
        assert!(advance(&Phase::Saving(at()), Input::Deadline { limit }, 0).is_err());
    }

    #[test]
    fn nothing_moves_a_job_that_has_ended_and_nonsense_is_refused() {
        let ended = [
            Phase::Completed { record: record() },
            Phase::Failed {
                failure: failure("x"),
            },
            Phase::Cancelled,
        ];
        let inputs = [
            Input::Dispatch { at: at() },
            Input::Started,
            Input::Succeeded,
            Input::Cancel,
            Input::Remote(RemoteState::Unknown),
            Input::Deadline {
                limit: Duration::from_secs(1),
            },
        ];
        for phase in &ended {
            assert!(phase.is_final());
            for input in &inputs {
                assert!(advance(phase, input.clone(), 0).is_err(), "{phase:?} + {input:?}");
            }
        }
        // A job is dispatched only from the line, and saved only once.
        assert!(advance(&Phase::Queued(at()), Input::Dispatch { at: at() }, 0).is_err());
        assert!(advance(&Phase::Saving(at()), Input::Succeeded, 0).is_err());
        assert!(advance(&Phase::Waiting, Input::Progress { step: 1, total: 8 }, 0).is_err());
    }

    #[test]
    fn only_jobs_handed_to_comfyui_hold_it() {
        assert_eq!(Phase::Waiting.holder(), None);
        assert_eq!(Phase::Submitting(at()).holder(), Some(at()));
        assert_eq!(Phase::Queued(at()).holder(), Some(at()));
        assert_eq!(running(1).holder(), Some(at()));
        assert_eq!(Phase::Cancelling(at()).holder(), Some(at()));
        // Saving needs only the disk: ComfyUI can start the next job meanwhile.
        assert_eq!(Phase::Saving(at()).holder(), None);
        assert_eq!(Phase::Saving(at()).at(), Some(at()));
        assert_eq!(Phase::Saving(at()).status(), JobStatus::Running);
        assert_eq!(Phase::Submitting(at()).status(), JobStatus::Queued);
    }
}
