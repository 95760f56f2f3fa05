//! `POST /api/pictures` and `GET /api/pictures/{id}` against the real gateway: uploads are cleaned and
//! kept once under their hash, every bad input of the issue is a clear 4xx naming the field, large or
//! form bodies are refused without being read, and nothing reaches ComfyUI.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers unwrap: a failure there is the test failing"
)]

use std::io::Cursor;

use futures_util::StreamExt as _;
use image::{DynamicImage, ExtendedColorType, ImageEncoder as _, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use zimage_contract::pictures::{MAX_PICTURE_BYTES, paths};
use zimage_contract::{PictureKind, PictureUploaded};

use crate::support::{Answer, PATIENCE, TestApp, answer as read_answer, spawn_app};

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .write_image(image.as_raw(), width, height, ExtendedColorType::Rgb8)
        .unwrap();
    bytes
}

fn png(image: DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// A PNG whose header claims 30,000 x 30,000 pixels, in under a hundred bytes.
fn bomb() -> Vec<u8> {
    let chunk = |kind: &[u8; 4], data: &[u8]| {
        let mut covered = kind.to_vec();
        covered.extend_from_slice(data);
        let mut chunk = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        chunk.extend_from_slice(&covered);
        chunk.extend_from_slice(&crc32fast::hash(&covered).to_be_bytes());
        chunk
    };
    let mut header = 30_000u32.to_be_bytes().to_vec();
    header.extend_from_slice(&30_000u32.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(chunk(b"IHDR", &header));
    file.extend(chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    ));
    file.extend(chunk(b"IEND", &[]));
    file
}

impl TestApp {
    async fn upload_as(&self, bytes: Vec<u8>, content_type: &str, query: &str) -> Answer {
        let response = self
            .http
            .post(self.url(&format!("{}{query}", paths::PICTURES)))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        read_answer("post", response).await
    }

    async fn upload(&self, bytes: Vec<u8>) -> Answer {
        self.upload_as(bytes, "image/jpeg", "").await
    }

    fn kept_pictures(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data_dir.path().join("pictures"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// The refusal's status, code and field.
fn refusal(answer: &Answer) -> (u16, &str, &str) {
    (
        answer.status,
        answer.body["error"]["code"].as_str().unwrap_or_default(),
        answer.body["error"]["field"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn an_upload_is_cleaned_kept_under_its_hash_and_served() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url(paths::PICTURES))
        .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
        .body(jpeg(2000, 1500))
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let answer = read_answer("post", response).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let uploaded: PictureUploaded = serde_json::from_value(answer.body).unwrap();
    assert_eq!(
        (uploaded.width, uploaded.height, uploaded.kind),
        (1024, 768, PictureKind::Picture)
    );
    assert_eq!(location, paths::picture(&uploaded.id));

    let response = app.http.get(app.url(&location)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let kept = response.bytes().await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&kept)), uploaded.id);
    let decoded = image::load_from_memory(&kept).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (1024, 768));
    assert_eq!(app.kept_pictures(), vec![format!("{}.png", uploaded.id)]);
    // Nothing went to ComfyUI: the gateway uploads there only for a job.
    assert_eq!(app.sim.faults().requests_to("POST /upload"), 0);
}

#[tokio::test]
async fn the_same_picture_twice_or_ten_times_at_once_is_kept_once() {
    let app = spawn_app().await;
    let bytes = jpeg(1200, 900);
    let first = app.upload(bytes.clone()).await;
    let second = app.upload(bytes.clone()).await;
    assert_eq!((first.status, second.status), (201, 201));
    assert_eq!(first.body, second.body);

    let other = jpeg(1600, 1200);
    let uploads = (0..10).map(|_| app.upload(other.clone()));
    let answers = futures_util::future::join_all(uploads).await;
    let ids: Vec<&Value> = answers.iter().map(|answer| &answer.body["id"]).collect();
    assert!(answers.iter().all(|answer| answer.status == 201));
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let mut expected = vec![
        format!("{}.png", first.body["id"].as_str().unwrap()),
        format!("{}.png", ids[0].as_str().unwrap()),
    ];
    expected.sort();
    // Exactly the two pictures: no second copy, no temporary left behind.
    assert_eq!(app.kept_pictures(), expected);
}

#[tokio::test]
async fn every_bad_picture_is_a_clear_refusal_naming_the_field() {
    let app = spawn_app().await;
    assert_eq!(
        refusal(&app.upload(b"not a picture at all".to_vec()).await),
        (415, "not_a_picture", "picture")
    );
    let whole = jpeg(640, 480);
    assert_eq!(
        refusal(&app.upload(whole[..whole.len() / 2].to_vec()).await),
        (422, "unreadable_picture", "picture")
    );
    let answer = app.upload_as(bomb(), "image/png", "").await;
    assert_eq!(refusal(&answer), (422, "picture_too_large", "picture"));
    assert!(
        answer.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("12000"),
        "{}",
        answer.body
    );
    let gif = b"GIF89a\x02\x00\x02\x00\x80\x00\x00\xff\x00\x00\x00\x00\xff!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00;".to_vec();
    assert_eq!(
        refusal(&app.upload_as(gif, "image/gif", "").await),
        (415, "unsupported_picture_format", "picture")
    );
    let tiny = png(RgbImage::from_pixel(40, 40, Rgb([0, 0, 0])).into());
    assert_eq!(
        refusal(&app.upload_as(tiny, "image/png", "").await),
        (422, "picture_too_small", "picture")
    );
    // Nothing was kept, nothing was sent to ComfyUI.
    assert!(app.kept_pictures().is_empty());
    assert_eq!(app.sim.faults().requests_to("POST /upload"), 0);
}

#[tokio::test]
async fn sixteen_bit_and_cmyk_pictures_are_taken_as_8_bit_rgb() {
    let app = spawn_app().await;
    let deep = image::ImageBuffer::<Rgb<u16>, _>::from_pixel(128, 64, Rgb([65_535, 0, 0]));
    let answer = app
        .upload_as(png(DynamicImage::ImageRgb16(deep)), "image/png", "")
        .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let mut cmyk = Vec::new();
    jpeg_encoder::Encoder::new(&mut cmyk, 90)
        .encode(
            &[0, 255, 255, 0].repeat(128 * 64),
            128,
            64,
            jpeg_encoder::ColorType::Cmyk,
        )
        .unwrap();
    let answer = app.upload(cmyk).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let kept = app
        .http
        .get(app.url(&paths::picture(answer.body["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        image::load_from_memory(&kept).unwrap().color(),
        image::ColorType::Rgb8
    );
}

#[tokio::test]
async fn masks_need_transparency_and_keep_their_size() {
    let app = spawn_app().await;
    let mask = RgbaImage::from_fn(320, 240, |x, _| Rgba([0, 0, 0, if x < 100 { 0 } else { 255 }]));
    let answer = app.upload_as(png(mask.into()), "image/png", "?kind=mask").await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(
        (answer.body["width"].as_u64(), answer.body["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(answer.body["kind"], "mask");

    let opaque = png(RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 255])).into());
    assert_eq!(
        refusal(&app.upload_as(opaque, "image/png", "?kind=mask").await),
        (422, "mask_without_transparency", "mask")
    );
    assert_eq!(
        refusal(&app.upload_as(jpeg(64, 64), "image/jpeg", "?kind=mask").await),
        (422, "mask_without_alpha", "mask")
    );
    assert_eq!(
        refusal(&app.upload_as(jpeg(64, 64), "image/jpeg", "?kind=sketch").await),
        (422, "invalid_field", "kind")
    );
}

#[tokio::test]
async fn forms_and_bodies_over_the_limit_are_refused_before_they_are_read() {
    let app = spawn_app().await;
    // A form of 500 parts: not a picture's bytes (a form is what another site's page could send).
    let mut form = String::new();
    for part in 0..500 {
        form.push_str(&format!(
            "--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"../../{part}.png\"\r\n\r\nx\r\n"
        ));
    }
    form.push_str("--x--\r\n");
    let answer = app
        .upload_as(form.into_bytes(), "multipart/form-data; boundary=x", "")
        .await;
    assert_eq!(refusal(&answer), (415, "unsupported_media_type", "picture"));

    // 200 MB announced, a few bytes sent, then nothing: the answer comes without the rest.
    let stalled = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
        b"\xff\xd8\xff",
    ))])
    .chain(futures_util::stream::pending());
    let request = app
        .http
        .post(app.url(paths::PICTURES))
        .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
        .header(reqwest::header::CONTENT_LENGTH, 200 * 1024 * 1024)
        .body(reqwest::Body::wrap_stream(stalled));
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .unwrap()
        .unwrap();
    let answer = read_answer("post", response).await;
    assert_eq!(refusal(&answer), (413, "file_too_large", "picture"));

    // Without a length: read up to the limit, then refused.
    let endless =
        futures_util::stream::repeat_with(|| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![0u8; 1 << 20])))
            .take(MAX_PICTURE_BYTES / (1 << 20) + 8);
    let request = app
        .http
        .post(app.url(paths::PICTURES))
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .body(reqwest::Body::wrap_stream(endless));
    let response = tokio::time::timeout(PATIENCE, request.send())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        refusal(&read_answer("post", response).await),
        (413, "file_too_large", "picture")
    );
    assert!(app.kept_pictures().is_empty());
}

#[tokio::test]
async fn client_file_names_cannot_matter_and_ids_are_only_hashes() {
    let app = spawn_app().await;
    let response = app
        .http
        .post(app.url(paths::PICTURES))
        .header(reqwest::header::CONTENT_TYPE, "image/jpeg")
        .header(
            reqwest::header::CONTENT_DISPOSITION,
            "attachment; filename=\"../../../etc/passwd\"",
        )
        .body(jpeg(320, 240))
        .send()
        .await
        .unwrap();
    let answer = read_answer("post", response).await;
    assert_eq!(answer.status, 201);
    assert_eq!(
        app.kept_pictures(),
        vec![format!("{}.png", answer.body["id"].as_str().unwrap())]
    );
    for id in ["..%2F..%2Fetc%2Fpasswd", "nope", &"A".repeat(64), &"0".repeat(64)] {
        let answer = app.get(&format!("/api/pictures/{id}")).await;
        assert_eq!(answer.status, 404, "{id}");
    }
}
