//! Model files: `zimage models fetch | verify | list | add-lora` for the sets and LoRAs of
//! `backend/models.toml`.
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
pub use inspect::{Listed, LooseLora, Presence, Verified, VerifyStatus, list, loose_loras, verify};
pub use manifest::{
    Folder, Manifest, ManifestError, ModelFile, ModelSet, NewLora, Role, SCHEMA, Source, append_lora,
};
pub use progress::ProgressMode;
pub use record::{HashSource, RECORD_FILE, Record, RecordedFile, RecordedOrigin};

use crate::config::{AddLoraConfig, ModelsAction, ModelsConfig, terminal_language};
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
    /// 404: no such repository, revision or file, or nothing at a LoRA's URL.
    #[error("{file}: not found at {url}{detail}; {check}")]
    NotFound {
        file: String,
        url: String,
        detail: String,
        /// What in the manifest to check.
        check: &'static str,
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
    /// The manifest pins a hash the server does not serve (for that revision, or at that URL).
    #[error(
        "{file}: the manifest pins sha256 {manifest} but the server announces {hub} for {at}; \
         fix the manifest entry (or, for a hub file, pin its revision)"
    )]
    HubDisagrees {
        file: String,
        /// `revision `…` of owner/repo`, or the URL.
        at: String,
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
                let hint = match file.repo_page(hub.base()) {
                    Some(page) if hub.has_token() => format!(
                        "Your HF_TOKEN has no access: open {page}, accept the model's terms, and check the token"
                    ),
                    Some(page) => format!(
                        "The repository is gated or private: accept its terms at {page} and set HF_TOKEN \
                         (a read token from your hub account's settings) in .env"
                    ),
                    // HF_TOKEN goes to the hub's own address only, never to another site.
                    None => "The site wants a login this downloader does not send: download the LoRA in a \
                             browser and drop it into models/loras, or use an address that serves it openly"
                        .to_owned(),
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
                check: match file.source {
                    Source::Hub { .. } => "check repo, revision and file in the manifest",
                    Source::Url { .. } => "check the LoRA's url in the manifest",
                },
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
        ModelsAction::AddLora(config) => run_add_lora(&config).await,
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
    let fetched = fetcher.fetch(&manifest.files_with_loras(&set)).await?;
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
    println!("{}", (say.all_in_place)(set.files.len(), set.name));
    let loras = manifest.loras().count();
    if loras > 0 {
        println!("{}", (say.loras_in_place)(loras));
    }
    print_gateway_settings(&set, say);
    Ok(())
}

async fn run_verify(config: &ModelsConfig) -> anyhow::Result<()> {
    let manifest = load_manifest(config)?;
    let set = manifest.set(&config.model_set)?;
    let loras: Vec<&ModelFile> = manifest.loras().collect();
    let set_verdicts = verify(&config.models_dir, &set.files).await?;
    let lora_verdicts = verify(&config.models_dir, &loras).await?;
    let say = Cli::of(terminal_language());
    for verdict in set_verdicts.iter().chain(&lora_verdicts) {
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
    let problems = |verdicts: &[Verified]| {
        verdicts
            .iter()
            .filter(|verdict| verdict.status.is_problem())
            .count()
    };
    let mut failures = Vec::new();
    match problems(&set_verdicts) {
        0 => println!("{}", (say.all_verified)(set_verdicts.len(), set.name)),
        count => failures.push((say.failed_verification)(count, set_verdicts.len(), set.name)),
    }
    match problems(&lora_verdicts) {
        _ if lora_verdicts.is_empty() => {}
        0 => println!("{}", (say.loras_verified)(lora_verdicts.len())),
        count => failures.push((say.loras_failed)(count, lora_verdicts.len())),
    }
    if !failures.is_empty() {
        anyhow::bail!("{}", failures.join("; "));
    }
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
    for listed in list(&config.models_dir, &set.files).await? {
        print_listed(&listed, say);
    }
    let loras: Vec<&ModelFile> = manifest.loras().collect();
    let loose = loose_loras(&config.models_dir, &manifest).await?;
    if !loras.is_empty() || !loose.is_empty() {
        println!("{}", say.loras_heading);
    }
    for listed in list(&config.models_dir, &loras).await? {
        print_listed(&listed, say);
    }
    // A file dropped into the folder is usable as it is (ComfyUI lists it); it is shown so that a
    // person sees it, not checked: nothing names its hash.
    for lora in &loose {
        println!(
            "  {:<15} {:<45} {:>9}  {}",
            say.lora_role,
            lora.path,
            format_bytes(lora.size),
            say.not_in_manifest
        );
    }
    print_gateway_settings(&set, say);
    Ok(())
}

/// Two lines for one file of `list`: what and where, then where it comes from.
fn print_listed(listed: &Listed, say: &Cli) {
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
    let role = file
        .role
        .map_or_else(|| say.lora_role.to_owned(), |role| role.to_string());
    println!("  {:<15} {:<45} {:>9}  {state}", role, file.display_path(), size);
    let origin = match &file.source {
        Source::Hub { repo, revision, .. } => {
            let pin = if file.is_pinned() {
                say.pinned.to_owned()
            } else {
                match listed.recorded.as_ref().and_then(|entry| entry.commit.as_deref()) {
                    Some(commit) => (say.follows_branch_at)(commit),
                    None => say.follows_branch.to_owned(),
                }
            };
            format!("{repo} @ {revision} ({pin})")
        }
        Source::Url { url, .. } => url.to_string(),
    };
    println!("  {:<15} {} {origin}", "", say.from);
}

async fn run_add_lora(config: &AddLoraConfig) -> anyhow::Result<()> {
    let path = &config.manifest;
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("model manifest {}", path.display()))?;
    let lora = NewLora {
        url: config.url.clone(),
        sha256: config.sha256.clone(),
        name: config.name.clone(),
        size: config.size,
    };
    let (updated, added) =
        append_lora(&text, &lora).with_context(|| format!("model manifest {}", path.display()))?;
    crate::atomic_file::write(path, updated.as_bytes())
        .await
        .with_context(|| format!("cannot write the model manifest {}", path.display()))?;
    let say = Cli::of(terminal_language());
    println!(
        "{}",
        (say.lora_added)(&added.id, &added.display_path(), &path.display().to_string())
    );
    println!("{}", say.lora_fetch_hint);
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
