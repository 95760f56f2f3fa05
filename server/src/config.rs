//! The gateway's configuration: command-line options, each also read from the environment.
//!
//! This is the only module that reads the environment (clippy.toml forbids `std::env::var` elsewhere),
//! so every knob is documented here and shows up in `zimage --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use url::Url;
use zimage_contract::AspectRatio;

use crate::comfy::workflow::{ModelFiles, Workflow};

use crate::access::host::AllowedHosts;
use crate::access::network::{AddressAllowlist, DEFAULT_ALLOW};
use crate::access::secret::Secret;

/// The z-image-local gateway: a private text-to-image studio in front of ComfyUI.
#[derive(Debug, Parser)]
#[command(name = "zimage", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `zimage` does.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the studio and its API.
    Serve(ServeConfig),
    /// Download, verify and list the model files of the manifest.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Run jobs against ComfyUI and show where the seconds go, stage by stage (cold and warm runs).
    Bench(BenchConfig),
    /// Make images with a running studio from the command line and save the PNGs.
    Generate(GenerateConfig),
    /// Copy the history (stars and search included) and the images into a folder; safe while the studio runs. A folder of an earlier backup is brought up to date.
    Backup(BackupConfig),
    /// Bring a backup back into an empty data folder, after checking it.
    Restore(BackupConfig),
}

/// Options of `zimage backup` and `zimage restore`.
#[derive(Debug, Clone, Args)]
pub struct BackupConfig {
    /// The backup folder.
    pub dir: PathBuf,

    /// The studio's data folder.
    #[arg(long, env = "ZIMAGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Options of `zimage serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the studio listens on.
    #[arg(long, env = "ZIMAGE_LISTEN", default_value = "0.0.0.0:7860")]
    pub listen: SocketAddr,

    /// ComfyUI backends (never exposed to the LAN): a base URL, optionally named (`gpu0=http://comfyui:8188`; the name defaults to host:port). Repeat the option, or separate them by commas in COMFYUI_URL, to spread jobs over several GPUs.
    #[arg(
        long,
        env = "COMFYUI_URL",
        default_value = "http://comfyui:8188",
        value_delimiter = ',',
        value_parser = parse_backend
    )]
    pub comfyui: Vec<BackendSpec>,

    /// Folder for stored images and the history.
    #[arg(long, env = "ZIMAGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The workflow and the model files it names.
    #[command(flatten)]
    pub workflow: WorkflowConfig,

    /// Run a built-in ComfyUI simulator instead of connecting to ComfyUI (no GPU needed; images are test patterns).
    #[arg(long, env = "ZIMAGE_DEMO")]
    pub demo: bool,

    /// Folder of the built web UI: the hydrate bundle under `pkg/` (from `trunk build`) and the static files.
    #[arg(long, env = "ZIMAGE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Start even when the site folder lacks the built web UI (`pkg/hydrate.js`, `pkg/hydrate_bg.wasm`, `pkg/main.css`): the API works, the page cannot. Without it `zimage serve` refuses to start then; `scripts/demo` builds the bundle.
    #[arg(long, env = "ZIMAGE_ALLOW_MISSING_BUNDLE")]
    pub allow_missing_bundle: bool,

    /// Seconds a job may take at ComfyUI before it fails (and how long jobs wait in line while ComfyUI cannot be reached). Generous: the first job after a start loads the models from disk.
    #[arg(long = "job-deadline", env = "ZIMAGE_JOB_DEADLINE", default_value = "600", value_parser = parse_seconds)]
    pub job_deadline: std::time::Duration,

    /// Who may come in and how much each client may ask for.
    #[command(flatten)]
    pub access: AccessConfig,
}

/// One ComfyUI backend as configured: the name people see (in `/api/backends`, on each image) and the
/// address only the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    pub name: String,
    pub url: Url,
}

/// The longest backend name: it is shown on every image card.
const MAX_BACKEND_NAME: usize = 40;

