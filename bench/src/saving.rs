//! Measurement 8: what keeping a finished image durably costs per job. The job engine announces
//! `completed` only after `zimage::storage::save` has put the PNG and its history record on the disk
//! (written, flushed, renamed, folder flushed), so that time is added to every job. Measured against the
//! same bytes written to the same folder the same way (temporary, rename) without any flush, alternating
//! the two so drift in the machine's load hits both alike.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use serde::Serialize;
use zimage::history::{History, HistoryRecord};
use zimage::images::ImageStore;
use zimage::job_id::JobId;

use crate::stats::{Summary, percentile};

/// The time of one image on the studio's GPU (an RTX 3060 makes a 1024x1024 image in about 3 s): what
/// the cost of saving is a share of.
pub(crate) const IMAGE_SECONDS: f64 = 3.0;
/// The target: saving costs under 1 % of an image's time (median).
pub(crate) const SHARE_TARGET_PERCENT: f64 = 1.0;

const SIDE: u32 = 1024;
const WARMUP: usize = 3;

/// The numbers of the measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SavingReport {
    pub(crate) saves: usize,
    pub(crate) png_bytes: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// The file system of the folder written to (as `df` names it): on a tmpfs a flush costs nothing.
    pub(crate) filesystem: String,
    /// `storage::save`: PNG and record, each flushed, renamed, and its folder flushed.
    pub(crate) durable: Summary,
    pub(crate) durable_p95_ms: f64,
    /// The same bytes to the same kind of names, renamed, never flushed.
    pub(crate) baseline: Summary,
    pub(crate) baseline_p95_ms: f64,
    /// Median of `durable` minus median of `baseline`.
    pub(crate) added_median_ms: f64,
    /// Median of `durable` as a share of a 3 s image, in percent.
    pub(crate) share_percent: f64,
}

/// Times `saves` durable saves and as many baseline writes of a 1024x1024 PNG in a fresh folder under
/// `parent` (the system's temporary folder when `None`).
pub(crate) async fn measure(saves: usize, parent: Option<&Path>) -> anyhow::Result<SavingReport> {
    let folder = match parent {
        Some(parent) => tempfile::Builder::new()
            .prefix("zimage-bench-saving")
            .tempdir_in(parent)?,
        None => tempfile::Builder::new().prefix("zimage-bench-saving").tempdir()?,
    };
    let images = ImageStore::open(&folder.path().join("images")).await?;
    let history = History::open(folder.path()).await?;
    let baseline_dir = folder.path().join("baseline");
    std::fs::create_dir_all(&baseline_dir)?;
    let png = tokio::task::spawn_blocking(photo_like_png).await??;

    let mut durable = Vec::with_capacity(saves);
    let mut baseline = Vec::with_capacity(saves);
    for round in 0..WARMUP + saves {
        // ABBA: each pair in turn order, so neither always runs right after the other's writes.
        let durable_first = round % 2 == 0;
        let mut timed = [Duration::ZERO; 2];
        for which in if durable_first { [0, 1] } else { [1, 0] } {
            let record = record(JobId::new(), SIDE);
            timed[which] = if which == 0 {
                time_durable(&images, &history, record, png.clone()).await?
            } else {
                time_baseline(&baseline_dir, record, png.clone()).await?
            };
        }
        if round >= WARMUP {
            durable.push(timed[0]);
            baseline.push(timed[1]);
        }
    }
    let millis = |sample: &[Duration]| {
        let mut sorted: Vec<f64> = sample
            .iter()
            .map(|duration| duration.as_secs_f64() * 1e3)
            .collect();
        sorted.sort_by(f64::total_cmp);
        sorted
    };
    let (durable_ms, baseline_ms) = (millis(&durable), millis(&baseline));
    let durable = Summary::of(&durable).context("no saves were measured")?;
    let baseline = Summary::of(&baseline).context("no saves were measured")?;
    Ok(SavingReport {
        saves,
        png_bytes: png.len(),
        width: SIDE,
        height: SIDE,
        filesystem: filesystem(folder.path()),
        durable,
        durable_p95_ms: percentile(&durable_ms, 95.0),
        baseline,
        baseline_p95_ms: percentile(&baseline_ms, 95.0),
        added_median_ms: durable.median_ms - baseline.median_ms,
        share_percent: durable.median_ms / (IMAGE_SECONDS * 1e3) * 100.0,
    })
}

