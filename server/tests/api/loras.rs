//! LoRAs over several backends: the gateway learns each backend's LoRA files from ComfyUI (and again
//! while it runs), shows them in `/api/backends` and `/api/loras`, gives a job that uses one only to a
//! backend that has it (waiting while that one is busy, never failing over to one without it),
//! refuses at once a LoRA no backend has, and fails a waiting job whose LoRA every backend dropped.
//! `/api/loras` also shows the trigger words a file's metadata names.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use comfy_sim::SimOptions;
use serde_json::{Value, json};
use zimage_contract::{BackendStatus, JobEvent, JobStatus, LoraList};

use crate::backends::{Fleet, backends, fleet, let_run, prompts_at, wait_backend};
use crate::engine_support::eventually;
use crate::support::{completed_image, fetch_image, quick_sim};

/// Two simulators: `b0` has `a.safetensors`, `b1` has `b.safetensors` and `styles/ink.safetensors`;
/// both ready and their lists known.
async fn two_with_different_loras() -> Fleet {
    let fleet = fleet(2, |index| SimOptions {
        loras: if index == 0 {
            vec!["a.safetensors".to_owned()]
        } else {
            vec!["b.safetensors".to_owned(), "styles/ink.safetensors".to_owned()]
        },
        lora_triggers: [("styles/ink.safetensors".to_owned(), "inkwash, sumi-e".to_owned())].into(),
        ..quick_sim()
    })
    .await;
    wait_backend(&fleet.app, "b0", BackendStatus::Ready).await;
    wait_backend(&fleet.app, "b1", BackendStatus::Ready).await;
    fleet
}

fn lora_job(prompt: &str, seed: u64, loras: Value) -> Value {
    json!({"prompt": prompt, "width": 256, "height": 256, "seed": seed, "loras": loras})
}

/// The LoRA nodes of a prompt a simulator received: `(lora_name, strength_model)`.
fn lora_nodes(body: &Value) -> Vec<(String, f64)> {
    let mut nodes: Vec<(String, f64)> = body["prompt"]
        .as_object()
        .unwrap()
        .values()
        .filter(|node| node["class_type"] == "LoraLoaderModelOnly")
        .map(|node| {
            (
                node["inputs"]["lora_name"].as_str().unwrap().to_owned(),
                node["inputs"]["strength_model"].as_f64().unwrap(),
            )
        })
        .collect();
    nodes.sort_by(|left, right| left.0.cmp(&right.0));
    nodes
}

