//! The model manifest (`backend/models.toml`): the model sets, and for each file its repository,
//! revision, path, target folder, role and, where published, size and sha256; and the LoRAs, each a URL
//! with its sha256, for `models/loras`.
//!
//! Everything is checked when the manifest is read, so later code can build paths and URLs from it
//! without re-checking: file names cannot leave their folder, each set has exactly one file per loader.
//! A set's file and a LoRA are both a [`ModelFile`] (they differ in their [`Source`]), so fetching,
//! verifying and recording them is one code path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::digest::Sha256Digest;

/// The manifest format this build reads (`schema = 1`).
pub const SCHEMA: u32 = 1;

/// A manifest that could not be read or breaks a rule.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read the model manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape.
    #[error("the model manifest is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// Another format version.
    #[error("the model manifest has schema {found}; this zimage reads schema {SCHEMA}")]
    Schema { found: u32 },
    /// One file entry breaks a rule.
    #[error("model file `{id}` in the manifest: {problem}")]
    File { id: String, problem: String },
    /// One LoRA entry breaks a rule.
    #[error("LoRA `{id}` in the manifest: {problem}")]
    Lora { id: String, problem: String },
    /// One set breaks a rule.
    #[error("model set `{set}` in the manifest: {problem}")]
    Set { set: String, problem: String },
    /// The asked-for set does not exist.
    #[error("there is no model set `{name}` in the manifest (it has: {known})")]
    UnknownSet { name: String, known: String },
}

/// The ComfyUI `models/` sub-folder a file goes to; the loaders of our workflow look there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Folder {
    /// `diffusion_models/` (UnetLoaderGGUF; ComfyUI also searches the legacy `unet/`).
    DiffusionModels,
    /// `text_encoders/` (CLIPLoaderGGUF; ComfyUI also searches the legacy `clip/`).
    TextEncoders,
    /// `vae/` (VAELoader).
    Vae,
    /// `loras/` (LoraLoaderModelOnly). Only `[loras.*]` entries go there, so a `[files.*]` entry
    /// cannot name it.
    #[serde(skip)]
    Loras,
}

impl Folder {
    /// The folder's name under `models/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DiffusionModels => "diffusion_models",
            Self::TextEncoders => "text_encoders",
            Self::Vae => "vae",
            Self::Loras => "loras",
        }
    }
}

/// Which loader of the workflow takes a file, and so which gateway setting names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The diffusion model (UnetLoaderGGUF `unet_name`).
    Unet,
    /// The text encoder (CLIPLoaderGGUF `clip_name`).
    TextEncoder,
    /// The VAE (VAELoader `vae_name`).
    Vae,
}

impl Role {
    /// Every role, in the order the workflow loads them.
    pub const ALL: [Self; 3] = [Self::Unet, Self::TextEncoder, Self::Vae];

    /// The gateway's environment variable that must name this role's file (see `config.rs`).
    pub fn env_var(self) -> &'static str {
        match self {
            Self::Unet => "ZIMAGE_UNET",
            Self::TextEncoder => "ZIMAGE_TEXT_ENCODER",
            Self::Vae => "ZIMAGE_VAE",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Unet => "diffusion model",
            Self::TextEncoder => "text encoder",
            Self::Vae => "VAE",
        })
    }
}

/// Where a file is downloaded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file of a Hugging Face repository (or a mirror): `{hub}/{repo}/resolve/{revision}/{file}`.
    Hub {
        /// Repository, `owner/name`.
        repo: String,
        /// Commit (pinned) or branch name (follows the branch).
        revision: String,
        /// Path of the file inside the repository.
        file: String,
    },
    /// A plain http(s) address (a LoRA); `name` is the file's name in its folder.
    Url { url: Url, name: String },
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hub { repo, revision, .. } => write!(formatter, "{repo} @ {revision}"),
            Self::Url { url, .. } => write!(formatter, "{url}"),
        }
    }
}

/// One file of the manifest, checked: a file of the sets (`[files.*]`) or a LoRA (`[loras.*]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The entry's key in the manifest.
    pub id: String,
    /// Where it is downloaded from.
    pub source: Source,
    /// Target folder under `models/`.
    pub folder: Folder,
    /// The loader that takes it; `None` for a LoRA, which no set lists and the job chooses.
    pub role: Option<Role>,
    /// Exact size in bytes, where published.
    pub size: Option<u64>,
    /// Rough size in bytes, a hint when the exact one is not known.
    pub approx_size: Option<u64>,
    /// SHA-256, where published (a LoRA always has one).
    pub sha256: Option<Sha256Digest>,
}

impl ModelFile {
    /// The file's name as ComfyUI's loaders list it (the last part of a hub `file`, a URL's `name`).
    pub fn name(&self) -> &str {
        match &self.source {
            Source::Hub { file, .. } => file.rsplit('/').next().unwrap_or(file),
            Source::Url { name, .. } => name,
        }
    }

    /// Where the file goes, relative to the `models/` folder.
    pub fn relative_path(&self) -> PathBuf {
        Path::new(self.folder.as_str()).join(self.name())
    }

    /// `folder/name` with forward slashes: the file's key in the record and in messages.
    pub fn display_path(&self) -> String {
        format!("{}/{}", self.folder.as_str(), self.name())
    }

    /// Whether what is downloaded cannot change: a hub `revision` that is a full commit id rather than
    /// a branch that can move, or a URL (its content is pinned by the sha256 a LoRA must have).
    pub fn is_pinned(&self) -> bool {
        match &self.source {
            Source::Hub { revision, .. } => {
                revision.len() == 40 && revision.bytes().all(|byte| byte.is_ascii_hexdigit())
            }
            Source::Url { .. } => true,
        }
    }

    /// The exact size or, failing that, the rough one.
    pub fn size_hint(&self) -> Option<u64> {
        self.size.or(self.approx_size)
    }

    /// The repository's page, where a gated model's terms are accepted (hub files only).
    pub fn repo_page(&self, hub: &Url) -> Option<String> {
        match &self.source {
            Source::Hub { repo, .. } => Some(format!("{}/{repo}", hub.as_str().trim_end_matches('/'))),
            Source::Url { .. } => None,
        }
    }
}

/// One set of the manifest: the files that together run the workflow.
#[derive(Debug, Clone)]
pub struct ModelSet<'a> {
    /// The set's name (`default`, `light`).
    pub name: &'a str,
    /// What the set is for.
    pub description: &'a str,
    /// Its files, one per role, in the manifest's order.
    pub files: Vec<&'a ModelFile>,
}

