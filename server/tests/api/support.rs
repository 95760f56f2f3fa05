//! `spawn_app()`: a simulator and the real gateway, both on 127.0.0.1:0, and a [`TestApp`] with typed
//! helpers that speak HTTP and SSE to the gateway like the browser does.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser as _;
use comfy_sim::{SimHandle, SimOptions, Simulator};
use eventsource_stream::Eventsource as _;
use futures_util::{Stream, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zimage::config::{Cli, Command};
use zimage_contract::{JobAccepted, JobEvent, JobView, Readiness};

pub(crate) use crate::common::poll_within;

/// Every wait in these tests ends by this deadline: generous, because CI machines are shared and slow,
/// and never part of what a test asserts.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// [`poll_within`] the tests' [`PATIENCE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_within(PATIENCE, what, check).await
}

/// A running gateway in front of a running simulator.
pub(crate) struct TestApp {
    pub(crate) address: String,
    pub(crate) sim: SimHandle,
    pub(crate) http: reqwest::Client,
    pub(crate) data_dir: Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Knobs for the simulator the app starts with.
pub(crate) fn quick_sim() -> SimOptions {
    SimOptions {
        step_ms: 5,
        ..SimOptions::default()
    }
}

/// The gateway against a fresh simulator with quick steps.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(quick_sim()).await
}

/// The gateway against a fresh simulator with these options.
pub(crate) async fn spawn_app_with(options: SimOptions) -> TestApp {
    let sim = Simulator::spawn(TcpListener::bind("127.0.0.1:0").await.unwrap(), options)
        .await
        .unwrap();
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    start_gateway(sim, data_dir).await
}

/// Starts a gateway against `sim`, keeping its data in `data_dir`.
pub(crate) async fn start_gateway(sim: SimHandle, data_dir: Arc<tempfile::TempDir>) -> TestApp {
    start_gateway_with_args(sim, data_dir, &[]).await
}

/// The gateway against a fresh quick simulator, with extra command-line options (the access tests).
pub(crate) async fn spawn_app_with_args(extra: &[&str]) -> TestApp {
    let sim = Simulator::spawn(TcpListener::bind("127.0.0.1:0").await.unwrap(), quick_sim())
        .await
        .unwrap();
    start_gateway_with_args(sim, Arc::new(tempfile::tempdir().unwrap()), extra).await
}

/// [`start_gateway`] with extra command-line options, which win over the ones set here.
pub(crate) async fn start_gateway_with_args(
    sim: SimHandle,
    data_dir: Arc<tempfile::TempDir>,
    extra: &[&str],
) -> TestApp {
    zimage::telemetry::init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    // Parsed like the command line, so every option not named here has its real default.
    let workflow = workspace_file("backend/workflows/z_image_turbo.json");
    let site_root = workspace_file("target/site");
    let arguments = [
        "zimage".to_owned(),
        "serve".to_owned(),
        format!("--listen={}", listener.local_addr().unwrap()),
        format!("--comfyui={}", sim.url()),
        format!("--data-dir={}", data_dir.path().display()),
        format!("--workflow={}", workflow.display()),
        format!("--site-root={}", site_root.display()),
        // Tests submit many jobs from one address; the limits have their own tests.
        "--jobs-per-minute=0".to_owned(),
    ];
    // An option given in `extra` replaces the one above (clap refuses an option given twice).
    let name = |argument: &str| argument.split('=').next().unwrap_or_default().to_owned();
    let overridden = |argument: &String| extra.iter().any(|given| name(given) == name(argument));
    let arguments = arguments
        .into_iter()
        .filter(|argument| !overridden(argument))
        .chain(extra.iter().map(|argument| (*argument).to_owned()));
    let Command::Serve(config) = Cli::try_parse_from(arguments).unwrap().command else {
        unreachable!()
    };
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(zimage::serve_tuned(
        config,
        quick_tuning(),
        listener,
        async move {
            let _ = stop.await;
        },
    ));
    let app = TestApp {
        address,
        sim,
        // Keeps cookies like a browser, so the jobs it starts are its own (it may cancel them).
        http: reqwest::Client::builder().cookie_store(true).build().unwrap(),
        data_dir,
        shutdown: Some(shutdown),
        server: Some(server),
    };
    // With a secret, `/readyz` wants it too.
    let secret = extra
        .iter()
        .find_map(|argument| argument.strip_prefix("--password="));
    app.wait_probed(secret).await;
    app
}

