//! Saved styles through the real gateway: kept, listed, renamed and deleted over `/api/styles`; each
//! refusal names its field; a job that names a style is made by it (the prompt wrapped, the shape);
//! a style deleted while its job waits changes nothing for that job; backups carry the styles; the
//! OpenAI-compatible API offers each style as a model and applies it.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use zimage_contract::{JobEvent, JobStatus, Style, StyleList};

use crate::openai::{generate, openai_error, read, sdk};
use crate::support::{TestApp, completed_image, spawn_app, start_gateway};

async fn create(app: &TestApp, body: Value) -> Style {
    let answer = app.post_json("/api/styles", &body).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    serde_json::from_value(answer.body).unwrap()
}

async fn names(app: &TestApp) -> Vec<String> {
    let answer = app.get("/api/styles").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let list: StyleList = serde_json::from_value(answer.body).unwrap();
    list.styles.into_iter().map(|style| style.name).collect()
}

fn watercolor() -> Value {
    json!({
        "name": "Watercolor",
        "prompt_before": "a watercolor painting of",
        "prompt_after": "soft paper texture",
        "aspect_ratio": "16:9",
    })
}

#[tokio::test]
async fn styles_are_kept_listed_renamed_and_deleted() {
    let app = spawn_app().await;
    assert!(names(&app).await.is_empty());
    let response = app
        .http
        .post(app.url("/api/styles"))
        .json(&watercolor())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let style: Style = response.json().await.unwrap();
    assert_eq!(location, format!("/api/styles/{}", style.id));
    assert_eq!(style.prompt_before, "a watercolor painting of");
    assert!(style.updated_at_ms > 0);
    create(
        &app,
        json!({"name": "  ink wash  ", "loras": [{"name": "ink.safetensors", "strength": 0.75}]}),
    )
    .await;
    assert_eq!(names(&app).await, ["ink wash", "Watercolor"]);

    // A rename keeps the id and replaces the settings.
    let renamed = app
        .put_json(
            &location,
            &json!({"name": "Aquarelle", "prompt_before": "aquarelle of"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(renamed.body["id"], Value::from(style.id.clone()));
    assert_eq!(renamed.body["aspect_ratio"], Value::Null);
    assert_eq!(names(&app).await, ["Aquarelle", "ink wash"]);

    let deleted = app.delete(&location).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(names(&app).await, ["ink wash"]);
    // Gone, and the same answer for an id that never was or is not an id at all.
    for path in [
        location.clone(),
        "/api/styles/0190f3c2-7a3b-7c4d-8e5f-0123456789ab".to_owned(),
        "/api/styles/not-an-id".to_owned(),
        "/api/styles/..%2F..%2Fetc".to_owned(),
    ] {
        let answer = app.delete(&path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(answer.body["error"]["code"], "not_found");
        let answer = app.put_json(&path, &json!({"name": "x"})).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
    }
}

#[tokio::test]
async fn each_bad_style_is_refused_naming_its_field_and_nothing_is_kept() {
    let app = spawn_app().await;
    let kept = create(&app, watercolor()).await;
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"name": ""}), 422, "name"),
        (json!({"name": "   "}), 422, "name"),
        (json!({"name": "x".repeat(10_000)}), 422, "name"),
        (json!({"name": "x".repeat(61)}), 422, "name"),
        (json!({"name": "bell\u{7}"}), 422, "name"),
        (json!({"name": "two\nlines"}), 422, "name"),
        (json!({"name": "\u{1b}[31mred"}), 422, "name"),
        (json!({"name": "WATERCOLOR"}), 409, "name"),
        (json!({"name": " watercolor "}), 409, "name"),
        (
            json!({"name": "ok", "prompt_before": "x".repeat(501)}),
            422,
            "prompt_before",
        ),
        (
            json!({"name": "ok", "prompt_after": "a\u{0}b"}),
            422,
            "prompt_after",
        ),
        (json!({"name": "ok", "aspect_ratio": "2:1"}), 422, "aspect_ratio"),
        (
            json!({"name": "ok", "loras": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}, {"name": "e"}]}),
            422,
            "loras",
        ),
        (
            json!({"name": "ok", "loras": [{"name": "a"}, {"name": "a", "strength": 0.5}]}),
            422,
            "loras[1].name",
        ),
        (
            json!({"name": "ok", "loras": [{"name": "a", "strength": 1e308}]}),
            422,
            "loras[0].strength",
        ),
    ];
    for (body, status, field) in cases {
        let answer = app.post_json("/api/styles", &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.body);
        assert_eq!(
            answer.body["error"]["field"],
            Value::from(field),
            "{body}: {}",
            answer.body
        );
        if status == 409 {
            assert_eq!(answer.body["error"]["code"], "style_taken");
        }
    }
    // A rename onto another style's name is refused the same way.
    create(&app, json!({"name": "ink"})).await;
    let answer = app
        .put_json(&format!("/api/styles/{}", kept.id), &json!({"name": "Ink"}))
        .await;
    assert_eq!(answer.status, 409, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "style_taken");
    assert_eq!(names(&app).await, ["ink", "Watercolor"]);
    // The sentence is in the asker's language.
    let chinese = app
        .http
        .post(app.url("/api/styles"))
        .header("accept-language", "zh-CN")
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    let body: Value = chinese.json().await.unwrap();
    assert_eq!(body["error"]["message"], "请给风格起个名字。");
}