#[tokio::test]
async fn each_backends_loras_are_listed_and_a_job_goes_only_where_its_loras_are() {
    let fleet = two_with_different_loras().await;
    let app = &fleet.app;
    let list = backends(app).await;
    let of = |name: &str| {
        list.backends
            .iter()
            .find(|backend| backend.name == name)
            .unwrap()
            .loras
            .clone()
    };
    assert_eq!(of("b0"), ["a.safetensors"]);
    assert_eq!(of("b1"), ["b.safetensors", "styles/ink.safetensors"]);
    let answer = app.get("/api/loras").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let loras: LoraList = serde_json::from_value(answer.body).unwrap();
    let names: Vec<(&str, Vec<String>, Vec<String>)> = loras
        .loras
        .iter()
        .map(|lora| {
            (
                lora.name.as_str(),
                lora.backends.clone(),
                lora.trigger_words.clone(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("a.safetensors", vec!["b0".to_owned()], vec![]),
            ("b.safetensors", vec!["b1".to_owned()], vec![]),
            (
                "styles/ink.safetensors",
                vec!["b1".to_owned()],
                vec!["inkwash".to_owned(), "sumi-e".to_owned()]
            ),
        ]
    );

    // Several at once, so both backends are idle when each is placed: still all on b1.
    let mut ids = Vec::new();
    for index in 0..4 {
        let loras = json!([{"name": "styles/ink.safetensors", "strength": 0.8}, {"name": "b.safetensors"}]);
        ids.push(
            app.create_job(lora_job(&format!("ink fox {index}"), 7, loras))
                .await
                .id,
        );
    }
    for id in &ids {
        let events = app.events_until_end(id).await;
        assert!(
            matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
            "{events:?}"
        );
        assert_eq!(app.job(id).await.backend.as_deref(), Some("b1"));
    }
    let at_b0 = prompts_at(&fleet.sims[0]);
    assert!(ids.iter().all(|id| !at_b0.contains(id)), "a LoRA job reached b0");
    let sent = fleet.sims[1].faults().prompts_received();
    let first = sent
        .iter()
        .find(|body| body["prompt_id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(
        lora_nodes(first),
        [
            ("b.safetensors".to_owned(), 1.0),
            ("styles/ink.safetensors".to_owned(), 0.8)
        ]
    );
}

#[tokio::test]
async fn a_lora_changes_the_image_and_the_same_job_without_it_does_not() {
    let fleet = fleet(1, |_| SimOptions {
        loras: vec!["a.safetensors".to_owned()],
        ..quick_sim()
    })
    .await;
    let app = &fleet.app;
    wait_backend(app, "b0", BackendStatus::Ready).await;
    let mut pixels = Vec::new();
    for loras in [
        json!([]),
        json!([]),
        json!([{"name": "a.safetensors", "strength": 1.0}]),
    ] {
        let accepted = app.create_job(lora_job("a fox", 11, loras)).await;
        let events = app.events_until_end(&accepted.id).await;
        let (_, image, _) = fetch_image(app, &completed_image(&events)).await;
        pixels.push(image.to_rgb8().into_raw());
    }
    assert_eq!(pixels[0], pixels[1], "the same job makes the same image");
    assert_ne!(pixels[0], pixels[2], "the LoRA left the image as it was");
}

#[tokio::test]
async fn lora_requests_that_cannot_run_are_refused_naming_the_field_and_nothing_reaches_comfyui() {
    let fleet = two_with_different_loras().await;
    let app = &fleet.app;
    let five: Vec<Value> = (0..5)
        .map(|index| json!({"name": format!("l{index}.safetensors")}))
        .collect();
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (
            json!([{"name": "nowhere.safetensors"}]),
            422,
            Some("loras[0].name"),
        ),
        (
            json!([{"name": "a.safetensors"}, {"name": "nowhere.safetensors"}]),
            422,
            Some("loras[1].name"),
        ),
        (json!([{"name": "../x"}]), 422, Some("loras[0].name")),
        (
            json!([{"name": "loras/../../x.safetensors"}]),
            422,
            Some("loras[0].name"),
        ),
        (json!([{"name": "/etc/passwd"}]), 422, Some("loras[0].name")),
        (json!([{"name": ""}]), 422, Some("loras[0].name")),
        (json!([{"name": "a\u{0}b"}]), 422, Some("loras[0].name")),
        (json!([{"name": "x".repeat(256)}]), 422, Some("loras[0].name")),
        (
            json!([{"name": "a.safetensors", "strength": 1e308}]),
            422,
            Some("loras[0].strength"),
        ),
        (
            json!([{"name": "a.safetensors", "strength": -2.5}]),
            422,
            Some("loras[0].strength"),
        ),
        (
            json!([{"name": "a.safetensors", "strength": "0.8"}]),
            422,
            Some("loras[0].strength"),
        ),
        (
            json!([{"name": "a.safetensors", "weight": 1}]),
            422,
            Some("weight"),
        ),
        (
            json!([{"name": "a.safetensors"}, {"name": "a.safetensors", "strength": 0.5}]),
            422,
            Some("loras[1].name"),
        ),
        (Value::Array(five), 422, Some("loras")),
    ];
    for (loras, status, field) in cases {
        let body = lora_job("a fox", 1, loras);
        let answer = app.post_json("/api/jobs", &body).await;
        assert_eq!(answer.status, status, "{body} -> {}", answer.body);
        assert_eq!(
            answer.body["error"]["field"].as_str(),
            field,
            "{body} -> {}",
            answer.body
        );
    }
    // The sentence names the LoRA no backend has.
    let answer = app
        .post_json(
            "/api/jobs",
            &lora_job("x", 1, json!([{"name": "nowhere.safetensors"}])),
        )
        .await;
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("nowhere.safetensors")),
        "{}",
        answer.body
    );
    // NaN is no JSON number: a clear 400.
    let raw = app
        .http
        .post(app.url("/api/jobs"))
        .header("content-type", "application/json")
        .body(r#"{"prompt": "x", "loras": [{"name": "a.safetensors", "strength": NaN}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    for sim in &fleet.sims {
        assert!(sim.faults().prompts_received().is_empty());
    }
}

#[tokio::test]
async fn a_job_waits_while_the_only_backend_with_its_lora_is_busy_and_never_fails_over_to_one_without_it() {
    let fleet = two_with_different_loras().await;
    let app = &fleet.app;
    fleet.sims[0].faults().hold_at_step(Some(3));
    let first = app
        .create_job(lora_job("first", 1, json!([{"name": "a.safetensors"}])))
        .await;
    let mut first_events = app.events(&first.id, None).await;
    first_events
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    let second = app
        .create_job(lora_job("second", 2, json!([{"name": "a.safetensors"}])))
        .await;
    // A plain job behind it is not held up: b1 takes it while the LoRA job waits for b0.
    let plain = app
        .create_job(json!({"prompt": "plain", "width": 256, "height": 256}))
        .await;
    let plain_events = app.events_until_end(&plain.id).await;
    assert!(matches!(
        plain_events.last(),
        Some((_, JobEvent::Completed { .. }))
    ));
    assert_eq!(app.job(&plain.id).await.backend.as_deref(), Some("b1"));
    assert_eq!(app.job(&second.id).await.status, JobStatus::Queued);
    assert!(!prompts_at(&fleet.sims[1]).contains(&second.id));

    // b0 dies holding the first: b1 is ready but lacks its LoRA, so the job stays with b0.
    fleet.sims[0].shutdown();
    wait_backend(app, "b0", BackendStatus::Down).await;
    let another = app
        .create_job(json!({"prompt": "another", "width": 256, "height": 256}))
        .await;
    app.events_until_end(&another.id).await;
    let at_b1 = prompts_at(&fleet.sims[1]);
    assert!(
        !at_b1.contains(&first.id) && !at_b1.contains(&second.id),
        "{at_b1:?}"
    );
    let first_view = app.job(&first.id).await;
    assert!(
        !matches!(first_view.status, JobStatus::Failed | JobStatus::Completed),
        "{first_view:?}"
    );
    assert_eq!(app.job(&second.id).await.status, JobStatus::Queued);
    let_run(&fleet.sims[1]);
}

