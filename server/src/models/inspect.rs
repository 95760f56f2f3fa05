//! `zimage models verify` (hash every file of a set and every LoRA, and compare) and `zimage models list`
//! (what is in place, without hashing, and the LoRAs dropped into `models/loras` that the manifest does
//! not name). Neither needs the network: references are the manifest and the record.

use std::io;
use std::path::Path;

use super::digest::{Sha256Digest, hash_file};
use super::download::part_path;
use super::manifest::{Folder, Manifest, ModelFile};
use super::progress::format_bytes;
use super::record::{HashSource, Record, RecordedFile};
use super::{Error, io_error};

/// The verdict on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyStatus {
    /// Size and sha256 match the reference.
    Ok {
        sha256: Sha256Digest,
        reference: HashSource,
    },
    /// The file is there, but neither the manifest nor the record has a hash to compare with.
    Unreferenced { sha256: Sha256Digest },
    /// Not there.
    Missing,
    /// Another size than the manifest or the record says.
    WrongSize { expected: u64, actual: u64 },
    /// Another sha256.
    WrongHash {
        expected: Sha256Digest,
        actual: Sha256Digest,
        reference: HashSource,
    },
}

impl VerifyStatus {
    /// Whether this verdict should fail `verify`.
    pub fn is_problem(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::WrongSize { .. } | Self::WrongHash { .. }
        )
    }
}

/// One file's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `folder/name` under the models folder.
    pub path: String,
    /// The verdict.
    pub status: VerifyStatus,
}

/// Hashes each of `files` (a set's, and the LoRAs: `Manifest::files_with_loras`) under `models_dir`
/// and compares it with the manifest's sha256, or else the one recorded when it was downloaded.
pub async fn verify(models_dir: &Path, files: &[&ModelFile]) -> Result<Vec<Verified>, Error> {
    let record = Record::load(models_dir).await;
    let mut verdicts = Vec::new();
    for file in files {
        let path = models_dir.join(file.relative_path());
        let status = verify_file(file, &path, record.entry_for(file)).await?;
        verdicts.push(Verified {
            path: file.display_path(),
            status,
        });
    }
    Ok(verdicts)
}

async fn verify_file(
    file: &ModelFile,
    path: &Path,
    recorded: Option<&RecordedFile>,
) -> Result<VerifyStatus, Error> {
    let metadata = match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => metadata,
        Ok(_) => return Ok(VerifyStatus::Missing),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(VerifyStatus::Missing),
        Err(error) => return Err(io_error(path, error)),
    };
    if let Some(expected) = file.size.or(recorded.map(|entry| entry.size))
        && expected != metadata.len()
    {
        return Ok(VerifyStatus::WrongSize {
            expected,
            actual: metadata.len(),
        });
    }
    tracing::info!(
        "hashing {} ({})",
        file.display_path(),
        format_bytes(metadata.len())
    );
    let (hasher, _) = hash_file(path, None)
        .await
        .map_err(|error| io_error(path, error))?;
    let actual = Sha256Digest::from_hasher(hasher);
    let reference = match (&file.sha256, recorded) {
        (Some(pinned), _) => Some((pinned.clone(), HashSource::Manifest)),
        (None, Some(entry)) => Some((entry.sha256.clone(), entry.hash_source)),
        (None, None) => None,
    };
    Ok(match reference {
        None => VerifyStatus::Unreferenced { sha256: actual },
        Some((expected, reference)) if expected != actual => VerifyStatus::WrongHash {
            expected,
            actual,
            reference,
        },
        Some((_, reference)) => VerifyStatus::Ok {
            sha256: actual,
            reference,
        },
    })
}

/// Whether a file is in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Under its final name.
    Present { size: u64 },
    /// Only a `.part` download of `size` bytes so far.
    Partial { size: u64 },
    /// Nothing yet.
    Missing,
}

/// One file of a set and its state.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The manifest's entry.
    pub file: ModelFile,
    /// What is on disk.
    pub presence: Presence,
    /// What `fetch` recorded about it, if anything.
    pub recorded: Option<RecordedFile>,
}

/// Each of `files` and whether it is in place (no hashing).
pub async fn list(models_dir: &Path, files: &[&ModelFile]) -> Result<Vec<Listed>, Error> {
    let record = Record::load(models_dir).await;
    let mut listed = Vec::new();
    for file in files {
        let path = models_dir.join(file.relative_path());
        let presence = match size_of(&path).await? {
            Some(size) => Presence::Present { size },
            None => match size_of(&part_path(&path)).await? {
                Some(size) => Presence::Partial { size },
                None => Presence::Missing,
            },
        };
        listed.push(Listed {
            file: (*file).clone(),
            presence,
            recorded: record.entry_for(file).cloned(),
        });
    }
    Ok(listed)
}

/// A LoRA file in `models/loras` that the manifest does not name (dropped in by hand).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LooseLora {
    /// `loras/<name>`, or `loras/<sub-folder>/<name>`: ComfyUI lists LoRAs in sub-folders too.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// How deep `loose_loras` looks into sub-folders of `models/loras` (a bound against link loops).
const LORA_FOLDER_DEPTH: usize = 4;

/// Every `*.safetensors` file under `models/loras` that no `[loras]` entry of `manifest` names, sorted;
/// hidden files and downloads in progress (`.part`) are not LoRAs and are left out. No folder, none.
pub async fn loose_loras(models_dir: &Path, manifest: &Manifest) -> Result<Vec<LooseLora>, Error> {
    let folder = models_dir.join(Folder::Loras.as_str());
    let named: Vec<String> = manifest.loras().map(ModelFile::display_path).collect();
    let mut found = Vec::new();
    let mut pending = vec![(folder, Folder::Loras.as_str().to_owned(), 0)];
    while let Some((dir, shown, depth)) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error(&dir, error)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|error| io_error(&dir, error))?
        {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = format!("{shown}/{name}");
            // `metadata` follows links, as ComfyUI does when it lists the folder.
            let Ok(metadata) = tokio::fs::metadata(entry.path()).await else {
                continue;
            };
            if metadata.is_dir() {
                if depth < LORA_FOLDER_DEPTH {
                    pending.push((entry.path(), path, depth + 1));
                }
            } else if metadata.is_file()
                && name.to_ascii_lowercase().ends_with(".safetensors")
                && !named.contains(&path)
            {
                found.push(LooseLora {
                    path,
                    size: metadata.len(),
                });
            }
        }
    }
    found.sort_by(|left, right| left.path.cmp(&right.path));
    Ok(found)
}

async fn size_of(path: &Path) -> Result<Option<u64>, Error> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => Ok(Some(metadata.len())),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error(path, error)),
    }
}
