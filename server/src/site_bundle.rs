//! Whether the site folder holds the built web UI: the page the gateway renders loads its script,
//! WebAssembly and stylesheet from `<site root>/pkg`, which only `trunk build` makes. Without them the
//! page shows but every click is dead and every style missing, with nothing in the log; so `zimage
//! serve` refuses to start (`main.rs`, unless `--allow-missing-bundle`) and the library says it loudly.

use std::path::{Path, PathBuf};

/// The files of the bundle the rendered pages ask for, under the site root (see `routes::site` and
/// `app::shell::STYLESHEET`).
pub const BUNDLE_FILES: [&str; 3] = ["pkg/hydrate.js", "pkg/hydrate_bg.wasm", "pkg/main.css"];

/// The bundle's files that are not in `site_root`.
pub fn missing(site_root: &Path) -> Vec<PathBuf> {
    BUNDLE_FILES
        .iter()
        .map(|file| site_root.join(file))
        .filter(|path| !path.is_file())
        .collect()
}

/// The web UI is not built.
#[derive(Debug, thiserror::Error)]
#[error(
    "the web UI is not built: {} is missing. Build it with `trunk build --release` (scripts/setup-tools \
     installs Trunk), or try the studio with `scripts/demo`, which does both; --allow-missing-bundle \
     (ZIMAGE_ALLOW_MISSING_BUNDLE=true) starts without it, with a working API and a dead page.",
    list(.missing)
)]
pub struct BundleMissing {
    pub missing: Vec<PathBuf>,
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Err` when the bundle is incomplete and that is not allowed.
pub fn check(site_root: &Path, allow_missing: bool) -> Result<(), BundleMissing> {
    let missing = missing(site_root);
    if missing.is_empty() || allow_missing {
        Ok(())
    } else {
        Err(BundleMissing { missing })
    }
}

/// Logs an error when the bundle is incomplete: the gateway runs, its page will not work.
pub fn warn_if_missing(site_root: &Path) {
    let missing = missing(site_root);
    if !missing.is_empty() {
        tracing::error!("{}", BundleMissing { missing });
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test unwraps: a failure there is the test failing"
    )]

    use super::*;

    #[test]
    fn a_site_folder_without_the_bundle_is_refused_by_name_unless_allowed() {
        let site = tempfile::tempdir().unwrap();
        let error = check(site.path(), false).unwrap_err();
        assert_eq!(error.missing.len(), 3);
        let sentence = error.to_string();
        assert!(sentence.contains("pkg/hydrate_bg.wasm"), "{sentence}");
        assert!(sentence.contains("scripts/demo"), "{sentence}");
        assert!(check(site.path(), true).is_ok());

        std::fs::create_dir(site.path().join("pkg")).unwrap();
        for file in BUNDLE_FILES {
            std::fs::write(site.path().join(file), b"x").unwrap();
        }
        assert!(check(site.path(), false).is_ok());
        std::fs::remove_file(site.path().join("pkg/main.css")).unwrap();
        let error = check(site.path(), false).unwrap_err();
        assert_eq!(error.missing, vec![site.path().join("pkg/main.css")]);
    }
}
