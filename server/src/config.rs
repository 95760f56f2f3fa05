//! The gateway's configuration: command-line options, each also read from the environment.
//!
//! This is the only module that reads the environment (clippy.toml forbids `std::env::var` elsewhere),
//! so every knob is documented here and shows up in `zimage --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use url::Url;

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
}

/// Options of `zimage serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address the studio listens on.
    #[arg(long, env = "ZIMAGE_LISTEN", default_value = "0.0.0.0:7860")]
    pub listen: SocketAddr,

    /// Base URL of ComfyUI (never exposed to the LAN).
    #[arg(long, env = "COMFYUI_URL", default_value = "http://comfyui:8188")]
    pub comfyui: Url,

    /// Folder for stored images and the history.
    #[arg(long, env = "ZIMAGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// API-format workflow template that the gateway fills for each job.
    #[arg(long, env = "ZIMAGE_WORKFLOW", default_value = "backend/workflows/z_image_turbo.json")]
    pub workflow: PathBuf,

    /// Diffusion model file, as UnetLoaderGGUF offers it.
    #[arg(long, env = "ZIMAGE_UNET", default_value = "z_image_turbo-Q8_0.gguf")]
    pub unet: String,

    /// Text encoder file, as CLIPLoaderGGUF offers it.
    #[arg(long, env = "ZIMAGE_TEXT_ENCODER", default_value = "Qwen3-4B-Q4_K_M.gguf")]
    pub text_encoder: String,

    /// VAE file, as VAELoader offers it.
    #[arg(long, env = "ZIMAGE_VAE", default_value = "ae.safetensors")]
    pub vae: String,

    /// Run a built-in ComfyUI simulator instead of connecting to ComfyUI (no GPU needed; images are test patterns).
    #[arg(long, env = "ZIMAGE_DEMO")]
    pub demo: bool,

    /// Folder of the built web UI: the hydrate bundle under `pkg/` (from `trunk build`) and the static files.
    #[arg(long, env = "ZIMAGE_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,
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

/// `zimage models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsAction {
    /// Download every missing file of the set, resuming partial downloads, and verify it.
    Fetch(ModelsConfig),
    /// Check size and sha256 of every file of the set.
    Verify(ModelsConfig),
    /// List the files of the set and whether they are present.
    List(ModelsConfig),
}
