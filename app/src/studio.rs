//! The studio page's state and actions: the signals the components render, and what a click does.
//!
//! The decisions live in the plain types ([`StudioForm`], [`JobProgress`], [`Gallery`],
//! [`BackendStatus`]); this module only wires them to signals, the gateway and the browser.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{HistoryItem, JobEvent, paths};
use crate::backend::BackendStatus;
use crate::browser::{self, StreamState};
use crate::client;
use crate::form::{FormError, StudioForm, seed_from_random};
use crate::history::{Gallery, first_page_url};
use crate::i18n::Ui;
use crate::job::{JobProgress, Phase};

/// `localStorage` key of the job this browser watches, so a reload picks it up again.
const WATCHED_JOB_KEY: &str = "zimage.job";
/// Element ids the page scrolls to.
pub const FORM_ID: &str = "composer";
pub const STAGE_ID: &str = "stage";

/// Every signal of the studio page. `Copy`, so each handler captures it whole.
#[derive(Debug, Clone, Copy)]
pub struct Studio {
    pub form: RwSignal<StudioForm>,
    /// The error shown beside a control, or above the form when it names none.
    pub form_error: RwSignal<Option<FormError>>,
    /// True while `POST /api/jobs` is on its way.
    pub submitting: RwSignal<bool>,
    /// The job this page watches (its own, or the one picked up after a reload).
    pub job: RwSignal<Option<JobProgress>>,
    pub stream: RwSignal<StreamState>,
    /// A history image the person tapped; shown instead of the job's result.
    pub selected: RwSignal<Option<HistoryItem>>,
    pub gallery: RwSignal<Gallery>,
    pub gallery_loading: RwSignal<bool>,
    pub gallery_error: RwSignal<Option<String>>,
    pub backend: RwSignal<BackendStatus>,
    /// The browser clock, ticking while a job runs, for the elapsed time.
    pub now_ms: RwSignal<u64>,
    /// True once the WebAssembly bundle took over the server-rendered page.
    pub hydrated: RwSignal<bool>,
    /// The words of the page's language (chosen once per page: switching reloads it).
    pub ui: &'static Ui,
}

impl Studio {
    /// Fresh state, identical on the server and in the browser's first render (hydration needs that).
    pub fn new() -> Studio {
        Studio {
            form: RwSignal::new(StudioForm::default()),
            form_error: RwSignal::new(None),
            submitting: RwSignal::new(false),
            job: RwSignal::new(None),
            stream: RwSignal::new(StreamState::Open),
            selected: RwSignal::new(None),
            gallery: RwSignal::new(Gallery::default()),
            gallery_loading: RwSignal::new(false),
            gallery_error: RwSignal::new(None),
            backend: RwSignal::new(BackendStatus::Unknown),
            now_ms: RwSignal::new(0),
            hydrated: RwSignal::new(false),
            ui: crate::i18n::use_ui(),
        }
    }

    /// Starts the browser-only work once the page is hydrated: readiness polling, the first history
    /// page, picking up a job from before a reload, and resuming streams when the page comes back.
    pub fn start(self) {
        self.hydrated.set(true);
        self.now_ms.set(browser::now_ms());
        self.poll_readiness();
        self.load_more();
        self.resume_saved_job();
        browser::on_page_resumed(move || self.resync());
        let tick = move || {
            if self.job_is_active() {
                self.now_ms.set(browser::now_ms());
            }
        };
        if set_interval_with_handle(tick, Duration::from_millis(200)).is_err() {
            leptos::logging::warn!("no timer: the elapsed time will not tick");
        }
    }

    /// True while the watched job is queued or running.
    pub fn job_is_active(&self) -> bool {
        self.job
            .with(|job| job.as_ref().is_some_and(JobProgress::is_active))
    }

    /// Generate (the primary button, Ctrl+Enter): validates what cannot be sent, then asks the gateway.
    pub fn generate(self) {
        if self.submitting.get_untracked()
            || self
                .job
                .with_untracked(|job| job.as_ref().is_some_and(JobProgress::is_active))
        {
            return;
        }
        let request = match self.form.with_untracked(|form| form.request(self.ui)) {
            Ok(request) => request,
            Err(error) => {
                self.form_error.set(Some(error));
                return;
            }
        };
        self.form_error.set(None);
        self.submitting.set(true);
        spawn_local(async move {
            match client::create_job(&request).await {
                Ok(accepted) => {
                    self.selected.set(None);
                    self.job.set(Some(JobProgress::accepted(
                        &accepted,
                        &request.prompt,
                        browser::now_ms(),
                    )));
                    self.now_ms.set(browser::now_ms());
                    browser::save(WATCHED_JOB_KEY, &accepted.id);
                    self.watch(&accepted.id);
                    browser::scroll_into_view(STAGE_ID);
                }
                Err(error) if self.sign_in_again(&error) => {}
                Err(error) => self.form_error.set(Some(error.to_form_error(self.ui))),
            }
            self.submitting.set(false);
        });
    }

