//! A finished image, large and fitting the screen, with its prompt, seed and size, and what can be done
//! with it: open at full size, download, reuse, start from it, delete.

use leptos::prelude::*;

use crate::api::HistoryItem;
use crate::components::delete_button::DeleteButton;
use crate::job::{FinishedImage, JobProgress, format_elapsed};
use crate::studio::Studio;

/// The facts an image card shows, from a finished job or a history entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownImage {
    pub id: String,
    pub image_url: String,
    pub prompt: String,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub elapsed_ms: Option<u64>,
    /// The backend (GPU) that made it, when the studio has several or named it.
    pub backend: Option<String>,
    /// The LoRAs it was made with, when known (a history entry); a job just made was made with the
    /// form's, which "reuse" then leaves as they are.
    pub loras: Option<Vec<crate::api::LoraChoice>>,
}

impl ShownImage {
    /// The image a job just made.
    pub fn from_job(job: &JobProgress, image: &FinishedImage) -> ShownImage {
        ShownImage {
            id: job.id.clone(),
            image_url: image.image_url.clone(),
            prompt: job.prompt.clone(),
            seed: image.seed,
            width: image.width,
            height: image.height,
            elapsed_ms: Some(image.elapsed_ms),
            backend: image.backend.clone(),
            loras: None,
        }
    }

    /// An image from the history.
    pub fn from_history(item: &HistoryItem) -> ShownImage {
        ShownImage {
            id: item.id.clone(),
            image_url: item.image_url.clone(),
            prompt: item.prompt.clone(),
            seed: item.seed,
            width: item.width,
            height: item.height,
            elapsed_ms: item
                .timings
                .finished_at
                .map(|finished| finished.saturating_sub(item.timings.queued_at)),
            backend: item.backend.clone(),
            loras: Some(item.loras.clone()),
        }
    }
}

/// The image and its details.
#[component]
pub fn ImageCard(studio: Studio, image: ShownImage) -> impl IntoView {
    let ShownImage {
        id,
        image_url,
        prompt,
        seed,
        width,
        height,
        elapsed_ms,
        backend,
        loras: reuse_loras,
    } = image;
    let download_name = format!("z-image-{seed}.png");
    let ui = studio.ui;
    let reuse_prompt = prompt.clone();
    let start_url = image_url.clone();
    let delete_id = id.clone();
    crate::components::erase(view! {
        <figure class="result">
            <a class="canvas" href=image_url.clone() target="_blank" rel="noopener" title=ui.open_full_size_title>
                <img class="result-image" src=image_url.clone() alt=prompt.clone() width=width height=height/>
            </a>
            <figcaption class="details">
                <p class="result-prompt">{prompt}</p>
                <dl class="facts">
                    <div>
                        <dt>{ui.seed}</dt>
                        <dd>
                            <span class="result-seed">{seed}</span>
                            <button type="button" class="link-button" on:click=move |_| studio.reuse_seed(seed)>
                                {ui.reuse}
                            </button>
                        </dd>
                    </div>
                    <div>
                        <dt>{ui.size}</dt>
                        <dd class="result-size">{format!("{width} × {height}")}</dd>
                    </div>
                    {elapsed_ms
                        .map(|elapsed| {
                            view! {
                                <div>
                                    <dt>{ui.time}</dt>
                                    <dd>{format_elapsed(elapsed, ui)}</dd>
                                </div>
                            }
                        })}
                    {backend
                        .map(|backend| {
                            view! {
                                <div>
                                    <dt>{ui.gpu}</dt>
                                    <dd class="result-backend">{backend}</dd>
                                </div>
                            }
                        })}
                </dl>
                <div class="actions">
                    <a class="button" href=image_url.clone() target="_blank" rel="noopener">{ui.open_full_size}</a>
                    <a class="button" href=image_url download=download_name>{ui.download}</a>
                    <button
                        type="button"
                        class="button"
                        on:click=move |_| studio.reuse_settings(&reuse_prompt, seed, width, height, reuse_loras.as_deref())
                    >
                        {ui.reuse_settings}
                    </button>
                    <button
                        type="button"
                        class="button"
                        disabled={Signal::<bool>::from(studio.picture_busy)}
                        on:click=move |_| studio.start_from_image(start_url.clone())
                    >
                        {ui.start_from_this}
                    </button>
                    <DeleteButton studio id=delete_id group_label=ui.confirm_deletion/>
                </div>
            </figcaption>
        </figure>
    })
}
