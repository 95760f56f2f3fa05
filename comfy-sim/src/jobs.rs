//! ComfyUI 0.8.0's jobs API (`GET /api/jobs`, `GET /api/jobs/{id}`; comfy_execution/jobs.py):
//! queue and history merged into one list of jobs, with the recorded filters, sorting, pagination
//! and error texts.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::state::{HistoryEntry, QueueItem, State};

/// The status values a client may filter on, in the order error messages list them.
const STATUSES: [&str; 4] = ["pending", "in_progress", "completed", "failed"];

/// A bad query: answered 400 `{"error": message}`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub(crate) struct QueryError(pub(crate) String);

/// One job: the summary fields, and the details a single-job answer adds for finished jobs.
struct Job {
    summary: Map<String, Value>,
    details: Option<Map<String, Value>>,
}

fn queue_job(item: &QueueItem, status: &str) -> Job {
    let mut summary = Map::new();
    summary.insert("id".to_owned(), json!(item.prompt_id));
    summary.insert("status".to_owned(), json!(status));
    summary.insert("priority".to_owned(), item.number.clone());
    if let Some(create_time) = item.create_time() {
        summary.insert("create_time".to_owned(), json!(create_time));
    }
    summary.insert("outputs_count".to_owned(), json!(0));
    if let Some(workflow_id) = item.workflow_id() {
        summary.insert("workflow_id".to_owned(), workflow_id);
    }
    Job {
        summary,
        details: None,
    }
}

fn history_job(entry: &HistoryEntry) -> Job {
    let item = &entry.item;
    let mut summary = Map::new();
    summary.insert("id".to_owned(), json!(item.prompt_id));
    // An interrupted prompt is `failed` too, only without an `execution_error` (recorded).
    summary.insert(
        "status".to_owned(),
        json!(if entry.success { "completed" } else { "failed" }),
    );
    summary.insert("priority".to_owned(), item.number.clone());
    if let Some(create_time) = item.create_time() {
        summary.insert("create_time".to_owned(), json!(create_time));
    }
    let mut start = None;
    let mut end = None;
    let mut error = None;
    for (event, data) in &entry.messages {
        match event.as_str() {
            "execution_start" => start = data.get("timestamp").cloned(),
            "execution_success" | "execution_interrupted" => end = data.get("timestamp").cloned(),
            "execution_error" => {
                end = data.get("timestamp").cloned();
                error = Some(data.clone());
            }
            _ => {}
        }
    }
    for (key, value) in [
        ("execution_start_time", start),
        ("execution_end_time", end),
        ("execution_error", error),
    ] {
        if let Some(value) = value {
            summary.insert(key.to_owned(), value);
        }
    }
    let (count, preview) = outputs_summary(&entry.outputs);
    summary.insert("outputs_count".to_owned(), json!(count));
    if let Some(preview) = preview {
        summary.insert("preview_output".to_owned(), preview);
    }
    if let Some(workflow_id) = item.workflow_id() {
        summary.insert("workflow_id".to_owned(), workflow_id);
    }
    let mut details = Map::new();
    details.insert("outputs".to_owned(), entry.outputs_json());
    details.insert("execution_status".to_owned(), entry.status_json());
    details.insert(
        "workflow".to_owned(),
        json!({"prompt": item.graph.to_value(), "extra_data": item.extra_data}),
    );
    Job {
        summary,
        details: Some(details),
    }
}

/// The number of output items and the first image, tagged with its node and media type.
fn outputs_summary(outputs: &[(String, Value)]) -> (usize, Option<Value>) {
    let mut count = 0;
    let mut preview = None;
    for (node_id, ui) in outputs {
        let Some(ui) = ui.as_object() else {
            continue;
        };
        for (media_type, items) in ui {
            let Some(items) = items.as_array() else {
                continue;
            };
            for item in items {
                count += 1;
                if preview.is_none()
                    && let Some(fields) = item.as_object()
                    && fields.contains_key("filename")
                {
                    let mut tagged = fields.clone();
                    tagged.insert("nodeId".to_owned(), json!(node_id));
                    tagged.insert("mediaType".to_owned(), json!(media_type));
                    preview = Some(Value::Object(tagged));
                }
            }
        }
    }
    (count, preview)
}

/// Every job: running, then pending, then history (newest last), before sorting.
fn all_jobs(state: &State) -> Vec<Job> {
    let mut jobs: Vec<Job> = state
        .running
        .iter()
        .map(|item| queue_job(item, "in_progress"))
        .collect();
    jobs.extend(state.pending.iter().map(|item| queue_job(item, "pending")));
    jobs.extend(state.history.iter().map(|(_, entry)| history_job(entry)));
    jobs
}

