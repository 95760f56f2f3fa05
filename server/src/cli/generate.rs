//! `zimage generate`: makes images with a running studio from the command line. It speaks the studio's
//! own HTTP API as the page does: submits one job per image (`POST /api/jobs`), follows each job's
//! events (`GET /api/jobs/{id}/events`, resuming after a dropped connection or a studio restart),
//! downloads the PNG and writes it. Progress goes to standard error (a bar on a terminal, plain lines
//! otherwise), the written file names (or, with `--json`, the job records) to standard output.
//! Ctrl+C cancels the unfinished jobs on the studio before exiting; any refusal exits non-zero with
//! the studio's sentence and the field it names. With `--from` (and `--mask`) the files go first to
//! `POST /api/pictures`, and the jobs name them as their `source`.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use zimage_contract::{
    CreateJobRequest, ErrorBody, JobAccepted, JobEvent, JobView, MAX_SEED, PictureKind, PictureUploaded,
    STEPS, SourceRequest, paths, pictures,
};

use crate::config::GenerateConfig;
use crate::i18n::Generate;
use crate::images::png_size;

/// The exit status after Ctrl+C: 128 + SIGINT, as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// How long one request may take to answer (event streams then run as long as their job).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep trying to reach the studio again when a job's event stream broke off (a restart
/// of the studio takes seconds).
const RECONNECT_PATIENCE: Duration = Duration::from_secs(120);
/// How long cancelling the jobs may take after Ctrl+C before the command exits anyway.
const CANCEL_PATIENCE: Duration = Duration::from_secs(10);
/// Longest file-name stem taken from the prompt, in characters.
const NAME_CHARS: usize = 48;

/// What can go wrong, each a sentence for the person at the terminal, in the terminal's language.
#[derive(Debug)]
pub enum GenerateError {
    /// The studio cannot be reached at all.
    Unreachable { server: String, source: reqwest::Error },
    /// The studio answered with its error body: its sentence, the field it names, and a hint.
    Refused {
        doing: &'static str,
        status: u16,
        code: String,
        message: String,
        field: Option<String>,
        hint: &'static str,
    },
    /// The studio (or something in front of it) answered with something else than the API's shapes.
    Unexpected {
        doing: &'static str,
        status: u16,
        text: String,
    },
    /// The job ran and failed at the studio.
    JobFailed {
        id: String,
        code: String,
        message: String,
    },
    /// Someone cancelled the job (from the page, or another command).
    JobCancelled { id: String },
    /// The event stream broke off and the studio did not come back in time.
    Lost { id: String, reason: String },
    /// The downloaded image is not a whole PNG.
    NotAnImage { id: String, reason: String },
    /// `--server` names something else than a web address.
    BadServer(String),
    /// Writing the file failed.
    Write { path: PathBuf, source: std::io::Error },
    /// Reading the picture or mask to start from failed.
    Read { path: PathBuf, source: std::io::Error },
}

impl std::fmt::Display for GenerateError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let say = say();
        let text = match self {
            GenerateError::Unreachable { server, source } => (say.unreachable)(server, &source.to_string()),
            GenerateError::Refused {
                doing,
                message,
                field,
                hint,
                ..
            } => {
                let note = field.as_deref().map(say.field_note).unwrap_or_default();
                (say.refused)(doing, &format!("{message}{note}{hint}"))
            }
            GenerateError::Unexpected { doing, status, text } => (say.unexpected)(doing, *status, text),
            GenerateError::JobFailed { id, code, message } => (say.job_failed)(id, message, code),
            GenerateError::JobCancelled { id } => (say.job_cancelled)(id),
            GenerateError::Lost { id, reason } => (say.lost)(id, reason),
            GenerateError::NotAnImage { id, reason } => (say.not_an_image)(id, reason),
            GenerateError::BadServer(server) => (say.bad_server)(server),
            GenerateError::Write { path, source } => {
                (say.cannot_write)(&path.display().to_string(), &source.to_string())
            }
            GenerateError::Read { path, source } => {
                (say.cannot_read)(&path.display().to_string(), &source.to_string())
            }
        };
        formatter.write_str(&text)
    }
}

