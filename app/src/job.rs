//! What the page knows about the job it watches, rebuilt from the gateway's SSE events.
//!
//! Events can arrive twice or out of date (a reconnect replays, a reload starts from `GET /api/jobs/{id}`),
//! so the state only moves forward: a phase never goes back and a terminal state is final.

use crate::api::{JobAccepted, JobEvent, JobFailure, JobStatus, JobView, STEPS};
use crate::i18n::Ui;

/// Where the job is, as the progress bar tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Waiting in line; `position` 1 means next.
    Queued {
        position: Option<u32>,
    },
    /// Sampling; `step` of `total` done (0 before the first step).
    Sampling {
        step: u32,
        total: u32,
    },
    /// Every step done; the VAE decodes and the gateway stores the image.
    Decoding,
    Completed(FinishedImage),
    Failed(JobFailure),
    Cancelled,
}

/// The image a completed job made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedImage {
    pub image_url: String,
    pub thumbnail_url: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// From queued to stored, as the gateway measured it.
    pub elapsed_ms: u64,
    /// The backend (GPU) that made it.
    pub backend: Option<String>,
}

/// The watched job: what was asked, where it is, and the latest preview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobProgress {
    pub id: String,
    pub prompt: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub phase: Phase,
    /// The latest live preview frame, while sampling.
    pub preview_url: Option<String>,
    /// When the job was queued, in milliseconds since the Unix epoch, for the elapsed-time counter.
    pub queued_at_ms: u64,
    /// True once the person asked to cancel, until the gateway confirms.
    pub cancel_requested: bool,
}

impl JobProgress {
    /// A job the gateway just accepted (202).
    pub fn accepted(accepted: &JobAccepted, prompt: &str, now_ms: u64) -> JobProgress {
        JobProgress {
            id: accepted.id.clone(),
            prompt: prompt.trim().to_owned(),
            seed: accepted.seed,
            width: accepted.width,
            height: accepted.height,
            phase: Phase::Queued { position: None },
            preview_url: None,
            queued_at_ms: now_ms,
            cancel_requested: false,
        }
    }

    /// A job picked up again from `GET /api/jobs/{id}` (after a reload).
    pub fn from_view(view: &JobView, ui: &Ui) -> JobProgress {
        let mut job = JobProgress {
            id: view.id.clone(),
            prompt: view.prompt.clone(),
            seed: view.seed,
            width: view.width,
            height: view.height,
            phase: Phase::Queued { position: None },
            preview_url: None,
            queued_at_ms: view.timings.queued_at,
            cancel_requested: false,
        };
        job.catch_up(view, ui);
        job
    }

    /// Brings the job up to what `GET /api/jobs/{id}` says (after a lost stream), through the same
    /// forward-only rules as the stream's events.
    pub fn catch_up(&mut self, view: &JobView, ui: &Ui) {
        for event in events_of_view(view, ui) {
            self.apply(&event);
        }
    }

    /// Moves the job forward by one event from the stream. Stale and repeated events change nothing.
    pub fn apply(&mut self, event: &JobEvent) {
        if self.phase.is_terminal() {
            return;
        }
        match event {
            JobEvent::Queued { position } => {
                if let Phase::Queued { .. } = self.phase {
                    self.phase = Phase::Queued {
                        position: Some(*position),
                    };
                }
            }
            JobEvent::Running {} => {
                if let Phase::Queued { .. } = self.phase {
                    self.phase = Phase::Sampling {
                        step: 0,
                        total: STEPS,
                    };
                }
            }
            JobEvent::Retrying { .. } => {
                // The image starts over on another backend: back in line until it runs again.
                self.preview_url = None;
                self.phase = Phase::Queued { position: None };
            }
            JobEvent::Progress { step, total } => {
                let total = total_or_default(*total);
                let done = match self.phase {
                    Phase::Queued { .. } => 0,
                    Phase::Sampling { step, .. } => step,
                    // Decoding is past every step already.
                    _ => return,
                };
                let step = (*step).max(done).min(total);
                self.phase = if step >= total {
                    Phase::Decoding
                } else {
                    Phase::Sampling { step, total }
                };
            }
            JobEvent::Preview { url } => self.preview_url = Some(url.clone()),
            JobEvent::Completed {
                image_url,
                thumbnail_url,
                seed,
                width,
                height,
                elapsed_ms,
                backend,
            } => {
                self.seed = *seed;
                self.width = *width;
                self.height = *height;
                self.preview_url = None;
                self.phase = Phase::Completed(FinishedImage {
                    image_url: image_url.clone(),
                    thumbnail_url: thumbnail_url.clone(),
                    seed: *seed,
                    width: *width,
                    height: *height,
                    elapsed_ms: *elapsed_ms,
                    backend: backend.clone(),
                });
            }
            JobEvent::Failed { code, message } => {
                self.preview_url = None;
                self.phase = Phase::Failed(JobFailure {
                    code: code.clone(),
                    message: message.clone(),
                });
            }
            JobEvent::Cancelled {} => {
                self.preview_url = None;
                self.phase = Phase::Cancelled;
            }
        }
    }

