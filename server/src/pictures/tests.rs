//! The pictures' checks against every bad input of the issue, each file made here with the image crate
//! (or written byte by byte where no encoder makes it: a bomb's header, an animated PNG, EXIF).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{
    DynamicImage, ExtendedColorType, GenericImageView as _, ImageEncoder as _, Rgb, RgbImage, Rgba, RgbaImage,
};
use zimage_contract::pictures::MAX_PICTURE_SIDE;

use super::clean::{self, Format};
use super::*;
use crate::history::History;

fn png(image: &DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

fn jpeg(image: &RgbImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 95)
        .write_image(
            image.as_raw(),
            image.width(),
            image.height(),
            ExtendedColorType::Rgb8,
        )
        .unwrap();
    bytes
}

/// Left half red, right half blue: any turn or mirror shows.
fn halves(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

fn is_red(pixel: [u8; 3]) -> bool {
    pixel[0] > 200 && pixel[1] < 60 && pixel[2] < 60
}

fn is_blue(pixel: [u8; 3]) -> bool {
    pixel[2] > 200 && pixel[0] < 60 && pixel[1] < 60
}

fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = Vec::new();
    chunk.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let mut covered = kind.to_vec();
    covered.extend_from_slice(data);
    chunk.extend_from_slice(&crc32fast::hash(&covered).to_be_bytes());
    chunk
}

/// A PNG that claims `width` x `height` RGB pixels in a file of a few dozen bytes.
fn bomb(width: u32, height: u32) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(chunk(b"IHDR", &header));
    // A zlib stream of a few zero bytes: a real bomb's IDAT would inflate to gigabytes.
    file.extend(chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01],
    ));
    file.extend(chunk(b"IEND", &[]));
    file
}

/// `png` with an `acTL` chunk after its header: an animated PNG.
fn animated_png(png: &[u8]) -> Vec<u8> {
    // Signature (8) and the IHDR chunk (4 + 4 + 13 + 4).
    let (head, rest) = png.split_at(8 + 25);
    let mut file = head.to_vec();
    file.extend(chunk(b"acTL", &[0, 0, 0, 2, 0, 0, 0, 0]));
    file.extend_from_slice(rest);
    file
}

/// `jpeg` with an EXIF segment saying how to turn it (1 to 8), right after its start marker.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0*\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes());
    // Tag 0x0112 (Orientation), type SHORT, one value, the value left-justified in four bytes.
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut segment = b"Exif\0\0".to_vec();
    segment.extend(tiff);
    let mut file = jpeg[..2].to_vec();
    file.extend_from_slice(&[0xFF, 0xE1]);
    file.extend_from_slice(&u16::try_from(segment.len() + 2).unwrap().to_be_bytes());
    file.extend(segment);
    file.extend_from_slice(&jpeg[2..]);
    file
}

fn decoded(cleaned: &clean::Cleaned) -> DynamicImage {
    let image = image::load_from_memory_with_format(&cleaned.png, image::ImageFormat::Png).unwrap();
    assert_eq!((image.width(), image.height()), (cleaned.width, cleaned.height));
    image
}

fn refusal_of(bytes: &[u8], kind: PictureKind) -> Refusal {
    clean::clean(bytes, kind).unwrap_err()
}

/// A mask of `width` x `height`: transparent (repaint) on the left half, opaque on the right.
fn half_mask(width: u32, height: u32) -> Vec<u8> {
    png(&DynamicImage::ImageRgba8(RgbaImage::from_fn(
        width,
        height,
        |x, _| Rgba([255, 255, 255, if x < width / 2 { 0 } else { 255 }]),
    )))
}

#[test]
fn formats_are_sniffed_from_the_bytes() {
    let picture = DynamicImage::ImageRgb8(halves(64, 64));
    assert_eq!(clean::sniff(&png(&picture)), Ok(Format::Png));
    assert_eq!(clean::sniff(&jpeg(&halves(64, 64))), Ok(Format::Jpeg));
    assert_eq!(
        clean::sniff(b"GIF89a\x01\x00\x01\x00"),
        Err(Refusal::Unsupported("GIF"))
    );
    assert_eq!(
        clean::sniff(b"\0\0\0\x18ftypheic\0\0\0\0"),
        Err(Refusal::Unsupported("HEIC"))
    );
    assert_eq!(clean::sniff(b"not a png at all"), Err(Refusal::NotAPicture));
    assert_eq!(clean::sniff(b""), Err(Refusal::NotAPicture));
}

