//! A job's life as one enum and the one function that moves it: [`Phase`] owns each stage's data,
//! [`advance`] takes a phase and an [`Input`] (something ComfyUI, the engine, a person or the clock
//! said) and gives the next phase, the events for watchers and the I/O to start ([`Effect`]). No I/O
//! happens here; the engine (`engine.rs`) runs the effects and feeds their results back as inputs.
//!
//! ```text
//! Waiting ─Dispatch─▶ Submitting ─Accepted─▶ Queued ─Started─▶ Running ─Succeeded─▶ Saving ─Saved─▶ Completed
//!    ▲                    │ unsure/lost          │ lost           │ lost                 │
//!    └────────────────────┴──────────────────────┴────────────────┘ (sent again)         └─▶ Failed
//! any unfinished ─Cancel─▶ Cancelled (waiting) or Cancelling ─Interrupted/gone─▶ Cancelled
//! at ComfyUI ─Deadline─▶ Failed (timed_out)      ComfyUI's verdict ─▶ Failed
//! at a backend ─BackendLost─▶ Waiting (retrying, for another backend) or Failed (backend_lost)
//! ```

use std::time::Duration;

use zimage_contract::{JobEvent, JobFailure, JobStatus};

use crate::comfy::{OutputImage, RemoteState};
use crate::history::HistoryRecord;

/// How often a job ComfyUI lost (it restarted, or a submission's answer never came) is sent again
/// before it fails. Sending again is safe: the same prompt, seed and size make the same image.
pub const MAX_RESUBMITS: u32 = 3;

/// How often a job whose backend died or stopped answering is moved to another before it fails.
pub const MAX_FAILOVERS: u32 = 2;

/// Where a job is in its life. Each variant holds what exists at that stage and nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// In the gateway's waiting line; ComfyUI has not seen it.
    Waiting,
    /// Being handed to ComfyUI (`POST /prompt` under way).
    Submitting,
    /// ComfyUI holds it and has not started it.
    Queued,
    /// ComfyUI is working on it: the sampler's step so far and the output files announced so far.
    Running {
        step: u32,
        outputs: Vec<OutputImage>,
    },
    /// A person cancelled it while ComfyUI held it; waiting for ComfyUI to confirm it dropped it.
    Cancelling,
    /// ComfyUI finished it; the image is being fetched and written to disk.
    Saving,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The engine picked the job to run next.
    Dispatch,
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
    /// The job held ComfyUI for longer than its deadline.
    Deadline { limit: Duration },
    /// The backend holding the job died or stopped answering, and another backend is ready: `reason`
    /// says which and how, for people.
    BackendLost { reason: String },
}

/// I/O the engine starts after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `POST /prompt` under the current connection's client id.
    Submit,
    /// Ask ComfyUI's records what became of the job.
    Reconcile,
    /// Drop the job from ComfyUI's queue (it has not started).
    DeletePending,
    /// Interrupt the job (by its prompt id only, never someone else's).
    Interrupt,
    /// Fetch the finished image (from these files, or from ComfyUI's records when none are known) and
    /// write it and its record to disk.
    Save { outputs: Vec<OutputImage> },
}

/// The result of a legal input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub next: Phase,
    pub events: Vec<JobEvent>,
    pub effects: Vec<Effect>,
    /// The job goes back into the waiting line to be sent again (ComfyUI lost it).
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
            Phase::Waiting | Phase::Submitting | Phase::Queued => JobStatus::Queued,
            Phase::Running { .. } | Phase::Cancelling | Phase::Saving => JobStatus::Running,
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

    /// True while ComfyUI holds (or is being handed) the job: the engine sends ComfyUI nothing else.
    pub fn holds_comfy(&self) -> bool {
        matches!(
            self,
            Phase::Submitting | Phase::Queued | Phase::Running { .. } | Phase::Cancelling
        )
    }

    /// The sampler step reached so far.
    pub fn step(&self) -> u32 {
        match self {
            Phase::Running { step, .. } => *step,
            Phase::Saving | Phase::Completed { .. } => zimage_contract::STEPS,
            _ => 0,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Submitting => "submitting",
            Phase::Queued => "queued",
            Phase::Running { .. } => "running",
            Phase::Cancelling => "cancelling",
            Phase::Saving => "saving",
            Phase::Completed { .. } => "completed",
            Phase::Failed { .. } => "failed",
            Phase::Cancelled => "cancelled",
        }
    }
}

