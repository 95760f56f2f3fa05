//! The model manifest (`backend/models.toml`): the model sets, and for each file its repository,
//! revision, path, target folder, role and, where published, size and sha256.
//!
//! Everything is checked when the manifest is read, so later code can build paths and URLs from it
//! without re-checking: file names cannot leave their folder, each set has exactly one file per loader.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

impl Folder {
    /// The folder's name under `models/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DiffusionModels => "diffusion_models",
            Self::TextEncoders => "text_encoders",
            Self::Vae => "vae",
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

/// One model file of the manifest, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// The entry's key in the manifest.
    pub id: String,
    /// Hugging Face repository, `owner/name`.
    pub repo: String,
    /// Commit (pinned) or branch name (follows the branch).
    pub revision: String,
    /// Path of the file inside the repository.
    pub file: String,
    /// Target folder under `models/`.
    pub folder: Folder,
    /// The loader that takes it.
    pub role: Role,
    /// Exact size in bytes, where published.
    pub size: Option<u64>,
    /// Rough size in bytes, a hint when the exact one is not known.
    pub approx_size: Option<u64>,
    /// SHA-256, where published.
    pub sha256: Option<Sha256Digest>,
}

impl ModelFile {
    /// The file's name as ComfyUI's loaders list it (the last part of `file`).
    pub fn name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    /// Where the file goes, relative to the `models/` folder.
    pub fn relative_path(&self) -> PathBuf {
        Path::new(self.folder.as_str()).join(self.name())
    }

    /// `folder/name` with forward slashes: the file's key in the record and in messages.
    pub fn display_path(&self) -> String {
        format!("{}/{}", self.folder.as_str(), self.name())
    }

    /// Whether `revision` is a full commit id rather than a branch that can move.
    pub fn is_pinned(&self) -> bool {
        self.revision.len() == 40 && self.revision.bytes().all(|byte| byte.is_ascii_hexdigit())
    }

    /// The exact size or, failing that, the rough one.
    pub fn size_hint(&self) -> Option<u64> {
        self.size.or(self.approx_size)
    }

    /// The repository's page, where a gated model's terms are accepted.
    pub fn repo_page(&self, hub: &url::Url) -> String {
        format!("{}/{}", hub.as_str().trim_end_matches('/'), self.repo)
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
        self.files.iter().copied().find(|file| file.role == role)
    }
}

/// The checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    sets: BTreeMap<String, SetEntry>,
    files: BTreeMap<String, ModelFile>,
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
        Ok(Self { sets, files })
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

    /// Every file entry, sorted by id.
    pub fn files(&self) -> impl Iterator<Item = &ModelFile> {
        self.files.values()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: u32,
    sets: BTreeMap<String, RawSet>,
    files: BTreeMap<String, RawFile>,
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
        repo: raw.repo,
        revision: raw.revision,
        file: raw.file,
        folder: raw.folder,
        role: raw.role,
        size: raw.size,
        approx_size: raw.approx_size,
        sha256,
    })
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
        roles.push(file.role);
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
            format!("https://huggingface.co/{}", file.repo)
        );
    }

    mod properties {
        //! The manifest is read from disk and names files that become paths under the models folder:
        //! whatever it says, parsing must not panic, and an accepted file never leaves its folder.

        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_text_parses_or_is_refused_without_panicking(text in "(?s).{0,400}") {
                let _ = Manifest::parse(&text);
            }

            #[test]
            fn any_line_spliced_into_a_valid_manifest_is_handled(line in "[a-z_]{1,12} = .{0,40}", at in 0usize..40) {
                let mut lines: Vec<&str> = VALID.lines().collect();
                let at = at.min(lines.len());
                lines.insert(at, &line);
                let _ = Manifest::parse(&lines.join("\n"));
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
                        prop_assert!(entry.repo.split('/').all(|part| part != "." && part != ".."), "{}", entry.repo);
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