/// `GET /api/jobs` with its query parameters.
pub(crate) fn list(state: &State, query: &HashMap<String, String>) -> Result<Value, QueryError> {
    let status_filter: Option<Vec<String>> = match query.get("status") {
        Some(raw) if !raw.is_empty() => {
            let wanted: Vec<String> = raw
                .split(',')
                .map(|s| s.trim().to_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            let invalid: Vec<&str> = wanted
                .iter()
                .map(String::as_str)
                .filter(|s| !STATUSES.contains(s))
                .collect();
            if !invalid.is_empty() {
                return Err(QueryError(format!(
                    "Invalid status value(s): {}. Valid values: {}",
                    invalid.join(", "),
                    STATUSES.join(", ")
                )));
            }
            Some(wanted)
        }
        _ => None,
    };
    let sort_by = query
        .get("sort_by")
        .map_or_else(|| "created_at".to_owned(), |s| s.to_lowercase());
    if sort_by != "created_at" && sort_by != "execution_duration" {
        return Err(QueryError(
            "sort_by must be 'created_at' or 'execution_duration'".to_owned(),
        ));
    }
    let sort_order = query
        .get("sort_order")
        .map_or_else(|| "desc".to_owned(), |s| s.to_lowercase());
    if sort_order != "asc" && sort_order != "desc" {
        return Err(QueryError("sort_order must be 'asc' or 'desc'".to_owned()));
    }
    let limit = match query.get("limit") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(limit) if limit <= 0 => return Err(QueryError("limit must be a positive integer".to_owned())),
            Ok(limit) => Some(usize::try_from(limit).unwrap_or(usize::MAX)),
            Err(_) => return Err(QueryError("limit must be an integer".to_owned())),
        },
    };
    let offset = match query.get("offset") {
        None => 0,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(offset) => usize::try_from(offset.max(0)).unwrap_or(usize::MAX),
            Err(_) => return Err(QueryError("offset must be an integer".to_owned())),
        },
    };

    let workflow_id = query.get("workflow_id");
    let mut jobs: Vec<Map<String, Value>> = all_jobs(state)
        .into_iter()
        .map(|job| job.summary)
        .filter(|job| {
            status_filter.as_ref().is_none_or(|wanted| {
                wanted
                    .iter()
                    .any(|s| job.get("status").and_then(Value::as_str) == Some(s))
            })
        })
        .filter(|job| {
            workflow_id.is_none_or(|id| job.get("workflow_id").and_then(Value::as_str) == Some(id.as_str()))
        })
        .collect();
    let key = |job: &Map<String, Value>| -> i64 {
        let field = |name: &str| job.get(name).and_then(Value::as_i64).unwrap_or(0);
        if sort_by == "execution_duration" {
            let (start, end) = (field("execution_start_time"), field("execution_end_time"));
            if start != 0 && end != 0 { end - start } else { 0 }
        } else {
            field("create_time")
        }
    };
    // Python's sorted(reverse=True) is stable too: equal keys keep their original order.
    if sort_order == "desc" {
        jobs.sort_by_key(|job| std::cmp::Reverse(key(job)));
    } else {
        jobs.sort_by_key(|job| key(job));
    }
    let total = jobs.len();
    let page: Vec<Value> = jobs
        .into_iter()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .map(Value::Object)
        .collect();
    let has_more = offset.saturating_add(page.len()) < total;
    Ok(json!({
        "jobs": page,
        "pagination": {"offset": offset, "limit": limit, "total": total, "has_more": has_more},
    }))
}

