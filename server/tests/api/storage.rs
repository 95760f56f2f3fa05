//! What is kept on disk across a crash: the gateway's start-up finishes what an interrupted save or
//! delete left, so the studio shows every image with its record, or neither, and no leftovers; after a
//! clean stop it has nothing to finish and skips the walk through every image.

use std::sync::Arc;

use zimage::history::History;
use zimage::job_id::JobId;
use zimage_contract::JobEvent;

use crate::support::{fetch_image, spawn_app, start_gateway};

/// A copy of image `of` under a new id, with no record: what a crash between the two leaves.
fn image_without_record(images: &std::path::Path, of: &str) -> String {
    let id = JobId::new().to_string();
    std::fs::copy(images.join(format!("{of}.png")), images.join(format!("{id}.png")))
        .expect("cannot copy the image");
    id
}

#[tokio::test]
async fn a_restart_tidies_what_a_crash_left_and_shows_each_image_with_its_record_or_not_at_all() {
    let mut app = spawn_app().await;
    let (job, events) = app.run_small_job("a kept heron").await;
    assert!(
        matches!(events.last(), Some((_, JobEvent::Completed { .. }))),
        "{events:?}"
    );
    let kept = job.id;
    app.crash().await;

    let images = app.data_dir.path().join("images");
    // A crash between an image and its record: an image without a record...
    let unrecorded = image_without_record(&images, &kept);
    // ...a row whose image is gone (a delete interrupted the other way round)...
    let history = History::open(app.data_dir.path()).await.unwrap();
    let mut record = history.get(kept.parse().unwrap()).unwrap();
    record.id = JobId::new();
    let imageless = record.id.to_string();
    history.add(record).await.unwrap();
    drop(history);
    // ...and writes cut short.
    std::fs::write(
        images.join(format!(".{unrecorded}.png.a1b2c3.tmp")),
        b"\x89PNG half",
    )
    .unwrap();

    let app = start_gateway(app.sim.clone(), Arc::clone(&app.data_dir)).await;
    let listed = app.get("/api/history").await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    assert_eq!(listed.body["items"][0]["id"], kept.as_str());
    let (_, image, _) = fetch_image(&app, &format!("/api/images/{kept}")).await;
    assert_eq!((image.width(), image.height()), (256, 256));
    for gone in [&unrecorded, &imageless] {
        assert_eq!(
            app.get(&format!("/api/images/{gone}")).await.status,
            404,
            "{gone}"
        );
        assert_eq!(app.get(&format!("/api/jobs/{gone}")).await.status, 404, "{gone}");
    }

    let mut left: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected = vec![format!("{kept}.png"), "lost+found".to_owned()];
    expected.sort();
    assert_eq!(left, expected);
    // The image without a record is kept aside for a person to find, not deleted.
    assert!(
        images
            .join("lost+found")
            .join(format!("{unrecorded}.png"))
            .is_file()
    );
}

#[tokio::test]
async fn a_clean_stop_lets_the_next_start_skip_the_recovery_and_a_crash_after_it_does_not() {
    let mut app = spawn_app().await;
    let (job, _) = app.run_small_job("a heron at dusk").await;
    let kept = job.id;
    app.stop().await;

    // An image without a record, put there behind the studio's back after the clean stop: the next
    // start reads no folder, so it stays where it is.
    let images = app.data_dir.path().join("images");
    let stray = image_without_record(&images, &kept);
    let mut app = start_gateway(app.sim.clone(), Arc::clone(&app.data_dir)).await;
    assert!(images.join(format!("{stray}.png")).is_file());
    let listed = app.get("/api/history").await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );

    // That start took the mark away: after a crash of this run, the next start checks every image.
    app.crash().await;
    let app = start_gateway(app.sim.clone(), Arc::clone(&app.data_dir)).await;
    assert!(!images.join(format!("{stray}.png")).exists());
    assert!(images.join("lost+found").join(format!("{stray}.png")).is_file());
    let listed = app.get("/api/history").await;
    assert_eq!(listed.body["items"][0]["id"], kept.as_str());
}
