//! Several ComfyUI backends behind one gateway: the gateway's line feeds every idle, ready backend (one
//! job each at a time), in fair turns between clients; a backend that dies mid-job hands its job to
//! another with a `retrying` event; one that is down, or lacks a model file, gets nothing until it is
//! fit, and `/readyz` and `/api/backends` say which is which, by name and never by address.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::collections::BTreeSet;
use std::sync::Arc;

use comfy_sim::{SimHandle, SimOptions, Simulator};
use serde_json::json;
use tokio::net::TcpListener;
use zimage_contract::{BackendList, BackendStatus, HistoryPage, JobAccepted, JobEvent, JobStatus};

use crate::engine_support::eventually;
use crate::support::{EventReader, TestApp, another_browser, quick_sim, start_gateway_with_args};

/// Simulators and the gateway in front of all of them, named `b0`, `b1`...
pub(crate) struct Fleet {
    pub(crate) app: TestApp,
    pub(crate) sims: Vec<SimHandle>,
    arguments: Vec<String>,
}

impl Fleet {
    /// Stops the gateway (the simulators go on) and starts a new one on the same data and backends.
    pub(crate) async fn restart(mut self) -> Fleet {
        self.app.stop().await;
        let arguments: Vec<&str> = self.arguments.iter().map(String::as_str).collect();
        let app =
            start_gateway_with_args(self.sims[0].clone(), Arc::clone(&self.app.data_dir), &arguments).await;
        Fleet { app, ..self }
    }
}

pub(crate) async fn simulator(options: SimOptions) -> SimHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Simulator::spawn(listener, options).await.unwrap()
}

/// The gateway over `sims` plus `extra` backend addresses (named after them, `b<n>`, in order), with
/// `options` on its command line.
pub(crate) async fn fleet_with(sims: Vec<SimHandle>, extra: &[String], options: &[&str]) -> Fleet {
    let addresses: Vec<String> = sims
        .iter()
        .map(SimHandle::url)
        .chain(extra.iter().cloned())
        .collect();
    let arguments: Vec<String> = addresses
        .iter()
        .enumerate()
        .map(|(index, url)| format!("--comfyui=b{index}={url}"))
        .chain(options.iter().map(|option| (*option).to_owned()))
        .collect();
    let borrowed: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let app = start_gateway_with_args(sims[0].clone(), data_dir, &borrowed).await;
    Fleet { app, sims, arguments }
}

pub(crate) async fn fleet(count: usize, options: impl Fn(usize) -> SimOptions) -> Fleet {
    let mut sims = Vec::new();
    for index in 0..count {
        sims.push(simulator(options(index)).await);
    }
    fleet_with(sims, &[], &[]).await
}

pub(crate) fn small_job(prompt: &str) -> serde_json::Value {
    json!({"prompt": prompt, "width": 256, "height": 256})
}

/// `GET /api/backends`, checked to name no address.
pub(crate) async fn backends(app: &TestApp) -> BackendList {
    let answer = app.get("/api/backends").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let text = answer.body.to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("http"),
        "an address leaked: {text}"
    );
    serde_json::from_value(answer.body).unwrap()
}

pub(crate) async fn wait_backend(app: &TestApp, name: &str, state: BackendStatus) -> BackendList {
    eventually(&format!("backend {name} to be {state:?}"), || async {
        let list = backends(app).await;
        list.backends
            .iter()
            .any(|backend| backend.name == name && backend.state == state)
            .then_some(list)
    })
    .await
}

