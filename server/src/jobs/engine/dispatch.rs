//! The engine's side that faces the backends: which waiting job goes to which backend and when
//! ([`Engine::pump`]), moving jobs off backends that are gone, and what each backend's socket says.

use std::ops::Bound;
use std::time::Instant;

use bytes::Bytes;
use zimage_contract::JobFailure;

use super::super::schedule::{self, Candidate};
use super::super::state::{self, At, Input, Phase};
use super::job::Slot;
use super::{Command, Engine, RESTART_GRACE_SILENCES};
use crate::comfy::ComfyEvent;
use crate::job_id::JobId;
use crate::validation::Lora;

impl Engine {
    /// Notes which backends could take a job now (a waiting job's deadline runs from the last moment
    /// one that can run it could).
    pub(super) fn note_able(&mut self, now: Instant) {
        for slot in &mut self.slots {
            if slot.can_work(now) {
                slot.last_able = Some(now);
                self.last_able = now;
            }
        }
    }

    /// Moves jobs off backends that are gone when another can take them, then hands waiting jobs, in
    /// fair-share order, to the backends that can take one ([`schedule::pick_backend`]). A job goes
    /// only to a backend that lists all its LoRAs; one that no available backend can run waits, and
    /// the jobs behind it go first.
    pub(super) fn pump(&mut self, now: Instant) {
        self.note_able(now);
        if self.stopping {
            return;
        }
        self.fail_over(now);
        let mut busy = self.busy();
        let mut after: Option<(u64, JobId)> = None;
        loop {
            if !self
                .slots
                .iter()
                .zip(&busy)
                .any(|(slot, busy)| busy.is_none() && slot.can_work(now))
            {
                return;
            }
            let next = match after {
                None => self.line.first().copied(),
                Some(after) => self
                    .line
                    .range((Bound::Excluded(after), Bound::Unbounded))
                    .next()
                    .copied(),
            };
            let Some((tag, id)) = next else { return };
            let Some(job) = self.jobs.get(&id) else {
                self.line.remove(&(tag, id));
                continue;
            };
            let Some(backend) = pick(&self.slots, &busy, &job.entry.spec.loras, now) else {
                // Its LoRAs are on backends that are busy or away: it keeps its place.
                after = Some((tag, id));
                continue;
            };
            busy[backend] = Some(id);
            if !self.dispatch(id, backend, now) {
                // Only waiting jobs are in the line; anything else is a bug worth seeing.
                self.line.remove(&(tag, id));
                self.reposition();
                busy = self.busy();
            }
        }
    }

    /// Hands the waiting job `id` to `backend` now; false (logged) if it is not waiting.
    pub(super) fn dispatch(&mut self, id: JobId, backend: usize, now: Instant) -> bool {
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        job.dispatches += 1;
        job.last_backend = Some(backend);
        let at = At {
            backend,
            attempt: job.dispatches,
            since: now,
        };
        self.fair.served(job.tag);
        // A job sent back to a backend it was moved away from is its own again there.
        self.orphans.remove(&(backend, id));
        match state::advance(&job.phase, Input::Dispatch { at }, job.resubmits) {
            Ok(transition) => {
                self.enter(id, transition, now);
                true
            }
            Err(illegal) => {
                tracing::error!(%id, %illegal, "a job that is not waiting cannot be dispatched");
                false
            }
        }
    }

    /// The backend a job just submitted goes to at once, beside its first journal write, if the line is
    /// empty and a backend that can run it is free: that entry names it, so that the hand-over needs no
    /// second write.
    pub(super) fn backend_for_new(&self, loras: &[Lora], now: Instant) -> Option<usize> {
        if self.stopping || !self.line.is_empty() {
            return None;
        }
        pick(&self.slots, &self.busy(), loras, now)
    }

    /// A backend that died or stopped answering while holding a job: when another backend is ready,
    /// the job goes back to the line (keeping its turn) to be sent there. With no other backend ready
    /// it stays, and is checked against its backend's records when that one comes back. After a
    /// restart, a backend not connected yet keeps the journal's jobs for a few silences.
    fn fail_over(&mut self, now: Instant) {
        let grace = self.tuning.silence.saturating_mul(RESTART_GRACE_SILENCES);
        let mut stranded = Vec::new();
        for (id, job) in &self.jobs {
            let Some(at) = job.phase.holder() else { continue };
            // Mid-submission the submission's own answer comes first.
            if matches!(job.phase, Phase::Submitting(_)) {
                continue;
            }
            let Some(slot) = self.slots.get(at.backend) else {
                continue;
            };
            let gone =
                slot.link.is_none() && (slot.ever_up || now.duration_since(slot.link_down_since) >= grace);
            // Only a backend that has the job's LoRAs can take it over.
            let elsewhere = self.slots.iter().enumerate().any(|(index, other)| {
                index != at.backend && other.can_work(now) && other.has_all(&job.entry.spec.loras)
            });
            if gone && elsewhere {
                stranded.push((*id, at.backend));
            }
        }
        for (id, from) in stranded {
            let reason = format!(
                "The backend {} stopped answering; the image is made again on another.",
                self.slots[from].name
            );
            tracing::warn!(%id, %reason, "moving the job to another backend");
            self.orphans.insert((from, id));
            self.apply(now, id, Input::BackendLost { reason });
        }
    }

