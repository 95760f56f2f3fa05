//! Load, bounded in count and time, on loopback: hundreds of event-stream watchers and tens of
//! concurrent submitters against the simulator. No terminal event is lost, the queue cap answers 429,
//! memory stays bounded, and `/healthz` keeps answering. Counts are fixed and every wait has a
//! deadline; nothing asserts on how long things took.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use zimage_contract::{JobAccepted, JobEvent};

use crate::support::{PATIENCE, TestApp, spawn_app_with_args};

/// Event streams open at once, spread over the accepted jobs.
const WATCHERS: usize = 300;
/// Clients submitting at the same moment.
const SUBMITTERS: usize = 24;
/// The gateway's cap on unfinished jobs in this test.
const QUEUE_CAP: usize = 8;
/// Growth of the test process's resident memory (simulator, gateway and clients together) that
/// would mean something grows without bound; the streams and jobs here need a few MiB.
const MEMORY_GROWTH_LIMIT_KIB: u64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundreds_of_watchers_and_tens_of_submitters_lose_no_terminal_event() {
    let app = Arc::new(
        spawn_app_with_args(&[
            &format!("--max-queued={QUEUE_CAP}"),
            "--max-streams-per-client=0",
            "--jobs-per-minute=0",
        ])
        .await,
    );
    app.wait_ready().await;
    let memory_before = resident_kib();

    // The first job holds before its first step, so nothing finishes and the queue fills exactly.
    app.sim.faults().hold_at_step(Some(1));
    let (accepted, refused) = submit_together(&app).await;
    assert_eq!(
        accepted.len(),
        QUEUE_CAP,
        "the cap admits exactly its number of jobs"
    );
    assert_eq!(refused, SUBMITTERS - QUEUE_CAP);

    // Hundreds of watchers, some of them resuming after the first event as a reconnecting browser does.
    let watchers = join_all((0..WATCHERS).map(|index| {
        let app = Arc::clone(&app);
        let id = accepted[index % accepted.len()].id.clone();
        async move {
            let resume = (index % 3 == 0).then_some("1");
            (id.clone(), app.events(&id, resume).await)
        }
    }))
    .await;
    let health = HealthProbe::start(Arc::clone(&app));
    assert_eq!(
        answer_healthz(&app).await,
        StatusCode::OK,
        "healthz with every stream open"
    );

    // Release: every watcher must see its job complete, while a second wave of submitters competes.
    app.sim.faults().release();
    let drained = tokio::spawn(join_all(watchers.into_iter().map(|(id, reader)| async move {
        let events = reader.until_end().await;
        (id, events.last().map(|(_, event)| event.clone()))
    })));
    let (second_wave, second_refused) = submit_together(&app).await;
    assert_eq!(second_wave.len() + second_refused, SUBMITTERS);
    for (id, last) in drained.await.unwrap() {
        assert!(
            matches!(last, Some(JobEvent::Completed { .. })),
            "job {id} ended with {last:?}"
        );
    }
    for job in &second_wave {
        let events = app.events_until_end(&job.id).await;
        assert!(
            matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
            "{events:?}"
        );
    }
    let probes = health.stop().await;
    assert!(probes > 0, "the health probe never got an answer");

    // Afterwards the queue is empty again and memory has not run away.
    assert_eq!(submit_one(&app, &Client::new()).await.0, StatusCode::ACCEPTED);
    if let (Some(before), Some(after)) = (memory_before, resident_kib()) {
        assert!(
            after.saturating_sub(before) < MEMORY_GROWTH_LIMIT_KIB,
            "resident memory grew from {before} KiB to {after} KiB"
        );
    }
}

/// [`SUBMITTERS`] clients, each with its own cookie jar, post one job at the same moment. Returns the
/// accepted jobs and how many were refused by the queue cap (each with `Retry-After`).
async fn submit_together(app: &Arc<TestApp>) -> (Vec<JobAccepted>, usize) {
    let barrier = Arc::new(tokio::sync::Barrier::new(SUBMITTERS));
    let answers = join_all((0..SUBMITTERS).map(|_| {
        let (app, barrier) = (Arc::clone(app), Arc::clone(&barrier));
        tokio::spawn(async move {
            // A browser of its own, known by its identity cookie.
            let client = crate::support::another_browser();
            barrier.wait().await;
            submit_one(&app, &client).await
        })
    }))
    .await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for answer in answers {
        let (status, retry_after, body) = answer.unwrap();
        match status {
            StatusCode::ACCEPTED => accepted.push(serde_json::from_value(body).unwrap()),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "queue_full", "{body}");
                assert!(retry_after.is_some_and(|seconds| seconds >= 1), "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    (accepted, refused)
}

async fn submit_one(app: &TestApp, client: &Client) -> (StatusCode, Option<u64>, Value) {
    let body = json!({"prompt": "a lighthouse under load", "width": 256, "height": 256});
    let response = client
        .post(app.url("/api/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    (status, retry_after, response.json().await.unwrap())
}

async fn answer_healthz(app: &TestApp) -> StatusCode {
    let request = Client::new().get(app.url("/healthz")).send();
    tokio::time::timeout(PATIENCE, request)
        .await
        .expect("healthz did not answer")
        .unwrap()
        .status()
}

/// Asks `/healthz` again and again while the load runs; every answer must be 200 within the patience.
struct HealthProbe {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<usize>,
}

impl HealthProbe {
    fn start(app: Arc<TestApp>) -> HealthProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let stop = Arc::clone(&stop);
            async move {
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(answer_healthz(&app).await, StatusCode::OK);
                    answered.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                answered.load(Ordering::Relaxed)
            }
        });
        HealthProbe { stop, task }
    }

    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// The resident memory of this process in KiB (Linux); `None` elsewhere.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