    /// True while the job is queued or running: the Generate button is a Cancel button then.
    pub fn is_active(&self) -> bool {
        !self.phase.is_terminal()
    }

    /// How full the progress bar is, from 0 to 1. Sampling is most of the work; queueing and decoding
    /// get small slices so the bar moves at every stage.
    pub fn fraction(&self) -> f64 {
        match &self.phase {
            Phase::Queued { .. } => 0.02,
            Phase::Sampling { step, total } => 0.05 + 0.85 * f64::from(*step) / f64::from((*total).max(1)),
            Phase::Decoding => 0.93,
            Phase::Completed(_) => 1.0,
            Phase::Failed(_) | Phase::Cancelled => 0.0,
        }
    }

    /// [`JobProgress::fraction`] in thousandths, for the bar's width: whole numbers keep floating-point
    /// formatting out of the browser bundle.
    pub fn permille(&self) -> u32 {
        (self.fraction() * 1000.0).round() as u32
    }

    /// The one-line status under the bar, e.g. "Sampling: step 3 of 8".
    pub fn label(&self, ui: &Ui) -> String {
        if self.cancel_requested && self.is_active() {
            return ui.cancelling.to_owned();
        }
        match &self.phase {
            Phase::Queued { position: Some(1) } => ui.queued_next.to_owned(),
            Phase::Queued {
                position: Some(position),
            } => (ui.queued_at)(*position),
            Phase::Queued { position: None } => ui.queued.to_owned(),
            Phase::Sampling { step: 0, .. } => ui.starting.to_owned(),
            Phase::Sampling { step, total } => (ui.sampling)(*step, *total),
            Phase::Decoding => ui.decoding.to_owned(),
            Phase::Completed(_) => ui.done.to_owned(),
            Phase::Failed(_) => ui.failed.to_owned(),
            Phase::Cancelled => ui.cancelled.to_owned(),
        }
    }

    /// Milliseconds since the job was queued, or the gateway's measure once it completed.
    pub fn elapsed_ms(&self, now_ms: u64) -> u64 {
        match &self.phase {
            Phase::Completed(image) => image.elapsed_ms,
            _ => now_ms.saturating_sub(self.queued_at_ms),
        }
    }
}

impl Phase {
    /// True once the job can no longer change.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Phase::Completed(_) | Phase::Failed(_) | Phase::Cancelled)
    }
}

/// A width in percent with one decimal, from thousandths: 425 is "42.5%".
pub fn percent_text(permille: u32) -> String {
    format!("{}.{}%", permille / 10, permille % 10)
}

/// "3.4 s" below a minute, "1 min 05 s" above (in the page's language).
pub fn format_elapsed(elapsed_ms: u64, ui: &Ui) -> String {
    let tenths = elapsed_ms / 100;
    if tenths < 600 {
        (ui.seconds)(tenths / 10, tenths % 10)
    } else {
        let seconds = elapsed_ms / 1000;
        (ui.minutes_seconds)(seconds / 60, seconds % 60)
    }
}

