//! Model files: `zimage models fetch | verify | list` for the sets of `backend/models.toml`.
//!
//! `fetch` is what the compose file's one-shot `models` service runs before ComfyUI starts: it must be
//! safe to run on every start (fast when everything is in place), resume after any interruption, and
//! never leave a file under its final name that was not checked. See `fetch` for the order of work.

mod digest;
mod disk;
mod download;
mod fetch;
mod hub;
mod inspect;
mod manifest;
mod progress;
mod record;

use std::io;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

pub use digest::Sha256Digest;
pub use download::RetryPolicy;
pub use fetch::{FetchOutcome, FetchedFile, Fetcher};
pub use inspect::{Listed, Presence, Verified, VerifyStatus, list, verify};
pub use manifest::{Folder, Manifest, ManifestError, ModelFile, ModelSet, Role, SCHEMA};
pub use progress::ProgressMode;
pub use record::{HashSource, RECORD_FILE, Record, RecordedFile};

use crate::config::{ModelsAction, ModelsConfig, terminal_language};
use crate::i18n::Cli;
use hub::{Hub, HubError};
use progress::format_bytes;

/// Why a `zimage models` action failed; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest could not be read or the set does not exist.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The hub address or HTTP client is unusable.
    #[error("{0}")]
    Hub(String),
    /// 401/403: gated, private, or a token without access.
    #[error("{file}: {url} refused access ({status}){detail}. {hint}")]
    Denied {
        file: String,
        url: String,
        status: u16,
        detail: String,
        hint: String,
    },
    /// 404: no such repository, revision or file.
    #[error("{file}: not found at {url}{detail}; check repo, revision and file in the manifest")]
    NotFound {
        file: String,
        url: String,
        detail: String,
    },
    /// Another status that retrying does not cure.
    #[error("{file}: {url} answered {status}{detail}")]
    Http {
        file: String,
        url: String,
        status: u16,
        detail: String,
    },
    /// A redirect that cannot be followed.
    #[error("{file}: {url}: {cause}")]
    Request {
        file: String,
        url: String,
        cause: String,
    },
    /// Retries ran out on a broken connection or a failing server.
    #[error(
        "{file}: download failed after {attempts} attempts: {cause}; run `zimage models fetch` again to resume"
    )]
    Network {
        file: String,
        attempts: u32,
        cause: String,
    },
    /// The file's sha256 is not the expected one; the file was removed.
    #[error("{file}: sha256 mismatch: expected {expected} ({}), got {actual}; the bad download was removed", .reference.describe())]
    ChecksumMismatch {
        file: String,
        expected: Sha256Digest,
        actual: Sha256Digest,
        reference: HashSource,
    },
    /// The file's size is not the expected one.
    #[error("{file}: expected {expected} bytes, got {actual}{}", if *.removed { "; the bad download was removed" } else { "" })]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
        removed: bool,
    },
    /// The manifest pins a hash the hub does not serve for that revision.
    #[error(
        "{file}: the manifest pins sha256 {manifest} but the hub announces {hub} for revision `{revision}`; \
         fix the manifest entry (or pin its revision)"
    )]
    HubDisagrees {
        file: String,
        revision: String,
        manifest: Sha256Digest,
        hub: Sha256Digest,
    },
    /// Not enough free space for the downloads (checked before starting).
    #[error(
        "not enough free disk space in {}: the downloads need {} more and {} is free; free some space or point \
         the models folder elsewhere",
        .dir.display(), format_bytes(*.needed), format_bytes(*.available)
    )]
    NoSpace {
        dir: PathBuf,
        needed: u64,
        available: u64,
    },
    /// The disk filled up while downloading; the partial download is kept for a resume.
    #[error("the disk filled up while writing {}; free some space and run `zimage models fetch` again (it resumes)", .path.display())]
    DiskFull { path: PathBuf },
    /// The models folder is not writable by this user.
    #[error(
        "cannot write {}: permission denied. The models folder must belong to the user the downloader runs as \
         (ZIMAGE_UID/ZIMAGE_GID in .env, 1000 by default), e.g. `sudo chown -R 1000:1000 <models folder>`",
        .path.display()
    )]
    PermissionDenied { path: PathBuf },
    /// Any other file error.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A file error on `path`, with the permission case singled out (a common first-start mistake).
pub(crate) fn io_error(path: &Path, error: io::Error) -> Error {
    match error.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Error::PermissionDenied {
            path: path.to_path_buf(),
        },
        io::ErrorKind::StorageFull => Error::DiskFull {
            path: path.to_path_buf(),
        },
        _ => Error::Io {
            path: path.to_path_buf(),
            source: error,
        },
    }
}

impl Error {
    /// Turns a hub answer that retrying cannot cure into a message about `file`.
    pub(crate) fn from_hub(hub: &Hub, file: &ModelFile, error: HubError) -> Self {
        let name = file.name().to_owned();
        let url = hub.file_url(file).to_string();
        let detail =
            |message: Option<String>| message.map(|message| format!(": {message}")).unwrap_or_default();
        match error {
            HubError::Denied { status, message } => {
                let page = file.repo_page(hub.base());
                let hint = if hub.has_token() {
                    format!(
                        "Your HF_TOKEN has no access: open {page}, accept the model's terms, and check the token"
                    )
                } else {
                    format!(
                        "The repository is gated or private: accept its terms at {page} and set HF_TOKEN \
                         (a read token from your hub account's settings) in .env"
                    )
                };
                Self::Denied {
                    file: name,
                    url,
                    status,
                    detail: detail(message),
                    hint,
                }
            }
            HubError::NotFound { message } => Self::NotFound {
                file: name,
                url,
                detail: detail(message),
            },
            HubError::Status { status, message, .. } => Self::Http {
                file: name,
                url,
                status,
                detail: detail(message),
            },
            HubError::Redirect(cause) => Self::Request {
                file: name,
                url,
                cause,
            },
            error @ (HubError::Transport(_) | HubError::Transfer(_)) => Self::Network {
                file: name,
                attempts: 1,
                cause: error.to_string(),
            },
        }
    }
}

