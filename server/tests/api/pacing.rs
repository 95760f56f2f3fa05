//! Which event goes first when ComfyUI sends a step's progress and its live preview back to back: the
//! progress, at once, to every watcher; the preview a moment later, and only the newest.

use serde_json::json;
use zimage_contract::JobEvent;

use crate::support::spawn_app;

#[tokio::test]
async fn a_steps_progress_reaches_watchers_before_its_preview_is_announced() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(3));
    let accepted = app
        .create_job(json!({"prompt": "a quiet harbour", "width": 256, "height": 256}))
        .await;
    let mut events = app.events(&accepted.id, None).await;
    let mut progress_seen = 0;
    let url = loop {
        match events.next().await.map(|(_, event)| event) {
            Some(JobEvent::Progress { step, .. }) => progress_seen = step,
            Some(JobEvent::Preview { url }) => break url,
            Some(other) => assert!(!other.is_terminal(), "{other:?}"),
            None => panic!("the stream ended before a preview"),
        }
    };
    // The preview's serial (`?n=`) counts previews, one per step here.
    let serial: u32 = url.rsplit("n=").next().unwrap().parse().unwrap();
    assert!(
        serial >= 1 && serial <= progress_seen,
        "preview {serial} after progress {progress_seen}"
    );
    app.sim.faults().hold_at_step(None);
    app.sim.faults().release();
    events.until(JobEvent::is_terminal).await;
}
