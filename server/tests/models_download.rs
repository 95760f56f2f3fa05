//! `zimage models fetch | verify | list` against a stand-in for the Hugging Face hub made in the test:
//! a hub that answers `/{repo}/resolve/{revision}/{file}` (optionally redirecting to a second server, the
//! "CDN", as the real hub does for LFS files) and can break connections, ignore ranges, refuse or lie.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a failed setup step must fail the test loudly"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse as _, Response};
use futures_util::StreamExt as _;
use sha2::{Digest as _, Sha256};
use url::Url;
use zimage::models::{
    Error, FetchOutcome, Fetcher, HashSource, LooseLora, Manifest, Presence, RECORD_FILE, Record,
    RecordedOrigin, RetryPolicy, Role, VerifyStatus, list, loose_loras, verify,
};

/// How the stand-in hub serves one file.
#[derive(Clone)]
struct Served {
    bytes: Vec<u8>,
    /// Honour `Range: bytes=N-` (a server without range support sends the whole file again).
    ranges: bool,
    /// The first this-many GETs break off after this many bytes of the body.
    cut: Option<(usize, usize)>,
    /// Answer with this status (and `X-Error-Code`) instead of the file.
    refuse: Option<(StatusCode, &'static str)>,
    /// `X-Linked-Etag` to announce (the sha256, as the hub does for LFS files).
    linked_etag: Option<String>,
    /// `X-Linked-Size` to announce instead of the real size.
    linked_size: Option<u64>,
    /// Redirect to the CDN server, as the hub does for LFS files.
    via_cdn: bool,
}

impl Served {
    fn new(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            ranges: true,
            cut: None,
            refuse: None,
            linked_etag: None,
            linked_size: None,
            via_cdn: false,
        }
    }
}

/// One request the stand-in saw.
#[derive(Debug, Clone)]
struct Seen {
    server: &'static str,
    method: Method,
    path: String,
    range: Option<String>,
    authorization: Option<String>,
}

#[derive(Default)]
struct FakeHubState {
    files: Mutex<HashMap<String, Served>>,
    seen: Mutex<Vec<Seen>>,
    cdn: Mutex<String>,
}

struct FakeHub {
    state: Arc<FakeHubState>,
    url: Url,
}

impl FakeHub {
    async fn start() -> Self {
        let state = Arc::new(FakeHubState::default());
        let hub = serve(Arc::clone(&state), "hub").await;
        let cdn = serve(Arc::clone(&state), "cdn").await;
        *state.cdn.lock().unwrap() = format!("http://{cdn}");
        Self {
            state,
            url: Url::parse(&format!("http://{hub}")).unwrap(),
        }
    }

    fn put(&self, repo: &str, revision: &str, file: &str, served: Served) {
        let path = format!("/{repo}/resolve/{revision}/{file}");
        self.state.files.lock().unwrap().insert(path, served);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn gets_of(&self, file: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|seen| seen.method == Method::GET && seen.path.ends_with(file))
            .collect()
    }
}

/// The offset a download resumed from: `gets` must be one whole GET, then one ranged GET
/// (`Range: bytes=N-`) after the cut.
fn resumed_once(gets: &[Seen]) -> usize {
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    gets[1]
        .range
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap()
}

