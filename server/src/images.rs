//! Image store: finished images as `<data>/images/<job id>.png`, each with a small JPEG thumbnail made
//! once at store time (phones browse the gallery over Wi-Fi). Files are named by job id only.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::atomic_file;
use crate::job_id::JobId;

/// Longest side of a thumbnail, in pixels: sharp on a phone gallery's 2x-density tiles.
const THUMBNAIL_SIDE: u32 = 384;
const THUMBNAIL_QUALITY: u8 = 82;

/// Which file of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The PNG as ComfyUI made it.
    Full,
    /// The small JPEG for galleries.
    Thumbnail,
}

impl Variant {
    /// The HTTP content type of the variant.
    pub fn content_type(self) -> &'static str {
        match self {
            Variant::Full => "image/png",
            Variant::Thumbnail => "image/jpeg",
        }
    }
}

/// Storing or reading an image failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("ComfyUI sent something that is not a PNG image")]
    NotPng,
    #[error("ComfyUI sent a PNG that cannot be decoded: {0}")]
    Undecodable(String),
    #[error("cannot use the image folder")]
    Io(#[from] io::Error),
}

/// The stored images. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the image folder.
    pub async fn open(dir: &Path) -> Result<ImageStore, ImageError> {
        tokio::fs::create_dir_all(dir).await?;
        atomic_file::sweep_temporaries(dir).await?;
        Ok(ImageStore { dir: dir.to_owned() })
    }

    /// Checks that `png` is a PNG, makes its thumbnail, and stores both. Returns the image's size.
    pub async fn store(&self, id: JobId, png: Bytes) -> Result<(u32, u32), ImageError> {
        let decode_input = png.clone();
        let (size, thumbnail) = tokio::task::spawn_blocking(move || make_thumbnail(&decode_input))
            .await
            .map_err(|error| ImageError::Undecodable(error.to_string()))??;
        // The thumbnail goes first: an image whose PNG exists is complete.
        atomic_file::write(&self.path(id, Variant::Thumbnail), &thumbnail).await?;
        atomic_file::write(&self.path(id, Variant::Full), &png).await?;
        Ok(size)
    }

    /// The bytes of a stored image, or `None` when there is none by that id.
    pub async fn read(&self, id: JobId, variant: Variant) -> Result<Option<Bytes>, ImageError> {
        match tokio::fs::read(self.path(id, variant)).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes both files of an image; a missing file is not an error.
    pub async fn remove(&self, id: JobId) -> Result<(), ImageError> {
        for variant in [Variant::Full, Variant::Thumbnail] {
            match tokio::fs::remove_file(self.path(id, variant)).await {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error.into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn path(&self, id: JobId, variant: Variant) -> PathBuf {
        match variant {
            Variant::Full => self.dir.join(format!("{id}.png")),
            Variant::Thumbnail => self.dir.join(format!("{id}.thumb.jpg")),
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Checks that `png` starts like a PNG and reads its size from the header chunk (IHDR), without
/// decoding: cheap enough for the moment a finished image is announced. [`ImageStore::store`] decodes
/// it fully later.
pub fn png_size(png: &[u8]) -> Result<(u32, u32), ImageError> {
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(ImageError::NotPng);
    }
    // The signature is followed by the IHDR chunk: length 13, type, width, height (big-endian).
    let field =
        |at: usize| -> Option<u32> { Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?)) };
    let header = png.get(12..16);
    match (header, field(16), field(20)) {
        (Some(b"IHDR"), Some(width), Some(height)) if width > 0 && height > 0 => Ok((width, height)),
        _ => Err(ImageError::Undecodable("the PNG has no valid header".to_owned())),
    }
}

/// Decodes a PNG and returns its size and a JPEG thumbnail.
fn make_thumbnail(png: &[u8]) -> Result<((u32, u32), Vec<u8>), ImageError> {
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(ImageError::NotPng);
    }
    let mut reader = image::ImageReader::with_format(io::Cursor::new(png), image::ImageFormat::Png);
    // A 1024x1024 RGBA image needs 4 MiB; refuse images that claim to be absurdly large.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(8192);
    limits.max_image_height = Some(8192);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|error| ImageError::Undecodable(error.to_string()))?;
    let size = (decoded.width(), decoded.height());
    let thumbnail = decoded.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE).into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_QUALITY)
        .encode_image(&thumbnail)
        .map_err(|error| ImageError::Undecodable(error.to_string()))?;
    Ok((size, jpeg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Bytes {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(image)
            .write_to(&mut io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        Bytes::from(bytes)
    }

    #[tokio::test]
    async fn a_stored_png_reads_back_with_a_small_jpeg_thumbnail() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).await.unwrap();
        let id = JobId::new();
        let original = png(1024, 576);
        assert_eq!(store.store(id, original.clone()).await.unwrap(), (1024, 576));
        assert_eq!(store.read(id, Variant::Full).await.unwrap().unwrap(), original);
        let thumbnail = store.read(id, Variant::Thumbnail).await.unwrap().unwrap();
        let decoded = image::load_from_memory_with_format(&thumbnail, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (384, 216));
    }

    #[tokio::test]
    async fn something_that_is_not_a_png_is_refused_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).await.unwrap();
        let id = JobId::new();
        assert!(matches!(
            store.store(id, Bytes::from_static(b"<html>")).await,
            Err(ImageError::NotPng)
        ));
        let truncated = png(64, 64).slice(..40);
        assert!(matches!(
            store.store(id, truncated).await,
            Err(ImageError::Undecodable(_))
        ));
        assert!(store.read(id, Variant::Full).await.unwrap().is_none());
    }

    #[test]
    fn the_size_is_read_from_the_png_header_without_decoding() {
        let image = png(320, 256);
        assert_eq!(png_size(&image).unwrap(), (320, 256));
        assert!(matches!(png_size(b"<html>"), Err(ImageError::NotPng)));
        assert!(matches!(png_size(&image[..20]), Err(ImageError::Undecodable(_))));
    }

    #[tokio::test]
    async fn removing_an_image_removes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).await.unwrap();
        let id = JobId::new();
        store.store(id, png(32, 32)).await.unwrap();
        store.remove(id).await.unwrap();
        store.remove(id).await.unwrap();
        assert!(store.read(id, Variant::Thumbnail).await.unwrap().is_none());
    }
}