#[test]
fn text_and_other_formats_are_not_pictures() {
    assert_eq!(
        refusal_of(b"not a png at all", PictureKind::Picture),
        Refusal::NotAPicture
    );
    assert!(refusal_of(b"not a png at all", PictureKind::Picture).is_unsupported_media());
    // A multipart body is not a picture either, whatever its parts hold.
    let multipart = b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"../a.png\"\r\n\r\n\x89PNG\r\n--x--\r\n";
    assert_eq!(refusal_of(multipart, PictureKind::Picture), Refusal::NotAPicture);
}

#[test]
fn an_animated_gif_is_refused_as_a_gif() {
    // The header of a GIF with two frames (a NETSCAPE loop extension and two image descriptors).
    let mut gif = b"GIF89a\x02\x00\x02\x00\x80\x00\x00\xff\x00\x00\x00\x00\xff".to_vec();
    gif.extend_from_slice(b"!\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00");
    for _ in 0..2 {
        gif.extend_from_slice(b",\x00\x00\x00\x00\x02\x00\x02\x00\x00\x02\x02\x84\x51\x00");
    }
    gif.push(b';');
    let refusal = refusal_of(&gif, PictureKind::Picture);
    assert_eq!(refusal, Refusal::Unsupported("GIF"));
    assert!(refusal.is_unsupported_media());
}

#[test]
fn an_animated_png_is_refused() {
    let still = png(&DynamicImage::ImageRgb8(halves(64, 64)));
    assert!(clean::clean(&still, PictureKind::Picture).is_ok());
    assert_eq!(
        refusal_of(&animated_png(&still), PictureKind::Picture),
        Refusal::Animated
    );
}

#[test]
fn a_truncated_jpeg_is_refused() {
    let whole = jpeg(&halves(256, 256));
    assert!(clean::clean(&whole, PictureKind::Picture).is_ok());
    for cut in [whole.len() * 2 / 3, whole.len() - 2, 300, 20, 3] {
        let refusal = refusal_of(&whole[..cut], PictureKind::Picture);
        assert!(
            matches!(refusal, Refusal::Unreadable(_)),
            "cut at {cut}: {refusal:?}"
        );
    }
}

#[test]
fn a_truncated_png_is_refused() {
    let whole = png(&DynamicImage::ImageRgb8(RgbImage::from_fn(256, 256, |x, y| {
        Rgb([x as u8, y as u8, (x ^ y) as u8])
    })));
    let refusal = refusal_of(&whole[..whole.len() / 2], PictureKind::Picture);
    assert!(matches!(refusal, Refusal::Unreadable(_)), "{refusal:?}");
}

#[test]
fn a_bomb_is_refused_from_its_header() {
    let file = bomb(30_000, 30_000);
    assert!(file.len() < 100, "{} bytes", file.len());
    assert_eq!(refusal_of(&file, PictureKind::Picture), Refusal::TooLarge);
    // Within the sides' limit but over the pixels' limit (121 megapixels).
    assert_eq!(
        refusal_of(&bomb(11_000, 11_000), PictureKind::Picture),
        Refusal::TooLarge
    );
    // Masks are read under the same limits.
    assert_eq!(refusal_of(&file, PictureKind::Mask), Refusal::TooLarge);
}

#[test]
fn a_cmyk_jpeg_becomes_8_bit_rgb() {
    // Cyan 0, magenta and yellow full, black 0: red.
    let (width, height) = (128u16, 64u16);
    let pixels: Vec<u8> = [0u8, 255, 255, 0].repeat(usize::from(width) * usize::from(height));
    let mut file = Vec::new();
    jpeg_encoder::Encoder::new(&mut file, 95)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    let cleaned = clean::clean(&file, PictureKind::Picture).unwrap();
    let image = decoded(&cleaned);
    assert_eq!(image.color(), image::ColorType::Rgb8);
    assert_eq!((cleaned.width, cleaned.height), (128, 64));
    let pixel = image.to_rgb8().get_pixel(64, 32).0;
    assert!(is_red(pixel), "{pixel:?}");
}

