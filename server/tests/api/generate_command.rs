//! `zimage generate`: the real binary, run as a child process against the gateway and its simulator,
//! as a person runs it from a shell (standard error is a pipe here, so progress comes as plain lines).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use rustix::process::{Pid, Signal, kill_process};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use zimage_contract::{JobStatus, MAX_PROMPT_CHARS};

use crate::support::{PATIENCE, TestApp, eventually, line_containing, spawn_app, spawn_app_with_args};

/// `zimage generate ARGS --server <the app>`, with a clean environment plus `env`.
fn generate(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zimage"));
    command
        .arg("generate")
        .args(args)
        .arg(format!("--server={}", app.address))
        .env_clear()
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// What a finished run printed.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

async fn run(mut command: Command) -> Ran {
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("zimage generate did not finish in time")
        .unwrap();
    Ran {
        status: output.status,
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// A whole PNG's size and its text chunks (Latin-1 and UTF-8 together), decoded to the last pixel.
fn read_png(path: &Path) -> ((u32, u32), Vec<(String, String)>) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let info = reader.info();
    let mut texts: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|chunk| (chunk.keyword.clone(), chunk.text.clone()))
        .collect();
    texts.extend(
        info.utf8_text
            .iter()
            .map(|chunk| (chunk.keyword.clone(), chunk.get_text().unwrap())),
    );
    ((frame.width, frame.height), texts)
}

fn text<'a>(texts: &'a [(String, String)], keyword: &str) -> &'a str {
    texts
        .iter()
        .find(|(key, _)| key == keyword)
        .map(|(_, text)| text.as_str())
        .unwrap_or_else(|| panic!("no {keyword} chunk in {texts:?}"))
}

#[tokio::test]
async fn a_prompt_becomes_a_png_of_the_asked_size_that_keeps_its_story() {
    let app = spawn_app().await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("fox.png");
    let ran = run(generate(
        &app,
        &[
            "a red fox in snow",
            "--size=256x320",
            "--seed=42",
            "-o",
            file.to_str().unwrap(),
        ],
        &[],
    ))
    .await;
    assert!(ran.status.success(), "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), file.display().to_string());
    assert!(
        ran.stderr.contains("step 8/8"),
        "plain progress lines: {}",
        ran.stderr
    );

    let (size, texts) = read_png(&file);
    assert_eq!(size, (256, 320));
    assert_eq!(text(&texts, "Description"), "a red fox in snow");
    assert_eq!(text(&texts, "Seed"), "42");
    assert_eq!(text(&texts, "Size"), "256x320");
    assert_eq!(text(&texts, "Model"), "z_image_turbo-Q8_0.gguf");
    assert_eq!(text(&texts, "Text encoder"), "Qwen3-4B-Q4_K_M.gguf");
    assert_eq!(text(&texts, "VAE"), "ae.safetensors");
    assert!(
        text(&texts, "Software").starts_with("z-image-local "),
        "{texts:?}"
    );
    let entries: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing but the image is left in the folder");
}

#[tokio::test]
async fn two_images_get_consecutive_seeds_names_from_the_prompt_and_json_records() {
    let app = spawn_app().await;
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("new folder");
    let prompt = "雪地里的红狐狸, cinematic";
    let ran = run(generate(
        &app,
        &[
            prompt,
            "--aspect=16:9",
            "--count=2",
            "--seed=7",
            "--json",
            &format!("--output={}/", folder.display()),
        ],
        &[],
    ))
    .await;
    assert!(ran.status.success(), "{}", ran.stderr);
    let records: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(records.len(), 2, "{}", ran.stdout);
    for (record, seed) in records.iter().zip([7_u64, 8]) {
        assert_eq!(record["seed"], seed);
        assert_eq!(record["status"], "completed");
        assert_eq!(record["prompt"], prompt);
        assert_eq!(
            (record["width"].clone(), record["height"].clone()),
            (1024.into(), 576.into())
        );
        let expected = folder.join(format!("雪地里的红狐狸-cinematic-{seed}.png"));
        assert_eq!(record["file"], expected.display().to_string());
        let (size, texts) = read_png(&expected);
        assert_eq!(size, (1024, 576));
        assert_eq!(text(&texts, "Description"), prompt, "the Chinese prompt survives");
        assert_eq!(text(&texts, "Seed"), seed.to_string());
        // The record is the studio's own.
        let job = app.job(record["id"].as_str().unwrap()).await;
        assert_eq!(job.seed, seed);
    }
}

#[tokio::test]
async fn a_refusal_exits_non_zero_with_the_studios_sentence_and_the_field() {
    let app = spawn_app().await;
    let out = tempfile::tempdir().unwrap();
    let too_long = "fox ".repeat(MAX_PROMPT_CHARS);
    let ran = run(generate(
        &app,
        &[&too_long, "-o", out.path().to_str().unwrap()],
        &[],
    ))
    .await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    assert!(
        ran.stderr.contains("the limit is 2000") && ran.stderr.contains("(field `prompt`)"),
        "{}",
        ran.stderr
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);

    // A size the studio does not make: its field is named too (no job was started for it).
    let ran = run(generate(&app, &["fox", "--size=300x300"], &[])).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("(field `width`)"), "{}", ran.stderr);
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"], serde_json::json!([]));
}

