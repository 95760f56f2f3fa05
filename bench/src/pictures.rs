//! Measurement 13, taking a phone photo: what the gateway spends on a 12-megapixel JPEG (4032x3024, a
//! few MB, turned by its EXIF orientation as a phone held upright writes it) that a job starts from.
//! Through the release gateway (pinned to one core by `scripts/bench`): `POST /api/pictures` (decode,
//! orient, scale, encode, store) timed to its answer, and the hand-over's share (the kept PNG read,
//! hashed and uploaded to ComfyUI's `/upload/image`) as the paired difference between a job that
//! starts from the picture and a text-only job of the same size, run beside it in the same rounds.
//! Then, on a fresh gateway, the peak resident memory while ten different photos arrive at once. In
//! process, where the time of one upload goes (decode, scale, turn, PNG encode), for profiling.

use std::io::Cursor;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bytes::Bytes;
use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::{DynamicImage, ImageDecoder as _, ImageEncoder as _};
use serde::Serialize;
use zimage_contract::{CreateJobRequest, PictureUploaded, SourceRequest};

use crate::gateway::{Gateway, GatewaySpec};
use crate::overhead::{GatewayClient, PROMPT};
use crate::stats::{Summary, median};

/// The photo's pixels as the phone's sensor stores them (landscape); its EXIF says to turn it upright.
pub(crate) const PHOTO_WIDTH: u32 = 4032;
pub(crate) const PHOTO_HEIGHT: u32 = 3024;
/// The clean picture the gateway keeps: upright, 1024 on the longer side.
const CLEAN_SIZE: (u32, u32) = (768, 1024);
/// The target for the whole cost of taking one photo (median, one core).
pub(crate) const TAKING_TARGET_MS: f64 = 300.0;
const WARMUP: usize = 2;

/// The numbers of measurement 13.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PicturesReport {
    pub(crate) photo_bytes: usize,
    pub(crate) photo_width: u32,
    pub(crate) photo_height: u32,
    pub(crate) clean_width: u32,
    pub(crate) clean_height: u32,
    pub(crate) clean_png_bytes: usize,
    pub(crate) rounds: usize,
    /// `POST /api/pictures` of the photo until its 201 is read (a new picture each time: the kept
    /// file is removed between rounds, so every upload is stored).
    pub(crate) upload: Summary,
    /// A text-only job of the clean picture's size: submit, events until `completed`, the image.
    pub(crate) text_job: Summary,
    /// The same job starting from the picture (strength 0.6).
    pub(crate) source_job: Summary,
    /// Median of the per-round differences, source job minus text job: the hand-over's share.
    pub(crate) handover_added_median_ms: f64,
    /// Upload median plus the hand-over's: the whole cost of taking a photo.
    pub(crate) taking_median_ms: f64,
    /// Ten photos at once on a fresh gateway.
    pub(crate) burst: BurstReport,
    /// In process, one thread: where one upload's time goes.
    pub(crate) stages: Stages,
}

/// Several different photos sent at the same moment.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BurstReport {
    pub(crate) uploads: usize,
    /// The gateway's resident memory before, after one text job.
    pub(crate) rss_before_kib: u64,
    /// The gateway's peak resident memory (`VmHWM`) once all were answered.
    pub(crate) rss_peak_kib: u64,
    /// From the first request sent to the last answer read.
    pub(crate) wall_ms: f64,
}

/// Medians of the steps of cleaning one photo, in process, with the `image` crate as the gateway uses
/// it (`zimage::pictures::fit` for the scale).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Stages {
    pub(crate) runs: usize,
    /// JPEG to 12 megapixels of RGB, the EXIF orientation read.
    pub(crate) decode: Summary,
    /// Area-averaged to the clean size (still as stored), as `pictures::fit` does it.
    pub(crate) scale: Summary,
    /// The small result turned upright.
    pub(crate) turn: Summary,
    /// PNG, `Fast` compression with adaptive filters (what the gateway writes).
    pub(crate) encode_fast: Summary,
    /// PNG at the `Default` level, for comparison.
    pub(crate) encode_default: Summary,
    pub(crate) png_fast_bytes: usize,
    pub(crate) png_default_bytes: usize,
}