impl ModelSet<'_> {
    /// The set's file for `role` (a checked set has exactly one).
    pub fn file_for(&self, role: Role) -> Option<&ModelFile> {
        self.files.iter().copied().find(|file| file.role == Some(role))
    }
}

/// The checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    sets: BTreeMap<String, SetEntry>,
    files: BTreeMap<String, ModelFile>,
    loras: BTreeMap<String, ModelFile>,
}

#[derive(Debug, Clone)]
struct SetEntry {
    description: String,
    files: Vec<String>,
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses and checks manifest text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.schema != SCHEMA {
            return Err(ManifestError::Schema { found: raw.schema });
        }
        let mut files = BTreeMap::new();
        for (id, entry) in raw.files {
            let file = check_file(&id, entry)?;
            files.insert(id, file);
        }
        let mut sets = BTreeMap::new();
        for (name, entry) in raw.sets {
            check_set(&name, &entry, &files)?;
            sets.insert(
                name,
                SetEntry {
                    description: entry.description,
                    files: entry.files,
                },
            );
        }
        if sets.is_empty() {
            return Err(ManifestError::Set {
                set: String::new(),
                problem: "the manifest has no sets".to_owned(),
            });
        }
        let mut loras: BTreeMap<String, ModelFile> = BTreeMap::new();
        for (id, entry) in raw.loras {
            let lora = check_lora(&id, entry)?;
            // Two entries for one name would fight over one file in `models/loras`.
            if let Some(other) = loras.values().find(|other| other.name() == lora.name()) {
                return Err(ManifestError::Lora {
                    id,
                    problem: format!(
                        "its file `{}` is already the file of LoRA `{}`",
                        lora.name(),
                        other.id
                    ),
                });
            }
            loras.insert(id, lora);
        }
        Ok(Self { sets, files, loras })
    }

    /// The set called `name`.
    pub fn set(&self, name: &str) -> Result<ModelSet<'_>, ManifestError> {
        let (name, entry) = self
            .sets
            .get_key_value(name)
            .ok_or_else(|| ManifestError::UnknownSet {
                name: name.to_owned(),
                known: self.set_names().collect::<Vec<_>>().join(", "),
            })?;
        // Every id was checked against `files` in `parse`.
        let files = entry.files.iter().filter_map(|id| self.files.get(id)).collect();
        Ok(ModelSet {
            name,
            description: &entry.description,
            files,
        })
    }

    /// The names of the sets, sorted.
    pub fn set_names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }

    /// Every file entry of `[files]`, sorted by id.
    pub fn files(&self) -> impl Iterator<Item = &ModelFile> {
        self.files.values()
    }

    /// Every LoRA of `[loras]`, sorted by id; they belong to no set, every set can use them.
    pub fn loras(&self) -> impl Iterator<Item = &ModelFile> {
        self.loras.values()
    }

    /// The files `zimage models fetch` and `verify` handle for `set`: its own, then every LoRA.
    pub fn files_with_loras<'a>(&'a self, set: &ModelSet<'a>) -> Vec<&'a ModelFile> {
        set.files.iter().copied().chain(self.loras()).collect()
    }
}

/// A LoRA to add to the manifest (`zimage models add-lora`), as the command line gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLora {
    /// Where to download it.
    pub url: String,
    /// Its sha256.
    pub sha256: String,
    /// Its file name in `models/loras`, when not the URL's last segment.
    pub name: Option<String>,
    /// Its exact size in bytes, if known.
    pub size: Option<u64>,
}

/// `text` (a valid manifest) with `lora` appended as a `[loras.<id>]` table, the id taken from its file
/// name; everything already in `text`, comments included, stays as it is. The result is read back as a
/// manifest before it is returned, with the new entry.
pub fn append_lora(text: &str, lora: &NewLora) -> Result<(String, ModelFile), ManifestError> {
    let manifest = Manifest::parse(text)?;
    let name = lora.name.clone().or_else(|| {
        Url::parse(lora.url.trim())
            .ok()
            .and_then(|url| name_from_url(&url))
    });
    let id = lora_id(name.as_deref().unwrap_or_default());
    let checked = check_lora(
        &id,
        RawLora {
            url: Some(lora.url.clone()),
            sha256: Some(lora.sha256.clone()),
            size: lora.size,
            file: lora.name.clone(),
        },
    )?;
    let taken = |problem: String| ManifestError::Lora {
        id: id.clone(),
        problem,
    };
    if manifest.loras.contains_key(&id) {
        return Err(taken(
            "already names an entry; choose another file name with --name".to_owned(),
        ));
    }
    if let Some(other) = manifest.loras().find(|other| other.name() == checked.name()) {
        return Err(taken(format!(
            "its file `{}` is already the file of LoRA `{}`",
            checked.name(),
            other.id
        )));
    }
    let quoted = |text: &str| toml::Value::String(text.to_owned()).to_string();
    let mut table = format!(
        "\n[loras.{id}]\nurl = {}\nsha256 = {}\n",
        quoted(lora.url.trim()),
        quoted(checked.sha256.as_ref().map_or("", Sha256Digest::as_str)),
    );
    if let Some(name) = &lora.name {
        table.push_str(&format!("file = {}\n", quoted(name)));
    }
    if let Some(size) = lora.size {
        table.push_str(&format!("size = {size}\n"));
    }
    let mut updated = text.to_owned();
    if !updated.is_empty() && !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push_str(&table);
    // A `[loras]` written another way (an inline table, dotted keys) can make the appended table clash:
    // then the manifest is left as it was.
    let added = Manifest::parse(&updated)?
        .loras
        .remove(&id)
        .ok_or_else(|| taken("was not read back from the manifest after adding it".to_owned()))?;
    Ok((updated, added))
}

/// The manifest id for a LoRA file: its name without `.safetensors`, lower case, with anything but
/// letters, digits, `-` and `_` turned into `-` (a TOML bare key).
fn lora_id(name: &str) -> String {
    let stem = name.strip_suffix(".safetensors").unwrap_or(name);
    let id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let id = id.trim_matches('-');
    if id.is_empty() {
        "lora".to_owned()
    } else {
        id.to_owned()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: u32,
    sets: BTreeMap<String, RawSet>,
    files: BTreeMap<String, RawFile>,
    #[serde(default)]
    loras: BTreeMap<String, RawLora>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    description: String,
    files: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    repo: String,
    revision: String,
    file: String,
    folder: Folder,
    role: Role,
    size: Option<u64>,
    approx_size: Option<u64>,
    sha256: Option<String>,
}

/// `url` and `sha256` are optional here only so that their absence is reported by `check_lora`, naming
/// the entry, rather than by the TOML reader.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLora {
    url: Option<String>,
    sha256: Option<String>,
    size: Option<u64>,
    file: Option<String>,
}