impl std::error::Error for GenerateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GenerateError::Unreachable { source, .. } => Some(source),
            GenerateError::Write { source, .. } | GenerateError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The words of this command in the terminal's language (`LC_ALL`, `LC_MESSAGES`, `LANG`), chosen once.
fn say() -> &'static Generate {
    static SAY: std::sync::LazyLock<&'static Generate> =
        std::sync::LazyLock::new(|| Generate::of(crate::config::terminal_language()));
    *SAY
}

/// Runs `zimage generate`; returns the process's exit status (0, 1 on any failure, 130 after Ctrl+C),
/// having said on standard error what happened.
pub async fn run(config: GenerateConfig) -> u8 {
    let studio = match Studio::new(&config) {
        Ok(studio) => studio,
        Err(error) => {
            eprintln!("zimage generate: {error}");
            return 1;
        }
    };
    let unfinished = Mutex::new(Vec::new());
    let outcome = tokio::select! {
        outcome = generate(&studio, &config, &unfinished) => outcome,
        // Only a signal that arrived: a handler that could not be installed disables this branch.
        Ok(()) = tokio::signal::ctrl_c() => {
            eprintln!("\nzimage generate: {}", say().interrupted);
            let ids = take_unfinished(&unfinished);
            let cancelled = cancel_all(&studio, &ids);
            // A second Ctrl+C leaves at once.
            tokio::select! {
                () = cancelled => {}
                Ok(()) = tokio::signal::ctrl_c() => {}
            }
            return EXIT_INTERRUPTED;
        }
    };
    match outcome {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("zimage generate: {error}");
            let ids = take_unfinished(&unfinished);
            if !ids.is_empty() {
                eprintln!("zimage generate: {}", say().cancelling_others);
                cancel_all(&studio, &ids).await;
            }
            1
        }
    }
}

/// What `--json` prints for each image: the studio's job record and the file it went to.
#[derive(Debug, Serialize)]
struct Printed {
    #[serde(flatten)]
    job: JobView,
    file: PathBuf,
}

/// Submits every job, then follows each to its image and writes it.
async fn generate(
    studio: &Studio,
    config: &GenerateConfig,
    unfinished: &Mutex<Vec<String>>,
) -> Result<(), GenerateError> {
    let output = Output::from_option(config.output.as_deref(), config.count);
    let mut request = CreateJobRequest {
        prompt: config.prompt.clone(),
        seed: config.seed,
        aspect_ratio: config.aspect,
        loras: config.loras.clone(),
        style: config.style.clone(),
        ..CreateJobRequest::default()
    };
    if let Some((width, height)) = config.size {
        (request.width, request.height) = (Some(width), Some(height));
    }
    if let Some(from) = &config.from {
        // The studio checks and cleans both files; this command only sends them.
        let picture = studio.upload(from, PictureKind::Picture).await?;
        let mask = match &config.mask {
            Some(mask) => Some(studio.upload(mask, PictureKind::Mask).await?.id),
            None => None,
        };
        request.source = Some(SourceRequest {
            picture: picture.id,
            strength: config.strength,
            mask,
        });
    }
    // Every job is submitted first, so the studio can line them up (or share them out among its
    // backends) while the first one runs.
    let mut accepted: Vec<JobAccepted> = Vec::new();
    for index in 0..config.count {
        if let Some(first) = accepted.first() {
            request.seed = Some(consecutive_seed(first.seed, index));
        }
        let job = studio.submit(&request).await?;
        lock(unfinished).push(job.id.clone());
        accepted.push(job);
    }
    let terminal = std::io::stderr().is_terminal();
    let mut printed = Vec::new();
    for (index, job) in accepted.iter().enumerate() {
        let label = if config.count > 1 {
            (say().seed_label_of)(index + 1, config.count, job.seed)
        } else {
            (say().seed_label)(job.seed)
        };
        let progress = Progress::new(terminal, label, &job.id);
        let finished = studio.follow(job, &progress).await;
        lock(unfinished).retain(|id| *id != job.id);
        let image_url = match finished {
            Ok(image_url) => image_url,
            Err(error) => {
                progress.abandon();
                return Err(error);
            }
        };
        progress.stage(say().downloading);
        let png = studio.image(&job.id, &image_url).await?;
        let file = output.write(&config.prompt, job.seed, &png).await?;
        progress.done(&file);
        if config.json {
            printed.push(Printed {
                job: studio.job(&job.id).await?,
                file,
            });
        } else {
            println!("{}", file.display());
        }
    }
    if config.json {
        let text = serde_json::to_string_pretty(&printed).unwrap_or_else(|_| "[]".to_owned());
        println!("{text}");
    }
    Ok(())
}