/// Runs one `zimage models` action and prints its report.
pub async fn run(action: ModelsAction) -> anyhow::Result<()> {
    match action {
        ModelsAction::Fetch(config) => run_fetch(&config).await,
        ModelsAction::Verify(config) => run_verify(&config).await,
        ModelsAction::List(config) => run_list(&config).await,
    }
}

fn load_manifest(config: &ModelsConfig) -> anyhow::Result<Manifest> {
    Manifest::load(&config.manifest).with_context(|| format!("model manifest {}", config.manifest.display()))
}

async fn run_fetch(config: &ModelsConfig) -> anyhow::Result<()> {
    let manifest = load_manifest(config)?;
    let set = manifest.set(&config.model_set)?;
    tracing::info!(
        "model set `{}` ({}) into {}",
        set.name,
        set.description,
        config.models_dir.display()
    );
    let fetcher = Fetcher::new(
        config.hub_url.clone(),
        config.hf_token.clone(),
        config.models_dir.clone(),
    )?
    .with_progress(ProgressMode::detect());
    let fetched = fetcher.fetch(&set).await?;
    let say = Cli::of(terminal_language());
    for file in &fetched {
        let what = match file.outcome {
            FetchOutcome::Present => say.already_in_place.to_owned(),
            FetchOutcome::Checked => say.checked_in_place.to_owned(),
            FetchOutcome::Downloaded { transferred } => (say.downloaded)(&format_bytes(transferred)),
        };
        let source = file.hash_source.describe();
        println!(
            "{}",
            (say.fetched)(&file.path, &what, &file.sha256.to_string(), source)
        );
    }
    println!("{}", (say.all_in_place)(fetched.len(), set.name));
    print_gateway_settings(&set, say);
    Ok(())
}

async fn run_verify(config: &ModelsConfig) -> anyhow::Result<()> {
    let manifest = load_manifest(config)?;
    let set = manifest.set(&config.model_set)?;
    let verdicts = verify(&config.models_dir, &set).await?;
    let say = Cli::of(terminal_language());
    for verdict in &verdicts {
        let line = match &verdict.status {
            VerifyStatus::Ok { sha256, reference } => {
                (say.verified_ok)(&sha256.to_string(), reference.describe())
            }
            VerifyStatus::Unreferenced { sha256 } => (say.unreferenced)(&sha256.to_string()),
            VerifyStatus::Missing => say.missing_file.to_owned(),
            VerifyStatus::WrongSize { expected, actual } => (say.wrong_size)(*actual, *expected),
            VerifyStatus::WrongHash {
                expected,
                actual,
                reference,
            } => (say.wrong_hash)(&actual.to_string(), &expected.to_string(), reference.describe()),
        };
        println!("{}: {line}", verdict.path);
    }
    let problems = verdicts
        .iter()
        .filter(|verdict| verdict.status.is_problem())
        .count();
    if problems > 0 {
        anyhow::bail!(
            "{}",
            (say.failed_verification)(problems, verdicts.len(), set.name)
        );
    }
    println!("{}", (say.all_verified)(verdicts.len(), set.name));
    Ok(())
}

async fn run_list(config: &ModelsConfig) -> anyhow::Result<()> {
    let manifest = load_manifest(config)?;
    let set = manifest.set(&config.model_set)?;
    let others: Vec<&str> = manifest.set_names().filter(|name| *name != set.name).collect();
    let say = Cli::of(terminal_language());
    println!("{}", (say.model_set)(set.name, set.description));
    if !others.is_empty() {
        println!("{}", (say.other_sets)(&others.join(", ")));
    }
    println!(
        "{}",
        (say.models_folder)(&config.models_dir.display().to_string())
    );
    for listed in list(&config.models_dir, &set).await? {
        let file = &listed.file;
        let size = match (file.size, file.approx_size) {
            (Some(size), _) => format_bytes(size),
            (None, Some(approx)) => format!("~{}", format_bytes(approx)),
            (None, None) => say.size_unknown.to_owned(),
        };
        let state = match listed.presence {
            Presence::Present { .. } if listed.recorded.is_some() => say.present_checked.to_owned(),
            Presence::Present { .. } => say.present_unchecked.to_owned(),
            Presence::Partial { size } => (say.partly_downloaded)(&format_bytes(size)),
            Presence::Missing => say.missing.to_owned(),
        };
        let pin = if file.is_pinned() {
            say.pinned.to_owned()
        } else {
            match listed.recorded.as_ref().and_then(|entry| entry.commit.as_deref()) {
                Some(commit) => (say.follows_branch_at)(commit),
                None => say.follows_branch.to_owned(),
            }
        };
        println!(
            "  {:<15} {:<45} {:>9}  {state}",
            file.role.to_string(),
            file.display_path(),
            size
        );
        println!(
            "  {:<15} {} {} @ {} ({pin})",
            "", say.from, file.repo, file.revision
        );
    }
    print_gateway_settings(&set, say);
    Ok(())
}

/// The gateway must name these files: prints the settings for the chosen set.
fn print_gateway_settings(set: &ModelSet<'_>, say: &Cli) {
    println!("{}", (say.gateway_settings)(set.name));
    for role in Role::ALL {
        if let Some(file) = set.file_for(role) {
            println!("  {}={}", role.env_var(), file.name());
        }
    }
}
