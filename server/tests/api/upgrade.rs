//! An update from a version that kept one JSON record per image: today's gateway started on a copy of
//! a data folder that version made (`server/tests/fixtures/data-before-sqlite`) imports the records
//! once, loses none, and its gallery lists, searches, stars and serves them.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use zimage::history::{HistoryRecord, IMPORTED_DIR, LEGACY_DIR};

use crate::support::{fetch_image, spawn_app, start_gateway, workspace_file};

/// Copies the fixture folder into `to`, file by file (two levels: `history/`, `images/`).
fn copy_fixture(to: &Path) -> Vec<HistoryRecord> {
    let from = workspace_file("server/tests/fixtures/data-before-sqlite");
    let mut records = Vec::new();
    for folder in [LEGACY_DIR, "images"] {
        std::fs::create_dir_all(to.join(folder)).expect("cannot make the folder");
        for entry in std::fs::read_dir(from.join(folder)).expect("no fixture folder") {
            let path = entry.expect("cannot list the fixture").path();
            let name = path.file_name().expect("a file name");
            std::fs::copy(&path, to.join(folder).join(name)).expect("cannot copy the fixture");
            if folder == LEGACY_DIR {
                let bytes = std::fs::read(&path).expect("cannot read a record");
                records.push(serde_json::from_slice(&bytes).expect("a record of the older version"));
            }
        }
    }
    records.sort_by_key(|record: &HistoryRecord| record.id);
    records
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_data_folder_of_the_json_history_is_imported_once_and_nothing_is_lost() {
    // A simulator to stand behind the gateway; its own first gateway is not needed.
    let mut first = spawn_app().await;
    first.stop().await;
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let records = copy_fixture(data_dir.path());
    assert_eq!(records.len(), 5);

    let mut app = start_gateway(first.sim.clone(), Arc::clone(&data_dir)).await;
    let page = app.get("/api/history?limit=100").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let newest_first: Vec<String> = records.iter().rev().map(|record| record.id.to_string()).collect();
    assert_eq!(ids(&page.body), newest_first);
    for (item, record) in page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(records.iter().rev())
    {
        assert_eq!(item["prompt"], record.prompt.as_str());
        assert_eq!(item["seed"], record.seed);
        assert_eq!(item["timings"]["queued_at"], record.timings.queued_at);
        assert_eq!(item["starred"], false);
    }
    // The older folder is kept aside as it was.
    assert!(!data_dir.path().join(LEGACY_DIR).exists());
    assert_eq!(
        std::fs::read_dir(data_dir.path().join(IMPORTED_DIR))
            .unwrap()
            .count(),
        5
    );

    // Searched like any other: a Chinese substring, an English word, a seed above 2^32.
    let fox = records
        .iter()
        .find(|record| record.prompt.contains("狐狸"))
        .unwrap();
    let found = app.get("/api/history?q=%E7%8B%90%E7%8B%B8").await;
    assert_eq!(ids(&found.body), vec![fox.id.to_string()]);
    let found = app.get("/api/history?q=lighthouse").await;
    assert_eq!(ids(&found.body).len(), 1);
    let found = app.get("/api/history?q=1234567890123").await;
    assert_eq!(found.body["items"][0]["prompt"], "夜晚的城市 neon rain");

    // Served (a thumbnail made then, and one made now), and starred.
    for record in &records {
        let (_, image, _) = fetch_image(&app, &format!("/api/images/{}", record.id)).await;
        assert_eq!((image.width(), image.height()), (256, 256));
        let (kind, thumbnail, _) = fetch_image(&app, &format!("/api/images/{}/thumbnail", record.id)).await;
        assert_eq!(kind, "image/jpeg");
        assert_eq!(thumbnail.width(), thumbnail.height());
    }
    let starred = app
        .patch_json(&format!("/api/history/{}", fox.id), &json!({"starred": true}))
        .await;
    assert_eq!(starred.status, 200, "{}", starred.body);

    // A restart imports nothing again: the same five, the star kept.
    app.stop().await;
    let app = start_gateway(first.sim.clone(), Arc::clone(&data_dir)).await;
    let page = app.get("/api/history?limit=100").await;
    assert_eq!(ids(&page.body), newest_first);
    let starred = app.get("/api/history?starred=true").await;
    assert_eq!(ids(&starred.body), vec![fox.id.to_string()]);
}