/// The seed of the `index`th image after one with seed `first`; past the largest seed it starts again
/// at 0.
fn consecutive_seed(first: u64, index: u32) -> u64 {
    first.wrapping_add(u64::from(index)) % (MAX_SEED + 1)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn take_unfinished(unfinished: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *lock(unfinished))
}

/// Cancels each job, saying which could not be (one that ended meanwhile needs nothing).
async fn cancel_all(studio: &Studio, ids: &[String]) {
    let cancels = futures_util::future::join_all(ids.iter().map(|id| studio.cancel(id)));
    match tokio::time::timeout(CANCEL_PATIENCE, cancels).await {
        Ok(results) => {
            for (id, result) in ids.iter().zip(results) {
                match result {
                    Ok(()) => eprintln!("zimage generate: {}", (say().cancelled_note)(id)),
                    Err(error) => eprintln!(
                        "zimage generate: {}",
                        (say().cannot_cancel)(id, &error.to_string())
                    ),
                }
            }
        }
        Err(_) => eprintln!("zimage generate: {}", say().cancel_timed_out),
    }
}

/// A running studio, spoken to over its API.
struct Studio {
    http: reqwest::Client,
    /// The address as given, without a trailing slash; the API's paths are appended to it (so a studio
    /// behind a proxy under a path prefix works too).
    base: String,
    secret: Option<String>,
}

