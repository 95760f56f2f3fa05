//! Measurement 6, the web bundle: its sizes (raw and gzipped, as the gateway sends them), and time to
//! first render and to hydration of the studio page in headless Chromium with a phone profile and a
//! slowed-down CPU (`web/page-load.mjs`), beside the same page loaded without JavaScript.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::stats::median;

/// Sizes of the bundle's files.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BundleSizes {
    pub(crate) wasm_bytes: u64,
    pub(crate) wasm_gzip_bytes: u64,
    pub(crate) js_bytes: u64,
    pub(crate) js_gzip_bytes: u64,
    pub(crate) css_gzip_bytes: Option<u64>,
    /// wasm + JS, gzipped: what a phone downloads before the page can hydrate.
    pub(crate) total_gzip_bytes: u64,
}

/// Page-load medians.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PageLoadReport {
    pub(crate) runs: usize,
    pub(crate) device: String,
    pub(crate) cpu_slowdown: f64,
    pub(crate) first_contentful_paint_ms: f64,
    pub(crate) hydrated_ms: f64,
    pub(crate) load_ms: f64,
    pub(crate) network_bytes: f64,
    /// The same page without JavaScript: first paint from the server's HTML alone.
    pub(crate) without_js_first_contentful_paint_ms: f64,
    pub(crate) without_js_network_bytes: f64,
}

/// Sizes of the bundle under `pkg`; `None` when it has not been built. Trunk names the files after
/// the bundle's crate (`filehash = false`): `<name>_bg.wasm` and `<name>.js`.
pub(crate) fn sizes(pkg: &Path) -> anyhow::Result<Option<BundleSizes>> {
    let Ok(entries) = std::fs::read_dir(pkg) else {
        return Ok(None);
    };
    let files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|entry| entry.path()).collect();
    let Some(wasm) = files
        .iter()
        .find(|path| path.to_string_lossy().ends_with("_bg.wasm"))
    else {
        return Ok(None);
    };
    let js = PathBuf::from(wasm.to_string_lossy().replace("_bg.wasm", ".js"));
    if !js.is_file() {
        return Ok(None);
    }
    let css = files
        .iter()
        .find(|path| path.extension().is_some_and(|extension| extension == "css"));
    let wasm_gzip_bytes = gzip_size(wasm)?;
    let js_gzip_bytes = gzip_size(&js)?;
    Ok(Some(BundleSizes {
        wasm_bytes: std::fs::metadata(wasm)?.len(),
        wasm_gzip_bytes,
        js_bytes: std::fs::metadata(&js)?.len(),
        js_gzip_bytes,
        css_gzip_bytes: css.map(|css| gzip_size(css)).transpose()?,
        total_gzip_bytes: wasm_gzip_bytes + js_gzip_bytes,
    }))
}

/// The size the gateway sends a browser that accepts gzip: the precompressed `.gz` sibling the build
/// writes, or `gzip -9 -n` of the file when there is none.
pub(crate) fn gzip_size(file: &Path) -> anyhow::Result<u64> {
    let mut sibling = file.as_os_str().to_owned();
    sibling.push(".gz");
    let sibling = PathBuf::from(sibling);
    if sibling.is_file() {
        return Ok(std::fs::metadata(&sibling)?.len());
    }
    let output = std::process::Command::new("gzip")
        .arg("-9")
        .arg("-n")
        .arg("-c")
        .arg(file)
        .output()
        .context("cannot run gzip")?;
    if !output.status.success() {
        bail!("gzip failed on {}", file.display());
    }
    Ok(output.stdout.len() as u64)
}

#[derive(Deserialize)]
struct PageLoads {
    profile: Profile,
    with_js: Vec<PageLoad>,
    without_js: Vec<PageLoad>,
}

#[derive(Deserialize)]
struct Profile {
    device: String,
    cpu_slowdown: f64,
}

#[derive(Deserialize)]
struct PageLoad {
    first_contentful_paint_ms: f64,
    hydrated_ms: Option<f64>,
    load_ms: f64,
    network_bytes: f64,
}