/// A phone-like photo: a sky gradient, hills, fine texture and sensor grain (so its JPEG is several
/// MB, as a 12-megapixel phone photo is), encoded at quality 90 with an EXIF orientation of 6 ("turn
/// 90 degrees clockwise to view"). `variant` changes every pixel, so variants are different pictures.
pub(crate) fn phone_jpeg(variant: u64) -> anyhow::Result<Bytes> {
    let mut state = 0x2545_F491_4F6C_DD1D_u64 ^ variant.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let shift = (variant % 97) as f32;
    let image = image::RgbImage::from_fn(PHOTO_WIDTH, PHOTO_HEIGHT, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let [r, g, b, fine, ..] = state.to_le_bytes();
        let (fx, fy) = (x as f32, y as f32);
        let horizon = 1500.0 + 220.0 * ((fx + shift * 40.0) / 610.0).sin() + 90.0 * (fx / 137.0).cos();
        let base = if fy < horizon {
            // Sky: blue, lighter towards the horizon.
            let t = fy / horizon;
            [90.0 + 120.0 * t, 140.0 + 90.0 * t, 220.0 + 20.0 * t]
        } else {
            // Hills: greens and browns with a texture of grass.
            let texture = 18.0 * ((fx / 3.1).sin() * (fy / 2.7).cos()) + f32::from(fine % 24);
            [70.0 + texture, 110.0 + texture * 0.8, 50.0 + texture * 0.5]
        };
        let grain = |noise: u8| f32::from(noise % 21) - 10.0;
        let channel = |value: f32| value.clamp(0.0, 255.0) as u8;
        image::Rgb([
            channel(base[0] + grain(r)),
            channel(base[1] + grain(g)),
            channel(base[2] + grain(b)),
        ])
    });
    let mut jpeg = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut jpeg, 90);
    encoder
        .set_exif_metadata(exif_orientation(6))
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    encoder.write_image(
        image.as_raw(),
        PHOTO_WIDTH,
        PHOTO_HEIGHT,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(Bytes::from(jpeg))
}

/// A TIFF-structured EXIF block (big-endian) holding only the orientation tag (0x0112, a SHORT).
fn exif_orientation(orientation: u16) -> Vec<u8> {
    let mut exif = Vec::with_capacity(26);
    exif.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // byte order, magic, IFD0 at offset 8
    exif.extend_from_slice(&1_u16.to_be_bytes()); // one entry
    exif.extend_from_slice(&0x0112_u16.to_be_bytes());
    exif.extend_from_slice(&3_u16.to_be_bytes()); // SHORT
    exif.extend_from_slice(&1_u32.to_be_bytes()); // one value
    exif.extend_from_slice(&orientation.to_be_bytes());
    exif.extend_from_slice(&[0, 0]); // padding of the value field
    exif.extend_from_slice(&0_u32.to_be_bytes()); // no next IFD
    exif
}

