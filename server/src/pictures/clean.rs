//! Untrusted bytes to clean pixels, synchronously (the store runs it on a blocking thread): the format
//! is sniffed from the bytes (PNG, JPEG or WebP, never what a header or a file name says), the file is
//! decoded under limits that refuse a bomb from its header alone, the EXIF orientation is applied, any
//! depth or colour model becomes 8-bit RGB (a picture) or grey with alpha (a mask), the picture is
//! scaled to the studio's cap, and the result is encoded as a PNG that carries no metadata at all.
//! Also the geometry shared by pictures and masks ([`clean_size`], [`fit`]) and the paint-over
//! picture ([`compose`]).

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngDecoder, PngEncoder};
use image::codecs::webp::WebPDecoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{
    DynamicImage, GrayAlphaImage, ImageDecoder, ImageEncoder as _, ImageError, Limits, Rgb, RgbImage,
    RgbaImage,
};
use zimage_contract::pictures::{MAX_DECODED_PIXELS, MAX_DECODED_SIDE, MAX_PICTURE_SIDE, MIN_PICTURE_SIDE};
use zimage_contract::{PictureKind, SIDE_STEP};

use super::Refusal;

/// Most memory one decode may allocate: a 100-megapixel RGB picture fits, a 16-bit RGBA one of that
/// size does not.
pub(crate) const MAX_DECODE_ALLOC: u64 = 512 * 1024 * 1024;

/// The formats the studio takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Png,
    Jpeg,
    WebP,
}

/// What a file's first bytes say it is. Formats people commonly have but the studio does not take
/// are named, so the refusal can say "a GIF" rather than "not a picture".
pub(crate) fn sniff(bytes: &[u8]) -> Result<Format, Refusal> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(Format::WebP);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Err(Refusal::Unsupported("GIF"));
    }
    if starts(b"BM") && bytes.len() >= 26 {
        return Err(Refusal::Unsupported("BMP"));
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Err(Refusal::Unsupported("TIFF"));
    }
    // ISO base media files: `....ftyp<brand>`.
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = &bytes[8..12];
        if [b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"]
            .contains(&brand.try_into().unwrap_or(&[0; 4]))
        {
            return Err(Refusal::Unsupported("HEIC"));
        }
        if brand == b"avif" || brand == b"avis" {
            return Err(Refusal::Unsupported("AVIF"));
        }
    }
    Err(Refusal::NotAPicture)
}

/// The limits every decode runs under: checked against the header before any pixel buffer exists.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    limits
}

/// A decoder whose header has been read and checked: the size is within the limits and the file is
/// not animated. Nothing of the pixels has been decoded yet.
pub(crate) struct Header<'a> {
    decoder: Box<dyn ImageDecoder + 'a>,
    format: Format,
}

impl<'a> Header<'a> {
    /// Reads and checks the header of `bytes`.
    pub(crate) fn read(bytes: &'a [u8]) -> Result<Header<'a>, Refusal> {
        let format = sniff(bytes)?;
        let cursor = Cursor::new(bytes);
        let mut decoder: Box<dyn ImageDecoder + 'a> = match format {
            Format::Png => {
                let decoder = PngDecoder::with_limits(cursor, limits()).map_err(refusal)?;
                if decoder.is_apng().map_err(refusal)? {
                    return Err(Refusal::Animated);
                }
                Box::new(decoder)
            }
            Format::Jpeg => {
                check_jpeg_is_whole(bytes)?;
                Box::new(JpegDecoder::new(cursor).map_err(refusal)?)
            }
            Format::WebP => {
                let decoder = WebPDecoder::new(cursor).map_err(refusal)?;
                if decoder.has_animation() {
                    return Err(Refusal::Animated);
                }
                Box::new(decoder)
            }
        };
        let (width, height) = decoder.dimensions();
        if width == 0 || height == 0 {
            return Err(Refusal::Unreadable("the picture has no pixels".to_owned()));
        }
        if width > MAX_DECODED_SIDE
            || height > MAX_DECODED_SIDE
            || u64::from(width) * u64::from(height) > MAX_DECODED_PIXELS
            || decoder.total_bytes() > MAX_DECODE_ALLOC
        {
            return Err(Refusal::TooLarge);
        }
        // The decoders check dimensions and allocations against these before they allocate.
        decoder.set_limits(limits()).map_err(refusal)?;
        Ok(Header { decoder, format })
    }

    /// Width and height as stored in the file (before the orientation is applied).
    pub(crate) fn dimensions(&self) -> (u32, u32) {
        self.decoder.dimensions()
    }