/// `NAME=URL` or `URL` (named host:port). Names are letters, digits and `.-_:`, so they read well and
/// never need escaping wherever they are shown.
fn parse_backend(text: &str) -> Result<BackendSpec, String> {
    let text = text.trim();
    // A URL has `://` before any `=` of its query; a name never contains `:/`.
    let (name, address) = match text.split_once('=') {
        Some((name, address)) if !name.contains("://") => (Some(name.trim()), address.trim()),
        _ => (None, text),
    };
    let url = Url::parse(address).map_err(|error| format!("`{address}` is not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{address}` is not an http:// or https:// address"));
    }
    let name = match name {
        Some(name) => name.to_owned(),
        None => {
            let host = url.host_str().unwrap_or_default();
            match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            }
        }
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']');
    if name.is_empty() || name.len() > MAX_BACKEND_NAME || !name.chars().all(valid) {
        return Err(format!(
            "backend name `{name}`: use 1 to {MAX_BACKEND_NAME} letters, digits, `.`, `-`, `_` or `:`"
        ));
    }
    Ok(BackendSpec { name, url })
}

impl ServeConfig {
    /// The backends, each name once.
    pub fn backends(&self) -> anyhow::Result<Vec<BackendSpec>> {
        let mut seen = std::collections::HashSet::new();
        for backend in &self.comfyui {
            if !seen.insert(backend.name.as_str()) {
                anyhow::bail!(
                    "two ComfyUI backends are named `{}`: name them (`--comfyui gpu1=http://...`)",
                    backend.name
                );
            }
        }
        if self.comfyui.is_empty() {
            anyhow::bail!("no ComfyUI backend is configured (--comfyui / COMFYUI_URL)");
        }
        Ok(self.comfyui.clone())
    }
}

/// A whole number of seconds, 1 to a day.
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(seconds @ 1..=86_400) => Ok(std::time::Duration::from_secs(seconds)),
        _ => Err("expected a whole number of seconds from 1 to 86400".to_owned()),
    }
}

/// Options of the door to the LAN (docs/security.md): who may come in, and the abuse limits.
#[derive(Debug, Clone, Args)]
pub struct AccessConfig {
    /// Client addresses admitted, as IP addresses or CIDR blocks separated by commas; any other client gets 403. The default is loopback and the private (LAN) ranges.
    #[arg(long, env = "ZIMAGE_ALLOW", default_value = DEFAULT_ALLOW)]
    pub allow: AddressAllowlist,

    /// Host names the studio answers to besides `localhost` and its IP addresses, separated by commas (e.g. `studio.lan,desk.local`); requests naming other hosts get 403 (against DNS rebinding).
    #[arg(long, env = "ZIMAGE_ALLOWED_HOSTS", default_value = "")]
    pub allowed_hosts: AllowedHosts,

    /// Access secret. When set, a browser signs in once (or is paired by QR code) and scripts send `Authorization: Bearer <secret>`; empty means none.
    // Not `conflicts_with = "password_file"`: clap counts a variable that is set but empty as given,
    // and Compose always sets ZIMAGE_PASSWORD. `AccessConfig::secret_source` decides instead.
    #[arg(long, env = "ZIMAGE_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,

    /// File holding the access secret (a Docker secret, for example); whitespace around it is ignored. ZIMAGE_PASSWORD must then be empty or unset.
    // Any text, the empty one included (clap's path parser refuses it): empty means not set, as for
    // ZIMAGE_PASSWORD.
    #[arg(
        long,
        env = "ZIMAGE_PASSWORD_FILE",
        value_parser = clap::builder::OsStringValueParser::new().map(PathBuf::from)
    )]
    pub password_file: Option<PathBuf>,

    /// Jobs one client address may start per minute (all at once if it likes); 0 for no limit.
    #[arg(long, env = "ZIMAGE_JOBS_PER_MINUTE", default_value_t = 10)]
    pub jobs_per_minute: u32,

    /// Unfinished jobs (queued or running) the studio holds at most, all clients together; further jobs get 429 until one ends. 0 for no cap.
    #[arg(long, env = "ZIMAGE_MAX_QUEUED", default_value_t = 32)]
    pub max_queued: usize,

    /// Event streams (live progress of a job) one client address may hold open at once; 0 for no cap.
    #[arg(long, env = "ZIMAGE_MAX_STREAMS_PER_CLIENT", default_value_t = 32)]
    pub max_streams_per_client: usize,
}