    /// Applies one socket event of backend `backend`.
    pub(super) fn on_comfy_event(&mut self, now: Instant, backend: usize, event: ComfyEvent) {
        let Some(slot) = self.slots.get_mut(backend) else {
            return;
        };
        let (prompt_id, input) = match event {
            ComfyEvent::Connected { client_id } => {
                tracing::info!(backend = %slot.name, "ComfyUI socket connected; checking the jobs it may hold");
                slot.link = Some(client_id);
                slot.ever_up = true;
                self.drop_orphans(backend);
                // After a reconnect, events may be lost: ask about every job it may hold.
                let held: Vec<JobId> = self
                    .jobs
                    .iter()
                    .filter(|(_, job)| job.phase.holder().is_some_and(|at| at.backend == backend))
                    .map(|(id, _)| *id)
                    .collect();
                for id in held {
                    self.reconcile(id);
                }
                return;
            }
            ComfyEvent::Disconnected => {
                tracing::warn!(backend = %slot.name, "ComfyUI socket lost");
                slot.link = None;
                slot.link_down_since = now;
                return;
            }
            // The gateway's own line decides positions; ComfyUI's queue holds one job of ours at most.
            ComfyEvent::QueueRemaining(_) => return,
            ComfyEvent::Preview {
                prompt_id,
                image,
                mime,
            } => {
                self.on_preview(now, backend, &prompt_id, image, mime);
                return;
            }
            ComfyEvent::Started { prompt_id } | ComfyEvent::NodeStarted { prompt_id, .. } => {
                (prompt_id, Input::Started)
            }
            ComfyEvent::Progress {
                prompt_id,
                node,
                value,
                max,
            } => {
                if node != self.sampler_node {
                    return;
                }
                (
                    prompt_id,
                    Input::Progress {
                        step: value,
                        total: max,
                    },
                )
            }
            ComfyEvent::Output {
                prompt_id,
                node,
                images,
            } => {
                if node != self.output_node {
                    return;
                }
                (prompt_id, Input::Output { images })
            }
            ComfyEvent::Succeeded { prompt_id } => (prompt_id, Input::Succeeded),
            ComfyEvent::Failed { prompt_id, failure } => {
                tracing::warn!(%prompt_id, node = %failure.node_type, error = %failure.exception_message, "ComfyUI failed the job");
                let failure = JobFailure {
                    code: failure.code().to_owned(),
                    message: failure.human_message(),
                };
                (prompt_id, Input::ComfyFailed { failure })
            }
            ComfyEvent::Interrupted { prompt_id } => (prompt_id, Input::Interrupted),
            ComfyEvent::Finished { prompt_id } => (prompt_id, Input::Finished),
        };
        // Prompts the gateway did not submit (someone using ComfyUI directly) are none of our business,
        // and neither is a job's news from a backend it is not at (an abandoned copy).
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        match self.jobs.get_mut(&id) {
            Some(job) if job.phase.at().is_some_and(|at| at.backend == backend) => job.last_heard = now,
            _ => return,
        }
        self.apply(now, id, input);
    }

    fn on_preview(
        &mut self,
        now: Instant,
        backend: usize,
        prompt_id: &str,
        image: Bytes,
        mime: &'static str,
    ) {
        let Ok(id) = prompt_id.parse::<JobId>() else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let Phase::Running { at, .. } = job.phase else {
            return;
        };
        if at.backend != backend {
            return;
        }
        job.last_heard = now;
        job.preview = Some((image, mime));
        job.previews_sent += 1;
        let serial = job.previews_sent;
        self.out.push(Command::AnnouncePreviewLater { id, serial });
    }

    /// Tells a backend that (re)connected to drop the jobs that are not its any more (each by its
    /// prompt id: nothing of anyone else's is touched).
    fn drop_orphans(&mut self, backend: usize) {
        let mine: Vec<JobId> = self
            .orphans
            .range((backend, JobId::MIN)..=(backend, JobId::MAX))
            .map(|(_, id)| *id)
            .collect();
        for id in mine {
            self.orphans.remove(&(backend, id));
            let still_there = self
                .jobs
                .get(&id)
                .and_then(|job| job.phase.at())
                .is_some_and(|at| at.backend == backend);
            if !still_there {
                self.out.push(Command::Drop {
                    id,
                    backend,
                    pending: true,
                    interrupt: true,
                });
            }
        }
    }
}

/// The backend ([`schedule::pick_backend`]) that gets a job using `loras`, among those free (`busy`
/// holds each backend's job) and able to run it now.
fn pick(slots: &[Slot], busy: &[Option<JobId>], loras: &[Lora], now: Instant) -> Option<usize> {
    let candidates: Vec<Candidate> = slots
        .iter()
        .zip(busy)
        .map(|(slot, busy)| Candidate {
            available: busy.is_none() && slot.can_work(now) && slot.has_all(loras),
            median: schedule::median(slot.timings.iter().copied()),
            idle_since: slot.idle_since,
        })
        .collect();
    schedule::pick_backend(&candidates)
}