async fn serve(state: Arc<FakeHubState>, server: &'static str) -> std::net::SocketAddr {
    let router = Router::new().fallback(handle).with_state((state, server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

async fn handle(
    State((state, server)): State<(Arc<FakeHubState>, &'static str)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    state.seen.lock().unwrap().push(Seen {
        server,
        method: method.clone(),
        path: uri.path().to_owned(),
        range: text(header::RANGE),
        authorization: text(header::AUTHORIZATION),
    });
    let path = if server == "cdn" {
        uri.path().trim_start_matches("/cdn").to_owned()
    } else {
        uri.path().to_owned()
    };
    let served = {
        let mut files = state.files.lock().unwrap();
        let Some(served) = files.get_mut(&path) else {
            return (
                StatusCode::NOT_FOUND,
                [("x-error-code", "EntryNotFound")],
                "Entry not found",
            )
                .into_response();
        };
        let snapshot = served.clone();
        // Count the cut GETs down where the bytes are served (the hub itself when there is no CDN).
        let serves_bytes = server == "cdn" || !served.via_cdn;
        if method == Method::GET
            && serves_bytes
            && let Some((count, bytes)) = served.cut
        {
            served.cut = (count > 1).then_some((count - 1, bytes));
        }
        snapshot
    };
    if server == "hub" {
        if let Some((status, code)) = served.refuse {
            return (
                status,
                [
                    ("x-error-code", code),
                    ("x-error-message", "refused by the test hub"),
                ],
            )
                .into_response();
        }
        let mut linked = HeaderMap::new();
        let size = served.linked_size.unwrap_or(served.bytes.len() as u64);
        linked.insert("x-linked-size", HeaderValue::from(size));
        linked.insert(
            "x-repo-commit",
            HeaderValue::from_static("1111111111111111111111111111111111111111"),
        );
        if let Some(etag) = &served.linked_etag {
            linked.insert(
                "x-linked-etag",
                HeaderValue::from_str(&format!("\"{etag}\"")).unwrap(),
            );
        }
        if served.via_cdn {
            let location = format!("{}/cdn{}", state.cdn.lock().unwrap(), path);
            linked.insert(header::LOCATION, HeaderValue::from_str(&location).unwrap());
            return (StatusCode::FOUND, linked).into_response();
        }
        let mut response = serve_bytes(&served, &method, text(header::RANGE));
        response.headers_mut().extend(linked);
        return response;
    }
    serve_bytes(&served, &method, text(header::RANGE))
}

fn serve_bytes(served: &Served, method: &Method, range: Option<String>) -> Response {
    let total = served.bytes.len();
    let start = match range.filter(|_| served.ranges) {
        Some(range) => range
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse::<usize>()
            .unwrap(),
        None => 0,
    };
    if start >= total && start > 0 {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response();
    }
    let mut builder = Response::builder().header(header::CONTENT_LENGTH, total - start);
    builder = if start > 0 {
        builder.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{total}", total - 1),
        )
    } else {
        builder.status(StatusCode::OK)
    };
    let body = served.bytes[start..].to_vec();
    let body = match served.cut.filter(|_| method == Method::GET) {
        Some((_, keep)) => {
            // Send `keep` bytes, then fail the body: the server drops the connection mid-transfer. The
            // failure comes one scheduler turn later, so that the bytes before it are flushed first.
            let first: Result<bytes::Bytes, std::io::Error> =
                Ok(bytes::Bytes::from(body[..keep.min(body.len())].to_vec()));
            let broken = futures_util::stream::once(async {
                tokio::task::yield_now().await;
                Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("cut"))
            });
            Body::from_stream(futures_util::stream::iter([first]).chain(broken))
        }
        None => Body::from(body),
    };
    builder.body(body).unwrap()
}

/// Deterministic bytes that differ per seed.
fn blob(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state & 0xff) as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The three files of the test set and the manifest naming them.
struct Fixture {
    hub: FakeHub,
    dir: tempfile::TempDir,
    unet: Vec<u8>,
    text_encoder: Vec<u8>,
    vae: Vec<u8>,
}

const UNET: &str = "unet-q8.gguf";
const TEXT_ENCODER: &str = "te-q4.gguf";
const VAE: &str = "ae.safetensors";

impl Fixture {
    /// A hub serving the three files: the diffusion model without a hash in the manifest (its sha256 comes
    /// from `X-Linked-Etag`, through the CDN), the text encoder and the VAE pinned in the manifest.
    async fn new() -> Self {
        let hub = FakeHub::start().await;
        let unet = blob(1, 300_000);
        let text_encoder = blob(2, 120_000);
        let vae = blob(3, 50_000);
        hub.put(
            "test/unet",
            "main",
            UNET,
            Served {
                linked_etag: Some(sha256(&unet)),
                via_cdn: true,
                ..Served::new(unet.clone())
            },
        );
        hub.put(
            "test/te",
            &"a".repeat(40),
            TEXT_ENCODER,
            Served::new(text_encoder.clone()),
        );
        hub.put(
            "test/vae",
            "main",
            &format!("split_files/vae/{VAE}"),
            Served::new(vae.clone()),
        );
        Self {
            hub,
            dir: tempfile::tempdir().unwrap(),
            unet,
            text_encoder,
            vae,
        }
    }

    fn manifest(&self) -> String {
        self.manifest_with(&sha256(&self.text_encoder), self.text_encoder.len())
    }

    fn manifest_with(&self, text_encoder_sha: &str, text_encoder_size: usize) -> String {
        format!(
            r#"
schema = 1
[sets.test]
description = "test set"
files = ["unet", "te", "vae"]

[files.unet]
repo = "test/unet"
revision = "main"
file = "{UNET}"
folder = "diffusion_models"
role = "unet"
approx_size = 300_000

[files.te]
repo = "test/te"
revision = "{te_revision}"
file = "{TEXT_ENCODER}"
folder = "text_encoders"
role = "text_encoder"
size = {text_encoder_size}
sha256 = "{text_encoder_sha}"

[files.vae]
repo = "test/vae"
revision = "main"
file = "split_files/vae/{VAE}"
folder = "vae"
role = "vae"
size = {vae_size}
sha256 = "{vae_sha}"
"#,
            te_revision = "a".repeat(40),
            vae_size = self.vae.len(),
            vae_sha = sha256(&self.vae),
        )
    }

    fn models(&self) -> PathBuf {
        self.dir.path().join("models")
    }

    fn fetcher(&self, token: Option<&str>) -> Fetcher {
        Fetcher::new(self.hub.url.clone(), token.map(str::to_owned), self.models())
            .unwrap()
            .with_retry(fast_retry())
    }

    async fn fetch(&self) -> Result<Vec<zimage::models::FetchedFile>, Error> {
        self.fetch_manifest(&self.manifest(), None).await
    }