impl Input {
    fn name(&self) -> &'static str {
        match self {
            Input::Dispatch => "dispatch",
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
        }
    }
}

/// Checks a cancel before it is applied, so the person gets a clear answer.
pub fn may_cancel(phase: &Phase) -> Result<(), CancelRefused> {
    match phase {
        Phase::Saving => Err(CancelRefused::Saving),
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
    let to = |next: Phase| Transition {
        next,
        events: Vec::new(),
        effects: Vec::new(),
        requeue: false,
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
        (Phase::Waiting, Input::Dispatch) => with_effects(to(Phase::Submitting), [Effect::Submit]),
        (Phase::Submitting, Input::SubmitAccepted) => to(Phase::Queued),
        (Phase::Submitting, Input::SubmitRefused { failure }) => failed(failure),
        (Phase::Submitting, Input::SubmitUnreachable) => Transition {
            requeue: true,
            ..to(Phase::Waiting)
        },
        (Phase::Submitting, Input::SubmitUncertain) => with_effects(to(Phase::Queued), [Effect::Reconcile]),

        // ComfyUI's events. A start or a step may arrive before the submission's own answer.
        (Phase::Submitting | Phase::Queued, Input::Started) => started(0, Vec::new(), None),
        (Phase::Submitting | Phase::Queued, Input::Progress { step, total }) => {
            started(0, Vec::new(), Some((step, total)))
        }
        // Every node's start reads as `Started`; only the first one matters.
        (Phase::Running { .. } | Phase::Cancelling, Input::Started) => to(phase.clone()),
        (Phase::Cancelling, Input::Progress { .. } | Input::Output { .. }) => to(phase.clone()),
        (Phase::Running { step, outputs }, Input::Progress { step: new, total }) => {
            if new > *step {
                let step = new.min(total);
                Transition {
                    events: vec![JobEvent::Progress { step, total }],
                    ..to(Phase::Running {
                        step,
                        outputs: outputs.clone(),
                    })
                }
            } else {
                to(phase.clone())
            }
        }
        (Phase::Submitting | Phase::Queued, Input::Output { images }) => started(0, images, None),
        (Phase::Running { step, .. }, Input::Output { images }) => to(Phase::Running {
            step: *step,
            outputs: images,
        }),
        (Phase::Running { outputs, .. }, Input::Succeeded) => saving(outputs.clone()),
        (Phase::Submitting | Phase::Queued | Phase::Cancelling, Input::Succeeded) => saving(Vec::new()),
        (Phase::Submitting | Phase::Queued | Phase::Running { .. }, Input::ComfyFailed { failure }) => {
            failed(failure)
        }
        (Phase::Cancelling, Input::ComfyFailed { .. }) => cancelled(),
        // Interrupted from outside the studio (ComfyUI's own page): the job ends as cancelled.
        (
            Phase::Submitting | Phase::Queued | Phase::Running { .. } | Phase::Cancelling,
            Input::Interrupted,
        ) => cancelled(),
        (Phase::Submitting | Phase::Queued | Phase::Running { .. } | Phase::Cancelling, Input::Finished) => {
            with_effects(to(phase.clone()), [Effect::Reconcile])
        }

        // ComfyUI's records.
        (Phase::Queued | Phase::Submitting, Input::Remote(RemoteState::Pending)) => to(Phase::Queued),
        (Phase::Queued | Phase::Submitting, Input::Remote(RemoteState::Running)) => {
            started(0, Vec::new(), None)
        }
        (Phase::Running { .. }, Input::Remote(RemoteState::Pending | RemoteState::Running)) => {
            to(phase.clone())
        }
        (
            Phase::Submitting | Phase::Queued | Phase::Running { .. } | Phase::Cancelling,
            Input::Remote(RemoteState::Completed { images }),
        ) => saving(images),
        (
            Phase::Submitting | Phase::Queued | Phase::Running { .. },
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
            Phase::Submitting | Phase::Queued | Phase::Running { .. },
            Input::Remote(RemoteState::Cancelled),
        ) => cancelled(),
        (Phase::Submitting | Phase::Queued | Phase::Running { .. }, Input::Remote(RemoteState::Unknown)) => {
            lost("ComfyUI no longer knows this job (it probably restarted).")
        }
        (Phase::Cancelling, Input::Remote(RemoteState::Pending)) => {
            with_effects(to(Phase::Cancelling), [Effect::DeletePending, Effect::Reconcile])
        }
        (Phase::Cancelling, Input::Remote(RemoteState::Running)) => {
            with_effects(to(Phase::Cancelling), [Effect::Interrupt])
        }
        (
            Phase::Cancelling,
            Input::Remote(RemoteState::Cancelled | RemoteState::Unknown | RemoteState::Failed { .. }),
        ) => cancelled(),

        // Saving.
        (Phase::Saving, Input::Saved { record }) => {
            let event = completed_event(&record);
            Transition {
                events: vec![event],
                ..to(Phase::Completed { record })
            }
        }
        (Phase::Saving, Input::SaveFailed { failure }) => failed(failure),

        // A person.
        (Phase::Waiting, Input::Cancel) => cancelled(),
        (Phase::Submitting, Input::Cancel) => to(Phase::Cancelling),
        (Phase::Queued, Input::Cancel) => {
            with_effects(to(Phase::Cancelling), [Effect::DeletePending, Effect::Reconcile])
        }
        (Phase::Running { .. }, Input::Cancel) => with_effects(to(Phase::Cancelling), [Effect::Interrupt]),
        (Phase::Cancelling, Input::SubmitAccepted | Input::SubmitUncertain) => {
            with_effects(to(Phase::Cancelling), [Effect::DeletePending, Effect::Reconcile])
        }
        (Phase::Cancelling, Input::SubmitRefused { .. } | Input::SubmitUnreachable) => cancelled(),

        // The clock. ComfyUI is told to drop the job, so the GPU is free for the next one.
        (
            Phase::Submitting | Phase::Queued | Phase::Running { .. } | Phase::Cancelling,
            Input::Deadline { limit },
        ) => {
            let effect = if matches!(phase, Phase::Running { .. }) {
                Effect::Interrupt
            } else {
                Effect::DeletePending
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

        // ComfyUI out of reach for a whole deadline: the line cannot move.
        (Phase::Waiting, Input::Deadline { limit }) => fail(
            "timed_out",
            format!(
                "ComfyUI could not be reached for {}, so this image was never started. Check that \
                 ComfyUI is running, then generate it again.",
                human_duration(limit)
            ),
        ),

        // The backend is gone: the job starts over elsewhere (same prompt, seed and size, so the same
        // image), unless it moved too often already. Mid-submission, the submission's own answer
        // decides; a cancel in progress has nothing left to cancel.
        (Phase::Queued | Phase::Running { .. } | Phase::Saving, Input::BackendLost { reason }) => {
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
        (Phase::Cancelling, Input::BackendLost { .. }) => cancelled(),

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
        seed: record.seed,
        width: record.width,
        height: record.height,
        elapsed_ms: record.elapsed_ms,
        backend: record.backend.clone(),
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

fn started(step: u32, outputs: Vec<OutputImage>, progress: Option<(u32, u32)>) -> Transition {
    let mut events = vec![JobEvent::Running {}];
    let mut step = step;
    if let Some((value, total)) = progress {
        step = value.min(total);
        events.push(JobEvent::Progress { step, total });
    }
    Transition {
        next: Phase::Running { step, outputs },
        events,
        effects: Vec::new(),
        requeue: false,
    }
}

fn saving(outputs: Vec<OutputImage>) -> Transition {
    Transition {
        next: Phase::Saving,
        events: Vec::new(),
        effects: vec![Effect::Save { outputs }],
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

    fn running(step: u32) -> Phase {
        Phase::Running {
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
            Input::Dispatch,
            Phase::Submitting,
            vec![],
            vec![Effect::Submit],
            false,
        );
        check(
            Phase::Submitting,
            Input::SubmitAccepted,
            Phase::Queued,
            vec![],
            vec![],
            false,
        );
        check(
            Phase::Queued,
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
            Phase::Saving,
            vec![],
            vec![Effect::Save {
                outputs: vec![image()],
            }],
            false,
        );
        let record = record();
        check(
            Phase::Saving,
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
            Phase::Submitting,
            Input::Started,
            running(0),
            vec![JobEvent::Running {}],
            vec![],
            false,
        );
        check(
            Phase::Queued,
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
            &Phase::Submitting,
            Input::SubmitRefused {
                failure: failure("model_not_installed"),
            },
            0,
        )
        .unwrap();
        failed_with("model_not_installed", &refused);
        check(
            Phase::Submitting,
            Input::SubmitUnreachable,
            Phase::Waiting,
            vec![],
            vec![],
            true,
        );
        check(
            Phase::Submitting,
            Input::SubmitUncertain,
            Phase::Queued,
            vec![],
            vec![Effect::Reconcile],
            false,
        );
    }

    #[test]
    fn comfyuis_records_decide_when_events_were_lost() {
        check(
            Phase::Queued,
            Input::Remote(RemoteState::Pending),
            Phase::Queued,
            vec![],
            vec![],
            false,
        );
        check(
            Phase::Queued,
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
            Phase::Saving,
            vec![],
            vec![Effect::Save {
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
            vec![Effect::Reconcile],
            false,
        );
    }

    #[test]
    fn a_job_comfyui_lost_is_sent_again_a_few_times_then_fails() {
        for phase in [Phase::Submitting, Phase::Queued, running(4)] {
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
        for phase in [Phase::Queued, running(5), Phase::Saving] {
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
            Phase::Cancelling,
            lost(),
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        assert!(advance(&Phase::Submitting, lost(), 0).is_err());
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
            Phase::Queued,
            Input::Succeeded,
            Phase::Saving,
            vec![],
            vec![Effect::Save { outputs: vec![] }],
            false,
        );
        let unsaved = advance(
            &Phase::Saving,
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
            Phase::Submitting,
            Input::Cancel,
            Phase::Cancelling,
            vec![],
            vec![],
            false,
        );
        check(
            Phase::Queued,
            Input::Cancel,
            Phase::Cancelling,
            vec![],
            vec![Effect::DeletePending, Effect::Reconcile],
            false,
        );
        check(
            running(3),
            Input::Cancel,
            Phase::Cancelling,
            vec![],
            vec![Effect::Interrupt],
            false,
        );
        // The submission lands after the cancel: take it back at once.
        check(
            Phase::Cancelling,
            Input::SubmitAccepted,
            Phase::Cancelling,
            vec![],
            vec![Effect::DeletePending, Effect::Reconcile],
            false,
        );
        check(
            Phase::Cancelling,
            Input::SubmitUnreachable,
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Cancelling,
            Input::Interrupted,
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Cancelling,
            Input::Remote(RemoteState::Unknown),
            Phase::Cancelled,
            vec![JobEvent::Cancelled {}],
            vec![],
            false,
        );
        check(
            Phase::Cancelling,
            Input::Remote(RemoteState::Running),
            Phase::Cancelling,
            vec![],
            vec![Effect::Interrupt],
            false,
        );
        // It finished before the interrupt landed: the image is kept, not thrown away.
        check(
            Phase::Cancelling,
            Input::Succeeded,
            Phase::Saving,
            vec![],
            vec![Effect::Save { outputs: vec![] }],
            false,
        );
        assert_eq!(may_cancel(&Phase::Saving), Err(CancelRefused::Saving));
        assert_eq!(may_cancel(&Phase::Cancelled), Err(CancelRefused::AlreadyEnded));
        assert_eq!(may_cancel(&running(1)), Ok(()));
    }

    #[test]
    fn the_deadline_fails_the_job_and_frees_comfyui() {
        let limit = Duration::from_secs(600);
        let running = advance(&running(3), Input::Deadline { limit }, 0).unwrap();
        let message = failed_with("timed_out", &running);
        assert!(message.contains("10 minutes"), "{message}");
        assert_eq!(running.effects, vec![Effect::Interrupt]);
        let queued = advance(&Phase::Queued, Input::Deadline { limit }, 0).unwrap();
        assert_eq!(queued.effects, vec![Effect::DeletePending]);
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
        assert!(advance(&Phase::Saving, Input::Deadline { limit }, 0).is_err());
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
            Input::Dispatch,
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
        assert!(advance(&Phase::Queued, Input::Dispatch, 0).is_err());
        assert!(advance(&Phase::Saving, Input::Succeeded, 0).is_err());
        assert!(advance(&Phase::Waiting, Input::Progress { step: 1, total: 8 }, 0).is_err());
    }

    #[test]
    fn only_jobs_handed_to_comfyui_hold_it() {
        assert!(!Phase::Waiting.holds_comfy());
        assert!(Phase::Submitting.holds_comfy());
        assert!(Phase::Queued.holds_comfy());
        assert!(running(1).holds_comfy());
        assert!(Phase::Cancelling.holds_comfy());
        // Saving needs only the disk: ComfyUI can start the next job meanwhile.
        assert!(!Phase::Saving.holds_comfy());
        assert_eq!(Phase::Saving.status(), JobStatus::Running);
        assert_eq!(Phase::Submitting.status(), JobStatus::Queued);
    }
}
