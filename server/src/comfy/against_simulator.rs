//! The adapter against the ComfyUI simulator: client and socket together, through whole prompts,
//! refusals, cancels, faults and reconnects, as the gateway will drive them.

use std::time::Duration;

use comfy_sim::{FailureKind, SimHandle, SimOptions, Simulator};
use tokio::sync::{mpsc, oneshot};
use url::Url;

use super::client::ComfyClient;
use super::socket::{self, Backoff, SocketHandle, SocketOptions};
use super::workflow::fixtures::{committed_workflow, default_models};
use super::workflow::{ModelFiles, Workflow};
use super::{ComfyEvent, Error, Link, RemoteState};

/// Generous: these tests wait for events and states, never for a fixed time.
const PATIENCE: Duration = Duration::from_secs(20);

struct Setup {
    sim: SimHandle,
    client: ComfyClient,
    /// The id of the socket's live connection, to submit under.
    client_id: String,
    events: mpsc::Receiver<ComfyEvent>,
    socket: SocketHandle,
    workflow: Workflow,
    _stop: oneshot::Sender<()>,
}

async fn setup() -> Setup {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim = Simulator::spawn(
        listener,
        SimOptions {
            step_ms: 5,
            ..SimOptions::default()
        },
    )
    .await
    .unwrap();
    let base = Url::parse(&sim.url()).unwrap();
    let client = ComfyClient::new(base.clone());
    let (events_tx, mut events) = mpsc::channel(256);
    let (stop, stopped) = oneshot::channel::<()>();
    let options = SocketOptions {
        ping_every: Duration::from_millis(100),
        silence_limit: Duration::from_millis(600),
        connect_timeout: Duration::from_secs(2),
        backoff: Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(100),
        },
    };
    let socket = socket::spawn_with(base, events_tx, stopped, options);
    let client_id = connected_id(next_event(&mut events).await);
    Setup {
        sim,
        client,
        client_id,
        events,
        socket,
        workflow: committed_workflow(default_models()),
        _stop: stop,
    }
}

async fn next_event(events: &mut mpsc::Receiver<ComfyEvent>) -> ComfyEvent {
    tokio::time::timeout(PATIENCE, events.recv())
        .await
        .expect("an event in time")
        .expect("the socket runs")
}

/// Events up to and including the one `last` accepts, skipping queue-length updates.
async fn events_until(
    events: &mut mpsc::Receiver<ComfyEvent>,
    last: impl Fn(&ComfyEvent) -> bool,
) -> Vec<ComfyEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events).await;
        let done = last(&event);
        if !matches!(event, ComfyEvent::QueueRemaining(_)) {
            seen.push(event);
        }
        if done {
            return seen;
        }
    }
}

fn connected_id(event: ComfyEvent) -> String {
    match event {
        ComfyEvent::Connected { client_id } => client_id,
        other => panic!("expected Connected, got {other:?}"),
    }
}

fn is_connected(event: &ComfyEvent) -> bool {
    matches!(event, ComfyEvent::Connected { .. })
}

/// Waits past the next `Disconnected` for the next `Connected`, and submits under its id from then on.
async fn follow_reconnect(setup: &mut Setup) {
    events_until(&mut setup.events, |event| *event == ComfyEvent::Disconnected).await;
    let reconnected = events_until(&mut setup.events, is_connected).await;
    let [ComfyEvent::Connected { client_id }] = reconnected.as_slice() else {
        panic!("{reconnected:?}")
    };
    assert_ne!(*client_id, setup.client_id, "a fresh id for the new connection");
    setup.client_id = client_id.clone();
}

fn finished(prompt_id: &str) -> impl Fn(&ComfyEvent) -> bool + '_ {
    move |event| matches!(event, ComfyEvent::Finished { prompt_id: id } if id == prompt_id)
}