/// The events that bring a fresh job to the state a [`JobView`] describes.
fn events_of_view(view: &JobView, ui: &Ui) -> Vec<JobEvent> {
    let mut events = Vec::new();
    match view.status {
        JobStatus::Queued => {
            if let Some(position) = view.queue_position {
                events.push(JobEvent::Queued { position });
            }
        }
        JobStatus::Running => {
            events.push(JobEvent::Running {});
            if view.step > 0 {
                events.push(JobEvent::Progress {
                    step: view.step,
                    total: view.total_steps,
                });
            }
            if let Some(url) = &view.preview_url {
                events.push(JobEvent::Preview { url: url.clone() });
            }
        }
        JobStatus::Completed => events.push(match &view.image_url {
            Some(image_url) => JobEvent::Completed {
                image_url: image_url.clone(),
                thumbnail_url: view.thumbnail_url.clone().unwrap_or_else(|| image_url.clone()),
                seed: view.seed,
                width: view.width,
                height: view.height,
                elapsed_ms: view
                    .timings
                    .finished_at
                    .map_or(0, |finished| finished.saturating_sub(view.timings.queued_at)),
                backend: view.backend.clone(),
            },
            None => JobEvent::Failed {
                code: "missing_image".to_owned(),
                message: ui.image_missing.to_owned(),
            },
        }),
        JobStatus::Failed => {
            let failure = view.error.clone().unwrap_or_else(|| JobFailure {
                code: "failed".to_owned(),
                message: ui.image_not_made.to_owned(),
            });
            events.push(JobEvent::Failed {
                code: failure.code,
                message: failure.message,
            });
        }
        JobStatus::Cancelled => events.push(JobEvent::Cancelled {}),
    }
    events
}

fn total_or_default(total: u32) -> u32 {
    if total == 0 { STEPS } else { total }
}