    /// The bytes of the decoded pixels, before any conversion.
    pub(crate) fn decoded_bytes(&self) -> u64 {
        self.decoder.total_bytes()
    }

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// Decodes the pixels as stored; answers them with the EXIF orientation (still to apply) and
    /// whether the file has an alpha channel.
    fn decode_as_stored(mut self) -> Result<(DynamicImage, Orientation, bool), Refusal> {
        let orientation = self.decoder.orientation().map_err(refusal)?;
        let has_alpha = self.decoder.color_type().has_alpha();
        let image = DynamicImage::from_decoder(self.decoder).map_err(refusal)?;
        Ok((image, orientation, has_alpha))
    }

    /// Decodes the pixels and turns them the way the EXIF orientation says.
    fn decode(self) -> Result<(DynamicImage, bool), Refusal> {
        let (mut image, orientation, has_alpha) = self.decode_as_stored()?;
        image.apply_orientation(orientation);
        Ok((image, has_alpha))
    }
}

/// Whether applying `orientation` exchanges width and height.
fn turns_sideways(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// A clean picture or mask, ready to be stored.
#[derive(Debug, Clone)]
pub(crate) struct Cleaned {
    pub(crate) png: Vec<u8>,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

/// Cleans an upload of `kind`: see the module's description.
pub(crate) fn clean(bytes: &[u8], kind: PictureKind) -> Result<Cleaned, Refusal> {
    let header = Header::read(bytes)?;
    match kind {
        PictureKind::Picture => clean_picture(header),
        PictureKind::Mask => clean_mask(header),
    }
}

fn clean_picture(header: Header<'_>) -> Result<Cleaned, Refusal> {
    let (image, orientation, has_alpha) = header.decode_as_stored()?;
    let sideways = turns_sideways(orientation);
    // The size people saw (after the turn) decides the clean size...
    let (shown_width, shown_height) = if sideways {
        (image.height(), image.width())
    } else {
        (image.width(), image.height())
    };
    let (width, height) = clean_size(shown_width, shown_height).ok_or(Refusal::TooSmall {
        width: shown_width,
        height: shown_height,
    })?;
    // ...but the picture is scaled while still stored as it was, and only the small result is
    // turned: a centred crop and a scale commute with a turn, and turning 12 megapixels costs as much
    // as decoding them.
    let (stored_width, stored_height) = if sideways {
        (height, width)
    } else {
        (width, height)
    };
    let fitted = fit(image, stored_width, stored_height);
    let rgb = if has_alpha {
        flatten(&fitted.to_rgba8())
    } else {
        fitted.into_rgb8()
    };
    let mut turned = DynamicImage::ImageRgb8(rgb);
    turned.apply_orientation(orientation);
    let turned = turned.into_rgb8();
    let png = encode_png(turned.as_raw(), width, height, image::ExtendedColorType::Rgb8)?;
    Ok(Cleaned { png, width, height })
}

fn clean_mask(header: Header<'_>) -> Result<Cleaned, Refusal> {
    if header.format() == Format::Jpeg {
        return Err(Refusal::MaskWithoutAlpha);
    }
    let (width, height) = header.dimensions();
    // A mask is drawn over a clean picture, whose sides are at most the cap (either way round).
    if width > MAX_PICTURE_SIDE || height > MAX_PICTURE_SIDE {
        return Err(Refusal::MaskTooLarge { width, height });
    }
    let (image, has_alpha) = header.decode()?;
    encode_mask(&mask_of(&image, has_alpha)?)
}

/// The size a picture's file shows, its EXIF turn applied, from its header alone.
pub(crate) fn shown_size(bytes: &[u8]) -> Result<(u32, u32), Refusal> {
    let mut header = Header::read(bytes)?;
    let orientation = header.decoder.orientation().map_err(refusal)?;
    let (width, height) = header.dimensions();
    Ok(if turns_sideways(orientation) {
        (height, width)
    } else {
        (width, height)
    })
}

/// A mask drawn over a picture as it was sent (OpenAI's edits: "the same dimensions as the image"),
/// which the studio scaled to its clean size: the mask must have the picture's `shown` size (or its
/// `clean` size already) and is scaled as the picture was, so each of its pixels still lies over the
/// same part of the picture.
pub(crate) fn clean_mask_over(
    bytes: &[u8],
    shown: (u32, u32),
    clean: (u32, u32),
) -> Result<Cleaned, Refusal> {
    let header = Header::read(bytes)?;
    if header.format() == Format::Jpeg {
        return Err(Refusal::MaskWithoutAlpha);
    }
    // Refused from the header, before any pixel is decoded, when neither way round fits.
    let (width, height) = header.dimensions();
    let fits = |size: (u32, u32)| size == (width, height) || size == (height, width);
    if !fits(shown) && !fits(clean) {
        return Err(Refusal::MaskSize {
            mask: (width, height),
            picture: shown,
        });
    }
    let (image, has_alpha) = header.decode()?;
    let size = (image.width(), image.height());
    if size != shown && size != clean {
        return Err(Refusal::MaskSize {
            mask: size,
            picture: shown,
        });
    }
    let mask = mask_of(&image, has_alpha)?;
    let fitted = fit(DynamicImage::ImageLumaA8(mask), clean.0, clean.1).into_luma_alpha8();
    encode_mask(&fitted)
}

/// The alpha of a decoded mask, refused without an alpha channel or a transparent pixel.
fn mask_of(image: &DynamicImage, has_alpha: bool) -> Result<GrayAlphaImage, Refusal> {
    if !has_alpha {
        return Err(Refusal::MaskWithoutAlpha);
    }
    let mask = alpha_of(image);
    if !mask.pixels().any(|pixel| pixel.0[1] == 0) {
        return Err(Refusal::MaskWithoutTransparency);
    }
    Ok(mask)
}

fn encode_mask(mask: &GrayAlphaImage) -> Result<Cleaned, Refusal> {
    let png = encode_png(
        mask.as_raw(),
        mask.width(),
        mask.height(),
        image::ExtendedColorType::La8,
    )?;
    Ok(Cleaned {
        png,
        width: mask.width(),
        height: mask.height(),
    })
}

/// The mask's meaning alone: black, with the upload's alpha (8-bit). Its colours meant nothing, so two
/// masks that mark the same part are the same mask.
fn alpha_of(image: &DynamicImage) -> GrayAlphaImage {
    let rgba = image.to_rgba8();
    GrayAlphaImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        image::LumaA([0, rgba.get_pixel(x, y).0[3]])
    })
}