#[tokio::test]
async fn a_job_that_names_a_style_is_made_by_it() {
    let app = spawn_app().await;
    create(&app, watercolor()).await;
    let accepted = app
        .create_job(json!({"prompt": "  a fox in snow ", "style": "watercolor"}))
        .await;
    let events = app.events_until_end(&accepted.id).await;
    completed_image(&events);
    let job = app.job(&accepted.id).await;
    assert_eq!(
        job.prompt,
        "a watercolor painting of a fox in snow soft paper texture"
    );
    assert_eq!((job.width, job.height), (1024, 576));

    // The request's own size wins over the style's shape.
    let sized = app
        .create_job(json!({"prompt": "a heron", "style": "Watercolor", "width": 256, "height": 256}))
        .await;
    let job = app.job(&sized.id).await;
    assert_eq!((job.width, job.height), (256, 256));
    assert_eq!(job.prompt, "a watercolor painting of a heron soft paper texture");

    // An unknown style, an empty prompt and a prompt the style makes too long are refused.
    for (body, field) in [
        (json!({"prompt": "fox", "style": "oil"}), "style"),
        (json!({"prompt": "fox", "style": "x".repeat(10_000)}), "style"),
        (json!({"prompt": "  ", "style": "watercolor"}), "prompt"),
        (
            json!({"prompt": "x".repeat(1990), "style": "watercolor"}),
            "prompt",
        ),
    ] {
        let answer = app.post_json("/api/jobs", &body).await;
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert_eq!(
            answer.body["error"]["field"],
            Value::from(field),
            "{}",
            answer.body
        );
    }
    let answer = app
        .post_json("/api/jobs", &json!({"prompt": "fox", "style": "oil"}))
        .await;
    assert!(
        answer.body["error"]["message"].as_str().unwrap().contains("oil"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_style_deleted_while_its_job_waits_changes_nothing_for_that_job() {
    let app = spawn_app().await;
    let style = create(&app, watercolor()).await;
    // One job holds the only backend, so the styled one waits in line.
    let (first, _first_events) = app.start_held_job("the first", 2, 1).await;
    let waiting = app
        .create_job(json!({"prompt": "a heron", "style": "watercolor"}))
        .await;
    assert_eq!(app.job(&waiting.id).await.status, JobStatus::Queued);
    assert_eq!(app.delete(&format!("/api/styles/{}", style.id)).await.status, 204);
    assert!(names(&app).await.is_empty());
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();
    let events = app.events_until_end(&waiting.id).await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    let job = app.job(&waiting.id).await;
    assert_eq!(job.prompt, "a watercolor painting of a heron soft paper texture");
    assert_eq!((job.width, job.height), (1024, 576));
    assert_eq!(app.job(&first.id).await.status, JobStatus::Completed);
    // The record kept what the style made.
    let history = app.get("/api/history").await;
    assert_eq!(
        history.body["items"][0]["prompt"],
        "a watercolor painting of a heron soft paper texture"
    );
}

#[tokio::test]
async fn a_backup_and_restore_keeps_the_styles() {
    let mut app = spawn_app().await;
    let kept = create(&app, watercolor()).await;
    create(
        &app,
        json!({"name": "墨水", "loras": [{"name": "ink.safetensors", "strength": 0.5}]}),
    )
    .await;
    app.stop().await;
    let backup = tempfile::tempdir().unwrap();
    let restored = Arc::new(tempfile::tempdir().unwrap());
    for (command, data) in [("backup", app.data_dir.path()), ("restore", restored.path())] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_zimage"))
            .args([
                command.as_ref(),
                backup.path().as_os_str(),
                "--data-dir".as_ref(),
                data.as_os_str(),
            ])
            .env_remove("ZIMAGE_DATA_DIR")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let copy = start_gateway(app.sim.clone(), restored).await;
    let answer = copy.get("/api/styles").await;
    let list: StyleList = serde_json::from_value(answer.body).unwrap();
    assert_eq!(
        list.styles
            .iter()
            .map(|style| style.name.as_str())
            .collect::<Vec<_>>(),
        ["Watercolor", "墨水"]
    );
    assert_eq!(list.styles[0], kept);
    assert_eq!(list.styles[1].loras[0].strength, 0.5);
}

#[tokio::test]
async fn openai_clients_pick_a_style_as_a_model() {
    let app = spawn_app().await;
    create(&app, watercolor()).await;
    create(&app, json!({"name": "ink: wash", "prompt_after": "in ink"})).await;
    let (status, _, models) = read("get", sdk().get(app.url("/v1/models")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| model["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "z-image-turbo",
            "z-image-turbo:ink: wash",
            "z-image-turbo:Watercolor"
        ]
    );

    let (status, headers, body) = generate(
        &app,
        "sk-x",
        &json!({"model": "z-image-turbo:Watercolor", "prompt": "a fox"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(headers["x-zimage-model"], "z-image-turbo");
    assert_eq!(body["size"], "1024x576", "{body}");
    assert_eq!(
        body["data"][0]["revised_prompt"], "a watercolor painting of a fox soft paper texture",
        "{body}"
    );
    let (status, _, body) = generate(
        &app,
        "sk-x",
        &json!({"model": "z-image-turbo:ink: wash", "prompt": "a heron", "size": "256x256"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"][0]["revised_prompt"], "a heron in ink", "{body}");

    let (status, _, body) = generate(
        &app,
        "sk-x",
        &json!({"model": "z-image-turbo:oil", "prompt": "a fox"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (kind, param, _) = openai_error(&body);
    assert_eq!(
        (kind.as_str(), param.as_deref()),
        ("invalid_request_error", Some("model"))
    );
}