/// One `storage::save`, timed; the files are removed afterwards, untimed, so the folder stays small.
async fn time_durable(
    images: &ImageStore,
    history: &History,
    record: HistoryRecord,
    png: Bytes,
) -> anyhow::Result<Duration> {
    let id = record.id;
    let start = Instant::now();
    zimage::storage::save(images, history, record, png).await?;
    let elapsed = start.elapsed();
    history.remove(id).await?;
    images.remove(id).await?;
    Ok(elapsed)
}

/// The baseline: the same PNG and record JSON written to temporaries and renamed into place, with no
/// flush, in one hand-off to the blocking pool.
async fn time_baseline(dir: &Path, record: HistoryRecord, png: Bytes) -> anyhow::Result<Duration> {
    let dir = dir.to_owned();
    let json = serde_json::to_vec_pretty(&record)?;
    let id = record.id;
    let start = Instant::now();
    let (image, record_file) = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let image = dir.join(format!("{id}.png"));
        let record_file = dir.join(format!("{id}.json"));
        for (path, bytes) in [(&image, &png[..]), (&record_file, &json[..])] {
            let temporary = dir.join(format!(".{id}.tmp"));
            std::fs::write(&temporary, bytes)?;
            std::fs::rename(&temporary, path)?;
        }
        Ok((image, record_file))
    })
    .await??;
    let elapsed = start.elapsed();
    std::fs::remove_file(image)?;
    std::fs::remove_file(record_file)?;
    Ok(elapsed)
}

fn record(id: JobId, side: u32) -> HistoryRecord {
    HistoryRecord {
        id,
        owner: None,
        prompt: "a red fox in fresh snow, morning light, telephoto, shallow depth of field".to_owned(),
        seed: 42,
        width: side,
        height: side,
        timings: zimage_contract::Timings {
            queued_at: 1,
            started_at: Some(2),
            finished_at: Some(3_000),
        },
        elapsed_ms: 3_000,
        backend: None,
        source: None,
        loras: Vec::new(),
    }
}

/// A 1024x1024 PNG about as large as a photograph-like image from ComfyUI (1.5 to 2.5 MiB): soft
/// gradients with fine grain, which PNG's filters cannot squeeze away (the simulator's own images are
/// plain gradients of a few tens of KiB, which would flatter the flush).
pub(crate) fn photo_like_png() -> anyhow::Result<Bytes> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let image = image::RgbImage::from_fn(SIDE, SIDE, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [r, g, b, ..] = state.to_le_bytes();
        let grain = |noise: u8, base: u32| {
            let base = u8::try_from(base.min(255)).unwrap_or(u8::MAX);
            base.saturating_add(noise & 0x1f).saturating_sub(16)
        };
        image::Rgb([grain(r, x / 4), grain(g, y / 4), grain(b, (x + y) / 8)])
    });
    let mut bytes = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    Ok(Bytes::from(bytes))
}

/// The file system type of `dir`, as `df` names it ("ext4", "tmpfs", "overlay"...).
pub(crate) fn filesystem(dir: &Path) -> String {
    std::process::Command::new("df")
        .args(["--output=fstype"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .nth(1)
                .map(|line| line.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_image_is_a_real_png_the_size_of_a_photograph() {
        let png = photo_like_png().unwrap();
        assert_eq!(zimage::images::png_size(&png).unwrap(), (SIDE, SIDE));
        let mib = png.len() as f64 / (1024.0 * 1024.0);
        assert!((1.0..4.0).contains(&mib), "{mib:.2} MiB");
    }

    #[tokio::test]
    async fn a_quick_measurement_saves_for_real_and_leaves_nothing() {
        let parent = tempfile::tempdir().unwrap();
        let report = measure(2, Some(parent.path())).await.unwrap();
        assert_eq!((report.durable.count, report.baseline.count), (2, 2));
        assert!(report.durable.median_ms > 0.0 && report.share_percent > 0.0);
        // The measurement's folder is gone with everything in it.
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}
