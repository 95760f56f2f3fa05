//! The door to the LAN, end to end: the address allowlist, the Host allowlist, the same-origin check,
//! job ownership, the access secret with sessions, bearer tokens and pairing links, the abuse limits,
//! the security headers, and hostile requests that must leave the gateway healthy.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use comfy_sim::Simulator;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode, redirect};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zimage_contract::{JobEvent, PairingLink, SessionStatus};

use crate::support::{
    PATIENCE, TestApp, check_documented, eventually, is_json, quick_sim, spawn_app, spawn_app_with_args,
    start_gateway_with_args, workspace_file,
};

const SECRET: &str = "correct horse battery staple";

fn small_job(prompt: &str) -> Value {
    json!({"prompt": prompt, "width": 256, "height": 256})
}

/// A browser of its own: its own cookie jar, no redirects followed (so they can be checked), and the
/// mark a browser puts on every request from the studio's page (`Sec-Fetch-Site: same-origin`, which a
/// request's own header replaces), by which the studio tells browsers, which get the identity cookie,
/// from scripts, which are known by their token or address.
fn browser() -> Client {
    let mut marks = HeaderMap::new();
    marks.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
    Client::builder()
        .cookie_store(true)
        .default_headers(marks)
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

/// Status and JSON body (or `Value::Null`) of any response, checked against the OpenAPI document.
async fn read(method: &Method, response: reqwest::Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let path = response.url().path().to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    let method = method.as_str().to_ascii_lowercase();
    check_documented(
        &method,
        &path,
        status.as_u16(),
        is_json(&headers).then_some(&body),
    );
    (status, headers, body)
}

async fn send(
    app: &TestApp,
    client: &Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = client.request(method.clone(), app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(&method, request.send().await.unwrap()).await
}

async fn post_job(
    app: &TestApp,
    client: &Client,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut request = client.post(app.url("/api/jobs")).json(&small_job("fox"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    read(&Method::POST, request.send().await.unwrap()).await
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

async fn sign_in(app: &TestApp, client: &Client, password: &str) -> (StatusCode, HeaderMap, Value) {
    let request = client
        .post(app.url("/api/session"))
        .json(&json!({"password": password}));
    read(&Method::POST, request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_client_outside_the_allowlist_is_refused_before_anything_runs() {
    let app = spawn_app_with_args(&["--allow=10.0.0.0/8,192.168.0.0/16"]).await;
    for path in [
        "/",
        "/api/history",
        "/api/jobs/nope",
        "/pkg/app.js",
        "/sign-in",
        "/healthz/x",
    ] {
        let (status, headers, body) = send(&app, &browser(), Method::GET, path, &[]).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, Some("address_not_allowed")),
            "{path}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    }
    let (status, _, _) = post_job(&app, &browser(), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&app, &browser(), Method::POST, "/healthz", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only reading health is exempt");
    assert!(app.sim.faults().prompts_received().is_empty());
}

#[tokio::test]
async fn the_health_check_on_the_machine_itself_works_whatever_the_allowlist() {
    // `.env.example` suggests narrowing ZIMAGE_ALLOW to the LAN; the image's HEALTHCHECK still asks
    // http://127.0.0.1:7860/healthz from inside the container.
    let app = spawn_app_with_args(&["--allow=192.168.1.0/24"]).await;
    let (status, headers, _) = send(&app, &browser(), Method::GET, "/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(
        send(&app, &browser(), Method::HEAD, "/healthz", &[]).await.0,
        StatusCode::OK
    );
    let (status, _, body) = send(&app, &browser(), Method::GET, "/readyz", &[]).await;
    assert!(
        matches!(status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE),
        "{status}: {body}"
    );
    assert!(body["ready"].is_boolean(), "{body}");
    // The health check goes past the address check only: a Host the studio does not answer to is
    // still refused.
    let (status, _, body) = send(
        &app,
        &browser(),
        Method::GET,
        "/healthz",
        &[("host", "evil.example")],
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("unknown_host"))
    );
}

#[tokio::test]
async fn loopback_is_admitted_by_default_and_every_answer_carries_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/healthz",
        "/readyz",
        "/api/history",
        "/api/jobs/nope",
        "/api/nothing",
    ] {
        let (_, headers, _) = send(&app, &browser(), Method::GET, path, &[]).await;
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header(&headers, "referrer-policy"), "no-referrer", "{path}");
        let policy = header(&headers, "content-security-policy");
        assert!(
            policy.starts_with("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
    }
}

#[tokio::test]
async fn pages_get_a_policy_whose_nonce_is_on_the_hydration_script_and_no_other_inline_script_runs() {
    let app = spawn_app().await;
    let response = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let policy = header(response.headers(), "content-security-policy").to_owned();
    let html = response.text().await.unwrap();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no nonce in {policy}"));
    assert!(
        policy.contains("script-src 'self' 'nonce-") && policy.contains("'wasm-unsafe-eval'"),
        "{policy}"
    );
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    // Every inline script of the page carries the nonce of this response (and so may run).
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert!(!scripts.is_empty(), "{html}");
    for script in scripts {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(
            tag.contains(&format!("nonce=\"{nonce}\"")),
            "a script without the page's nonce: <script{tag}>"
        );
    }
    // Each page gets its own nonce.
    let again = browser().get(app.url("/")).send().await.unwrap();
    assert_ne!(header(again.headers(), "content-security-policy"), policy);
}

#[tokio::test]
async fn hosts_the_studio_does_not_answer_to_are_refused() {
    let app = spawn_app_with_args(&["--allowed-hosts=studio.lan"]).await;
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    for (host, expected) in [
        (format!("evil.example:{port}"), StatusCode::FORBIDDEN),
        ("studio.lan.evil.example".to_owned(), StatusCode::FORBIDDEN),
        (format!("localhost:{port}"), StatusCode::OK),
        (format!("studio.lan:{port}"), StatusCode::OK),
        ("Studio.LAN".to_owned(), StatusCode::OK),
        (format!("127.0.0.1:{port}"), StatusCode::OK),
    ] {
        let (status, _, body) = send(&app, &browser(), Method::GET, "/healthz", &[("host", &host)]).await;
        assert_eq!(status, expected, "{host}");
        if status == StatusCode::FORBIDDEN {
            assert_eq!(code(&body), Some("unknown_host"), "{host}");
        }
    }
}

#[tokio::test]
async fn changes_from_other_sites_are_refused_and_the_studios_own_pages_pass() {
    let app = spawn_app().await;
    let client = browser();
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site"), ("origin", app.address.as_str())],
        vec![("origin", "http://127.0.0.1:1")],
    ] {
        let (status, _, body) = post_job(&app, &client, &headers).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, Some("cross_origin")),
            "{headers:?}"
        );
    }
    assert!(app.sim.faults().prompts_received().is_empty());

    // The studio's own page sends both headers; a script sends neither.
    let (status, _, own) = post_job(
        &app,
        &client,
        &[("origin", &app.address), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{own}");
    let (status, _, _) = post_job(&app, &client, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let path = format!("/api/jobs/{}", own["id"].as_str().unwrap());
    let (status, _, body) = send(
        &app,
        &client,
        Method::DELETE,
        &path,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("cross_origin"))
    );
    // A form post from anywhere is no JSON: refused even without browser headers.
    let form = client
        .post(app.url("/api/jobs"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("prompt=fox");
    let (status, _, body) = read(&Method::POST, form.send().await.unwrap()).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, Some("unsupported_media_type"))
    );
}

#[tokio::test]
async fn a_browser_may_cancel_and_delete_only_its_own_jobs() {
    let app = spawn_app().await;
    app.sim.faults().hold_at_step(Some(2));
    let (owner, stranger, cookieless) = (browser(), browser(), Client::new());
    let (status, headers, job) = post_job(&app, &owner, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let cookie = header(&headers, "set-cookie");
    assert!(
        cookie.starts_with("zimage_client=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let path = format!("/api/jobs/{}", job["id"].as_str().unwrap());
    for other in [&stranger, &cookieless] {
        let (status, _, body) = send(&app, other, Method::DELETE, &path, &[]).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, Some("not_yours")));
    }
    // Reading is open to everyone on the LAN; only changes are the owner's.
    let (status, _, _) = send(&app, &stranger, Method::GET, &path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = send(&app, &owner, Method::DELETE, &path, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    app.sim.faults().release();
    let (_, _, finished) = post_job(&app, &owner, &[]).await;
    let id = finished["id"].as_str().unwrap().to_owned();
    let (_, last) = app.events(&id, None).await.until(JobEvent::is_terminal).await;
    assert!(matches!(last, JobEvent::Completed { .. }), "{last:?}");
    let history_path = format!("/api/history/{id}");
    let (status, _, body) = send(&app, &stranger, Method::DELETE, &history_path, &[]).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, Some("not_yours")));
    let (status, _, _) = send(&app, &owner, Method::DELETE, &history_path, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn ownership_survives_a_gateway_restart() {
    let app = spawn_app().await;
    let owner = browser();
    let (_, _, job) = post_job(&app, &owner, &[]).await;
    let id = job["id"].as_str().unwrap().to_owned();
    app.events(&id, None).await.until(JobEvent::is_terminal).await;
    let app = app.restart_gateway().await;
    let path = format!("/api/history/{id}");
    let (status, _, _) = send(&app, &browser(), Method::DELETE, &path, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = send(&app, &owner, Method::DELETE, &path, &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn with_a_secret_only_the_signed_in_get_past_the_door() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    let visitor = browser();
    let (status, headers, body) = send(&app, &visitor, Method::GET, "/api/history", &[]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, Some("sign_in_required"))
    );
    assert!(header(&headers, "www-authenticate").starts_with("Bearer"));
    let (status, _, _) = post_job(&app, &visitor, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, headers, _) = send(&app, &visitor, Method::GET, "/gallery?x=1", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(header(&headers, "location"), "/sign-in?next=%2Fgallery%3Fx%3D1");
    // What works without signing in: health, the sign-in page and the session endpoint.
    let (status, _, _) = send(&app, &visitor, Method::GET, "/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let page = visitor.get(app.url("/sign-in")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = header(page.headers(), "content-security-policy").to_owned();
    let html = page.text().await.unwrap();
    let nonce = policy
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")), "{html}");
    let (_, _, status_body) = send(&app, &visitor, Method::GET, "/api/session", &[]).await;
    let session: SessionStatus = serde_json::from_value(status_body).unwrap();
    assert_eq!(
        session,
        SessionStatus {
            secret_required: true,
            signed_in: false
        }
    );

    let (status, _, body) = sign_in(&app, &visitor, "wrong").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, Some("wrong_secret"))
    );
    let (status, headers, _) = sign_in(&app, &visitor, SECRET).await;
    assert_eq!(status, StatusCode::OK);
    let cookie = header(&headers, "set-cookie");
    assert!(
        cookie.starts_with("zimage_session=v1.")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let (status, _, _) = send(&app, &visitor, Method::GET, "/api/history", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = post_job(&app, &visitor, &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, headers, _) = send(&app, &visitor, Method::GET, "/sign-in?next=/gallery", &[]).await;
    assert_eq!(
        (status, header(&headers, "location")),
        (StatusCode::SEE_OTHER, "/gallery")
    );

    // Signing out forgets the session.
    let (status, _, _) = send(&app, &visitor, Method::DELETE, "/api/session", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = send(&app, &visitor, Method::GET, "/api/history", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn scripts_use_the_secret_as_a_bearer_token_and_the_signed_in_may_cancel_any_job() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    app.sim.faults().hold_at_step(Some(2));
    let script = Client::new();
    let bearer = format!("Bearer {SECRET}");
    let (status, _, job) = post_job(&app, &script, &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let (status, _, body) = post_job(&app, &script, &[("authorization", "Bearer guess")]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, Some("wrong_token"))
    );
    // Another script, without the first one's cookie, may still cancel: it proved the secret.
    let path = format!("/api/jobs/{}", job["id"].as_str().unwrap());
    let (status, _, _) = send(
        &app,
        &Client::new(),
        Method::DELETE,
        &path,
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.sim.faults().release();
}

#[tokio::test]
async fn wrong_secrets_meet_a_rate_limit_with_retry_after() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    let guesser = browser();
    let mut last = (StatusCode::OK, HeaderMap::new(), Value::Null);
    for _ in 0..6 {
        last = sign_in(&app, &guesser, "guess").await;
    }
    let (status, headers, body) = last;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts"))
    );
    assert!(
        header(&headers, "retry-after")
            .parse::<u64>()
            .is_ok_and(|seconds| seconds >= 1)
    );
    // Even the right secret waits now: guessing cannot go on by mixing in the answer.
    let (status, _, _) = sign_in(&app, &guesser, SECRET).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
}

/// A client whose connections come from `address`. On Linux all of 127.0.0.0/8 is loopback, so each
/// such client is another address to the gateway, which listens on 127.0.0.1.
fn client_from(address: [u8; 4]) -> Client {
    Client::builder()
        .local_address(IpAddr::from(address))
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "needs 127.0.0.2 and up on the loopback interface, as Linux has"
)]
async fn wrong_guesses_from_other_addresses_never_lock_the_owner_out() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    let wrong = "Bearer not the secret";
    for last in 2..=6 {
        let guesser = client_from([127, 0, 0, last]);
        let mut statuses = Vec::new();
        for _ in 0..6 {
            let (status, _, body) = send(
                &app,
                &guesser,
                Method::GET,
                "/api/history",
                &[("authorization", wrong)],
            )
            .await;
            statuses.push((status, code(&body).map(str::to_owned)));
        }
        // Each guesser meets its own limit...
        assert_eq!(
            statuses.last(),
            Some(&(
                StatusCode::TOO_MANY_REQUESTS,
                Some("too_many_attempts".to_owned())
            )),
            "127.0.0.{last}: {statuses:?}"
        );
        let right = format!("Bearer {SECRET}");
        let (status, _, _) = send(
            &app,
            &guesser,
            Method::GET,
            "/api/history",
            &[("authorization", &right)],
        )
        .await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "...even with the right secret"
        );
    }
    // ...and the owner, elsewhere, is not one of them: by bearer token and by signing in.
    let owner = client_from([127, 0, 0, 7]);
    let right = format!("Bearer {SECRET}");
    let (status, _, body) = send(
        &app,
        &owner,
        Method::GET,
        "/api/history",
        &[("authorization", &right)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let browser = Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 8]))
        .cookie_store(true)
        .build()
        .unwrap();
    let (status, _, body) = sign_in(&app, &browser, SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = send(&app, &browser, Method::GET, "/api/history", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_damaged_session_key_is_replaced_at_start_and_signing_in_works() {
    // What a crash in the middle of writing the key used to leave behind, blocking every later start.
    let sim = Simulator::spawn(TcpListener::bind("127.0.0.1:0").await.unwrap(), quick_sim())
        .await
        .unwrap();
    let data_dir = Arc::new(tempfile::tempdir().unwrap());
    let key_file = data_dir.path().join("access.key");
    std::fs::write(&key_file, b"half a k").unwrap();
    let password = format!("--password={SECRET}");
    let app = start_gateway_with_args(sim, Arc::clone(&data_dir), &[&password]).await;
    let visitor = browser();
    let (status, _, body) = sign_in(&app, &visitor, SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 32);
    let (status, _, _) = send(&app, &visitor, Method::GET, "/api/history", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

/// A `zimage serve` process, killed when dropped.
struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What became of `zimage serve` started as a process.
enum Started {
    /// It listens at `address` (`http://...`).
    Listening { _process: Process, address: String },
    /// It exited before listening, and its log says this.
    Exited { log: String },
}

/// `zimage serve` as a process, with these environment variables, until it listens or exits.
async fn start_binary(data_dir: &Path, environment: &[(&str, &str)]) -> Started {
    use std::io::BufRead as _;

    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_zimage"));
    command
        .arg("serve")
        .env("ZIMAGE_LISTEN", "127.0.0.1:0")
        // Nothing listens there: readiness is probed in the background and never holds up the start.
        .env("COMFYUI_URL", "http://127.0.0.1:9")
        .env("ZIMAGE_DATA_DIR", data_dir)
        .env(
            "ZIMAGE_WORKFLOW",
            workspace_file("backend/workflows/z_image_turbo.json"),
        )
        .env("ZIMAGE_SITE_ROOT", workspace_file("target/site"))
        .env("ZIMAGE_ALLOW_MISSING_BUNDLE", "true")
        .env("RUST_LOG", "info")
        .envs(environment.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut process = Process(command.spawn().unwrap());
    let stderr = process.0.stderr.take().unwrap();
    // The log is read to its end on a thread of its own, so the process never blocks on a full pipe;
    // the first line saying where it listens, or the whole log once it ends, comes back here.
    let (found, listening) = std::sync::mpsc::channel::<Result<String, String>>();
    std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let address = line
                .contains("studio listening")
                .then(|| {
                    line.split_whitespace()
                        .find_map(|field| field.strip_prefix("address="))
                        .map(str::to_owned)
                })
                .flatten();
            log.push(line);
            if let Some(address) = address {
                let _ = found.send(Ok(address));
            }
        }
        let _ = found.send(Err(log.join("\n")));
    });
    let answer = tokio::task::spawn_blocking(move || listening.recv_timeout(PATIENCE))
        .await
        .unwrap()
        .expect("zimage serve neither listened nor exited in time");
    match answer {
        Ok(address) => Started::Listening {
            _process: process,
            address: format!("http://{address}"),
        },
        Err(log) => {
            assert!(!process.0.wait().unwrap().success(), "{log}");
            Started::Exited { log }
        }
    }
}

#[tokio::test]
async fn an_empty_password_variable_leaves_room_for_the_password_file() {
    // The shipped compose file always sets ZIMAGE_PASSWORD, empty unless .env fills it.
    let data_dir = tempfile::tempdir().unwrap();
    let secret_file = data_dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let file = secret_file.to_str().unwrap();
    let started = start_binary(
        data_dir.path(),
        &[("ZIMAGE_PASSWORD", ""), ("ZIMAGE_PASSWORD_FILE", file)],
    )
    .await;
    let Started::Listening { address, .. } = started else {
        panic!("did not start")
    };
    let visitor = browser();
    let status: SessionStatus = visitor
        .get(format!("{address}/api/session"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status.secret_required);
    let response = visitor
        .post(format!("{address}/api/session"))
        .json(&json!({"password": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Two secrets that disagree cannot both be meant: the start stops and says why.
    let started = start_binary(
        data_dir.path(),
        &[("ZIMAGE_PASSWORD", "another"), ("ZIMAGE_PASSWORD_FILE", file)],
    )
    .await;
    let Started::Exited { log } = started else {
        panic!("started with two secrets")
    };
    assert!(log.contains("given twice"), "{log}");
}

#[tokio::test]
async fn a_phone_is_paired_once_by_the_link_a_signed_in_device_shows() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    let (desktop, phone) = (browser(), browser());
    let (status, _, body) = send(&app, &desktop, Method::POST, "/api/pairings", &[]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "only the signed in may pair: {body}"
    );
    sign_in(&app, &desktop, SECRET).await;
    let response = desktop
        .post(app.url("/api/pairings"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let link: PairingLink = response.json().await.unwrap();
    assert!(
        link.url.starts_with(&format!("{}/pair/", app.address)),
        "{}",
        link.url
    );
    assert!(link.qr_svg.starts_with("<svg") && link.expires_in_s == Some(600));
    let page = desktop.get(app.url("/pair")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<svg"));

    let pair_path = link.url.trim_start_matches(&app.address).to_owned();
    let (status, headers, _) = send(&app, &phone, Method::GET, &pair_path, &[]).await;
    assert_eq!(
        (status, header(&headers, "location")),
        (StatusCode::SEE_OTHER, "/")
    );
    assert!(header(&headers, "set-cookie").starts_with("zimage_session="));
    let (status, _, _) = send(&app, &phone, Method::GET, "/api/history", &[]).await;
    assert_eq!(status, StatusCode::OK);
    // The link works once.
    let (status, _, _) = send(&app, &browser(), Method::GET, &pair_path, &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn without_a_secret_the_pairing_code_is_just_the_studios_address() {
    let app = spawn_app().await;
    let response = browser()
        .post(app.url("/api/pairings"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let link: PairingLink = response.json().await.unwrap();
    assert_eq!(link.url, format!("{}/", app.address));
    assert_eq!(link.expires_in_s, None);
    let (status, _, body) = sign_in(&app, &browser(), "anything").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn a_client_starting_jobs_too_fast_gets_429_with_retry_after() {
    let app = spawn_app_with_args(&["--jobs-per-minute=2"]).await;
    let client = browser();
    for _ in 0..2 {
        assert_eq!(post_job(&app, &client, &[]).await.0, StatusCode::ACCEPTED);
    }
    let (status, headers, body) = post_job(&app, &client, &[]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_jobs"))
    );
    assert!(
        header(&headers, "retry-after")
            .parse::<u64>()
            .is_ok_and(|seconds| (1..=30).contains(&seconds))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|message| !message.is_empty())
    );
    assert_eq!(app.wait_prompts_received(2).await.len(), 2);
}

#[tokio::test]
async fn the_queue_cap_answers_429_until_a_job_ends() {
    let app = spawn_app_with_args(&["--max-queued=2"]).await;
    app.sim.faults().hold_at_step(Some(1));
    let client = browser();
    let (_, _, first) = post_job(&app, &client, &[]).await;
    assert_eq!(post_job(&app, &client, &[]).await.0, StatusCode::ACCEPTED);
    let (status, headers, body) = post_job(&app, &client, &[]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, Some("queue_full"))
    );
    assert!(header(&headers, "retry-after").parse::<u64>().is_ok());
    let path = format!("/api/jobs/{}", first["id"].as_str().unwrap());
    assert_eq!(
        send(&app, &client, Method::DELETE, &path, &[]).await.0,
        StatusCode::ACCEPTED
    );
    app.events(first["id"].as_str().unwrap(), None)
        .await
        .until(JobEvent::is_terminal)
        .await;
    assert_eq!(post_job(&app, &client, &[]).await.0, StatusCode::ACCEPTED);
    app.sim.faults().release();
}

#[tokio::test]
async fn a_client_may_hold_only_so_many_event_streams_at_once() {
    let app = spawn_app_with_args(&["--max-streams-per-client=2"]).await;
    app.sim.faults().hold_at_step(Some(1));
    let job = app.create_job(small_job("fox")).await;
    let first = app.events(&job.id, None).await;
    let second = app.events(&job.id, None).await;
    let path = format!("/api/jobs/{}/events", job.id);
    let (status, headers, body) = send(&app, &browser(), Method::GET, &path, &[]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_streams"))
    );
    assert!(!header(&headers, "retry-after").is_empty());

    // When the job ends, its streams end and free their places.
    app.sim.faults().release();
    first.until_end().await;
    second.until_end().await;
    eventually("the places to be freed", || async {
        let response = app.http.get(app.url(&path)).send().await.unwrap();
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
}

#[tokio::test]
async fn oversized_addresses_and_headers_are_refused_and_the_gateway_stays_healthy() {
    let app = spawn_app().await;
    let client = browser();
    let long_query = format!("/api/history?x={}", "a".repeat(5000));
    let (status, _, body) = send(&app, &client, Method::GET, &long_query, &[]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::URI_TOO_LONG, Some("uri_too_long"))
    );
    let big = "b".repeat(20 * 1024);
    let (status, _, body) = send(&app, &client, Method::GET, "/healthz", &[("x-big", &big)]).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "{body}");
    let names: Vec<String> = (0..80).map(|index| format!("x-h{index}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "1")).collect();
    let (status, _, _) = send(&app, &client, Method::GET, "/healthz", &many).await;
    assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(
        send(&app, &client, Method::GET, "/healthz", &[]).await.0,
        StatusCode::OK
    );
}

/// A hostile request (method, path, headers) with the status it must get and the field it must name.
type HostileCase<'a> = (
    Method,
    String,
    Vec<(&'a str, &'a str)>,
    StatusCode,
    Option<&'a str>,
);

#[tokio::test]
async fn hostile_requests_get_4xx_and_leave_the_gateway_healthy() {
    let app = spawn_app().await;
    let job = app.create_job(small_job("fox")).await;
    let events = format!("/api/jobs/{}/events", job.id);
    let client = browser();
    let cases: Vec<HostileCase<'_>> = vec![
        (
            Method::GET,
            events.clone(),
            vec![("last-event-id", "-1")],
            StatusCode::BAD_REQUEST,
            Some("Last-Event-ID"),
        ),
        (
            Method::GET,
            events.clone(),
            vec![("last-event-id", "99999999999999999999999")],
            StatusCode::BAD_REQUEST,
            Some("Last-Event-ID"),
        ),
        (
            Method::GET,
            events.clone(),
            vec![("last-event-id", "1e3")],
            StatusCode::BAD_REQUEST,
            Some("Last-Event-ID"),
        ),
        (
            Method::GET,
            "/api/images/..%2F..%2Fetc%2Fpasswd".to_owned(),
            vec![],
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::GET,
            "/api/images/%00".to_owned(),
            vec![],
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::GET,
            "/api/jobs/%E2%80%AE".to_owned(),
            vec![],
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::DELETE,
            "/api/history/..%2F..%2Fdata".to_owned(),
            vec![],
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            Method::GET,
            "/api/history?limit=%00".to_owned(),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("limit"),
        ),
        (
            Method::GET,
            "/api/history?before=%FF%FE".to_owned(),
            vec![],
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("before"),
        ),
        (
            Method::PATCH,
            format!("/api/jobs/{}", job.id),
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
        (
            Method::POST,
            "/api/history".to_owned(),
            vec![],
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        ),
        (
            Method::GET,
            "/pair/..%2F..%2Fetc".to_owned(),
            vec![],
            StatusCode::SEE_OTHER,
            None,
        ),
        (
            Method::POST,
            "/api/session".to_owned(),
            vec![("content-type", "text/plain")],
            StatusCode::BAD_REQUEST,
            None,
        ),
    ];
    for (method, path, headers, expected, field) in cases {
        let (status, _, body) = send(&app, &client, method.clone(), &path, &headers).await;
        assert_eq!(status, expected, "{method} {path} {headers:?}: {body}");
        if let Some(field) = field {
            assert_eq!(
                body["error"]["field"].as_str(),
                Some(field),
                "{method} {path}: {body}"
            );
        }
    }
    // Header values that are not text at all.
    let mut request = client.get(app.url("/healthz"));
    request = request.header(
        "cookie",
        HeaderValue::from_bytes(b"zimage_client=\xff\xfe").unwrap(),
    );
    assert_eq!(request.send().await.unwrap().status(), StatusCode::OK);
    let request = client
        .post(app.url("/api/jobs"))
        .header("origin", HeaderValue::from_bytes(b"http://\xff").unwrap())
        .json(&small_job("fox"));
    assert_eq!(request.send().await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        send(&app, &client, Method::GET, "/healthz", &[]).await.0,
        StatusCode::OK
    );
    app.events_until_end(&job.id).await;
}

#[tokio::test]
async fn an_image_from_comfyui_that_is_not_a_png_fails_the_job_and_nothing_is_kept() {
    let app = spawn_app().await;
    // Hold the download until the simulator has written the image, then spoil the file.
    app.sim.faults().slow_view(Some(Duration::MAX));
    let job = app.create_job(small_job("fox")).await;
    let output = app.sim.output_dir();
    let image = eventually("the simulator to write an image", || async {
        png_files(&output).into_iter().next()
    })
    .await;
    std::fs::write(&image, b"<html><script>alert(1)</script></html>").unwrap();
    app.sim.faults().slow_view(None);

    let events = app.events_until_end(&job.id).await;
    let (_, last) = events.last().unwrap();
    assert!(
        matches!(last, JobEvent::Failed { code, .. } if code == "image_unavailable"),
        "{last:?}"
    );
    let client = browser();
    let path = format!("/api/images/{}", job.id);
    assert_eq!(
        send(&app, &client, Method::GET, &path, &[]).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, _, history) = send(&app, &client, Method::GET, "/api/history", &[]).await;
    assert_eq!(history["items"], json!([]));
    assert_eq!(
        send(&app, &client, Method::GET, "/healthz", &[]).await.0,
        StatusCode::OK
    );
}

/// Every `.png` under `dir`, at any depth.
fn png_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                png_files(&path)
            } else if path.extension().is_some_and(|extension| extension == "png") {
                vec![path]
            } else {
                Vec::new()
            }
        })
        .collect()
}

/// Writes `request` on a connection of its own and reads the answer: its status (0 when the server
/// closed the connection without one) and its JSON body (`Value::Null` when none). Only the server can
/// end the exchange; `PATIENCE` only keeps a broken gateway from hanging the test.
async fn raw_exchange(app: &TestApp, request: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    // A server that closed at once (a connection beyond the limit) may refuse the write: its answer
    // is then nothing.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = [0; 4096];
        loop {
            let read = stream.read(&mut chunk).await.unwrap_or(0);
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
            if whole_answer(&answer) {
                break;
            }
        }
    };
    tokio::time::timeout(PATIENCE * 2, read)
        .await
        .expect("the gateway neither answered nor closed the connection");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .and_then(|(_, body)| serde_json::from_str(body).ok())
        .unwrap_or(Value::Null);
    (status, body)
}

/// True once `answer` holds a whole head and as many body bytes as its `content-length` says.
fn whole_answer(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    body.len() >= length
}

/// A request whose head promises 100 bytes of body and brings ten.
fn stalled_post(app: &TestApp, path: &str) -> String {
    let host = app.address.trim_start_matches("http://");
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{\"prompt\":"
    )
}

#[tokio::test]
async fn a_body_that_never_arrives_is_cut_off_on_every_route_the_openai_one_included() {
    let app = spawn_app().await;
    app.wait_ready().await;
    let (openai, studio) = (
        stalled_post(&app, "/v1/images/generations"),
        stalled_post(&app, "/api/jobs"),
    );
    let (openai, studio) = tokio::join!(raw_exchange(&app, &openai), raw_exchange(&app, &studio));
    let (status, body) = openai;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["error"]["code"], "body_timeout", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    check_documented("post", "/v1/images/generations", status, Some(&body));
    let (status, body) = studio;
    assert_eq!((status, code(&body)), (408, Some("body_timeout")), "{body}");
    check_documented("post", "/api/jobs", status, Some(&body));
    assert!(app.sim.faults().prompts_received().is_empty());
    let (status, _, _) = send(&app, &Client::new(), Method::GET, "/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_head_that_never_ends_loses_its_connection() {
    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_owned();
    // The last line of the head never comes.
    let (status, body) = raw_exchange(&app, &format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n")).await;
    assert!(matches!(status, 0 | 408), "{status} {body}");
    let (status, _, _) = send(&app, &Client::new(), Method::GET, "/healthz", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_holds_only_so_many_connections_and_a_closed_one_frees_its_place() {
    let app = spawn_app_with_args(&["--max-streams-per-client=2"]).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let limit = 2 + zimage::access::CONNECTIONS_BESIDE_STREAMS;
    let mut held = Vec::new();
    for _ in 0..limit {
        held.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    // One more, with a whole request: closed unanswered.
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\n\r\n");
    let (status, _) = raw_exchange(&app, &healthz).await;
    assert_eq!(status, 0, "a connection beyond the limit was served");
    drop(held);
    eventually("a place freed by the closed connections", || async {
        (raw_exchange(&app, &healthz).await.0 == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn scripts_without_cookies_are_one_client_each_by_their_token_or_address() {
    let app = spawn_app().await;
    app.wait_ready().await;
    // The only backend is busy, so the scripts' jobs wait in line.
    let (running, _) = app.start_held_job("running", 2, 1).await;
    let script = Client::new();
    let submit = |token: Option<&'static str>| {
        let mut request = script.post(app.url("/api/jobs")).json(&small_job("fox"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let (status, _, body) = read(&Method::POST, request.send().await.unwrap()).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            assert!(body["id"].is_string(), "{body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let first = [
        submit(Some("sk-first")).await,
        submit(Some("sk-first")).await,
        submit(Some("sk-first")).await,
    ];
    let second = submit(Some("sk-second")).await;
    let mut positions = Vec::new();
    for id in [&first[0], &second, &first[1], &first[2]] {
        positions.push(app.job(id).await.queue_position);
    }
    // Fair share between the two scripts: each token is one client, as each browser is.
    assert_eq!(positions, [Some(1), Some(2), Some(3), Some(4)]);

    // A script may cancel its own jobs, by the same token, and nobody else's.
    let cancel = |id: &str, token: Option<&str>| {
        let mut request = Client::new().delete(app.url(&format!("/api/jobs/{id}")));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { read(&Method::DELETE, request.send().await.unwrap()).await }
    };
    let (status, _, body) = cancel(&first[2], Some("sk-second")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, Some("not_yours")));
    let (status, _, body) = cancel(&first[2], Some("sk-first")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Without a token, the address is the client: another cookieless request from it may cancel.
    let by_address = submit(None).await;
    let (status, _, body) = cancel(&by_address, Some("sk-first")).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, Some("not_yours")));
    let (status, _, body) = cancel(&by_address, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // A browser's cookie is a client of its own, apart from its address.
    let (status, _, body) = cancel(&first[1], None).await;
    assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, Some("not_yours")));

    app.sim.faults().release();
    for id in [&running.id, &first[0], &first[1], &second] {
        app.events_until_end(id).await;
    }
}

#[tokio::test]
async fn pages_elsewhere_cannot_spend_the_owners_sign_in_budget_through_pairing_links() {
    let password = format!("--password={SECRET}");
    let app = spawn_app_with_args(&[&password]).await;
    // `<img src="http://studio:7860/pair/x">` on any page the owner visits: the owner's own browser, at
    // the owner's own address, loads it, marked by the browser as another site's doing (or, by older
    // browsers, with the other site as Referer or Origin).
    let visitor = Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let marks: [&[(&str, &str)]; 4] = [
        &[("sec-fetch-site", "cross-site"), ("sec-fetch-dest", "image")],
        &[("referer", "http://evil.example/cats.html")],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "http://evil.example")],
    ];
    for round in 0..3 {
        for headers in marks {
            let (status, _, body) = send(&app, &visitor, Method::GET, "/pair/x", headers).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "load {round} {headers:?}: {body}");
        }
    }
    // Twelve loads later the owner's right secret still works, by sign-in and as a bearer token.
    let owner = browser();
    let (status, _, body) = sign_in(&app, &owner, SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let right = format!("Bearer {SECRET}");
    let (status, _, body) = send(
        &app,
        &Client::new(),
        Method::GET,
        "/api/history",
        &[("authorization", &right)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A script guessing links from here meets a limit of the links' own...
    let mut last = (StatusCode::OK, None);
    for _ in 0..30 {
        let (status, _, body) = send(&app, &visitor, Method::GET, "/pair/x", &[]).await;
        last = (status, code(&body).map(str::to_owned));
        if status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(
        last,
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("too_many_attempts".to_owned())
        )
    );
    // ...and never the secret's.
    let (status, _, body) = sign_in(&app, &browser(), SECRET).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn control_characters_in_any_query_parameter_are_refused_naming_it() {
    let app = spawn_app().await;
    let client = Client::new();
    let job = format!("/api/jobs/{}", uuid::Uuid::now_v7());
    for (path, field) in [
        ("/api/history?q=fo%00x", "q"),
        ("/api/history?q=fox%0Aowl", "q"),
        ("/api/history?limit=3&q=%1B%5B31m", "q"),
        ("/api/history?before=%7F", "before"),
        (job.as_str(), ""),
        ("/api/openapi.json?x=%C2%85", "x"),
        ("/healthz?probe=%09", "probe"),
        ("/?q=%00", "q"),
    ] {
        let path = if field.is_empty() {
            format!("{path}?a=%00")
        } else {
            path.to_owned()
        };
        let field = if field.is_empty() { "a" } else { field };
        let (status, _, body) = send(&app, &client, Method::GET, &path, &[]).await;
        assert_eq!(
            (status, code(&body), body["error"]["field"].as_str()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("invalid_field"),
                Some(field)
            ),
            "{path}: {body}"
        );
    }
    // OpenAI's shape under `/v1`: a 400 naming the parameter.
    let (status, _, body) = send(&app, &client, Method::GET, "/v1/models?tag=%00", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        (body["error"]["param"].as_str(), body["error"]["type"].as_str()),
        (Some("tag"), Some("invalid_request_error")),
        "{body}"
    );
    // Text that only looks odd is fine.
    let (status, _, body) = send(
        &app,
        &client,
        Method::GET,
        "/api/history?q=%E7%8B%90%E7%8B%B8+%25%27%22",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
