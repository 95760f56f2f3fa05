//! The pictures the simulator "generates": a deterministic pattern derived from the KSampler seed,
//! encoded as real PNGs (SaveImage) and small JPEGs (live previews), and SaveImage's file naming.
//! A graph that starts from a picture (LoadImage -> VAEEncode) gets the pattern mixed into that
//! picture as much as the sampler's `denoise` says, and only where the noise mask is set, so a test
//! can tell from the output which picture was used and which part was painted over.

use std::io::Cursor;
use std::path::{Component, Path, PathBuf};

use std::sync::Arc;

use image::{GrayImage, ImageFormat, RgbImage};

/// How an image value was produced; pixels are computed only when something is saved or sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Recipe {
    /// VAEDecode of a sampled latent: the seed pattern.
    Sampled {
        width: u32,
        height: u32,
        seed: u64,
    },
    /// EmptyImage: one colour (0xRRGGBB).
    Solid {
        width: u32,
        height: u32,
        color: u32,
    },
    Inverted(Box<Recipe>),
    /// The colour cast of the LoRAs the sampling model carried: visibly not the plain pattern.
    Tinted {
        inner: Box<Recipe>,
        tint: Tint,
    },
    /// ImageBlur: the simulator keeps the picture as is (the pattern has no detail worth blurring).
    Blurred(Box<Recipe>),
    Scaled {
        inner: Box<Recipe>,
        width: u32,
        height: u32,
    },
    /// VAEDecode of a latent sampled from a picture: each pixel the picture's, moved towards the seed
    /// pattern by `strength` (the denoise) times the mask (255: repaint; no mask: everywhere).
    Blended {
        width: u32,
        height: u32,
        seed: u64,
        picture: Arc<RgbImage>,
        mask: Option<Arc<GrayImage>>,
        strength: f32,
    },
}

impl Recipe {
    pub(crate) fn size(&self) -> (u32, u32) {
        match self {
            Recipe::Sampled { width, height, .. }
            | Recipe::Solid { width, height, .. }
            | Recipe::Scaled { width, height, .. }
            | Recipe::Blended { width, height, .. } => (*width, *height),
            Recipe::Inverted(inner) | Recipe::Blurred(inner) => inner.size(),
            Recipe::Tinted { inner, .. } => inner.size(),
        }
    }

    /// The colour of one pixel of image `index` of a batch.
    fn pixel(&self, index: u32, x: u32, y: u32) -> [u8; 3] {
        match self {
            Recipe::Sampled { width, height, seed } => {
                seed_pixel(seed.wrapping_add(u64::from(index)), x, y, *width, *height)
            }
            Recipe::Solid { color, .. } => {
                let [_, r, g, b] = color.to_be_bytes();
                [r, g, b]
            }
            Recipe::Inverted(inner) => inner.pixel(index, x, y).map(|c| 255 - c),
            Recipe::Blurred(inner) => inner.pixel(index, x, y),
            Recipe::Tinted { inner, tint } => {
                let plain = inner.pixel(index, x, y);
                std::array::from_fn(|channel| {
                    let mixed = f32::from(plain[channel]) * (1.0 - tint.weight)
                        + f32::from(tint.color[channel]) * tint.weight;
                    mixed.round().clamp(0.0, 255.0) as u8
                })
            }
            Recipe::Scaled { inner, width, height } => {
                let (inner_width, inner_height) = inner.size();
                let sx = scale_coordinate(x, *width, inner_width);
                let sy = scale_coordinate(y, *height, inner_height);
                inner.pixel(index, sx, sy)
            }
            Recipe::Blended {
                width,
                height,
                seed,
                picture,
                mask,
                strength,
            } => {
                let pattern = seed_pixel(seed.wrapping_add(u64::from(index)), x, y, *width, *height);
                if picture.width() == 0 || picture.height() == 0 {
                    return pattern;
                }
                let (px, py) = (x.min(picture.width() - 1), y.min(picture.height() - 1));
                let original = picture.get_pixel(px, py).0;
                let masked = mask.as_ref().map_or(1.0, |mask| {
                    let (mx, my) = (
                        scale_coordinate(x, *width, mask.width()),
                        scale_coordinate(y, *height, mask.height()),
                    );
                    f32::from(mask.get_pixel(mx, my).0[0]) / 255.0
                });
                let weight = (strength * masked).clamp(0.0, 1.0);
                std::array::from_fn(|channel| {
                    let mixed =
                        f32::from(original[channel]) * (1.0 - weight) + f32::from(pattern[channel]) * weight;
                    mixed.round().clamp(0.0, 255.0) as u8
                })
            }
        }
    }