impl Studio {
    fn new(config: &GenerateConfig) -> Result<Studio, GenerateError> {
        if !matches!(config.server.scheme(), "http" | "https") {
            return Err(GenerateError::BadServer(config.server.to_string()));
        }
        let http = reqwest::Client::builder()
            // The studio hands out an anonymous identity with the first job; keeping it makes the jobs
            // this command starts its own, so it may cancel them without the secret.
            .cookie_store(true)
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("zimage-generate/", env!("CARGO_PKG_VERSION")))
            // The studio's own sentences (refusals, failures) in the terminal's language too.
            .default_headers(reqwest::header::HeaderMap::from_iter([(
                reqwest::header::ACCEPT_LANGUAGE,
                reqwest::header::HeaderValue::from_static(crate::config::terminal_language().tag()),
            )]))
            .build()
            .map_err(|source| GenerateError::Unreachable {
                server: config.server.to_string(),
                source,
            })?;
        Ok(Studio {
            http,
            base: config.server.as_str().trim_end_matches('/').to_owned(),
            secret: config
                .password
                .as_ref()
                .filter(|secret| !secret.is_empty())
                .map(|secret| secret.expose().to_owned()),
        })
    }

    /// A request to `path` (absolute, e.g. `/api/jobs`), with the secret when there is one.
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.secret {
            Some(secret) => request.bearer_auth(secret),
            None => request,
        }
    }

    /// Sends a request whose answer has a deadline; anything but a 2xx becomes the studio's refusal.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        doing: &'static str,
    ) -> Result<reqwest::Response, GenerateError> {
        let response = request
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|source| self.unreachable(source))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.refusal(response, doing).await)
        }
    }

    fn unreachable(&self, source: reqwest::Error) -> GenerateError {
        GenerateError::Unreachable {
            server: self.base.clone(),
            source,
        }
    }

    /// The studio's error body as a refusal, with a hint for the refusals a person can fix here.
    async fn refusal(&self, response: reqwest::Response, doing: &'static str) -> GenerateError {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let Ok(ErrorBody { error }) = serde_json::from_str::<ErrorBody>(&text) else {
            return GenerateError::Unexpected {
                doing,
                status: status.as_u16(),
                text: text.chars().take(200).collect(),
            };
        };
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.secret.is_none() => say().hint_no_secret,
            StatusCode::UNAUTHORIZED => say().hint_wrong_secret,
            StatusCode::FORBIDDEN if error.code == "address_not_allowed" => say().hint_address,
            _ => "",
        };
        GenerateError::Refused {
            doing,
            status: status.as_u16(),
            code: error.code,
            message: error.message,
            field: error.field,
            hint,
        }
    }

    /// Sends a file's bytes to `POST /api/pictures` (as a picture or a mask); the studio answers its id.
    async fn upload(&self, path: &Path, kind: PictureKind) -> Result<PictureUploaded, GenerateError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| GenerateError::Read {
                path: path.to_owned(),
                source,
            })?;
        let (doing, route) = match kind {
            PictureKind::Picture => (say().doing_upload_picture, pictures::paths::PICTURES.to_owned()),
            PictureKind::Mask => (
                say().doing_upload_mask,
                format!("{}?kind=mask", pictures::paths::PICTURES),
            ),
        };
        let request = self
            .request(Method::POST, &route)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        let response = self.send(request, doing).await?;
        self.read_json(response, doing).await
    }

    async fn submit(&self, request: &CreateJobRequest) -> Result<JobAccepted, GenerateError> {
        let doing = say().doing_start;
        let response = self
            .send(self.request(Method::POST, paths::JOBS).json(request), doing)
            .await?;
        self.read_json(response, doing).await
    }

    async fn job(&self, id: &str) -> Result<JobView, GenerateError> {
        let doing = say().doing_show;
        let response = self
            .send(self.request(Method::GET, &paths::job(id)), doing)
            .await?;
        self.read_json(response, doing).await
    }

    async fn cancel(&self, id: &str) -> Result<(), GenerateError> {
        match self
            .send(self.request(Method::DELETE, &paths::job(id)), say().doing_cancel)
            .await
        {
            // 409: it ended meanwhile, so there is nothing left to cancel.
            Ok(_) | Err(GenerateError::Refused { status: 409, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The finished image, checked to be a whole PNG.
    async fn image(&self, id: &str, image_url: &str) -> Result<Bytes, GenerateError> {
        // The event names the image by the studio's own path; anything else is not followed.
        let path = if image_url.starts_with('/') {
            image_url.to_owned()
        } else {
            paths::image(id)
        };
        let doing = say().doing_image;
        let response = self.send(self.request(Method::GET, &path), doing).await?;
        let png = response
            .bytes()
            .await
            .map_err(|source| self.unreachable(source))?;
        png_size(&png).map_err(|error| GenerateError::NotAnImage {
            id: id.to_owned(),
            reason: error.to_string(),
        })?;
        Ok(png)
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        doing: &'static str,
    ) -> Result<T, GenerateError> {
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| self.unreachable(source))?;
        serde_json::from_str(&text).map_err(|_| GenerateError::Unexpected {
            doing,
            status,
            text: text.chars().take(200).collect(),
        })
    }

    /// Follows the job's events to its end; returns the image's path once it is completed. A stream
    /// that breaks off (or a studio that restarts) is opened again after the last event seen.
    async fn follow(&self, job: &JobAccepted, progress: &Progress) -> Result<String, GenerateError> {
        let mut last_event_id: Option<String> = None;
        let mut lost_since: Option<tokio::time::Instant> = None;
        loop {
            let reason = match self.open_events(&job.id, last_event_id.as_deref()).await {
                Ok(response) => {
                    lost_since = None;
                    let mut events = response.bytes_stream().eventsource();
                    let mut reason = say().stream_ended.to_owned();
                    while let Some(event) = events.next().await {
                        let event = match event {
                            Ok(event) => event,
                            Err(error) => {
                                reason = error.to_string();
                                break;
                            }
                        };
                        if !event.id.is_empty() {
                            last_event_id = Some(event.id.clone());
                        }
                        if event.event == "restarting" {
                            progress.stage(say().studio_restarting);
                            reason = say().studio_restarted.to_owned();
                            break;
                        }
                        // An event this version does not know (a newer studio) is passed over.
                        let Ok(event) = JobEvent::from_sse(&event.event, &event.data) else {
                            continue;
                        };
                        if let Some(end) = progress.show(&job.id, event) {
                            return end;
                        }
                    }
                    reason
                }
                // The job is gone or the studio refuses: following it again would not help.
                Err(error @ (GenerateError::Refused { .. } | GenerateError::Unexpected { .. })) => {
                    return Err(error);
                }
                Err(error) => error.to_string(),
            };
            let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > RECONNECT_PATIENCE {
                return Err(GenerateError::Lost {
                    id: job.id.clone(),
                    reason,
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn open_events(
        &self,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, GenerateError> {
        let mut request = self.request(Method::GET, &paths::job_events(id));
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        // No overall deadline: the stream lasts as long as the job (the studio sends keep-alives).
        let response = request.send().await.map_err(|source| self.unreachable(source))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.refusal(response, say().doing_follow).await)
        }
    }
}

/// How a job's progress is shown on standard error: a bar on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<ProgressBar>,
    label: String,
}

impl Progress {
    fn new(terminal: bool, label: String, id: &str) -> Progress {
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(u64::from(STEPS)), ProgressDrawTarget::stderr());
            // The message last and as wide as the terminal leaves room for: one line, never wrapped.
            let style = ProgressStyle::with_template(say().bar_template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar.set_message(say().submitted);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        let progress = Progress { bar, label };
        progress.line(&(say().job_submitted)(id));
        progress
    }

    /// A plain line (only when there is no bar).
    fn line(&self, text: &str) {
        if self.bar.is_none() {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{}: {text}", self.label);
        }
    }

    fn stage(&self, stage: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(stage.to_owned()),
            None => self.line(stage),
        }
    }

    /// Shows one event; returns the job's end once it has one (the image's path, or why there is none).
    fn show(&self, id: &str, event: JobEvent) -> Option<Result<String, GenerateError>> {
        match event {
            JobEvent::Queued { position } => self.stage(&(say().queued)(position)),
            // The job was sent again after its backend was lost: back in line, from step 0.
            JobEvent::Retrying { reason, attempt } => {
                if let Some(bar) = &self.bar {
                    bar.set_position(0);
                    bar.reset_eta();
                }
                self.stage(&(say().retrying)(attempt, &reason));
            }
            JobEvent::Running {} => {
                if let Some(bar) = &self.bar {
                    bar.reset_eta();
                }
                self.stage(say().running);
            }
            JobEvent::Progress { step, total } => match &self.bar {
                Some(bar) => {
                    bar.set_length(u64::from(total));
                    bar.set_position(u64::from(step));
                    bar.set_message(if step >= total {
                        say().decoding
                    } else {
                        say().sampling
                    });
                }
                None => self.line(&(say().step)(step, total)),
            },
            JobEvent::Preview { .. } => {}
            JobEvent::Completed { image_url, .. } => return Some(Ok(image_url)),
            JobEvent::Failed { code, message } => {
                return Some(Err(GenerateError::JobFailed {
                    id: id.to_owned(),
                    code,
                    message,
                }));
            }
            JobEvent::Cancelled {} => return Some(Err(GenerateError::JobCancelled { id: id.to_owned() })),
        }
        None
    }

    fn done(&self, file: &Path) {
        match &self.bar {
            Some(bar) => bar.finish_with_message((say().saved)(&file.display().to_string())),
            None => self.line(&(say().saved)(&file.display().to_string())),
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

/// Where the images go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    /// Each image under a name made from its prompt and seed, never over an existing file.
    Folder(PathBuf),
    /// This file (with several images: the seed added to its name).
    File { path: PathBuf, several: bool },
}

impl Output {
    /// `-o`: an existing folder, or a name ending in `/`, is a folder; anything else a file. Without
    /// it, the current folder.
    fn from_option(option: Option<&Path>, count: u32) -> Output {
        match option {
            None => Output::Folder(PathBuf::from(".")),
            Some(path) if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') => {
                Output::Folder(path.to_owned())
            }
            Some(path) => Output::File {
                path: path.to_owned(),
                several: count > 1,
            },
        }
    }

    /// Writes `png` whole (a temporary file renamed into place, so a cut-off run never leaves half an
    /// image under the final name) and returns its path.
    async fn write(&self, prompt: &str, seed: u64, png: &Bytes) -> Result<PathBuf, GenerateError> {
        let output = self.clone();
        let (prompt, png) = (prompt.to_owned(), png.clone());
        tokio::task::spawn_blocking(move || output.write_blocking(&prompt, seed, &png))
            .await
            .map_err(|error| GenerateError::Write {
                path: PathBuf::from("."),
                source: std::io::Error::other(error.to_string()),
            })?
    }

    fn write_blocking(&self, prompt: &str, seed: u64, png: &[u8]) -> Result<PathBuf, GenerateError> {
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| GenerateError::Write { path, source }
        };
        match self {
            Output::Folder(dir) => {
                std::fs::create_dir_all(dir).map_err(write_error(dir))?;
                let stem = file_stem(prompt, seed);
                let mut file = staged(dir, png).map_err(write_error(dir))?;
                for attempt in 1..=100 {
                    let name = if attempt == 1 {
                        format!("{stem}.png")
                    } else {
                        format!("{stem}-{attempt}.png")
                    };
                    // In the current folder, the bare name.
                    let path = if dir == Path::new(".") {
                        PathBuf::from(name)
                    } else {
                        dir.join(name)
                    };
                    match file.persist_noclobber(&path) {
                        Ok(_) => return Ok(path),
                        Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => {
                            file = error.file;
                        }
                        Err(error) => return Err(write_error(&path)(error.error)),
                    }
                }
                Err(write_error(dir)(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{stem}.png and 99 numbered copies already exist"),
                )))
            }
            Output::File { path, several } => {
                let path = if *several {
                    with_seed(path, seed)
                } else {
                    path.clone()
                };
                let dir = match path.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                    _ => PathBuf::from("."),
                };
                let file = staged(&dir, png).map_err(write_error(&path))?;
                file.persist(&path)
                    .map_err(|error| write_error(&path)(error.error))?;
                Ok(path)
            }
        }
    }
}

/// `png` in a temporary file of `dir`, flushed.
fn staged(dir: &Path, png: &[u8]) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".zimage-").suffix(".png.tmp");
    // An image is an ordinary file (readable as the umask allows), not a private temporary (0600).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut file = builder.tempfile_in(dir)?;
    file.write_all(png)?;
    file.as_file().sync_all()?;
    Ok(file)
}

