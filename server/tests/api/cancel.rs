//! Cancelling: a pending job leaves ComfyUI's queue, a running one is interrupted by its prompt id.

use serde_json::json;
use zimage_contract::{JobEvent, JobStatus};

use crate::support::spawn_app;

#[tokio::test]
async fn cancelling_a_pending_job_removes_it_from_the_queue_and_leaves_the_running_one_alone() {
    let app = spawn_app().await;
    let (_, mut running_events) = app.start_held_job("first", 2, 1).await;
    let pending = app
        .create_job(json!({"prompt": "second", "width": 256, "height": 256}))
        .await;
    let mut pending_events = app.events(&pending.id, None).await;
    pending_events
        .until(|event| matches!(event, JobEvent::Queued { .. }))
        .await;

    let answer = app.delete(&format!("/api/jobs/{}", pending.id)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let (_, last) = pending_events.until(JobEvent::is_terminal).await;
    assert_eq!(last, JobEvent::Cancelled {});
    assert_eq!(app.job(&pending.id).await.status, JobStatus::Cancelled);
    let queue = app
        .http
        .get(format!("{}/queue", app.sim.url()))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(queue["queue_pending"], json!([]), "{queue}");

    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();
    let (_, last) = running_events.until(JobEvent::is_terminal).await;
    assert!(matches!(last, JobEvent::Completed { .. }), "{last:?}");
}

#[tokio::test]
async fn cancelling_a_running_job_interrupts_it() {
    let app = spawn_app().await;
    let (accepted, mut events) = app.start_held_job("fox", 3, 2).await;

    let answer = app.delete(&format!("/api/jobs/{}", accepted.id)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let (_, last) = events.until(JobEvent::is_terminal).await;
    assert_eq!(last, JobEvent::Cancelled {});
    app.sim.faults().hold_at_step(None);
    let job = app.job(&accepted.id).await;
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.image_url.is_none());
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"], json!([]));
}

#[tokio::test]
async fn a_finished_job_cannot_be_cancelled_and_an_unknown_one_is_not_found() {
    let app = spawn_app().await;
    let accepted = app
        .create_job(json!({"prompt": "fox", "width": 256, "height": 256}))
        .await;
    app.events_until_end(&accepted.id).await;
    let answer = app.delete(&format!("/api/jobs/{}", accepted.id)).await;
    assert_eq!(answer.status, 409);
    assert_eq!(answer.body["error"]["code"], "conflict");
    assert_eq!(
        app.delete("/api/jobs/0190f1d2-5a0b-7c3e-8f00-000000000000")
            .await
            .status,
        404
    );
}

/// A cancel is final even when ComfyUI finishes the image anyway (the interrupt came after its last
/// check): the job ends `cancelled`, and the image never enters the household's gallery. (Once the
/// finished image was fetched and kept, and the job ended `completed` after its cancel was answered.)
#[tokio::test]
async fn a_cancel_answered_202_ends_cancelled_even_when_comfyui_finishes_the_image() {
    let app = spawn_app().await;
    let (accepted, mut events) = app.start_held_job("too late to stop", 3, 2).await;
    app.sim.faults().ignore_interrupts(true);

    let answer = app.delete(&format!("/api/jobs/{}", accepted.id)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    app.sim.faults().release();
    let (_, last) = events.until(JobEvent::is_terminal).await;
    assert_eq!(last, JobEvent::Cancelled {});
    // ComfyUI did make it: the gateway threw it away.
    let at_comfyui: serde_json::Value = app
        .http
        .get(format!("{}/history/{}", app.sim.url(), accepted.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        at_comfyui[&accepted.id]["status"]["status_str"],
        json!("success"),
        "{at_comfyui}"
    );
    assert_eq!(app.job(&accepted.id).await.status, JobStatus::Cancelled);
    let image = app.get(&format!("/api/images/{}", accepted.id)).await;
    assert_eq!(image.status, 404);
    let gallery = app.get("/api/history").await;
    assert_eq!(gallery.body["items"], json!([]), "{}", gallery.body);
}

/// A cancel answered 202 is on disk before the answer: after the gateway is killed and started again
/// (with its backend back), the job is `cancelled`, not sent again, and its ending is still readable.
/// (Once the journal kept no cancel: the job came back `queued` and ran.)
#[tokio::test]
async fn a_cancel_answered_202_survives_a_kill_and_a_restart() {
    let mut app = spawn_app().await;
    let (accepted, events) = app
        .start_held_job("cancelled while its backend is away", 3, 2)
        .await;
    drop(events);
    // The backend goes away while holding the job; the person cancels meanwhile.
    app.sim.faults().refuse_connections(true);
    let answer = app.delete(&format!("/api/jobs/{}", accepted.id)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    app.crash().await;
    app.sim.faults().release();
    app.sim.faults().refuse_connections(false);
    let app = crate::support::start_gateway(app.sim.clone(), std::sync::Arc::clone(&app.data_dir)).await;
    let events = app.events_until_end(&accepted.id).await;
    assert_eq!(
        events.last().map(|(_, event)| event),
        Some(&JobEvent::Cancelled {}),
        "{events:?}"
    );
    assert_eq!(app.job(&accepted.id).await.status, JobStatus::Cancelled);
    let sent = crate::engine_support::prompt_ids_received(&app);
    assert_eq!(sent, vec![accepted.id.clone()], "sent once, never again");
    let gallery = app.get("/api/history").await;
    assert_eq!(gallery.body["items"], json!([]), "{}", gallery.body);
}