    /// Cancel (the primary button while one's own job is queued or running).
    pub fn cancel(self) {
        let Some(id) = self.job.with_untracked(|job| {
            job.as_ref()
                .filter(|job| job.is_active())
                .map(|job| job.id.clone())
        }) else {
            return;
        };
        self.job.update(|job| {
            if let Some(job) = job {
                job.cancel_requested = true;
            }
        });
        spawn_local(async move {
            if let Err(error) = client::cancel_job(&id).await {
                if self.sign_in_again(&error) {
                    return;
                }
                self.form_error.set(Some(error.to_form_error(self.ui)));
                self.job.update(|job| {
                    if let Some(job) = job {
                        job.cancel_requested = false;
                    }
                });
            }
            // The stream brings `cancelled`; if it is down, ask directly.
            if !browser::is_watching() {
                self.resync();
            }
        });
    }

    /// Rolls a random seed into the seed field.
    pub fn roll_dice(self) {
        let seed = seed_from_random(browser::random_unit());
        self.form.update(|form| form.fix_seed(seed));
        self.clear_error_of(crate::form::Field::Seed);
    }

    /// "Reuse": fixes the seed an image used.
    pub fn reuse_seed(self, seed: u64) {
        self.form.update(|form| form.fix_seed(seed));
        self.clear_error_of(crate::form::Field::Seed);
    }

    /// "Reuse settings": fills the form from an image, and brings the form into view.
    pub fn reuse_settings(self, prompt: &str, seed: u64, width: u32, height: u32) {
        self.form.update(|form| form.reuse(prompt, seed, width, height));
        self.form_error.set(None);
        browser::scroll_into_view(FORM_ID);
    }

    /// Shows a history image on the stage.
    pub fn select(self, item: HistoryItem) {
        self.selected.set(Some(item));
        browser::scroll_into_view(STAGE_ID);
    }

    /// Deletes a history image (after the person confirmed).
    pub fn delete(self, id: String) {
        spawn_local(async move {
            match client::delete_history_item(&id).await {
                Ok(()) => {
                    self.gallery.update(|gallery| gallery.remove(&id));
                    if self
                        .selected
                        .with_untracked(|item| item.as_ref().is_some_and(|item| item.id == id))
                    {
                        self.selected.set(None);
                    }
                    if self
                        .job
                        .with_untracked(|job| job.as_ref().is_some_and(|job| job.id == id))
                    {
                        self.job.set(None);
                        browser::forget(WATCHED_JOB_KEY);
                    }
                    self.gallery_error.set(None);
                }
                Err(error) if self.sign_in_again(&error) => {}
                Err(error) => self.gallery_error.set(Some(error.message(self.ui))),
            }
        });
    }

    /// Loads the next (older) history page, if any and not already loading.
    pub fn load_more(self) {
        if self.gallery_loading.get_untracked() {
            return;
        }
        let Some(url) = self.gallery.with_untracked(Gallery::next_page_url) else {
            return;
        };
        self.gallery_loading.set(true);
        spawn_local(async move {
            match client::history_page(&url).await {
                Ok(page) => {
                    self.gallery.update(|gallery| gallery.append_page(page));
                    self.gallery_error.set(None);
                }
                Err(error) if self.sign_in_again(&error) => {}
                Err(error) => self.gallery_error.set(Some(error.message(self.ui))),
            }
            self.gallery_loading.set(false);
        });
    }

    /// Clears the error shown beside `field`, once the person edits that control.
    pub fn clear_error_of(self, field: crate::form::Field) {
        if self
            .form_error
            .with_untracked(|error| error.as_ref().is_some_and(|error| error.field == Some(field)))
        {
            self.form_error.set(None);
        }
    }

    /// Sends the browser to the gateway's sign-in page when a call says the session is gone, and
    /// back to the studio afterwards. True when it did.
    fn sign_in_again(self, error: &client::ClientError) -> bool {
        if !error.needs_sign_in() {
            return false;
        }
        browser::go_to(&format!("{}?next=/", paths::SIGN_IN_PAGE));
        true
    }

