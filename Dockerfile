# syntax=docker/dockerfile:1
#
# The z-image-local gateway (`zimage`): built from source in a Rust image (server binary + the web UI's
# hydrate bundle, built by Trunk), then run on a small Debian image as a non-root user. The same image
# runs the compose file's one-shot `models` service (`zimage models fetch`).
#
# Tool versions follow the repository's toolchain (rust-toolchain.toml, Trunk.toml): the wasm-bindgen CLI
# must equal the wasm-bindgen crate in Cargo.lock exactly, and wasm-opt must be binaryen 132 from npm
# (Debian's binaryen produces a bundle that fails in the browser).
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# ---- Build tools (a layer that changes only with these versions) --------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS tools
ARG WASM_BINDGEN_VERSION=0.2.130
ARG TRUNK_VERSION=0.21.14
RUN rustup target add wasm32-unknown-unknown
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo install wasm-bindgen-cli --version "${WASM_BINDGEN_VERSION}" \
 && cargo install trunk --version "${TRUNK_VERSION}" --locked

FROM node:22-${DEBIAN_RELEASE}-slim AS node-tools
ARG BINARYEN_VERSION=132
RUN npm install --prefix /opt/node-tools --no-audit --no-fund "binaryen@${BINARYEN_VERSION}"

# ---- Build ---------------------------------------------------------------------------------------------
FROM tools AS build
COPY --from=node-tools /usr/local/bin/node /usr/local/bin/node
COPY --from=node-tools /opt/node-tools /opt/node-tools
ENV PATH=/opt/node-tools/node_modules/.bin:$PATH
WORKDIR /src
COPY . .
# Trunk runs cargo offline (Trunk.toml), so the crates are fetched first. Trunk builds only the browser
# bundle (feature `hydrate`, wasm32) into target/site; the server is a separate cargo invocation, so the
# `ssr` and `hydrate` features of `app` never meet. target/ is a cache across builds, so the results are
# copied out within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo fetch --locked \
 && trunk build --release \
 && cargo build --release --locked -p server --bin zimage \
 && mkdir -p /out \
 && cp target/release/zimage /out/zimage \
 && cp -r target/site /out/site

# ---- Runtime -------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim

ARG UID=1000
ARG GID=1000

# busybox: a `wget` for the health check; ca-certificates: for HTTPS to a hub mirror with its own roots.
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd -o --gid "$GID" zimage \
 && useradd -o --uid "$UID" --gid "$GID" --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin zimage

COPY --from=build /out/zimage /usr/local/bin/zimage
COPY --from=build /out/site /app/site
COPY backend/workflows /app/backend/workflows
COPY backend/models.toml /app/backend/models.toml

# Mount points owned by the user, so that fresh named volumes start out writable for it.
RUN mkdir -p /data /models/diffusion_models /models/text_encoders /models/vae \
 && chown -R "$UID:$GID" /data /models

WORKDIR /app
ENV ZIMAGE_LISTEN=0.0.0.0:7860 \
    ZIMAGE_DATA_DIR=/data \
    ZIMAGE_SITE_ROOT=/app/site \
    ZIMAGE_WORKFLOW=/app/backend/workflows/z_image_turbo.json \
    ZIMAGE_MODELS_MANIFEST=/app/backend/models.toml \
    ZIMAGE_MODELS_DIR=/models \
    RUST_LOG=info

USER ${UID}:${GID}
EXPOSE 7860

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:7860/healthz"]

ENTRYPOINT ["/usr/local/bin/zimage"]
CMD ["serve"]
