//! The pictures a job may start from, and the masks that say which part of one to paint over: untrusted
//! uploads become clean PNGs (`clean.rs`), kept once each under `<data>/pictures/<sha256>.png`; a job's
//! `source` becomes a checked [`Source`]; and [`PictureStore::prepare`] makes the one PNG that goes to
//! ComfyUI for a job of a given size.
//!
//! Decoding is CPU and memory work on blocking threads. Each upload first reads its header alone (cheap,
//! and enough to refuse a bomb), then waits for its share of a fixed memory budget before its pixels
//! are decoded, so ten 12-megapixel photos arriving at once take turns instead of taking the memory.

mod clean;
pub mod sweep;

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use image::codecs::png::PngDecoder;
use image::{ColorType, DynamicImage, ImageDecoder as _};
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;
use zimage_contract::pictures::{DEFAULT_MASKED_STRENGTH, DEFAULT_STRENGTH, MAX_STRENGTH, MIN_STRENGTH};
use zimage_contract::{PictureKind, PictureUploaded, SourceInfo, SourceRequest};

use crate::atomic_file;

pub use clean::{clean_size, compose, fit};

/// Uploads whose bodies are read at once (at most 25 MiB each). Those beyond wait, their bytes left
/// in the network's buffers, so ten phones at once are fine and a thousand requests cannot fill the
/// memory with bodies.
pub const MAX_UPLOADS_READ_AT_ONCE: usize = 16;

/// Memory the decodes of uploads may use together. A 12-megapixel JPEG needs about 130 MiB while it
/// is decoded, turned and scaled, so about six decode at once and the others wait.
pub const DECODE_MEMORY_BUDGET: u64 = 768 * 1024 * 1024;

/// A stored picture's id: the sha256 of its clean PNG.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PictureId([u8; 32]);

impl PictureId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> PictureId {
        PictureId(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase hexadecimal digits, the only form a client's id ever takes.
    pub fn parse(text: &str) -> Option<PictureId> {
        let lowercase_hex =
            text.len() == 64 && text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'));
        if !lowercase_hex {
            return None;
        }
        let mut digest = [0; 32];
        hex::decode_to_slice(text, &mut digest).ok()?;
        Some(PictureId(digest))
    }

    /// The id as written on the wire and in file names.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for PictureId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PictureId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "PictureId({})", self.to_hex())
    }
}

/// The request field a refusal is about, as the error answer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The body of `POST /api/pictures`.
    Picture,
    /// The body of `POST /api/pictures?kind=mask`.
    Mask,
    SourcePicture,
    SourceMask,
    SourceStrength,
}

impl Field {
    /// The field's name in the error answer.
    pub fn name(self) -> &'static str {
        match self {
            Field::Picture => "picture",
            Field::Mask => "mask",
            Field::SourcePicture => "source.picture",
            Field::SourceMask => "source.mask",
            Field::SourceStrength => "source.strength",
        }
    }

    /// The field of an upload of `kind`.
    pub fn of_upload(kind: PictureKind) -> Field {
        match kind {
            PictureKind::Picture => Field::Picture,
            PictureKind::Mask => Field::Mask,
        }
    }
}

/// Why a picture, a mask or a source is refused. The routes turn each into a 4xx in the request's
/// language; these English descriptions are for logs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the bytes are not a PNG, JPEG or WebP picture")]
    NotAPicture,
    #[error("{0} files are not accepted")]
    Unsupported(&'static str),
    #[error("animated pictures are not accepted")]
    Animated,
    #[error("the file cannot be read: {0}")]
    Unreadable(String),
    #[error("the picture is larger than the studio decodes")]
    TooLarge,
    #[error("the picture ({width} x {height}) is too small")]
    TooSmall { width: u32, height: u32 },
    #[error("the mask has no alpha channel")]
    MaskWithoutAlpha,
    #[error("the mask has no transparent pixel")]
    MaskWithoutTransparency,
    #[error("the mask ({width} x {height}) is larger than any picture")]
    MaskTooLarge { width: u32, height: u32 },
    #[error("no picture has this id")]
    Unknown,
    #[error("this id is a {found:?}, not a {expected:?}")]
    WrongKind {
        expected: PictureKind,
        found: PictureKind,
    },
    #[error("the mask is {mask:?}, the picture {picture:?}")]
    MaskSize { mask: (u32, u32), picture: (u32, u32) },
    #[error("the strength must be between {MIN_STRENGTH} and {MAX_STRENGTH}")]
    Strength,
}