#[tokio::test]
async fn a_chinese_terminal_reads_the_command_and_the_studio_in_chinese() {
    let app = spawn_app().await;
    let too_long = "狐".repeat(MAX_PROMPT_CHARS + 1);
    let ran = run(generate(&app, &[&too_long], &[("LANG", "zh_CN.UTF-8")])).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("工作室拒绝启动任务")
            && ran.stderr.contains("上限是 2000")
            && ran.stderr.contains("（字段 `prompt`）"),
        "{}",
        ran.stderr
    );
}

#[tokio::test]
async fn the_secret_is_sent_as_a_bearer_token_and_its_absence_is_explained() {
    let app = spawn_app_with_args(&["--password=correct horse battery"]).await;
    let out = tempfile::tempdir().unwrap();
    let output = format!("--output={}", out.path().display());
    let args = ["fox", "--size=256x256", output.as_str()];

    let ran = run(generate(&app, &args, &[])).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("Sign in first") && ran.stderr.contains("ZIMAGE_PASSWORD"),
        "{}",
        ran.stderr
    );
    let ran = run(generate(&app, &args, &[("ZIMAGE_PASSWORD", "wrong")])).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("not this studio's access secret"),
        "{}",
        ran.stderr
    );

    let ran = run(generate(
        &app,
        &args,
        &[("ZIMAGE_PASSWORD", "correct horse battery")],
    ))
    .await;
    assert!(ran.status.success(), "{}", ran.stderr);
    let file = PathBuf::from(ran.stdout.trim());
    assert_eq!(read_png(&file).0, (256, 256));
}

async fn wait(child: &mut Child) -> ExitStatus {
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("zimage generate did not exit in time")
        .unwrap()
}

#[tokio::test]
async fn ctrl_c_cancels_the_job_on_the_studio_before_exiting() {
    let app = spawn_app().await;
    let out = tempfile::tempdir().unwrap();
    // The simulator holds the job before its second step, for as long as the test needs.
    app.sim.faults().hold_at_step(Some(2));
    let mut child = generate(
        &app,
        &[
            "a fox that never finishes",
            "--size=256x256",
            "-o",
            out.path().to_str().unwrap(),
        ],
        &[],
    )
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let submitted = line_containing(&mut lines, "submitted").await;
    let id = submitted
        .split_whitespace()
        .skip_while(|word| *word != "job")
        .nth(1)
        .unwrap()
        .to_owned();
    line_containing(&mut lines, "step 1/8").await;

    let pid = Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap()).unwrap();
    kill_process(pid, Signal::INT).unwrap();
    let cancelled = line_containing(&mut lines, "cancelled").await;
    assert!(cancelled.contains(&id), "{cancelled}");
    let status = wait(&mut child).await;
    assert_eq!(status.code(), Some(130));

    // Cancelled on the studio (not merely abandoned by the client), and no file written.
    eventually("the job to end cancelled", || async {
        let status = app.job(&id).await.status;
        status.is_terminal().then_some(status)
    })
    .await;
    assert_eq!(app.job(&id).await.status, JobStatus::Cancelled);
    app.sim.faults().hold_at_step(None);
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// A JPEG of `width` x `height` written into `folder`.
fn photo(folder: &Path, width: u32, height: u32) -> PathBuf {
    let path = folder.join("photo.jpg");
    image::RgbImage::from_pixel(width, height, image::Rgb([200, 40, 40]))
        .save_with_format(&path, image::ImageFormat::Jpeg)
        .unwrap();
    path
}