    async fn fetch_manifest(
        &self,
        text: &str,
        token: Option<&str>,
    ) -> Result<Vec<zimage::models::FetchedFile>, Error> {
        let manifest = Manifest::parse(text).unwrap();
        let set = manifest.set("test").unwrap();
        self.fetcher(token).fetch(&set.files).await
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.models().join(relative)
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
    }
}

/// Every file under `dir` (relative paths), to show that nothing half-done is left behind.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(
                    path.strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn fetch_puts_every_file_of_the_set_in_its_folder_and_records_it() {
    let fixture = Fixture::new().await;
    let fetched = fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("diffusion_models/unet-q8.gguf")).unwrap(),
        fixture.unet
    );
    assert_eq!(
        std::fs::read(fixture.path("text_encoders/te-q4.gguf")).unwrap(),
        fixture.text_encoder
    );
    assert_eq!(
        std::fs::read(fixture.path("vae/ae.safetensors")).unwrap(),
        fixture.vae
    );
    assert_eq!(
        files_under(&fixture.models()),
        [
            "diffusion_models/unet-q8.gguf",
            "text_encoders/te-q4.gguf",
            "vae/ae.safetensors",
            RECORD_FILE
        ]
    );
    let sources: Vec<_> = fetched
        .iter()
        .map(|file| (file.path.as_str(), file.hash_source))
        .collect();
    assert_eq!(
        sources,
        [
            ("diffusion_models/unet-q8.gguf", HashSource::Hub),
            ("text_encoders/te-q4.gguf", HashSource::Manifest),
            ("vae/ae.safetensors", HashSource::Manifest),
        ]
    );
    assert!(
        fetched
            .iter()
            .all(|file| matches!(file.outcome, FetchOutcome::Downloaded { .. }))
    );

    // The hash the hub announced for the unpinned file is recorded, with the commit it served.
    let manifest = Manifest::parse(&fixture.manifest()).unwrap();
    let set = manifest.set("test").unwrap();
    let record = Record::load(&fixture.models()).await;
    let unet = record.entry_for(set.file_for(Role::Unet).unwrap()).unwrap();
    assert_eq!(unet.sha256.as_str(), sha256(&fixture.unet));
    assert_eq!(unet.hash_source, HashSource::Hub);
    assert_eq!(
        unet.commit.as_deref(),
        Some("1111111111111111111111111111111111111111")
    );
    assert_eq!(unet.size, fixture.unet.len() as u64);
}

#[tokio::test]
async fn a_second_fetch_leaves_checked_files_alone_without_downloading() {
    let fixture = Fixture::new().await;
    fixture.fetch().await.unwrap();
    let requests_before = fixture.hub.seen().len();

    let fetched = fixture.fetch().await.unwrap();
    assert!(
        fetched.iter().all(|file| file.outcome == FetchOutcome::Present),
        "{fetched:?}"
    );
    assert_eq!(
        fixture.hub.seen().len(),
        requests_before,
        "no request at all for files in place"
    );
}

#[tokio::test]
async fn a_cut_connection_resumes_with_a_range_request_from_where_it_broke() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/te",
        &"a".repeat(40),
        TEXT_ENCODER,
        Served {
            cut: Some((1, 70_000)),
            ..Served::new(fixture.text_encoder.clone())
        },
    );

    fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("text_encoders/te-q4.gguf")).unwrap(),
        fixture.text_encoder
    );
    // Whatever arrived before the cut (at most the 70 000 bytes sent) is kept and asked for no more.
    let resumed_at = resumed_once(&fixture.hub.gets_of(TEXT_ENCODER));
    assert!(resumed_at > 0 && resumed_at <= 70_000, "{resumed_at}");
    assert!(!fixture.path("text_encoders/te-q4.gguf.part").exists());
}

#[tokio::test]
async fn a_cut_download_through_the_cdn_resumes_there_too() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/unet",
        "main",
        UNET,
        Served {
            linked_etag: Some(sha256(&fixture.unet)),
            via_cdn: true,
            cut: Some((2, 100_000)),
            ..Served::new(fixture.unet.clone())
        },
    );

    fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("diffusion_models/unet-q8.gguf")).unwrap(),
        fixture.unet
    );
    let cdn_gets: Vec<_> = fixture
        .hub
        .gets_of(UNET)
        .into_iter()
        .filter(|seen| seen.server == "cdn")
        .collect();
    assert_eq!(cdn_gets.len(), 3, "{cdn_gets:?}");
    assert!(cdn_gets[1].range.is_some() && cdn_gets[2].range.is_some());
}

#[tokio::test]
async fn a_server_without_range_support_makes_the_download_start_over() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/te",
        &"a".repeat(40),
        TEXT_ENCODER,
        Served {
            ranges: false,
            cut: Some((1, 70_000)),
            ..Served::new(fixture.text_encoder.clone())
        },
    );

    fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("text_encoders/te-q4.gguf")).unwrap(),
        fixture.text_encoder
    );
    let gets = fixture.hub.gets_of(TEXT_ENCODER);
    assert_eq!(gets.len(), 2);
    assert!(
        gets[1].range.is_some(),
        "a resume was asked for, and the whole file came back instead"
    );
}

