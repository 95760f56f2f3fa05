//! What a ComfyUI process holds in memory: the prompt queue, the running prompt, the history and
//! the node output cache. A restart loses all of it, as it does for the real server.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::executor::CacheEntry;
use crate::ordered::OValue;

/// ComfyUI keeps at most this many history entries (execution.py `MAXIMUM_HISTORY_SIZE`).
const MAXIMUM_HISTORY_SIZE: usize = 10_000;

/// A queued prompt: the 5-element tuple ComfyUI serialises in `/queue` and history.
#[derive(Debug, Clone)]
pub(crate) struct QueueItem {
    /// The queue number as answered by `POST /prompt` (an int, or a float when the client chose it).
    pub(crate) number: Value,
    /// The priority the heap orders by (lower runs first).
    pub(crate) sort_key: f64,
    pub(crate) prompt_id: String,
    /// The graph with its key order kept (it decides the execution order).
    pub(crate) graph: OValue,
    pub(crate) extra_data: Map<String, Value>,
    pub(crate) outputs: Vec<String>,
}

impl QueueItem {
    /// `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
    pub(crate) fn to_json(&self) -> Value {
        json!([
            self.number,
            self.prompt_id,
            self.graph.to_value(),
            self.extra_data,
            self.outputs
        ])
    }

    /// `extra_data.client_id`: the socket that gets this prompt's events.
    pub(crate) fn client_id(&self) -> Option<String> {
        match self.extra_data.get("client_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(id.clone()),
            // A non-string id matches no socket, as in Python where `1 != "1"`.
            Some(other) => Some(format!("\u{0}{other}")),
        }
    }

    pub(crate) fn create_time(&self) -> Option<i64> {
        self.extra_data.get("create_time").and_then(Value::as_i64)
    }

    /// `extra_data.extra_pnginfo.workflow.id`, which `/api/jobs?workflow_id=` matches.
    pub(crate) fn workflow_id(&self) -> Option<Value> {
        self.extra_data
            .get("extra_pnginfo")?
            .get("workflow")?
            .get("id")
            .cloned()
    }
}

/// A finished prompt as `/history` reports it.
#[derive(Debug, Clone)]
pub(crate) struct HistoryEntry {
    pub(crate) item: Arc<QueueItem>,
    /// UI outputs by node id, in the order the nodes finished.
    pub(crate) outputs: Vec<(String, Value)>,
    pub(crate) success: bool,
    /// `[event, data]` pairs: execution_start, execution_cached and the final event.
    pub(crate) messages: Vec<(String, Value)>,
}

impl HistoryEntry {
    pub(crate) fn outputs_json(&self) -> Value {
        Value::Object(self.outputs.iter().cloned().collect())
    }

    pub(crate) fn status_json(&self) -> Value {
        let messages: Vec<Value> = self
            .messages
            .iter()
            .map(|(event, data)| json!([event, data]))
            .collect();
        json!({
            "status_str": if self.success { "success" } else { "error" },
            "completed": self.success,
            "messages": messages,
        })
    }

    pub(crate) fn to_json(&self) -> Value {
        let meta: Map<String, Value> = self
            .outputs
            .iter()
            .map(|(node, _)| {
                (
                    node.clone(),
                    json!({"node_id": node, "display_node": node, "parent_node": null, "real_node_id": node}),
                )
            })
            .collect();
        json!({
            "prompt": self.item.to_json(),
            "outputs": self.outputs_json(),
            "status": self.status_json(),
            "meta": meta,
        })
    }
}

/// The process's memory.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// The next queue number (ComfyUI's `PromptServer.number`; also used up by rejected prompts).
    pub(crate) next_number: i64,
    pub(crate) pending: Vec<Arc<QueueItem>>,
    pub(crate) running: Option<Arc<QueueItem>>,
    /// Oldest first.
    pub(crate) history: Vec<(String, HistoryEntry)>,
    /// Node outputs of the last prompt, by input signature (the "classic" cache).
    pub(crate) cache: HashMap<u64, CacheEntry>,
    /// The node the running prompt is executing (sent to its client when it reconnects).
    pub(crate) last_node_id: Option<String>,
    /// `POST /free {"free_memory": true}` waits for the running prompt to end.
    pub(crate) free_memory_requested: bool,
    /// The last `create_time` handed out.
    pub(crate) last_create_time: i64,
}