/// Runs the page-load script against `url`.
pub(crate) async fn page_load(
    script: &Path,
    url: &str,
    runs: usize,
    slowdown: u32,
) -> anyhow::Result<PageLoadReport> {
    let mut command = std::process::Command::new("node");
    command
        .arg(script)
        .arg(url)
        .arg(runs.to_string())
        .arg(slowdown.to_string());
    let output = crate::run_program(command).await.context("cannot run node")?;
    if !output.status.success() {
        bail!(
            "the page-load script failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_page_loads(&String::from_utf8_lossy(&output.stdout))
}

fn parse_page_loads(text: &str) -> anyhow::Result<PageLoadReport> {
    let line = text
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .context("no result from the page-load script")?;
    let loads: PageLoads = serde_json::from_str(line)?;
    let pick = |loads: &[PageLoad], field: fn(&PageLoad) -> f64| {
        median(&loads.iter().map(field).collect::<Vec<_>>())
    };
    Ok(PageLoadReport {
        runs: loads.with_js.len(),
        device: loads.profile.device,
        cpu_slowdown: loads.profile.cpu_slowdown,
        first_contentful_paint_ms: pick(&loads.with_js, |load| load.first_contentful_paint_ms),
        hydrated_ms: pick(&loads.with_js, |load| load.hydrated_ms.unwrap_or(f64::NAN)),
        load_ms: pick(&loads.with_js, |load| load.load_ms),
        network_bytes: pick(&loads.with_js, |load| load.network_bytes),
        without_js_first_contentful_paint_ms: pick(&loads.without_js, |load| load.first_contentful_paint_ms),
        without_js_network_bytes: pick(&loads.without_js, |load| load.network_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_precompressed_sibling_is_the_size_sent() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app.js");
        std::fs::write(&file, "x".repeat(10_000)).unwrap();
        let computed = gzip_size(&file).unwrap();
        assert!(computed > 0 && computed < 200, "{computed}");
        std::fs::write(dir.path().join("app.js.gz"), [0_u8; 77]).unwrap();
        assert_eq!(gzip_size(&file).unwrap(), 77);
    }

    #[test]
    fn page_loads_are_summarised_by_their_medians() {
        let output = r#"some log line
{"profile":{"device":"Pixel 7","cpu_slowdown":4,"network":{}},"with_js":[{"first_contentful_paint_ms":100,"hydrated_ms":300,"load_ms":250,"network_bytes":1000},{"first_contentful_paint_ms":120,"hydrated_ms":340,"load_ms":260,"network_bytes":1000},{"first_contentful_paint_ms":110,"hydrated_ms":310,"load_ms":255,"network_bytes":1000}],"without_js":[{"first_contentful_paint_ms":90,"hydrated_ms":null,"load_ms":95,"network_bytes":400}]}"#;
        let report = parse_page_loads(output).unwrap();
        assert_eq!(report.runs, 3);
        assert_eq!(report.first_contentful_paint_ms, 110.0);
        assert_eq!(report.hydrated_ms, 310.0);
        assert_eq!(report.without_js_first_contentful_paint_ms, 90.0);
    }

    #[test]
    fn an_unbuilt_bundle_has_no_sizes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(sizes(dir.path()).unwrap().is_none());
        assert!(sizes(&dir.path().join("missing")).unwrap().is_none());
    }

    #[test]
    fn the_bundle_is_found_by_its_wasm_file_whatever_the_crate_is_called() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hydrate_bg.wasm"), vec![7_u8; 5000]).unwrap();
        std::fs::write(dir.path().join("hydrate.js"), "export default 1;").unwrap();
        std::fs::write(dir.path().join("main.css"), "body{}").unwrap();
        let sizes = sizes(dir.path()).unwrap().unwrap();
        assert_eq!((sizes.wasm_bytes, sizes.js_bytes), (5000, 17));
        assert_eq!(
            sizes.total_gzip_bytes,
            sizes.wasm_gzip_bytes + sizes.js_gzip_bytes
        );
        assert!(sizes.css_gzip_bytes.is_some());
    }
}