/// Transparent parts of a picture over white: ComfyUI's `LoadImage` would otherwise keep whatever
/// colour hides under a transparent pixel.
fn flatten(rgba: &RgbaImage) -> RgbImage {
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [red, green, blue, alpha] = rgba.get_pixel(x, y).0;
        let over_white = |channel: u8| {
            let alpha = u32::from(alpha);
            ((u32::from(channel) * alpha + 255 * (255 - alpha) + 127) / 255) as u8
        };
        Rgb([over_white(red), over_white(green), over_white(blue)])
    })
}

/// The size of a clean picture made from one of `width` x `height` pixels: at most [`MAX_PICTURE_SIDE`]
/// on the longer side (never enlarged), each side rounded down to a multiple of [`SIDE_STEP`]. `None`
/// when a side would be under [`MIN_PICTURE_SIDE`].
pub fn clean_size(width: u32, height: u32) -> Option<(u32, u32)> {
    let longer = width.max(height);
    let scale = if longer > MAX_PICTURE_SIDE {
        f64::from(MAX_PICTURE_SIDE) / f64::from(longer)
    } else {
        1.0
    };
    let side = |length: u32| {
        let scaled = (f64::from(length) * scale).round() as u32;
        scaled.min(MAX_PICTURE_SIDE) / SIDE_STEP * SIDE_STEP
    };
    let (width, height) = (side(width), side(height));
    (width >= MIN_PICTURE_SIDE && height >= MIN_PICTURE_SIDE).then_some((width, height))
}

/// The centred part of `image` with the aspect of `width` x `height`, scaled to that size ("cover"):
/// nothing is stretched, the sides that do not fit are cut equally.
pub fn fit(image: DynamicImage, width: u32, height: u32) -> DynamicImage {
    let (source_width, source_height) = (image.width(), image.height());
    if (source_width, source_height) == (width, height) {
        return image;
    }
    // Compare the aspects exactly, in integers: source wider than the target cuts its sides.
    let wider = u64::from(source_width) * u64::from(height) > u64::from(source_height) * u64::from(width);
    let (crop_width, crop_height) = if wider {
        let crop_width =
            (u64::from(source_height) * u64::from(width) + u64::from(height) / 2) / u64::from(height);
        (
            u32::try_from(crop_width)
                .unwrap_or(source_width)
                .clamp(1, source_width),
            source_height,
        )
    } else {
        let crop_height =
            (u64::from(source_width) * u64::from(height) + u64::from(width) / 2) / u64::from(width);
        (
            source_width,
            u32::try_from(crop_height)
                .unwrap_or(source_height)
                .clamp(1, source_height),
        )
    };
    let (left, top) = ((source_width - crop_width) / 2, (source_height - crop_height) / 2);
    let reduced = crop_width >= width && crop_height >= height;
    if let Some(fitted) = fit_simd(
        &image,
        (left, top, crop_width, crop_height),
        width,
        height,
        reduced,
    ) {
        return fitted;
    }
    let cropped = image.crop_imm(left, top, crop_width, crop_height);
    if reduced {
        // Area averaging: quick for the large reductions of phone photos, and free of aliasing.
        cropped.thumbnail_exact(width, height)
    } else {
        cropped.resize_exact(width, height, FilterType::CatmullRom)
    }
}

