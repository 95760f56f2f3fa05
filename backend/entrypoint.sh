#!/bin/sh
# Starts ComfyUI with the flags chosen for a 12 GB RTX 3060 behind the z-image-local gateway.
#
#   --listen 0.0.0.0     Listen on the container's own network. The compose file puts ComfyUI on an
#                        internal network without a published port, so only the gateway reaches it.
#   --port 8188          The gateway's COMFYUI_URL points here.
#   --cache-lru 32       Keep up to 32 node results across jobs instead of only the last prompt's: the
#                        loaded models and recent prompt encodings stay cached, so a repeated prompt
#                        skips the text encoder and nothing reloads between jobs. The entries are
#                        small (conditioning, latents, one decoded image each); the models are shared.
#   --disable-metadata   Do not embed the workflow (with the prompt) in the PNG: the gateway keeps its
#                        own record of each image, and a shared picture should not carry the prompt.
#
# Left at ComfyUI's defaults on purpose:
#   VRAM mode            NORMAL_VRAM: ComfyUI loads the text encoder, then swaps in the diffusion model,
#                        and loads partially (streaming the rest from RAM) rather than fail when a model
#                        does not fit. `--lowvram`/`--novram` only slow a 12 GB card down.
#   --preview-method     Stays `none`: the gateway asks for previews per prompt (extra_data).
#   no --fp16-vae        The Flux VAE Z-Image uses decodes to black images in fp16.
#   no --enable-cors-header, no --enable-manager: the browser never talks to ComfyUI.
#
# COMFYUI_EXTRA_ARGS adds flags, e.g. "--reserve-vram 1" when the card also drives the desktop
# (docs/deployment.md, troubleshooting).
set -eu

# Word splitting of COMFYUI_EXTRA_ARGS is intended: it holds several flags.
# shellcheck disable=SC2086
exec /opt/venv/bin/python /opt/comfyui/main.py \
  --listen 0.0.0.0 \
  --port 8188 \
  --cache-lru 32 \
  --disable-metadata \
  ${COMFYUI_EXTRA_ARGS:-} \
  "$@"
