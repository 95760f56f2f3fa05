//! The record (`zimage-models.lock` in the models folder) of what `zimage models fetch` put in place:
//! for each file (a set's or a LoRA) where it came from (repository and revision, or URL), its size,
//! modification time, sha256, where that hash came from, and the commit served.
//!
//! It lets a later start trust an untouched file without hashing gigabytes again, and gives `verify`
//! a reference hash for files whose manifest entry has none (the hash the hub announced at download).

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::digest::Sha256Digest;
use super::manifest::{ModelFile, Source};

/// The record's file name, in the models folder (ComfyUI ignores it: it lists model files by extension).
pub const RECORD_FILE: &str = "zimage-models.lock";

/// Where a recorded sha256 came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashSource {
    /// The manifest pins it.
    Manifest,
    /// The hub announced it (`X-Linked-Etag`) and the download matched it.
    Hub,
    /// Nobody published one: it is the hash of the file as it was first found or downloaded.
    Local,
}

impl HashSource {
    /// Words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Manifest => "pinned in the manifest",
            Self::Hub => "announced by the hub",
            Self::Local => "computed locally, not published",
        }
    }
}

/// Where a recorded file came from. A record written before LoRAs existed holds only `repo` and
/// `revision`, and reads as `Hub`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedOrigin {
    /// A hub file: its repository and the revision the manifest asked for.
    Hub { repo: String, revision: String },
    /// A file downloaded from its own address (a LoRA).
    Url { url: String },
}

impl RecordedOrigin {
    /// The origin of a manifest entry's `source`.
    pub fn of(source: &Source) -> Self {
        match source {
            Source::Hub { repo, revision, .. } => Self::Hub {
                repo: repo.clone(),
                revision: revision.clone(),
            },
            Source::Url { url, .. } => Self::Url { url: url.to_string() },
        }
    }
}

/// What is known about one file in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedFile {
    /// Where it came from (its keys sit in the entry itself: `repo` and `revision`, or `url`).
    #[serde(flatten)]
    pub origin: RecordedOrigin,
    /// Commit the hub served (`X-Repo-Commit`), when it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (nanoseconds since 1970) when it was checked; a change means "hash it again".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ns: Option<i64>,
    /// Its sha256.
    pub sha256: Sha256Digest,
    /// Where the sha256 came from.
    pub hash_source: HashSource,
}

/// The whole record, keyed by `folder/name` (`loras/<name>` for a LoRA): one file per place, whatever
/// its origin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(default)]
    files: BTreeMap<String, RecordedFile>,
}

impl Record {
    /// Reads the record of `models_dir`. A missing or unreadable record is an empty one: it is only a
    /// shortcut, and without it files are hashed again.
    pub async fn load(models_dir: &Path) -> Self {
        let path = models_dir.join(RECORD_FILE);
        match tokio::fs::read_to_string(&path).await {
            Ok(text) => toml::from_str(&text).unwrap_or_else(|error| {
                tracing::warn!("ignoring {}: {error}", path.display());
                Self::default()
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Self::default(),
            Err(error) => {
                tracing::warn!("ignoring {}: {error}", path.display());
                Self::default()
            }
        }
    }

    /// Writes the record atomically into `models_dir`.
    pub async fn save(&self, models_dir: &Path) -> io::Result<()> {
        let mut text = String::from(
            "# Written by `zimage models fetch`: what it checked about each model file. Safe to delete\n\
             # (files are then hashed again on the next fetch).\n",
        );
        text.push_str(&toml::to_string(self).map_err(io::Error::other)?);
        crate::atomic_file::write(&models_dir.join(RECORD_FILE), text.as_bytes()).await
    }

    /// The entry for `file`, if it was recorded from the same origin (repository and revision, or URL).
    pub fn entry_for(&self, file: &ModelFile) -> Option<&RecordedFile> {
        self.files
            .get(&file.display_path())
            .filter(|entry| entry.origin == RecordedOrigin::of(&file.source))
    }

    /// Whether the file on disk, described by `metadata`, is the one recorded and agrees with the manifest:
    /// then it need not be hashed again.
    pub fn trusts(&self, file: &ModelFile, metadata: &Metadata) -> bool {
        let Some(entry) = self.entry_for(file) else {
            return false;
        };
        let hash_agrees = file.sha256.as_ref().is_none_or(|pinned| *pinned == entry.sha256);
        let size_agrees = file.size.is_none_or(|size| size == entry.size);
        hash_agrees
            && size_agrees
            && entry.size == metadata.len()
            && entry.modified_ns.is_some()
            && entry.modified_ns == modified_ns(metadata)
    }

    /// Records `entry` for `file`.
    pub fn insert(&mut self, file: &ModelFile, entry: RecordedFile) {
        self.files.insert(file.display_path(), entry);
    }

    /// Forgets `file`.
    pub fn remove(&mut self, file: &ModelFile) {
        self.files.remove(&file.display_path());
    }
}

/// A file's modification time in nanoseconds since 1970, when the platform has one.
pub(crate) fn modified_ns(metadata: &Metadata) -> Option<i64> {
    let since_epoch = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::manifest::{Folder, Role};

    fn model_file() -> ModelFile {
        ModelFile {
            id: "vae".to_owned(),
            source: Source::Hub {
                repo: "owner/repo".to_owned(),
                revision: "main".to_owned(),
                file: "ae.safetensors".to_owned(),
            },
            folder: Folder::Vae,
            role: Some(Role::Vae),
            size: None,
            approx_size: None,
            sha256: None,
        }
    }

    fn digest(fill: char) -> Sha256Digest {
        Sha256Digest::parse(&fill.to_string().repeat(64)).unwrap()
    }

    #[tokio::test]
    async fn a_saved_record_reads_back_and_trusts_the_untouched_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = model_file();
        std::fs::create_dir_all(dir.path().join("vae")).unwrap();
        let path = dir.path().join(file.relative_path());
        std::fs::write(&path, b"weights").unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        let mut record = Record::default();
        record.insert(
            &file,
            RecordedFile {
                origin: RecordedOrigin::of(&file.source),
                commit: Some("c".repeat(40)),
                size: 7,
                modified_ns: modified_ns(&metadata),
                sha256: digest('a'),
                hash_source: HashSource::Hub,
            },
        );
        record.save(dir.path()).await.unwrap();

        let loaded = Record::load(dir.path()).await;
        assert_eq!(loaded, record);
        assert!(loaded.trusts(&file, &metadata));
    }

    #[tokio::test]
    async fn a_record_from_another_revision_or_pin_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"weights").unwrap();
        let metadata = std::fs::metadata(&path).unwrap();
        let file = model_file();
        let entry = RecordedFile {
            origin: RecordedOrigin::of(&file.source),
            commit: None,
            size: 7,
            modified_ns: modified_ns(&metadata),
            sha256: digest('a'),
            hash_source: HashSource::Hub,
        };
        let mut record = Record::default();
        record.insert(&file, entry.clone());
        assert!(record.trusts(&file, &metadata));