#[tokio::test]
async fn a_partial_download_left_by_an_earlier_run_is_resumed() {
    let fixture = Fixture::new().await;
    std::fs::create_dir_all(fixture.path("text_encoders")).unwrap();
    std::fs::write(
        fixture.path("text_encoders/te-q4.gguf.part"),
        &fixture.text_encoder[..40_000],
    )
    .unwrap();

    fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("text_encoders/te-q4.gguf")).unwrap(),
        fixture.text_encoder
    );
    let gets = fixture.hub.gets_of(TEXT_ENCODER);
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].range.as_deref(), Some("bytes=40000-"));
}

#[tokio::test]
async fn a_stale_partial_download_that_does_not_match_is_thrown_away_and_downloaded_again() {
    let fixture = Fixture::new().await;
    std::fs::create_dir_all(fixture.path("text_encoders")).unwrap();
    std::fs::write(fixture.path("text_encoders/te-q4.gguf.part"), blob(99, 40_000)).unwrap();

    fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("text_encoders/te-q4.gguf")).unwrap(),
        fixture.text_encoder
    );
    let gets = fixture.hub.gets_of(TEXT_ENCODER);
    assert_eq!(gets.len(), 2);
    assert_eq!(gets[1].range, None, "the second try starts from zero");
}

#[tokio::test]
async fn a_checksum_mismatch_removes_the_download_and_names_both_hashes() {
    let fixture = Fixture::new().await;
    let wrong = "0".repeat(64);
    let error = fixture
        .fetch_manifest(&fixture.manifest_with(&wrong, fixture.text_encoder.len()), None)
        .await
        .unwrap_err();

    assert_removed_for_its_manifest_hash(&error, TEXT_ENCODER, &wrong, &fixture.text_encoder);
    assert!(!fixture.path("text_encoders/te-q4.gguf").exists());
    assert!(!fixture.path("text_encoders/te-q4.gguf.part").exists());
}

#[tokio::test]
async fn a_wrong_linked_etag_fails_the_file_it_announces() {
    let fixture = Fixture::new().await;
    let announced = "b".repeat(64);
    fixture.hub.put(
        "test/unet",
        "main",
        UNET,
        Served {
            linked_etag: Some(announced.clone()),
            via_cdn: true,
            ..Served::new(fixture.unet.clone())
        },
    );

    let error = fixture.fetch().await.unwrap_err();

    assert!(
        matches!(&error, Error::ChecksumMismatch { expected, reference: HashSource::Hub, .. } if expected.as_str() == announced),
        "{error}"
    );
    assert!(!fixture.path("diffusion_models/unet-q8.gguf").exists());
    assert!(!fixture.path("diffusion_models/unet-q8.gguf.part").exists());
}

#[tokio::test]
async fn a_manifest_that_contradicts_the_hub_stops_before_any_download() {
    let fixture = Fixture::new().await;
    let pinned = "c".repeat(64);
    fixture.hub.put(
        "test/te",
        &"a".repeat(40),
        TEXT_ENCODER,
        Served {
            linked_etag: Some(sha256(&fixture.text_encoder)),
            ..Served::new(fixture.text_encoder.clone())
        },
    );

    let error = fixture
        .fetch_manifest(&fixture.manifest_with(&pinned, fixture.text_encoder.len()), None)
        .await
        .unwrap_err();

    assert!(matches!(error, Error::HubDisagrees { .. }), "{error}");
    assert!(
        fixture.hub.seen().iter().all(|seen| seen.method == Method::HEAD),
        "nothing was downloaded"
    );
}

#[tokio::test]
async fn a_missing_file_is_a_clear_404_and_nothing_is_downloaded() {
    let fixture = Fixture::new().await;
    let text = fixture
        .manifest()
        .replace("file = \"te-q4.gguf\"", "file = \"te-q5.gguf\"");

    let error = fixture.fetch_manifest(&text, None).await.unwrap_err();

    let Error::NotFound { file, url, .. } = &error else {
        panic!("expected not found, got {error}")
    };
    assert_eq!(file, "te-q5.gguf");
    assert!(
        url.ends_with("/test/te/resolve/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/te-q5.gguf"),
        "{url}"
    );
    assert!(fixture.hub.seen().iter().all(|seen| seen.method == Method::HEAD));
    assert_eq!(files_under(&fixture.models()), Vec::<String>::new());
}

#[tokio::test]
async fn a_gated_repository_without_a_token_says_to_set_hf_token() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/vae",
        "main",
        &format!("split_files/vae/{VAE}"),
        Served {
            refuse: Some((StatusCode::UNAUTHORIZED, "GatedRepo")),
            ..Served::new(fixture.vae.clone())
        },
    );

    let error = fixture.fetch().await.unwrap_err();

    let Error::Denied { status, hint, .. } = &error else {
        panic!("expected access denied, got {error}")
    };
    assert_eq!(*status, 401);
    assert!(hint.contains("HF_TOKEN") && hint.contains("/test/vae"), "{hint}");
    assert!(
        error.to_string().contains("refused by the test hub"),
        "the hub's own message is kept: {error}"
    );
}