#[tokio::test]
async fn a_lora_dropped_by_every_backend_that_had_it_fails_the_jobs_waiting_for_it_and_new_files_are_learned()
{
    let fleet = fleet(1, |_| SimOptions {
        loras: vec!["a.safetensors".to_owned(), "b.safetensors".to_owned()],
        ..quick_sim()
    })
    .await;
    let app = &fleet.app;
    let sim = &fleet.sims[0];
    wait_backend(app, "b0", BackendStatus::Ready).await;
    sim.faults().hold_at_step(Some(3));
    let held = app
        .create_job(lora_job("held", 1, json!([{"name": "a.safetensors"}])))
        .await;
    let mut held_events = app.events(&held.id, None).await;
    held_events
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    let waiting = app
        .create_job(lora_job(
            "waiting",
            2,
            json!([{"name": "b.safetensors", "strength": 0.5}]),
        ))
        .await;
    // The file is taken out and another dropped in: no restart needed to know either.
    sim.set_loras(vec!["a.safetensors".to_owned(), "new.safetensors".to_owned()]);
    let events = app.events_until_end(&waiting.id).await;
    match events.last() {
        Some((_, JobEvent::Failed { code, message })) => {
            assert_eq!(code, "lora_missing");
            assert!(message.contains("b.safetensors"), "{message}");
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    eventually("the new LoRA to be listed", || async {
        let list = backends(app).await;
        (list.backends[0].loras == ["a.safetensors", "new.safetensors"]).then_some(())
    })
    .await;
    let_run(sim);
    let held_end = held_events.until_end().await;
    assert!(matches!(held_end.last(), Some((_, JobEvent::Completed { .. }))));
    let fresh = app
        .create_job(lora_job("fresh", 3, json!([{"name": "new.safetensors"}])))
        .await;
    let fresh_end = app.events_until_end(&fresh.id).await;
    assert!(
        matches!(fresh_end.last(), Some((_, JobEvent::Completed { .. }))),
        "{fresh_end:?}"
    );
    // And the dropped one is refused at the door now.
    let answer = app
        .post_json(
            "/api/jobs",
            &lora_job("late", 4, json!([{"name": "b.safetensors"}])),
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
}

#[tokio::test]
async fn a_waiting_lora_job_survives_a_restart_runs_only_where_its_lora_is_and_is_kept_with_it() {
    let fleet = two_with_different_loras().await;
    fleet.sims[1].faults().hold_at_step(Some(3));
    let first = fleet
        .app
        .create_job(lora_job("first", 1, json!([{"name": "b.safetensors"}])))
        .await;
    let mut first_events = fleet.app.events(&first.id, None).await;
    first_events
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    let waiting = fleet
        .app
        .create_job(lora_job(
            "a harbour",
            2,
            json!([{"name": "styles/ink.safetensors", "strength": 0.6}]),
        ))
        .await;
    let fleet = fleet.restart().await;
    let app = &fleet.app;
    wait_backend(app, "b0", BackendStatus::Ready).await;
    assert_eq!(app.job(&waiting.id).await.status, JobStatus::Queued);
    let_run(&fleet.sims[1]);
    let events = app.events_until_end(&waiting.id).await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    assert_eq!(app.job(&waiting.id).await.backend.as_deref(), Some("b1"));
    assert!(!prompts_at(&fleet.sims[0]).contains(&waiting.id));
    // The record keeps the LoRAs, and a LoRA's name finds the image.
    let answer = app.get("/api/history?q=ink.safetensors").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let page: zimage_contract::HistoryPage = serde_json::from_value(answer.body).unwrap();
    let ids: Vec<&str> = page.items.iter().map(|item| item.id.as_str()).collect();
    assert_eq!(ids, [waiting.id.as_str()]);
    assert_eq!(
        page.items[0].loras,
        [zimage_contract::LoraChoice {
            name: "styles/ink.safetensors".to_owned(),
            strength: 0.6
        }]
    );
}
