//! The encoding of the images an OpenAI-style answer carries: the stored PNG as it is, or transcoded
//! to JPEG (at `output_compression` as its quality) or to WebP (lossless: the `image` crate's WebP
//! encoder has no lossy mode, so `output_compression` does not apply to it). Live previews, which
//! ComfyUI sends as JPEG or PNG, are transcoded the same way.

use std::io::Cursor;

use bytes::Bytes;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder as _};
use zimage_contract::openai::OutputFormat;

/// An image could not be transcoded (a preview or stored image that does not decode).
#[derive(Debug, thiserror::Error)]
#[error("cannot transcode the image to {format:?}: {source}")]
pub struct EncodeError {
    format: OutputFormat,
    #[source]
    source: image::ImageError,
}

/// The format the answer's images are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub format: OutputFormat,
    /// 1 to 100; used for JPEG alone.
    pub jpeg_quality: u8,
}

impl Encoding {
    /// `compression` is OpenAI's `output_compression` (0 to 100, checked before): for JPEG its quality,
    /// 0 taken as 1 (the encoder's least).
    pub fn new(format: OutputFormat, compression: u32) -> Encoding {
        Encoding {
            format,
            jpeg_quality: u8::try_from(compression.clamp(1, 100)).unwrap_or(100),
        }
    }

    /// Whether an image of media type `mime` goes out as it is.
    pub fn keeps(&self, mime: &str) -> bool {
        mime == self.format.media_type()
    }

    /// `image` (of media type `mime`) in this encoding: as it is when it already is (so a stored PNG
    /// keeps its text chunks), else decoded and encoded. CPU work: call it off the async threads.
    pub fn transcode(&self, image: Bytes, mime: &str) -> Result<Bytes, EncodeError> {
        if self.keeps(mime) {
            return Ok(image);
        }
        let failed = |source| EncodeError {
            format: self.format,
            source,
        };
        let decoded = image::load_from_memory(&image).map_err(failed)?;
        // Every format here is opaque (the model makes no transparency): three channels.
        let rgb = decoded.to_rgb8();
        let (width, height) = rgb.dimensions();
        let mut out = Cursor::new(Vec::with_capacity(image.len()));
        match self.format {
            OutputFormat::Png => image::codecs::png::PngEncoder::new(&mut out).write_image(
                &rgb,
                width,
                height,
                ExtendedColorType::Rgb8,
            ),
            OutputFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, self.jpeg_quality).write_image(
                &rgb,
                width,
                height,
                ExtendedColorType::Rgb8,
            ),
            OutputFormat::Webp => {
                WebPEncoder::new_lossless(&mut out).write_image(&rgb, width, height, ExtendedColorType::Rgb8)
            }
        }
        .map_err(failed)?;
        Ok(Bytes::from(out.into_inner()))
    }

    /// [`Encoding::transcode`] on the blocking pool (a 1024x1024 JPEG or WebP takes milliseconds of
    /// CPU); nothing to do for an image already in this encoding.
    pub async fn transcode_off_thread(&self, image: Bytes, mime: &'static str) -> Result<Bytes, EncodeError> {
        if self.keeps(mime) {
            return Ok(image);
        }
        let encoding = *self;
        tokio::task::spawn_blocking(move || encoding.transcode(image, mime))
            .await
            .unwrap_or_else(|panic| {
                Err(EncodeError {
                    format: encoding.format,
                    source: image::ImageError::IoError(std::io::Error::other(panic)),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Bytes {
        let picture = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        });
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, image::ImageFormat::Png).unwrap();
        Bytes::from(out.into_inner())
    }

    #[test]
    fn a_png_stays_the_same_bytes_and_jpeg_and_webp_decode_at_the_same_size() {
        let source = png(64, 48);
        let same = Encoding::new(OutputFormat::Png, 100)
            .transcode(source.clone(), "image/png")
            .unwrap();
        assert_eq!(same, source);
        for format in [OutputFormat::Jpeg, OutputFormat::Webp] {
            let out = Encoding::new(format, 80)
                .transcode(source.clone(), "image/png")
                .unwrap();
            let guessed = image::guess_format(&out).unwrap();
            assert_eq!(
                guessed,
                match format {
                    OutputFormat::Jpeg => image::ImageFormat::Jpeg,
                    _ => image::ImageFormat::WebP,
                }
            );
            let decoded = image::load_from_memory(&out).unwrap();
            assert_eq!((decoded.width(), decoded.height()), (64, 48));
        }
    }

    #[test]
    fn webp_is_lossless_and_jpeg_quality_follows_output_compression() {
        let source = png(96, 96);
        let webp = Encoding::new(OutputFormat::Webp, 10)
            .transcode(source.clone(), "image/png")
            .unwrap();
        let original = image::load_from_memory(&source).unwrap().to_rgb8();
        assert_eq!(image::load_from_memory(&webp).unwrap().to_rgb8(), original);
        let small = Encoding::new(OutputFormat::Jpeg, 0)
            .transcode(source.clone(), "image/png")
            .unwrap();
        let large = Encoding::new(OutputFormat::Jpeg, 100)
            .transcode(source, "image/png")
            .unwrap();
        assert!(small.len() < large.len(), "{} < {}", small.len(), large.len());
        assert_eq!(Encoding::new(OutputFormat::Jpeg, 0).jpeg_quality, 1);
    }

    #[test]
    fn a_jpeg_preview_becomes_a_png_and_garbage_is_an_error() {
        let jpeg = Encoding::new(OutputFormat::Jpeg, 90)
            .transcode(png(32, 32), "image/png")
            .unwrap();
        let as_png = Encoding::new(OutputFormat::Png, 100)
            .transcode(jpeg.clone(), "image/jpeg")
            .unwrap();
        assert_eq!(&as_png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            Encoding::new(OutputFormat::Jpeg, 50)
                .transcode(jpeg.clone(), "image/jpeg")
                .unwrap(),
            jpeg
        );
        assert!(
            Encoding::new(OutputFormat::Webp, 100)
                .transcode(Bytes::from_static(b"not an image"), "image/jpeg")
                .is_err()
        );
    }
}