#[tokio::test]
async fn a_token_without_access_gets_403_and_a_hint_about_the_terms() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/vae",
        "main",
        &format!("split_files/vae/{VAE}"),
        Served {
            refuse: Some((StatusCode::FORBIDDEN, "GatedRepo")),
            ..Served::new(fixture.vae.clone())
        },
    );

    let error = fixture
        .fetch_manifest(&fixture.manifest(), Some("hf_test"))
        .await
        .unwrap_err();

    let Error::Denied { status, hint, .. } = &error else {
        panic!("expected access denied, got {error}")
    };
    assert_eq!(*status, 403);
    assert!(hint.contains("accept the model's terms"), "{hint}");
}

#[tokio::test]
async fn a_repository_the_hub_does_not_know_is_not_found_even_as_401() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/vae",
        "main",
        &format!("split_files/vae/{VAE}"),
        Served {
            refuse: Some((StatusCode::UNAUTHORIZED, "RepoNotFound")),
            ..Served::new(fixture.vae.clone())
        },
    );

    let error = fixture.fetch().await.unwrap_err();

    assert!(matches!(error, Error::NotFound { .. }), "{error}");
}

#[tokio::test]
async fn the_token_goes_to_the_hub_but_never_to_the_cdn() {
    let fixture = Fixture::new().await;
    fixture
        .fetch_manifest(&fixture.manifest(), Some("hf_secret"))
        .await
        .unwrap();

    let seen = fixture.hub.seen();
    assert!(seen.iter().any(|seen| seen.server == "cdn"));
    for request in seen {
        match request.server {
            "hub" => assert_eq!(
                request.authorization.as_deref(),
                Some("Bearer hf_secret"),
                "{request:?}"
            ),
            _ => assert_eq!(request.authorization, None, "{request:?}"),
        }
    }
}

#[tokio::test]
async fn a_server_that_keeps_failing_ends_in_a_network_error_after_the_retries() {
    let fixture = Fixture::new().await;
    fixture.hub.put(
        "test/vae",
        "main",
        &format!("split_files/vae/{VAE}"),
        Served {
            refuse: Some((StatusCode::SERVICE_UNAVAILABLE, "")),
            ..Served::new(fixture.vae.clone())
        },
    );

    let error = fixture.fetch().await.unwrap_err();

    let Error::Network { attempts, cause, .. } = &error else {
        panic!("expected a network error, got {error}")
    };
    assert_eq!(*attempts, 4, "the first try and three retries");
    assert!(cause.contains("503"), "{cause}");
}

#[tokio::test]
async fn too_little_disk_space_stops_before_downloading() {
    let fixture = Fixture::new().await;
    // The hub announces a file far larger than any disk.
    fixture.hub.put(
        "test/unet",
        "main",
        UNET,
        Served {
            linked_size: Some(1 << 60),
            via_cdn: true,
            ..Served::new(fixture.unet.clone())
        },
    );

    let error = fixture.fetch().await.unwrap_err();

    let Error::NoSpace { needed, .. } = &error else {
        panic!("expected no space, got {error}")
    };
    assert_eq!(
        *needed,
        (1 << 60) + fixture.text_encoder.len() as u64 + fixture.vae.len() as u64
    );
    assert!(fixture.hub.seen().iter().all(|seen| seen.method == Method::HEAD));
}

#[tokio::test]
async fn a_file_changed_after_fetch_is_checked_and_replaced() {
    let fixture = Fixture::new().await;
    fixture.fetch().await.unwrap();
    std::fs::write(fixture.path("vae/ae.safetensors"), b"not the vae").unwrap();

    let fetched = fixture.fetch().await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("vae/ae.safetensors")).unwrap(),
        fixture.vae
    );
    let vae = fetched
        .iter()
        .find(|file| file.path == "vae/ae.safetensors")
        .unwrap();
    assert!(matches!(vae.outcome, FetchOutcome::Downloaded { .. }));
}

#[tokio::test]
async fn a_right_file_put_in_place_by_hand_is_checked_and_adopted() {
    let fixture = Fixture::new().await;
    std::fs::create_dir_all(fixture.path("vae")).unwrap();
    std::fs::write(fixture.path("vae/ae.safetensors"), &fixture.vae).unwrap();

    let fetched = fixture.fetch().await.unwrap();

    let vae = fetched
        .iter()
        .find(|file| file.path == "vae/ae.safetensors")
        .unwrap();
    assert_eq!(vae.outcome, FetchOutcome::Checked);
    assert!(fixture.hub.gets_of(VAE).is_empty());
}