impl State {
    /// A prompt's `create_time` (ms). Kept strictly increasing, so that prompts queued within the
    /// same millisecond still sort newest first in `/api/jobs` as they would on a slower server.
    pub(crate) fn next_create_time(&mut self, now_ms: i64) -> i64 {
        self.last_create_time = now_ms.max(self.last_create_time + 1);
        self.last_create_time
    }

    /// `queue_remaining`: pending plus running.
    pub(crate) fn queue_remaining(&self) -> usize {
        self.pending.len() + usize::from(self.running.is_some())
    }

    /// Takes the pending item that sorts first (heap order: number, then prompt id).
    pub(crate) fn take_next(&mut self) -> Option<Arc<QueueItem>> {
        let index = self
            .pending
            .iter()
            .enumerate()
            .min_by(|(_, a), (_, b)| {
                a.sort_key
                    .total_cmp(&b.sort_key)
                    .then_with(|| a.prompt_id.cmp(&b.prompt_id))
            })
            .map(|(i, _)| i)?;
        let item = self.pending.remove(index);
        self.running = Some(item.clone());
        Some(item)
    }

    pub(crate) fn add_history(&mut self, entry: HistoryEntry) {
        let id = entry.item.prompt_id.clone();
        // A reused prompt_id overwrites the old entry (history is a dict keyed by it).
        self.history.retain(|(k, _)| *k != id);
        self.history.push((id, entry));
        if self.history.len() > MAXIMUM_HISTORY_SIZE {
            self.history.remove(0);
        }
    }

    pub(crate) fn history_entry(&self, prompt_id: &str) -> Option<&HistoryEntry> {
        self.history.iter().find(|(k, _)| k == prompt_id).map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, key: f64) -> Arc<QueueItem> {
        Arc::new(QueueItem {
            number: json!(key),
            sort_key: key,
            prompt_id: id.to_owned(),
            graph: OValue::Object(Vec::new()),
            extra_data: Map::new(),
            outputs: Vec::new(),
        })
    }

    #[test]
    fn the_lowest_number_runs_first_and_counts_as_running() {
        let mut state = State {
            pending: vec![item("b", 2.0), item("a", -5.0), item("c", 1.0)],
            ..State::default()
        };
        assert_eq!(state.queue_remaining(), 3);
        assert_eq!(state.take_next().unwrap().prompt_id, "a");
        assert_eq!(state.queue_remaining(), 3);
        assert_eq!(state.running.as_ref().unwrap().prompt_id, "a");
    }

    #[test]
    fn a_reused_prompt_id_replaces_its_history_entry() {
        let mut state = State::default();
        let entry = |id: &str, success| HistoryEntry {
            item: item(id, 0.0),
            outputs: Vec::new(),
            success,
            messages: Vec::new(),
        };
        state.add_history(entry("x", false));
        state.add_history(entry("y", true));
        state.add_history(entry("x", true));
        let ids: Vec<&str> = state.history.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(ids, ["y", "x"]);
        assert!(state.history_entry("x").unwrap().success);
    }

    #[test]
    fn a_history_entry_has_comfyuis_shape() {
        let entry = HistoryEntry {
            item: item("p", 3.0),
            outputs: vec![("9".to_owned(), json!({"images": []}))],
            success: true,
            messages: vec![(
                "execution_start".to_owned(),
                json!({"prompt_id": "p", "timestamp": 1}),
            )],
        };
        let json = entry.to_json();
        assert_eq!(json["prompt"][1], "p");
        assert_eq!(json["status"]["status_str"], "success");
        assert_eq!(json["status"]["messages"][0][0], "execution_start");
        assert_eq!(json["meta"]["9"]["real_node_id"], "9");
    }
}