/// A second browser beside the app's own client: its own cookies, and the mark a browser puts on the
/// studio page's requests (`Sec-Fetch-Site: same-origin`), so the studio gives it an identity of its
/// own instead of knowing it by its address (which every client of a test shares).
pub(crate) fn another_browser() -> reqwest::Client {
    let mut marks = reqwest::header::HeaderMap::new();
    marks.insert(
        "sec-fetch-site",
        reqwest::header::HeaderValue::from_static("same-origin"),
    );
    reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(marks)
        .build()
        .unwrap()
}

/// Background timings short enough that recovery happens within a test's patience.
pub(crate) fn quick_tuning() -> zimage::Tuning {
    let mut tuning = zimage::Tuning::default();
    tuning.jobs.watchdog_interval = Duration::from_millis(100);
    tuning.jobs.silence = Duration::from_millis(600);
    tuning.probe.while_waiting = Duration::from_millis(100);
    tuning.probe.lora_refresh = Duration::from_millis(100);
    tuning.socket.ping_every = Duration::from_millis(200);
    tuning.socket.silence_limit = Duration::from_millis(1000);
    tuning.comfy.download = Duration::from_secs(2);
    tuning.socket.backoff.max = Duration::from_millis(400);
    tuning
}

pub(crate) fn workspace_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The answer to a request: status and JSON body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Stops the gateway (the simulator keeps running) and starts a new one on the same data.
    pub(crate) async fn restart_gateway(mut self) -> TestApp {
        self.stop().await;
        start_gateway(self.sim.clone(), Arc::clone(&self.data_dir)).await
    }

    pub(crate) async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(PATIENCE, server)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Ends the gateway as a crash would: its task is dropped where it stands, nothing is closed
    /// cleanly (the simulator keeps running).
    pub(crate) async fn crash(&mut self) {
        self.shutdown.take();
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let response = self.http.post(self.url(path)).json(body).send().await.unwrap();
        answer("post", response).await
    }

    pub(crate) async fn patch_json(&self, path: &str, body: &Value) -> Answer {
        let response = self.http.patch(self.url(path)).json(body).send().await.unwrap();
        answer("patch", response).await
    }

    pub(crate) async fn put_json(&self, path: &str, body: &Value) -> Answer {
        let response = self.http.put(self.url(path)).json(body).send().await.unwrap();
        answer("put", response).await
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        answer("get", self.http.get(self.url(path)).send().await.unwrap()).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Answer {
        answer("delete", self.http.delete(self.url(path)).send().await.unwrap()).await
    }

    /// Submits a job and expects it accepted.
    pub(crate) async fn create_job(&self, body: Value) -> JobAccepted {
        let answer = self.post_json("/api/jobs", &body).await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        serde_json::from_value(answer.body).unwrap()
    }

    pub(crate) async fn job(&self, id: &str) -> JobView {
        let answer = self.get(&format!("/api/jobs/{id}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        serde_json::from_value(answer.body).unwrap()
    }

    /// Opens the job's event stream, optionally resuming after an event id.
    pub(crate) async fn events(&self, id: &str, last_event_id: Option<&str>) -> EventReader {
        let mut request = self.http.get(self.url(&format!("/api/jobs/{id}/events")));
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventReader {
            stream: Box::pin(response.bytes_stream().eventsource()),
        }
    }

    /// Submits a 256x256 job (quick to make) and reads its events to the end.
    pub(crate) async fn run_small_job(&self, prompt: &str) -> (JobAccepted, Vec<(u64, JobEvent)>) {
        let accepted = self
            .create_job(json!({"prompt": prompt, "width": 256, "height": 256}))
            .await;
        let events = self.events_until_end(&accepted.id).await;
        (accepted, events)
    }

    /// Holds the simulator before sampling step `hold`, submits a 256x256 job and reads its events up
    /// to step `seen`: a job caught mid-sampling for as long as the test likes (`release` lets it go on).
    pub(crate) async fn start_held_job(
        &self,
        prompt: &str,
        hold: u32,
        seen: u32,
    ) -> (JobAccepted, EventReader) {
        self.sim.faults().hold_at_step(Some(hold));
        let accepted = self
            .create_job(json!({"prompt": prompt, "width": 256, "height": 256}))
            .await;
        let mut events = self.events(&accepted.id, None).await;
        events
            .until(|event| matches!(event, JobEvent::Progress { step, .. } if *step == seen))
            .await;
        (accepted, events)
    }

    /// Every event of a job until its terminal one.
    pub(crate) async fn events_until_end(&self, id: &str) -> Vec<(u64, JobEvent)> {
        self.events(id, None).await.until_end().await
    }

    /// Waits until the gateway has looked at ComfyUI once (jobs are accepted only while it is ready),
    /// whatever it found: tests of a ComfyUI that is not ready start from there too.
    async fn wait_probed(&self, secret: Option<&str>) {
        eventually("the gateway's first look at ComfyUI", || async {
            let mut request = self.http.get(self.url("/readyz"));
            if let Some(secret) = secret {
                request = request.bearer_auth(secret);
            }
            let response = request.send().await.ok()?;
            // The door's own tests may not be let in: they start as they are.
            let Ok(readiness) = response.json::<Readiness>().await else {
                return Some(());
            };
            (readiness.ready || readiness.state != zimage_contract::BackendState::Unreachable).then_some(())
        })
        .await;
    }

    /// Waits until `/readyz` answers 200.
    pub(crate) async fn wait_ready(&self) -> Readiness {
        self.wait_readiness(true).await
    }

    /// Waits until `/readyz` says ready (or not).
    pub(crate) async fn wait_readiness(&self, ready: bool) -> Readiness {
        eventually(&format!("/readyz to say ready: {ready}"), || async {
            let answer = self.get("/readyz").await;
            let readiness: Readiness = serde_json::from_value(answer.body).unwrap();
            assert_eq!(answer.status == 200, readiness.ready);
            (readiness.ready == ready).then_some(readiness)
        })
        .await
    }

    /// Waits until the simulator has received `count` prompts.
    pub(crate) async fn wait_prompts_received(&self, count: usize) -> Vec<Value> {
        eventually(&format!("the simulator to get {count} prompts"), || async {
            let prompts = self.sim.faults().prompts_received();
            (prompts.len() >= count).then_some(prompts)
        })
        .await
    }
}

/// Reads an answer, checking it against the OpenAPI document (see [`check_documented`]).
pub(crate) async fn answer(method: &str, response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let path = response.url().path().to_owned();
    let is_json = is_json(response.headers());
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(json!(text))
    };
    check_documented(method, &path, status, is_json.then_some(&body));
    Answer { status, body }
}

/// True when a response says its body is JSON.
pub(crate) fn is_json(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The gateway's OpenAPI document, as `GET /api/openapi.json` serves it.
pub(crate) static OPENAPI: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(zimage::routes::document_json);

/// Checks one real answer against the OpenAPI document, so that the document stays true: a route the
/// document has must list `status`, and a JSON body must validate against that status's schema.
/// Paths the document does not describe (the pages, `/pkg`) and methods a route does not take are
/// left alone.
pub(crate) fn check_documented(method: &str, path: &str, status: u16, json_body: Option<&Value>) {
    let Some((template, operation)) = documented_operation(method, path) else {
        return;
    };
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{} {path} answered {status}, which the OpenAPI document does not list for {template}",
        method.to_uppercase()
    );
    let Some(body) = json_body else { return };
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{} {path} answered {status} with JSON, which the document does not describe: {body}",
        method.to_uppercase()
    );
    check_schema(
        schema,
        body,
        &format!("{} {template} {status}", method.to_uppercase()),
    );
}

