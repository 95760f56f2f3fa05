//! The engine's side that faces people: accepting a job (answered once it is journaled) and
//! cancelling one (answered once the cancel is journaled, and final from then on).

use std::time::Instant;

use tokio::sync::oneshot;
use zimage_contract::{JobAccepted, JobStatus, JobView};

use super::super::JobError;
use super::super::journal::{Entry, Keep};
use super::super::state::{self, CancelRefused, Input, Phase};
use super::{Command, Engine, Job, Notice, QUEUE_FULL_RETRY, per_client_share};
use crate::access::identity::{ClientId, Requester};
use crate::job_id::JobId;
use crate::relay::EventLog;
use crate::validation::JobSpec;

impl Engine {
    pub(super) fn submit(
        &mut self,
        now: Instant,
        id: JobId,
        spec: JobSpec,
        owner: Option<ClientId>,
        reply: oneshot::Sender<Result<JobAccepted, JobError>>,
    ) {
        if self.stopping {
            let _ = reply.send(Err(JobError::ShuttingDown));
            return;
        }
        let cap = self.tuning.max_unfinished;
        let unfinished = self.unfinished(None);
        if cap > 0 && unfinished >= cap {
            tracing::info!(unfinished, "queue full; job refused");
            let _ = reply.send(Err(JobError::QueueFull {
                unfinished,
                retry_after: QUEUE_FULL_RETRY,
            }));
            return;
        }
        // One client may not fill the line: a share of the places is left for everyone else.
        let share = per_client_share(cap);
        let own = self.unfinished(Some(owner));
        if share > 0 && owner.is_some() && own >= share {
            tracing::info!(own, share, "the client's share of the line is full; job refused");
            let _ = reply.send(Err(JobError::ShareFull {
                share,
                retry_after: QUEUE_FULL_RETRY,
            }));
            return;
        }
        if let Some((index, name)) = self.unknown_lora(&spec.loras) {
            tracing::info!(lora = %name, "no backend has the job's LoRA; job refused");
            let _ = reply.send(Err(JobError::UnknownLora {
                field: crate::validation::lora_name_field(index),
                name: name.to_owned(),
            }));
            return;
        }
        let entry = Entry::new(id, owner, spec);
        // With a backend free and nobody in line, the job goes there at once, beside its first write:
        // that entry names the backend already, so the hand-over writes nothing more, and the job
        // starts while the disk flushes. Acknowledged only once the write is done, it is lost to a crash
        // before then only as a submission nobody was answered (its copy at the backend is then nobody's).
        let free = self.backend_for_new(&entry.spec.loras, now);
        let written = Entry {
            at: free.map(|backend| self.slots[backend].name.clone()),
            ..entry.clone()
        };
        let mut job = Job::new(
            entry,
            Phase::Waiting,
            EventLog::starting_at(self.first_event_id),
            now,
        );
        job.accept_reply = Some(reply);
        job.tag = self.fair.tag(owner);
        self.jobs.insert(id, job);
        // Queued first: the writer starts before the hand-over does.
        self.out.push(Command::Journal {
            id,
            entry: Some(written),
            keep: Keep::New,
            notice: Some(Notice::Accepted),
        });
        if let Some(backend) = free {
            self.dispatch(id, backend, now);
        }
    }

    pub(super) fn journaled(
        &mut self,
        now: Instant,
        id: JobId,
        notice: Notice,
        result: Result<(), std::io::ErrorKind>,
    ) {
        // The error's kind is kept, so that a full disk is answered as one (507, in words).
        let kind = result.err().unwrap_or(std::io::ErrorKind::Other);
        let unwritten = |what: &str| JobError::Journal(std::io::Error::new(kind, what));
        match notice {
            Notice::Accepted => {
                let Some(job) = self.jobs.get_mut(&id) else { return };
                let reply = job.accept_reply.take();
                if result.is_err() {
                    tracing::error!(%id, "cannot journal the job; refused");
                    self.refuse_unwritten(id);
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(unwritten("the job could not be written down")));
                    }
                    return;
                }
                job.accepted = true;
                job.accepted_at = now;
                let held_save = job.held_save.take();
                // A job handed over beside this write is past the line already.
                let waits = job.phase == Phase::Waiting;
                let tag = job.tag;
                let spec = &job.entry.spec;
                let accepted = JobAccepted {
                    id: id.to_string(),
                    seed: spec.seed.get(),
                    width: spec.width.get(),
                    height: spec.height.get(),
                    status: JobStatus::Queued,
                };
                tracing::info!(%id, seed = accepted.seed, width = accepted.width, height = accepted.height, "job accepted");
                if let Some(save) = held_save {
                    self.out.push(save);
                }
                if waits {
                    self.line.insert((tag, id));
                    self.reposition();
                }
                if let Some(reply) = reply {
                    // A submitter that hung up changes nothing: the job goes on.
                    let _ = reply.send(Ok(accepted));
                }
            }
            Notice::Cancelled => {
                let Some(job) = self.jobs.get_mut(&id) else { return };
                job.cancel_journaled |= result.is_ok();
                let view = job.view(id, &self.slots);
                for reply in job.cancel_replies.drain(..) {
                    let answer = match result {
                        Ok(()) => Ok(view.clone()),
                        Err(_) => Err(unwritten("the cancel could not be written down")),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }

    /// Forgets a job whose first journal write failed: nobody was answered. A backend it was handed
    /// to beside that write lets go of it.
    fn refuse_unwritten(&mut self, id: JobId) {
        let Some(job) = self.jobs.remove(&id) else { return };
        self.dirty.remove(&id);
        if self.line.remove(&(job.tag, id)) {
            self.reposition();
        }
        if let Some(at) = job.phase.holder() {
            self.out.push(Command::Drop {
                id,
                backend: at.backend,
                pending: true,
                interrupt: true,
            });
        }
    }

    pub(super) fn cancel(
        &mut self,
        now: Instant,
        id: JobId,
        requester: Requester,
        reply: oneshot::Sender<Result<JobView, JobError>>,
    ) {
        let Some(job) = self.jobs.get_mut(&id).filter(|job| job.accepted) else {
            let _ = reply.send(Err(JobError::NotFound));
            return;
        };
        if !requester.may_change(job.entry.owner) {
            let _ = reply.send(Err(JobError::NotYours));
            return;
        }
        if job.entry.cancelled {
            // Asked twice: the same answer, once the cancel is on disk.
            if job.cancel_journaled {
                let _ = reply.send(Ok(job.view(id, &self.slots)));
            } else {
                job.cancel_replies.push(reply);
            }
            return;
        }
        if let Err(refused) = state::may_cancel(&job.phase) {
            let _ = reply.send(Err(match refused {
                CancelRefused::AlreadyEnded => JobError::AlreadyEnded,
                CancelRefused::Saving => JobError::AlreadySaving,
            }));
            return;
        }
        tracing::info!(%id, "job cancel requested");
        job.entry.cancelled = true;
        job.cancel_replies.push(reply);
        self.apply(now, id, Input::Cancel);
        // Written (with its ending, if it ended already) before anyone is told: a cancel answered is
        // final across a crash.
        self.dirty.remove(&id);
        if let Some(job) = self.jobs.get(&id) {
            self.out.push(Command::Journal {
                id,
                entry: Some(job.entry.clone()),
                keep: Keep::Durable,
                notice: Some(Notice::Cancelled),
            });
        }
    }
}