impl Default for AccessConfig {
    /// The same values as the command line's defaults.
    fn default() -> AccessConfig {
        AccessConfig {
            allow: AddressAllowlist::private_networks(),
            allowed_hosts: AllowedHosts::default(),
            password: None,
            password_file: None,
            jobs_per_minute: 10,
            max_queued: 32,
            max_streams_per_client: 32,
        }
    }
}

/// Where the access secret comes from, the two settings taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// No secret: anyone on the allowed networks may use the studio.
    None,
    /// `--password` / `ZIMAGE_PASSWORD`.
    Setting(Secret),
    /// `--password-file` / `ZIMAGE_PASSWORD_FILE`, read at start-up.
    File(PathBuf),
}

/// A secret and a secret file were both given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the access secret is given twice: set ZIMAGE_PASSWORD (--password) or ZIMAGE_PASSWORD_FILE (--password-file), and leave the other empty"
)]
pub struct TwoSecrets;

impl AccessConfig {
    /// Where the secret comes from. An empty setting is no setting, for either: Compose passes
    /// `ZIMAGE_PASSWORD` through from `.env` even when it is blank, and a file must still work then.
    pub fn secret_source(&self) -> Result<SecretSource, TwoSecrets> {
        let setting = self.password.clone().filter(|secret| !secret.is_empty());
        let file = self
            .password_file
            .clone()
            .filter(|path| !path.as_os_str().is_empty());
        match (setting, file) {
            (Some(_), Some(_)) => Err(TwoSecrets),
            (Some(secret), None) => Ok(SecretSource::Setting(secret)),
            (None, Some(path)) => Ok(SecretSource::File(path)),
            (None, None) => Ok(SecretSource::None),
        }
    }
}

/// The workflow template the gateway fills and the model files it names: the same for `zimage serve`
/// and `zimage bench`.
#[derive(Debug, Clone, Args)]
pub struct WorkflowConfig {
    /// API-format workflow template that the gateway fills for each job.
    #[arg(
        long = "workflow",
        env = "ZIMAGE_WORKFLOW",
        default_value = "backend/workflows/z_image_turbo.json"
    )]
    pub template: PathBuf,

    /// Diffusion model file, as UnetLoaderGGUF offers it (compare quantizations by changing it).
    #[arg(long, env = "ZIMAGE_UNET", default_value = "z_image_turbo-Q8_0.gguf")]
    pub unet: String,

    /// Text encoder file, as CLIPLoaderGGUF offers it.
    #[arg(long, env = "ZIMAGE_TEXT_ENCODER", default_value = "Qwen3-4B-Q4_K_M.gguf")]
    pub text_encoder: String,

    /// VAE file, as VAELoader offers it.
    #[arg(long, env = "ZIMAGE_VAE", default_value = "ae.safetensors")]
    pub vae: String,
}

impl WorkflowConfig {
    /// The model files, as the workflow module takes them.
    pub fn model_files(&self) -> ModelFiles {
        ModelFiles {
            unet: self.unet.clone(),
            text_encoder: self.text_encoder.clone(),
            vae: self.vae.clone(),
        }
    }

    /// Loads the template with the model files written in.
    pub fn load(&self) -> anyhow::Result<Workflow> {
        Workflow::load(&self.template, self.model_files())
            .with_context(|| format!("cannot use the workflow template {}", self.template.display()))
    }
}