#[tokio::test]
async fn verify_confirms_good_files_and_names_missing_and_damaged_ones() {
    let fixture = Fixture::new().await;
    fixture.fetch().await.unwrap();
    let manifest = Manifest::parse(&fixture.manifest()).unwrap();
    let set = manifest.set("test").unwrap();

    let verdicts = verify(&fixture.models(), &set.files).await.unwrap();
    assert!(
        verdicts
            .iter()
            .all(|verdict| matches!(verdict.status, VerifyStatus::Ok { .. })),
        "{verdicts:?}"
    );
    let unet = verdicts
        .iter()
        .find(|verdict| verdict.path.ends_with(UNET))
        .unwrap();
    assert!(matches!(
        unet.status,
        VerifyStatus::Ok {
            reference: HashSource::Hub,
            ..
        }
    ));

    // Same size, other bytes: only the hash can tell.
    let mut damaged = fixture.unet.clone();
    damaged[1234] ^= 0xff;
    std::fs::write(fixture.path("diffusion_models/unet-q8.gguf"), damaged).unwrap();
    std::fs::remove_file(fixture.path("vae/ae.safetensors")).unwrap();

    let verdicts = verify(&fixture.models(), &set.files).await.unwrap();
    let status = |name: &str| {
        verdicts
            .iter()
            .find(|verdict| verdict.path.ends_with(name))
            .unwrap()
            .status
            .clone()
    };
    assert!(matches!(
        status(UNET),
        VerifyStatus::WrongHash {
            reference: HashSource::Hub,
            ..
        }
    ));
    assert_eq!(status(VAE), VerifyStatus::Missing);
    assert!(matches!(
        status(TEXT_ENCODER),
        VerifyStatus::Ok {
            reference: HashSource::Manifest,
            ..
        }
    ));
    assert_eq!(
        verdicts
            .iter()
            .filter(|verdict| verdict.status.is_problem())
            .count(),
        2
    );
}

#[tokio::test]
async fn list_shows_present_partial_and_missing_files() {
    let fixture = Fixture::new().await;
    let manifest = Manifest::parse(&fixture.manifest()).unwrap();
    let set = manifest.set("test").unwrap();
    std::fs::create_dir_all(fixture.path("text_encoders")).unwrap();
    std::fs::create_dir_all(fixture.path("vae")).unwrap();
    std::fs::write(fixture.path("text_encoders/te-q4.gguf.part"), [0_u8; 10]).unwrap();
    std::fs::write(fixture.path("vae/ae.safetensors"), &fixture.vae).unwrap();

    let listed = list(&fixture.models(), &set.files).await.unwrap();

    let presence: Vec<_> = listed.iter().map(|listed| listed.presence.clone()).collect();
    assert_eq!(
        presence,
        [
            Presence::Missing,
            Presence::Partial { size: 10 },
            Presence::Present {
                size: fixture.vae.len() as u64
            }
        ]
    );
    assert!(listed.iter().all(|listed| listed.recorded.is_none()));
}

// LoRAs: `[loras.*]` entries, each a plain URL with its sha256, fetched into `models/loras` after the
// set's files. The test's "CDN" server stands for another site (another origin than the hub).

const LORA: &str = "grain.safetensors";

impl Fixture {
    /// Where the other site serves the LoRA `name` (`/cdn/...` is that server's own path).
    fn lora_url(&self, name: &str) -> String {
        format!("{}/cdn/loras/{name}", self.hub.state.cdn.lock().unwrap())
    }

    /// Serves `served` as the LoRA `name` at `/loras/<name>`: on both servers (the tests choose the
    /// origin by the URL they put in the manifest).
    fn put_lora(&self, name: &str, served: Served) {
        let path = format!("/loras/{name}");
        self.hub.state.files.lock().unwrap().insert(path, served);
    }

    /// The test manifest with one LoRA at `url`, pinned to `sha`.
    fn manifest_with_lora(&self, url: &str, sha: &str) -> String {
        format!(
            "{}\n[loras.grain]\nurl = \"{url}\"\nsha256 = \"{sha}\"\n",
            self.manifest()
        )
    }

    async fn fetch_all(
        &self,
        text: &str,
        token: Option<&str>,
    ) -> Result<Vec<zimage::models::FetchedFile>, Error> {
        let manifest = Manifest::parse(text).unwrap();
        let set = manifest.set("test").unwrap();
        self.fetcher(token).fetch(&manifest.files_with_loras(&set)).await
    }
}

