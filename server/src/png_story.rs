//! The story of an image, kept in its PNG: the prompt, seed, size, model files and the studio's version
//! as PNG text chunks, so a downloaded file still says how it was made (exiftool, PIL's
//! `Image.open(path).text`, and the "PNG info" readers of other studios show them).
//!
//! The chunks are spliced into ComfyUI's bytes right after the header chunk (IHDR), never by decoding
//! and encoding the image again: re-encoding a 1024x1024 PNG costs tens of milliseconds of CPU on the
//! path between the finished image and its announcement, while splicing copies nothing: the file is
//! written from three pieces (ComfyUI's bytes to the header's end, the text chunks, the rest). Text
//! chunks go before the image data because streaming readers (the `png` crate's `read_info`, PIL's
//! `open`) stop there. Each chunk is written, CRC included, by the `png` crate.

use bytes::Bytes;
use png::text_metadata::{EncodableTextChunk as _, ITXtChunk, TEXtChunk};

use zimage_contract::SourceInfo;

use crate::comfy::workflow::ModelFiles;
use crate::images::{ImageError, PngPieces, png_size};

/// The studio's name and version, as the `Software` chunk says it.
pub const SOFTWARE: &str = concat!("z-image-local ", env!("CARGO_PKG_VERSION"));

/// Sampling steps, as written in the `parameters` line; the workflow fixes them.
const STEPS: u32 = zimage_contract::STEPS;

/// How an image was made.
#[derive(Debug, Clone, Copy)]
pub struct ImageStory<'a> {
    pub prompt: &'a str,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    pub models: &'a ModelFiles,
    /// The picture it started from (its sha256) and how strongly.
    pub source: Option<&'a SourceInfo>,
    /// The LoRAs it was made with, in order.
    pub loras: &'a [zimage_contract::LoraChoice],
}

impl ImageStory<'_> {
    /// The text chunks, keyword and text, in the order they are written.
    ///
    /// `Description` and `Software` are PNG's registered keywords; `parameters` is the one-text summary
    /// that the "PNG info" readers of other studios parse (prompt on the first line, then `Key: value`
    /// pairs); the rest are one value each, for scripts.
    pub fn chunks(&self) -> Vec<(&'static str, String)> {
        let size = format!("{}x{}", self.width, self.height);
        let parameters = format!(
            "{prompt}\nSteps: {STEPS}, Seed: {seed}, Size: {size}, Model: {unet}, Text encoder: {text_encoder}, VAE: {vae}, Version: {SOFTWARE}",
            prompt = self.prompt,
            seed = self.seed,
            unet = self.models.unet,
            text_encoder = self.models.text_encoder,
            vae = self.models.vae,
        );
        let mut parameters = parameters;
        let mut chunks = vec![
            ("Description", self.prompt.to_owned()),
            ("Seed", self.seed.to_string()),
            ("Size", size),
            ("Model", self.models.unet.clone()),
            ("Text encoder", self.models.text_encoder.clone()),
            ("VAE", self.models.vae.clone()),
            ("Software", SOFTWARE.to_owned()),
        ];
        if let Some(source) = self.source {
            // "Denoising strength" as the other studios' readers know it from image to image.
            parameters.push_str(&format!(
                ", Denoising strength: {}, Source picture: sha256:{}{}",
                source.strength,
                source.picture,
                if source.masked { ", Masked: yes" } else { "" }
            ));
            chunks.push(("Source picture", format!("sha256:{}", source.picture)));
            chunks.push(("Strength", source.strength.to_string()));
            chunks.push(("Masked", source.masked.to_string()));
        }
        if !self.loras.is_empty() {
            let loras = self
                .loras
                .iter()
                .map(|lora| format!("{} ({})", lora.name, lora.strength))
                .collect::<Vec<_>>()
                .join(", ");
            parameters.push_str(&format!(", LoRAs: {loras}"));
            chunks.push(("LoRAs", loras));
        }
        chunks.push(("parameters", parameters));
        chunks
    }
}

