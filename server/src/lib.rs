//! The z-image-local gateway: the only thing the LAN talks to.
//!
//! # Layout
//! - [`config`]: the command line and environment (the only reader of the environment).
//! - [`validation`]: a job request becomes [`validation::JobSpec`] or a field error.
//! - [`comfy`]: everything that knows ComfyUI: HTTP client, WebSocket, messages, workflow.
//! - [`jobs`]: a job's life from submission to stored image; [`relay`]: its events for watchers.
//! - [`images`] and [`history`]: what is kept on disk under the data folder; [`backup`]: its copies.
//! - [`styles`]: saved styles (settings kept under a name) and what they make of a job request.
//! - [`pictures`]: the pictures and masks a job starts from: uploads checked, cleaned and kept.
//! - [`readiness`]: `/readyz`'s answer: the socket's link plus a probe of each new connection.
//! - [`access`]: the door to the LAN: who may come in (addresses, hosts, origins, the secret) and the
//!   abuse limits, as plain decisions that `routes` applies to every request.
//! - [`routes`]: HTTP only: extract, call one of the above, answer.
//! - [`png_story`]: the prompt, seed and model files written into each saved PNG as text chunks.
//! - [`site_bundle`]: whether the site folder holds the built web UI.
//! - [`cli`]: `zimage generate`, a client of a running studio over its HTTP API.
//!
//! [`serve`] wires them together on an already bound listener, so tests run it on port 0.

pub mod access;
pub mod atomic_file;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod comfy;
pub mod config;
pub mod history;
pub mod i18n;
pub mod images;
pub mod job_id;
pub mod jobs;
pub mod models;
pub mod openai;
pub mod pictures;
pub mod png_story;
pub mod readiness;
pub mod relay;
pub mod routes;
pub mod shutdown;
pub mod site_bundle;
pub mod state;
pub mod storage;
pub mod styles;
pub mod telemetry;
pub mod validation;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::access::Access;
use crate::comfy::client::ComfyClient;
use crate::comfy::socket;
use crate::comfy::workflow::ModelFiles;
use crate::config::{BackendSpec, ServeConfig};
use crate::history::History;
use crate::images::ImageStore;
use crate::jobs::{JobTuning, Jobs};
use crate::pictures::PictureStore;
use crate::readiness::ProbeTuning;
use crate::state::AppState;

/// How long open connections (event streams, downloads) and saves may take to finish after a
/// shutdown signal, each.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Timing knobs of the background work. The defaults suit a real ComfyUI; tests shorten them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    pub jobs: JobTuning,
    pub probe: ProbeTuning,
    pub socket: socket::SocketOptions,
    /// Time limits of the calls to ComfyUI.
    pub comfy: comfy::client::Timeouts,
}

/// Serves the studio on `listener` until `shutdown` resolves.
pub async fn serve(
    config: ServeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_tuned(config, Tuning::default(), listener, shutdown).await
}