#[test]
fn a_16_bit_png_becomes_8_bit_rgb_of_the_same_colours() {
    let wide = image::ImageBuffer::<Rgb<u16>, _>::from_fn(96, 64, |x, _| {
        if x < 48 {
            Rgb([65_535, 0, 0])
        } else {
            Rgb([0, 0, 65_535])
        }
    });
    let cleaned = clean::clean(&png(&DynamicImage::ImageRgb16(wide)), PictureKind::Picture).unwrap();
    let image = decoded(&cleaned);
    assert_eq!(image.color(), image::ColorType::Rgb8);
    assert_eq!((cleaned.width, cleaned.height), (96, 64));
    assert!(is_red(image.to_rgb8().get_pixel(10, 10).0));
    assert!(is_blue(image.to_rgb8().get_pixel(90, 10).0));
}

#[test]
fn grey_and_transparent_pictures_become_rgb() {
    let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(64, 64, image::Luma([100])));
    let image = decoded(&clean::clean(&png(&grey), PictureKind::Picture).unwrap());
    assert_eq!(image.color(), image::ColorType::Rgb8);
    assert_eq!(image.to_rgb8().get_pixel(5, 5).0, [100, 100, 100]);
    // Transparent parts are shown over white.
    let clear = DynamicImage::ImageRgba8(RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0])));
    let image = decoded(&clean::clean(&png(&clear), PictureKind::Picture).unwrap());
    assert_eq!(image.to_rgb8().get_pixel(5, 5).0, [255, 255, 255]);
}

#[test]
fn a_webp_picture_is_taken() {
    let mut file = Vec::new();
    let image = halves(128, 64);
    WebPEncoder::new_lossless(&mut file)
        .write_image(image.as_raw(), 128, 64, ExtendedColorType::Rgb8)
        .unwrap();
    let cleaned = clean::clean(&file, PictureKind::Picture).unwrap();
    assert!(is_red(decoded(&cleaned).to_rgb8().get_pixel(0, 0).0));
}

#[test]
fn an_exif_rotated_jpeg_keeps_the_orientation_people_saw() {
    // Stored 128 x 64, red left, blue right; orientation 6: turn 90 degrees clockwise to show it, so
    // people saw 64 x 128 with red on top.
    let file = with_orientation(&jpeg(&halves(128, 64)), 6);
    let cleaned = clean::clean(&file, PictureKind::Picture).unwrap();
    assert_eq!((cleaned.width, cleaned.height), (64, 128));
    let image = decoded(&cleaned).to_rgb8();
    assert!(is_red(image.get_pixel(32, 10).0), "{:?}", image.get_pixel(32, 10));
    assert!(
        is_blue(image.get_pixel(32, 118).0),
        "{:?}",
        image.get_pixel(32, 118)
    );
    // A large photo is scaled and turned: 2048 x 1024 stored, shown 1024 x 2048, kept 512 x 1024.
    let cleaned = clean::clean(
        &with_orientation(&jpeg(&halves(2048, 1024)), 6),
        PictureKind::Picture,
    )
    .unwrap();
    assert_eq!((cleaned.width, cleaned.height), (512, 1024));
    let image = decoded(&cleaned).to_rgb8();
    assert!(is_red(image.get_pixel(256, 100).0) && is_blue(image.get_pixel(256, 900).0));
    // Orientation 2 mirrors: blue on the left.
    let image = decoded(
        &clean::clean(
            &with_orientation(&jpeg(&halves(128, 64)), 2),
            PictureKind::Picture,
        )
        .unwrap(),
    )
    .to_rgb8();
    assert!(is_blue(image.get_pixel(10, 32).0) && is_red(image.get_pixel(118, 32).0));
    // Orientation 8 turns the other way: blue on top.
    let image = decoded(
        &clean::clean(
            &with_orientation(&jpeg(&halves(128, 64)), 8),
            PictureKind::Picture,
        )
        .unwrap(),
    )
    .to_rgb8();
    assert!(
        is_blue(image.get_pixel(32, 10).0),
        "{:?}",
        image.get_pixel(32, 10)
    );
}