#[tokio::test]
async fn fetch_brings_the_manifest_loras_after_the_set_and_records_them_by_address() {
    let fixture = Fixture::new().await;
    let lora = blob(4, 80_000);
    fixture.put_lora(LORA, Served::new(lora.clone()));
    let text = fixture.manifest_with_lora(&fixture.lora_url(LORA), &sha256(&lora));

    let fetched = fixture.fetch_all(&text, None).await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("loras/grain.safetensors")).unwrap(),
        lora
    );
    let last = fetched.last().unwrap();
    assert_eq!(last.path, "loras/grain.safetensors");
    assert_eq!(last.hash_source, HashSource::Manifest);
    assert_eq!(last.outcome, FetchOutcome::Downloaded { transferred: 80_000 });
    assert_eq!(fetched.len(), 4);
    let manifest = Manifest::parse(&text).unwrap();
    let entry = manifest.loras().next().unwrap();
    let record = Record::load(&fixture.models()).await;
    let recorded = record.entry_for(entry).unwrap();
    assert_eq!(
        recorded.origin,
        RecordedOrigin::Url {
            url: fixture.lora_url(LORA)
        }
    );
    assert_eq!(recorded.sha256.as_str(), sha256(&lora));
    assert!(
        std::fs::read_to_string(fixture.path(RECORD_FILE))
            .unwrap()
            .contains("[files.\"loras/grain.safetensors\"]")
    );

    // A second fetch leaves it alone, without a request.
    let requests_before = fixture.hub.seen().len();
    let fetched = fixture.fetch_all(&text, None).await.unwrap();
    assert!(
        fetched.iter().all(|file| file.outcome == FetchOutcome::Present),
        "{fetched:?}"
    );
    assert_eq!(fixture.hub.seen().len(), requests_before);
}

#[tokio::test]
async fn a_cut_lora_download_resumes_from_where_it_broke() {
    let fixture = Fixture::new().await;
    let lora = blob(4, 80_000);
    fixture.put_lora(
        LORA,
        Served {
            cut: Some((1, 30_000)),
            ..Served::new(lora.clone())
        },
    );
    let text = fixture.manifest_with_lora(&fixture.lora_url(LORA), &sha256(&lora));

    fixture.fetch_all(&text, None).await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("loras/grain.safetensors")).unwrap(),
        lora
    );
    let resumed_at = resumed_once(&fixture.hub.gets_of(LORA));
    assert!(resumed_at > 0 && resumed_at <= 30_000, "{resumed_at}");
    assert!(!fixture.path("loras/grain.safetensors.part").exists());
}

#[tokio::test]
async fn a_lora_that_does_not_match_its_sha256_is_removed_and_named() {
    let fixture = Fixture::new().await;
    let lora = blob(4, 80_000);
    fixture.put_lora(LORA, Served::new(lora.clone()));
    let wrong = "d".repeat(64);
    let text = fixture.manifest_with_lora(&fixture.lora_url(LORA), &wrong);

    let error = fixture.fetch_all(&text, None).await.unwrap_err();

    assert_removed_for_its_manifest_hash(&error, LORA, &wrong, &lora);
    assert!(!fixture.path("loras/grain.safetensors").exists());
    assert!(!fixture.path("loras/grain.safetensors.part").exists());
    // The set's files came first and stay.
    assert!(fixture.path("vae/ae.safetensors").exists());
}

#[tokio::test]
async fn hf_token_never_goes_to_a_lora_address_outside_the_hub() {
    let fixture = Fixture::new().await;
    let lora = blob(4, 80_000);
    fixture.put_lora(LORA, Served::new(lora.clone()));
    // A second LoRA on the hub's own origin does get it (a gated LoRA on the hub needs it).
    let on_hub = blob(5, 1_000);
    fixture.put_lora("hub-style.safetensors", Served::new(on_hub.clone()));
    let text = format!(
        "{}\n[loras.hub-style]\nurl = \"{}loras/hub-style.safetensors\"\nsha256 = \"{}\"\n",
        fixture.manifest_with_lora(&fixture.lora_url(LORA), &sha256(&lora)),
        fixture.hub.url,
        sha256(&on_hub)
    );

    fixture.fetch_all(&text, Some("hf_secret")).await.unwrap();

    assert_eq!(
        std::fs::read(fixture.path("loras/hub-style.safetensors")).unwrap(),
        on_hub
    );
    let seen = fixture.hub.seen();
    let lora_requests: Vec<_> = seen.iter().filter(|seen| seen.path.ends_with(LORA)).collect();
    assert!(!lora_requests.is_empty());
    for request in lora_requests {
        assert_eq!(request.server, "cdn");
        assert_eq!(request.authorization, None, "{request:?}");
    }
    let hub_lora: Vec<_> = seen
        .iter()
        .filter(|seen| seen.path.ends_with("hub-style.safetensors"))
        .collect();
    assert!(!hub_lora.is_empty());
    assert!(
        hub_lora
            .iter()
            .all(|request| request.authorization.as_deref() == Some("Bearer hf_secret")),
        "{hub_lora:?}"
    );
}

#[tokio::test]
async fn a_lora_missing_at_its_address_says_to_check_the_url() {
    let fixture = Fixture::new().await;
    let text = fixture.manifest_with_lora(&fixture.lora_url("gone.safetensors"), &"e".repeat(64));

    let error = fixture.fetch_all(&text, None).await.unwrap_err();

    let Error::NotFound { file, .. } = &error else {
        panic!("expected not found, got {error}")
    };
    assert_eq!(file, "gone.safetensors");
    assert!(error.to_string().contains("url"), "{error}");
}