/// Why a story could not be written.
#[derive(Debug, thiserror::Error)]
pub enum StoryError {
    /// The bytes are not a whole PNG (see [`png_size`]).
    #[error(transparent)]
    NotAnImage(#[from] ImageError),
    /// A chunk could not be encoded (a keyword out of PNG's rules: our bug).
    #[error("cannot encode the PNG text chunk {keyword}: {message}")]
    Encoding { keyword: &'static str, message: String },
}

/// `png` with the story's text chunks inserted after its header chunk; the image data is untouched.
pub fn with_story(png: &[u8], story: &ImageStory<'_>) -> Result<Vec<u8>, StoryError> {
    let told = story_pieces(Bytes::copy_from_slice(png), story)?;
    Ok(told.to_bytes().into())
}

/// [`with_story`] as the pieces the file is written from: ComfyUI's bytes up to the end of the header
/// chunk, the text chunks, the rest. Nothing of the image is copied: a 1024x1024 PNG is a few MiB, and
/// this runs between the finished image and its announcement.
pub fn story_pieces(png: Bytes, story: &ImageStory<'_>) -> Result<PngPieces, StoryError> {
    // Checks the signature, the header and the chunk chain up to IEND.
    png_size(&png)?;
    // Signature (8) + IHDR: length (4, always 13), type (4), data (13), CRC (4).
    const AFTER_HEADER: usize = 8 + 4 + 4 + 13 + 4;
    if png.get(8..12) != Some(&[0, 0, 0, 13][..]) {
        return Err(ImageError::Undecodable("the PNG header chunk has the wrong length".to_owned()).into());
    }
    if png.len() < AFTER_HEADER {
        return Err(ImageError::NotPng.into());
    }
    let mut chunks = Vec::with_capacity(1024);
    for (keyword, text) in story.chunks() {
        encode_text(&mut chunks, keyword, text)?;
    }
    Ok(PngPieces::spliced(png, AFTER_HEADER, Bytes::from(chunks)))
}

/// One text chunk: `tEXt` (Latin-1, read by every tool) when the text is plain ASCII, `iTXt` (UTF-8)
/// otherwise, so a Chinese prompt survives intact. (Latin-1 beyond ASCII would fit `tEXt` too, but
/// tools differ in how they show it; UTF-8 is read the same everywhere.)
fn encode_text(out: &mut Vec<u8>, keyword: &'static str, text: String) -> Result<(), StoryError> {
    let encoded = if text.is_ascii() {
        TEXtChunk::new(keyword, text).encode(out)
    } else {
        ITXtChunk::new(keyword, text).encode(out)
    };
    encoded.map_err(|error| StoryError::Encoding {
        keyword,
        message: error.to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test unwraps: a failure there is the test failing"
    )]

    use std::collections::BTreeMap;

    use super::*;

    fn models() -> ModelFiles {
        ModelFiles {
            unet: "z_image_turbo-Q8_0.gguf".to_owned(),
            text_encoder: "Qwen3-4B-Q4_K_M.gguf".to_owned(),
            vae: "ae.safetensors".to_owned(),
        }
    }

    /// A small real PNG, as the `image` crate encodes one.
    fn sample_png(width: u32, height: u32) -> Vec<u8> {
        let pixels = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut png = Vec::new();
        pixels
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    }

    /// Every text chunk of `png`, as the `png` crate's decoder reads them (Latin-1 and UTF-8 apart),
    /// after checking that the whole image still decodes (every CRC is checked on the way).
    fn read_texts(png: &[u8]) -> (BTreeMap<String, String>, BTreeMap<String, String>, (u32, u32)) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let frame = reader.next_frame(&mut pixels).unwrap();
        let info = reader.info();
        let latin1 = info
            .uncompressed_latin1_text
            .iter()
            .map(|chunk| (chunk.keyword.clone(), chunk.text.clone()))
            .collect();
        let utf8 = info
            .utf8_text
            .iter()
            .map(|chunk| (chunk.keyword.clone(), chunk.get_text().unwrap()))
            .collect();
        (latin1, utf8, (frame.width, frame.height))
    }

    #[test]
    fn the_story_is_read_back_and_the_pixels_are_untouched() {
        let png = sample_png(48, 32);
        let models = models();
        let story = ImageStory {
            prompt: "a red fox in snow",
            seed: 42,
            width: 48,
            height: 32,
            models: &models,
            source: None,
            loras: &[],
        };
        let told = with_story(&png, &story).unwrap();
        let (latin1, utf8, size) = read_texts(&told);
        assert_eq!(size, (48, 32));
        assert!(utf8.is_empty(), "plain ASCII goes in tEXt: {utf8:?}");
        assert_eq!(latin1["Description"], "a red fox in snow");
        assert_eq!(latin1["Seed"], "42");
        assert_eq!(latin1["Size"], "48x32");
        assert_eq!(latin1["Model"], "z_image_turbo-Q8_0.gguf");
        assert_eq!(latin1["Text encoder"], "Qwen3-4B-Q4_K_M.gguf");
        assert_eq!(latin1["VAE"], "ae.safetensors");
        assert_eq!(latin1["Software"], SOFTWARE);
        assert!(SOFTWARE.ends_with(env!("CARGO_PKG_VERSION")));
        assert_eq!(
            latin1["parameters"],
            format!(
                "a red fox in snow\nSteps: 8, Seed: 42, Size: 48x32, Model: z_image_turbo-Q8_0.gguf, \
                 Text encoder: Qwen3-4B-Q4_K_M.gguf, VAE: ae.safetensors, Version: {SOFTWARE}"
            )
        );
        // The same pixels as before.
        let before = image::load_from_memory(&png).unwrap().into_rgb8();
        let after = image::load_from_memory(&told).unwrap().into_rgb8();
        assert_eq!(before, after);
        // The chunks went after the header, before the image data.
        assert_eq!(&told[..33], &png[..33]);
        assert_eq!(&told[37..41], b"tEXt");
    }

    #[test]
    fn the_loras_are_told_with_their_strengths() {
        let png = sample_png(16, 16);
        let models = models();
        let loras = [
            zimage_contract::LoraChoice {
                name: "styles/ink.safetensors".to_owned(),
                strength: 0.8,
            },
            zimage_contract::LoraChoice {
                name: "b.safetensors".to_owned(),
                strength: 1.0,
            },
        ];
        let story = ImageStory {
            prompt: "a fox in ink",
            seed: 7,
            width: 16,
            height: 16,
            models: &models,
            source: None,
            loras: &loras,
        };
        let (latin1, _, _) = read_texts(&with_story(&png, &story).unwrap());
        assert_eq!(latin1["LoRAs"], "styles/ink.safetensors (0.8), b.safetensors (1)");
        assert!(
            latin1["parameters"].ends_with(", LoRAs: styles/ink.safetensors (0.8), b.safetensors (1)"),
            "{}",
            latin1["parameters"]
        );
    }

    #[test]
    fn a_picture_it_started_from_is_named_by_its_hash_with_the_strength() {
        let png = sample_png(16, 16);
        let models = models();
        let source = SourceInfo {
            picture: "ab".repeat(32),
            strength: 0.45,
            masked: true,
        };
        let story = ImageStory {
            prompt: "the sky repainted",
            seed: 7,
            width: 16,
            height: 16,
            models: &models,
            source: Some(&source),
            loras: &[],
        };
        let (latin1, _, _) = read_texts(&with_story(&png, &story).unwrap());
        assert_eq!(latin1["Source picture"], format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(latin1["Strength"], "0.45");
        assert_eq!(latin1["Masked"], "true");
        assert!(
            latin1["parameters"].ends_with(&format!(
                "Denoising strength: 0.45, Source picture: sha256:{}, Masked: yes",
                "ab".repeat(32)
            )),
            "{}",
            latin1["parameters"]
        );
    }

    #[test]
    fn the_pieces_are_the_told_png_and_share_comfyuis_bytes() {
        let png = Bytes::from(sample_png(48, 32));
        let models = models();
        let story = ImageStory {
            prompt: "a heron, ink wash",
            seed: 7,
            width: 48,
            height: 32,
            models: &models,
            source: None,
            loras: &[],
        };
        let pieces = story_pieces(png.clone(), &story).unwrap();
        assert_eq!(pieces.to_bytes(), with_story(&png, &story).unwrap());
        assert_eq!(pieces.size().unwrap(), (48, 32));
        // The image's bytes are ComfyUI's own, not a copy.
        let parts: Vec<&[u8]> = pieces.pieces().collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].as_ptr(), png.as_ptr());
        assert_eq!(parts[2].as_ptr(), png[33..].as_ptr());
    }