#[test]
fn the_clean_png_carries_no_metadata() {
    let file = with_orientation(&jpeg(&halves(128, 64)), 6);
    let cleaned = clean::clean(&file, PictureKind::Picture).unwrap();
    let decoder = png::Decoder::new(Cursor::new(&cleaned.png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert!(info.uncompressed_latin1_text.is_empty() && info.compressed_latin1_text.is_empty());
    assert!(info.utf8_text.is_empty() && info.exif_metadata.is_none() && info.icc_profile.is_none());
    // Only the critical chunks are there.
    let mut at = 8;
    let mut kinds = Vec::new();
    while at + 8 <= cleaned.png.len() {
        let length = u32::from_be_bytes(cleaned.png[at..at + 4].try_into().unwrap()) as usize;
        kinds.push(String::from_utf8_lossy(&cleaned.png[at + 4..at + 8]).into_owned());
        at += 12 + length;
    }
    kinds.dedup();
    assert_eq!(kinds, ["IHDR", "IDAT", "IEND"]);
}

#[test]
fn large_pictures_are_scaled_to_the_cap_in_steps_of_16() {
    let cleaned = clean::clean(&jpeg(&halves(4000, 3000)), PictureKind::Picture).unwrap();
    assert_eq!((cleaned.width, cleaned.height), (1024, 768));
    let image = decoded(&cleaned).to_rgb8();
    assert!(is_red(image.get_pixel(100, 400).0) && is_blue(image.get_pixel(900, 400).0));
    // Portrait phone photo, 3024 x 4032: 768 x 1024.
    assert_eq!(clean_size(3024, 4032), Some((768, 1024)));
    // Odd sizes are rounded down to steps of 16, small ones are not enlarged.
    assert_eq!(clean_size(1000, 333), Some((1000 / 16 * 16, 333 / 16 * 16)));
    assert_eq!(clean_size(300, 200), Some((288, 192)));
    assert_eq!(clean_size(64, 64), Some((64, 64)));
    // A side under 64 pixels (after scaling) is refused.
    assert_eq!(clean_size(40, 400), None);
    assert_eq!(clean_size(12_000, 500), None);
    assert!(matches!(
        refusal_of(
            &png(&DynamicImage::ImageRgb8(halves(40, 40))),
            PictureKind::Picture
        ),
        Refusal::TooSmall {
            width: 40,
            height: 40
        }
    ));
    for (width, height) in [
        (1, 1),
        (63, 5000),
        (4032, 3024),
        (12_000, 12_000),
        (1024, 1024),
        (1025, 17),
    ] {
        if let Some((clean_width, clean_height)) = clean_size(width, height) {
            assert!(clean_width.max(clean_height) <= MAX_PICTURE_SIDE);
            assert_eq!((clean_width % 16, clean_height % 16), (0, 0));
        }
    }
}

#[test]
fn fitting_crops_the_centre_and_scales() {
    // 300 x 100, red | green | blue thirds: fitted to a square, only the green third is left.
    let thirds = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
        0 => Rgb([255, 0, 0]),
        1 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    let square = fit(DynamicImage::ImageRgb8(thirds.clone()), 64, 64).into_rgb8();
    assert_eq!(square.dimensions(), (64, 64));
    assert!(
        square
            .pixels()
            .all(|pixel| pixel.0[1] > 200 && pixel.0[0] < 40 && pixel.0[2] < 40)
    );
    // Enlarging works too, and the same size is the same image.
    let large = fit(DynamicImage::ImageRgb8(thirds.clone()), 600, 200);
    assert_eq!(large.dimensions(), (600, 200));
    assert_eq!(
        fit(DynamicImage::ImageRgb8(thirds.clone()), 300, 100).into_rgb8(),
        thirds
    );
    // Tall target from a wide picture: the middle column band.
    let tall = fit(DynamicImage::ImageRgb8(thirds), 32, 96).into_rgb8();
    assert_eq!(tall.dimensions(), (32, 96));
    assert!(tall.pixels().all(|pixel| pixel.0[1] > 200));
}

#[test]
fn a_mask_keeps_its_size_and_alpha_only() {
    let cleaned = clean::clean(&half_mask(96, 64), PictureKind::Mask).unwrap();
    assert_eq!((cleaned.width, cleaned.height), (96, 64));
    let image = decoded(&cleaned);
    assert_eq!(image.color(), image::ColorType::La8);
    let mask = image.into_luma_alpha8();
    assert_eq!(mask.get_pixel(0, 0).0, [0, 0]);
    assert_eq!(mask.get_pixel(95, 0).0, [0, 255]);
    // An entirely transparent mask repaints everything: allowed.
    let clear = png(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(
        64,
        64,
        Rgba([0, 0, 0, 0]),
    )));
    assert!(clean::clean(&clear, PictureKind::Mask).is_ok());
}

#[test]
fn masks_without_transparency_or_alpha_or_too_large_are_refused() {
    let opaque = png(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(
        64,
        64,
        Rgba([0, 0, 0, 255]),
    )));
    assert_eq!(
        refusal_of(&opaque, PictureKind::Mask),
        Refusal::MaskWithoutTransparency
    );
    let rgb = png(&DynamicImage::ImageRgb8(halves(64, 64)));
    assert_eq!(refusal_of(&rgb, PictureKind::Mask), Refusal::MaskWithoutAlpha);
    assert_eq!(
        refusal_of(&jpeg(&halves(64, 64)), PictureKind::Mask),
        Refusal::MaskWithoutAlpha
    );
    assert_eq!(
        refusal_of(&half_mask(2048, 64), PictureKind::Mask),
        Refusal::MaskTooLarge {
            width: 2048,
            height: 64
        }
    );
}

