//! `comfy-sim`: the simulator as a standalone server, for end-to-end tests and demos.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Parser;
use comfy_sim::{SimOptions, Simulator};
use tracing_subscriber::EnvFilter;

/// A ComfyUI 0.8.0 simulator: the real HTTP and WebSocket protocol, seed-determined images.
///
/// Several can run side by side, one per port, each with its own queue, history and output folder:
/// `comfy-sim --listen 127.0.0.1:8188 & comfy-sim --listen 127.0.0.1:8189 &` stands for two GPUs, for
/// a gateway started with `--comfyui gpu0=http://127.0.0.1:8188 --comfyui gpu1=http://127.0.0.1:8189`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8188")]
    listen: SocketAddr,
    /// Milliseconds each sampling step takes.
    #[arg(long, default_value_t = 40)]
    step_ms: u64,
    /// Send live previews for every prompt (like ComfyUI's `--preview-method latent2rgb`).
    #[arg(long)]
    previews: bool,
    /// The model files to offer: a ComfyUI `models` folder (diffusion_models|unet, text_encoders|clip,
    /// vae), or a comma-separated list of file names sorted by their names.
    #[arg(long)]
    models: Option<String>,
    /// LoRA files to list in models/loras, comma-separated (e.g. `ink.safetensors,styles/a.safetensors`).
    #[arg(long, value_delimiter = ',')]
    loras: Vec<String>,
    /// Where generated images are written (default: a temporary folder).
    #[arg(long)]
    output_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let args = Args::parse();

    let mut options = SimOptions {
        step_ms: args.step_ms,
        previews: args.previews,
        output_dir: args.output_dir,
        loras: args
            .loras
            .iter()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .collect(),
        ..SimOptions::default()
    };
    if let Some(models) = &args.models {
        let files = if Path::new(models).is_dir() {
            scan_models_dir(Path::new(models))
                .with_context(|| format!("reading the models folder {models}"))?
        } else {
            classify_names(models.split(',').map(str::trim).filter(|name| !name.is_empty()))
        };
        options.unet_models = files.unet;
        options.text_encoders = files.text_encoders;
        options.vaes = files.vaes;
    }
    tracing::info!(
        unet = ?options.unet_models,
        text_encoders = ?options.text_encoders,
        vae = ?options.vaes,
        loras = ?options.loras,
        "offering models"
    );

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let handle = Simulator::spawn(listener, options)
        .await
        .context("starting the simulator")?;
    println!("comfy-sim listening on {}", handle.url());

    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    handle.shutdown();
    Ok(())
}

/// Model file names by the loader that offers them.
#[derive(Debug, Default, PartialEq)]
struct ModelLists {
    unet: Vec<String>,
    text_encoders: Vec<String>,
    vaes: Vec<String>,
}

/// Sorts bare file names: text encoders by name (Qwen, CLIP, T5, "text_encoder"), VAEs by name
/// (`vae`, `ae.safetensors`), other `.gguf` files are diffusion models.
fn classify_names<'a>(names: impl IntoIterator<Item = &'a str>) -> ModelLists {
    let mut lists = ModelLists::default();
    for name in names {
        let lower = name.to_lowercase();
        let stem = Path::new(&lower)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_text_encoder = [
            "qwen",
            "clip",
            "t5",
            "text_encoder",
            "text-encoder",
            "umt5",
            "llama",
            "gemma",
        ]
        .iter()
        .any(|marker| lower.contains(marker));
        let is_vae = lower.contains("vae") || stem == "ae";
        if is_text_encoder {
            lists.text_encoders.push(name.to_owned());
        } else if is_vae {
            lists.vaes.push(name.to_owned());
        } else {
            lists.unet.push(name.to_owned());
        }
    }
    lists
}

/// Reads ComfyUI's folder layout: `diffusion_models`/`unet` (GGUF files), `text_encoders`/`clip`,
/// `vae`; names are relative paths inside those folders, as ComfyUI lists them.
fn scan_models_dir(root: &Path) -> std::io::Result<ModelLists> {
    let mut lists = ModelLists::default();
    for (folders, list, gguf_only) in [
        (["diffusion_models", "unet"], &mut lists.unet, true),
        (["text_encoders", "clip"], &mut lists.text_encoders, false),
        (["vae", "vae"], &mut lists.vaes, false),
    ] {
        for folder in folders {
            let dir = root.join(folder);
            if dir.is_dir() {
                collect_files(&dir, &dir, list, gguf_only)?;
            }
        }
        list.sort();
        list.dedup();
    }
    Ok(lists)
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<String>, gguf_only: bool) -> std::io::Result<()> {
    const MODEL_EXTENSIONS: [&str; 6] = ["gguf", "safetensors", "sft", "ckpt", "pt", "bin"];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(base, &path, out, gguf_only)?;
            continue;
        }
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let wanted = if gguf_only {
            extension == "gguf"
        } else {
            MODEL_EXTENSIONS.contains(&extension.as_str())
        };
        if wanted && let Ok(relative) = path.strip_prefix(base) {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_names_is_sorted_into_loaders() {
        let lists = classify_names([
            "z_image_turbo-Q5_K_M.gguf",
            "Qwen3-4B-Q5_K_M.gguf",
            "ae.safetensors",
            "flux-vae.safetensors",
            "qwen_3_4b.safetensors",
        ]);
        assert_eq!(lists.unet, ["z_image_turbo-Q5_K_M.gguf"]);
        assert_eq!(
            lists.text_encoders,
            ["Qwen3-4B-Q5_K_M.gguf", "qwen_3_4b.safetensors"]
        );
        assert_eq!(lists.vaes, ["ae.safetensors", "flux-vae.safetensors"]);
    }

    #[test]
    fn a_models_folder_is_read_like_comfyui_lists_it() {
        let root = tempfile::tempdir().unwrap();
        for file in [
            "diffusion_models/z.gguf",
            "diffusion_models/readme.txt",
            "unet/sub/u.gguf",
            "text_encoders/q.gguf",
            "clip/c.safetensors",
            "vae/ae.safetensors",
        ] {
            let path = root.path().join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        let lists = scan_models_dir(root.path()).unwrap();
        assert_eq!(lists.unet, ["sub/u.gguf", "z.gguf"]);
        assert_eq!(lists.text_encoders, ["c.safetensors", "q.gguf"]);
        assert_eq!(lists.vaes, ["ae.safetensors"]);
    }
}
