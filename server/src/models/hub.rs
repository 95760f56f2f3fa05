//! Talking to the Hugging Face hub (or a mirror): file URLs, redirects followed by hand so that the
//! hub's `X-Linked-*` headers are seen and the token never leaves the hub's origin, and answers sorted
//! into what can be retried and what cannot.
//!
//! For a file stored in LFS, `GET {hub}/{repo}/resolve/{revision}/{file}` answers with a redirect to a
//! CDN and carries `X-Linked-Etag` (the file's sha256, quoted), `X-Linked-Size` and `X-Repo-Commit`;
//! the CDN's own answer has none of them, so reqwest's automatic redirects would hide them.
//!
//! A LoRA's plain URL is downloaded by the same client (same redirects, ranges and error sorting); the
//! token goes only to the hub's own origin, so a URL elsewhere never sees it.

use std::time::Duration;

use reqwest::header::{self, HeaderMap};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::digest::Sha256Digest;
use super::manifest::{ModelFile, Source};

const MAX_REDIRECTS: usize = 10;

/// A client for one hub.
#[derive(Debug, Clone)]
pub(crate) struct Hub {
    client: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// What the hub says about a file before its bytes arrive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RemoteInfo {
    /// Size in bytes (`X-Linked-Size`, else `Content-Length` of a whole-file answer).
    pub(crate) size: Option<u64>,
    /// The sha256 announced in `X-Linked-Etag` (only LFS files have one).
    pub(crate) sha256: Option<Sha256Digest>,
    /// The commit the revision resolved to (`X-Repo-Commit`).
    pub(crate) commit: Option<String>,
}

/// Why one request to the hub did not give the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HubError {
    /// 401 or 403: gated, private, or a token without access.
    #[error("access refused ({status}){}", suffix(message))]
    Denied { status: u16, message: Option<String> },
    /// 404, or the hub's "repository not found".
    #[error("not found{}", suffix(message))]
    NotFound { message: Option<String> },
    /// Any other status that is not a success.
    #[error("the server answered {status}{}", suffix(message))]
    Status {
        status: u16,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout, TLS.
    #[error("{}", transport_message(.0))]
    Transport(#[source] reqwest::Error),
    /// A redirect that cannot be followed.
    #[error("bad redirect: {0}")]
    Redirect(String),
    /// The answer broke off or did not fit the request.
    #[error("{0}")]
    Transfer(String),
}

impl HubError {
    /// Whether trying again later can help.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Transport(_) | Self::Transfer(_) => true,
            Self::Denied { .. } | Self::NotFound { .. } | Self::Redirect(_) => false,
        }
    }

    /// How long the server asked us to wait (`Retry-After` in seconds), if it did.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn suffix(message: &Option<String>) -> String {
    message
        .as_deref()
        .map(|message| format!(": {message}"))
        .unwrap_or_default()
}