fn check_file(id: &str, raw: RawFile) -> Result<ModelFile, ManifestError> {
    let problem = |problem: String| ManifestError::File {
        id: id.to_owned(),
        problem,
    };
    if !is_repo_id(&raw.repo) {
        return Err(problem(format!("repo `{}` is not `owner/name`", raw.repo)));
    }
    if raw.revision.is_empty() || raw.revision.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(problem(format!(
            "revision `{}` is not a commit or branch name",
            raw.revision
        )));
    }
    if !is_repo_path(&raw.file) {
        return Err(problem(format!(
            "file `{}` must be a relative path inside the repository (no `..`, no hidden or partial names)",
            raw.file
        )));
    }
    if raw.size == Some(0) || raw.approx_size == Some(0) {
        return Err(problem("a size of 0 bytes cannot be a model".to_owned()));
    }
    let sha256 = match raw.sha256 {
        None => None,
        Some(text) => Some(
            Sha256Digest::parse(&text)
                .ok_or_else(|| problem(format!("sha256 `{text}` is not 64 hex digits")))?,
        ),
    };
    Ok(ModelFile {
        id: id.to_owned(),
        source: Source::Hub {
            repo: raw.repo,
            revision: raw.revision,
            file: raw.file,
        },
        folder: raw.folder,
        role: Some(raw.role),
        size: raw.size,
        approx_size: raw.approx_size,
        sha256,
    })
}

fn check_lora(id: &str, raw: RawLora) -> Result<ModelFile, ManifestError> {
    let problem = |problem: String| ManifestError::Lora {
        id: id.to_owned(),
        problem,
    };
    if id.is_empty() {
        return Err(problem("a LoRA needs a name in `[loras.<name>]`".to_owned()));
    }
    let url = raw
        .url
        .ok_or_else(|| problem("needs a `url` (http or https) to download it from".to_owned()))?;
    let url = check_url(&url).map_err(problem)?;
    let sha256 = raw.sha256.ok_or_else(|| {
        problem("needs the file's `sha256` (64 hex digits), so that the download can be checked".to_owned())
    })?;
    let sha256 = Sha256Digest::parse(&sha256)
        .ok_or_else(|| problem(format!("sha256 `{sha256}` is not 64 hex digits")))?;
    if raw.size == Some(0) {
        return Err(problem("a size of 0 bytes cannot be a LoRA".to_owned()));
    }
    let name = match raw.file {
        Some(name) => name,
        None => name_from_url(&url).ok_or_else(|| {
            problem(format!(
                "cannot take a file name from {url}; give one with `file = \"<name>.safetensors\"`"
            ))
        })?,
    };
    check_lora_name(&name).map_err(problem)?;
    Ok(ModelFile {
        id: id.to_owned(),
        source: Source::Url { url, name },
        folder: Folder::Loras,
        role: None,
        size: raw.size,
        approx_size: None,
        sha256: Some(sha256),
    })
}

/// Query parameters whose names suggest a credential (e.g. `?token=` of some model sites).
const SECRET_QUERY_WORDS: [&str; 5] = ["token", "key", "secret", "password", "signature"];

/// A LoRA's download address: http or https with a host, and no credentials (the manifest is committed
/// and shared, and its URLs are printed).
fn check_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|error| format!("url `{text}` is not an address: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url `{text}` must be an http or https address"));
    }
    let secret_in_query = url.query_pairs().any(|(name, _)| {
        let name = name.to_ascii_lowercase();
        SECRET_QUERY_WORDS.iter().any(|word| name.contains(word))
    });
    if !url.username().is_empty() || url.password().is_some() || secret_in_query {
        return Err(
            "the url holds credentials (a user, password or token); the manifest is shared, so put none in it"
                .to_owned(),
        );
    }
    Ok(url)
}

/// The URL path's last segment, percent-decoded (`…/Film%20Grain.safetensors` → `Film Grain.safetensors`).
pub(crate) fn name_from_url(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&byte| char::from(byte).to_digit(16));
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(u8::try_from(high * 16 + low).ok()?);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok().filter(|name| !name.is_empty())
}

/// A LoRA's file name in `models/loras`: a plain name (it must not leave the folder, hide, or pass for
/// one of our `.part` downloads) that ComfyUI lists as a LoRA, at most 255 bytes (the file systems' limit).
pub(crate) fn check_lora_name(name: &str) -> Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 255
        && !name.contains(['/', '\\'])
        && !name.starts_with('.')
        && !name.contains("..")
        && !name.ends_with(".part")
        && !name.chars().any(char::is_control);
    if !plain {
        return Err(format!(
            "file `{name}` must be a plain file name (no `/`, `\\`, `..`, leading dot or control characters)"
        ));
    }
    if !name.ends_with(".safetensors") {
        return Err(format!("file `{name}` must end in `.safetensors`"));
    }
    Ok(())
}

fn check_set(name: &str, raw: &RawSet, files: &BTreeMap<String, ModelFile>) -> Result<(), ManifestError> {
    let problem = |problem: String| ManifestError::Set {
        set: name.to_owned(),
        problem,
    };
    if name.is_empty() {
        return Err(problem("a set needs a name".to_owned()));
    }
    let mut roles = Vec::new();
    for id in &raw.files {
        let file = files
            .get(id)
            .ok_or_else(|| problem(format!("lists `{id}`, which is not under [files]")))?;
        roles.extend(file.role);
    }
    for role in Role::ALL {
        let count = roles.iter().filter(|&&listed| listed == role).count();
        if count != 1 {
            return Err(problem(format!("needs exactly one {role} file, has {count}")));
        }
    }
    Ok(())
}

fn is_repo_id(repo: &str) -> bool {
    let mut parts = repo.split('/');
    let valid = |part: Option<&str>| {
        part.is_some_and(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        })
    };
    valid(parts.next()) && valid(parts.next()) && parts.next().is_none()
}