/// `fox.png` with seed 7 becomes `fox-7.png`.
fn with_seed(path: &Path, seed: u64) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".to_owned());
    let extension = path
        .extension()
        .map(|extension| extension.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".to_owned());
    path.with_file_name(format!("{stem}-{seed}.{extension}"))
}

/// A safe file-name stem from the prompt and the seed: letters and digits (any script) in lower case,
/// everything else one `-`, at most [`NAME_CHARS`] of them, then the seed. No separators, dots or
/// control characters survive, so the name stays inside its folder.
fn file_stem(prompt: &str, seed: u64) -> String {
    let mut slug = String::new();
    for character in prompt.chars() {
        if character.is_alphanumeric() {
            slug.extend(character.to_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.chars().count() >= NAME_CHARS {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() { "image" } else { slug };
    format!("{slug}-{seed}")
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test unwraps: a failure there is the test failing"
    )]

    use super::*;

    #[test]
    fn file_names_come_from_the_prompt_and_the_seed_and_stay_in_their_folder() {
        assert_eq!(file_stem("A red fox in snow", 42), "a-red-fox-in-snow-42");
        assert_eq!(file_stem("  ../../etc/passwd  ", 1), "etc-passwd-1");
        assert_eq!(file_stem("雪地里的红狐狸, 电影感", 7), "雪地里的红狐狸-电影感-7");
        assert_eq!(file_stem("!!!", 3), "image-3");
        assert_eq!(file_stem("\u{0}\n\t/\\:*?\"<>|", 3), "image-3");
        let long = file_stem(&"fox ".repeat(100), 9);
        assert!(long.chars().count() <= NAME_CHARS + 2, "{long}");
        assert!(long.ends_with("fox-9"), "{long}");
        for prompt in ["a/b", "..", "c:\\x", "x\u{202e}y"] {
            let stem = file_stem(prompt, 5);
            assert!(
                stem.chars()
                    .all(|character| character.is_alphanumeric() || character == '-'),
                "{stem}"
            );
        }
    }

    #[test]
    fn several_images_into_one_file_name_get_their_seeds() {
        assert_eq!(
            with_seed(Path::new("out/fox.png"), 7),
            PathBuf::from("out/fox-7.png")
        );
        assert_eq!(with_seed(Path::new("fox"), 7), PathBuf::from("fox-7.png"));
    }

    #[test]
    fn seeds_follow_each_other_and_wrap_past_the_largest() {
        assert_eq!(consecutive_seed(41, 1), 42);
        assert_eq!(consecutive_seed(MAX_SEED, 0), MAX_SEED);
        assert_eq!(consecutive_seed(MAX_SEED, 1), 0);
    }

    #[test]
    fn the_output_option_names_a_folder_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Output::from_option(None, 1), Output::Folder(PathBuf::from(".")));
        assert_eq!(
            Output::from_option(Some(dir.path()), 2),
            Output::Folder(dir.path().to_owned())
        );
        assert_eq!(
            Output::from_option(Some(Path::new("new-folder/")), 1),
            Output::Folder(PathBuf::from("new-folder/"))
        );
        assert_eq!(
            Output::from_option(Some(Path::new("fox.png")), 2),
            Output::File {
                path: PathBuf::from("fox.png"),
                several: true
            }
        );
    }

    #[test]
    fn a_folder_never_loses_an_earlier_image() {
        let dir = tempfile::tempdir().unwrap();
        let output = Output::Folder(dir.path().to_owned());
        let first = output.write_blocking("fox", 1, b"first").unwrap();
        let second = output.write_blocking("fox", 1, b"second").unwrap();
        assert_eq!(first, dir.path().join("fox-1.png"));
        assert_eq!(second, dir.path().join("fox-1-2.png"));
        assert_eq!(std::fs::read(&first).unwrap(), b"first");
        assert_eq!(std::fs::read(&second).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporaries left behind");
    }

    #[test]
    fn refusals_read_as_the_studios_sentence_with_the_field() {
        let refused = GenerateError::Refused {
            doing: "start the job",
            status: 422,
            code: "prompt_too_long".to_owned(),
            message: "The prompt is longer than 2000 characters.".to_owned(),
            field: Some("prompt".to_owned()),
            hint: "",
        };
        assert_eq!(
            refused.to_string(),
            "the studio refused to start the job: The prompt is longer than 2000 characters. (field `prompt`)"
        );
    }
}
