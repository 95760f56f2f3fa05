# shellcheck shell=bash
# Sourced by the scripts, never run: where the pinned tools and the shared compile cache live, so that a
# second clone on the same machine (CI clones afresh for every run) installs and compiles nothing again.
#
#   ZIMAGE_CACHE_DIR   the cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/z-image-local)
#   CARGO_BUILD_BUILD_DIR
#                      cargo's intermediate artifacts (default: the cache root's build/<toolchain>);
#                      set it, or CARGO_TARGET_DIR, to build elsewhere. ZIMAGE_SHARED_BUILD=0 turns the
#                      shared folder off (everything stays in ./target, as plain cargo does).

# Keep these in step with Cargo.toml (`wasm-bindgen = "=0.2.130"`) and Trunk.toml `[tools]`.
WASM_BINDGEN_VERSION=0.2.130
TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
# OpenAI's Python SDK, which the browser tests run against the studio (end2end/sdk/openai_sdk.py).
OPENAI_PYTHON_VERSION=3.51.0

# Without a home folder (some CI runners), the cache lives in the clone, as it used to.
ZIMAGE_CACHE_DIR="${ZIMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-$PWD/.tools}/.cache}/z-image-local}"
# One folder per tool and pinned version: a version bump installs beside the old one, never over it.
WASM_BINDGEN_HOME="$ZIMAGE_CACHE_DIR/tools/wasm-bindgen-$WASM_BINDGEN_VERSION"
TRUNK_HOME="$ZIMAGE_CACHE_DIR/tools/trunk-$TRUNK_VERSION"
BINARYEN_HOME="$ZIMAGE_CACHE_DIR/tools/binaryen-$BINARYEN_VERSION"
OPENAI_PYTHON_HOME="$ZIMAGE_CACHE_DIR/tools/openai-python-$OPENAI_PYTHON_VERSION"
export PATH="$WASM_BINDGEN_HOME/bin:$TRUNK_HOME/bin:$BINARYEN_HOME/node_modules/.bin:$PATH"

# Cargo's build-dir (stable since cargo 1.91) holds the intermediate artifacts; the final binaries and the
# web bundle stay in the clone's ./target. Dependencies are shared safely between clones: a registry
# crate's artifacts are keyed by its version, features, flags and the rustc version, so a change in
# Cargo.lock or the toolchain rebuilds exactly what it touches. The workspace's own crates are another
# matter: cargo keys them by their path relative to the workspace, so every clone's `server` lands in the
# same slot, and decides freshness by file times alone. Two guards keep a clone from ever using another's
# build of them: one run at a time holds the shared folder (a lock, waited for), and a run first marks its
# own files as newer than anything built before it (`touch`), so its crates are always rebuilt from its
# own sources. The folder is keyed by the toolchain, so a new toolchain starts clean.
if [ "${ZIMAGE_SHARED_BUILD:-1}" != 0 ] && [ -z "${CARGO_BUILD_BUILD_DIR:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  toolchain_key=$(rustc -vV | sha256sum | cut -c1-12)
  export CARGO_BUILD_BUILD_DIR="$ZIMAGE_CACHE_DIR/build/rustc-$toolchain_key"
  unset toolchain_key
fi
if [ -n "${CARGO_BUILD_BUILD_DIR:-}" ] && [ "${CARGO_BUILD_BUILD_DIR#"$ZIMAGE_CACHE_DIR"/build/}" != "$CARGO_BUILD_BUILD_DIR" ] &&
  [ -z "${ZIMAGE_BUILD_LOCK_HELD:-}" ]; then
  mkdir -p "$ZIMAGE_CACHE_DIR/build"
  # Held until this script (and the scripts it runs, which inherit it) ends.
  exec 9>"$ZIMAGE_CACHE_DIR/build/lock"
  if ! flock -n 9; then
    printf '    another run is using the shared build folder; waiting for it\n'
    flock 9
  fi
  export ZIMAGE_BUILD_LOCK_HELD=1
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z | xargs -0 touch -c --
  fi
  # Every clone's crates share one slot, but each change of Cargo.lock leaves the old versions' artifacts
  # behind: past the cap the folder starts over rather than filling the disk. Older toolchains' folders
  # are removed outright.
  cap_gb="${ZIMAGE_BUILD_CACHE_MAX_GB:-40}"
  if [ -d "$CARGO_BUILD_BUILD_DIR" ] &&
    [ "$(du -s --block-size=1G "$CARGO_BUILD_BUILD_DIR" | cut -f1)" -gt "$cap_gb" ]; then
    printf '    shared build folder over %s GB: starting it over\n' "$cap_gb"
    rm -rf "$CARGO_BUILD_BUILD_DIR"
  fi
  for old in "$ZIMAGE_CACHE_DIR"/build/rustc-*; do
    if [ -d "$old" ] && [ "$old" != "$CARGO_BUILD_BUILD_DIR" ]; then rm -rf "$old"; fi
  done
  unset cap_gb old
fi
