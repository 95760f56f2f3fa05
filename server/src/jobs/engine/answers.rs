//! The engine's side that takes the answers of its effects: a submission's outcome, a backend's
//! records, a save's result. Each answer names the hand-over it is about; one about an earlier
//! hand-over (the job moved since) is ignored, so an abandoned copy never decides a job.

use std::time::{Duration, Instant};

use zimage_contract::JobFailure;

use super::super::state::{At, Input, Phase};
use super::{Engine, MAX_RECONCILE_BACKOFF, SUBMIT_FAILURE_PAUSE, SaveOutcome, SubmitOutcome};
use crate::comfy::RemoteState;
use crate::job_id::JobId;

impl Engine {
    pub(super) fn submitted(&mut self, now: Instant, id: JobId, at: At, link: &str, outcome: SubmitOutcome) {
        if !self.is_at(id, at) {
            return;
        }
        let input = match outcome {
            SubmitOutcome::Accepted => Input::SubmitAccepted,
            SubmitOutcome::Refused(failure) => {
                tracing::warn!(%id, code = %failure.code, message = %failure.message, "ComfyUI refused the job");
                Input::SubmitRefused { failure }
            }
            SubmitOutcome::Unreachable => {
                // Another backend, if any, gets the job meanwhile.
                if let Some(slot) = self.slots.get_mut(at.backend) {
                    slot.paused_until = Some(now + SUBMIT_FAILURE_PAUSE);
                    tracing::warn!(%id, backend = %slot.name, "the backend did not answer the submission");
                }
                Input::SubmitUnreachable
            }
            SubmitOutcome::Uncertain => {
                tracing::warn!(%id, "no clear answer to the submission; asking ComfyUI");
                Input::SubmitUncertain
            }
        };
        let accepted = input == Input::SubmitAccepted;
        self.apply(now, id, input);
        if accepted {
            tracing::info!(%id, "job handed to ComfyUI");
            // The connection it went under was replaced meanwhile: its events are lost, ask.
            let replaced = self
                .slots
                .get(at.backend)
                .is_none_or(|slot| slot.link.as_deref() != Some(link));
            if replaced {
                self.reconcile(id);
            }
        }
    }

    pub(super) fn checked(&mut self, now: Instant, id: JobId, at: At, answer: Result<RemoteState, String>) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        // An answer about an earlier hand-over (the job moved since) is not this one's.
        if job.phase.at() != Some(at) {
            return;
        }
        job.check.in_flight = false;
        match answer {
            Ok(state) => {
                job.check.failures = 0;
                job.last_heard = now;
                self.apply(now, id, Input::Remote(state));
            }
            Err(error) => {
                job.check.failures += 1;
                let backoff = Duration::from_millis(250)
                    .saturating_mul(1 << job.check.failures.min(8))
                    .min(MAX_RECONCILE_BACKOFF);
                job.check.not_before = now + backoff;
                tracing::warn!(%id, %error, failures = job.check.failures, ?backoff, "cannot check the job with ComfyUI");
            }
        }
    }

    pub(super) fn save_done(&mut self, now: Instant, id: JobId, at: At, outcome: SaveOutcome) {
        if self.jobs.get(&id).map(|job| &job.phase) != Some(&Phase::Saving(at)) {
            return;
        }
        let input = match outcome {
            SaveOutcome::Saved(record) => {
                tracing::info!(%id, elapsed_ms = record.elapsed_ms, "job completed");
                Input::Saved { record }
            }
            SaveOutcome::FetchFailed(message)
                if self.slots.len() > 1
                    && self.slots.get(at.backend).is_some_and(|slot| slot.link.is_none()) =>
            {
                // The backend died with the image: another makes it again.
                tracing::warn!(%id, %message, "the backend went away before its image was fetched");
                Input::BackendLost {
                    reason: format!(
                        "The backend {} went away before its image could be fetched; the image is made \
                         again on another.",
                        self.slots[at.backend].name
                    ),
                }
            }
            SaveOutcome::FetchFailed(message) => {
                tracing::warn!(%id, %message, "cannot keep the finished image");
                Input::SaveFailed {
                    failure: JobFailure {
                        code: "image_unavailable".to_owned(),
                        message,
                    },
                }
            }
            SaveOutcome::Failed(failure) => {
                tracing::error!(%id, code = %failure.code, message = %failure.message, "the finished image could not be written to disk");
                Input::SaveFailed { failure }
            }
        };
        self.apply(now, id, input);
    }
}