#[test]
fn composing_puts_the_mask_in_the_alpha_channel() {
    let picture = halves(64, 64);
    let mask = image::GrayAlphaImage::from_fn(64, 64, |_, y| image::LumaA([0, if y < 32 { 0 } else { 255 }]));
    let composed = compose(&picture, &mask).unwrap();
    assert_eq!(composed.get_pixel(0, 0).0, [255, 0, 0, 0]);
    assert_eq!(composed.get_pixel(63, 63).0, [0, 0, 255, 255]);
    assert!(compose(&picture, &image::GrayAlphaImage::new(32, 64)).is_none());
}

#[test]
fn ids_are_64_lowercase_hex_digits() {
    let id = PictureId::of(b"x");
    assert_eq!(PictureId::parse(&id.to_hex()), Some(id));
    assert_eq!(id.to_hex().len(), 64);
    assert_eq!(PictureId::parse(&id.to_hex().to_uppercase()), None);
    assert_eq!(PictureId::parse("../../etc/passwd"), None);
    assert_eq!(PictureId::parse(&format!("{}.png", &id.to_hex()[..60])), None);
}

#[test]
fn strengths_are_checked_and_default_by_mask() {
    assert_eq!(Strength::parse(None, false).unwrap().get(), 0.6);
    assert_eq!(Strength::parse(None, true).unwrap().get(), 1.0);
    assert_eq!(Strength::parse(Some(0.2), false).unwrap().get(), 0.2);
    for bad in [0.1, 1.01, f32::NAN, f32::INFINITY, -0.5] {
        let error = Strength::parse(Some(bad), false).unwrap_err();
        assert!(
            matches!(
                error,
                PictureError::Refused {
                    field: Field::SourceStrength,
                    refusal: Refusal::Strength
                }
            ),
            "{bad}"
        );
    }
}

async fn store() -> (tempfile::TempDir, PictureStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = PictureStore::open(&dir.path().join("pictures")).await.unwrap();
    (dir, store)
}

fn files(store: &PictureStore) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&store.inner.dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn an_upload_is_kept_under_its_hash_once() {
    let (_dir, store) = store().await;
    let bytes = Bytes::from(jpeg(&halves(640, 480)));
    let first = store.upload(bytes.clone(), PictureKind::Picture).await.unwrap();
    let second = store.upload(bytes, PictureKind::Picture).await.unwrap();
    assert_eq!(first, second);
    assert_eq!((first.width, first.height), (640, 480));
    assert_eq!(files(&store), vec![format!("{}.png", first.id)]);
    let kept = store.read(first.id).await.unwrap().unwrap();
    assert_eq!(PictureId::of(&kept), first.id);
    assert_eq!(store.read(PictureId::of(b"other")).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_uploads_of_one_picture_at_once_keep_one_file() {
    let (_dir, store) = store().await;
    let bytes = Bytes::from(jpeg(&halves(1600, 1200)));
    let uploads: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let bytes = bytes.clone();
            tokio::spawn(async move { store.upload(bytes, PictureKind::Picture).await.unwrap() })
        })
        .collect();
    let mut ids = Vec::new();
    for upload in uploads {
        ids.push(upload.await.unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(files(&store), vec![format!("{}.png", ids[0])]);
    assert!(lock(&store.inner.writing).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn decodes_wait_for_their_share_of_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Room for one 1600 x 1200 decode (about 20 MiB) at a time.
    let store = PictureStore::open_with_budget(dir.path(), 24 * 1024 * 1024)
        .await
        .unwrap();
    let held = Arc::clone(&store.inner.memory)
        .acquire_many_owned(24)
        .await
        .unwrap();
    let upload = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .upload(Bytes::from(jpeg(&halves(1600, 1200))), PictureKind::Picture)
                .await
        }
    });
    // While the budget is taken, the upload waits at the gate (its header was read: it knows its cost).
    let mut polls = 0;
    while store.inner.waiting.load(Ordering::SeqCst) == 0 {
        polls += 1;
        assert!(polls < 20_000, "the upload never reached the gate");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(!upload.is_finished());
    drop(held);
    assert!(upload.await.unwrap().is_ok());
    assert_eq!(store.inner.memory.available_permits(), 24);
    // A bomb never waits for memory: refused from its header while the budget is taken.
    let held = Arc::clone(&store.inner.memory)
        .acquire_many_owned(24)
        .await
        .unwrap();
    let error = store
        .upload(Bytes::from(bomb(30_000, 30_000)), PictureKind::Picture)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        PictureError::Refused {
            field: Field::Picture,
            refusal: Refusal::TooLarge
        }
    ));
    drop(held);
}