        let moved = ModelFile {
            source: Source::Hub {
                repo: "owner/repo".to_owned(),
                revision: "other".to_owned(),
                file: "ae.safetensors".to_owned(),
            },
            ..file.clone()
        };
        assert!(!record.trusts(&moved, &metadata));
        let pinned_elsewhere = ModelFile {
            sha256: Some(digest('b')),
            ..file.clone()
        };
        assert!(!record.trusts(&pinned_elsewhere, &metadata));
        record.insert(
            &file,
            RecordedFile {
                size: 8,
                ..entry.clone()
            },
        );
        assert!(!record.trusts(&file, &metadata));
        record.insert(
            &file,
            RecordedFile {
                modified_ns: Some(1),
                ..entry
            },
        );
        assert!(!record.trusts(&file, &metadata));
    }

    #[tokio::test]
    async fn a_missing_or_broken_record_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Record::load(dir.path()).await, Record::default());
        std::fs::write(dir.path().join(RECORD_FILE), "not = [valid").unwrap();
        assert_eq!(Record::load(dir.path()).await, Record::default());
    }

    #[tokio::test]
    async fn a_record_written_before_loras_still_reads_and_a_lora_is_keyed_by_its_place_and_url() {
        let dir = tempfile::tempdir().unwrap();
        let sha = "a".repeat(64);
        std::fs::write(
            dir.path().join(RECORD_FILE),
            format!(
                "[files.\"vae/ae.safetensors\"]\nrepo = \"owner/repo\"\nrevision = \"main\"\nsize = 7\n\
                 modified_ns = 1\nsha256 = \"{sha}\"\nhash_source = \"hub\"\n"
            ),
        )
        .unwrap();
        let mut record = Record::load(dir.path()).await;
        let entry = record.entry_for(&model_file()).unwrap();
        assert_eq!(entry.size, 7);
        assert_eq!(entry.sha256, digest('a'));

        let address = "https://example.org/x/grain.safetensors";
        let lora = ModelFile {
            id: "grain".to_owned(),
            source: Source::Url {
                url: url::Url::parse(address).unwrap(),
                name: "grain.safetensors".to_owned(),
            },
            folder: Folder::Loras,
            role: None,
            size: None,
            approx_size: None,
            sha256: Some(digest('b')),
        };
        record.insert(
            &lora,
            RecordedFile {
                origin: RecordedOrigin::of(&lora.source),
                commit: None,
                size: 3,
                modified_ns: Some(2),
                sha256: digest('b'),
                hash_source: HashSource::Manifest,
            },
        );
        record.save(dir.path()).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join(RECORD_FILE)).unwrap();
        assert!(
            text.contains("[files.\"loras/grain.safetensors\"]")
                && text.contains(&format!("url = \"{address}\"")),
            "{text}"
        );
        let loaded = Record::load(dir.path()).await;
        assert_eq!(loaded, record);
        assert_eq!(loaded.entry_for(&lora).unwrap().size, 3);
        assert!(loaded.entry_for(&model_file()).is_some());
        // The same place from another address is another file.
        let moved = ModelFile {
            source: Source::Url {
                url: url::Url::parse("https://example.org/y/grain.safetensors").unwrap(),
                name: "grain.safetensors".to_owned(),
            },
            ..lora
        };
        assert!(loaded.entry_for(&moved).is_none());
    }
}