    #[test]
    fn a_chinese_prompt_survives_in_utf8() {
        let png = sample_png(16, 16);
        let models = models();
        let prompt = "雪地里的一只红狐狸，电影感光线";
        let story = ImageStory {
            prompt,
            seed: (1 << 53) - 1,
            width: 16,
            height: 16,
            models: &models,
            source: None,
            loras: &[],
        };
        let (latin1, utf8, _) = read_texts(&with_story(&png, &story).unwrap());
        assert_eq!(utf8["Description"], prompt);
        assert!(utf8["parameters"].starts_with(&format!("{prompt}\nSteps: 8, Seed: 9007199254740991,")));
        assert!(!latin1.contains_key("Description"), "not also as mangled Latin-1");
        assert_eq!(latin1["Seed"], "9007199254740991");
    }

    #[test]
    fn what_is_not_a_whole_png_is_refused() {
        let models = models();
        let story = ImageStory {
            prompt: "x",
            seed: 1,
            width: 16,
            height: 16,
            models: &models,
            source: None,
            loras: &[],
        };
        let png = sample_png(16, 16);
        for broken in [&b"GIF89a"[..], &png[..20], &png[..png.len() - 6]] {
            assert!(matches!(
                with_story(broken, &story),
                Err(StoryError::NotAnImage(_))
            ));
        }
    }
}