/// Options of `zimage bench`: jobs straight to ComfyUI (not through the studio), timed stage by stage.
#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// Base URL of the ComfyUI to measure.
    #[arg(long, env = "COMFYUI_URL", default_value = "http://comfyui:8188")]
    pub comfyui: Url,

    /// Jobs to run: the first is the cold run (models unloaded before it), the others are warm.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,

    /// The workflow and the model files it names, as `zimage serve` uses them.
    #[command(flatten)]
    pub workflow: WorkflowConfig,

    /// Image width.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(256..=1024))]
    pub width: u32,

    /// Image height.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(256..=1024))]
    pub height: u32,

    /// The prompt (each run appends its own suffix, so ComfyUI's cache never skips the text encoder).
    #[arg(
        long,
        default_value = "a lighthouse on a cliff at dawn, volumetric light, film grain"
    )]
    pub prompt: String,

    /// Keep the models ComfyUI has loaded instead of unloading them first (the first run is then warm too).
    #[arg(long)]
    pub keep_models: bool,

    /// Seconds one job may take before the bench gives up.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,

    /// Also write the numbers as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl BenchConfig {
    /// How long one job may take.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_secs)
    }
}

/// Options of `zimage generate`: a client of a running studio, over its HTTP API.
#[derive(Debug, Clone, Args)]
pub struct GenerateConfig {
    /// What to draw (1 to 2000 characters; English or Chinese).
    pub prompt: String,

    /// Aspect ratio: 1:1, 3:4, 4:3, 16:9 or 9:16 (the longer side is 1024). The studio's default is 1:1.
    #[arg(long, conflicts_with = "size", value_parser = parse_aspect)]
    pub aspect: Option<AspectRatio>,

    /// Width and height in pixels, e.g. 768x1024: each 256 to 1024, in steps of 16.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,

    /// Seed of the first image (the others take the next seeds); random when left out.
    #[arg(long)]
    pub seed: Option<u64>,

    /// A saved style, by name: its words wrap the prompt, its LoRAs and shape apply unless given here.
    #[arg(long, value_name = "NAME")]
    pub style: Option<String>,

    /// How many images: each is its own job, with consecutive seeds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_GENERATE_COUNT))]
    pub count: u32,

    /// The studio's address.
    #[arg(long, env = "ZIMAGE_SERVER", default_value = "http://127.0.0.1:7860")]
    pub server: Url,

    /// The studio's access secret, when it has one (sent as `Authorization: Bearer`).
    #[arg(long, env = "ZIMAGE_PASSWORD", hide_env_values = true)]
    pub password: Option<Secret>,

    /// Where to write the PNG: a file name, or a folder (created if needed) where each image is named from its prompt and seed. Default: the current folder.
    #[arg(short = 'o', long = "output", value_name = "FILE_OR_DIR")]
    pub output: Option<PathBuf>,

    /// Print the finished jobs' records as JSON (with the file each was written to) instead of the file names.
    #[arg(long)]
    pub json: bool,

    /// Start from this picture (PNG, JPEG or WebP, up to 25 MiB) instead of from noise. Without --aspect or --size the image has the picture's aspect (longer side at most 1024).
    #[arg(long, value_name = "PICTURE")]
    pub from: Option<PathBuf>,

    /// How much of the picture may change, from 0.2 (a little) to 1.0 (everything). The studio's default is 0.6, or 1.0 with --mask.
    #[arg(long, requires = "from")]
    pub strength: Option<f32>,

    /// Paint over a part only: a PNG of the picture's size (as the studio scaled it) whose transparent pixels mark what to change.
    #[arg(long, value_name = "MASK", requires = "from")]
    pub mask: Option<PathBuf>,

    /// Apply a LoRA the studio lists (`zimage` asks `GET /api/loras`), with a strength from -2 to 2 (1 when left out), e.g. `--lora watercolor.safetensors:0.8`. Repeat for up to 4.
    #[arg(long = "lora", value_name = "NAME[:STRENGTH]", value_parser = parse_lora)]
    pub loras: Vec<zimage_contract::LoraChoice>,
}

/// `name` or `name:strength`. The studio checks the name and the range (and names the field it refuses).
fn parse_lora(text: &str) -> Result<zimage_contract::LoraChoice, String> {
    let text = text.trim();
    let (name, strength) = match text.rsplit_once(':') {
        Some((name, strength)) => match strength.trim().parse::<f64>() {
            Ok(strength) => (name.trim(), strength),
            Err(_) => {
                return Err(format!(
                    "expected NAME or NAME:STRENGTH, e.g. ink.safetensors:0.8; {strength:?} is not a number"
                ));
            }
        },
        None => (text, zimage_contract::styles::DEFAULT_LORA_STRENGTH),
    };
    if name.is_empty() {
        return Err("expected NAME or NAME:STRENGTH, e.g. ink.safetensors:0.8".to_owned());
    }
    Ok(zimage_contract::LoraChoice {
        name: name.to_owned(),
        strength,
    })
}