/// The ids of the prompts `sim` was sent.
pub(crate) fn prompts_at(sim: &SimHandle) -> Vec<String> {
    sim.faults()
        .prompts_received()
        .iter()
        .map(|body| body["prompt_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Which backend made each image of the gallery, by job id.
pub(crate) async fn made_by(app: &TestApp) -> Vec<(String, Option<String>)> {
    let answer = app.get("/api/history?limit=100").await;
    let page: HistoryPage = serde_json::from_value(answer.body).unwrap();
    page.items
        .into_iter()
        .map(|item| (item.id, item.backend))
        .collect()
}

/// Two ready backends, both holding before sampling step 3, and a job caught at step 2 on one of them:
/// the fleet, the job, its event stream so far, and the index of the backend that holds it.
async fn job_held_on_one_of_two(prompt: &str) -> (Fleet, JobAccepted, EventReader, usize) {
    let fleet = fleet(2, |_| quick_sim()).await;
    wait_backend(&fleet.app, "b0", BackendStatus::Ready).await;
    wait_backend(&fleet.app, "b1", BackendStatus::Ready).await;
    for sim in &fleet.sims {
        sim.faults().hold_at_step(Some(3));
    }
    let accepted = fleet.app.create_job(small_job(prompt)).await;
    let mut events = fleet.app.events(&accepted.id, None).await;
    events
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    let holder = usize::from(!prompts_at(&fleet.sims[0]).contains(&accepted.id));
    (fleet, accepted, events, holder)
}

/// Lets `sim` run its jobs to the end from now on.
pub(crate) fn let_run(sim: &SimHandle) {
    sim.faults().hold_at_step(None);
    sim.faults().release();
}

#[tokio::test]
async fn jobs_spread_over_every_backend_one_at_a_time_each() {
    let fleet = fleet(3, |_| SimOptions {
        step_ms: 25,
        ..SimOptions::default()
    })
    .await;
    let app = &fleet.app;
    for index in 0..3 {
        wait_backend(app, &format!("b{index}"), BackendStatus::Ready).await;
    }
    let mut ids = Vec::new();
    for index in 0..9 {
        ids.push(app.create_job(small_job(&format!("fox {index}"))).await.id);
    }
    for id in &ids {
        let events = app.events_until_end(id).await;
        assert!(
            matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
            "{events:?}"
        );
    }
    let makers: BTreeSet<String> = made_by(app).await.into_iter().filter_map(|(_, by)| by).collect();
    assert_eq!(
        makers,
        BTreeSet::from(["b0".to_owned(), "b1".to_owned(), "b2".to_owned()])
    );
    for sim in &fleet.sims {
        assert!(!prompts_at(sim).is_empty());
        assert!(
            sim.faults().peak_queue_remaining() <= 1,
            "a backend was given a second job while busy"
        );
    }
    let list = backends(app).await;
    assert_eq!(
        list.backends.iter().map(|backend| backend.jobs_done).sum::<u64>(),
        9
    );
    for backend in &list.backends {
        assert_eq!(backend.state, BackendStatus::Ready, "{backend:?}");
        assert!(backend.median_seconds_per_image.is_some(), "{backend:?}");
        assert!(backend.device.is_some(), "{backend:?}");
    }
    // The job itself says where it ran.
    let view = app.job(&ids[0]).await;
    assert!(view.backend.is_some_and(|name| name.starts_with('b')));
}

#[tokio::test]
async fn a_backend_killed_mid_job_hands_the_job_to_another_with_a_retrying_event() {
    let (fleet, accepted, mut events, dying) = job_held_on_one_of_two("a lighthouse in a storm").await;
    let app = &fleet.app;
    let survivor = 1 - dying;
    fleet.sims[dying].shutdown();
    let_run(&fleet.sims[survivor]);

    let (_, retrying) = events
        .until(|event| matches!(event, JobEvent::Retrying { .. }))
        .await;
    let JobEvent::Retrying { reason, attempt } = retrying else {
        unreachable!()
    };
    assert_eq!(attempt, 1);
    assert!(reason.contains(&format!("b{dying}")), "{reason}");
    let rest = events.until_end().await;
    assert!(
        matches!(rest.last(), Some((_, JobEvent::Completed { .. }))),
        "{rest:?}"
    );
    assert!(prompts_at(&fleet.sims[survivor]).contains(&accepted.id));
    let view = app.job(&accepted.id).await;
    assert_eq!(view.status, JobStatus::Completed);
    assert_eq!(view.backend, Some(format!("b{survivor}")));
    assert_eq!(
        made_by(app).await,
        vec![(accepted.id.clone(), Some(format!("b{survivor}")))]
    );
    let list = wait_backend(app, &format!("b{dying}"), BackendStatus::Down).await;
    assert!(list.backends[dying].reason.is_some());
    // The studio stays ready on the survivor.
    assert!(app.wait_ready().await.message.contains("1 of 2 GPUs ready"));
}

#[tokio::test]
async fn a_backend_down_at_start_is_taken_into_use_once_it_comes_up() {
    // An address where nothing listens yet.
    let port = {
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        reserved.local_addr().unwrap().port()
    };
    let first = simulator(quick_sim()).await;
    let fleet = fleet_with(vec![first], &[format!("http://127.0.0.1:{port}")], &[]).await;
    let app = &fleet.app;
    let readiness = app.wait_ready().await;
    assert!(
        readiness.message.contains("1 of 2 GPUs ready"),
        "{}",
        readiness.message
    );
    wait_backend(app, "b1", BackendStatus::Down).await;
    let (before, _) = app.run_small_job("a fox before").await;

    let late = Simulator::spawn(TcpListener::bind(("127.0.0.1", port)).await.unwrap(), quick_sim())
        .await
        .unwrap();
    wait_backend(app, "b1", BackendStatus::Ready).await;
    // b0 has a measured time per image, b1 none yet: the next job goes to b1 to measure it.
    let (after, events) = app.run_small_job("a fox after").await;
    assert!(matches!(events.last(), Some((_, JobEvent::Completed { .. }))));
    assert_eq!(prompts_at(&late), vec![after.id.clone()]);
    let makers = made_by(app).await;
    assert!(makers.contains(&(after.id, Some("b1".to_owned()))), "{makers:?}");
    assert!(makers.contains(&(before.id, Some("b0".to_owned()))), "{makers:?}");
    assert!(app.wait_ready().await.message.contains("2 of 2 GPUs ready"));
}

#[tokio::test]
async fn a_cancelled_waiting_job_never_reaches_any_backend() {
    let fleet = fleet(2, |_| quick_sim()).await;
    let app = &fleet.app;
    wait_backend(app, "b0", BackendStatus::Ready).await;
    wait_backend(app, "b1", BackendStatus::Ready).await;
    for sim in &fleet.sims {
        sim.faults().hold_at_step(Some(2));
    }
    let first = app.create_job(small_job("one")).await;
    let second = app.create_job(small_job("two")).await;
    eventually("both backends busy", || async {
        let list = backends(app).await;
        list.backends
            .iter()
            .all(|backend| backend.state == BackendStatus::Busy)
            .then_some(())
    })
    .await;
    let waiting = app.create_job(small_job("three")).await;
    assert_eq!(app.job(&waiting.id).await.queue_position, Some(1));
    let cancelled = app.delete(&format!("/api/jobs/{}", waiting.id)).await;
    assert_eq!(cancelled.status, 202, "{}", cancelled.body);
    assert_eq!(app.job(&waiting.id).await.status, JobStatus::Cancelled);

    for sim in &fleet.sims {
        let_run(sim);
    }
    for id in [&first.id, &second.id] {
        let events = app.events_until_end(id).await;
        assert!(matches!(events.last(), Some((_, JobEvent::Completed { .. }))));
    }
    for sim in &fleet.sims {
        assert!(!prompts_at(sim).contains(&waiting.id));
    }
}

#[tokio::test]
async fn waiting_jobs_take_turns_between_clients() {
    let fleet = fleet(1, |_| quick_sim()).await;
    let app = &fleet.app;
    app.wait_ready().await;
    // The only backend is busy with someone else's job, so the others wait in line.
    let (running, _) = app.start_held_job("running", 2, 1).await;
    // Two browsers, each known by its own identity cookie (a script is known by its token or address).
    let (phone, desk) = (another_browser(), another_browser());
    let submit = |client: &reqwest::Client, prompt: &str| {
        let request = client.post(app.url("/api/jobs")).json(&small_job(prompt));
        async move {
            let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            answer["id"].as_str().unwrap().to_owned()
        }
    };
    let phone_jobs = [
        submit(&phone, "phone 1").await,
        submit(&phone, "phone 2").await,
        submit(&phone, "phone 3").await,
    ];
    let desk_job = submit(&desk, "desk 1").await;
    let mut positions = Vec::new();
    for id in [&phone_jobs[0], &desk_job, &phone_jobs[1], &phone_jobs[2]] {
        positions.push(app.job(id).await.queue_position);
    }
    assert_eq!(positions, [Some(1), Some(2), Some(3), Some(4)]);

    let_run(&fleet.sims[0]);
    for id in phone_jobs.iter().chain([&desk_job]) {
        app.events_until_end(id).await;
    }
    assert_eq!(
        prompts_at(&fleet.sims[0]),
        [
            running.id.clone(),
            phone_jobs[0].clone(),
            desk_job,
            phone_jobs[1].clone(),
            phone_jobs[2].clone()
        ]
    );
}

#[tokio::test]
async fn a_backend_missing_a_model_file_gets_no_jobs_and_readyz_names_it() {
    let fleet = fleet(2, |index| SimOptions {
        vaes: if index == 1 {
            vec!["other.safetensors".to_owned()]
        } else {
            quick_sim().vaes
        },
        ..quick_sim()
    })
    .await;
    let app = &fleet.app;
    let list = wait_backend(app, "b1", BackendStatus::NotReady).await;
    let reason = list.backends[1].reason.clone().unwrap_or_default();
    assert!(reason.contains("ae.safetensors"), "{reason}");
    let readiness = app.wait_ready().await;
    assert!(
        readiness.message.contains("1 of 2 GPUs ready") && readiness.message.contains("b1"),
        "{}",
        readiness.message
    );
    assert_eq!(readiness.missing_models, ["ae.safetensors"]);
    assert_eq!(readiness.backends.len(), 2);

    for index in 0..3 {
        let (_, events) = app.run_small_job(&format!("fox {index}")).await;
        assert!(matches!(events.last(), Some((_, JobEvent::Completed { .. }))));
    }
    assert!(prompts_at(&fleet.sims[1]).is_empty());
    assert_eq!(prompts_at(&fleet.sims[0]).len(), 3);
}

#[tokio::test]
async fn after_a_restart_a_job_is_found_at_the_backend_that_holds_it_and_not_sent_twice() {
    let (fleet, accepted, events, holder) = job_held_on_one_of_two("kept across a restart").await;
    drop(events);

    let fleet = fleet.restart().await;
    let app = &fleet.app;
    for sim in &fleet.sims {
        let_run(sim);
    }
    let events = app.events_until_end(&accepted.id).await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(_, event)| matches!(event, JobEvent::Retrying { .. }))
    );
    let sent: Vec<String> = fleet.sims.iter().flat_map(prompts_at).collect();
    assert_eq!(
        sent,
        std::slice::from_ref(&accepted.id),
        "sent once, to one backend"
    );
    assert_eq!(
        made_by(app).await,
        vec![(accepted.id, Some(format!("b{holder}")))]
    );
}

#[tokio::test]
async fn a_backend_that_froze_gets_its_job_moved_and_is_told_to_drop_it_when_it_thaws() {
    let (fleet, accepted, mut events, frozen) = job_held_on_one_of_two("a frozen lake").await;
    let app = &fleet.app;
    let survivor = 1 - frozen;
    // Frozen, not dead: its socket goes silent and the gateway gives up on it.
    fleet.sims[frozen].faults().stall(true);
    let_run(&fleet.sims[survivor]);
    let (_, retrying) = events
        .until(|event| matches!(event, JobEvent::Retrying { .. }))
        .await;
    assert!(matches!(retrying, JobEvent::Retrying { attempt: 1, .. }));
    let rest = events.until_end().await;
    assert!(
        matches!(rest.last(), Some((_, JobEvent::Completed { .. }))),
        "{rest:?}"
    );
    assert_eq!(app.job(&accepted.id).await.backend, Some(format!("b{survivor}")));

    // Thawed, it still holds the job: the gateway has it dropped there.
    fleet.sims[frozen].faults().stall(false);
    eventually("the old backend told to drop the moved job", || async {
        (fleet.sims[frozen].faults().requests_to("POST /interrupt") > 0).then_some(())
    })
    .await;
    wait_backend(app, &format!("b{frozen}"), BackendStatus::Ready).await;
    // Its late news of the job changes nothing.
    let view = app.job(&accepted.id).await;
    assert_eq!(view.status, JobStatus::Completed);
    assert_eq!(view.backend, Some(format!("b{survivor}")));
}

/// Every accepted job ends by its deadline: with one backend connected but not ready (its models are
/// not the workflow's) and the only ready one killed while it holds the first job, the first job and
/// the two waiting behind it all end `timed_out`, and their places are freed. (Once waiting jobs
/// timed out only when every backend's socket was down: a connected-but-not-ready backend kept them
/// `queued` for ever.)
#[tokio::test]
async fn waiting_jobs_end_by_their_deadline_when_no_ready_backend_is_left() {
    let sims = vec![
        simulator(SimOptions {
            unet_models: vec!["another-model.gguf".to_owned()],
            ..quick_sim()
        })
        .await,
        simulator(quick_sim()).await,
    ];
    let fleet = fleet_with(sims, &[], &["--job-deadline=2", "--max-queued=3"]).await;
    let app = &fleet.app;
    wait_backend(app, "b0", BackendStatus::NotReady).await;
    wait_backend(app, "b1", BackendStatus::Ready).await;
    fleet.sims[1].faults().hold_at_step(Some(3));
    let mut jobs = Vec::new();
    for index in 0..3 {
        jobs.push(app.create_job(small_job(&format!("stranded fox {index}"))).await);
    }
    let mut first = app.events(&jobs[0].id, None).await;
    first
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    fleet.sims[1].shutdown();

    for job in &jobs {
        let events = app.events_until_end(&job.id).await;
        match events.last() {
            Some((_, JobEvent::Failed { code, .. })) => assert_eq!(code, "timed_out", "{events:?}"),
            other => panic!("job {} ended {other:?}", job.id),
        }
    }
    assert!(prompts_at(&fleet.sims[0]).is_empty());
    // Their endings stay readable across a restart.
    let fleet = fleet.restart().await;
    for job in &jobs {
        let view = fleet.app.job(&job.id).await;
        assert_eq!(view.status, JobStatus::Failed);
        assert_eq!(view.error.map(|error| error.code), Some("timed_out".to_owned()));
        let events = fleet.app.events_until_end(&job.id).await;
        assert!(
            matches!(events.last(), Some((_, JobEvent::Failed { .. }))),
            "{events:?}"
        );
    }
}

/// After a failover and a gateway restart, only the backend the job was last given to has a say: the
/// abandoned copy's record (interrupted, when its backend came back and was told to drop it) does not
/// end a job that is running fine elsewhere. (Once the first backend, in order, with any record of the
/// job decided, and the job ended `cancelled`.)
#[tokio::test]
async fn after_a_failover_and_a_restart_the_abandoned_copy_has_no_say() {
    let (fleet, accepted, mut events, frozen) = job_held_on_one_of_two("moved, then restarted").await;
    let survivor = 1 - frozen;
    fleet.sims[frozen].faults().stall(true);
    events
        .until(|event| matches!(event, JobEvent::Retrying { .. }))
        .await;
    // The survivor takes it and holds it mid-sampling.
    events
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    drop(events);
    // The frozen one thaws and is told to drop its copy: its record now says interrupted.
    fleet.sims[frozen].faults().stall(false);
    eventually("the abandoned copy interrupted", || async {
        (fleet.sims[frozen].faults().requests_to("POST /interrupt") > 0).then_some(())
    })
    .await;

    let fleet = fleet.restart().await;
    let_run(&fleet.sims[survivor]);
    let events = fleet.app.events_until_end(&accepted.id).await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    assert_eq!(
        made_by(&fleet.app).await,
        vec![(accepted.id, Some(format!("b{survivor}")))]
    );
}
