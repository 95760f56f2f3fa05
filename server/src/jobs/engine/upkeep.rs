//! The engine's upkeep: the clock's rounds (long-ended jobs leave memory, deadlines, checks of silent
//! jobs) and the journal writes that the jobs' changes need, gathered once per message.

use std::time::Instant;

use super::super::journal::Keep;
use super::super::state::{Input, Phase};
use super::{Command, Engine};
use crate::job_id::JobId;

impl Engine {
    /// Asks the job's backend what became of it, unless a check is under way or the submission's
    /// own answer is still to come (asking then could find the prompt not there yet).
    pub(super) fn reconcile(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let Some(at) = job.phase.holder() else { return };
        if matches!(job.phase, Phase::Submitting(_)) || job.check.in_flight {
            return;
        }
        job.check.in_flight = true;
        self.out.push(Command::Check { id, at });
    }

    /// One round of the clock: long-ended jobs leave memory, jobs past their deadline fail, silent
    /// jobs are checked, and waiting jobs fail when no backend could take one for a whole deadline.
    pub(super) fn watch(&mut self, now: Instant) {
        self.remove_completed_entries();
        let tuning = self.tuning;
        self.jobs.retain(|_, job| {
            job.ended
                .is_none_or(|ended| now.duration_since(ended) < tuning.retention)
        });
        let mut overdue = Vec::new();
        let mut silent = Vec::new();
        for (id, job) in &self.jobs {
            if let Some(at) = job.phase.holder() {
                if now.duration_since(at.since) >= tuning.deadline {
                    overdue.push(*id);
                } else if now.duration_since(job.last_heard) >= tuning.silence && now >= job.check.not_before
                {
                    silent.push(*id);
                }
            }
        }
        self.note_able(now);
        let stuck: Vec<JobId> = self
            .line
            .iter()
            .map(|(_, id)| *id)
            .filter(|id| {
                self.jobs.get(id).is_some_and(|job| {
                    now.duration_since(self.last_able_for(job).max(job.accepted_at)) >= tuning.deadline
                })
            })
            .collect();
        for id in overdue.into_iter().chain(stuck) {
            tracing::warn!(%id, deadline = ?tuning.deadline, "job past its deadline");
            self.apply(
                now,
                id,
                Input::Deadline {
                    limit: tuning.deadline,
                },
            );
        }
        for id in silent {
            self.reconcile(id);
        }
    }

    /// Writes the entries of the jobs that changed: an ending (kept a while); a completed job's is
    /// removed at the next tick (its image is in the history). A job not yet acknowledged keeps its
    /// changes until its first write is done.
    pub(super) fn flush_journal(&mut self) {
        for id in std::mem::take(&mut self.dirty) {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !job.accepted {
                // Until its first write is done a job has no other: should that one fail, nothing
                // written after it may bring the job back.
                self.dirty.insert(id);
                continue;
            }
            if matches!(job.phase, Phase::Completed { .. }) {
                self.completed_entries.push(id);
                continue;
            }
            self.out.push(Command::Journal {
                id,
                entry: Some(job.entry.clone()),
                keep: Keep::Cached,
                notice: None,
            });
        }
    }

    /// Removes the journal entries of the jobs completed since the last tick: the history has them.
    pub(super) fn remove_completed_entries(&mut self) {
        for id in std::mem::take(&mut self.completed_entries) {
            self.out.push(Command::Journal {
                id,
                entry: None,
                keep: Keep::Cached,
                notice: None,
            });
        }
    }
}
