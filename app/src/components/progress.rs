//! The progress of the watched job: a real bar from the SSE stream, the phase in words, the elapsed
//! time, and the gateway's message when it failed.

use leptos::prelude::*;

use crate::browser::StreamState;
use crate::job::{Phase, format_elapsed, percent_text};
use crate::studio::Studio;

/// Shown while a job runs, and after it failed or was cancelled.
#[component]
pub fn Progress(studio: Studio) -> impl IntoView {
    let ui = studio.ui;
    let visible = move || {
        studio.job.with(|job| {
            job.as_ref()
                .is_some_and(|job| !matches!(job.phase, Phase::Completed(_)))
        })
    };
    let label = move || {
        studio
            .job
            .with(|job| job.as_ref().map(|job| job.label(ui)).unwrap_or_default())
    };
    let permille = move || {
        studio
            .job
            .with(|job| job.as_ref().map_or(0, |job| job.permille()))
    };
    let elapsed = move || {
        let now = studio.now_ms.get();
        studio.job.with(|job| {
            job.as_ref()
                .map(|job| format_elapsed(job.elapsed_ms(now), ui))
                .unwrap_or_default()
        })
    };
    let failure = move || {
        studio.job.with(|job| match job.as_ref().map(|job| &job.phase) {
            Some(Phase::Failed(failure)) => Some(failure.message.clone()),
            _ => None,
        })
    };
    let reconnecting = Memo::new(move |_| studio.job_is_active() && studio.stream.get() != StreamState::Open);
    crate::components::erase(view! {
        <div class="progress" class:hidden=move || !visible()>
            <div class="progress-head">
                <span class="progress-label" aria-live="polite">{label}</span>
                <span class="elapsed" aria-label=ui.elapsed_time>{elapsed}</span>
            </div>
            <div
                class="bar"
                role="progressbar"
                aria-label=ui.progress
                aria-valuemin="0"
                aria-valuemax="100"
                aria-valuenow=move || (permille() / 10).to_string()
                aria-valuetext=label
            >
                <div class="bar-fill" style:width=move || percent_text(permille())></div>
            </div>
            {move || reconnecting.get().then(|| view! { <p class="hint">{ui.reconnecting}</p> })}
            <p class="job-error" role="alert" aria-live="assertive">
                {failure}
            </p>
        </div>
    })
}