impl Refusal {
    /// Whether the refusal is about what the bytes are (415) rather than what they hold (422).
    pub fn is_unsupported_media(&self) -> bool {
        matches!(self, Refusal::NotAPicture | Refusal::Unsupported(_))
    }
}

/// Everything taking, checking or preparing a picture can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PictureError {
    #[error("{}: {refusal}", field.name())]
    Refused { field: Field, refusal: Refusal },
    /// The data folder cannot be read or written.
    #[error("cannot keep the picture: {0}")]
    Storage(#[source] io::Error),
    /// A decoder panicked or its thread was lost: our bug, not the client's.
    #[error("the picture's work stopped: {0}")]
    Internal(String),
}

impl PictureError {
    fn refused(field: Field, refusal: Refusal) -> PictureError {
        PictureError::Refused { field, refusal }
    }
}

/// A stored clean picture or mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: PictureId,
    pub width: u32,
    pub height: u32,
    pub kind: PictureKind,
}

impl From<Stored> for PictureUploaded {
    fn from(stored: Stored) -> PictureUploaded {
        PictureUploaded {
            id: stored.id.to_hex(),
            width: stored.width,
            height: stored.height,
            kind: stored.kind,
        }
    }
}

/// How much of the picture may change: the sampler's `denoise`, [`MIN_STRENGTH`] to [`MAX_STRENGTH`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strength(f32);

impl Strength {
    /// The request's strength, or the default (higher with a mask: the painted part is made anew).
    pub fn parse(value: Option<f32>, masked: bool) -> Result<Strength, PictureError> {
        let value = value.unwrap_or(if masked {
            DEFAULT_MASKED_STRENGTH
        } else {
            DEFAULT_STRENGTH
        });
        // Also refuses NaN and the infinities (a JSON number beyond f32's range becomes one).
        if (MIN_STRENGTH..=MAX_STRENGTH).contains(&value) {
            Ok(Strength(value))
        } else {
            Err(PictureError::refused(Field::SourceStrength, Refusal::Strength))
        }
    }

    pub fn get(self) -> f32 {
        self.0
    }
}

/// A job's checked source: a stored picture, the strength, and a stored mask of the picture's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Source {
    pub picture: PictureId,
    pub strength: Strength,
    pub mask: Option<PictureId>,
    /// The clean picture's size: a job given no size has this one.
    pub width: u32,
    pub height: u32,
}

impl Source {
    /// The request that resolves to this source again (for a journal: a restarted gateway checks the
    /// kept pictures anew with [`PictureStore::resolve`]).
    pub fn request(&self) -> SourceRequest {
        SourceRequest {
            picture: self.picture.to_hex(),
            strength: Some(self.strength.get()),
            mask: self.mask.map(PictureId::to_hex),
        }
    }

    /// What the job's view and record show.
    pub fn info(&self) -> SourceInfo {
        SourceInfo {
            picture: self.picture.to_hex(),
            strength: self.strength.get(),
            masked: self.mask.is_some(),
        }
    }
}

/// The PNG to give ComfyUI for one job: the picture fitted to the job's size, with the mask as its
/// alpha channel when there is one (alpha 0: repaint).
#[derive(Debug, Clone)]
pub struct PreparedSource {
    pub png: Bytes,
    /// The sha256 of `png`, in hexadecimal.
    pub digest: String,
    pub width: u32,
    pub height: u32,
    /// The sampler's `denoise`.
    pub strength: f32,
    /// Whether `png` carries a mask (the paint-over graph) or not (image to image).
    pub masked: bool,
}

/// A turn to read one upload's body (see [`PictureStore::reading_turn`]).
#[derive(Debug)]
pub struct ReadingTurn(#[allow(dead_code, reason = "held for its drop")] tokio::sync::OwnedSemaphorePermit);

/// The folder of clean pictures and the decoding budget; cloning is cheap.
#[derive(Clone)]
pub struct PictureStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// One permit per MiB of [`DECODE_MEMORY_BUDGET`] (or the test's budget).
    memory: Arc<Semaphore>,
    budget_mib: u32,
    /// One permit per upload whose body is being read or cleaned ([`MAX_UPLOADS_READ_AT_ONCE`]).
    reading: Arc<Semaphore>,
    /// Uploads waiting for their share of the budget now (the tests watch it).
    waiting: std::sync::atomic::AtomicUsize,
    /// Writers of one id take turns, so a picture sent by ten phones at once is written once.
    writing: Mutex<HashMap<PictureId, Arc<tokio::sync::Mutex<()>>>>,
    /// Refreshing a picture's age (shared) and the sweep's last look before it removes one (alone)
    /// exclude each other: see `sweep.rs`.
    freshness: tokio::sync::RwLock<()>,
}

