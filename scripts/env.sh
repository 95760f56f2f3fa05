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

ZIMAGE_CACHE_DIR="${ZIMAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/z-image-local}"
# One folder per tool and pinned version: a version bump installs beside the old one, never over it.
WASM_BINDGEN_HOME="$ZIMAGE_CACHE_DIR/tools/wasm-bindgen-$WASM_BINDGEN_VERSION"
TRUNK_HOME="$ZIMAGE_CACHE_DIR/tools/trunk-$TRUNK_VERSION"
BINARYEN_HOME="$ZIMAGE_CACHE_DIR/tools/binaryen-$BINARYEN_VERSION"
export PATH="$WASM_BINDGEN_HOME/bin:$TRUNK_HOME/bin:$BINARYEN_HOME/node_modules/.bin:$PATH"

# Cargo's build-dir (stable since cargo 1.91) holds the intermediate artifacts; the final binaries and the
# web bundle stay in the clone's ./target, so clones never hand each other their results. Sharing it is
# safe the way sharing a target folder is: every unit's fingerprint covers the rustc version, its
# crate's version and source, features and flags, so a change in Cargo.lock or the toolchain rebuilds
# exactly what it touches, and a clone's own crates are keyed by their path. The folder is still keyed by
# the toolchain, so that a new toolchain starts clean instead of piling onto the old one's artifacts.
if [ "${ZIMAGE_SHARED_BUILD:-1}" != 0 ] && [ -z "${CARGO_BUILD_BUILD_DIR:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
  toolchain_key=$(rustc -vV | sha256sum | cut -c1-12)
  export CARGO_BUILD_BUILD_DIR="$ZIMAGE_CACHE_DIR/build/rustc-$toolchain_key"
  # Each clone adds its own workspace crates (about 1.5 GB): past the cap the folder starts over rather
  # than filling the disk. Older toolchains' folders are removed outright.
  cap_gb="${ZIMAGE_BUILD_CACHE_MAX_GB:-40}"
  if [ -d "$CARGO_BUILD_BUILD_DIR" ] &&
    [ "$(du -s --block-size=1G "$CARGO_BUILD_BUILD_DIR" | cut -f1)" -gt "$cap_gb" ]; then
    printf '    shared build folder over %s GB: starting it over\n' "$cap_gb"
    rm -rf "$CARGO_BUILD_BUILD_DIR"
  fi
  for old in "$ZIMAGE_CACHE_DIR"/build/rustc-*; do
    if [ -d "$old" ] && [ "$old" != "$CARGO_BUILD_BUILD_DIR" ]; then rm -rf "$old"; fi
  done
  unset toolchain_key cap_gb old
fi