#[tokio::test]
async fn from_a_picture_the_files_go_to_the_studio_before_the_job() {
    let app = spawn_app().await;
    let out = tempfile::tempdir().unwrap();
    let picture = photo(out.path(), 640, 480);
    let mask = out.path().join("mask.png");
    image::RgbaImage::from_fn(640, 480, |x, _| {
        image::Rgba([0, 0, 0, if x < 320 { 0 } else { 255 }])
    })
    .save(&mask)
    .unwrap();
    let file = out.path().join("fox.png");
    let ran = run(generate(
        &app,
        &[
            "a red fox",
            "--from",
            picture.to_str().unwrap(),
            "--strength=0.5",
            "--mask",
            mask.to_str().unwrap(),
            "--size=256x256",
            "-o",
            file.to_str().unwrap(),
        ],
        &[],
    ))
    .await;
    assert!(ran.status.success(), "{}", ran.stderr);
    // Both files were taken, cleaned and kept by the studio (a picture and a mask of its size).
    let kept: Vec<_> = std::fs::read_dir(app.data_dir.path().join("pictures"))
        .unwrap()
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(file.exists());
}

#[tokio::test]
async fn a_picture_the_studio_refuses_names_its_field_and_starts_nothing() {
    let app = spawn_app().await;
    let out = tempfile::tempdir().unwrap();
    let not_a_picture = out.path().join("notes.jpg");
    std::fs::write(&not_a_picture, "not a picture").unwrap();
    let ran = run(generate(
        &app,
        &["fox", "--from", not_a_picture.to_str().unwrap()],
        &[],
    ))
    .await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("(field `picture`)"), "{}", ran.stderr);
    let missing = out.path().join("missing.jpg");
    let ran = run(generate(&app, &["fox", "--from", missing.to_str().unwrap()], &[])).await;
    assert_eq!(ran.status.code(), Some(1), "{}", ran.stderr);
    assert!(ran.stderr.contains("cannot read"), "{}", ran.stderr);
    let history = app.get("/api/history").await;
    assert_eq!(history.body["items"], serde_json::json!([]));
    assert_eq!(app.sim.faults().requests_to("POST /prompt"), 0);
}

#[tokio::test]
async fn a_saved_style_makes_the_image_and_an_unknown_one_is_refused() {
    let app = spawn_app().await;
    let saved = app
        .post_json(
            "/api/styles",
            &serde_json::json!({"name": "Watercolor", "prompt_before": "a watercolor of", "aspect_ratio": "16:9"}),
        )
        .await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    let out = tempfile::tempdir().unwrap();
    let ran = run(generate(
        &app,
        &[
            "a heron",
            "--style=watercolor",
            "--json",
            "-o",
            out.path().to_str().unwrap(),
        ],
        &[],
    ))
    .await;
    assert!(ran.status.success(), "{}", ran.stderr);
    let records: Vec<Value> = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(records[0]["prompt"], "a watercolor of a heron", "{}", ran.stdout);
    assert_eq!(
        (records[0]["width"].clone(), records[0]["height"].clone()),
        (1024.into(), 576.into())
    );

    let ran = run(generate(&app, &["a heron", "--style=oil"], &[])).await;
    assert!(!ran.status.success());
    assert!(ran.stderr.contains("oil"), "{}", ran.stderr);
}