/// A path inside a repository whose last part becomes a file name in a models folder: relative, no
/// `.`/`..` parts, no backslashes, and a name that is neither hidden nor one of our `.part` downloads.
fn is_repo_path(path: &str) -> bool {
    let parts_are_plain = path
        .split('/')
        .all(|part| !part.is_empty() && part != "." && part != ".." && !part.contains('\\'));
    let name = path.rsplit('/').next().unwrap_or(path);
    parts_are_plain
        && !name.starts_with('.')
        && !name.ends_with(".part")
        && !path.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hub file's repository, revision and path.
    fn hub_parts(file: &ModelFile) -> (&str, &str, &str) {
        match &file.source {
            Source::Hub { repo, revision, file } => (repo, revision, file),
            Source::Url { .. } => panic!("{} is not a hub file", file.id),
        }
    }

    const VALID: &str = r#"
schema = 1

[sets.small]
description = "test set"
files = ["unet", "te", "vae"]

[files.unet]
repo = "owner/unet-repo"
revision = "main"
file = "unet.gguf"
folder = "diffusion_models"
role = "unet"
approx_size = 1_000

[files.te]
repo = "owner/te-repo"
revision = "0123456789abcdef0123456789abcdef01234567"
file = "te.gguf"
folder = "text_encoders"
role = "text_encoder"
size = 10
sha256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"

[files.vae]
repo = "owner/vae-repo"
revision = "main"
file = "split_files/vae/ae.safetensors"
folder = "vae"
role = "vae"
"#;

    #[test]
    fn a_valid_manifest_yields_its_sets_and_files() {
        let manifest = Manifest::parse(VALID).unwrap();
        let set = manifest.set("small").unwrap();
        assert_eq!(set.files.len(), 3);
        let vae = set.file_for(Role::Vae).unwrap();
        assert_eq!(vae.name(), "ae.safetensors");
        assert_eq!(vae.relative_path(), Path::new("vae/ae.safetensors"));
        assert_eq!(vae.display_path(), "vae/ae.safetensors");
        let te = set.file_for(Role::TextEncoder).unwrap();
        assert!(te.is_pinned());
        assert!(!vae.is_pinned());
        assert_eq!(
            te.sha256.as_ref().unwrap().as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(set.file_for(Role::Unet).unwrap().size_hint(), Some(1_000));
    }

    #[test]
    fn an_unknown_set_names_the_sets_there_are() {
        let manifest = Manifest::parse(VALID).unwrap();
        let error = manifest.set("huge").unwrap_err().to_string();
        assert!(error.contains("`huge`") && error.contains("small"), "{error}");
    }

    #[test]
    fn a_file_name_that_climbs_out_of_its_folder_is_refused() {
        for bad in [
            "../../etc/passwd",
            "/abs.gguf",
            "a/../b.gguf",
            ".hidden.gguf",
            "x.gguf.part",
            "a\\b.gguf",
            "",
        ] {
            let text = VALID.replace("\"unet.gguf\"", &format!("{bad:?}"));
            let error = Manifest::parse(&text).unwrap_err();
            assert!(
                matches!(error, ManifestError::File { ref id, .. } if id == "unet"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn a_folder_outside_the_known_ones_is_refused() {
        let text = VALID.replace("folder = \"vae\"", "folder = \"../custom_nodes\"");
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::Parse(_))));
    }

    #[test]
    fn a_malformed_sha256_or_repo_is_refused() {
        let text = VALID.replace("E3B0C442", "NOTHEX42");
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::File { .. })));
        let text = VALID.replace("owner/te-repo", "just-a-name");
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::File { .. })));
    }

    #[test]
    fn a_set_without_exactly_one_file_per_role_is_refused() {
        let text = VALID.replace(
            "files = [\"unet\", \"te\", \"vae\"]",
            "files = [\"unet\", \"te\"]",
        );
        let error = Manifest::parse(&text).unwrap_err().to_string();
        assert!(error.contains("VAE"), "{error}");
        let text = VALID.replace(
            "files = [\"unet\", \"te\", \"vae\"]",
            "files = [\"unet\", \"unet\", \"te\", \"vae\"]",
        );
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::Set { .. })));
        let text = VALID.replace(
            "files = [\"unet\", \"te\", \"vae\"]",
            "files = [\"unet\", \"te\", \"nope\"]",
        );
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::Set { .. })));
    }

    #[test]
    fn unknown_keys_and_other_schemas_are_refused() {
        let text = VALID.replace(
            "approx_size = 1_000",
            "approx_size = 1_000\nurl = \"http://elsewhere\"",
        );
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::Parse(_))));
        let text = VALID.replace("schema = 1", "schema = 2");
        assert!(matches!(
            Manifest::parse(&text),
            Err(ManifestError::Schema { found: 2 })
        ));
    }

    #[test]
    fn the_repository_page_joins_hub_and_repo() {
        let manifest = Manifest::parse(VALID).unwrap();
        let file = manifest.files().next().unwrap();
        let hub = url::Url::parse("https://huggingface.co").unwrap();
        assert_eq!(
            file.repo_page(&hub),
            Some(format!("https://huggingface.co/{}", hub_parts(file).0))
        );
    }

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// VALID with one `[loras.<id>]` table of `body`.
    fn with_lora(id: &str, body: &str) -> String {
        format!("{VALID}\n[loras.{id}]\n{body}\n")
    }

    fn lora_error(text: &str) -> (String, String) {
        match Manifest::parse(text) {
            Err(ManifestError::Lora { id, problem }) => (id, problem),
            other => panic!("expected a LoRA error, got {other:?}"),
        }
    }

    #[test]
    fn a_lora_entry_is_read_with_its_address_hash_and_a_name_from_the_url() {
        let text = with_lora(
            "film-grain",
            &format!(
                "url = \"https://example.org/loras/Film%20Grain.safetensors?download=1\"\nsha256 = \"{SHA}\"\nsize = 42"
            ),
        );
        let manifest = Manifest::parse(&text).unwrap();
        let loras: Vec<&ModelFile> = manifest.loras().collect();
        assert_eq!(loras.len(), 1);
        let lora = loras[0];
        assert_eq!(lora.id, "film-grain");
        assert_eq!(lora.name(), "Film Grain.safetensors");
        assert_eq!(lora.display_path(), "loras/Film Grain.safetensors");
        assert_eq!(lora.relative_path(), Path::new("loras/Film Grain.safetensors"));
        assert_eq!(lora.folder, Folder::Loras);
        assert_eq!(lora.role, None);
        assert_eq!(lora.size, Some(42));
        assert_eq!(lora.sha256.as_ref().unwrap().as_str(), SHA);
        assert!(
            matches!(&lora.source, Source::Url { url, .. } if url.as_str() == "https://example.org/loras/Film%20Grain.safetensors?download=1")
        );
        // Every set fetches the LoRAs after its own files; no set lists them.
        let set = manifest.set("small").unwrap();
        assert_eq!(set.files.len(), 3);
        let all = manifest.files_with_loras(&set);
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].id, "film-grain");

        let named = with_lora(
            "x",
            &format!(
                "url = \"http://example.org/download/123\"\nsha256 = \"{SHA}\"\nfile = \"grain.safetensors\""
            ),
        );
        let manifest = Manifest::parse(&named).unwrap();
        assert_eq!(manifest.loras().next().unwrap().name(), "grain.safetensors");
        assert_eq!(Manifest::parse(VALID).unwrap().loras().count(), 0);
    }

    #[test]
    fn a_lora_without_a_good_sha256_or_url_is_refused_naming_it() {
        let url = "url = \"https://example.org/a.safetensors\"";
        for (body, says) in [
            (url.to_owned(), "sha256"),
            (format!("{url}\nsha256 = \"{}\"", &SHA[1..]), "64 hex"),
            (format!("sha256 = \"{SHA}\""), "url"),
            (
                format!("url = \"ftp://example.org/a.safetensors\"\nsha256 = \"{SHA}\""),
                "http",
            ),
            (
                format!("url = \"example.org/a.safetensors\"\nsha256 = \"{SHA}\""),
                "not an address",
            ),
            (
                format!("url = \"https://me:pw@example.org/a.safetensors\"\nsha256 = \"{SHA}\""),
                "credentials",
            ),
            (
                format!("url = \"https://example.org/a.safetensors?token=abc\"\nsha256 = \"{SHA}\""),
                "credentials",
            ),
            (format!("{url}\nsha256 = \"{SHA}\"\nsize = 0"), "0 bytes"),
        ] {
            let (id, problem) = lora_error(&with_lora("grain", &body));
            assert_eq!(id, "grain", "{body}");
            assert!(problem.contains(says), "{body}: {problem}");
            let message = Manifest::parse(&with_lora("grain", &body))
                .unwrap_err()
                .to_string();
            assert!(message.starts_with("LoRA `grain` in the manifest:"), "{message}");
        }
        let unknown = with_lora("grain", &format!("{url}\nsha256 = \"{SHA}\"\nrole = \"unet\""));
        assert!(matches!(Manifest::parse(&unknown), Err(ManifestError::Parse(_))));
    }

    #[test]
    fn a_lora_file_name_must_be_a_plain_safetensors_name() {
        for bad in [
            "../x.safetensors",
            "a/b.safetensors",
            "a\\b.safetensors",
            ".hidden.safetensors",
            "x.safetensors.part",
            "x.ckpt",
            "x.gguf",
            "tab\tname.safetensors",
            "",
        ] {
            let body = format!(
                "url = \"https://example.org/a.safetensors\"\nsha256 = \"{SHA}\"\nfile = {}",
                toml::Value::String(bad.to_owned())
            );
            let (id, problem) = lora_error(&with_lora("grain", &body));
            assert_eq!(id, "grain");
            assert!(problem.contains("file"), "{bad}: {problem}");
        }
        // The name taken from the URL keeps the same rules, after percent-decoding.
        for url in [
            "https://example.org/x/..%2F..%2Fetc%2Fx.safetensors",
            "https://example.org/download/123",
            "https://example.org/",
            "https://example.org/%2Ehidden.safetensors",
        ] {
            let body = format!("url = \"{url}\"\nsha256 = \"{SHA}\"");
            let (id, _) = lora_error(&with_lora("grain", &body));
            assert_eq!(id, "grain", "{url}");
        }
    }

    #[test]
    fn two_loras_with_one_file_name_are_refused() {
        let text = format!(
            "{VALID}\n[loras.a]\nurl = \"https://one.example/grain.safetensors\"\nsha256 = \"{SHA}\"\n\
             [loras.b]\nurl = \"https://two.example/x\"\nsha256 = \"{SHA}\"\nfile = \"grain.safetensors\"\n"
        );
        let (id, problem) = lora_error(&text);
        assert_eq!(id, "b");
        assert!(
            problem.contains("grain.safetensors") && problem.contains("`a`"),
            "{problem}"
        );
    }

    #[test]
    fn a_set_file_cannot_be_put_in_the_loras_folder() {
        let text = VALID.replace("folder = \"vae\"", "folder = \"loras\"");
        assert!(matches!(Manifest::parse(&text), Err(ManifestError::Parse(_))));
    }

    fn new_lora(url: &str) -> NewLora {
        NewLora {
            url: url.to_owned(),
            sha256: SHA.to_uppercase(),
            name: None,
            size: None,
        }
    }

    #[test]
    fn adding_a_lora_appends_its_table_and_keeps_the_rest_of_the_text() {
        let original = format!("# A comment that must stay.\n{VALID}# A trailing comment, no newline");
        let (text, added) = append_lora(
            &original,
            &new_lora("https://example.org/loras/Film%20Grain%20v2.safetensors"),
        )
        .unwrap();
        assert!(text.starts_with(&original), "{text}");
        assert_eq!(
            &text[original.len()..],
            format!(
                "\n\n[loras.film-grain-v2]\nurl = \"https://example.org/loras/Film%20Grain%20v2.safetensors\"\n\
                 sha256 = \"{SHA}\"\n"
            )
        );
        assert_eq!(added.id, "film-grain-v2");
        assert_eq!(added.name(), "Film Grain v2.safetensors");
        let manifest = Manifest::parse(&text).unwrap();
        assert_eq!(manifest.loras().next(), Some(&added));

        let (text, added) = append_lora(
            &text,
            &NewLora {
                name: Some("My Style.safetensors".to_owned()),
                size: Some(1234),
                ..new_lora("https://example.org/api/download/77")
            },
        )
        .unwrap();
        assert_eq!(added.id, "my-style");
        assert_eq!(added.size, Some(1234));
        assert!(
            text.ends_with("file = \"My Style.safetensors\"\nsize = 1234\n"),
            "{text}"
        );
        assert_eq!(Manifest::parse(&text).unwrap().loras().count(), 2);
    }

    #[test]
    fn adding_a_lora_whose_id_or_file_is_taken_or_whose_fields_are_bad_is_refused() {
        let (text, _) = append_lora(VALID, &new_lora("https://example.org/grain.safetensors")).unwrap();
        // The same id (from the same file name).
        let error = append_lora(&text, &new_lora("https://elsewhere.example/grain.safetensors")).unwrap_err();
        assert!(
            matches!(&error, ManifestError::Lora { id, problem } if id == "grain" && problem.contains("already")),
            "{error}"
        );
        // Another id (written by hand), the same file.
        let by_hand = format!(
            "{VALID}\n[loras.mine]\nurl = \"https://example.org/x\"\nsha256 = \"{SHA}\"\nfile = \"grain.safetensors\"\n"
        );
        let error = append_lora(&by_hand, &new_lora("https://example.org/grain.safetensors")).unwrap_err();
        assert!(
            matches!(&error, ManifestError::Lora { id, problem } if id == "grain" && problem.contains("`mine`")),
            "{error}"
        );
        for bad in [
            new_lora("https://example.org/../x.ckpt"),
            NewLora {
                sha256: "abc".to_owned(),
                ..new_lora("https://example.org/x.safetensors")
            },
            new_lora("file:///etc/x.safetensors"),
            NewLora {
                name: Some("../x.safetensors".to_owned()),
                ..new_lora("https://example.org/x.safetensors")
            },
        ] {
            assert!(
                matches!(append_lora(VALID, &bad), Err(ManifestError::Lora { .. })),
                "{bad:?}"
            );
        }
        // A manifest that is not valid is not added to.
        assert!(append_lora("schema = 1", &new_lora("https://example.org/x.safetensors")).is_err());
    }

    mod properties {
        //! The manifest is read from disk and names files that become paths under the models folder:
        //! whatever it says, parsing must not panic, what it accepts keeps every rule, and an accepted
        //! file never leaves its folder.

        use super::*;
        use proptest::prelude::*;

        /// Checks what `Manifest::parse` promises of a manifest it accepts: at least one set, each with
        /// exactly one listed file per role, and every file with an `owner/name` repository, a revision,
        /// a path that keeps inside its folder, no size of 0 and a well-formed digest.
        fn keeps_the_rules(manifest: &Manifest) -> Result<(), TestCaseError> {
            prop_assert!(manifest.set_names().next().is_some());
            for name in manifest.set_names() {
                prop_assert!(!name.is_empty());
                let set = manifest
                    .set(name)
                    .map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(set.name, name);
                prop_assert_eq!(set.files.len(), Role::ALL.len(), "{}", name);
                for role in Role::ALL {
                    prop_assert_eq!(set.files.iter().filter(|file| file.role == Some(role)).count(), 1);
                    prop_assert!(set.file_for(role).is_some());
                }
                for file in &set.files {
                    prop_assert!(manifest.files().any(|listed| listed == *file), "{}", file.id);
                }
            }
            for file in manifest.files() {
                let (repo, revision, path) = hub_parts(file);
                let parts: Vec<&str> = repo.split('/').collect();
                prop_assert_eq!(parts.len(), 2, "{}", repo);
                prop_assert!(
                    parts
                        .iter()
                        .all(|part| !part.is_empty() && !part.starts_with('.')),
                    "{}",
                    repo
                );
                prop_assert!(!revision.is_empty(), "{}", file.id);
                prop_assert!(
                    !revision.chars().any(|c| c.is_whitespace() || c.is_control()),
                    "{}",
                    revision
                );
                prop_assert!(
                    path.split('/')
                        .all(|part| !part.is_empty() && part != "." && part != ".."),
                    "{}",
                    path
                );
                prop_assert!(
                    !path.contains('\\') && !path.contains(char::is_control),
                    "{}",
                    path
                );
                prop_assert!(
                    !file.name().starts_with('.') && !file.name().ends_with(".part"),
                    "{}",
                    path
                );
                let path = file.relative_path();
                prop_assert!(path.starts_with(file.folder.as_str()), "{}", path.display());
                prop_assert_eq!(path.components().count(), 2, "{}", path.display());
                prop_assert!(
                    path.components()
                        .all(|part| matches!(part, std::path::Component::Normal(_))),
                    "{}",
                    path.display()
                );
                prop_assert!(file.size != Some(0) && file.approx_size != Some(0), "{}", file.id);
                if let Some(digest) = &file.sha256 {
                    prop_assert!(
                        digest.as_str().len() == 64
                            && digest
                                .as_str()
                                .bytes()
                                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')),
                        "{}",
                        digest
                    );
                }
            }
            Ok(())
        }

        /// Checks what `Manifest::parse` says of `text`: if it accepts it, the manifest keeps the rules;
        /// if the text is not even TOML, the refusal says so.
        fn check_parse(text: &str) -> Result<(), TestCaseError> {
            match Manifest::parse(text) {
                Ok(manifest) => keeps_the_rules(&manifest)?,
                Err(error) => {
                    if toml::from_str::<toml::Table>(text).is_err() {
                        prop_assert!(matches!(error, ManifestError::Parse(_)), "{error}");
                    }
                }
            }
            Ok(())
        }

        fn role_key(role: Role) -> &'static str {
            match role {
                Role::Unet => "unet",
                Role::TextEncoder => "text_encoder",
                Role::Vae => "vae",
            }
        }

        /// A valid file of `role` (its id is set later).
        fn model_file(role: Role) -> impl Strategy<Value = ModelFile> {
            let size = || prop::option::of(1..=i64::MAX.unsigned_abs());
            (
                "[a-z0-9][a-z0-9._-]{0,10}/[A-Za-z0-9][A-Za-z0-9._-]{0,10}",
                prop_oneof!["[0-9a-f]{40}", "[a-z][a-z0-9._/-]{0,12}"],
                "([a-z0-9_-]{1,8}/){0,2}[a-z0-9_-]{1,10}\\.(gguf|safetensors)",
                prop::sample::select(vec![Folder::DiffusionModels, Folder::TextEncoders, Folder::Vae]),
                size(),
                size(),
                prop::option::of("[0-9a-fA-F]{64}"),
            )
                .prop_map(move |(repo, revision, file, folder, size, approx_size, sha256)| {
                    ModelFile {
                        id: String::new(),
                        source: Source::Hub { repo, revision, file },
                        folder,
                        role: Some(role),
                        size,
                        approx_size,
                        sha256: sha256.map(|text| Sha256Digest::parse(&text).unwrap()),
                    }
                })
        }

        /// A set: description and its three files, in any order.
        fn model_set() -> impl Strategy<Value = (String, Vec<ModelFile>)> {
            (
                ".{0,20}",
                model_file(Role::Unet),
                model_file(Role::TextEncoder),
                model_file(Role::Vae),
            )
                .prop_flat_map(|(description, unet, text_encoder, vae)| {
                    (
                        Just(description),
                        Just(vec![unet, text_encoder, vae]).prop_shuffle(),
                    )
                })
        }

        /// The manifest text of `sets`, each file an entry `<set>.<role>` under `[files]`.
        fn manifest_text(sets: &BTreeMap<String, (String, Vec<ModelFile>)>) -> String {
            use toml::Value as Toml;
            let mut set_tables = toml::Table::new();
            let mut file_tables = toml::Table::new();
            for (name, (description, files)) in sets {
                let mut set = toml::Table::new();
                set.insert("description".to_owned(), Toml::String(description.clone()));
                let ids = files.iter().map(|file| Toml::String(file.id.clone())).collect();
                set.insert("files".to_owned(), Toml::Array(ids));
                set_tables.insert(name.clone(), Toml::Table(set));
                for file in files {
                    let mut entry = toml::Table::new();
                    let (repo, revision, path) = hub_parts(file);
                    entry.insert("repo".to_owned(), Toml::String(repo.to_owned()));
                    entry.insert("revision".to_owned(), Toml::String(revision.to_owned()));
                    entry.insert("file".to_owned(), Toml::String(path.to_owned()));
                    entry.insert("folder".to_owned(), Toml::String(file.folder.as_str().to_owned()));
                    entry.insert(
                        "role".to_owned(),
                        Toml::String(role_key(file.role.unwrap()).to_owned()),
                    );
                    for (key, size) in [("size", file.size), ("approx_size", file.approx_size)] {
                        if let Some(size) = size {
                            entry.insert(key.to_owned(), Toml::Integer(i64::try_from(size).unwrap()));
                        }
                    }
                    if let Some(digest) = &file.sha256 {
                        // Either case is read; write it shouting.
                        entry.insert(
                            "sha256".to_owned(),
                            Toml::String(digest.as_str().to_ascii_uppercase()),
                        );
                    }
                    file_tables.insert(file.id.clone(), Toml::Table(entry));
                }
            }
            let mut manifest = toml::Table::new();
            manifest.insert("schema".to_owned(), Toml::Integer(i64::from(SCHEMA)));
            manifest.insert("sets".to_owned(), Toml::Table(set_tables));
            manifest.insert("files".to_owned(), Toml::Table(file_tables));
            manifest.to_string()
        }

        /// VALID with one of its lines replaced by `line`, or dropped when `line` is `None`.
        fn valid_with_line(at: usize, line: Option<&str>) -> String {
            let mut lines: Vec<&str> = VALID.lines().collect();
            let at = at % lines.len();
            match line {
                Some(line) => lines[at] = line,
                None => {
                    lines.remove(at);
                }
            }
            lines.join("\n")
        }

        /// Values on the edge of the rules (and some of the wrong type), each for the key it replaces
        /// in one of VALID's files (`files` replaces the set's list), and whether it keeps the rules
        /// there (a role does only where it is the file's own: each role needs exactly one file).
        fn edge_values() -> Vec<(&'static str, toml::Value, bool)> {
            use toml::Value as Toml;
            let text = |text: &str| Toml::String(text.to_owned());
            let mut edges = Vec::new();
            for (value, keeps) in [
                ("owner/name", true),
                ("o/n-1.2_x", true),
                ("owner/.x", false),
                (".o/n", false),
                ("owner/name/more", false),
                ("owner", false),
                ("", false),
                ("a b/c", false),
            ] {
                edges.push(("repo", text(value), keeps));
            }
            for (value, keeps) in [
                ("main", true),
                ("v1.0", true),
                ("0123456789abcdef0123456789abcdef01234567", true),
                ("", false),
                ("main branch", false),
                ("v1\t", false),
            ] {
                edges.push(("revision", text(value), keeps));
            }
            for (value, keeps) in [
                ("a.gguf", true),
                ("dir/a.gguf", true),
                ("a/../b.gguf", false),
                ("a//b.gguf", false),
                ("./a.gguf", false),
                ("/abs.gguf", false),
                ("x.gguf.part", false),
                ("dir/.hidden", false),
                ("a\\b.gguf", false),
                ("a\u{7}.gguf", false),
                ("", false),
            ] {
                edges.push(("file", text(value), keeps));
            }
            for key in ["size", "approx_size"] {
                edges.push((key, Toml::Integer(1), true));
                edges.push((key, Toml::Integer(0), false));
                edges.push((key, Toml::Integer(-1), false));
                edges.push((key, text("10"), false));
            }
            for (value, keeps) in [
                (
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    true,
                ),
                (
                    "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B85",
                    false,
                ),
                (
                    "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    false,
                ),
            ] {
                edges.push(("sha256", text(value), keeps));
            }
            for (value, keeps) in [
                ("vae", true),
                ("text_encoders", true),
                ("diffusion_models", true),
                ("unet", false),
            ] {
                edges.push(("folder", text(value), keeps));
            }
            for (value, keeps) in [
                ("unet", true),
                ("text_encoder", true),
                ("vae", true),
                ("clip", false),
            ] {
                edges.push(("role", text(value), keeps));
            }
            for (ids, keeps) in [
                (&["te", "vae", "unet"][..], true),
                (&["unet", "unet", "te", "vae"], false),
                (&["unet", "te"], false),
                (&["unet", "te", "vae", "nope"], false),
                (&[], false),
            ] {
                edges.push((
                    "files",
                    Toml::Array(ids.iter().map(|id| text(id)).collect()),
                    keeps,
                ));
            }
            edges
        }

        /// `text` with `value` under `key` of file `id` (of the set `small`, for `files`).
        fn with_value(text: &str, id: &str, key: &str, value: toml::Value) -> String {
            let mut manifest: toml::Table = toml::from_str(text).unwrap();
            let table = if key == "files" {
                manifest.get_mut("sets").and_then(|sets| sets.get_mut("small"))
            } else {
                manifest.get_mut("files").and_then(|files| files.get_mut(id))
            };
            table
                .and_then(toml::Value::as_table_mut)
                .unwrap()
                .insert(key.to_owned(), value);
            manifest.to_string()
        }

        /// VALID with some values replaced by edge values: `(file, edge)` pairs, each picking one of
        /// VALID's files and one of `edge_values()`.
        fn valid_with_edges(changes: &[(&str, usize)]) -> String {
            let edges = edge_values();
            changes.iter().fold(VALID.to_owned(), |text, &(id, edge)| {
                let (key, value, _) = edges[edge % edges.len()].clone();
                with_value(&text, id, key, value)
            })
        }

        /// Puts one edge value into VALID and checks that the manifest is accepted exactly when the value
        /// keeps the rules, that the value accepted is the one read, and that a refused file is named.
        fn check_edge_value(
            id: &str,
            key: &str,
            value: toml::Value,
            keeps: bool,
        ) -> Result<(), TestCaseError> {
            let own_role = match id {
                "unet" => "unet",
                "te" => "text_encoder",
                _ => "vae",
            };
            let keeps = keeps && (key != "role" || value.as_str() == Some(own_role));
            match Manifest::parse(&with_value(VALID, id, key, value.clone())) {
                Ok(manifest) => {
                    prop_assert!(keeps, "{id}: {key} = {value} was accepted");
                    keeps_the_rules(&manifest)?;
                    let file = manifest.files().find(|file| file.id == id).unwrap();
                    let read = match key {
                        "repo" => Some(hub_parts(file).0.to_owned()),
                        "revision" => Some(hub_parts(file).1.to_owned()),
                        "file" => Some(hub_parts(file).2.to_owned()),
                        "sha256" => file.sha256.as_ref().map(|digest| digest.as_str().to_owned()),
                        "folder" => Some(file.folder.as_str().to_owned()),
                        _ => None,
                    };
                    if let Some(read) = read {
                        prop_assert_eq!(Some(read.as_str()), value.as_str());
                    }
                    if key == "size" || key == "approx_size" {
                        let size = if key == "size" {
                            file.size
                        } else {
                            file.approx_size
                        };
                        prop_assert_eq!(size.and_then(|size| i64::try_from(size).ok()), value.as_integer());
                    }
                }
                Err(error) => {
                    prop_assert!(!keeps, "{id}: {key} = {value} was refused: {error}");
                    if let ManifestError::File { id: named, .. } = &error {
                        prop_assert_eq!(named.as_str(), id);
                    }
                }
            }
            Ok(())
        }

        #[test]
        fn every_edge_value_in_a_valid_manifest_is_accepted_exactly_when_it_keeps_the_rules() {
            for id in ["unet", "te", "vae"] {
                for (key, value, keeps) in edge_values() {
                    if let Err(failure) = check_edge_value(id, key, value, keeps) {
                        panic!("{failure}");
                    }
                }
            }
        }

        proptest! {
            #[test]
            fn accepted_text_is_a_manifest_that_keeps_the_rules_and_non_toml_a_parse_error(
                text in prop_oneof![
                    "(?s).{0,400}",
                    (any::<usize>(), prop::option::of("[a-z_]{1,12} = .{0,40}"))
                        .prop_map(|(at, line)| valid_with_line(at, line.as_deref())),
                    prop::collection::vec((prop::sample::select(vec!["unet", "te", "vae"]), any::<usize>()), 1..3)
                        .prop_map(|changes| valid_with_edges(&changes)),
                ],
            ) {
                check_parse(&text)?;
            }

            #[test]
            fn any_line_spliced_into_a_valid_manifest_is_refused_or_keeps_the_rules(
                line in "[a-z_]{1,12} = .{0,40}",
                at in 0usize..40,
            ) {
                let mut lines: Vec<&str> = VALID.lines().collect();
                let at = at.min(lines.len());
                lines.insert(at, &line);
                check_parse(&lines.join("\n"))?;
            }

            #[test]
            fn a_manifest_written_from_sets_and_files_reads_back_the_same(
                sets in prop::collection::btree_map("[a-z][a-z0-9_-]{0,8}", model_set(), 1..4),
            ) {
                // Each set its own files, ids `<set>.<role>`.
                let sets: BTreeMap<String, (String, Vec<ModelFile>)> = sets
                    .into_iter()
                    .map(|(name, (description, files))| {
                        let files = files
                            .into_iter()
                            .map(|file| ModelFile { id: format!("{name}.{}", role_key(file.role.unwrap())), ..file })
                            .collect();
                        (name, (description, files))
                    })
                    .collect();
                let text = manifest_text(&sets);
                let manifest = Manifest::parse(&text).map_err(|error| TestCaseError::fail(format!("{error}\n{text}")))?;
                prop_assert!(manifest.set_names().eq(sets.keys().map(String::as_str)));
                for (name, (description, files)) in &sets {
                    let set = manifest.set(name).unwrap();
                    prop_assert_eq!(set.description, description.as_str());
                    prop_assert_eq!(set.files, files.iter().collect::<Vec<_>>());
                }
                let mut all: Vec<&ModelFile> = sets.values().flat_map(|(_, files)| files).collect();
                all.sort_by(|left, right| left.id.cmp(&right.id));
                prop_assert_eq!(manifest.files().collect::<Vec<_>>(), all);
                keeps_the_rules(&manifest)?;
            }

            #[test]
            fn a_file_without_a_required_field_is_refused_and_without_an_optional_one_read_as_absent(
                id in prop::sample::select(vec!["unet", "te", "vae"]),
                key in prop::sample::select(vec![
                    "repo", "revision", "file", "folder", "role", "size", "approx_size", "sha256",
                ]),
            ) {
                let mut manifest: toml::Table = toml::from_str(VALID).unwrap();
                let entry = manifest
                    .get_mut("files")
                    .and_then(|files| files.get_mut(id))
                    .and_then(toml::Value::as_table_mut)
                    .unwrap();
                entry.remove(key);
                let text = manifest.to_string();
                let required = ["repo", "revision", "file", "folder", "role"].contains(&key);
                match Manifest::parse(&text) {
                    Err(ManifestError::Parse(error)) if required => {
                        prop_assert!(error.to_string().contains(&format!("`{key}`")), "{error}");
                    }
                    Ok(manifest) if !required => {
                        let file = manifest.files().find(|file| file.id == id).unwrap();
                        let absent = match key {
                            "size" => file.size.is_none(),
                            "approx_size" => file.approx_size.is_none(),
                            _ => file.sha256.is_none(),
                        };
                        prop_assert!(absent, "{key}");
                        keeps_the_rules(&manifest)?;
                    }
                    other => {
                        return Err(TestCaseError::fail(format!("without {key}: {other:?}")));
                    }
                }
            }

            #[test]
            fn an_accepted_file_name_stays_inside_its_folder(
                file in prop_oneof![".{0,40}", "(\\.\\.?/|/|[a-z]{1,6}/){0,4}[a-z.]{0,10}"],
                repo in prop_oneof![".{0,20}", "[a-z.]{0,6}/[a-z.]{0,6}(/[a-z]{0,3})?"],
            ) {
                let text = VALID
                    .replace("file = \"unet.gguf\"", &format!("file = {}", toml_string(&file)))
                    .replace("repo = \"owner/unet-repo\"", &format!("repo = {}", toml_string(&repo)));
                if let Ok(manifest) = Manifest::parse(&text) {
                    for entry in manifest.files() {
                        let path = entry.relative_path();
                        prop_assert!(path.is_relative(), "{}", path.display());
                        prop_assert!(
                            path.components().all(|part| matches!(part, std::path::Component::Normal(_))),
                            "{}",
                            path.display()
                        );
                        let repo = hub_parts(entry).0;
                        prop_assert!(repo.split('/').all(|part| part != "." && part != ".."), "{}", repo);
                    }
                }
            }
        }

        /// `text` as a TOML basic string.
        fn toml_string(text: &str) -> String {
            toml::Value::String(text.to_owned()).to_string()
        }
    }
}