#[tokio::test]
async fn bodies_are_read_a_few_at_a_time() {
    let (_dir, store) = store().await;
    let mut turns = Vec::new();
    for _ in 0..MAX_UPLOADS_READ_AT_ONCE {
        turns.push(store.reading_turn().await.unwrap());
    }
    // All taken: the next one waits until one is given back.
    assert!(Arc::clone(&store.inner.reading).try_acquire_owned().is_err());
    turns.pop();
    let next = tokio::time::timeout(std::time::Duration::from_secs(30), store.reading_turn());
    assert!(next.await.unwrap().is_ok());
}

#[tokio::test]
async fn refusals_name_the_uploads_field_and_keep_nothing() {
    let (_dir, store) = store().await;
    let error = store
        .upload(Bytes::from_static(b"nope"), PictureKind::Picture)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        PictureError::Refused {
            field: Field::Picture,
            refusal: Refusal::NotAPicture
        }
    ));
    let opaque = png(&DynamicImage::ImageRgba8(RgbaImage::from_pixel(
        64,
        64,
        Rgba([0, 0, 0, 255]),
    )));
    let error = store
        .upload(Bytes::from(opaque), PictureKind::Mask)
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        PictureError::Refused {
            field: Field::Mask,
            ..
        }
    ));
    assert!(files(&store).is_empty());
}

#[tokio::test]
async fn a_source_is_resolved_with_its_kinds_and_sizes_checked() {
    let (_dir, store) = store().await;
    let picture = store
        .upload(Bytes::from(jpeg(&halves(128, 64))), PictureKind::Picture)
        .await
        .unwrap();
    let mask = store
        .upload(Bytes::from(half_mask(128, 64)), PictureKind::Mask)
        .await
        .unwrap();
    let other_mask = store
        .upload(Bytes::from(half_mask(64, 64)), PictureKind::Mask)
        .await
        .unwrap();
    let request = |picture: &Stored, strength, mask: Option<&Stored>| SourceRequest {
        picture: picture.id.to_hex(),
        strength,
        mask: mask.map(|mask| mask.id.to_hex()),
    };
    let source = store.resolve(&request(&picture, None, None)).await.unwrap();
    assert_eq!(
        (source.width, source.height, source.strength.get()),
        (128, 64, 0.6)
    );
    assert_eq!(
        source.info(),
        SourceInfo {
            picture: picture.id.to_hex(),
            strength: 0.6,
            masked: false
        }
    );
    let source = store
        .resolve(&request(&picture, None, Some(&mask)))
        .await
        .unwrap();
    assert_eq!(source.strength.get(), 1.0);
    assert!(source.info().masked);
    // What a journal keeps resolves to the same source.
    assert_eq!(store.resolve(&source.request()).await.unwrap(), source);

    let refusal_of = |error: PictureError| match error {
        PictureError::Refused { field, refusal } => (field, refusal),
        other => panic!("{other:?}"),
    };
    let error = store
        .resolve(&request(&picture, None, Some(&other_mask)))
        .await
        .unwrap_err();
    assert_eq!(
        refusal_of(error),
        (
            Field::SourceMask,
            Refusal::MaskSize {
                mask: (64, 64),
                picture: (128, 64)
            }
        )
    );
    let error = store.resolve(&request(&mask, None, None)).await.unwrap_err();
    assert_eq!(
        refusal_of(error),
        (
            Field::SourcePicture,
            Refusal::WrongKind {
                expected: PictureKind::Picture,
                found: PictureKind::Mask
            }
        )
    );
    let error = store
        .resolve(&request(&picture, None, Some(&picture)))
        .await
        .unwrap_err();
    assert!(matches!(
        refusal_of(error),
        (Field::SourceMask, Refusal::WrongKind { .. })
    ));
    let error = store
        .resolve(&request(&picture, Some(1.5), None))
        .await
        .unwrap_err();
    assert_eq!(refusal_of(error), (Field::SourceStrength, Refusal::Strength));
    let unknown = SourceRequest {
        picture: "0".repeat(64),
        ..SourceRequest::default()
    };
    assert_eq!(
        refusal_of(store.resolve(&unknown).await.unwrap_err()),
        (Field::SourcePicture, Refusal::Unknown)
    );
    let malformed = SourceRequest {
        picture: "../x".to_owned(),
        ..SourceRequest::default()
    };
    assert_eq!(
        refusal_of(store.resolve(&malformed).await.unwrap_err()),
        (Field::SourcePicture, Refusal::Unknown)
    );
}

