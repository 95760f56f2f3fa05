//! The gateway dying and coming back: the real `zimage` binary runs as a child process in front of a
//! ComfyUI simulator that this test runs in-process (so ComfyUI outlives the killed gateway, as it does
//! in the Docker deployment). The gateway is killed with SIGKILL or stopped with SIGTERM and started
//! again on the same data folder; what it promised before must still hold after: every image announced
//! is on disk, every unfinished job ends, every watcher learns the end, and a stop is quick.

#![allow(
    clippy::unwrap_used,
    reason = "a test unwraps: a failure there is the test failing"
)]

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use comfy_sim::{SimHandle, SimOptions, Simulator};
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};
use rustix::process::{Pid, Signal, kill_process};
use zimage_contract::{HistoryPage, JobAccepted, JobStatus, JobView};

use crate::common::poll_within;
use serde_json::{Value, json};

/// Every wait here ends by this deadline. Longer than the API tests' because the binary runs with its
/// real timings (a job whose socket events went to the dead gateway is found by a poll after 10 s of
/// silence) and several gateways build PNGs at once on a shared machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// How long a stop asked for with SIGTERM may take: generous, and far below the minute Docker waits
/// before it kills.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// A simulator on 127.0.0.1:0 with quick steps.
async fn start_sim() -> SimHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let options = SimOptions {
        step_ms: 5,
        ..SimOptions::default()
    };
    Simulator::spawn(listener, options).await.unwrap()
}

