//! The engine's hands: each [`Command`] of the engine runs here, in a task of its own, against the
//! job's backend, the disk or the clock, and its result goes back to the engine as a [`Msg`] on the
//! engine's one channel. Journal writes go through one writer thread, in order, so a job's later entry
//! never loses to an earlier one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use zimage_contract::JobFailure;

use super::engine::{Command, Msg, Notice, PREVIEW_ANNOUNCE_DELAY, SaveOutcome, SubmitOutcome, now_ms};
use super::journal::{Entry, Journal, Keep};
use crate::comfy::workflow::{SourceImage, Workflow};
use crate::comfy::{self, OutputImage, RemoteState, client::ComfyClient};
use crate::history::{History, HistoryRecord};
use crate::images::{ImageStore, PngPieces, png_size};
use crate::job_id::JobId;
use crate::pictures::PictureStore;
use crate::png_story::{self, ImageStory};
use crate::storage;
use crate::validation::JobSpec;

/// The largest image the gateway accepts from ComfyUI's `/view`: a 1024x1024 PNG is a few MiB.
const MAX_IMAGE_BYTES: usize = 64 * 1024 * 1024;

/// Runs the engine's commands.
#[derive(Clone)]
pub struct Runner {
    /// One client per backend, in the engine's order.
    pub backends: Vec<ComfyClient>,
    pub workflow: Arc<Workflow>,
    pub images: ImageStore,
    pub history: History,
    pub journal: JournalWriter,
    /// The pictures jobs start from.
    pub pictures: PictureStore,
    pub inbox: mpsc::UnboundedSender<Msg>,
    /// Ask ComfyUI for live previews.
    pub previews: bool,
    /// How many times a finished image is fetched before the job fails.
    pub fetch_attempts: u32,
}

