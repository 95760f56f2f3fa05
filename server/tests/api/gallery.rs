//! The gallery's API: search (English words, Chinese substrings, seeds), paging through results,
//! stars and the starred filter, on a gateway whose history holds real images.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::sync::Arc;

use serde_json::{Value, json};
use zimage::history::{History, HistoryRecord};
use zimage::job_id::JobId;
use zimage_contract::JobEvent;

use crate::support::{TestApp, spawn_app, start_gateway};

/// A gateway whose history holds one image per prompt (oldest first), each with its real PNG: one job
/// through the simulator, then its image copied under the other ids while the gateway is stopped.
async fn gallery_of(prompts: &[(&str, u64)]) -> (TestApp, Vec<String>) {
    let mut app = spawn_app().await;
    let (job, events) = app.run_small_job("the first image").await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    app.stop().await;
    let images = app.data_dir.path().join("images");
    let history = History::open(app.data_dir.path()).await.unwrap();
    let first: JobId = job.id.parse().unwrap();
    let template = history.get(first).unwrap();
    assert!(history.remove(first).await.unwrap());
    let mut ids = Vec::new();
    for &(prompt, seed) in prompts {
        let record = HistoryRecord {
            id: JobId::new(),
            prompt: prompt.to_owned(),
            seed,
            ..template.clone()
        };
        std::fs::copy(
            images.join(format!("{first}.png")),
            images.join(format!("{}.png", record.id)),
        )
        .unwrap();
        ids.push(record.id.to_string());
        history.add(record).await.unwrap();
    }
    std::fs::remove_file(images.join(format!("{first}.png"))).unwrap();
    drop(history);
    (
        start_gateway(app.sim.clone(), Arc::clone(&app.data_dir)).await,
        ids,
    )
}

/// The ids a history query lists, newest first, and the next page's `before`.
async fn listed(app: &TestApp, query: &str) -> (Vec<String>, Option<String>) {
    let answer = app.get(&format!("/api/history?{query}")).await;
    assert_eq!(answer.status, 200, "{query}: {}", answer.body);
    let ids = answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, answer.body["next_before"].as_str().map(str::to_owned))
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn search_finds_english_words_chinese_substrings_and_seeds() {
    let (app, ids) = gallery_of(&[
        ("A red fox in the snow", 7),
        ("一只在雪地里的红狐狸", 8),
        ("a lighthouse at dusk", 123_456_789),
        ("狐狸和兔子 in the meadow", 9),
        ("seed 7 written in the prompt", 10),
    ])
    .await;
    let search = |text: &str| format!("q={}", encode(text));
    let cases: [(&str, Vec<&String>); 8] = [
        ("fox", vec![&ids[0]]),
        ("FOX snow", vec![&ids[0]]),
        ("狐狸", vec![&ids[3], &ids[1]]),
        ("红狐狸", vec![&ids[1]]),
        ("123456789", vec![&ids[2]]),
        // A number matches the seed and the prompt's words.
        ("7", vec![&ids[4], &ids[0]]),
        ("unicorn", vec![]),
        ("  ", ids.iter().rev().collect()),
    ];
    for (text, expected) in cases {
        let (found, next) = listed(&app, &search(text)).await;
        assert_eq!(found.iter().collect::<Vec<_>>(), expected, "{text:?}");
        assert_eq!(next, None, "{text:?}");
    }
    // Query syntax is only text.
    for odd in ["\"", "fox*", "NOT fox", "a OR b", "%", "_"] {
        let (found, _) = listed(&app, &search(odd)).await;
        assert!(found.is_empty(), "{odd:?}: {found:?}");
    }
}

#[tokio::test]
async fn search_results_page_with_before_like_the_whole_history() {
    let prompts: Vec<(String, u64)> = (0..7)
        .map(|n| {
            (
                format!("{} number {n}", if n % 2 == 0 { "heron" } else { "owl" }),
                n,
            )
        })
        .collect();
    let borrowed: Vec<(&str, u64)> = prompts
        .iter()
        .map(|(prompt, seed)| (prompt.as_str(), *seed))
        .collect();
    let (app, ids) = gallery_of(&borrowed).await;
    let herons: Vec<String> = [6, 4, 2, 0].iter().map(|&n| ids[n].clone()).collect();
    let mut seen = Vec::new();
    let mut before: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &before {
            Some(before) => format!("q=heron&limit=3&before={before}"),
            None => "q=heron&limit=3".to_owned(),
        };
        let (page, next) = listed(&app, &query).await;
        pages += 1;
        seen.extend(page);
        match next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!((seen, pages), (herons, 2));
}