#[tokio::test]
async fn a_prepared_source_is_fitted_and_carries_the_mask_as_alpha() {
    let (_dir, store) = store().await;
    let picture = store
        .upload(Bytes::from(jpeg(&halves(128, 64))), PictureKind::Picture)
        .await
        .unwrap();
    let mask = store
        .upload(Bytes::from(half_mask(128, 64)), PictureKind::Mask)
        .await
        .unwrap();
    let source = store
        .resolve(&SourceRequest {
            picture: picture.id.to_hex(),
            strength: Some(0.5),
            mask: None,
        })
        .await
        .unwrap();
    // Same size, no mask: the kept file itself.
    let prepared = store.prepare(&source, 128, 64).await.unwrap();
    assert_eq!(prepared.digest, picture.id.to_hex());
    assert_eq!((prepared.strength, prepared.masked), (0.5, false));
    // Another size: cropped and scaled.
    let prepared = store.prepare(&source, 64, 64).await.unwrap();
    let image = image::load_from_memory(&prepared.png).unwrap();
    assert_eq!((image.width(), image.height()), (64, 64));
    assert_eq!(prepared.digest, hex::encode(Sha256::digest(&prepared.png)));

    let source = store
        .resolve(&SourceRequest {
            picture: picture.id.to_hex(),
            strength: None,
            mask: Some(mask.id.to_hex()),
        })
        .await
        .unwrap();
    let prepared = store.prepare(&source, 128, 64).await.unwrap();
    assert!(prepared.masked);
    let image = image::load_from_memory(&prepared.png).unwrap().into_rgba8();
    assert_eq!(image.dimensions(), (128, 64));
    let left = image.get_pixel(10, 32).0;
    let right = image.get_pixel(118, 32).0;
    assert!(is_red([left[0], left[1], left[2]]) && left[3] == 0, "{left:?}");
    assert!(
        is_blue([right[0], right[1], right[2]]) && right[3] == 255,
        "{right:?}"
    );
}

/// Makes a kept picture look as if it was last uploaded or named `age` ago.
fn age(store: &PictureStore, id: PictureId, age: std::time::Duration) {
    std::fs::File::open(store.path(id))
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn the_sweep_removes_only_old_pictures_no_job_or_image_names() {
    let (dir, store) = store().await;
    let upload = |width| {
        let store = store.clone();
        async move {
            store
                .upload(Bytes::from(jpeg(&halves(width, 64))), PictureKind::Picture)
                .await
                .unwrap()
                .id
        }
    };
    let (in_history, in_journal, old, young) = (
        upload(64).await,
        upload(80).await,
        upload(96).await,
        upload(112).await,
    );
    let mask = store
        .upload(Bytes::from(half_mask(80, 64)), PictureKind::Mask)
        .await
        .unwrap()
        .id;
    for id in [in_history, in_journal, old, mask] {
        age(&store, id, 3 * DAY);
    }
    age(&store, young, Duration::from_secs(3600));

    let history = History::open(dir.path()).await.unwrap();
    let job = crate::job_id::JobId::new();
    // Built from its JSON, so fields added to a record later take their defaults here.
    let record: crate::history::HistoryRecord = serde_json::from_value(serde_json::json!({
        "id": job.to_string(), "prompt": "a fox", "seed": 1, "width": 64, "height": 64,
        "timings": {"queued_at": 1, "started_at": 2, "finished_at": 3}, "elapsed_ms": 2,
        "source": {"picture": in_history.to_hex(), "strength": 0.6, "masked": false},
    }))
    .unwrap();
    history.add(record).await.unwrap();
    // A waiting job's entry as the journal writes it (its spec's fields, flattened).
    let journal = dir.path().join("jobs");
    std::fs::create_dir_all(&journal).unwrap();
    let waiting = crate::job_id::JobId::new();
    let entry = serde_json::json!({
        "id": waiting.to_string(), "prompt": "a fox", "seed": 1, "width": 512, "height": 512,
        "source": {"picture": in_journal.to_hex(), "strength": 1.0, "mask": mask.to_hex(), "width": 80, "height": 64},
    });
    std::fs::write(journal.join(format!("{waiting}.json")), entry.to_string()).unwrap();
    assert_eq!(
        crate::jobs::journal::Journal::list(&journal).await.unwrap().len(),
        1
    );

    let removed = sweep::sweep(&store, &journal, &history, SystemTime::now())
        .await
        .unwrap();
    assert_eq!(removed, vec![old]);
    let mut left = vec![in_history, in_journal, young, mask];
    left.sort();
    let mut kept: Vec<PictureId> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|listed| listed.id)
        .collect();
    kept.sort();
    assert_eq!(kept, left);

    // The job ends and its entry goes; the history forgets the image: both become old strays.
    std::fs::remove_file(journal.join(format!("{waiting}.json"))).unwrap();
    history.remove(job).await.unwrap();
    let mut removed = sweep::sweep(&store, &journal, &history, SystemTime::now())
        .await
        .unwrap();
    removed.sort();
    let mut strays = vec![in_history, in_journal, mask];
    strays.sort();
    assert_eq!(removed, strays);
    assert_eq!(files(&store), vec![format!("{young}.png")]);
}