/// reqwest's own message is terse ("error sending request"); its source says what happened.
fn transport_message(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl Hub {
    /// A client for the hub at `base` (e.g. `https://huggingface.co`), sending `token` to that hub only.
    pub(crate) fn new(base: Url, token: Option<String>) -> Result<Self, String> {
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(format!("the hub address {base} is not an http(s) URL"));
        }
        let client = reqwest::Client::builder()
            // Redirects are followed by hand (see the module comment).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            // No overall timeout (files are gigabytes), but a connection that stops sending is dropped
            // and the download resumes on a new one.
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!(
                "zimage/",
                env!("CARGO_PKG_VERSION"),
                " (z-image-local model downloader)"
            ))
            .build()
            .map_err(|error| format!("cannot build the HTTP client: {error}"))?;
        let token = token
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty());
        Ok(Self { client, base, token })
    }

    /// Whether a token is configured.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The hub's address.
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// Where `file` is downloaded from: `{hub}/{repo}/resolve/{revision}/{file}`, each part
    /// percent-encoded, for a hub file; its own address for a URL.
    pub(crate) fn file_url(&self, file: &ModelFile) -> Url {
        let (repo, revision, path) = match &file.source {
            Source::Hub { repo, revision, file } => (repo, revision, file),
            Source::Url { url, .. } => return url.clone(),
        };
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        // `new` refused addresses that cannot hold a path, so this always applies.
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty();
            segments.extend(repo.split('/'));
            segments.push("resolve");
            segments.push(revision);
            segments.extend(path.split('/'));
        }
        url
    }

    /// Asks for the file's size, sha256 and commit without downloading it (HEAD).
    pub(crate) async fn probe(&self, file: &ModelFile) -> Result<RemoteInfo, HubError> {
        let (response, mut info) = self.send(Method::HEAD, self.file_url(file), 0).await?;
        let response = check_status(response)?;
        if info.size.is_none() && response.status() == StatusCode::OK {
            // reqwest reports no body length for HEAD; the header says what a GET would send.
            info.size = header_u64(response.headers(), header::CONTENT_LENGTH.as_str());
        }
        Ok(info)
    }

    /// Starts downloading the file from byte `offset` (a range request when `offset > 0`).
    /// A success, or 416 (range not satisfiable), is for the caller to read.
    pub(crate) async fn open(
        &self,
        file: &ModelFile,
        offset: u64,
    ) -> Result<(Response, RemoteInfo), HubError> {
        let (response, info) = self.send(Method::GET, self.file_url(file), offset).await?;
        Ok((check_status(response)?, info))
    }

    /// Sends the request and follows redirects, collecting the `X-Linked-*` headers on the way.
    async fn send(
        &self,
        method: Method,
        start: Url,
        offset: u64,
    ) -> Result<(Response, RemoteInfo), HubError> {
        let mut url = start;
        let mut info = RemoteInfo::default();
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.request(method.clone(), url.clone());
            // The token is for the hub; a CDN it redirects to gets a signed URL instead.
            if let Some(token) = self.token.as_deref().filter(|_| same_origin(&url, &self.base)) {
                request = request.bearer_auth(token);
            }
            if offset > 0 {
                request = request.header(header::RANGE, format!("bytes={offset}-"));
            }
            let response = request.send().await.map_err(HubError::Transport)?;
            info.absorb(response.headers());
            if !is_redirect(response.status()) {
                return Ok((response, info));
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or_else(|| HubError::Redirect(format!("{} without a Location", response.status())))?;
            url = url
                .join(location)
                .map_err(|error| HubError::Redirect(format!("Location `{location}`: {error}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(HubError::Redirect(format!("to a {} address", url.scheme())));
            }
        }
        Err(HubError::Redirect(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

impl RemoteInfo {
    /// Takes what a hop of the redirect chain says; the first hop that says something wins.
    fn absorb(&mut self, headers: &HeaderMap) {
        if self.sha256.is_none() {
            self.sha256 =
                header_str(headers, "x-linked-etag").and_then(|etag| Sha256Digest::parse(strip_etag(etag)));
        }
        if self.size.is_none() {
            self.size = header_u64(headers, "x-linked-size");
        }
        if self.commit.is_none() {
            self.commit = header_str(headers, "x-repo-commit")
                .map(str::trim)
                .filter(|commit| !commit.is_empty() && commit.len() <= 64)
                .map(str::to_owned);
        }
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Sorts a final answer: successes and 416 pass, the rest become errors.
fn check_status(response: Response) -> Result<Response, HubError> {
    let status = response.status();
    if status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Ok(response);
    }
    let headers = response.headers();
    // The hub explains itself in headers (`X-Error-Code`, `X-Error-Message`), so no body is read.
    let message = header_str(headers, "x-error-message").map(str::to_owned);
    let code = header_str(headers, "x-error-code").unwrap_or_default();
    Err(match status.as_u16() {
        // The hub answers 401 "RepoNotFound" for a repository that does not exist (or is private).
        401 | 404 if code == "RepoNotFound" => HubError::NotFound { message },
        401 | 403 => HubError::Denied {
            status: status.as_u16(),
            message,
        },
        404 | 410 => HubError::NotFound { message },
        other => HubError::Status {
            status: other,
            message,
            retry_after: header_u64(headers, header::RETRY_AFTER.as_str()).map(Duration::from_secs),
        },
    })
}

/// `bytes 100-199/200` → (100, Some(200)); `bytes */200` → (0, Some(200)) with `unsatisfied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentRange {
    /// First byte of the part sent, `None` for `bytes */total`.
    pub(crate) start: Option<u64>,
    /// The whole file's size, when given.
    pub(crate) total: Option<u64>,
}

/// Reads a `Content-Range` header.
pub(crate) fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = header_str(headers, header::CONTENT_RANGE.as_str())?.trim();
    let rest = value.strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = match total.trim() {
        "*" => None,
        number => Some(number.parse().ok()?),
    };
    let start = match range.trim() {
        "*" => None,
        span => Some(span.split_once('-')?.0.trim().parse().ok()?),
    };
    Some(ContentRange { start, total })
}

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

fn strip_etag(etag: &str) -> &str {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"')
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::manifest::{Folder, Role};
    use reqwest::header::HeaderValue;

    fn model_file(revision: &str, file: &str) -> ModelFile {
        ModelFile {
            id: "x".to_owned(),
            source: Source::Hub {
                repo: "Comfy-Org/z_image_turbo".to_owned(),
                revision: revision.to_owned(),
                file: file.to_owned(),
            },
            folder: Folder::Vae,
            role: Some(Role::Vae),
            size: None,
            approx_size: None,
            sha256: None,
        }
    }

    fn hub(base: &str) -> Hub {
        Hub::new(Url::parse(base).unwrap(), None).unwrap()
    }

    #[test]
    fn a_file_url_follows_the_hub_resolve_pattern() {
        let url =
            hub("https://huggingface.co").file_url(&model_file("main", "split_files/vae/ae.safetensors"));
        assert_eq!(
            url.as_str(),
            "https://huggingface.co/Comfy-Org/z_image_turbo/resolve/main/split_files/vae/ae.safetensors"
        );
    }

    #[test]
    fn a_mirror_with_a_path_keeps_it_and_odd_revisions_are_encoded() {
        let url = hub("https://mirror.example/hf/").file_url(&model_file("refs/pr/1", "a b.gguf"));
        assert_eq!(
            url.as_str(),
            "https://mirror.example/hf/Comfy-Org/z_image_turbo/resolve/refs%2Fpr%2F1/a%20b.gguf"
        );
    }

    #[test]
    fn a_lora_is_fetched_from_its_own_address() {
        let address = Url::parse("https://example.org/loras/Film%20Grain.safetensors?download=1").unwrap();
        let lora = ModelFile {
            source: Source::Url {
                url: address.clone(),
                name: "Film Grain.safetensors".to_owned(),
            },
            folder: Folder::Loras,
            role: None,
            ..model_file("main", "unused")
        };
        assert_eq!(hub("https://huggingface.co").file_url(&lora), address);
    }

    #[test]
    fn only_http_hubs_are_accepted() {
        assert!(Hub::new(Url::parse("mailto:someone@example.com").unwrap(), None).is_err());
        assert!(Hub::new(Url::parse("ftp://example.com").unwrap(), None).is_err());
    }

    #[test]
    fn a_blank_token_counts_as_none() {
        let hub = Hub::new(
            Url::parse("https://huggingface.co").unwrap(),
            Some("  ".to_owned()),
        )
        .unwrap();
        assert!(!hub.has_token());
    }

    #[test]
    fn the_linked_etag_is_read_as_a_sha256_only_when_it_is_one() {
        let sha = "afc8e28272cd15db3919bacdb6918ce9c1ed22e96cb12c4d5ed0fba823529e38";
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-linked-etag",
            HeaderValue::from_str(&format!("\"{sha}\"")).unwrap(),
        );
        headers.insert("x-linked-size", HeaderValue::from_static("335304388"));
        headers.insert(
            "x-repo-commit",
            HeaderValue::from_static("08d04455279082882deaabc8d0d09fc914c071e1"),
        );
        let mut info = RemoteInfo::default();
        info.absorb(&headers);
        assert_eq!(info.sha256.as_ref().map(Sha256Digest::as_str), Some(sha));
        assert_eq!(info.size, Some(335_304_388));
        assert_eq!(
            info.commit.as_deref(),
            Some("08d04455279082882deaabc8d0d09fc914c071e1")
        );

        let mut git_blob = HeaderMap::new();
        git_blob.insert(
            "x-linked-etag",
            HeaderValue::from_static("W/\"6b0d4a4c6fc1f4f3b5a0f0a5c4a8b0d0e6b1c2d3\""),
        );
        let mut info = RemoteInfo::default();
        info.absorb(&git_blob);
        assert_eq!(info.sha256, None);
    }

    #[test]
    fn the_first_hop_that_announces_a_value_wins() {
        let mut first = HeaderMap::new();
        first.insert("x-linked-size", HeaderValue::from_static("10"));
        let mut second = HeaderMap::new();
        second.insert("x-linked-size", HeaderValue::from_static("20"));
        let mut info = RemoteInfo::default();
        info.absorb(&first);
        info.absorb(&second);
        assert_eq!(info.size, Some(10));
    }

    #[test]
    fn content_ranges_are_parsed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/200"),
        );
        assert_eq!(
            content_range(&headers),
            Some(ContentRange {
                start: Some(100),
                total: Some(200)
            })
        );
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes */200"));
        assert_eq!(
            content_range(&headers),
            Some(ContentRange {
                start: None,
                total: Some(200)
            })
        );
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(
            content_range(&headers),
            Some(ContentRange {
                start: Some(5),
                total: None
            })
        );
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("pages 1-2/3"));
        assert_eq!(content_range(&headers), None);
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let hub = Url::parse("https://huggingface.co/").unwrap();
        assert!(same_origin(
            &hub,
            &Url::parse("https://huggingface.co:443/x").unwrap()
        ));
        assert!(!same_origin(
            &hub,
            &Url::parse("https://cdn-lfs.huggingface.co/x").unwrap()
        ));
        assert!(!same_origin(
            &hub,
            &Url::parse("http://huggingface.co/x").unwrap()
        ));
        assert!(!same_origin(
            &hub,
            &Url::parse("https://huggingface.co:8443/x").unwrap()
        ));
    }

    #[test]
    fn only_passing_troubles_are_retried() {
        let status = |status| HubError::Status {
            status,
            message: None,
            retry_after: None,
        };
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(
            !HubError::Denied {
                status: 401,
                message: None
            }
            .is_retryable()
        );
        assert!(!HubError::NotFound { message: None }.is_retryable());
        assert!(HubError::Transfer("cut".to_owned()).is_retryable());
    }
}