/// Runs measurement 13 on gateways started from `spec`: `rounds` recorded rounds after a warm-up, then
/// `burst` different photos at once on a fresh gateway.
pub(crate) async fn measure(
    spec: &GatewaySpec,
    rounds: usize,
    burst: usize,
    mut next_seed: impl FnMut() -> u64,
) -> anyhow::Result<PicturesReport> {
    let burst = burst.max(1);
    let photos = tokio::task::spawn_blocking(move || {
        (0..burst as u64)
            .map(phone_jpeg)
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    let photo = photos[0].clone();
    println!(
        "   the photo: {PHOTO_WIDTH}x{PHOTO_HEIGHT} JPEG, {:.2} MiB (EXIF orientation 6)",
        photo.len() as f64 / (1024.0 * 1024.0)
    );

    let gateway = Gateway::start(spec).await?;
    gateway.wait_ready().await?;
    let client = GatewayClient::new(gateway.addr);
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    let mut uploads = Vec::with_capacity(rounds);
    let mut text_jobs = Vec::with_capacity(rounds);
    let mut source_jobs = Vec::with_capacity(rounds);
    let mut clean_png_bytes = 0;
    for round in 0..WARMUP + rounds {
        let (uploaded, upload_time) = upload(&http, gateway.addr, photo.clone()).await?;
        ensure!(
            (uploaded.width, uploaded.height) == CLEAN_SIZE,
            "the gateway kept a {}x{} picture where {}x{} (upright) was expected",
            uploaded.width,
            uploaded.height,
            CLEAN_SIZE.0,
            CLEAN_SIZE.1
        );
        let text = CreateJobRequest {
            prompt: PROMPT.to_owned(),
            seed: Some(next_seed()),
            width: Some(CLEAN_SIZE.0),
            height: Some(CLEAN_SIZE.1),
            ..CreateJobRequest::default()
        };
        // No size: the job has the picture's.
        let from_picture = CreateJobRequest {
            prompt: PROMPT.to_owned(),
            seed: Some(next_seed()),
            source: Some(SourceRequest {
                picture: uploaded.id.clone(),
                strength: Some(0.6),
                mask: None,
            }),
            ..CreateJobRequest::default()
        };
        // ABBA: neither job always runs right after the upload.
        let (text_time, source_time) = if round % 2 == 0 {
            let text_time = client.run_request(&text).await?.total;
            (text_time, client.run_request(&from_picture).await?.total)
        } else {
            let source_time = client.run_request(&from_picture).await?.total;
            (client.run_request(&text).await?.total, source_time)
        };
        let kept = gateway
            .data_path()
            .join("pictures")
            .join(format!("{}.png", uploaded.id));
        clean_png_bytes = std::fs::metadata(&kept)
            .with_context(|| format!("the gateway did not keep {}", kept.display()))?
            .len() as usize;
        // The next round's upload is a new picture to the gateway again: decoded, encoded and stored.
        std::fs::remove_file(&kept)?;
        if round >= WARMUP {
            uploads.push(upload_time);
            text_jobs.push(text_time);
            source_jobs.push(source_time);
        }
    }
    gateway.stop().await;
    let differences: Vec<f64> = source_jobs
        .iter()
        .zip(&text_jobs)
        .map(|(source, text)| millis(*source) - millis(*text))
        .collect();
    let upload = Summary::of(&uploads).context("no uploads measured")?;
    let handover_added_median_ms = median(&differences);

    let burst_report = measure_burst(spec, next_seed(), photos).await?;
    let photo_bytes = photo.len();
    let stages = tokio::task::spawn_blocking(move || stages(&photo, rounds.clamp(3, 10))).await??;
    Ok(PicturesReport {
        photo_bytes,
        photo_width: PHOTO_WIDTH,
        photo_height: PHOTO_HEIGHT,
        clean_width: CLEAN_SIZE.0,
        clean_height: CLEAN_SIZE.1,
        clean_png_bytes,
        rounds,
        upload,
        text_job: Summary::of(&text_jobs).context("no jobs measured")?,
        source_job: Summary::of(&source_jobs).context("no jobs measured")?,
        handover_added_median_ms,
        taking_median_ms: upload.median_ms + handover_added_median_ms,
        burst: burst_report,
        stages,
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// `POST /api/pictures` with `photo` as the body: the answer and the time until it was read.
async fn upload(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    photo: Bytes,
) -> anyhow::Result<(PictureUploaded, Duration)> {
    let started = Instant::now();
    let answer = http
        .post(format!(
            "http://{addr}{}",
            zimage_contract::pictures::paths::PICTURES
        ))
        .header("content-type", "image/jpeg")
        .body(photo)
        .send()
        .await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    let elapsed = started.elapsed();
    if status.as_u16() != 201 {
        bail!(
            "POST /api/pictures answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((serde_json::from_slice(&body)?, elapsed))
}

/// All of `photos` sent at once to a fresh gateway (after one text job with `seed`): its memory
/// before and at its peak.
async fn measure_burst(spec: &GatewaySpec, seed: u64, photos: Vec<Bytes>) -> anyhow::Result<BurstReport> {
    let gateway = Gateway::start(spec).await?;
    gateway.wait_ready().await?;
    GatewayClient::new(gateway.addr).run(seed).await?;
    let rss_before_kib = gateway.rss_kib().context("the gateway's memory cannot be read")?;
    let http = reqwest::Client::builder().no_proxy().tcp_nodelay(true).build()?;
    let uploads = photos.len();
    let started = Instant::now();
    let answers =
        futures_util::future::join_all(photos.into_iter().map(|photo| upload(&http, gateway.addr, photo)))
            .await;
    let wall = started.elapsed();
    let rss_peak_kib = gateway
        .peak_rss_kib()
        .context("the gateway's peak memory cannot be read")?;
    gateway.stop().await;
    let mut ids = std::collections::BTreeSet::new();
    for answer in answers {
        ids.insert(answer?.0.id);
    }
    ensure!(
        ids.len() == uploads,
        "{uploads} different photos were kept as {} pictures",
        ids.len()
    );
    Ok(BurstReport {
        uploads,
        rss_before_kib,
        rss_peak_kib,
        wall_ms: millis(wall),
    })
}

/// Times the steps of cleaning `photo` as the gateway does them, `runs` times each, on this thread.
pub(crate) fn stages(photo: &[u8], runs: usize) -> anyhow::Result<Stages> {
    let mut decode = Vec::with_capacity(runs);
    let mut scale = Vec::with_capacity(runs);
    let mut turn = Vec::with_capacity(runs);
    let mut encode_fast = Vec::with_capacity(runs);
    let mut encode_default = Vec::with_capacity(runs);
    let (mut png_fast_bytes, mut png_default_bytes) = (0, 0);
    for _ in 0..runs {
        let started = Instant::now();
        let mut decoder = JpegDecoder::new(Cursor::new(photo))?;
        let orientation = decoder.orientation()?;
        let image = DynamicImage::from_decoder(decoder)?;
        decode.push(started.elapsed());

        let started = Instant::now();
        // As stored (landscape): the turn comes after, on the small picture.
        let fitted = zimage::pictures::fit(image, CLEAN_SIZE.1, CLEAN_SIZE.0).into_rgb8();
        scale.push(started.elapsed());

        let started = Instant::now();
        let mut turned = DynamicImage::ImageRgb8(fitted);
        turned.apply_orientation(orientation);
        let turned = turned.into_rgb8();
        turn.push(started.elapsed());
        ensure!(
            turned.dimensions() == CLEAN_SIZE,
            "the photo was not turned upright"
        );

        for (level, times, size) in [
            (CompressionType::Fast, &mut encode_fast, &mut png_fast_bytes),
            (
                CompressionType::Default,
                &mut encode_default,
                &mut png_default_bytes,
            ),
        ] {
            let started = Instant::now();
            let mut png = Vec::new();
            PngEncoder::new_with_quality(&mut png, level, PngFilter::Adaptive).write_image(
                turned.as_raw(),
                CLEAN_SIZE.0,
                CLEAN_SIZE.1,
                image::ExtendedColorType::Rgb8,
            )?;
            times.push(started.elapsed());
            *size = png.len();
        }
    }
    let summary = |times: &[Duration]| Summary::of(times).context("no runs");
    Ok(Stages {
        runs,
        decode: summary(&decode)?,
        scale: summary(&scale)?,
        turn: summary(&turn)?,
        encode_fast: summary(&encode_fast)?,
        encode_default: summary(&encode_default)?,
        png_fast_bytes,
        png_default_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exif_block_says_turn_clockwise() {
        let exif = exif_orientation(6);
        assert_eq!(exif.len(), 26);
        assert_eq!(
            image::metadata::Orientation::from_exif_chunk(&exif),
            Some(image::metadata::Orientation::Rotate90)
        );
    }

    #[test]
    fn the_photo_is_a_large_upright_portrait_jpeg() {
        let photo = phone_jpeg(1).unwrap();
        assert!(photo.len() > 2 * 1024 * 1024, "only {} bytes", photo.len());
        let mut decoder = JpegDecoder::new(Cursor::new(&photo[..])).unwrap();
        assert_eq!(decoder.dimensions(), (PHOTO_WIDTH, PHOTO_HEIGHT));
        assert_eq!(
            decoder.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
        assert_ne!(photo, phone_jpeg(2).unwrap());
    }
}
