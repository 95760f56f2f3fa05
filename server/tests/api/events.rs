//! The SSE contract: ids, resuming with Last-Event-ID, late subscribers, unknown jobs.

use serde_json::json;
use zimage_contract::JobEvent;

use crate::support::spawn_app;

#[tokio::test]
async fn a_client_that_reconnects_with_last_event_id_gets_exactly_what_it_missed() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(4));
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    let mut first = app.events(&accepted.id, None).await;
    let (seen, _) = first
        .until(|event| matches!(event, JobEvent::Progress { step: 2, .. }))
        .await;
    drop(first);
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();

    let all = app.events_until_end(&accepted.id).await;
    let resumed = app
        .events(&accepted.id, Some(&seen.to_string()))
        .await
        .until_end()
        .await;
    let missed: Vec<_> = all.into_iter().filter(|(id, _)| *id > seen).collect();
    assert_eq!(resumed, missed);
    let first_progress = resumed
        .iter()
        .find(|(_, event)| matches!(event, JobEvent::Progress { .. }));
    assert!(
        matches!(first_progress, Some((_, JobEvent::Progress { step: 3, .. }))),
        "{resumed:?}"
    );
}

#[tokio::test]
async fn a_subscriber_after_the_end_gets_the_terminal_event_at_once() {
    let app = spawn_app().await;
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    let live = app.events_until_end(&accepted.id).await;
    let (last_id, last) = live.last().cloned().unwrap();
    let late = app
        .events(&accepted.id, Some(&(last_id - 1).to_string()))
        .await
        .until_end()
        .await;
    assert_eq!(late, vec![(last_id, last)]);
}

#[tokio::test]
async fn unknown_jobs_and_bad_last_event_ids_are_refused_with_json() {
    let app = spawn_app().await;
    let unknown = app
        .get("/api/jobs/0190f1d2-5a0b-7c3e-8f00-000000000000/events")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["code"], "not_found");
    assert_eq!(
        app.get("/api/jobs/..%2F..%2Fetc%2Fpasswd/events").await.status,
        404
    );

    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    for bad in ["-1", "abc", "99999999999999999999999999"] {
        let response = app
            .http
            .get(app.url(&format!("/api/jobs/{}/events", accepted.id)))
            .header("Last-Event-ID", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], "Last-Event-ID");
    }
}

#[tokio::test]
async fn many_watchers_of_one_job_all_see_every_event() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(1));
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    let mut readers = Vec::new();
    for _ in 0..20 {
        readers.push(app.events(&accepted.id, None).await);
    }
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();
    let mut logs = Vec::new();
    for reader in readers {
        logs.push(reader.until_end().await);
    }
    assert!(logs.windows(2).all(|pair| pair[0] == pair[1]));
    assert!(matches!(logs[0].last(), Some((_, JobEvent::Completed { .. }))));
}
