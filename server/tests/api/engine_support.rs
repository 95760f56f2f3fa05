//! Helpers of the job-engine tests: the deadline poll every wait goes through, and what the simulator
//! and the gateway hold, read the way a test asserts on them.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use serde_json::Value;
use zimage_contract::{HistoryPage, JobEvent};

use crate::support::TestApp;
pub(crate) use crate::support::eventually;

/// The simulator's `GET /queue`: `queue_running` and `queue_pending`, each item
/// `[number, prompt_id, prompt, extra_data, outputs]`.
pub(crate) async fn comfy_queue(app: &TestApp) -> Value {
    app.http
        .get(format!("{}/queue", app.sim.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The prompt ids in one list of [`comfy_queue`]'s answer.
pub(crate) fn queue_ids(queue: &Value, list: &str) -> Vec<String> {
    queue[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[1].as_str().unwrap().to_owned())
        .collect()
}

/// The `prompt_id` of every prompt ComfyUI accepted, oldest first (the gateway uses the job id).
pub(crate) fn prompt_ids_received(app: &TestApp) -> Vec<String> {
    app.sim
        .faults()
        .prompts_received()
        .iter()
        .map(|body| body["prompt_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The ids in the gallery (the newest hundred), newest first.
pub(crate) async fn history_ids(app: &TestApp) -> Vec<String> {
    let answer = app.get("/api/history?limit=100").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let page: HistoryPage = serde_json::from_value(answer.body).unwrap();
    page.items.into_iter().map(|item| item.id).collect()
}

/// The positions of the `queued` events among `events`, in order; a position repeated right after
/// itself says nothing new, so repeats are collapsed.
pub(crate) fn queued_positions(events: &[(u64, JobEvent)]) -> Vec<u32> {
    let mut positions: Vec<u32> = events
        .iter()
        .filter_map(|(_, event)| match event {
            JobEvent::Queued { position } => Some(*position),
            _ => None,
        })
        .collect();
    positions.dedup();
    positions
}

/// True for a message written for a person: a capitalised sentence of a few words with its full stop,
/// not a code or a bare error value.
pub(crate) fn is_sentence(message: &str) -> bool {
    message.chars().next().is_some_and(char::is_uppercase)
        && message.ends_with('.')
        && message.split_whitespace().count() >= 3
}
