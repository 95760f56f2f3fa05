//! `zimage serve --demo`: the gateway starts its own simulator, says so, and makes images alone.

use clap::Parser as _;
use tokio::net::TcpListener;
use zimage::config::{Cli, Command};
use zimage_contract::{BackendState, Readiness};

use crate::support::{eventually, quick_tuning, workspace_file};

#[tokio::test]
async fn demo_mode_needs_no_comfyui_says_so_and_makes_images() {
    let data_dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let arguments = [
        "zimage".to_owned(),
        "serve".to_owned(),
        "--demo".to_owned(),
        // Nothing listens here: demo mode must not use it.
        "--comfyui=http://127.0.0.1:9".to_owned(),
        format!("--data-dir={}", data_dir.path().display()),
        format!(
            "--workflow={}",
            workspace_file("backend/workflows/z_image_turbo.json").display()
        ),
        format!("--site-root={}", workspace_file("target/site").display()),
    ];
    let Command::Serve(config) = Cli::try_parse_from(arguments).unwrap().command else {
        unreachable!()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zimage::serve_tuned(
        config,
        quick_tuning(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();

    let readiness = eventually("the demo to be ready", || async {
        let readiness: Readiness = http
            .get(format!("{address}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        readiness.ready.then_some(readiness)
    })
    .await;
    assert!(readiness.demo);
    assert_eq!(readiness.state, BackendState::Ready);
    assert!(
        readiness.message.to_lowercase().contains("demo"),
        "{}",
        readiness.message
    );

    let accepted: zimage_contract::JobAccepted = http
        .post(format!("{address}/api/jobs"))
        .json(&serde_json::json!({"prompt": "a demo fox", "width": 256, "height": 256}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = eventually("the demo job to end", || async {
        let job: zimage_contract::JobView = http
            .get(format!("{address}/api/jobs/{}", accepted.id))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        job.status.is_terminal().then_some(job)
    })
    .await;
    assert_eq!(job.status, zimage_contract::JobStatus::Completed, "{job:?}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