/// [`fit`]'s crop and scale in one pass of `fast_image_resize`'s SIMD convolution, for the 8-bit RGB
/// and RGBA pictures that phone photos decode to: a 12-megapixel photo scales to 1024 px in a few
/// milliseconds, where the image crate's area averaging took about 130 (BENCHMARKS.md, section 13).
/// The same filters as the slow path: a box (area averaging) to reduce, Catmull-Rom to enlarge. `None`
/// for any other pixel type (masks, which are small), which takes the image crate's path.
fn fit_simd(
    image: &DynamicImage,
    (left, top, crop_width, crop_height): (u32, u32, u32, u32),
    width: u32,
    height: u32,
    reduced: bool,
) -> Option<DynamicImage> {
    use fast_image_resize::{FilterType as Filter, ResizeAlg, ResizeOptions, Resizer};
    if !matches!(image, DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_)) {
        return None;
    }
    let mut fitted = DynamicImage::new(width, height, image.color());
    let filter = if reduced { Filter::Box } else { Filter::CatmullRom };
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(filter))
        .crop(
            f64::from(left),
            f64::from(top),
            f64::from(crop_width),
            f64::from(crop_height),
        );
    match Resizer::new().resize(image, &mut fitted, &options) {
        Ok(()) => Some(fitted),
        Err(error) => {
            tracing::warn!(%error, "the quick scaling failed; scaling the slow way");
            None
        }
    }
}

/// The picture's colours with the mask as alpha (alpha 0: repaint), the one RGBA PNG ComfyUI's
/// `LoadImage` turns into the paint-over graph's IMAGE and MASK. The two must have the same size.
pub fn compose(picture: &RgbImage, mask: &GrayAlphaImage) -> Option<RgbaImage> {
    (picture.dimensions() == mask.dimensions()).then(|| {
        RgbaImage::from_fn(picture.width(), picture.height(), |x, y| {
            let [red, green, blue] = picture.get_pixel(x, y).0;
            image::Rgba([red, green, blue, mask.get_pixel(x, y).0[1]])
        })
    })
}

/// Encodes 8-bit pixels as a PNG with no ancillary chunks: no text, no time, no EXIF, no colour
/// profile. The same pixels always give the same bytes, hence the same id.
pub(crate) fn encode_png(
    pixels: &[u8],
    width: u32,
    height: u32,
    color: image::ExtendedColorType,
) -> Result<Vec<u8>, Refusal> {
    let mut png = Vec::new();
    PngEncoder::new_with_quality(&mut png, CompressionType::Fast, PngFilter::Adaptive)
        .write_image(pixels, width, height, color)
        .map_err(|error| Refusal::Unreadable(error.to_string()))?;
    Ok(png)
}

/// A decoder's complaint as a refusal: a limit reached is a bomb (or too large a picture), anything
/// else a file that cannot be read.
fn refusal(error: ImageError) -> Refusal {
    match error {
        ImageError::Limits(_) => Refusal::TooLarge,
        ImageError::Unsupported(error) => Refusal::Unreadable(error.to_string()),
        error => Refusal::Unreadable(error.to_string()),
    }
}

/// The JPEG decoder reads a cut-off file without complaint (it fills the missing part with grey), so a
/// JPEG must hold its end marker after the picture's first scan. Segments before the scan are skipped
/// by their lengths (an EXIF thumbnail has markers of its own); inside a scan `FF` is always followed
/// by `00` or a restart marker, so `FF D9` there is the end.
fn check_jpeg_is_whole(bytes: &[u8]) -> Result<(), Refusal> {
    let truncated = || Refusal::Unreadable("the JPEG file is cut off".to_owned());
    let mut at = 2;
    loop {
        // Fill bytes (`FF FF ...`) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(at), bytes.get(at + 1)) else {
            return Err(truncated());
        };
        match marker {
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            0xD9 => return Err(truncated()),
            _ => {
                let length = match (bytes.get(at + 2), bytes.get(at + 3)) {
                    (Some(&high), Some(&low)) => usize::from(u16::from_be_bytes([high, low])),
                    _ => return Err(truncated()),
                };
                at += 2 + length;
                if marker == 0xDA {
                    break;
                }
            }
        }
        if at >= bytes.len() {
            return Err(truncated());
        }
    }
    let scan = bytes.get(at..).ok_or_else(truncated)?;
    // From the end: a whole file's marker is (nearly) its last two bytes.
    if scan.windows(2).rev().any(|pair| pair == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(truncated())
    }
}
