//! A finished job is announced as soon as its image can be served (from memory) and is written to disk
//! right behind: whatever a client does the moment `completed` arrives (show the image, load the
//! thumbnail, refresh the gallery, delete the image, or stop the gateway) sees a consistent studio.

use serde_json::json;
use zimage_contract::JobEvent;

use crate::support::{fetch_image, spawn_app};

fn small_job(prompt: &str) -> serde_json::Value {
    json!({"prompt": prompt, "width": 256, "height": 256})
}

/// Submits a job and waits for its `completed` event; the job id.
async fn completed_job(app: &crate::support::TestApp, prompt: &str) -> String {
    let job = app.create_job(small_job(prompt)).await;
    let events = app.events_until_end(&job.id).await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    job.id
}

#[tokio::test]
async fn the_image_its_thumbnail_and_its_history_entry_are_there_the_moment_completed_is_announced() {
    let app = spawn_app().await;
    let id = completed_job(&app, "a heron").await;
    let (content_type, image, _) = fetch_image(&app, &format!("/api/images/{id}")).await;
    assert_eq!(content_type, "image/png");
    assert_eq!((image.width(), image.height()), (256, 256));
    let (content_type, _, _) = fetch_image(&app, &format!("/api/images/{id}/thumbnail")).await;
    assert_eq!(content_type, "image/jpeg");
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"][0]["id"], id.as_str());
}

#[tokio::test]
async fn an_image_deleted_the_moment_it_completes_stays_deleted() {
    let app = spawn_app().await;
    let id = completed_job(&app, "a kettle").await;
    assert_eq!(app.delete(&format!("/api/history/{id}")).await.status, 204);
    // A write still under way when the delete came must not bring the image or its record back.
    assert_eq!(app.get(&format!("/api/images/{id}")).await.status, 404);
    let files = std::fs::read_dir(app.data_dir.path().join("images"))
        .unwrap()
        .count();
    assert_eq!(files, 0);
    let app = app.restart_gateway().await;
    assert_eq!(app.get("/api/history").await.body["items"], json!([]));
}

#[tokio::test]
async fn a_gateway_stopped_the_moment_a_job_completes_still_keeps_the_image() {
    let app = spawn_app().await;
    let id = completed_job(&app, "a lantern").await;
    let app = app.restart_gateway().await;
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"][0]["id"], id.as_str());
    let (_, image, _) = fetch_image(&app, &format!("/api/images/{id}")).await;
    assert_eq!((image.width(), image.height()), (256, 256));
}

/// The download that follows `completed` is served from memory, as the pieces the file was written
/// from: it says its length, and it is byte for byte the file on disk, as the next download (read from
/// the disk) is.
#[tokio::test]
async fn the_first_download_is_the_file_on_disk_and_says_its_length() {
    let app = spawn_app().await;
    let id = completed_job(&app, "a teapot").await;
    let on_disk = std::fs::read(app.data_dir.path().join("images").join(format!("{id}.png"))).unwrap();
    for read in ["first, from memory", "second, from the disk"] {
        let answer = app
            .http
            .get(app.url(&format!("/api/images/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{read}");
        let length = answer.headers()[reqwest::header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .to_owned();
        let body = answer.bytes().await.unwrap();
        assert_eq!(length, body.len().to_string(), "{read}");
        assert!(
            body[..] == on_disk[..],
            "the {read} download differs from the file"
        );
    }
}