fn workspace_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A port nobody listens on right now (the gateway binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One run of the `zimage serve` binary. Dropping it kills the process (and, when a test failed, shows
/// the end of its log).
struct Gateway {
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Gateway {
    /// Starts the binary on a free port against `sim`, keeping its data in `data_dir`, with a clean
    /// environment plus `env`; returns once it answers `/readyz` with 200.
    async fn start(sim: &SimHandle, data_dir: &Path, scratch: &Path, env: &[(&str, &str)]) -> Gateway {
        // The port is free when chosen; another test may take it before the gateway binds it, and
        // then the gateway says so and exits: try another.
        for _ in 0..3 {
            let port = free_port();
            let log = scratch.join(format!("gateway-{port}.log"));
            let output = File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_zimage"))
                .arg("serve")
                .arg(format!("--listen=127.0.0.1:{port}"))
                .arg(format!("--comfyui={}", sim.url()))
                .arg(format!("--data-dir={}", data_dir.display()))
                .arg(format!(
                    "--workflow={}",
                    workspace_file("backend/workflows/z_image_turbo.json").display()
                ))
                .arg(format!("--site-root={}", workspace_file("target/site").display()))
                // The API is what these tests use: the web UI's bundle need not be built.
                .arg("--allow-missing-bundle")
                // The tests submit several jobs at once from one address.
                .arg("--jobs-per-minute=0")
                .env_clear()
                .env("RUST_LOG", "info")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output)
                .spawn()
                .unwrap();
            let mut gateway = Gateway {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
                http: reqwest::Client::new(),
            };
            match gateway.wait_ready().await {
                Ok(()) => return gateway,
                Err(status) if gateway.log_tail().contains("cannot listen") => {
                    eprintln!("port {port} was taken ({status}); trying another");
                }
                Err(status) => panic!("the gateway exited at start ({status})"),
            }
        }
        panic!("no free port found for the gateway")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until `/readyz` answers 200; `Err` when the process exited first.
    async fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        poll_within(PATIENCE, "the gateway to be ready", || {
            let exited = self.child.try_wait().unwrap();
            let readyz = self.http.get(self.url("/readyz"));
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let response = readyz.send().await.ok()?;
                (response.status() == 200).then_some(Ok(()))
            }
        })
        .await
    }

    async fn create_job(&self, body: Value) -> JobAccepted {
        let response = self
            .http
            .post(self.url("/api/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
        response.json().await.unwrap()
    }

    /// The job, or `None` when the gateway does not know it (404).
    async fn job(&self, id: &str) -> Option<JobView> {
        let response = self
            .http
            .get(self.url(&format!("/api/jobs/{id}")))
            .send()
            .await
            .unwrap();
        if response.status() == 404 {
            return None;
        }
        assert_eq!(response.status(), 200);
        Some(response.json().await.unwrap())
    }

    /// Opens the job's event stream, resuming after `last_event_id` like a browser's `EventSource`.
    async fn events(&self, id: &str, last_event_id: Option<&str>) -> Events {
        let mut request = self.http.get(self.url(&format!("/api/jobs/{id}/events")));
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            200,
            "the events of job {id} (resuming after {last_event_id:?}): {}",
            response.text().await.unwrap_or_default()
        );
        Events {
            stream: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    async fn history_ids(&self) -> Vec<String> {
        let page: HistoryPage = self
            .http
            .get(self.url("/api/history?limit=100"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page.items.into_iter().map(|item| item.id).collect()
    }

    /// The stored image: a whole PNG of this size, or the test fails.
    async fn check_image(&self, id: &str, width: u32, height: u32) {
        let response = self
            .http
            .get(self.url(&format!("/api/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the image of job {id}");
        assert_eq!(response.headers()["content-type"], "image/png");
        let bytes = response.bytes().await.unwrap();
        // Decoding reads every chunk to the end, so a cut or torn file fails here.
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .unwrap_or_else(|error| panic!("the image of job {id} is not a whole PNG: {error}"));
        assert_eq!((image.width(), image.height()), (width, height), "job {id}");
    }

    /// SIGKILL, and the process reaped: nothing of the gateway runs after this.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, what `docker stop` sends.
    fn terminate(&self) {
        kill_process(Pid::from_child(&self.child), Signal::TERM).unwrap();
    }

    /// Waits for the process to exit, failing the test if it takes longer than `within`.
    async fn exit_within(&mut self, within: Duration) -> ExitStatus {
        poll_within(within, "the gateway to exit after SIGTERM", || {
            std::future::ready(self.child.try_wait().unwrap())
        })
        .await
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- the end of the gateway's log ({}):\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

/// One server-sent event as it came, whatever its name (`restarting` is not a job event).
#[derive(Debug, Clone)]
struct Sse {
    /// The last event id so far, as a browser keeps it for `Last-Event-ID`.
    id: String,
    name: String,
    data: String,
}

impl Sse {
    fn is_terminal(&self) -> bool {
        matches!(self.name.as_str(), "completed" | "failed" | "cancelled")
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

type SseStream = std::pin::Pin<
    Box<
        dyn Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

/// A job's event stream.
struct Events {
    stream: SseStream,
}

impl Events {
    /// The next event; `None` when the stream ends (closed, or cut by a dying gateway).
    async fn next(&mut self) -> Option<Sse> {
        let event = tokio::time::timeout(PATIENCE, self.stream.next())
            .await
            .expect("no event in time")?;
        let event = event.ok()?;
        Some(Sse {
            id: event.id,
            name: event.event,
            data: event.data,
        })
    }

    /// Reads until an event `wanted` accepts, and returns it.
    async fn until(&mut self, wanted: impl Fn(&Sse) -> bool) -> Sse {
        loop {
            let event = self.next().await.expect("the stream ended first");
            if wanted(&event) {
                return event;
            }
        }
    }

    /// Everything until the stream ends.
    async fn rest(mut self) -> Vec<Sse> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

fn is_progress_step(event: &Sse, step: u64) -> bool {
    event.name == "progress" && event.json()["step"] == step
}

/// Promise 3, durable then announced: the gateway is killed (SIGKILL) the moment each `completed`
/// reaches a watcher, three times over 1024x1024 images; started again on the same data, it has every
/// announced image in the gallery, served whole. (Once `completed` went out before the PNG and its
/// record were written, so a kill right after it could lose them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_announced_just_before_a_kill_is_kept() {
    let sim = start_sim().await;
    let data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut announced = Vec::new();
    for round in 0..3 {
        let mut gateway = Gateway::start(&sim, data.path(), scratch.path(), &[]).await;
        let accepted = gateway
            .create_job(json!({"prompt": format!("kept {round}"), "width": 1024, "height": 1024}))
            .await;
        let mut events = gateway.events(&accepted.id, None).await;
        let end = events.until(Sse::is_terminal).await;
        gateway.kill();
        assert_eq!(end.name, "completed", "{end:?}");
        announced.push(accepted.id);
    }

    let gateway = Gateway::start(&sim, data.path(), scratch.path(), &[]).await;
    let gallery = gateway.history_ids().await;
    for id in &announced {
        assert!(
            gallery.contains(id),
            "announced image {id} is not in the gallery: {gallery:?}"
        );
        gateway.check_image(id, 1024, 1024).await;
        let view = gateway
            .job(id)
            .await
            .expect("an announced job is known after a restart");
        assert_eq!(view.status, JobStatus::Completed);
    }
}

/// How the gateway is brought down.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Kill,
    Terminate,
}

/// Promise 4: a job running in ComfyUI (held mid-sampling) and two waiting in the gateway when it goes
/// down all complete after it is started again, under the same ids, each exactly once in ComfyUI; a
/// watcher resuming with the `Last-Event-ID` it had before learns the job's end.
async fn unfinished_jobs_survive(stop: Stop) {
    let sim = start_sim().await;
    let data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(&sim, data.path(), scratch.path(), &[]).await;
    sim.faults().hold_at_step(Some(3));
    let mut jobs = Vec::new();
    for name in ["running", "waiting 1", "waiting 2"] {
        let accepted = gateway
            .create_job(json!({"prompt": name, "width": 256, "height": 256}))
            .await;
        jobs.push(accepted.id);
    }
    let mut last_seen = Vec::new();
    for (index, id) in jobs.iter().enumerate() {
        let mut events = gateway.events(id, None).await;
        let seen = if index == 0 {
            events.until(|event| is_progress_step(event, 2)).await
        } else {
            events.until(|event| event.name == "queued").await
        };
        last_seen.push(seen.id);
    }

    match stop {
        Stop::Kill => gateway.kill(),
        Stop::Terminate => {
            gateway.terminate();
            let status = gateway.exit_within(STOP_WITHIN).await;
            assert!(
                status.success(),
                "SIGTERM must end the gateway cleanly: {status:?}"
            );
        }
    }
    drop(gateway);

    let gateway = Gateway::start(&sim, data.path(), scratch.path(), &[]).await;
    for id in &jobs {
        let view = gateway.job(id).await;
        let view = view.unwrap_or_else(|| panic!("job {id} is unknown after the {stop:?}"));
        assert!(
            !view.status.is_terminal(),
            "job {id} must still be on its way: {view:?}"
        );
    }
    sim.faults().release();
    for (id, last) in jobs.iter().zip(&last_seen) {
        let resumed = gateway.events(id, Some(last)).await;
        let rest = resumed.rest().await;
        let end = rest
            .last()
            .unwrap_or_else(|| panic!("job {id}: the resumed stream was empty"));
        assert_eq!(end.name, "completed", "job {id} after the {stop:?}: {rest:?}");
        let view = gateway.job(id).await.unwrap();
        assert_eq!(view.status, JobStatus::Completed, "{view:?}");
        gateway.check_image(id, 256, 256).await;
    }
    let received: Vec<String> = sim
        .faults()
        .prompts_received()
        .iter()
        .map(|body| body["prompt_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(received, jobs, "each job reaches ComfyUI once, in order");
    assert_eq!(sim.faults().peak_queue_remaining(), 1);
}

/// Promise 4 after SIGKILL. (Once the gateway kept its jobs only in memory: after the restart they were
/// unknown (404) and their images never reached the gallery.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_jobs_complete_after_a_kill() {
    unfinished_jobs_survive(Stop::Kill).await;
}

/// Promise 4 after SIGTERM (no watcher connected at the time). (Once, as after a kill, the jobs were
/// unknown after the restart.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_jobs_complete_after_sigterm() {
    unfinished_jobs_survive(Stop::Terminate).await;
}

/// Promise 5: SIGTERM while three watchers follow a job held mid-sampling. The gateway exits with status
/// 0 within seconds, and each open stream gets a last event `restarting` (data `{}`) before it closes,
/// so the page knows to reconnect rather than to show an error. (Once the graceful shutdown waited for
/// every open stream to end, and these never ended: the gateway did not exit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_with_restarting_and_exits_promptly() {
    let sim = start_sim().await;
    let data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut gateway = Gateway::start(&sim, data.path(), scratch.path(), &[]).await;
    sim.faults().hold_at_step(Some(3));
    let accepted = gateway
        .create_job(json!({"prompt": "watched", "width": 256, "height": 256}))
        .await;
    let mut watchers = Vec::new();
    for _ in 0..3 {
        let mut events = gateway.events(&accepted.id, None).await;
        events.until(|event| is_progress_step(event, 2)).await;
        watchers.push(tokio::spawn(events.rest()));
    }

    gateway.terminate();
    let status = gateway.exit_within(STOP_WITHIN).await;
    assert!(status.success(), "{status:?}");
    for watcher in watchers {
        let rest = tokio::time::timeout(PATIENCE, watcher).await.unwrap().unwrap();
        let last = rest.last().unwrap_or_else(|| panic!("nothing after SIGTERM"));
        assert_eq!(last.name, "restarting", "the last event: {rest:?}");
        assert_eq!(last.json(), json!({}));
        assert!(rest.iter().all(|event| !event.is_terminal()), "{rest:?}");
    }
    sim.faults().release();
}

/// Promise 6 through the binary's environment: `ZIMAGE_JOB_DEADLINE` seconds of silence from ComfyUI
/// fail the job with `timed_out`. (Once the variable meant nothing and the held job never ended.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_deadline_comes_from_the_environment() {
    let sim = start_sim().await;
    let data = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let gateway = Gateway::start(&sim, data.path(), scratch.path(), &[("ZIMAGE_JOB_DEADLINE", "2")]).await;
    sim.faults().hold_at_step(Some(3));
    let accepted = gateway
        .create_job(json!({"prompt": "silent", "width": 256, "height": 256}))
        .await;
    let events = gateway.events(&accepted.id, None).await;
    let rest = events.rest().await;
    sim.faults().release();
    let end = rest.last().expect("the stream ended without events");
    assert_eq!(end.name, "failed", "{rest:?}");
    assert_eq!(end.json()["code"], "timed_out", "{end:?}");
}