/// Most images one `zimage generate` asks for: within the studio's default of 10 jobs a minute per device.
pub const MAX_GENERATE_COUNT: i64 = 8;

/// An aspect ratio by its label.
fn parse_aspect(text: &str) -> Result<AspectRatio, String> {
    AspectRatio::from_label(text.trim()).ok_or_else(|| {
        let labels: Vec<&str> = AspectRatio::ALL.iter().map(|ratio| ratio.label()).collect();
        format!("expected one of {}", labels.join(", "))
    })
}

/// `WxH`, e.g. `768x1024`. The studio checks the limits (and names the field it refuses).
fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let expected = || "expected WIDTHxHEIGHT in pixels, e.g. 768x1024".to_owned();
    let (width, height) = text.trim().split_once(['x', 'X', '×']).ok_or_else(expected)?;
    match (width.trim().parse(), height.trim().parse()) {
        (Ok(width), Ok(height)) => Ok((width, height)),
        _ => Err(expected()),
    }
}

/// Options shared by the `zimage models` actions.
#[derive(Debug, Clone, Args)]
pub struct ModelsConfig {
    /// The model manifest.
    #[arg(long, env = "ZIMAGE_MODELS_MANIFEST", default_value = "backend/models.toml")]
    pub manifest: PathBuf,

    /// ComfyUI's `models` folder; each file goes to its entry's sub-folder.
    #[arg(long, env = "ZIMAGE_MODELS_DIR", default_value = "./models")]
    pub models_dir: PathBuf,

    /// Which set of the manifest to use (`default` for 12 GB cards, `light` for cards that also drive a desktop).
    #[arg(long = "set", env = "ZIMAGE_MODEL_SET", default_value = "default")]
    pub model_set: String,

    /// Base URL of the Hugging Face hub (or a mirror).
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub hub_url: Url,

    /// Hugging Face access token, for gated repositories.
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub hf_token: Option<String>,
}

/// Options of `zimage models add-lora`.
#[derive(Debug, Clone, Args)]
pub struct AddLoraConfig {
    /// Where to download the LoRA (http or https, no credentials in it: the manifest is shared).
    pub url: String,

    /// The file's sha256 (64 hex digits), as its publisher gives it; `fetch` checks the download against it.
    #[arg(long)]
    pub sha256: String,

    /// Its file name in `models/loras` (ending in `.safetensors`), when not the URL's last part.
    #[arg(long)]
    pub name: Option<String>,

    /// Its exact size in bytes, if known.
    #[arg(long)]
    pub size: Option<u64>,

    /// The model manifest to add it to.
    #[arg(long, env = "ZIMAGE_MODELS_MANIFEST", default_value = "backend/models.toml")]
    pub manifest: PathBuf,
}

/// `zimage models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Download every missing file of the set and every LoRA of the manifest, resuming partial downloads, and verify them.
    Fetch(ModelsConfig),
    /// Check size and sha256 of every file of the set and every LoRA of the manifest.
    Verify(ModelsConfig),
    /// List the files of the set and the LoRAs (of the manifest, and those dropped into `models/loras`), and whether they are present.
    List(ModelsConfig),
    /// Add a LoRA to the manifest by URL and sha256; `fetch` then downloads it into `models/loras`.
    AddLora(AddLoraConfig),
}