/// Validates `instance` against `schema`, a schema of the OpenAPI document (its `$ref`s point into the
/// document's components).
pub(crate) fn check_schema(schema: &Value, instance: &Value, what: &str) {
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": OPENAPI["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the answer does not match the OpenAPI document: {errors:#?}\n{instance}"
    );
}

/// The document's operation for `method` on a concrete `path`, and the path template it matched.
fn documented_operation(method: &str, path: &str) -> Option<(String, &'static Value)> {
    let segments: Vec<&str> = path.split('/').collect();
    OPENAPI["paths"].as_object()?.iter().find_map(|(template, item)| {
        let pattern: Vec<&str> = template.split('/').collect();
        let matches = pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(pattern, segment)| pattern.starts_with('{') || pattern == segment);
        let operation = &item[method];
        (matches && operation.is_object()).then(|| (template.clone(), operation))
    })
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

/// A job's SSE stream, read event by event.
pub(crate) struct EventReader {
    stream: SseStream,
}

impl EventReader {
    /// The next event, its id parsed; `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Option<(u64, JobEvent)> {
        let event = tokio::time::timeout(PATIENCE, self.stream.next())
            .await
            .expect("no event in time")?;
        let event = event.unwrap();
        // Each event, as `{"event", "data"}`, is a `JobEvent` of the OpenAPI document.
        let data: Value = serde_json::from_str(&event.data).unwrap();
        check_schema(
            &json!({"$ref": "#/components/schemas/JobEvent"}),
            &json!({"event": event.event, "data": data}),
            "an SSE event",
        );
        let parsed = JobEvent::from_sse(&event.event, &event.data).unwrap();
        Some((event.id.parse().unwrap(), parsed))
    }

    /// Reads until the next event matching `wanted`, returning it.
    pub(crate) async fn until(&mut self, wanted: impl Fn(&JobEvent) -> bool) -> (u64, JobEvent) {
        loop {
            let event = self.next().await.expect("the stream ended first");
            if wanted(&event.1) {
                return event;
            }
        }
    }

    /// Reads everything up to and including the terminal event, and checks the stream then ends.
    pub(crate) async fn until_end(mut self) -> Vec<(u64, JobEvent)> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            let terminal = event.1.is_terminal();
            events.push(event);
            if terminal {
                assert!(self.next().await.is_none(), "events after the terminal one");
                return events;
            }
        }
        panic!("the stream ended without a terminal event: {events:?}");
    }
}

/// The PNG at `url` decoded.
pub(crate) async fn fetch_image(app: &TestApp, path: &str) -> (String, image::DynamicImage, Vec<u8>) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    let bytes = response.bytes().await.unwrap().to_vec();
    let decoded = image::load_from_memory(&bytes).unwrap();
    (content_type, decoded, bytes)
}

/// The image URL of a job whose events end in `completed`; anything else fails the test, naming it.
pub(crate) fn completed_image(events: &[(u64, JobEvent)]) -> String {
    match events.last() {
        Some((_, JobEvent::Completed { image_url, .. })) => image_url.clone(),
        _ => panic!("the job did not complete: {events:?}"),
    }
}

/// Reads a child's output line by line until a line contains `wanted`; returns that line.
pub(crate) async fn line_containing(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<impl tokio::io::AsyncRead + Unpin>>,
    wanted: &str,
) -> String {
    let found = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(wanted) {
                return line;
            }
        }
        panic!("the output ended without a line containing {wanted:?}")
    };
    tokio::time::timeout(PATIENCE, found)
        .await
        .unwrap_or_else(|_| panic!("no line containing {wanted:?} in time"))
}