#[tokio::test]
async fn too_little_disk_space_counts_the_loras() {
    let fixture = Fixture::new().await;
    let lora = blob(4, 1_000);
    // On the hub's origin, which announces a size far larger than any disk.
    fixture.put_lora(
        LORA,
        Served {
            linked_size: Some(1 << 60),
            ..Served::new(lora.clone())
        },
    );
    let text = fixture.manifest_with_lora(&format!("{}loras/{LORA}", fixture.hub.url), &sha256(&lora));

    let error = fixture.fetch_all(&text, None).await.unwrap_err();

    let Error::NoSpace { needed, .. } = &error else {
        panic!("expected no space, got {error}")
    };
    assert_eq!(
        *needed,
        (1 << 60) + fixture.unet.len() as u64 + fixture.text_encoder.len() as u64 + fixture.vae.len() as u64
    );
    assert!(fixture.hub.seen().iter().all(|seen| seen.method == Method::HEAD));
}

#[tokio::test]
async fn verify_checks_the_loras_too() {
    let fixture = Fixture::new().await;
    let lora = blob(4, 80_000);
    fixture.put_lora(LORA, Served::new(lora.clone()));
    let text = fixture.manifest_with_lora(&fixture.lora_url(LORA), &sha256(&lora));
    fixture.fetch_all(&text, None).await.unwrap();
    let manifest = Manifest::parse(&text).unwrap();
    let loras: Vec<_> = manifest.loras().collect();

    let verdicts = verify(&fixture.models(), &loras).await.unwrap();
    assert_eq!(verdicts.len(), 1);
    assert_eq!(verdicts[0].path, "loras/grain.safetensors");
    assert!(matches!(
        verdicts[0].status,
        VerifyStatus::Ok {
            reference: HashSource::Manifest,
            ..
        }
    ));

    let mut damaged = lora.clone();
    damaged[7] ^= 0xff;
    std::fs::write(fixture.path("loras/grain.safetensors"), damaged).unwrap();
    let verdicts = verify(&fixture.models(), &loras).await.unwrap();
    assert!(
        matches!(
            verdicts[0].status,
            VerifyStatus::WrongHash {
                reference: HashSource::Manifest,
                ..
            }
        ),
        "{verdicts:?}"
    );
}

#[tokio::test]
async fn list_shows_the_manifest_loras_and_the_files_dropped_into_the_folder() {
    let fixture = Fixture::new().await;
    let text = fixture.manifest_with_lora(&fixture.lora_url(LORA), &"e".repeat(64));
    let manifest = Manifest::parse(&text).unwrap();
    let loras: Vec<_> = manifest.loras().collect();
    std::fs::create_dir_all(fixture.path("loras/styles")).unwrap();
    std::fs::write(fixture.path("loras/grain.safetensors.part"), [0_u8; 12]).unwrap();
    std::fs::write(fixture.path("loras/dropped.safetensors"), [0_u8; 5]).unwrap();
    std::fs::write(fixture.path("loras/styles/ink.safetensors"), [0_u8; 7]).unwrap();
    std::fs::write(fixture.path("loras/notes.txt"), b"not a LoRA").unwrap();
    std::fs::write(fixture.path("loras/.hidden.safetensors"), [0_u8; 1]).unwrap();

    let listed = list(&fixture.models(), &loras).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].file.display_path(), "loras/grain.safetensors");
    assert_eq!(listed[0].presence, Presence::Partial { size: 12 });

    let loose = loose_loras(&fixture.models(), &manifest).await.unwrap();
    assert_eq!(
        loose,
        [
            LooseLora {
                path: "loras/dropped.safetensors".to_owned(),
                size: 5
            },
            LooseLora {
                path: "loras/styles/ink.safetensors".to_owned(),
                size: 7
            },
        ]
    );

    // Once the manifest's LoRA is in place it is listed as the manifest's, not as a loose file.
    std::fs::rename(
        fixture.path("loras/grain.safetensors.part"),
        fixture.path("loras/grain.safetensors"),
    )
    .unwrap();
    let loose = loose_loras(&fixture.models(), &manifest).await.unwrap();
    assert_eq!(loose.len(), 2);
    assert!(loose.iter().all(|lora| lora.path != "loras/grain.safetensors"));
    // No folder at all: nothing dropped in.
    let empty = tempfile::tempdir().unwrap();
    assert!(loose_loras(empty.path(), &manifest).await.unwrap().is_empty());
}

/// `error` says that `file`, as served (`served`), did not match the manifest's `expected` sha256 and
/// was removed.
fn assert_removed_for_its_manifest_hash(error: &Error, file: &str, expected: &str, served: &[u8]) {
    let Error::ChecksumMismatch {
        file: named,
        expected: wanted,
        actual,
        reference,
    } = error
    else {
        panic!("expected a checksum mismatch, got {error}");
    };
    assert_eq!(named, file);
    assert_eq!(wanted.as_str(), expected);
    assert_eq!(actual.as_str(), sha256(served));
    assert_eq!(*reference, HashSource::Manifest);
    assert!(error.to_string().contains("removed"), "{error}");
}
