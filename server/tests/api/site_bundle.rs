//! `zimage serve` and the web UI's bundle: the binary refuses a site folder without it, naming the
//! missing files and the fix, and starts once the files are there.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::support::{PATIENCE, line_containing, workspace_file};

/// `zimage serve` on a free port with `site_root`, against a ComfyUI that is not there (readiness is
/// probed in the background and never holds up the start), with a clean environment.
fn serve(site_root: &std::path::Path, data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zimage"));
    command
        .arg("serve")
        .arg("--listen=127.0.0.1:0")
        .arg("--comfyui=http://127.0.0.1:9")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!(
            "--workflow={}",
            workspace_file("backend/workflows/z_image_turbo.json").display()
        ))
        .arg(format!("--site-root={}", site_root.display()))
        .env_clear()
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn serve_refuses_a_site_folder_without_the_bundle_and_starts_with_it() {
    let site = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(site.path().join("pkg")).unwrap();
    std::fs::write(site.path().join("pkg/hydrate.js"), b"// built").unwrap();

    let output = tokio::time::timeout(PATIENCE, serve(site.path(), data.path()).output())
        .await
        .expect("zimage serve neither started nor exited in time")
        .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("the web UI is not built"), "{log}");
    assert!(
        log.contains("pkg/hydrate_bg.wasm")
            && log.contains("pkg/main.css")
            && !log.contains("pkg/hydrate.js"),
        "names exactly the missing files: {log}"
    );
    assert!(log.contains("scripts/demo"), "names the fix: {log}");

    // Told to go on anyway, it starts (and says what is missing).
    let mut child = serve(site.path(), data.path())
        .arg("--allow-missing-bundle")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    line_containing(&mut lines, "the web UI is not built").await;
    line_containing(&mut lines, "studio listening").await;
    child.kill().await.unwrap();

    // With the whole bundle it starts without a word about it.
    std::fs::write(site.path().join("pkg/hydrate_bg.wasm"), b"\0asm").unwrap();
    std::fs::write(site.path().join("pkg/main.css"), b"body{}").unwrap();
    let mut child = serve(site.path(), data.path()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let listening = line.contains("studio listening");
            log.push(line);
            if listening {
                return;
            }
        }
        panic!("zimage serve exited: {log:?}");
    })
    .await
    .expect("zimage serve did not start in time");
    assert!(!log.iter().any(|line| line.contains("not built")), "{log:?}");
    child.kill().await.unwrap();
}
