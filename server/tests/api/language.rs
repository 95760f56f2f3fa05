//! Two languages: the page and the API's error messages follow the remembered choice (a cookie) or
//! `Accept-Language`; `code` and `field` never change; Chinese prompts round-trip exactly.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use serde_json::{Value, json};
use zimage_contract::{HistoryPage, JobView, MAX_PROMPT_CHARS, Readiness};

use crate::support::{TestApp, completed_image, spawn_app};

fn has_cjk(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(c, '\u{3000}'..='\u{303f}' | '\u{4e00}'..='\u{9fff}' | '\u{ff00}'..='\u{ffef}'))
}

async fn page(app: &TestApp, accept_language: Option<&str>, cookie: Option<&str>) -> String {
    let mut request = app.http.get(app.url("/"));
    if let Some(accept_language) = accept_language {
        request = request.header("Accept-Language", accept_language);
    }
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The page's text without what is meant to name the other language (the switch carries `lang`).
fn without_switch(html: &str) -> String {
    let start = html
        .find("<nav ")
        .unwrap_or_else(|| panic!("no language switch: {html}"));
    let end = html[start..].find("</nav>").map_or(html.len(), |end| start + end);
    format!("{}{}", &html[..start], &html[end..])
}

#[tokio::test]
async fn the_first_render_follows_accept_language_with_the_right_html_lang() {
    let app = spawn_app().await;
    let chinese = page(&app, Some("zh-CN,zh;q=0.9,en;q=0.8"), None).await;
    assert!(chinese.contains(r#"<html lang="zh-CN""#), "{chinese}");
    assert!(
        chinese.contains(r#"placeholder="描述你想要的画面……""#),
        "{chinese}"
    );
    assert!(chinese.contains("生成"));
    for english in [
        "Generate",
        "Prompt",
        "Seed",
        "History",
        "Pair a phone",
        "Describe the image",
    ] {
        assert!(
            !without_switch(&chinese).contains(english),
            "{english} on the Chinese page"
        );
    }
    // The switch offers English, marked as English.
    assert!(chinese.contains(r#"href="/language/en""#), "{chinese}");

    let english = page(&app, Some("en-US,en;q=0.9"), None).await;
    assert!(english.contains(r#"<html lang="en""#), "{english}");
    assert!(english.contains(r#"placeholder="Describe the image...""#));
    let shown = without_switch(&english);
    assert!(!has_cjk(&shown), "Chinese on the English page: {shown}");
    assert!(english.contains(r#"href="/language/zh-CN""#), "{english}");

    // No preference at all is English.
    assert!(page(&app, None, None).await.contains(r#"<html lang="en""#));
}

#[tokio::test]
async fn a_choice_made_on_the_page_is_remembered_and_wins_over_the_browser() {
    let app = spawn_app().await;
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url("/language/zh-CN"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/");
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("zimage_lang=zh-CN"), "{set_cookie}");
    assert!(set_cookie.contains("Max-Age="), "{set_cookie}");

    let remembered = page(&app, Some("en-US"), Some("zimage_lang=zh-CN")).await;
    assert!(remembered.contains(r#"<html lang="zh-CN""#));
    let back = page(&app, Some("zh-CN"), Some("zimage_lang=en")).await;
    assert!(back.contains(r#"<html lang="en""#));
    // A cookie that names no language of ours is ignored.
    let unknown = page(&app, Some("zh-CN"), Some("zimage_lang=tlh")).await;
    assert!(unknown.contains(r#"<html lang="zh-CN""#));

    // Following the link with the cookie jar: the studio comes back in Chinese.
    let followed = app.http.get(app.url("/language/zh-CN")).send().await.unwrap();
    assert!(followed.text().await.unwrap().contains(r#"<html lang="zh-CN""#));
    // An unknown language changes nothing.
    let unknown = app.http.get(app.url("/language/xx")).send().await.unwrap();
    assert!(unknown.text().await.unwrap().contains(r#"<html lang="zh-CN""#));
}

async fn create(app: &TestApp, body: &Value, accept_language: &str) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/api/jobs"))
        .header("Accept-Language", accept_language)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn api_errors_follow_accept_language_with_the_same_code_and_field() {
    let app = spawn_app().await;
    let cases = [
        json!({"prompt": "   "}),
        json!({"prompt": "fox", "width": 500, "height": 512}),
        json!({"prompt": "fox", "seed": "seven"}),
        json!({"prompt": "字".repeat(MAX_PROMPT_CHARS + 1)}),
    ];
    for body in cases {
        let (english_status, english) = create(&app, &body, "en").await;
        let (chinese_status, chinese) = create(&app, &body, "zh-CN,zh;q=0.9").await;
        assert_eq!(english_status, chinese_status, "{body}");
        assert_eq!(english["error"]["code"], chinese["error"]["code"], "{body}");
        assert_eq!(english["error"]["field"], chinese["error"]["field"], "{body}");
        let english_message = english["error"]["message"].as_str().unwrap();
        let chinese_message = chinese["error"]["message"].as_str().unwrap();
        assert!(!has_cjk(english_message), "{english_message}");
        assert!(has_cjk(chinese_message), "{chinese_message}");
    }
    let unknown = app
        .http
        .get(app.url("/api/jobs/0190f1d2-5a0b-7c3e-8f00-000000000000"))
        .header("Accept-Language", "zh-CN")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["message"], "没有这个任务。");
}

#[tokio::test]
async fn readiness_warnings_follow_the_request_s_language() {
    // The simulator reports ComfyUI's recorded CPU device: a warning in every answer.
    let app = spawn_app().await;
    for (accept_language, chinese) in [("en-US", false), ("zh-CN,zh;q=0.9", true)] {
        let response = app
            .http
            .get(app.url("/readyz"))
            .header("Accept-Language", accept_language)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let readiness: Readiness = response.json().await.unwrap();
        assert_eq!(
            readiness.device.as_ref().map(|device| device.kind.as_str()),
            Some("cpu")
        );
        let [warning] = &readiness.warnings[..] else {
            panic!("one warning: {:?}", readiness.warnings);
        };
        assert!(warning.contains("CPU"), "{warning}");
        assert_eq!(has_cjk(warning), chinese, "{warning}");
    }
}

#[tokio::test]
async fn the_prompt_limit_counts_characters_not_bytes() {
    let app = spawn_app().await;
    // 2,000 Chinese characters are 6,000 bytes of UTF-8, and still within the limit.
    let at_limit = "山".repeat(MAX_PROMPT_CHARS);
    let (status, body) = create(
        &app,
        &json!({"prompt": at_limit, "width": 256, "height": 256}),
        "zh-CN",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = create(&app, &json!({"prompt": format!("{at_limit}山")}), "zh-CN").await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["field"], "prompt");
    assert_eq!(
        body["error"]["message"],
        format!(
            "提示词有 {} 个字符，上限是 {MAX_PROMPT_CHARS} 个。",
            MAX_PROMPT_CHARS + 1
        )
    );
}

#[tokio::test]
async fn a_chinese_prompt_round_trips_exactly_through_the_api_history_and_a_restart() {
    let app = spawn_app().await;
    let prompt = "一只戴着斗笠的橘猫，站在雨后的江南石桥上，水墨画风格，留白 🌧️「特写」";
    let (accepted, events) = app.run_small_job(prompt).await;
    completed_image(&events);
    let view: JobView = app.job(&accepted.id).await;
    assert_eq!(view.prompt, prompt);
    // What ComfyUI got is the same text.
    let sent = app.wait_prompts_received(1).await;
    let graph = serde_json::to_string(&sent[0]).unwrap();
    assert!(graph.contains(prompt), "{graph}");

    let history: HistoryPage = serde_json::from_value(app.get("/api/history").await.body).unwrap();
    assert_eq!(history.items[0].prompt, prompt);

    // Reusing it sends it back as it came, and after a restart the history still has it exactly.
    let reused = app
        .create_job(json!({"prompt": history.items[0].prompt, "seed": history.items[0].seed, "width": 256, "height": 256}))
        .await;
    let events = app.events_until_end(&reused.id).await;
    completed_image(&events);
    let app = app.restart_gateway().await;
    let history: HistoryPage = serde_json::from_value(app.get("/api/history").await.body).unwrap();
    assert_eq!(history.items.len(), 2);
    assert!(history.items.iter().all(|item| item.prompt == prompt));
}