/// `GET /api/jobs/{id}`: history first, then running, then pending; `None` when unknown.
pub(crate) fn get(state: &State, prompt_id: &str) -> Option<Value> {
    let job = if let Some(entry) = state.history_entry(prompt_id) {
        history_job(entry)
    } else if let Some(item) = state.running.as_ref().filter(|item| item.prompt_id == prompt_id) {
        queue_job(item, "in_progress")
    } else {
        queue_job(
            state.pending.iter().find(|item| item.prompt_id == prompt_id)?,
            "pending",
        )
    };
    let mut fields = job.summary;
    fields.extend(job.details.unwrap_or_default());
    Some(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::ordered::OValue;

    fn item(id: &str, number: i64, create_time: i64) -> Arc<QueueItem> {
        let mut extra_data = Map::new();
        extra_data.insert("create_time".to_owned(), json!(create_time));
        Arc::new(QueueItem {
            number: json!(number),
            sort_key: number as f64,
            prompt_id: id.to_owned(),
            graph: OValue::Object(Vec::new()),
            extra_data,
            outputs: vec!["9".to_owned()],
        })
    }

    fn finished(id: &str, number: i64, start: i64, end: i64, success: bool) -> HistoryEntry {
        let last = if success {
            "execution_success"
        } else {
            "execution_interrupted"
        };
        HistoryEntry {
            item: item(id, number, start - 1),
            outputs: if success {
                vec![(
                    "9".to_owned(),
                    json!({"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"}]}),
                )]
            } else {
                Vec::new()
            },
            success,
            messages: vec![
                (
                    "execution_start".to_owned(),
                    json!({"prompt_id": id, "timestamp": start}),
                ),
                (last.to_owned(), json!({"prompt_id": id, "timestamp": end})),
            ],
        }
    }

    fn state() -> State {
        let mut state = State::default();
        state.add_history(finished("done", 0, 100, 400, true));
        state.add_history(finished("stopped", 1, 500, 520, false));
        state.running = Some(item("running", 2, 600));
        state.pending = vec![item("waiting", 3, 700)];
        state
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ids(answer: &Value) -> Vec<&str> {
        answer["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn jobs_are_newest_first_with_the_recorded_fields() {
        let answer = list(&state(), &query(&[])).unwrap();
        assert_eq!(ids(&answer), ["waiting", "running", "stopped", "done"]);
        assert_eq!(
            answer["pagination"],
            json!({"offset": 0, "limit": null, "total": 4, "has_more": false})
        );
        let done = &answer["jobs"][3];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["outputs_count"], 1);
        assert_eq!(done["preview_output"]["nodeId"], "9");
        assert_eq!(done["preview_output"]["mediaType"], "images");
        let stopped = &answer["jobs"][2];
        assert_eq!(stopped["status"], "failed");
        assert!(stopped.get("execution_error").is_none());
        assert!(answer["jobs"][0].get("execution_start_time").is_none());
    }

    #[test]
    fn filters_sorting_and_pages_combine() {
        let state = state();
        let answer = list(
            &state,
            &query(&[("status", "completed,failed"), ("sort_order", "asc")]),
        )
        .unwrap();
        assert_eq!(ids(&answer), ["done", "stopped"]);
        let answer = list(&state, &query(&[("sort_by", "execution_duration")])).unwrap();
        assert_eq!(ids(&answer)[..2], ["done", "stopped"]);
        let answer = list(&state, &query(&[("limit", "1"), ("offset", "1")])).unwrap();
        assert_eq!(ids(&answer), ["running"]);
        assert_eq!(
            answer["pagination"],
            json!({"offset": 1, "limit": 1, "total": 4, "has_more": true})
        );
        let answer = list(&state, &query(&[("offset", "-5")])).unwrap();
        assert_eq!(answer["pagination"]["offset"], 0);
    }

    #[test]
    fn bad_parameters_get_the_recorded_messages() {
        let state = state();
        let error = |pairs: &[(&str, &str)]| list(&state, &query(pairs)).unwrap_err().0;
        assert_eq!(
            error(&[("status", "bogus")]),
            "Invalid status value(s): bogus. Valid values: pending, in_progress, completed, failed"
        );
        assert_eq!(error(&[("limit", "0")]), "limit must be a positive integer");
        assert_eq!(error(&[("limit", "x")]), "limit must be an integer");
        assert_eq!(error(&[("offset", "x")]), "offset must be an integer");
        assert_eq!(
            error(&[("sort_by", "name")]),
            "sort_by must be 'created_at' or 'execution_duration'"
        );
        assert_eq!(
            error(&[("sort_order", "up")]),
            "sort_order must be 'asc' or 'desc'"
        );
    }

    #[test]
    fn a_single_finished_job_adds_outputs_status_and_workflow() {
        let state = state();
        let done = get(&state, "done").unwrap();
        assert_eq!(done["execution_status"]["status_str"], "success");
        assert_eq!(done["outputs"]["9"]["images"][0]["filename"], "a_00001_.png");
        assert!(done["workflow"]["extra_data"]["create_time"].is_i64());
        let waiting = get(&state, "waiting").unwrap();
        assert_eq!(waiting["status"], "pending");
        assert!(waiting.get("outputs").is_none());
        assert_eq!(get(&state, "running").unwrap()["status"], "in_progress");
        assert!(get(&state, "nope").is_none());
    }
}