impl PictureStore {
    /// Opens (creating it if needed) the folder `dir` and removes temporaries a crash left there.
    pub async fn open(dir: &Path) -> io::Result<PictureStore> {
        PictureStore::open_with_budget(dir, DECODE_MEMORY_BUDGET).await
    }

    /// [`PictureStore::open`] with another memory budget for decoding (bytes).
    pub async fn open_with_budget(dir: &Path, budget: u64) -> io::Result<PictureStore> {
        atomic_file::create_dir(dir).await?;
        atomic_file::sweep_temporaries(dir).await?;
        let budget_mib = u32::try_from(budget / (1024 * 1024)).unwrap_or(u32::MAX).max(1);
        Ok(PictureStore {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                memory: Arc::new(Semaphore::new(budget_mib as usize)),
                budget_mib,
                reading: Arc::new(Semaphore::new(MAX_UPLOADS_READ_AT_ONCE)),
                waiting: std::sync::atomic::AtomicUsize::new(0),
                writing: Mutex::new(HashMap::new()),
                freshness: tokio::sync::RwLock::new(()),
            }),
        })
    }

    /// Where the clean PNG of `id` is kept.
    pub fn path(&self, id: PictureId) -> PathBuf {
        self.inner.dir.join(format!("{id}.png"))
    }

    /// Waits for a turn to read an upload's body; the turn lasts as long as the value is kept (hold it
    /// until [`PictureStore::upload`] answers).
    pub async fn reading_turn(&self) -> Result<ReadingTurn, PictureError> {
        Arc::clone(&self.inner.reading)
            .acquire_owned()
            .await
            .map(ReadingTurn)
            .map_err(|_| PictureError::Internal("the upload turns are closed".to_owned()))
    }

    /// Takes an upload's untrusted bytes: checks, cleans and keeps them (once, however many times and
    /// however concurrently the same picture arrives). Refusals name `picture` or `mask`.
    pub async fn upload(&self, bytes: Bytes, kind: PictureKind) -> Result<Stored, PictureError> {
        self.take(bytes, kind, move |bytes| clean::clean(bytes, kind))
            .await
    }

    /// Takes a mask drawn over `picture` as it was sent, the bytes of a picture already taken whose
    /// clean size is `clean`: OpenAI's edits send a mask of the picture's own size, which the studio
    /// scales with it (see `clean::clean_mask_over`). A mask of another size is refused (`mask`).
    pub async fn upload_mask_over(
        &self,
        bytes: Bytes,
        picture: Bytes,
        size: (u32, u32),
    ) -> Result<Stored, PictureError> {
        let shown = blocking(move || clean::shown_size(&picture))
            .await?
            .map_err(|refusal| PictureError::refused(Field::Picture, refusal))?;
        self.take(bytes, PictureKind::Mask, move |bytes| {
            clean::clean_mask_over(bytes, shown, size)
        })
        .await
    }

    /// Checks the header, waits for the decode's share of the memory budget, cleans with `cleaner` and
    /// keeps the result.
    async fn take(
        &self,
        bytes: Bytes,
        kind: PictureKind,
        cleaner: impl FnOnce(&[u8]) -> Result<clean::Cleaned, Refusal> + Send + 'static,
    ) -> Result<Stored, PictureError> {
        let field = Field::of_upload(kind);
        let refused = |refusal| PictureError::refused(field, refusal);
        // The header alone first: a bomb is refused here, before it waits for or takes any memory.
        let probe = bytes.clone();
        let cost = blocking(move || {
            let header = clean::Header::read(&probe)?;
            let (width, height) = header.dimensions();
            let pixels = u64::from(width) * u64::from(height);
            // The decoded pixels, an 8-bit RGBA copy of them (conversion, orientation), the input.
            Ok::<u64, Refusal>(header.decoded_bytes().saturating_mul(2) + pixels * 4 + probe.len() as u64)
        })
        .await?
        .map_err(refused)?;
        let mib = u32::try_from(cost.div_ceil(1024 * 1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.inner.budget_mib);
        self.inner.waiting.fetch_add(1, Ordering::SeqCst);
        let permit = Arc::clone(&self.inner.memory).acquire_many_owned(mib).await;
        self.inner.waiting.fetch_sub(1, Ordering::SeqCst);
        let permit =
            permit.map_err(|_| PictureError::Internal("the decoding budget is closed".to_owned()))?;
        // The permit travels with the work: a client that hangs up does not free memory still in use.
        let cleaned = blocking(move || {
            let _permit = permit;
            cleaner(&bytes)
        })
        .await?
        .map_err(refused)?;
        let id = PictureId::of(&cleaned.png);
        self.keep(id, cleaned.png).await?;
        tracing::debug!(%id, width = cleaned.width, height = cleaned.height, ?kind, "picture kept");
        Ok(Stored {
            id,
            width: cleaned.width,
            height: cleaned.height,
            kind,
        })
    }

    /// Writes a clean PNG under its id unless it is there already.
    async fn keep(&self, id: PictureId, png: Vec<u8>) -> Result<(), PictureError> {
        let turn = {
            let mut writing = lock(&self.inner.writing);
            Arc::clone(writing.entry(id).or_default())
        };
        let result = {
            let _turn = turn.lock().await;
            // Kept already: sent again, it is young again (the sweep spares it for its grace).
            match self.refresh(id).await {
                Ok(true) => Ok(()),
                Ok(false) => atomic_file::write_bytes(&self.path(id), Bytes::from(png)).await,
                Err(error) => Err(error),
            }
        };
        {
            let mut writing = lock(&self.inner.writing);
            // Ours and the map's: nobody else waits for this id.
            if Arc::strong_count(&turn) == 2 {
                writing.remove(&id);
            }
        }
        result.map_err(PictureError::Storage)
    }

    /// Makes a kept picture young again (its file's modification time is now), so the sweep spares it
    /// for its grace; false when it is not kept. Holds the freshness lock (shared): a sweep never
    /// removes a picture between this and its own last look (see `sweep.rs`).
    async fn refresh(&self, id: PictureId) -> io::Result<bool> {
        let _fresh = self.inner.freshness.read().await;
        let path = self.path(id);
        blocking(move || match std::fs::File::open(&path) {
            Ok(file) => {
                if let Err(error) = file.set_modified(SystemTime::now()) {
                    // The picture stays usable; only the sweep may take it sooner than it should.
                    tracing::warn!(path = %path.display(), %error, "cannot refresh a picture's age");
                }
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        })
        .await
        .map_err(|error| io::Error::other(error.to_string()))?
    }

    /// Every kept picture and mask with its age (temporaries and strangers in the folder are left out).
    pub async fn list(&self) -> io::Result<Vec<sweep::Listed>> {
        let dir = self.inner.dir.clone();
        blocking(move || {
            let mut listed = Vec::new();
            for file in std::fs::read_dir(&dir)? {
                let file = file?;
                let name = file.file_name();
                let Some(id) = name
                    .to_str()
                    .and_then(|name| name.strip_suffix(".png"))
                    .and_then(PictureId::parse)
                else {
                    continue;
                };
                match file.metadata().and_then(|metadata| metadata.modified()) {
                    Ok(fresh_at) => listed.push(sweep::Listed { id, fresh_at }),
                    // Removed since the listing: nothing to sweep.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
            Ok(listed)
        })
        .await
        .map_err(|error| io::Error::other(error.to_string()))?
    }

    /// Removes the picture `id` if it is still older than `grace` at `now`, looking at its age again
    /// with the freshness lock held alone; whether it was removed.
    pub async fn remove_if_old(&self, id: PictureId, now: SystemTime, grace: Duration) -> io::Result<bool> {
        let _alone = self.inner.freshness.write().await;
        let path = self.path(id);
        let fresh_at = match tokio::fs::metadata(&path)
            .await
            .and_then(|metadata| metadata.modified())
        {
            Ok(fresh_at) => fresh_at,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        if !sweep::is_old(fresh_at, now, grace) {
            return Ok(false);
        }
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The clean PNG of `id`, if one is kept.
    pub async fn read(&self, id: PictureId) -> io::Result<Option<Bytes>> {
        match tokio::fs::read(self.path(id)).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Checks a job's `source`: the picture and the mask exist and are of their kinds, the mask has the
    /// picture's size, the strength is in range (its default depends on the mask).
    pub async fn resolve(&self, request: &SourceRequest) -> Result<Source, PictureError> {
        let picture = PictureId::parse(&request.picture)
            .ok_or(PictureError::refused(Field::SourcePicture, Refusal::Unknown))?;
        let mask = match &request.mask {
            Some(mask) => Some(
                PictureId::parse(mask).ok_or(PictureError::refused(Field::SourceMask, Refusal::Unknown))?,
            ),
            None => None,
        };
        let strength = Strength::parse(request.strength, mask.is_some())?;
        // Named by a job, the pictures are young again before the job is written to the journal: a
        // sweep running now spares them (see `sweep.rs`).
        for (id, field) in [(Some(picture), Field::SourcePicture), (mask, Field::SourceMask)] {
            if let Some(id) = id
                && !self.refresh(id).await.map_err(PictureError::Storage)?
            {
                return Err(PictureError::refused(field, Refusal::Unknown));
            }
        }
        let (width, height) = self
            .describe(picture, PictureKind::Picture, Field::SourcePicture)
            .await?;
        if let Some(mask) = mask {
            let size = self.describe(mask, PictureKind::Mask, Field::SourceMask).await?;
            if size != (width, height) {
                return Err(PictureError::refused(
                    Field::SourceMask,
                    Refusal::MaskSize {
                        mask: size,
                        picture: (width, height),
                    },
                ));
            }
        }
        Ok(Source {
            picture,
            strength,
            mask,
            width,
            height,
        })
    }

    /// The size of a kept picture of `kind`, from its header (pictures are RGB, masks grey and alpha).
    async fn describe(
        &self,
        id: PictureId,
        kind: PictureKind,
        field: Field,
    ) -> Result<(u32, u32), PictureError> {
        let bytes = self
            .read(id)
            .await
            .map_err(PictureError::Storage)?
            .ok_or(PictureError::refused(field, Refusal::Unknown))?;
        let decoder = PngDecoder::new(io::Cursor::new(&bytes[..])).map_err(|error| {
            PictureError::Storage(io::Error::new(io::ErrorKind::InvalidData, error.to_string()))
        })?;
        let found = if decoder.color_type() == ColorType::La8 {
            PictureKind::Mask
        } else {
            PictureKind::Picture
        };
        if found != kind {
            return Err(PictureError::refused(
                field,
                Refusal::WrongKind {
                    expected: kind,
                    found,
                },
            ));
        }
        Ok(decoder.dimensions())
    }

    /// The PNG to upload to ComfyUI for a job of `width` x `height` started from `source` (see
    /// [`PreparedSource`]). A picture of the job's size without a mask goes as it is kept.
    pub async fn prepare(
        &self,
        source: &Source,
        width: u32,
        height: u32,
    ) -> Result<PreparedSource, PictureError> {
        let missing = |field| PictureError::refused(field, Refusal::Unknown);
        let picture = self
            .read(source.picture)
            .await
            .map_err(PictureError::Storage)?
            .ok_or(missing(Field::SourcePicture))?;
        let mask = match source.mask {
            Some(mask) => Some(
                self.read(mask)
                    .await
                    .map_err(PictureError::Storage)?
                    .ok_or(missing(Field::SourceMask))?,
            ),
            None => None,
        };
        let masked = mask.is_some();
        let png = if mask.is_none() && (source.width, source.height) == (width, height) {
            picture
        } else {
            blocking(move || prepare_blocking(&picture, mask.as_deref(), width, height))
                .await?
                .map_err(PictureError::Storage)?
        };
        Ok(PreparedSource {
            digest: hex::encode(Sha256::digest(&png)),
            png,
            width,
            height,
            strength: source.strength.get(),
            masked,
        })
    }
}

fn prepare_blocking(picture: &[u8], mask: Option<&[u8]>, width: u32, height: u32) -> io::Result<Bytes> {
    let load = |bytes: &[u8]| {
        image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))
    };
    let picture = fit(load(picture)?, width, height).into_rgb8();
    let encoded = match mask {
        None => clean::encode_png(picture.as_raw(), width, height, image::ExtendedColorType::Rgb8),
        Some(mask) => {
            let mask = fit(
                DynamicImage::ImageLumaA8(load(mask)?.into_luma_alpha8()),
                width,
                height,
            )
            .into_luma_alpha8();
            let composed = compose(&picture, &mask).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the mask and the picture differ in size",
                )
            })?;
            clean::encode_png(composed.as_raw(), width, height, image::ExtendedColorType::Rgba8)
        }
    };
    encoded
        .map(Bytes::from)
        .map_err(|refusal| io::Error::new(io::ErrorKind::InvalidData, refusal.to_string()))
}

/// Runs CPU work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, PictureError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| PictureError::Internal(error.to_string()))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