    /// Renders image `index` of a batch at its full size.
    pub(crate) fn render(&self, index: u32) -> RgbImage {
        let (width, height) = self.size();
        RgbImage::from_fn(width.max(1), height.max(1), |x, y| {
            image::Rgb(self.pixel(index, x, y))
        })
    }
}

/// A colour cast: each pixel moved `weight` of the way to `color`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Tint {
    pub(crate) color: [u8; 3],
    pub(crate) weight: f32,
}

/// What the LoRAs (name, strength) do to the simulator's images: a colour from each name's hash
/// (its complement for a negative strength), mixed by strength, moving pixels up to 60% of the way
/// (a quarter per unit of strength). No LoRA, or strengths of zero: no cast.
pub(crate) fn lora_tint(loras: &[(String, f64)]) -> Option<Tint> {
    let total: f64 = loras.iter().map(|(_, strength)| strength.abs()).sum();
    if !total.is_finite() || total <= 0.0 {
        return None;
    }
    let mut sums = [0.0f64; 3];
    for (name, strength) in loras {
        // FNV-1a: the same name gives the same colour in every run.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        let bytes = hash.to_be_bytes();
        for (channel, sum) in sums.iter_mut().enumerate() {
            let value = f64::from(bytes[channel]);
            let value = if *strength < 0.0 { 255.0 - value } else { value };
            *sum += value * strength.abs();
        }
    }
    Some(Tint {
        color: sums.map(|sum| (sum / total).round().clamp(0.0, 255.0) as u8),
        weight: (total * 0.25).min(0.6) as f32,
    })
}

/// LoadImage: the file's picture and its mask, 255 where the file is transparent (to repaint), as
/// ComfyUI makes `1 - alpha`. A file without alpha has a mask of zeros. The error is PIL's sentence.
pub(crate) fn load_picture(path: Option<&Path>) -> Result<(RgbImage, GrayImage), String> {
    let shown = path.map_or_else(String::new, |path| path.display().to_string());
    let bytes = path
        .and_then(|path| std::fs::read(path).ok())
        .ok_or_else(|| format!("[Errno 2] No such file or directory: '{shown}'"))?;
    let decoded =
        image::load_from_memory(&bytes).map_err(|_| format!("cannot identify image file '{shown}'"))?;
    let has_alpha = decoded.color().has_alpha();
    let rgba = decoded.to_rgba8();
    let mask = GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        image::Luma([if has_alpha {
            255 - rgba.get_pixel(x, y).0[3]
        } else {
            0
        }])
    });
    Ok((decoded.to_rgb8(), mask))
}

/// The centred `width` x `height` part of `picture` (VAEEncode keeps whole multiples of 8).
pub(crate) fn crop_centre(picture: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (x, y) = (
        (picture.width() - width.min(picture.width())) / 2,
        (picture.height() - height.min(picture.height())) / 2,
    );
    image::imageops::crop_imm(picture, x, y, width, height).to_image()
}

fn scale_coordinate(v: u32, to: u32, from: u32) -> u32 {
    if to == 0 || from == 0 {
        return 0;
    }
    let scaled = u64::from(v) * u64::from(from) / u64::from(to);
    u32::try_from(scaled).unwrap_or(u32::MAX).min(from - 1)
}