/// The language of what the command line prints for people: the terminal's POSIX locale (`LC_ALL`, then
/// `LC_MESSAGES`, then `LANG`, the first one set and not empty), as other command-line tools read it.
#[allow(
    clippy::disallowed_methods,
    reason = "the locale is the terminal's, not an option of the studio: clap has no fallback chain of variables"
)]
pub fn terminal_language() -> crate::i18n::Lang {
    let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
        .unwrap_or_default();
    crate::i18n::lang_of_posix_locale(&locale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeConfig {
        let mut argv = vec!["zimage", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(config) => config,
            Command::Models { .. }
            | Command::Bench(_)
            | Command::Generate(_)
            | Command::Backup(_)
            | Command::Restore(_) => {
                unreachable!("asked for serve")
            }
        }
    }

    #[test]
    fn add_lora_takes_a_url_a_sha256_and_optionally_a_name_and_size() {
        let add = |args: &[&str]| {
            let mut argv = vec!["zimage", "models", "add-lora"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Models {
                    action: ModelsAction::AddLora(config),
                } => config,
                _ => unreachable!("asked for add-lora"),
            })
        };
        let config = add(&[
            "https://example.org/grain.safetensors",
            "--sha256",
            "ab",
            "--name",
            "grain.safetensors",
            "--size",
            "12",
            "--manifest",
            "m.toml",
        ])
        .unwrap();
        assert_eq!(config.url, "https://example.org/grain.safetensors");
        assert_eq!(config.sha256, "ab");
        assert_eq!(config.name.as_deref(), Some("grain.safetensors"));
        assert_eq!(config.size, Some(12));
        assert_eq!(config.manifest, PathBuf::from("m.toml"));
        assert!(
            add(&["https://example.org/grain.safetensors"]).is_err(),
            "the sha256 is required"
        );
        assert!(
            add(&[
                "https://example.org/g.safetensors",
                "--sha256",
                "ab",
                "--size",
                "-1"
            ])
            .is_err()
        );
    }

    #[test]
    fn generate_takes_an_aspect_or_a_size_and_a_bounded_count() {
        let generate = |args: &[&str]| {
            let mut argv = vec!["zimage", "generate", "a fox"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|cli| match cli.command {
                Command::Generate(config) => config,
                _ => unreachable!("asked for generate"),
            })
        };
        let config = generate(&["--aspect", "16:9", "--count", "3"]).unwrap();
        assert_eq!(
            (config.aspect, config.size, config.count),
            (Some(AspectRatio::Wide16x9), None, 3)
        );
        assert_eq!(config.server.as_str(), "http://127.0.0.1:7860/");
        assert_eq!(generate(&["--size", "768x1024"]).unwrap().size, Some((768, 1024)));
        assert_eq!(
            generate(&["--size", " 512 X 256 "]).unwrap().size,
            Some((512, 256))
        );
        for bad in [
            &["--aspect", "2:1"][..],
            &["--size", "768"],
            &["--size", "axb"],
            &["--aspect", "1:1", "--size", "256x256"],
            &["--count", "0"],
            &["--count", "9"],
            &["--strength", "0.5"],
            &["--mask", "mask.png"],
        ] {
            assert!(generate(bad).is_err(), "{bad:?}");
        }
        let loras = generate(&["--lora", "styles/ink.safetensors:0.8", "--lora", "b.safetensors"])
            .unwrap()
            .loras;
        let loras: Vec<(&str, f64)> = loras
            .iter()
            .map(|lora| (lora.name.as_str(), lora.strength))
            .collect();
        assert_eq!(loras, [("styles/ink.safetensors", 0.8), ("b.safetensors", 1.0)]);
        assert!(generate(&["--lora", "ink.safetensors:strong"]).is_err());
        assert!(generate(&["--lora", ":0.5"]).is_err());
        let config = generate(&["--from", "photo.jpg", "--strength", "0.5", "--mask", "mask.png"]).unwrap();
        assert_eq!(config.from.as_deref(), Some(std::path::Path::new("photo.jpg")));
        assert_eq!(
            (config.strength, config.mask.as_deref()),
            (Some(0.5), Some(std::path::Path::new("mask.png")))
        );
    }

    #[test]
    fn the_access_defaults_are_the_command_lines_defaults() {
        let parsed = serve(&[]).access;
        let default = AccessConfig::default();
        assert_eq!(parsed.allow, default.allow);
        assert_eq!(parsed.allowed_hosts, default.allowed_hosts);
        assert_eq!(
            (
                parsed.jobs_per_minute,
                parsed.max_queued,
                parsed.max_streams_per_client
            ),
            (
                default.jobs_per_minute,
                default.max_queued,
                default.max_streams_per_client
            )
        );
    }

    #[test]
    fn access_options_parse_their_lists_and_refuse_nonsense() {
        let config = serve(&[
            "--allow",
            "192.168.1.0/24, 10.8.0.7",
            "--allowed-hosts",
            "Studio.lan,",
            "--password",
            " s3cret ",
        ]);
        assert_eq!(config.access.allow.to_string(), "192.168.1.0/24,10.8.0.7/32");
        assert_eq!(config.access.allowed_hosts.to_string(), "studio.lan");
        assert_eq!(config.access.password, Secret::new("s3cret"));
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "the secret never shows in debug output"
        );
        for bad in [
            ["--allow", "192.168.1.1/24"],
            ["--allow", ""],
            ["--allowed-hosts", "http://x"],
        ] {
            let mut argv = vec!["zimage", "serve"];
            argv.extend_from_slice(&bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_secret_setting_leaves_room_for_the_secret_file() {
        let file = PathBuf::from("/run/secrets/x");
        let source = |args: &[&str]| serve(args).access.secret_source();
        // What Compose passes when .env leaves ZIMAGE_PASSWORD blank and a Docker secret is used.
        assert_eq!(
            source(&["--password=", "--password-file=/run/secrets/x"]),
            Ok(SecretSource::File(file.clone()))
        );
        assert_eq!(
            source(&["--password= ", "--password-file=/run/secrets/x"]),
            Ok(SecretSource::File(file.clone()))
        );
        assert_eq!(
            source(&["--password=a", "--password-file="]),
            Ok(SecretSource::Setting(Secret::new("a").unwrap()))
        );
        assert_eq!(
            source(&["--password=", "--password-file="]),
            Ok(SecretSource::None)
        );
        assert_eq!(source(&[]), Ok(SecretSource::None));
        assert_eq!(
            source(&["--password=a", "--password-file=/run/secrets/x"]),
            Err(TwoSecrets)
        );
    }

    #[test]
    fn one_comfyui_url_is_one_backend_named_by_its_host_and_port() {
        let backends = serve(&[]).backends().unwrap();
        assert_eq!(backends.len(), 1);
        assert_eq!(backends[0].name, "comfyui:8188");
        assert_eq!(backends[0].url.as_str(), "http://comfyui:8188/");
        let backends = serve(&["--comfyui=https://gpu.lan"]).backends().unwrap();
        assert_eq!(backends[0].name, "gpu.lan:443");
    }

    #[test]
    fn several_backends_come_from_repeated_options_or_commas_each_optionally_named() {
        let repeated = serve(&[
            "--comfyui",
            "gpu0=http://comfyui:8188",
            "--comfyui",
            "den=http://192.0.2.7:8188/?x=a=b",
        ])
        .backends()
        .unwrap();
        let names: Vec<&str> = repeated.iter().map(|backend| backend.name.as_str()).collect();
        assert_eq!(names, ["gpu0", "den"]);
        assert_eq!(repeated[1].url.as_str(), "http://192.0.2.7:8188/?x=a=b");

        let listed = serve(&["--comfyui=http://a:1, b=http://b:2"]).backends().unwrap();
        let names: Vec<&str> = listed.iter().map(|backend| backend.name.as_str()).collect();
        assert_eq!(names, ["a:1", "b"]);
    }

    #[test]
    fn backend_options_refuse_nonsense_and_twins() {
        let parsed = |value: &str| Cli::try_parse_from(["zimage", "serve", "--comfyui", value]).map(|_| ());
        assert!(parsed("not a url").is_err());
        assert!(parsed("ftp://comfyui:21").is_err());
        assert!(parsed("bad name=http://comfyui:8188").is_err());
        assert!(parsed(&format!("{}=http://comfyui:8188", "n".repeat(41))).is_err());
        assert!(parsed("=http://comfyui:8188").is_err());
        let twins = serve(&["--comfyui=http://a:1", "--comfyui=http://a:1"]).backends();
        assert!(twins.unwrap_err().to_string().contains("a:1"));
    }
}