#[tokio::test]
async fn any_device_stars_and_unstars_and_the_filter_combines_with_a_search() {
    let (app, ids) = gallery_of(&[("fox one", 1), ("owl two", 2), ("fox three", 3)]).await;
    for id in &ids {
        let (page, _) = listed(&app, "").await;
        assert!(page.contains(id));
    }
    let item = app
        .patch_json(&format!("/api/history/{}", ids[0]), &json!({"starred": true}))
        .await;
    assert_eq!(item.status, 200, "{}", item.body);
    assert_eq!(item.body["starred"], true);
    assert_eq!(item.body["id"], ids[0].as_str());
    // Another device (no cookie of the maker) may star too: the gallery is shared.
    let other = reqwest::Client::new();
    let response = other
        .patch(app.url(&format!("/api/history/{}", ids[1])))
        .json(&json!({"starred": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(
        listed(&app, "starred=true").await.0,
        vec![ids[1].clone(), ids[0].clone()]
    );
    assert_eq!(listed(&app, "starred=true&q=fox").await.0, vec![ids[0].clone()]);
    assert_eq!(listed(&app, "starred=false").await.0.len(), 3);
    let all = app.get("/api/history").await;
    let starred: Vec<bool> = all.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["starred"].as_bool().unwrap())
        .collect();
    assert_eq!(starred, vec![false, true, true]);

    let item = app
        .patch_json(&format!("/api/history/{}", ids[0]), &json!({"starred": false}))
        .await;
    assert_eq!(item.body["starred"], false);
    assert_eq!(listed(&app, "starred=true").await.0, vec![ids[1].clone()]);
    // Stars are kept across a restart.
    let app = app.restart_gateway().await;
    assert_eq!(listed(&app, "starred=true").await.0, vec![ids[1].clone()]);
}

#[tokio::test]
async fn starring_refuses_unknown_images_and_malformed_bodies_naming_the_field() {
    let (app, ids) = gallery_of(&[("fox", 1)]).await;
    let unknown = app
        .patch_json(
            &format!("/api/history/{}", JobId::new()),
            &json!({"starred": true}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let not_an_id = app
        .patch_json("/api/history/not-an-id", &json!({"starred": true}))
        .await;
    assert_eq!(not_an_id.status, 404);
    let path = format!("/api/history/{}", ids[0]);
    for (body, field) in [
        (json!({"starred": "yes"}), "starred"),
        (json!({}), "starred"),
        (json!({"starred": true, "color": "red"}), "color"),
    ] {
        let answer = app.patch_json(&path, &body).await;
        assert!(
            (400..500).contains(&answer.status) && answer.status != 404,
            "{body}: {} {}",
            answer.status,
            answer.body
        );
        let named = answer.body["error"]["field"].as_str().unwrap_or_default();
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            named == field || message.contains(field),
            "{body}: {}",
            answer.body
        );
    }
    for (query, field) in [
        ("starred=yes", "starred"),
        (&format!("q={}", "x".repeat(201)) as &str, "q"),
    ] {
        let answer = app.get(&format!("/api/history?{query}")).await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.body);
        assert_eq!(answer.body["error"]["field"], Value::from(field), "{query}");
    }
    // Nothing was starred by the refusals.
    assert!(listed(&app, "starred=true").await.0.is_empty());
}

/// `zimage backup` while the studio runs, `zimage restore` into a new folder, and a studio on that
/// folder shows the same gallery: images, stars and search.
#[tokio::test]
async fn the_backup_and_restore_commands_round_trip_a_running_studio() {
    let (app, ids) = gallery_of(&[("一只在雪地里的红狐狸", 1), ("a heron", 2)]).await;
    let starred = app
        .patch_json(&format!("/api/history/{}", ids[1]), &json!({"starred": true}))
        .await;
    assert_eq!(starred.status, 200);
    let kept = tempfile::tempdir().unwrap();
    let zimage = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_zimage"))
            .args(args)
            .env_remove("ZIMAGE_DATA_DIR")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, said) = zimage(&[
        "backup".as_ref(),
        kept.path().as_os_str(),
        "--data-dir".as_ref(),
        app.data_dir.path().as_os_str(),
    ]);
    assert!(ok, "{said}");
    assert!(said.contains("backed up 2 images"), "{said}");

    // Restoring over the running studio's folder is refused.
    let (ok, said) = zimage(&[
        "restore".as_ref(),
        kept.path().as_os_str(),
        "--data-dir".as_ref(),
        app.data_dir.path().as_os_str(),
    ]);
    assert!(!ok && said.contains("not empty"), "{said}");

    let restored = Arc::new(tempfile::tempdir().unwrap());
    let (ok, said) = zimage(&[
        "restore".as_ref(),
        kept.path().as_os_str(),
        "--data-dir".as_ref(),
        restored.path().as_os_str(),
    ]);
    assert!(ok, "{said}");
    let copy = start_gateway(app.sim.clone(), restored).await;
    assert_eq!(listed(&copy, "").await.0, vec![ids[1].clone(), ids[0].clone()]);
    assert_eq!(listed(&copy, "starred=true").await.0, vec![ids[1].clone()]);
    assert_eq!(
        listed(&copy, &format!("q={}", encode("狐狸"))).await.0,
        vec![ids[0].clone()]
    );
    let original = app.get(&format!("/api/images/{}", ids[0])).await;
    assert_eq!(original.status, 200);
    let image = copy
        .http
        .get(copy.url(&format!("/api/images/{}", ids[0])))
        .send()
        .await
        .unwrap();
    let direct = app
        .http
        .get(app.url(&format!("/api/images/{}", ids[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(image.bytes().await.unwrap(), direct.bytes().await.unwrap());
}
