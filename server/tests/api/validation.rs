//! Every rule of `POST /api/jobs`, table-driven: each bad request gets a 4xx JSON error naming the
//! field, nothing reaches ComfyUI, and the gateway stays healthy.

use serde_json::{Value, json};

use crate::support::spawn_app;

#[tokio::test]
async fn each_broken_rule_is_refused_with_its_status_and_field() {
    let app = spawn_app().await;
    let long_prompt = "x".repeat(2001);
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (json!({"prompt": ""}), 422, Some("prompt")),
        (json!({"prompt": "   \n "}), 422, Some("prompt")),
        (json!({"prompt": long_prompt}), 422, Some("prompt")),
        (json!({"prompt": "a\u{0}b"}), 422, Some("prompt")),
        (json!({"seed": 1}), 422, Some("prompt")),
        (json!({"prompt": 42}), 422, Some("prompt")),
        (json!({"prompt": "x", "seed": -1}), 422, Some("seed")),
        (
            json!({"prompt": "x", "seed": 9_007_199_254_740_992_u64}),
            422,
            Some("seed"),
        ),
        (json!({"prompt": "x", "seed": 1.5}), 422, Some("seed")),
        (json!({"prompt": "x", "seed": "7"}), 422, Some("seed")),
        (
            json!({"prompt": "x", "aspect_ratio": "2:1"}),
            422,
            Some("aspect_ratio"),
        ),
        (
            json!({"prompt": "x", "width": 1040, "height": 512}),
            422,
            Some("width"),
        ),
        (
            json!({"prompt": "x", "width": 512, "height": 240}),
            422,
            Some("height"),
        ),
        (
            json!({"prompt": "x", "width": 500, "height": 512}),
            422,
            Some("width"),
        ),
        (json!({"prompt": "x", "width": 512}), 422, Some("height")),
        (
            json!({"prompt": "x", "width": 0, "height": 0}),
            422,
            Some("width"),
        ),
        (
            json!({"prompt": "x", "width": 4_294_967_296_u64, "height": 512}),
            422,
            Some("width"),
        ),
        (
            json!({"prompt": "x", "aspect_ratio": "1:1", "width": 512, "height": 512}),
            422,
            Some("width"),
        ),
        (json!({"prompt": "x", "batch_size": 2}), 422, Some("batch_size")),
        (json!({"prompt": "x", "batch_size": 0}), 422, Some("batch_size")),
        (json!({"prompt": "x", "steps": 50}), 422, Some("steps")),
        (
            json!({"prompt": "x", "sampler_name": "euler"}),
            422,
            Some("sampler_name"),
        ),
        (
            json!({"prompt": "x", "unet_name": "../../evil.gguf"}),
            422,
            Some("unet_name"),
        ),
        (json!(["prompt"]), 422, None),
        (json!("prompt"), 422, None),
    ];
    for (body, status, field) in cases {
        let answer = app.post_json("/api/jobs", &body).await;
        assert_eq!(answer.status, status, "{body} -> {}", answer.body);
        assert_eq!(
            answer.body["error"]["field"].as_str(),
            field,
            "{body} -> {}",
            answer.body
        );
        assert!(
            answer.body["error"]["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty())
        );
    }
    assert!(app.sim.faults().prompts_received().is_empty());
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn malformed_bodies_wrong_types_and_huge_bodies_get_json_errors() {
    let app = spawn_app().await;
    let raw = |body: Vec<u8>, content_type: &'static str| {
        let request = app
            .http
            .post(app.url("/api/jobs"))
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let (status, body) = raw(b"{\"prompt\": ".to_vec(), "application/json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("malformed_json"))
    );
    let (status, _) = raw(b"{\"prompt\": \"\xff\xfe\"}".to_vec(), "application/json").await;
    assert_eq!(status, 400);
    let (status, body) = raw(b"{\"prompt\": \"fox\"}".to_vec(), "text/plain").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unsupported_media_type"))
    );
    let (status, _) = raw(b"prompt=fox".to_vec(), "application/x-www-form-urlencoded").await;
    assert_eq!(status, 400);
    let huge = format!("{{\"prompt\": \"{}\"}}", "x".repeat(70 * 1024));
    let (status, body) = raw(huge.into_bytes(), "application/json").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("body_too_large"))
    );
    let (status, body) = raw(
        b"{\"prompt\": \"a\", \"prompt\": \"b\"}".to_vec(),
        "application/json",
    )
    .await;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("prompt")));

    let wrong_method = app.http.put(app.url("/api/jobs")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert!(app.sim.faults().prompts_received().is_empty());
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn ids_that_are_not_ours_are_not_found() {
    let app = spawn_app().await;
    for path in [
        "/api/jobs/nope",
        "/api/jobs/..%2F..%2Fetc%2Fpasswd",
        "/api/images/..%2Fhistory",
        "/api/images/0190f1d2-5a0b-7c3e-8f00-000000000000",
        "/api/images/0190f1d2-5a0b-7c3e-8f00-000000000000/thumbnail",
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.body["error"]["code"], "not_found", "{path}");
    }
    let answer = app.get("/api/history?limit=1000").await;
    assert_eq!(
        (answer.status, answer.body["error"]["field"].as_str()),
        (422, Some("limit"))
    );
    let answer = app.get("/api/history?before=../../x").await;
    assert_eq!(
        (answer.status, answer.body["error"]["field"].as_str()),
        (422, Some("before"))
    );
}