/// The pixel at (x, y) of the picture a KSampler with this seed produces in a width x height image:
/// a diagonal gradient whose colours and direction come from the seed. Tests may recompute it.
pub fn seed_pixel(seed: u64, x: u32, y: u32, width: u32, height: u32) -> [u8; 3] {
    let mix = splitmix64(seed);
    let [r0, g0, b0, flip, ..] = mix.to_le_bytes();
    let fx = u64::from(x) * 255 / u64::from(width.max(2) - 1);
    let fy = u64::from(y) * 255 / u64::from(height.max(2) - 1);
    let (fx, fy) = if flip & 1 == 1 {
        (255 - fx.min(255), fy)
    } else {
        (fx, fy)
    };
    let byte = |v: u64| u8::try_from(v.min(255)).unwrap_or(u8::MAX);
    [
        byte(fx).wrapping_add(r0),
        byte(fy).wrapping_add(g0),
        byte((fx + fy) / 2) ^ b0,
    ]
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// PNG bytes of an image.
pub(crate) fn encode_png(image: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, ImageFormat::Png)?;
    Ok(out.into_inner())
}

/// The JPEG preview sent after sampling step `step` of `steps`: the final picture fading in from
/// noise, at most 64 px on its longer side (ComfyUI bounds previews by `--preview-size`).
pub(crate) fn preview_jpeg(
    width: u32,
    height: u32,
    seed: u64,
    step: u32,
    steps: u32,
) -> Result<Vec<u8>, image::ImageError> {
    const LONGEST: u32 = 64;
    let longest = width.max(height).max(1);
    let pw = (u64::from(width) * u64::from(LONGEST) / u64::from(longest)).max(1);
    let ph = (u64::from(height) * u64::from(LONGEST) / u64::from(longest)).max(1);
    let pw = u32::try_from(pw).unwrap_or(LONGEST);
    let ph = u32::try_from(ph).unwrap_or(LONGEST);
    let done = f64::from(step) / f64::from(steps.max(1));
    let preview = RgbImage::from_fn(pw, ph, |x, y| {
        let target = seed_pixel(seed, x * width / pw, y * height / ph, width, height);
        let noise = splitmix64(seed ^ (u64::from(x) << 32 | u64::from(y)) ^ u64::from(step)).to_le_bytes();
        let blend = |i: usize| {
            let mixed = f64::from(target[i]) * done + f64::from(noise[i]) * (1.0 - done);
            mixed.round().clamp(0.0, 255.0) as u8
        };
        image::Rgb([blend(0), blend(1), blend(2)])
    });
    let mut out = Cursor::new(Vec::new());
    preview.write_to(&mut out, ImageFormat::Jpeg)?;
    Ok(out.into_inner())
}

/// Where SaveImage writes: the folder, the base name, the first free counter and the subfolder
/// reported to clients (nodes.py `SaveImage.save_images` + folder_paths `get_save_image_path`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SaveTarget {
    pub(crate) folder: PathBuf,
    pub(crate) filename: String,
    pub(crate) counter: u32,
    pub(crate) subfolder: String,
}

/// Resolves a `filename_prefix` under `output_dir`; the error is ComfyUI's exception text.
pub(crate) fn save_target(
    output_dir: &Path,
    prefix: &str,
    width: u32,
    height: u32,
) -> Result<SaveTarget, String> {
    let prefix = prefix
        .replace("%width%", &width.to_string())
        .replace("%height%", &height.to_string());
    let normalized = normalize(Path::new(&prefix));
    let subfolder = normalized
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let filename = normalized
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = normalize(&output_dir.join(&subfolder));
    if !folder.starts_with(output_dir) {
        return Err(format!(
            "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: {}\n         output_dir: {}\n         commonpath: {}",
            folder.display(),
            output_dir.display(),
            common_path(&folder, output_dir).display()
        ));
    }
    let counter = next_counter(&folder, &filename);
    Ok(SaveTarget {
        folder,
        filename,
        counter,
        subfolder,
    })
}

