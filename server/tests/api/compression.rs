//! Compression: every text answer goes out in br or gzip as the browser asks, the server-rendered page
//! included; the event streams never do (a compressor would hold events back) and neither do images.

use std::io::Read as _;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use serde_json::json;
use zimage_contract::JobEvent;

use crate::support::{PATIENCE, completed_image, spawn_app};

#[tokio::test]
async fn the_page_comes_back_in_brotli_or_gzip_as_the_browser_asks() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/"))
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "br");
    assert!(
        response.headers()["vary"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("accept-encoding")
    );
    let compressed = response.bytes().await.unwrap();
    let mut html = String::new();
    brotli::Decompressor::new(&compressed[..], 4096)
        .read_to_string(&mut html)
        .unwrap();
    assert!(html.contains("<textarea"), "{html}");
    assert!(
        compressed.len() < html.len() / 2,
        "{} of {}",
        compressed.len(),
        html.len()
    );

    let gzip = app
        .http
        .get(app.url("/"))
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzip.headers()["content-encoding"], "gzip");

    // A browser that asks for nothing gets the page as it is.
    let plain = app.http.get(app.url("/")).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert!(plain.text().await.unwrap().contains("<textarea"));
}

#[tokio::test]
async fn json_answers_are_compressed_too() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/readyz"))
        .header("Accept-Encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "br");
    let compressed = response.bytes().await.unwrap();
    let mut text = String::new();
    brotli::Decompressor::new(&compressed[..], 4096)
        .read_to_string(&mut text)
        .unwrap();
    let readiness: zimage_contract::Readiness = serde_json::from_str(&text).unwrap();
    assert!(readiness.ready, "{text}");
}

#[tokio::test]
async fn an_event_stream_is_never_compressed_and_arrives_event_by_event() {
    let app = spawn_app().await;
    // The job stops before step 4 and stays there: a compressor buffering the stream would hold the
    // first steps back, and this read would time out.
    app.sim.faults().hold_at_step(Some(4));
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    let response = app
        .http
        .get(app.url(&format!("/api/jobs/{}/events", accepted.id)))
        .header("Accept-Encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none());
    let mut stream = response.bytes_stream().eventsource();
    loop {
        let event = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("an event while the job is held")
            .expect("the stream is open")
            .unwrap();
        let parsed = JobEvent::from_sse(&event.event, &event.data).unwrap();
        if matches!(parsed, JobEvent::Progress { step: 2, .. }) {
            break;
        }
    }
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();

    // The finished image is a PNG, already compressed: it goes out as it is.
    let image_url = completed_image(&app.events_until_end(&accepted.id).await);
    let image = app
        .http
        .get(app.url(&image_url))
        .header("Accept-Encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 200);
    assert!(image.headers().get("content-encoding").is_none());
}