    fn refresh_newest(self) {
        spawn_local(async move {
            if let Ok(page) = client::history_page(&first_page_url()).await {
                self.gallery.update(|gallery| gallery.merge_newest(page));
            }
        });
    }

    fn watch(self, id: &str) {
        let on_event = move |event: JobEvent| {
            let terminal = event.is_terminal();
            self.job.update(|job| {
                if let Some(job) = job {
                    job.apply(&event);
                }
            });
            if terminal {
                browser::stop_watching();
                self.finished();
            }
        };
        let on_state = move |state: StreamState| {
            self.stream.set(state);
            if state == StreamState::Closed {
                browser::stop_watching();
                // The gateway refused the stream (it restarted, or a proxy cut in): ask it directly,
                // after a pause so a gateway that keeps refusing is not hammered.
                set_timeout(move || self.resync(), Duration::from_secs(2));
            }
        };
        browser::watch_job(&paths::job_events(id), on_event, on_state);
    }

    /// After the watched job ended: remember only a finished image, refresh the gallery.
    fn finished(self) {
        let phase = self
            .job
            .with_untracked(|job| job.as_ref().map(|job| job.phase.clone()));
        match phase {
            Some(Phase::Completed(_)) => self.refresh_newest(),
            Some(_) => browser::forget(WATCHED_JOB_KEY),
            None => {}
        }
    }

    /// Catches the watched job up with the gateway and reopens its stream if it still runs: after a
    /// refused stream, and when a phone wakes up.
    fn resync(self) {
        let Some(id) = self.job.with_untracked(|job| {
            job.as_ref()
                .filter(|job| job.is_active())
                .map(|job| job.id.clone())
        }) else {
            return;
        };
        spawn_local(async move {
            match client::get_job(&id).await {
                Ok(view) => {
                    self.job.update(|job| {
                        if let Some(job) = job.as_mut().filter(|job| job.id == view.id) {
                            job.catch_up(&view, self.ui);
                        }
                    });
                    if self.job_is_active() {
                        if !browser::is_watching() {
                            self.watch(&id);
                        }
                    } else {
                        browser::stop_watching();
                        self.finished();
                    }
                }
                Err(error) if self.sign_in_again(&error) => {}
                Err(error) if error.is_not_found() => {
                    browser::stop_watching();
                    browser::forget(WATCHED_JOB_KEY);
                    self.job.update(|job| {
                        if let Some(job) = job {
                            job.apply(&JobEvent::Failed {
                                code: "job_lost".to_owned(),
                                message: self.ui.job_lost.to_owned(),
                            });
                        }
                    });
                }
                // The network is down: the page retries when it comes back (`online`) or is shown again.
                Err(_) => self.stream.set(StreamState::Reconnecting),
            }
        });
    }

    fn resume_saved_job(self) {
        let Some(id) = browser::load(WATCHED_JOB_KEY) else {
            return;
        };
        spawn_local(async move {
            match client::get_job(&id).await {
                Ok(view) => {
                    let job = JobProgress::from_view(&view, self.ui);
                    let active = job.is_active();
                    if !active && !matches!(job.phase, Phase::Completed(_)) {
                        browser::forget(WATCHED_JOB_KEY);
                        return;
                    }
                    self.job.set(Some(job));
                    if active {
                        self.watch(&id);
                    }
                }
                Err(error) if error.is_not_found() => browser::forget(WATCHED_JOB_KEY),
                // Signing in again is left to the other calls; the job is asked for after it.
                Err(_) => {}
            }
        });
    }

    fn poll_readiness(self) {
        spawn_local(async move {
            let status = match client::readiness().await {
                Ok(readiness) => BackendStatus::Known(readiness),
                Err(error) if self.sign_in_again(&error) => return,
                Err(_) => BackendStatus::GatewayUnreachable,
            };
            // Ask often while waiting for the backend, rarely once it is ready.
            let ready = matches!(&status, BackendStatus::Known(readiness) if readiness.ready);
            self.backend.set(status);
            let pause = if ready {
                Duration::from_secs(30)
            } else {
                Duration::from_secs(3)
            };
            set_timeout(move || self.poll_readiness(), pause);
        });
    }
}

impl Default for Studio {
    fn default() -> Self {
        Studio::new()
    }
}