/// The highest `<filename>_<NNNNN>_...` counter already in the folder, plus one.
fn next_counter(folder: &Path, filename: &str) -> u32 {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 1;
    };
    let prefix_len = filename.chars().count();
    let mut highest: Option<u32> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let chars: Vec<char> = name.chars().collect();
        if chars.len() <= prefix_len || chars[prefix_len] != '_' {
            continue;
        }
        let head: String = chars[..prefix_len].iter().collect();
        if head != filename {
            continue;
        }
        let rest: String = chars[prefix_len + 1..].iter().collect();
        let digits = rest
            .split('_')
            .next()
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(0);
        highest = Some(highest.map_or(digits, |h| h.max(digits)));
    }
    highest.map_or(1, |h| h.saturating_add(1))
}

/// `os.path.normpath` without touching the file system: drops `.`, folds `..`.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn common_path(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.as_os_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_picture_and_another_seed_another() {
        let a = Recipe::Sampled {
            width: 32,
            height: 16,
            seed: 42,
        }
        .render(0);
        let b = Recipe::Sampled {
            width: 32,
            height: 16,
            seed: 42,
        }
        .render(0);
        let c = Recipe::Sampled {
            width: 32,
            height: 16,
            seed: 43,
        }
        .render(0);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.dimensions(), (32, 16));
        assert_eq!(a.get_pixel(5, 7).0, seed_pixel(42, 5, 7, 32, 16));
    }

    #[test]
    fn png_bytes_decode_back_to_the_requested_size() {
        let image = Recipe::Sampled {
            width: 48,
            height: 80,
            seed: 7,
        }
        .render(0);
        let png = encode_png(&image).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        let decoded = image::load_from_memory(&png).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (48, 80));
    }

    #[test]
    fn previews_are_small_jpegs() {
        let jpeg = preview_jpeg(1024, 576, 1, 3, 8).unwrap();
        assert_eq!(&jpeg[..2], b"\xff\xd8");
        let decoded = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (64, 36));
    }

    #[test]
    fn inverting_a_solid_colour_inverts_each_channel() {
        let solid = Recipe::Solid {
            width: 2,
            height: 2,
            color: 0xFF0080,
        };
        assert_eq!(solid.render(0).get_pixel(0, 0).0, [255, 0, 128]);
        assert_eq!(
            Recipe::Inverted(Box::new(solid)).render(0).get_pixel(1, 1).0,
            [0, 255, 127]
        );
    }

    #[test]
    fn a_prefix_with_a_folder_saves_in_a_subfolder_and_counts_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = save_target(dir.path(), "zimage/gen", 8, 8).unwrap();
        assert_eq!(target.subfolder, "zimage");
        assert_eq!(target.filename, "gen");
        assert_eq!(target.counter, 1);
        std::fs::create_dir_all(dir.path().join("zimage")).unwrap();
        std::fs::write(dir.path().join("zimage/gen_00007_.png"), b"x").unwrap();
        std::fs::write(dir.path().join("zimage/generic_00050_.png"), b"x").unwrap();
        assert_eq!(save_target(dir.path(), "zimage/gen", 8, 8).unwrap().counter, 8);
    }

    #[test]
    fn a_prefix_that_climbs_out_of_the_output_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let error = save_target(dir.path(), "../escape", 8, 8).unwrap_err();
        assert!(error.starts_with("**** ERROR: Saving image outside the output folder is not allowed."));
        assert!(save_target(dir.path(), "a/../../b", 8, 8).is_err());
        assert!(save_target(dir.path(), "a/../b", 8, 8).is_ok());
    }

    #[test]
    fn size_placeholders_in_the_prefix_are_filled() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            save_target(dir.path(), "img_%width%x%height%", 64, 32)
                .unwrap()
                .filename,
            "img_64x32"
        );
    }
}