/// Polls ComfyUI's records until `accept` holds (for prompts whose events went to an older socket).
async fn remote_state_until(
    client: &ComfyClient,
    prompt_id: &str,
    accept: impl Fn(&RemoteState) -> bool,
) -> RemoteState {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let state = client.remote_state(prompt_id).await.unwrap();
        if accept(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{prompt_id} stayed {state:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    (width, height)
}

#[tokio::test]
async fn a_prompt_runs_from_submit_to_a_stored_png_with_previews() {
    let mut setup = setup().await;
    let probe = setup.client.probe(&setup.workflow).await.unwrap();
    assert!(probe.is_ready(), "{probe:?}");
    assert!(probe.device.is_some());

    let graph = setup.workflow.fill("a red fox in snow", 42, 512, 384);
    setup
        .client
        .submit("job-1", &setup.client_id, graph, true)
        .await
        .unwrap();
    let events = events_until(&mut setup.events, finished("job-1")).await;

    assert_eq!(
        events.first(),
        Some(&ComfyEvent::Started {
            prompt_id: "job-1".to_owned()
        })
    );
    let steps: Vec<(u32, u32)> = events
        .iter()
        .filter_map(|event| match event {
            ComfyEvent::Progress { node, value, max, .. } if node == setup.workflow.sampler_node() => {
                Some((*value, *max))
            }
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=8).map(|step| (step, 8)).collect::<Vec<_>>());
    let previews = events
        .iter()
        .filter(|event| matches!(event, ComfyEvent::Preview { prompt_id, .. } if prompt_id == "job-1"));
    assert!(
        previews.count() >= 1,
        "previews asked for per prompt arrive: {events:?}"
    );
    let images = events
        .iter()
        .find_map(|event| match event {
            ComfyEvent::Output { node, images, .. } if node == setup.workflow.output_node() => {
                Some(images.clone())
            }
            _ => None,
        })
        .expect("the SaveImage output");
    let tail: Vec<&ComfyEvent> = events.iter().rev().take(2).collect();
    assert_eq!(
        tail,
        [
            &ComfyEvent::Finished {
                prompt_id: "job-1".to_owned()
            },
            &ComfyEvent::Succeeded {
                prompt_id: "job-1".to_owned()
            }
        ]
    );

    let png = setup
        .client
        .fetch_output(&images[0], 64 * 1024 * 1024)
        .await
        .unwrap();
    assert_eq!(png_size(&png), (512, 384));
    assert!(matches!(
        setup.client.fetch_output(&images[0], 16).await,
        Err(Error::TooLarge)
    ));
    assert_eq!(
        setup.client.remote_state("job-1").await.unwrap(),
        RemoteState::Completed { images }
    );
    assert_eq!(
        setup.client.remote_state("never-submitted").await.unwrap(),
        RemoteState::Unknown
    );
}

#[tokio::test]
async fn a_missing_model_is_named_by_probe_and_by_the_refusal() {
    let setup = setup().await;
    let workflow = committed_workflow(ModelFiles {
        unet: "z_image_turbo-Q5_K_M.gguf".to_owned(),
        ..default_models()
    });
    let probe = setup.client.probe(&workflow).await.unwrap();
    assert_eq!(probe.missing_models, ["z_image_turbo-Q5_K_M.gguf"]);
    assert!(probe.missing_nodes.is_empty());

    let error = setup
        .client
        .submit("job-1", &setup.client_id, workflow.fill("x", 1, 256, 256), false)
        .await
        .unwrap_err();
    let Error::Rejected { code, message } = error else {
        panic!("{error:?}")
    };
    assert_eq!(code, Error::MODEL_NOT_INSTALLED);
    assert!(message.contains("z_image_turbo-Q5_K_M.gguf"), "{message}");
}

#[tokio::test]
async fn a_pending_prompt_is_deleted_and_a_running_one_interrupted() {
    let mut setup = setup().await;
    setup.sim.faults().hold_at_step(Some(2));
    setup
        .client
        .submit(
            "first",
            &setup.client_id,
            setup.workflow.fill("one", 1, 256, 256),
            false,
        )
        .await
        .unwrap();
    setup
        .client
        .submit(
            "second",
            &setup.client_id,
            setup.workflow.fill("two", 2, 256, 256),
            false,
        )
        .await
        .unwrap();
    events_until(&mut setup.events, |event| {
        matches!(event, ComfyEvent::Progress { value: 1, .. })
    })
    .await;
    assert_eq!(setup.client.queue_order().await.unwrap(), ["first", "second"]);
    assert_eq!(
        setup.client.remote_state("second").await.unwrap(),
        RemoteState::Pending
    );
    assert_eq!(
        setup.client.remote_state("first").await.unwrap(),
        RemoteState::Running
    );

    setup.client.delete_pending("second").await.unwrap();
    assert_eq!(setup.client.queue_order().await.unwrap(), ["first"]);
    setup.client.interrupt("first").await.unwrap();
    let events = events_until(&mut setup.events, finished("first")).await;
    assert!(
        events.contains(&ComfyEvent::Interrupted {
            prompt_id: "first".to_owned()
        }),
        "{events:?}"
    );
    assert_eq!(
        setup.client.remote_state("first").await.unwrap(),
        RemoteState::Cancelled
    );
    assert_eq!(
        setup.client.remote_state("second").await.unwrap(),
        RemoteState::Unknown
    );
}

#[tokio::test]
async fn out_of_memory_arrives_as_a_failure_a_person_can_read() {
    let mut setup = setup().await;
    let sampler = setup.workflow.sampler_node().to_owned();
    setup
        .sim
        .faults()
        .fail_node(Some((sampler, FailureKind::OutOfMemory)));
    setup
        .client
        .submit(
            "job-1",
            &setup.client_id,
            setup.workflow.fill("x", 1, 256, 256),
            false,
        )
        .await
        .unwrap();
    let events = events_until(&mut setup.events, finished("job-1")).await;
    let failure = events
        .iter()
        .find_map(|event| match event {
            ComfyEvent::Failed { failure, .. } => Some(failure.clone()),
            _ => None,
        })
        .expect("a failure");
    assert_eq!(failure.code(), "out_of_memory");
    assert!(
        failure
            .human_message()
            .contains("ran out of memory while running KSampler"),
        "{}",
        failure.human_message()
    );
    let RemoteState::Failed {
        failure: Some(recorded),
    } = setup.client.remote_state("job-1").await.unwrap()
    else {
        panic!("the jobs API keeps the error");
    };
    assert_eq!(recorded.code(), "out_of_memory");
}

#[tokio::test]
async fn a_dropped_socket_reconnects_and_the_prompt_is_found_by_polling() {
    let mut setup = setup().await;
    setup.sim.faults().drop_websockets_at_step(Some(3));
    setup
        .client
        .submit(
            "job-1",
            &setup.client_id,
            setup.workflow.fill("x", 1, 256, 256),
            false,
        )
        .await
        .unwrap();
    follow_reconnect(&mut setup).await;
    let state = remote_state_until(&setup.client, "job-1", |state| {
        matches!(state, RemoteState::Completed { .. })
    })
    .await;
    assert!(matches!(state, RemoteState::Completed { images } if images.len() == 1));
}

#[tokio::test]
async fn a_stalled_socket_is_replaced_and_new_prompts_report_on_the_new_one() {
    let mut setup = setup().await;
    setup.sim.faults().stall_websockets_at_step(Some(2));
    setup
        .client
        .submit(
            "job-1",
            &setup.client_id,
            setup.workflow.fill("x", 1, 256, 256),
            false,
        )
        .await
        .unwrap();
    follow_reconnect(&mut setup).await;
    remote_state_until(&setup.client, "job-1", |state| {
        matches!(state, RemoteState::Completed { .. })
    })
    .await;

    setup.sim.faults().stall_websockets_at_step(None);
    setup
        .client
        .submit(
            "job-2",
            &setup.client_id,
            setup.workflow.fill("y", 2, 256, 256),
            false,
        )
        .await
        .unwrap();
    let events = events_until(&mut setup.events, finished("job-2")).await;
    assert!(
        events.contains(&ComfyEvent::Succeeded {
            prompt_id: "job-2".to_owned()
        }),
        "{events:?}"
    );
}

#[tokio::test]
async fn comfyui_down_then_up_is_unreachable_then_connected() {
    let mut setup = setup().await;
    setup.sim.faults().refuse_connections(true);
    events_until(&mut setup.events, |event| *event == ComfyEvent::Disconnected).await;
    assert!(matches!(
        setup.client.queue_order().await,
        Err(Error::Unreachable)
    ));
    setup.sim.faults().refuse_connections(false);
    events_until(&mut setup.events, is_connected).await;
    assert_eq!(setup.client.queue_order().await.unwrap(), Vec::<String>::new());
    assert!(!setup.socket.is_finished());
}

#[tokio::test]
async fn a_frozen_comfyui_takes_the_link_down_and_a_resumed_one_gets_a_new_connection() {
    let mut setup = setup().await;
    let mut link = setup.socket.link();
    assert_eq!(link.borrow().client_id(), Some(setup.client_id.as_str()));

    setup.sim.faults().stall(true);
    let down = tokio::time::timeout(PATIENCE, link.wait_for(|link| link.client_id().is_none()))
        .await
        .expect("the link went down")
        .unwrap()
        .clone();
    let Link::Down { reason } = down else {
        unreachable!()
    };
    assert!(reason.contains("no frame and no pong"), "{reason}");
    events_until(&mut setup.events, |event| *event == ComfyEvent::Disconnected).await;

    setup.sim.faults().stall(false);
    let client_id = connected_id(events_until(&mut setup.events, is_connected).await.pop().unwrap());
    assert_ne!(client_id, setup.client_id);
    let live = tokio::time::timeout(PATIENCE, link.wait_for(|link| link.client_id().is_some()))
        .await
        .expect("the link came up")
        .unwrap()
        .clone();
    assert_eq!(live.client_id(), Some(client_id.as_str()));

    // A prompt submitted under the new connection's id reports its progress there.
    setup
        .client
        .submit("job-1", &client_id, setup.workflow.fill("x", 1, 256, 256), false)
        .await
        .unwrap();
    let events = events_until(&mut setup.events, finished("job-1")).await;
    assert!(
        events
            .iter()
            .any(|event| matches!(event, ComfyEvent::Progress { .. })),
        "{events:?}"
    );
}

/// A solid 64 x 64 PNG, with a transparent left half when `masked` (the part to paint over).
fn source_png(color: [u8; 3], masked: bool) -> bytes::Bytes {
    let picture = image::RgbaImage::from_fn(64, 64, |x, _| {
        image::Rgba([
            color[0],
            color[1],
            color[2],
            if masked && x < 32 { 0 } else { 255 },
        ])
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgba8(picture)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    bytes::Bytes::from(png)
}

/// Submits `graph` as `prompt_id`, waits for its end and fetches its picture.
async fn run_to_picture(setup: &mut Setup, prompt_id: &str, graph: serde_json::Value) -> image::RgbImage {
    setup
        .client
        .submit(prompt_id, &setup.client_id, graph, false)
        .await
        .unwrap();
    let events = events_until(&mut setup.events, finished(prompt_id)).await;
    let images = events
        .iter()
        .find_map(|event| match event {
            ComfyEvent::Output { images, .. } => Some(images.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no output: {events:?}"));
    let png = setup.client.fetch_output(&images[0], 1 << 24).await.unwrap();
    image::load_from_memory(&png).unwrap().to_rgb8()
}

#[tokio::test]
async fn a_job_that_starts_from_an_uploaded_picture_uses_it() {
    use super::workflow::SourceImage;
    let mut setup = setup().await;
    let probe = setup.client.probe(&setup.workflow).await.unwrap();
    assert!(probe.source_problems.is_empty(), "{probe:?}");

    let red = source_png([255, 0, 0], false);
    let name = setup
        .client
        .upload_source(red.clone(), "digest-red")
        .await
        .unwrap();
    assert_eq!(name, "zimage/source-0.png");
    let source = SourceImage {
        image: &name,
        strength: 0.5,
        masked: false,
    };
    let graph = setup.workflow.fill_from("a fox", 9, 64, 64, Some(&source));
    let from_red = run_to_picture(&mut setup, "from-red", graph).await;
    assert_eq!(from_red.dimensions(), (64, 64));
    let pattern = comfy_sim::images::seed_pixel(9, 3, 3, 64, 64);
    let half = |picture: u8, pattern: u8| ((f32::from(picture) + f32::from(pattern)) / 2.0).round() as u8;
    assert_eq!(
        from_red.get_pixel(3, 3).0,
        [half(255, pattern[0]), half(0, pattern[1]), half(0, pattern[2])]
    );

    // Another picture takes the next of the reused names; the first keeps its own.
    let blue = source_png([0, 0, 255], true);
    let blue_name = setup.client.upload_source(blue, "digest-blue").await.unwrap();
    assert_eq!(blue_name, "zimage/source-1.png");
    assert_eq!(setup.client.upload_source(red, "digest-red").await.unwrap(), name);
    let source = SourceImage {
        image: &blue_name,
        strength: 1.0,
        masked: true,
    };
    let graph = setup.workflow.fill_from("a fox", 9, 64, 64, Some(&source));
    let painted = run_to_picture(&mut setup, "painted", graph).await;
    // The transparent left half is made anew, the right half stays the picture.
    assert_eq!(
        painted.get_pixel(3, 3).0,
        comfy_sim::images::seed_pixel(9, 3, 3, 64, 64)
    );
    assert_eq!(painted.get_pixel(60, 3).0, [0, 0, 255]);
}

#[tokio::test]
async fn a_source_that_comfyui_no_longer_has_is_refused_as_missing() {
    use super::workflow::SourceImage;
    let setup = setup().await;
    let source = SourceImage {
        image: "zimage/source-3.png",
        strength: 0.6,
        masked: false,
    };
    let graph = setup.workflow.fill_from("a fox", 1, 64, 64, Some(&source));
    let error = setup
        .client
        .submit("no-source", &setup.client_id, graph, false)
        .await
        .unwrap_err();
    match error {
        Error::Rejected { code, message } => {
            assert_eq!(code, Error::SOURCE_MISSING);
            assert!(message.contains("zimage/source-3.png"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_uploads_never_take_more_than_the_reused_names() {
    let setup = setup().await;
    let mut names = std::collections::BTreeSet::new();
    for shade in 0..10u8 {
        let png = source_png([shade, shade, shade], false);
        names.insert(
            setup
                .client
                .upload_source(png, &format!("digest-{shade}"))
                .await
                .unwrap(),
        );
    }
    assert_eq!(names.len(), super::client::SOURCE_SLOTS);
    // In ComfyUI's input/zimage: the reused names, and only them.
    for slot in 0..=super::client::SOURCE_SLOTS {
        let view = format!(
            "{}view?filename={}&subfolder=zimage&type=input",
            setup.client.base(),
            super::client::source_file_name(slot)
        );
        let status = reqwest::get(view).await.unwrap().status();
        let expected = if slot < super::client::SOURCE_SLOTS {
            200
        } else {
            404
        };
        assert_eq!(status.as_u16(), expected, "slot {slot}");
    }
}