/// [`serve`] with explicit timing knobs.
pub async fn serve_tuned(
    config: ServeConfig,
    tuning: Tuning,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // `zimage serve` refused already unless told to go on; in-process users (the tests) only hear it.
    site_bundle::warn_if_missing(&config.site_root);
    let models = config.workflow.model_files();
    let workflow = Arc::new(config.workflow.load()?);
    let history = History::open(&config.data_dir)
        .await
        .context("cannot open the history")?;
    let images = ImageStore::open(&config.data_dir.join("images"))
        .await
        .context("cannot open the image folder")?;
    let pictures = PictureStore::open(&config.data_dir.join("pictures"))
        .await
        .context("cannot open the pictures folder")?;
    // What a crash interrupted is finished before anything reads the stores. After a clean close
    // there is nothing to finish: every save ended, and whatever a request cut at the exit could
    // leave (a file without a row) is harmless until the next recovery.
    if history
        .take_clean_close()
        .await
        .context("cannot open the history")?
    {
        tracing::debug!("the data folder was closed cleanly; no recovery needed");
    } else {
        storage::recover(&images, &history)
            .await
            .context("cannot tidy the data folder")?;
    }
    // The door before anything runs: a missing secret file stops the start here.
    let access = Access::new(&config.access, listener.local_addr()?, &config.data_dir)
        .await
        .context("cannot set up access control")?;

    // In demo mode the simulator runs inside this process; it lives as long as `serve`.
    let simulator = if config.demo {
        Some(start_demo_simulator(&config, &models).await?)
    } else {
        None
    };
    let specs = match &simulator {
        Some(simulator) => vec![BackendSpec {
            name: "demo".to_owned(),
            url: simulator
                .url()
                .parse()
                .context("the simulator's address is not a URL")?,
        }],
        None => config.backends()?,
    };

    // Each backend has a life of its own: its socket, its readiness probe, its client. Their events
    // reach the engine tagged with the backend's index.
    let (events_sender, events) = mpsc::channel(1024);
    let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
    let mut backends = Vec::new();
    let mut background = Vec::new();
    let mut sockets = Vec::new();
    let lora_triggers = readiness::TriggerWords::default();
    for (index, spec) in specs.iter().enumerate() {
        let comfy = ComfyClient::with_timeouts(spec.url.clone(), tuning.comfy);
        let (own_sender, mut own_events) = mpsc::channel(256);
        let mut stopped = background_stopped.clone();
        let shutdown_socket = async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        };
        let socket = socket::spawn_with(spec.url.clone(), own_sender, shutdown_socket, tuning.socket);
        let tagged = events_sender.clone();
        background.push(tokio::spawn(async move {
            while let Some(event) = own_events.recv().await {
                if tagged.send((index, event)).await.is_err() {
                    return;
                }
            }
        }));
        let shown = if config.demo {
            "the built-in simulator".to_owned()
        } else {
            spec.name.clone()
        };
        let (readiness, loras, probe_task) = readiness::spawn(
            comfy.clone(),
            Arc::clone(&workflow),
            socket.link(),
            shown,
            config.demo,
            tuning.probe,
            lora_triggers.clone(),
        );
        background.push(probe_task);
        sockets.push(socket);
        backends.push(jobs::Backend {
            name: spec.name.clone(),
            comfy,
            readiness,
            loras,
        });
    }
    drop(events_sender);
    let each: Vec<(String, tokio::sync::watch::Receiver<zimage_contract::Readiness>)> = backends
        .iter()
        .map(|backend| (backend.name.clone(), backend.readiness.clone()))
        .collect();
    let (combined, readiness) = tokio::sync::watch::channel(readiness::combine(
        &each
            .iter()
            .map(|(name, readiness)| (name.clone(), readiness.borrow().clone()))
            .collect::<Vec<_>>(),
    ));
    background.push(tokio::spawn(readiness::follow(each, combined)));

    let (jobs, engine_task) = Jobs::open(
        backends,
        Arc::clone(&workflow),
        images.clone(),
        history.clone(),
        pictures.clone(),
        &config.data_dir.join("jobs"),
        true,
        JobTuning {
            max_unfinished: config.access.max_queued,
            deadline: config.job_deadline,
            ..tuning.jobs
        },
    )
    .await
    .context("cannot open the journal of unfinished jobs")?;
    let jobs_task = tokio::spawn(engine_task.run(events));
    // Pictures no job and no image names go after their grace, now and every hour.
    background.push(tokio::spawn(pictures::sweep::every(
        pictures.clone(),
        config.data_dir.join("jobs"),
        history.clone(),
    )));
    let engine = jobs.clone();

    let door = access.clone();
    let state = AppState {
        access,
        jobs,
        history: history.clone(),
        styles: styles::Styles::new(history.clone()),
        images,
        pictures,
        readiness,
        job_deadline: config.job_deadline,
        lora_triggers,
    };
    let app = routes::router(state, &config.site_root);
    let names: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
    tracing::info!(address = %listener.local_addr()?, backends = ?names, demo = config.demo, "studio listening");
    let stopping = engine.clone();
    let shutdown = async move {
        shutdown.await;
        // Streams end with `restarting`, no job is sent to ComfyUI any more, new ones are refused.
        stopping.begin_shutdown();
    };
    // Each request carries its client's address for the door; a client that does not finish its
    // request's head in time loses its connection, and one client holds only so many.
    let server = routes::serve(listener, app, door, shutdown);
    // Docker sends SIGKILL 10 s after SIGTERM by default (compose sets more): whatever a client still
    // holds open after `SHUTDOWN_GRACE` is cut, so the process is gone well before that.
    let served = tokio::select! {
        served = server => served,
        () = async {
            engine.shutdown_begun().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open after the shutdown grace; closing them");
            Ok(())
        }
    };

    // A finished image on its way to the disk is waited for; one cut short is still journaled and
    // saved after the restart, so the wait is bounded.
    let flushed = tokio::time::timeout(SHUTDOWN_GRACE, engine.flush()).await.is_ok();
    if !flushed {
        tracing::warn!("an image was still being saved at shutdown; it is saved after the restart");
    }
    let _ = stop_background.send(true);
    for task in background {
        task.abort();
    }
    jobs_task.abort();
    // With no save under way now that the engine is stopped, the next start may skip the recovery.
    if flushed
        && engine.saves_under_way() == 0
        && let Err(error) = history.close_cleanly().await
    {
        tracing::warn!(%error, "cannot mark the history closed cleanly; the next start checks every image");
    }
    drop(sockets);
    if let Some(simulator) = simulator {
        simulator.shutdown();
    }
    served.context("the HTTP server failed")
}

async fn start_demo_simulator(
    config: &ServeConfig,
    models: &ModelFiles,
) -> anyhow::Result<comfy_sim::SimHandle> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot start the demo simulator")?;
    let options = comfy_sim::SimOptions {
        // Slow enough to watch the progress bar, fast enough not to bore.
        step_ms: 250,
        previews: true,
        unet_models: vec![models.unet.clone()],
        text_encoders: vec![models.text_encoder.clone()],
        vaes: vec![models.vae.clone()],
        output_dir: Some(config.data_dir.join("demo-comfyui-output")),
        ..comfy_sim::SimOptions::default()
    };
    let simulator = comfy_sim::Simulator::spawn(listener, options)
        .await
        .context("cannot start the demo simulator")?;
    tracing::warn!(url = %simulator.url(), "demo mode: a built-in ComfyUI simulator stands in for ComfyUI");
    Ok(simulator)
}
