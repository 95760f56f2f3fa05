//! The job engine's promises, seen from outside over HTTP and SSE: a job is accepted into the gateway's
//! own queue without waiting for ComfyUI; ComfyUI is fed one job at a time and a waiting job's position
//! counts down; a silent job meets its deadline; a resuming watcher always learns the end; a finished
//! job's live preview is gone. (Restarts and signals of the real binary are in `tests/crash.rs`.)

use std::time::Duration;

use serde_json::json;
use zimage_contract::{JobAccepted, JobEvent, JobStatus};

use crate::engine_support::{
    comfy_queue, eventually, history_ids, is_sentence, prompt_ids_received, queue_ids, queued_positions,
};
use crate::support::{TestApp, completed_image, spawn_app, spawn_app_with_args};

fn small_job(prompt: &str) -> serde_json::Value {
    json!({"prompt": prompt, "width": 256, "height": 256})
}

/// `POST /api/jobs` given up by the client after `patience`: the job's id when the 202 came in time,
/// `None` when the client hung up first or the queue was full (429).
async fn submit_impatiently(app: &TestApp, prompt: &str, patience: Duration) -> Option<String> {
    let sent = app
        .http
        .post(app.url("/api/jobs"))
        .json(&small_job(prompt))
        .timeout(patience)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) if error.is_timeout() => return None,
        Err(error) => panic!("submitting {prompt:?} failed otherwise than by the client's timeout: {error}"),
    };
    match response.status().as_u16() {
        202 => match response.json::<JobAccepted>().await {
            Ok(accepted) => Some(accepted.id),
            Err(error) if error.is_timeout() => None,
            Err(error) => panic!("the 202 for {prompt:?} has no job in it: {error}"),
        },
        429 => None,
        status => panic!("submitting {prompt:?}: status {status}"),
    }
}

/// Promise 1: the answer does not wait for ComfyUI. (Once `POST /api/jobs` awaited ComfyUI's answer
/// to `POST /prompt` and failed after the client's 10 s timeout instead of answering 202.)
#[tokio::test]
async fn a_job_is_accepted_before_comfyui_has_answered_its_prompt() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // ComfyUI takes every prompt but answers none until the knob changes.
    app.sim.faults().slow_prompt(Some(Duration::MAX));

    let accepted = app.create_job(small_job("fox")).await;
    assert_eq!(accepted.status, JobStatus::Queued);
    assert!(
        prompt_ids_received(&app).is_empty(),
        "ComfyUI cannot have queued anything yet"
    );
    assert_eq!(app.job(&accepted.id).await.status, JobStatus::Queued);

    app.sim.faults().slow_prompt(None);
    let events = app.events_until_end(&accepted.id).await;
    completed_image(&events);
    assert_eq!(prompt_ids_received(&app), [accepted.id]);
}