/// The fields of every job event's `data`, each optional: one flat record read in one pass.
#[derive(serde::Deserialize)]
struct EventData {
    position: Option<u32>,
    reason: Option<String>,
    attempt: Option<u32>,
    step: Option<u32>,
    total: Option<u32>,
    url: Option<String>,
    image_url: Option<String>,
    thumbnail_url: Option<String>,
    seed: Option<u64>,
    width: Option<u32>,
    height: Option<u32>,
    elapsed_ms: Option<u64>,
    backend: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

/// A job event from its SSE `event:` name and `data:` JSON: the same events as
/// [`JobEvent::from_sse`] reads, refusing the same missing fields, without serde's decoder of the
/// adjacently tagged enum (which buffers any JSON value, and was the largest decoder in the bundle).
pub fn decode_event(name: &str, data: &str) -> Result<JobEvent, serde_json::Error> {
    use serde::de::Error as _;
    fn need<T>(value: Option<T>, field: &'static str) -> Result<T, serde_json::Error> {
        value.ok_or_else(|| serde_json::Error::missing_field(field))
    }
    let fields: EventData = serde_json::from_str(data)?;
    Ok(match name {
        "queued" => JobEvent::Queued {
            position: need(fields.position, "position")?,
        },
        "running" => JobEvent::Running {},
        "retrying" => JobEvent::Retrying {
            reason: need(fields.reason, "reason")?,
            attempt: need(fields.attempt, "attempt")?,
        },
        "progress" => JobEvent::Progress {
            step: need(fields.step, "step")?,
            total: need(fields.total, "total")?,
        },
        "preview" => JobEvent::Preview {
            url: need(fields.url, "url")?,
        },
        "completed" => JobEvent::Completed {
            image_url: need(fields.image_url, "image_url")?,
            thumbnail_url: need(fields.thumbnail_url, "thumbnail_url")?,
            seed: need(fields.seed, "seed")?,
            width: need(fields.width, "width")?,
            height: need(fields.height, "height")?,
            elapsed_ms: need(fields.elapsed_ms, "elapsed_ms")?,
            backend: fields.backend,
        },
        "failed" => JobEvent::Failed {
            code: need(fields.code, "code")?,
            message: need(fields.message, "message")?,
        },
        "cancelled" => JobEvent::Cancelled {},
        _ => return Err(serde_json::Error::custom("unknown job event")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_decoded_as_the_contract_reads_them() {
        let events = [
            JobEvent::Queued { position: 3 },
            JobEvent::Running {},
            JobEvent::Retrying {
                reason: "the backend gpu0 stopped answering".to_owned(),
                attempt: 1,
            },
            JobEvent::Progress { step: 2, total: 8 },
            JobEvent::Preview {
                url: "/api/jobs/j/preview/2".to_owned(),
            },
            completed_event(),
            JobEvent::Completed {
                image_url: "/i.png".to_owned(),
                thumbnail_url: "/t.webp".to_owned(),
                seed: u64::MAX >> 11,
                width: 512,
                height: 768,
                elapsed_ms: 1,
                backend: Some("gpu1".to_owned()),
            },
            JobEvent::Failed {
                code: "comfy_error".to_owned(),
                message: "Out of memory.".to_owned(),
            },
            JobEvent::Cancelled {},
        ];
        for event in events {
            let data = event.data_json();
            let decoded = decode_event(event.name(), &data).unwrap();
            assert_eq!(decoded, event, "{data}");
            assert_eq!(JobEvent::from_sse(event.name(), &data).unwrap(), decoded);
        }
        // Unknown fields are ignored, as the contract's decoder does.
        assert_eq!(
            decode_event("queued", r#"{"position":1,"later":true}"#).unwrap(),
            JobEvent::Queued { position: 1 }
        );
        // A missing field, a wrong type, an unknown event or broken JSON is an error, as there.
        for (name, data) in [
            ("queued", "{}"),
            ("completed", r#"{"image_url":"/i.png"}"#),
            ("progress", r#"{"step":"2","total":8}"#),
            ("finished", "{}"),
            ("running", "{"),
        ] {
            assert!(decode_event(name, data).is_err(), "{name} {data}");
            assert!(JobEvent::from_sse(name, data).is_err(), "{name} {data}");
        }
    }
    use crate::api::Timings;
    use crate::i18n::{EN, ZH_CN};

    fn accepted() -> JobProgress {
        let accepted = JobAccepted {
            id: "job1".to_owned(),
            seed: 7,
            width: 1024,
            height: 576,
            status: JobStatus::Queued,
        };
        JobProgress::accepted(&accepted, " a fox ", 1_000)
    }

    fn completed_event() -> JobEvent {
        JobEvent::Completed {
            image_url: "/api/images/job1".to_owned(),
            thumbnail_url: "/api/images/job1/thumbnail".to_owned(),
            seed: 7,
            width: 1024,
            height: 576,
            elapsed_ms: 3_400,
            backend: Some("gpu0".to_owned()),
        }
    }

    fn view(status: JobStatus) -> JobView {
        JobView {
            id: "job1".to_owned(),
            prompt: "a fox".to_owned(),
            seed: 7,
            width: 1024,
            height: 576,
            status,
            queue_position: None,
            step: 0,
            total_steps: 8,
            timings: Timings {
                queued_at: 1_000,
                started_at: None,
                finished_at: None,
            },
            image_url: None,
            thumbnail_url: None,
            preview_url: None,
            error: None,
            backend: None,
        }
    }

    #[test]
    fn a_job_walks_from_queued_through_every_step_and_decoding_to_done() {
        let mut job = accepted();
        assert_eq!(job.prompt, "a fox");
        job.apply(&JobEvent::Queued { position: 2 });
        assert_eq!(job.label(&EN), "Queued: 2 in line");
        job.apply(&JobEvent::Queued { position: 1 });
        assert_eq!(job.label(&EN), "Queued: next in line");
        job.apply(&JobEvent::Running {});
        assert_eq!(job.phase, Phase::Sampling { step: 0, total: 8 });
        let mut last_fraction = job.fraction();
        for step in 1..8 {
            job.apply(&JobEvent::Progress { step, total: 8 });
            assert_eq!(job.label(&EN), format!("Sampling: step {step} of 8"));
            assert!(job.fraction() > last_fraction);
            last_fraction = job.fraction();
        }
        job.apply(&JobEvent::Progress { step: 8, total: 8 });
        assert_eq!(job.phase, Phase::Decoding);
        assert!(job.fraction() > last_fraction);
        assert!(job.is_active());
        job.apply(&completed_event());
        assert!(!job.is_active());
        assert_eq!(job.label(&EN), "Done");
        assert_eq!(job.fraction(), 1.0);
        assert_eq!(job.elapsed_ms(99_999), 3_400);
    }

    #[test]
    fn a_replayed_stream_never_moves_the_job_backwards() {
        let mut job = accepted();
        job.apply(&JobEvent::Running {});
        job.apply(&JobEvent::Progress { step: 5, total: 8 });
        job.apply(&JobEvent::Queued { position: 1 });
        job.apply(&JobEvent::Running {});
        job.apply(&JobEvent::Progress { step: 2, total: 8 });
        assert_eq!(job.phase, Phase::Sampling { step: 5, total: 8 });
        job.apply(&JobEvent::Progress { step: 8, total: 8 });
        job.apply(&JobEvent::Progress { step: 3, total: 8 });
        assert_eq!(job.phase, Phase::Decoding);
    }

    #[test]
    fn a_terminal_state_is_final() {
        let mut job = accepted();
        job.apply(&JobEvent::Cancelled {});
        job.apply(&JobEvent::Progress { step: 3, total: 8 });
        job.apply(&completed_event());
        assert_eq!(job.phase, Phase::Cancelled);
        assert_eq!(job.label(&EN), "Cancelled");
    }

    #[test]
    fn progress_may_come_without_a_running_event_first() {
        let mut job = accepted();
        job.apply(&JobEvent::Progress { step: 1, total: 8 });
        assert_eq!(job.phase, Phase::Sampling { step: 1, total: 8 });
    }

    #[test]
    fn previews_show_while_running_and_disappear_at_the_end() {
        let mut job = accepted();
        job.apply(&JobEvent::Running {});
        job.apply(&JobEvent::Preview {
            url: "/api/jobs/job1/preview?step=1".to_owned(),
        });
        assert_eq!(job.preview_url.as_deref(), Some("/api/jobs/job1/preview?step=1"));
        job.apply(&completed_event());
        assert_eq!(job.preview_url, None);
    }

    #[test]
    fn a_failure_keeps_the_gateways_message() {
        let mut job = accepted();
        job.apply(&JobEvent::Failed {
            code: "out_of_memory".to_owned(),
            message: "The GPU ran out of memory.".to_owned(),
        });
        match &job.phase {
            Phase::Failed(failure) => assert_eq!(failure.message, "The GPU ran out of memory."),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(!job.is_active());
    }

    #[test]
    fn the_label_says_cancelling_until_the_gateway_confirms() {
        let mut job = accepted();
        job.apply(&JobEvent::Running {});
        job.cancel_requested = true;
        assert_eq!(job.label(&EN), "Cancelling...");
        job.apply(&JobEvent::Cancelled {});
        assert_eq!(job.label(&EN), "Cancelled");
    }

    #[test]
    fn a_job_picked_up_after_a_reload_resumes_where_the_gateway_says() {
        let mut running = view(JobStatus::Running);
        running.step = 3;
        let job = JobProgress::from_view(&running, &EN);
        assert_eq!(job.phase, Phase::Sampling { step: 3, total: 8 });
        assert_eq!(job.queued_at_ms, 1_000);
        running.step = 8;
        assert_eq!(JobProgress::from_view(&running, &EN).phase, Phase::Decoding);

        let mut queued = view(JobStatus::Queued);
        queued.queue_position = Some(3);
        assert_eq!(
            JobProgress::from_view(&queued, &EN).label(&EN),
            "Queued: 3 in line"
        );
        assert_eq!(
            JobProgress::from_view(&queued, &ZH_CN).label(&ZH_CN),
            "排队中：第 3 位"
        );

        let mut done = view(JobStatus::Completed);
        done.image_url = Some("/api/images/job1".to_owned());
        done.thumbnail_url = Some("/api/images/job1/thumbnail".to_owned());
        done.timings.finished_at = Some(4_500);
        let job = JobProgress::from_view(&done, &EN);
        assert!(!job.is_active());
        assert_eq!(job.elapsed_ms(0), 3_500);
    }

    #[test]
    fn catching_up_after_a_lost_stream_only_moves_forward() {
        let mut job = accepted();
        job.apply(&JobEvent::Progress { step: 6, total: 8 });
        let mut behind = view(JobStatus::Running);
        behind.step = 4;
        job.catch_up(&behind, &EN);
        assert_eq!(job.phase, Phase::Sampling { step: 6, total: 8 });
        let mut cancelled = view(JobStatus::Cancelled);
        cancelled.step = 7;
        job.catch_up(&cancelled, &EN);
        assert_eq!(job.phase, Phase::Cancelled);
    }

    #[test]
    fn a_failed_view_without_an_error_still_explains_itself() {
        let job = JobProgress::from_view(&view(JobStatus::Failed), &EN);
        assert!(matches!(job.phase, Phase::Failed(ref failure) if !failure.message.is_empty()));
    }

    #[test]
    fn elapsed_time_reads_in_seconds_then_minutes() {
        assert_eq!(format_elapsed(0, &EN), "0.0 s");
        assert_eq!(format_elapsed(3_456, &EN), "3.4 s");
        assert_eq!(format_elapsed(59_999, &EN), "59.9 s");
        assert_eq!(format_elapsed(65_000, &EN), "1 min 05 s");
        assert_eq!(format_elapsed(3_456, &ZH_CN), "3.4 秒");
        assert_eq!(format_elapsed(65_000, &ZH_CN), "1 分 05 秒");
        assert_eq!(accepted().elapsed_ms(500), 0);
    }
}