impl Runner {
    /// Starts one command; its result (if it has one) comes back on the engine's channel.
    pub fn start(&self, command: Command) {
        match command {
            Command::Journal {
                id,
                entry,
                keep,
                notice,
            } => self
                .journal
                .write(id, entry, keep, notice.map_or(Done::Nobody, Done::Notice)),
            Command::Submit {
                at,
                link,
                entry,
                journaled,
            } => {
                let runner = self.clone();
                tokio::spawn(async move {
                    let id = entry.id;
                    let spec = entry.spec.clone();
                    // Written before the hand-over: after a restart, only the backend the journal names
                    // has a say about the job.
                    let written = journaled || {
                        let (done, answer) = oneshot::channel();
                        runner
                            .journal
                            .write(id, Some(entry), Keep::Cached, Done::Reply(done));
                        matches!(answer.await, Ok(true))
                    };
                    let outcome = if written {
                        runner.submit(at.backend, id, &spec, &link).await
                    } else {
                        tracing::warn!(%id, "cannot note the job's backend in the journal; not sending it");
                        SubmitOutcome::Unreachable
                    };
                    let _ = runner.inbox.send(Msg::Submitted {
                        id,
                        at,
                        link,
                        outcome,
                    });
                });
            }
            Command::Check { id, at } => {
                let runner = self.clone();
                tokio::spawn(async move {
                    let answer = runner.backends[at.backend]
                        .remote_state(&id.to_string())
                        .await
                        .map_err(|error| error.to_string());
                    let _ = runner.inbox.send(Msg::Checked { id, at, answer });
                });
            }
            Command::Drop {
                id,
                backend,
                pending,
                interrupt,
            } => {
                let comfy = self.backends[backend].clone();
                tokio::spawn(async move {
                    let prompt_id = id.to_string();
                    if pending && let Err(error) = comfy.delete_pending(&prompt_id).await {
                        tracing::debug!(%id, %error, "cannot remove the job from ComfyUI's queue");
                    }
                    if interrupt && let Err(error) = comfy.interrupt(&prompt_id).await {
                        tracing::debug!(%id, %error, "cannot interrupt the job");
                    }
                });
            }
            Command::Save {
                id,
                at,
                outputs,
                draft,
            } => {
                let runner = self.clone();
                tokio::spawn(async move {
                    let outcome = runner.save(at.backend, outputs, draft).await;
                    let _ = runner.inbox.send(Msg::SaveDone { id, at, outcome });
                });
            }
            Command::AnnouncePreviewLater { id, serial } => {
                let inbox = self.inbox.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(PREVIEW_ANNOUNCE_DELAY).await;
                    let _ = inbox.send(Msg::AnnouncePreview { id, serial });
                });
            }
        }
    }

    /// Hands the job to a backend: its picture first, when it starts from one (each hand-over uploads
    /// it again: the backend may be another, or may have restarted since), then the graph.
    async fn submit(&self, backend: usize, id: JobId, spec: &JobSpec, link: &str) -> SubmitOutcome {
        self.submit_once(backend, id, spec, link, false).await
    }

    async fn submit_once(
        &self,
        backend: usize,
        id: JobId,
        spec: &JobSpec,
        link: &str,
        retried: bool,
    ) -> SubmitOutcome {
        let comfy = &self.backends[backend];
        let (width, height) = (spec.width.get(), spec.height.get());
        let uploaded = match &spec.source {
            Some(source) => {
                let prepared = match self.pictures.prepare(source, width, height).await {
                    Ok(prepared) => prepared,
                    Err(error) => {
                        tracing::warn!(%id, %error, "the job's picture cannot be prepared");
                        return SubmitOutcome::Refused(JobFailure {
                            code: "source_unavailable".to_owned(),
                            message: "The picture this image starts from is no longer kept by the studio."
                                .to_owned(),
                        });
                    }
                };
                match comfy.upload_source(prepared.png, &prepared.digest).await {
                    Ok(name) => Some((name, prepared.strength, prepared.masked)),
                    Err(error) => return submit_failure(id, error),
                }
            }
            None => None,
        };
        let source = uploaded.as_ref().map(|(name, strength, masked)| SourceImage {
            image: name,
            strength: *strength,
            masked: *masked,
        });
        let graph = self.workflow.fill_from(
            spec.prompt.as_str(),
            spec.seed.get(),
            width,
            height,
            source.as_ref(),
        );
        let loras: Vec<(&str, f64)> = spec
            .loras
            .iter()
            .map(|lora| (lora.name.as_str(), lora.strength.get()))
            .collect();
        let graph = self.workflow.with_loras(graph, &loras);
        match comfy.submit(&id.to_string(), link, graph, self.previews).await {
            Ok(()) => SubmitOutcome::Accepted,
            // The uploaded picture went missing between the upload and the prompt (someone tidied
            // ComfyUI's input folder): one more upload and hand-over, then ComfyUI's word stands.
            Err(comfy::Error::Rejected { code, .. })
                if code == comfy::Error::SOURCE_MISSING && spec.source.is_some() && !retried =>
            {
                Box::pin(self.submit_once(backend, id, spec, link, true)).await
            }
            Err(error) => submit_failure(id, error),
        }
    }

    /// Fetches the finished image and writes it and its record to disk (written, then announced).
    async fn save(&self, backend: usize, outputs: Vec<OutputImage>, draft: HistoryRecord) -> SaveOutcome {
        let comfy = &self.backends[backend];
        let id = draft.id;
        let outputs = if outputs.is_empty() {
            // The `executed` message was lost: ComfyUI's records name the file.
            match comfy.remote_state(&id.to_string()).await {
                Ok(RemoteState::Completed { images }) => images,
                _ => Vec::new(),
            }
        } else {
            outputs
        };
        let (png, (width, height)) = match self.fetch_image(id, comfy, outputs).await {
            Ok(fetched) => fetched,
            Err(message) => return SaveOutcome::FetchFailed(message),
        };
        if (width, height) != (draft.width, draft.height) {
            tracing::warn!(%id, width, height, "ComfyUI made an image of another size than asked");
        }
        let finished_at = now_ms();
        let record = HistoryRecord {
            width,
            height,
            timings: zimage_contract::Timings {
                finished_at: Some(finished_at),
                ..draft.timings
            },
            elapsed_ms: finished_at.saturating_sub(draft.timings.queued_at),
            ..draft
        };
        let png = self.with_story(png, &record);
        match storage::save(&self.images, &self.history, record.clone(), png).await {
            Ok(()) => SaveOutcome::Saved(record),
            Err(error) => SaveOutcome::Failed(JobFailure {
                code: if error.is_disk_full() {
                    "disk_full"
                } else {
                    "storage_failed"
                }
                .to_owned(),
                message: error.to_string(),
            }),
        }
    }

    /// The image with its prompt, seed, size and model files written into it as PNG text chunks
    /// ([`png_story`]), as the pieces the file is written from (the image's bytes are not copied); as
    /// ComfyUI made it should that fail, since the image matters more than its story.
    fn with_story(&self, png: Bytes, record: &HistoryRecord) -> PngPieces {
        let story = ImageStory {
            prompt: &record.prompt,
            seed: record.seed,
            width: record.width,
            height: record.height,
            models: self.workflow.models(),
            source: record.source.as_ref(),
            loras: &record.loras,
        };
        match png_story::story_pieces(png.clone(), &story) {
            Ok(told) => told,
            Err(error) => {
                tracing::warn!(id = %record.id, %error, "cannot write the prompt and seed into the PNG; keeping it as it is");
                png.into()
            }
        }
    }

    /// Fetches the finished image (retrying a few times) and reads its size from its header.
    async fn fetch_image(
        &self,
        id: JobId,
        comfy: &ComfyClient,
        outputs: Vec<OutputImage>,
    ) -> Result<(Bytes, (u32, u32)), String> {
        let image = outputs
            .into_iter()
            .next()
            .ok_or("ComfyUI finished without an image.")?;
        let mut attempt = 0;
        let png = loop {
            attempt += 1;
            match comfy.fetch_output(&image, MAX_IMAGE_BYTES).await {
                Ok(bytes) => break bytes,
                Err(error) if attempt < self.fetch_attempts => {
                    tracing::warn!(%id, %error, attempt, "fetching the image failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(error) => return Err(format!("The image could not be fetched from ComfyUI: {error}")),
            }
        };
        let size = png_size(&png).map_err(|error| format!("The image could not be stored: {error}"))?;
        Ok((png, size))
    }
}

/// What a failed call of a hand-over means for the job.
fn submit_failure(id: JobId, error: comfy::Error) -> SubmitOutcome {
    match error {
        comfy::Error::Rejected { code, message } => SubmitOutcome::Refused(JobFailure {
            code: code.to_owned(),
            message,
        }),
        comfy::Error::Unreachable => SubmitOutcome::Unreachable,
        error => {
            tracing::warn!(%id, %error, "no clear answer to the submission");
            SubmitOutcome::Uncertain
        }
    }
}

/// One journal write: the entry (or its removal), and who hears that it is done.
struct Write {
    id: JobId,
    entry: Option<Entry>,
    keep: Keep,
    done: Done,
}

/// Who hears that a journal write is done, and whether it worked.
pub enum Done {
    /// The engine, as [`Msg::Journaled`] with this notice.
    Notice(Notice),
    /// Whoever holds the other end.
    Reply(oneshot::Sender<bool>),
    Nobody,
}

/// The journal's one writer: a thread of its own that writes in the order the writes were asked for
/// and tells the engine itself. A write then costs two hand-offs (engine to writer, writer to
/// engine), where a task of the runtime that awaited the blocking pool took five; the accepted job's
/// answer waits for them.
#[derive(Clone)]
pub struct JournalWriter {
    sender: mpsc::UnboundedSender<Write>,
}

impl JournalWriter {
    /// Starts the writer over `journal`, telling the engine on `inbox`; it stops when every handle is
    /// dropped.
    pub fn spawn(journal: Journal, inbox: mpsc::UnboundedSender<Msg>) -> std::io::Result<JournalWriter> {
        let (sender, mut receiver) = mpsc::unbounded_channel::<Write>();
        std::thread::Builder::new()
            .name("zimage-journal".to_owned())
            .spawn(move || {
                while let Some(write) = receiver.blocking_recv() {
                    let result = match &write.entry {
                        Some(entry) => journal.write_blocking(entry, write.keep),
                        None => journal.remove_blocking(write.id),
                    };
                    if let Err(error) = &result {
                        tracing::warn!(id = %write.id, %error, "cannot write the job's journal entry");
                    }
                    match write.done {
                        Done::Notice(notice) => {
                            let _ = inbox.send(Msg::Journaled {
                                id: write.id,
                                notice,
                                result: result.map_err(|error| error.kind()),
                            });
                        }
                        Done::Reply(reply) => {
                            let _ = reply.send(result.is_ok());
                        }
                        Done::Nobody => {}
                    }
                }
            })?;
        Ok(JournalWriter { sender })
    }

    /// Queues a write (or, for `None`, a removal); `done` hears whether it was done.
    pub fn write(&self, id: JobId, entry: Option<Entry>, keep: Keep, done: Done) {
        let _ = self.sender.send(Write {
            id,
            entry,
            keep,
            done,
        });
    }
}
