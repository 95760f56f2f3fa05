//! The studio page's state and actions: the signals the components render, and what a click does.
//!
//! The decisions live in the plain types ([`StudioForm`], [`JobProgress`], [`Gallery`],
//! [`BackendStatus`]); this module only wires them to signals, the gateway and the browser.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::{HistoryItem, JobEvent, PictureKind, paths};
use crate::backend::BackendStatus;
use crate::browser::{self, StreamState};
use crate::client;
use crate::form::{Field, FormError, StudioForm, seed_from_random};
use crate::history::{Gallery, GalleryFilter, PageState, first_page_url};
use crate::i18n::Ui;
use crate::job::{JobProgress, Phase};
use crate::paint::{Brush, MaskPainting, Point};

/// `localStorage` key of the job this browser watches, so a reload picks it up again.
const WATCHED_JOB_KEY: &str = "zimage.job";
/// Element ids the page scrolls to.
pub const FORM_ID: &str = "composer";
pub const STAGE_ID: &str = "stage";
pub const SOURCE_ID: &str = "source";
/// The canvas the painting is drawn on.
pub const PAINTING_CANVAS_ID: &str = "painting";

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
    /// The search box's text (applied to the gallery a moment after the last key).
    pub search_text: RwSignal<String>,
    /// Counts the search box's edits, so only the last one of a burst is applied.
    search_edits: RwSignal<u64>,
    /// The image open in the full-screen viewer.
    pub viewing: RwSignal<Option<String>>,
    /// True when opening the viewer added a history entry (closing it then goes back).
    viewer_pushed: RwSignal<bool>,
    /// The image the page's URL had open in the viewer at load, reopened once the first page of the
    /// gallery shows it.
    view_after_load: RwSignal<Option<String>>,
    /// A short word in the viewer after an action ("Copied").
    pub viewer_note: RwSignal<Option<&'static str>>,
    pub backend: RwSignal<BackendStatus>,
    /// The browser clock, ticking while a job runs, for the elapsed time.
    pub now_ms: RwSignal<u64>,
    /// True once the WebAssembly bundle took over the server-rendered page.
    pub hydrated: RwSignal<bool>,
    /// True while a picture to start from is on its way to the gateway.
    pub picture_busy: RwSignal<bool>,
    /// The part of the picture painted over (kept when the painting is closed, so it is still sent).
    pub painting: RwSignal<Option<MaskPainting>>,
    /// True while the painting is open over the picture.
    pub painting_open: RwSignal<bool>,
    /// The mask last uploaded: the painting's revision it was made from, and its id.
    uploaded_mask: RwSignal<Option<(u64, String)>>,
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
            search_text: RwSignal::new(String::new()),
            search_edits: RwSignal::new(0),
            viewing: RwSignal::new(None),
            viewer_pushed: RwSignal::new(false),
            view_after_load: RwSignal::new(None),
            viewer_note: RwSignal::new(None),
            backend: RwSignal::new(BackendStatus::Unknown),
            now_ms: RwSignal::new(0),
            hydrated: RwSignal::new(false),
            picture_busy: RwSignal::new(false),
            painting: RwSignal::new(None),
            painting_open: RwSignal::new(false),
            uploaded_mask: RwSignal::new(None),
            ui: crate::i18n::use_ui(),
        }
    }

    /// Starts the browser-only work once the page is hydrated: readiness polling, the first history
    /// page, picking up a job from before a reload, and resuming streams when the page comes back.
    pub fn start(self) {
        self.hydrated.set(true);
        self.now_ms.set(browser::now_ms());
        self.poll_readiness();
        // The search and filter of the URL (a reload keeps them). A viewer left open reopens once
        // the gallery has its image, as a history entry above the gallery's, as if tapped.
        let state = PageState::from_query(&browser::location_search());
        if state.viewing.is_some() {
            browser::replace_url(
                &PageState {
                    viewing: None,
                    ..state.clone()
                }
                .url(),
            );
            self.view_after_load.set(state.viewing.clone());
        }
        self.search_text.set(state.filter.query.clone());
        self.gallery.update(|gallery| {
            gallery.set_filter(state.filter);
        });
        browser::on_popstate(move || self.url_changed());
        browser::on_key(move |key| self.key_pressed(key));
        browser::on_paste_image(move |image| self.choose_picture(image));
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

    /// Generate (the primary button, Ctrl+Enter): validates what cannot be sent, sends the painted
    /// mask if there is a new one, then asks the gateway.
    pub fn generate(self) {
        if self.submitting.get_untracked()
            || self.picture_busy.get_untracked()
            || self
                .job
                .with_untracked(|job| job.as_ref().is_some_and(JobProgress::is_active))
        {
            return;
        }
        if let Err(error) = self.form.with_untracked(|form| form.request(self.ui, None)) {
            self.form_error.set(Some(error));
            return;
        }
        self.form_error.set(None);
        self.submitting.set(true);
        spawn_local(async move {
            self.submit().await;
            self.submitting.set(false);
        });
    }

    async fn submit(self) {
        let mask = match self.mask_id().await {
            Ok(mask) => mask,
            Err(error) if self.sign_in_again(&error) => return,
            Err(error) => {
                self.form_error.set(Some(self.source_error(&error)));
                return;
            }
        };
        // The form as it is now: the person may have typed while the mask was on its way.
        let request = match self.form.with_untracked(|form| form.request(self.ui, mask)) {
            Ok(request) => request,
            Err(error) => {
                self.form_error.set(Some(error));
                return;
            }
        };
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
    }

    /// The id of the mask painted over the picture, uploaded once per change; `None` when nothing is
    /// painted (or there is no picture).
    async fn mask_id(self) -> Result<Option<String>, client::ClientError> {
        if self.form.with_untracked(|form| form.source.is_none()) {
            return Ok(None);
        }
        let Some(painting) = self
            .painting
            .get_untracked()
            .filter(|painting| !painting.is_empty())
        else {
            return Ok(None);
        };
        let revision = painting.revision();
        if let Some((uploaded, id)) = self.uploaded_mask.get_untracked()
            && uploaded == revision
        {
            return Ok(Some(id));
        }
        let png = browser::mask_png(&painting)
            .await
            .ok_or(client::ClientError::Unexpected)?;
        let uploaded = client::upload_picture(&png, PictureKind::Mask).await?;
        self.uploaded_mask.set(Some((revision, uploaded.id.clone())));
        Ok(Some(uploaded.id))
    }

    /// A failed upload, shown beside the picture.
    fn source_error(self, error: &client::ClientError) -> FormError {
        FormError {
            field: Some(Field::Source),
            message: error.message(self.ui),
        }
    }

    /// A picture to start from was chosen, pasted or dropped: the gateway gets it as it is and
    /// answers with its clean id and size.
    pub fn choose_picture(self, file: browser::Blob) {
        if self.picture_busy.get_untracked() {
            return;
        }
        self.picture_busy.set(true);
        self.clear_error_of(Field::Source);
        spawn_local(async move {
            self.upload_source(&file).await;
            self.picture_busy.set(false);
        });
    }

    async fn upload_source(self, file: &browser::Blob) {
        match client::upload_picture(file, PictureKind::Picture).await {
            Ok(uploaded) => {
                self.form.update(|form| form.start_from(uploaded.into()));
                self.forget_painting();
            }
            Err(error) if self.sign_in_again(&error) => {}
            Err(error) => self.form_error.set(Some(self.source_error(&error))),
        }
    }

    /// "Start from this" on an image of the studio: its bytes are fetched and sent back as a picture
    /// to start from, and the form comes into view.
    pub fn start_from_image(self, image_url: String) {
        if self.picture_busy.get_untracked() {
            return;
        }
        self.close_viewer();
        self.picture_busy.set(true);
        self.clear_error_of(Field::Source);
        browser::scroll_into_view(SOURCE_ID);
        spawn_local(async move {
            match browser::fetch_blob(&image_url).await {
                Ok(file) => self.upload_source(&file).await,
                Err(error) => self.form_error.set(Some(self.source_error(&error))),
            }
            self.picture_busy.set(false);
        });
    }

    /// Removes the picture: back to making images from words alone.
    pub fn remove_picture(self) {
        self.form.update(StudioForm::remove_source);
        self.forget_painting();
        self.clear_error_of(Field::Source);
    }

    fn forget_painting(self) {
        self.painting.set(None);
        self.painting_open.set(false);
        self.uploaded_mask.set(None);
    }

    /// Opens the painting over the picture (a fresh one the first time).
    pub fn open_painting(self) {
        let Some((width, height)) = self.form.with_untracked(|form| {
            form.source
                .as_ref()
                .map(|picture| (picture.width, picture.height))
        }) else {
            return;
        };
        if self.painting.with_untracked(Option::is_none) {
            self.painting.set(Some(MaskPainting::new(width, height)));
        }
        self.painting_open.set(true);
    }

    /// A finger or the mouse went down on the picture: a stroke starts.
    pub fn paint_begin(self, at: Point) {
        let radius = self.painting.try_update(|painting| {
            painting.as_mut().map(|painting| {
                painting.begin(at);
                painting.brush_radius()
            })
        });
        if let Some(Some(radius)) = radius {
            browser::draw_segment(PAINTING_CANVAS_ID, at, at, radius);
            self.form.update(StudioForm::painting_started);
        }
    }

    /// The pointer moved: the stroke goes on, drawn piece by piece.
    pub fn paint_to(self, at: Point) {
        let segment = self.painting.try_update(|painting| {
            let painting = painting.as_mut()?;
            let radius = painting.brush_radius();
            painting.extend(at).map(|(from, to)| (from, to, radius))
        });
        if let Some(Some((from, to, radius))) = segment {
            browser::draw_segment(PAINTING_CANVAS_ID, from, to, radius);
        }
    }

    /// The finger lifted.
    pub fn paint_end(self) {
        if self
            .painting
            .with_untracked(|painting| painting.as_ref().is_some_and(MaskPainting::is_painting))
        {
            self.painting.update(|painting| {
                if let Some(painting) = painting {
                    painting.end();
                }
            });
        }
    }

    /// Undo, clear, brush and show/hide, then the canvas drawn anew.
    pub fn edit_painting(self, edit: impl FnOnce(&mut MaskPainting)) {
        self.painting.update(|painting| {
            if let Some(painting) = painting {
                edit(painting);
            }
        });
        self.redraw_painting();
    }

    /// Draws the whole painting on its canvas (after an edit, or once the canvas is in the page).
    pub fn redraw_painting(self) {
        self.painting.with_untracked(|painting| {
            if let Some(painting) = painting {
                browser::draw_painting(PAINTING_CANVAS_ID, painting);
            }
        });
    }

    /// Picks a brush size.
    pub fn choose_brush(self, brush: Brush) {
        self.painting.update(|painting| {
            if let Some(painting) = painting {
                painting.brush = brush;
            }
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
    /// `loras`: the image's LoRAs, or `None` to leave the form's (an image the form just made).
    pub fn reuse_settings(
        self,
        prompt: &str,
        seed: u64,
        width: u32,
        height: u32,
        loras: Option<&[crate::api::LoraChoice]>,
    ) {
        self.form
            .update(|form| form.reuse(prompt, seed, width, height, loras));
        self.form_error.set(None);
        browser::scroll_into_view(FORM_ID);
    }

    /// Shows a history image on the stage.
    pub fn select(self, item: HistoryItem) {
        self.selected.set(Some(item));
        browser::scroll_into_view(STAGE_ID);
    }

    /// The search box changed: the gallery follows a moment after the last key.
    pub fn search(self, text: String) {
        self.search_text.set(text);
        self.search_edits.update(|edits| *edits += 1);
        let edit = self.search_edits.get_untracked();
        set_timeout(
            move || {
                if self.search_edits.get_untracked() == edit {
                    let starred_only = self
                        .gallery
                        .with_untracked(|gallery| gallery.filter().starred_only);
                    self.apply_filter(GalleryFilter {
                        query: self.search_text.get_untracked(),
                        starred_only,
                    });
                }
            },
            Duration::from_millis(300),
        );
    }

    /// The "Starred" filter.
    pub fn show_starred_only(self, starred_only: bool) {
        let query = self.search_text.get_untracked();
        self.apply_filter(GalleryFilter { query, starred_only });
    }

    /// Shows the gallery under another filter, from its first page; the URL keeps it.
    fn apply_filter(self, filter: GalleryFilter) {
        let changed = self
            .gallery
            .try_update(|gallery| gallery.set_filter(filter.clone()));
        if changed != Some(true) {
            return;
        }
        browser::replace_url(
            &PageState {
                filter,
                viewing: self.viewing.get_untracked(),
            }
            .url(),
        );
        self.load_more();
    }

    /// Stars or unstars an image (shown at once; taken back if the studio refuses).
    pub fn star(self, id: String, starred: bool) {
        self.gallery.update(|gallery| gallery.set_starred(&id, starred));
        spawn_local(async move {
            match client::star_history_item(&id, starred).await {
                Ok(_) => self.gallery_error.set(None),
                Err(error) if self.sign_in_again(&error) => {}
                Err(error) => {
                    self.gallery.update(|gallery| gallery.set_starred(&id, !starred));
                    self.gallery_error.set(Some(error.message(self.ui)));
                }
            }
        });
    }

    /// Opens the full-screen viewer on an image: a history entry of its own, so the back button
    /// closes it.
    pub fn open_viewer(self, id: String) {
        let filter = self.gallery.with_untracked(|gallery| gallery.filter().clone());
        browser::push_url(
            &PageState {
                filter,
                viewing: Some(id.clone()),
            }
            .url(),
        );
        self.viewer_pushed.set(true);
        self.viewer_note.set(None);
        self.viewing.set(Some(id));
    }

    /// Closes the viewer (Esc, the close button): back to the entry before it.
    pub fn close_viewer(self) {
        if self.viewing.get_untracked().is_none() {
            return;
        }
        if self.viewer_pushed.get_untracked() {
            // `popstate` then closes it.
            browser::history_back();
        } else {
            self.viewing.set(None);
        }
    }

    /// Moves the viewer `step` images on (positive: older) in the gallery as filtered; at the end of
    /// what is loaded, loads the next page.
    pub fn view_next(self, step: isize) {
        let Some(id) = self.viewing.get_untracked() else {
            return;
        };
        let next = self
            .gallery
            .with_untracked(|gallery| gallery.neighbour(&id, step).map(str::to_owned));
        match next {
            Some(next) => {
                let filter = self.gallery.with_untracked(|gallery| gallery.filter().clone());
                browser::replace_url(
                    &PageState {
                        filter,
                        viewing: Some(next.clone()),
                    }
                    .url(),
                );
                self.viewer_note.set(None);
                self.viewing.set(Some(next));
            }
            None if step > 0 => self.load_more(),
            None => {}
        }
    }

    /// "Copy prompt" in the viewer.
    pub fn copy_prompt(self, prompt: String) {
        spawn_local(async move {
            let copied = browser::copy_text(&prompt).await;
            self.viewer_note.set(Some(if copied {
                self.ui.copied
            } else {
                self.ui.copy_failed
            }));
        });
    }

    /// "Reuse" in the viewer: the form takes the image's settings, the viewer closes.
    pub fn reuse_from_viewer(self, item: &HistoryItem) {
        self.close_viewer();
        self.reuse_settings(
            &item.prompt,
            item.seed,
            item.width,
            item.height,
            Some(&item.loras),
        );
    }

    /// The back or forward button: the viewer follows the URL.
    fn url_changed(self) {
        let state = PageState::from_query(&browser::location_search());
        let viewing = state
            .viewing
            .filter(|id| self.gallery.with_untracked(|gallery| gallery.get(id).is_some()));
        self.viewer_pushed.set(viewing.is_some());
        self.viewing.set(viewing);
    }

    /// Arrow keys and Esc while the viewer is open.
    fn key_pressed(self, key: &str) -> bool {
        if self.viewing.get_untracked().is_none() {
            return false;
        }
        match key {
            "ArrowRight" => self.view_next(1),
            "ArrowLeft" => self.view_next(-1),
            "Escape" => self.close_viewer(),
            _ => return false,
        }
        true
    }

    /// Deletes a history image (after the person confirmed).
    pub fn delete(self, id: String) {
        spawn_local(async move {
            match client::delete_history_item(&id).await {
                Ok(()) => {
                    if self.viewing.get_untracked().as_deref() == Some(id.as_str()) {
                        // The viewer moves on to the next image, or closes after the last.
                        let next = self.gallery.with_untracked(|gallery| {
                            gallery
                                .neighbour(&id, 1)
                                .or_else(|| gallery.neighbour(&id, -1))
                                .map(str::to_owned)
                        });
                        match next {
                            Some(_) => {
                                let step = if self
                                    .gallery
                                    .with_untracked(|gallery| gallery.neighbour(&id, 1).is_some())
                                {
                                    1
                                } else {
                                    -1
                                };
                                self.view_next(step);
                            }
                            None => self.close_viewer(),
                        }
                    }
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
        let filter = self.gallery.with_untracked(|gallery| gallery.filter().clone());
        spawn_local(async move {
            match client::history_page(&url).await {
                // The filter changed while the page was on its way: that page is not wanted; the new
                // filter's first page is.
                Ok(_) if self.gallery.with_untracked(|gallery| *gallery.filter() != filter) => {
                    self.gallery_loading.set(false);
                    self.load_more();
                    return;
                }
                Ok(page) => {
                    self.gallery.update(|gallery| gallery.append_page(page));
                    self.gallery_error.set(None);
                    if let Some(id) = self.view_after_load.try_update(Option::take).flatten()
                        && self.gallery.with_untracked(|gallery| gallery.get(&id).is_some())
                    {
                        self.open_viewer(id);
                    }
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
            let filter = self.gallery.with_untracked(|gallery| gallery.filter().clone());
            if let Ok(page) = client::history_page(&first_page_url(&filter)).await {
                self.gallery.update(|gallery| {
                    if *gallery.filter() == filter {
                        gallery.merge_newest(page);
                    }
                });
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