/// Promise 1: a client that hangs up changes nothing. Ten submissions against a ComfyUI slow to answer
/// `POST /prompt`, each given up after 150 ms, with room for 8 unfinished jobs: every job the gateway
/// took (its 202 arrived, or its prompt reached ComfyUI) completes into the gallery, and afterwards the
/// queue takes a later job and then a full load again, so no abandoned submission holds a place.
/// (Once the submission to ComfyUI ran in the request's future: where a hung-up client's future was
/// dropped, the job stayed queued for ever, holding one of the 8 places.)
#[tokio::test]
async fn abandoned_submissions_to_a_slow_comfyui_never_wedge_the_queue() {
    let app = spawn_app_with_args(&["--max-queued=8"]).await;
    app.wait_ready().await;
    app.sim.faults().slow_prompt(Some(Duration::from_millis(300)));

    let submissions = (0..10).map(|n| {
        let app = &app;
        async move { submit_impatiently(app, &format!("abandoned {n}"), Duration::from_millis(150)).await }
    });
    let answered: Vec<String> = futures_util::future::join_all(submissions)
        .await
        .into_iter()
        .flatten()
        .collect();

    // A later job gets in (the 8 places free up as jobs end) and completes behind the others.
    let later = eventually("the queue to take a later job", || async {
        let answer = app.post_json("/api/jobs", &small_job("later")).await;
        match answer.status {
            202 => Some(serde_json::from_value::<JobAccepted>(answer.body).unwrap()),
            429 => None,
            status => panic!("the later job: status {status}: {}", answer.body),
        }
    })
    .await;
    completed_image(&app.events_until_end(&later.id).await);

    let reached = prompt_ids_received(&app);
    for id in &answered {
        assert_eq!(
            reached.iter().filter(|reached| *reached == id).count(),
            1,
            "job {id} was answered 202 and must reach ComfyUI exactly once: {reached:?}"
        );
    }
    let gallery = history_ids(&app).await;
    for id in reached.iter().filter(|id| **id != later.id) {
        let events = app.events_until_end(id).await;
        completed_image(&events);
        assert!(
            gallery.contains(id),
            "job {id} completed but is not in the gallery"
        );
    }

    // Nothing abandoned holds a place: a full load is taken at once (from two browsers, since one may
    // hold only half of the places).
    app.sim.faults().slow_prompt(None);
    let other = crate::support::another_browser();
    let mut load = Vec::new();
    for n in 0..8 {
        let browser = if n % 2 == 0 { &app.http } else { &other };
        let answer = browser
            .post(app.url("/api/jobs"))
            .json(&small_job(&format!("load {n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202, "load {n}");
        load.push(answer.json::<JobAccepted>().await.unwrap());
    }
    for accepted in load {
        completed_image(&app.events_until_end(&accepted.id).await);
    }
}

/// Promise 2: the gateway owns the waiting line. With one job held mid-sampling and three behind it,
/// ComfyUI holds only the running one; positions are 1, 2, 3 (1 = next to run) and count down as jobs
/// ahead end (a cancel included); the cancelled waiting job never reaches ComfyUI. (Once every job was
/// sent to ComfyUI at once, its queue holding 4, and the first waiting job was told position 2.)
#[tokio::test]
async fn comfyui_holds_one_job_at_a_time_and_positions_count_down_in_the_gateways_line() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let (running, mut running_events) = app.start_held_job("running", 3, 2).await;
    let next = app.create_job(small_job("next")).await;
    let cancelled = app.create_job(small_job("cancelled")).await;
    let last = app.create_job(small_job("last")).await;

    let mut last_events = app.events(&last.id, None).await;
    let (_, first) = last_events
        .until(|event| matches!(event, JobEvent::Queued { .. }))
        .await;
    assert_eq!(first, JobEvent::Queued { position: 3 });
    for (job, position) in [(&next, 1), (&cancelled, 2), (&last, 3)] {
        let view = app.job(&job.id).await;
        assert_eq!(view.status, JobStatus::Queued);
        assert_eq!(view.queue_position, Some(position), "{view:?}");
    }
    let queue = comfy_queue(&app).await;
    assert_eq!(
        queue_ids(&queue, "queue_running"),
        std::slice::from_ref(&running.id),
        "{queue}"
    );
    assert_eq!(
        queue_ids(&queue, "queue_pending"),
        Vec::<String>::new(),
        "{queue}"
    );
    assert_eq!(prompt_ids_received(&app), std::slice::from_ref(&running.id));

    // A cancelled waiting job ends at once, and the ones behind it move up.
    let answer = app.delete(&format!("/api/jobs/{}", cancelled.id)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    let (_, moved) = last_events
        .until(|event| matches!(event, JobEvent::Queued { .. }))
        .await;
    assert_eq!(moved, JobEvent::Queued { position: 2 });
    assert_eq!(app.job(&last.id).await.queue_position, Some(2));

    app.sim.faults().release();
    let (_, end) = running_events.until(JobEvent::is_terminal).await;
    assert!(matches!(end, JobEvent::Completed { .. }), "{end:?}");
    drop(last_events);

    let next_events = app.events_until_end(&next.id).await;
    let cancelled_events = app.events_until_end(&cancelled.id).await;
    let last_events = app.events_until_end(&last.id).await;
    completed_image(&next_events);
    completed_image(&last_events);
    assert_eq!(
        cancelled_events.last().map(|(_, event)| event),
        Some(&JobEvent::Cancelled {})
    );
    assert_eq!(queued_positions(&next_events), [1], "{next_events:?}");
    assert_eq!(queued_positions(&cancelled_events), [2], "{cancelled_events:?}");
    assert_eq!(queued_positions(&last_events), [3, 2, 1], "{last_events:?}");

    assert_eq!(
        prompt_ids_received(&app),
        [running.id, next.id, last.id],
        "ComfyUI gets the jobs in order, one at a time, and never the cancelled one"
    );
    assert_eq!(app.sim.faults().peak_queue_remaining(), 1);
}

/// Promise 6: a job whose ComfyUI stays silent past the deadline (`--job-deadline`) fails with
/// `timed_out` and a sentence; ComfyUI is not left working on it, and the job waiting behind it then
/// runs and completes (its wait in the gateway's line is not held against it). (The deadline once did
/// not exist.)
#[tokio::test]
async fn a_job_silent_past_its_deadline_fails_timed_out_and_the_queue_moves_on() {
    let app = spawn_app_with_args(&["--job-deadline=2"]).await;
    app.wait_ready().await;
    let (silent, mut silent_events) = app.start_held_job("silent", 3, 2).await;
    let behind = app.create_job(small_job("behind")).await;

    let (_, end) = silent_events.until(JobEvent::is_terminal).await;
    let JobEvent::Failed { code, message } = end else {
        panic!("the silent job must fail: {end:?}")
    };
    assert_eq!(code, "timed_out");
    assert!(is_sentence(&message), "{message:?}");
    let view = app.job(&silent.id).await;
    assert_eq!(view.status, JobStatus::Failed);
    assert_eq!(view.error.map(|error| error.code).as_deref(), Some("timed_out"));

    eventually("ComfyUI to stop running the timed-out job", || async {
        let queue = comfy_queue(&app).await;
        (!queue_ids(&queue, "queue_running").contains(&silent.id)).then_some(())
    })
    .await;
    app.sim.faults().release();
    completed_image(&app.events_until_end(&behind.id).await);
    assert!(!history_ids(&app).await.contains(&silent.id));
}

/// Promise 7: a `Last-Event-ID` past anything the job sent (a stale tab, an id from before a restart)
/// replays the job from its first event and ends with its terminal event. (Once the stream skipped every
/// event up to that id, the terminal one included, and stayed open after the job ended.)
#[tokio::test]
async fn a_last_event_id_beyond_the_log_replays_the_job_and_ends_with_it() {
    let app = spawn_app().await;
    let (accepted, live) = app.start_held_job("fox", 3, 2).await;
    let resumed = app.events(&accepted.id, Some("99999999")).await;
    app.sim.faults().release();
    let everything = live.until_end().await;
    completed_image(&everything);

    let replayed = resumed.until_end().await;
    let from_the_start = app.events_until_end(&accepted.id).await;
    assert_eq!(replayed, from_the_start);

    // The same id on the ended job still gets its end.
    let late = app.events(&accepted.id, Some("99999999")).await.until_end().await;
    assert!(
        matches!(late.last(), Some((_, JobEvent::Completed { .. }))),
        "{late:?}"
    );
}

/// Promise 8: the live preview lives only while the job samples; once it has ended (completed or
/// cancelled) `GET /api/jobs/{id}/preview` is 404. (Once the last preview was served until the job was
/// forgotten an hour later.)
#[tokio::test]
async fn a_finished_jobs_live_preview_is_gone() {
    let app = spawn_app().await;
    for cancel in [false, true] {
        let (accepted, mut events) = app.start_held_job("fox", 3, 2).await;
        let preview = format!("/api/jobs/{}/preview", accepted.id);
        let content_type = eventually("a live preview while the job samples", || async {
            let response = app.http.get(app.url(&preview)).send().await.unwrap();
            (response.status() == 200).then(|| response.headers()["content-type"].clone())
        })
        .await;
        assert!(
            content_type.to_str().unwrap().starts_with("image/"),
            "{content_type:?}"
        );

        if cancel {
            let answer = app.delete(&format!("/api/jobs/{}", accepted.id)).await;
            assert_eq!(answer.status, 202, "{}", answer.body);
        } else {
            app.sim.faults().release();
        }
        let (_, end) = events.until(JobEvent::is_terminal).await;
        app.sim.faults().release();
        assert_eq!(matches!(end, JobEvent::Cancelled {}), cancel, "{end:?}");
        let gone = app.http.get(app.url(&preview)).send().await.unwrap().status();
        assert_eq!(gone, 404, "the preview of an ended job");
        assert_eq!(app.job(&accepted.id).await.preview_url, None);
    }
}

/// One browser may hold half of `--max-queued` places (at least four), so nobody fills the line alone:
/// its next job is refused with 429 and a sentence, while another browser's is still taken.
#[tokio::test]
async fn one_client_cannot_fill_the_line() {
    let app = spawn_app_with_args(&["--max-queued=8"]).await;
    app.wait_ready().await;
    app.sim.faults().hold_at_step(Some(1));
    for n in 0..4 {
        app.create_job(small_job(&format!("mine {n}"))).await;
    }
    let refused = app.post_json("/api/jobs", &small_job("one too many")).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "queue_full");
    assert!(
        is_sentence(refused.body["error"]["message"].as_str().unwrap_or_default()),
        "{}",
        refused.body
    );
    let other = crate::support::another_browser();
    let theirs = other
        .post(app.url("/api/jobs"))
        .json(&small_job("someone else's"))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 202);
    app.sim.faults().release();
}

/// A job that finds ComfyUI free goes there while its first journal entry is written. When the disk
/// refuses that entry, nobody was told of the job: the submission is answered with an error, ComfyUI
/// is told to let go of the job (it leaves though it is held mid-sampling), nothing of it reaches the
/// gallery, and once the disk takes writes again the next job runs as usual.
#[tokio::test]
async fn a_job_the_journal_cannot_keep_is_refused_and_comfyui_lets_go_of_it() {
    let app = spawn_app().await;
    app.wait_ready().await;
    app.sim.faults().hold_at_step(Some(2));
    // A file where the journal's folder was: even root cannot write an entry into it.
    let journal = app.data_dir.path().join("jobs");
    let kept = app.data_dir.path().join("jobs.kept");
    std::fs::rename(&journal, &kept).unwrap();
    std::fs::write(&journal, b"not a folder").unwrap();

    let answer = app
        .http
        .post(app.url("/api/jobs"))
        .json(&small_job("fox"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503, "{}", answer.text().await.unwrap());
    let received = prompt_ids_received(&app);
    assert_eq!(received.len(), 1, "the job went to ComfyUI beside its write");
    let id = &received[0];
    eventually("ComfyUI to let go of the refused job", || async {
        let queue = comfy_queue(&app).await;
        (queue_ids(&queue, "queue_running").is_empty() && queue_ids(&queue, "queue_pending").is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(app.get(&format!("/api/jobs/{id}")).await.status, 404);

    std::fs::remove_file(&journal).unwrap();
    std::fs::rename(&kept, &journal).unwrap();
    app.sim.faults().hold_at_step(None);
    let next = app.create_job(small_job("owl")).await;
    completed_image(&app.events_until_end(&next.id).await);
    assert_eq!(history_ids(&app).await, [next.id]);
}