#[tokio::test]
async fn naming_or_sending_a_picture_again_makes_it_young() {
    let (_dir, store) = store().await;
    let bytes = Bytes::from(jpeg(&halves(64, 64)));
    let id = store
        .upload(bytes.clone(), PictureKind::Picture)
        .await
        .unwrap()
        .id;
    let now = || SystemTime::now();
    let old = |store: &PictureStore| {
        let store = store.clone();
        async move {
            let listed = store.list().await.unwrap();
            sweep::is_old(listed[0].fresh_at, now(), DAY)
        }
    };
    age(&store, id, 2 * DAY);
    assert!(old(&store).await);
    // A job names it (the sweep, between its listing and its removal, sees it young again).
    store
        .resolve(&SourceRequest {
            picture: id.to_hex(),
            strength: None,
            mask: None,
        })
        .await
        .unwrap();
    assert!(!old(&store).await);
    assert!(!store.remove_if_old(id, now(), DAY).await.unwrap());

    age(&store, id, 2 * DAY);
    store.upload(bytes, PictureKind::Picture).await.unwrap();
    assert!(!old(&store).await);

    // Old and removed: a job naming it now is refused, naming the field.
    age(&store, id, 2 * DAY);
    assert!(store.remove_if_old(id, now(), DAY).await.unwrap());
    let refused = store
        .resolve(&SourceRequest {
            picture: id.to_hex(),
            strength: None,
            mask: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        PictureError::Refused {
            field: Field::SourcePicture,
            refusal: Refusal::Unknown
        }
    ));
}

#[test]
fn the_quick_scaling_matches_the_image_crates_area_averaging_and_keeps_alpha() {
    // A photo-like gradient with detail, 640 x 400, to the cap's aspect cut from its centre.
    let photo = RgbImage::from_fn(640, 400, |x, y| {
        Rgb([(x % 256) as u8, (y * 255 / 400) as u8, ((x * y) % 251) as u8])
    });
    let quick = fit(DynamicImage::ImageRgb8(photo.clone()), 160, 160).into_rgb8();
    let slow = DynamicImage::ImageRgb8(photo)
        .crop_imm(120, 0, 400, 400)
        .thumbnail_exact(160, 160)
        .into_rgb8();
    let worst = quick
        .pixels()
        .zip(slow.pixels())
        .flat_map(|(a, b)| a.0.iter().zip(b.0).map(|(a, b)| a.abs_diff(b)))
        .max()
        .unwrap();
    assert!(
        worst <= 12,
        "the quick scaling strays by {worst} from area averaging"
    );
    // A transparent picture stays transparent where it was, opaque where it was.
    let half = image::RgbaImage::from_fn(200, 100, |x, _| {
        image::Rgba([200, 100, 50, if x < 100 { 0 } else { 255 }])
    });
    let fitted = fit(DynamicImage::ImageRgba8(half), 100, 50).into_rgba8();
    assert_eq!(fitted.get_pixel(10, 25).0[3], 0);
    assert_eq!(fitted.get_pixel(90, 25).0, [200, 100, 50, 255]);
}
