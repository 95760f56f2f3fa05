//! Image store: finished images as `<data>/images/<job id>.png`, each with a small JPEG thumbnail made
//! once, when a gallery first asks for it (phones browse the gallery over Wi-Fi). Files are named by job
//! id only.
//!
//! Storing only checks the PNG's structure and writes it: decoding a 1024x1024 image and making its
//! thumbnail costs tens of milliseconds of CPU, which on a small machine would delay the finished
//! image's own download. The thumbnail is made on a low-priority thread, one at a time.
//!
//! Every write is durable (see `atomic_file`); a thumbnail never outlives its image, even when the
//! image is deleted while its thumbnail is being made. Images without a history record are moved into
//! [`LOST_AND_FOUND`] by `storage::recover`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Held while a thumbnail is made: one at a time, so a gallery full of new images asked for by
    /// several phones at once costs each thumbnail once.
    making_thumbnail: Arc<tokio::sync::Mutex<()>>,
    /// Held while an image's files are removed, and while a thumbnail is written after checking that
    /// its image is still there: without it a thumbnail made from an image deleted meanwhile would be
    /// written after the delete, and come back.
    changing_files: Arc<tokio::sync::Mutex<()>>,
    /// The image saved last, until its first read: whoever made it fetches it right after `completed`,
    /// and gets it from memory instead of from the file just written. One image at most, let go at
    /// that read (or at the next save), so it costs no memory for long.
    just_saved: Arc<std::sync::Mutex<Option<(JobId, PngPieces)>>>,
    /// Stops thumbnail making between the decode and the write (the race test).
    #[cfg(test)]
    thumbnail_gate: Option<Arc<tests::Gate>>,
}

/// A file in the image folder, as [`ImageStore::files`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredFile {
    pub id: JobId,
    pub variant: Variant,
}

/// The folder (inside the image folder, so that moving into it is a rename on the same file system)
/// where start-up recovery puts images that have no history record.
pub const LOST_AND_FOUND: &str = "lost+found";

impl ImageStore {
    /// Opens (creating if needed) the image folder. Leftovers of a crash are tidied by
    /// `storage::recover`, not here.
    pub async fn open(dir: &Path) -> Result<ImageStore, ImageError> {
        atomic_file::create_dir(dir).await?;
        Ok(ImageStore {
            dir: dir.to_owned(),
            making_thumbnail: Arc::new(tokio::sync::Mutex::new(())),
            changing_files: Arc::new(tokio::sync::Mutex::new(())),
            just_saved: Arc::default(),
            #[cfg(test)]
            thumbnail_gate: None,
        })
    }

    /// The image folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that `png` is a whole PNG (see [`png_size`]) and stores it durably. Returns the image's
    /// size.
    pub async fn store(&self, id: JobId, png: Bytes) -> Result<(u32, u32), ImageError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let (staged, size) = store.stage_blocking(id, &PngPieces::from(png))?;
            staged.commit_blocking()?;
            Ok(size)
        })
        .await
        .map_err(io::Error::other)?
    }

    /// The first half of [`ImageStore::store`], on the calling thread (a blocking one): the checked PNG
    /// written under a temporary name, and its size; committing it puts it in place and flushes it. An
    /// image's name is its job's, new, and start-up moves an image without a record aside, so it is
    /// written as a new file ([`atomic_file::stage_new_blocking`]: one disk flush, not two).
    pub(crate) fn stage_blocking(
        &self,
        id: JobId,
        png: &PngPieces,
    ) -> Result<(atomic_file::Staged, (u32, u32)), ImageError> {
        let size = png.size()?;
        let pieces: Vec<&[u8]> = png.pieces().collect();
        let staged = atomic_file::stage_new_blocking(&self.path(id, Variant::Full), &pieces)?;
        Ok((staged, size))
    }

    /// The bytes of a stored image, or `None` when there is none by that id. A thumbnail asked for the
    /// first time is made now, and kept.
    pub async fn read(&self, id: JobId, variant: Variant) -> Result<Option<Bytes>, ImageError> {
        if variant == Variant::Full {
            return Ok(self.read_full(id).await?.map(|png| png.to_bytes()));
        }
        self.read_stored(id, variant).await
    }

    /// The full image as the pieces it was written from while it is held since its save (its first
    /// read, the download after `completed`, sends them without joining a few MiB into one buffer),
    /// else as one piece from the disk.
    pub async fn read_full(&self, id: JobId) -> Result<Option<PngPieces>, ImageError> {
        if let Some(png) = self.take_just_saved(id) {
            return Ok(Some(png));
        }
        Ok(self.read_stored(id, Variant::Full).await?.map(PngPieces::from))
    }

    async fn read_stored(&self, id: JobId, variant: Variant) -> Result<Option<Bytes>, ImageError> {
        match read_file(&self.path(id, variant)).await? {
            None if variant == Variant::Thumbnail => self.make_thumbnail(id).await,
            read => Ok(read),
        }
    }

    /// Keeps `png`, just saved as the image of `id`, for its first read ([`ImageStore::read`]).
    pub(crate) fn hold_just_saved(&self, id: JobId, png: PngPieces) {
        *self.just_saved() = Some((id, png));
    }

    /// The image held since its save, if it is `id`'s; it is let go.
    fn take_just_saved(&self, id: JobId) -> Option<PngPieces> {
        let mut held = self.just_saved();
        match &*held {
            Some((held_id, _)) if *held_id == id => held.take().map(|(_, png)| png),
            _ => None,
        }
    }

    // A poisoned lock only means a thread panicked while it swapped the slot; the slot is still whole.
    fn just_saved(&self) -> std::sync::MutexGuard<'_, Option<(JobId, PngPieces)>> {
        self.just_saved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes, stores and returns the thumbnail of a stored image; `None` when there is no image.
    async fn make_thumbnail(&self, id: JobId) -> Result<Option<Bytes>, ImageError> {
        let _one_at_a_time = self.making_thumbnail.lock().await;
        let path = self.path(id, Variant::Thumbnail);
        // Another request may have made it while this one waited.
        if let Some(thumbnail) = read_file(&path).await? {
            return Ok(Some(thumbnail));
        }
        let full = self.path(id, Variant::Full);
        let Some(png) = read_file(&full).await? else {
            return Ok(None);
        };
        let (_, thumbnail) = in_background(move || make_thumbnail(&png)).await??;
        let thumbnail = Bytes::from(thumbnail);
        #[cfg(test)]
        if let Some(gate) = &self.thumbnail_gate {
            gate.pass().await;
        }
        let _no_removal = self.changing_files.lock().await;
        if !tokio::fs::try_exists(&full).await? {
            // Deleted while the thumbnail was made.
            return Ok(None);
        }
        atomic_file::write_bytes(&path, thumbnail.clone()).await?;
        Ok(Some(thumbnail))
    }

    /// Deletes both files of an image, durably; a missing file is not an error.
    pub async fn remove(&self, id: JobId) -> Result<(), ImageError> {
        let _no_thumbnail_write = self.changing_files.lock().await;
        self.take_just_saved(id);
        for variant in [Variant::Full, Variant::Thumbnail] {
            atomic_file::remove(&self.path(id, variant)).await?;
        }
        Ok(())
    }

    /// [`ImageStore::remove`] on the calling thread, which must be a blocking one (not the runtime's).
    pub(crate) fn remove_blocking(&self, id: JobId) -> Result<(), ImageError> {
        let _no_thumbnail_write = self.changing_files.blocking_lock();
        self.take_just_saved(id);
        for variant in [Variant::Full, Variant::Thumbnail] {
            atomic_file::remove_blocking(&self.path(id, variant))?;
        }
        Ok(())
    }

    /// Every image file in the folder (temporaries, the lost and found and foreign files left out).
    pub async fn files(&self) -> Result<Vec<StoredFile>, ImageError> {
        // One blocking pass with std's reader: tokio's hands each batch of 32 names to a blocking
        // thread, which at 100,000 images was most of a start-up's recovery.
        let dir = self.dir.clone();
        let names = tokio::task::spawn_blocking(move || {
            std::fs::read_dir(dir)?
                .map(|entry| entry.map(|entry| entry.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .await
        .map_err(io::Error::other)??;
        Ok(names
            .iter()
            .filter_map(|name| name.to_str())
            .filter_map(|name| {
                if let Some(id) = name.strip_suffix(".thumb.jpg") {
                    id.parse().ok().map(|id| StoredFile {
                        id,
                        variant: Variant::Thumbnail,
                    })
                } else {
                    name.strip_suffix(".png")?.parse().ok().map(|id| StoredFile {
                        id,
                        variant: Variant::Full,
                    })
                }
            })
            .collect())
    }

    /// Moves an image into the lost and found (and deletes its thumbnail), durably; the path it now
    /// has. Start-up recovery's answer to an image without a record: keeping it costs a rename, and
    /// the GPU's work stays for a person to find.
    pub async fn move_aside(&self, id: JobId) -> Result<PathBuf, ImageError> {
        let _no_thumbnail_write = self.changing_files.lock().await;
        let aside = self.dir.join(LOST_AND_FOUND);
        atomic_file::create_dir(&aside).await?;
        let to = aside.join(format!("{id}.png"));
        atomic_file::rename(&self.path(id, Variant::Full), &to).await?;
        atomic_file::remove(&self.path(id, Variant::Thumbnail)).await?;
        Ok(to)
    }

    fn path(&self, id: JobId, variant: Variant) -> PathBuf {
        match variant {
            Variant::Full => self.dir.join(format!("{id}.png")),
            Variant::Thumbnail => self.dir.join(format!("{id}.thumb.jpg")),
        }
    }
}

/// Runs CPU-heavy work on a thread of its own at a lower scheduling priority: decoding a 1024x1024 PNG
/// and making its thumbnail takes tens of milliseconds of CPU, and on a small machine that must not
/// delay the other requests served meanwhile (images, event streams).
async fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ImageError> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("zimage-thumbnail".to_owned())
        .spawn(move || {
            // Linux keeps a nice value per thread. Best effort: without it only the latency suffers.
            let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), BACKGROUND_NICE);
            let _ = sender.send(work());
        })?;
    receiver
        .await
        .map_err(|_| ImageError::Undecodable("the thumbnail thread stopped".to_owned()))
}

/// The nice value of background image work (0 is normal, 19 the lowest priority).
const BACKGROUND_NICE: i32 = 10;

/// A finished image's bytes as pieces written one after another: ComfyUI's PNG with the story's text
/// chunks spliced in after its header (`png_story`) is stored without first copying a few MiB of
/// image into one buffer. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PngPieces(Vec<Bytes>);

impl PngPieces {
    /// `png` with `inserted` put in at byte `at` (the end, if `at` is past it).
    pub fn spliced(png: Bytes, at: usize, inserted: Bytes) -> PngPieces {
        let at = at.min(png.len());
        PngPieces(vec![png.slice(..at), inserted, png.slice(at..)])
    }

    /// The number of bytes, all pieces together.
    pub fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(|piece| &piece[..])
    }

    /// The pieces themselves, in order (each shares its buffer: nothing is copied).
    pub fn into_pieces(self) -> Vec<Bytes> {
        self.0
    }

    /// The bytes in one buffer (a copy, unless there is only one piece).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0[..] {
            [] => Bytes::new(),
            [one] => one.clone(),
            pieces => Bytes::from(pieces.concat()),
        }
    }

    /// Checks that the pieces together are a whole PNG; its size (see [`png_size`]).
    pub fn size(&self) -> Result<(u32, u32), ImageError> {
        walk_png(self)
    }
}

impl From<Bytes> for PngPieces {
    fn from(png: Bytes) -> PngPieces {
        PngPieces(vec![png])
    }
}

/// Bytes that can be read at any offset: one buffer, or pieces.
trait ReadAt {
    /// Fills `out` with the bytes at `at`; `None` when they run out first.
    fn read_at(&self, at: usize, out: &mut [u8]) -> Option<()>;
    fn total(&self) -> usize;
}

impl ReadAt for [u8] {
    fn read_at(&self, at: usize, out: &mut [u8]) -> Option<()> {
        out.copy_from_slice(self.get(at..at.checked_add(out.len())?)?);
        Some(())
    }

    fn total(&self) -> usize {
        self.len()
    }
}

impl ReadAt for PngPieces {
    fn read_at(&self, mut at: usize, out: &mut [u8]) -> Option<()> {
        let mut filled = 0;
        for piece in &self.0 {
            if filled == out.len() {
                break;
            }
            if at >= piece.len() {
                at -= piece.len();
                continue;
            }
            let take = (piece.len() - at).min(out.len() - filled);
            out[filled..filled + take].copy_from_slice(&piece[at..at + take]);
            filled += take;
            at = 0;
        }
        (filled == out.len()).then_some(())
    }

    fn total(&self) -> usize {
        self.len()
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Checks that `png` is a whole PNG without decoding it (the signature, a header chunk (IHDR) with a
/// size, and a chain of chunks that ends with IEND within the bytes, so a cut download fails) and
/// returns its size. Microseconds: cheap enough for the moment a finished image is announced.
pub fn png_size(png: &[u8]) -> Result<(u32, u32), ImageError> {
    walk_png(png)
}

fn walk_png(png: &(impl ReadAt + ?Sized)) -> Result<(u32, u32), ImageError> {
    let mut signature = [0; 8];
    if png.read_at(0, &mut signature).is_none() || signature != PNG_SIGNATURE {
        return Err(ImageError::NotPng);
    }
    let broken = |what: &str| ImageError::Undecodable(format!("the PNG {what}"));
    let four = |at: usize| -> Option<[u8; 4]> {
        let mut bytes = [0; 4];
        png.read_at(at, &mut bytes).map(|()| bytes)
    };
    let number = |at: usize| four(at).map(u32::from_be_bytes);
    // The signature is followed by the IHDR chunk: length 13, type, width, height (big-endian).
    let size = match (four(12), number(16), number(20)) {
        (Some(kind), Some(width), Some(height)) if &kind == b"IHDR" && width > 0 && height > 0 => {
            (width, height)
        }
        _ => return Err(broken("has no valid header")),
    };
    // Then chunks, each: length, type, data, CRC.
    let mut at = PNG_SIGNATURE.len();
    loop {
        let length = number(at).ok_or_else(|| broken("is cut short"))? as usize;
        let kind = four(at + 4).ok_or_else(|| broken("is cut short"))?;
        let end = length
            .checked_add(at + 12)
            .filter(|end| *end <= png.total())
            .ok_or_else(|| broken("is cut short"))?;
        if &kind == b"IEND" {
            return Ok(size);
        }
        at = end;
    }
}

/// A whole file, or `None` when it does not exist.
async fn read_file(path: &Path) -> Result<Option<Bytes>, ImageError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(Bytes::from(bytes))),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error.into()),
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
    // The picture's aspect within THUMBNAIL_SIDE, scaled by the pictures' SIMD path (a 1024 px image
    // in about a millisecond, where the image crate's area averaging took most of the thumbnail's time).
    let (width, height) = size;
    let longer = width.max(height).max(1);
    let side = |length: u32| {
        (u64::from(length) * u64::from(THUMBNAIL_SIDE.min(longer)) / u64::from(longer)).max(1) as u32
    };
    let thumbnail = crate::pictures::fit(decoded, side(width), side(height)).into_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, THUMBNAIL_QUALITY)
        .encode_image(&thumbnail)
        .map_err(|error| ImageError::Undecodable(error.to_string()))?;
    Ok((size, jpeg))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A point where a test stops thumbnail making until it lets it go on.
    #[derive(Debug, Default)]
    pub(super) struct Gate {
        reached: tokio::sync::Notify,
        release: tokio::sync::Notify,
    }

    impl Gate {
        pub(super) async fn pass(&self) {
            self.reached.notify_one();
            self.release.notified().await;
        }
    }

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
    fn the_size_is_read_from_the_png_header_and_a_cut_png_is_refused() {
        let image = png(320, 256);
        assert_eq!(png_size(&image).unwrap(), (320, 256));
        assert!(matches!(png_size(b"<html>"), Err(ImageError::NotPng)));
        for cut in [20, 40, image.len() / 2, image.len() - 1] {
            assert!(
                matches!(png_size(&image[..cut]), Err(ImageError::Undecodable(_))),
                "{cut}"
            );
        }
    }

    #[test]
    fn pieces_are_checked_as_the_png_they_make_together() {
        let image = png(320, 256);
        // A whole chunk (length 0, type, CRC) put in after the header, as a story is.
        let chunk = Bytes::from_static(b"\0\0\0\0zzZz\0\0\0\0");
        for at in [33, image.len() - 12] {
            let pieces = PngPieces::spliced(image.clone(), at, chunk.clone());
            assert_eq!(pieces.len(), image.len() + chunk.len());
            assert_eq!(pieces.size().unwrap(), (320, 256), "{at}");
            let joined = pieces.to_bytes();
            assert_eq!(png_size(&joined).unwrap(), (320, 256));
            assert_eq!(&joined[..at], &image[..at]);
            assert_eq!(&joined[at + chunk.len()..], &image[at..]);
        }
        // Cut anywhere, in any piece, the pieces are refused as one cut PNG would be.
        for cut in [20, 40, image.len() / 2, image.len() - 1] {
            let pieces = PngPieces::spliced(image.slice(..cut), 33.min(cut), chunk.clone());
            assert!(pieces.size().is_err(), "{cut}");
        }
        assert!(matches!(
            PngPieces::from(Bytes::from_static(b"<html>")).size(),
            Err(ImageError::NotPng)
        ));
        assert!(PngPieces::default().is_empty());
    }

    #[tokio::test]
    async fn a_thumbnail_is_made_once_on_first_request_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).await.unwrap();
        let id = JobId::new();
        store.store(id, png(512, 512)).await.unwrap();
        let thumbnail_path = store.path(id, Variant::Thumbnail);
        assert!(!thumbnail_path.exists(), "storing makes no thumbnail");
        let (first, second) = tokio::join!(
            store.read(id, Variant::Thumbnail),
            store.read(id, Variant::Thumbnail)
        );
        assert_eq!(first.unwrap().unwrap(), second.unwrap().unwrap());
        assert!(thumbnail_path.exists());
        assert!(
            store
                .read(JobId::new(), Variant::Thumbnail)
                .await
                .unwrap()
                .is_none()
        );
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

    #[tokio::test]
    async fn a_thumbnail_made_while_its_image_is_deleted_does_not_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ImageStore::open(dir.path()).await.unwrap();
        let gate = Arc::new(Gate::default());
        store.thumbnail_gate = Some(Arc::clone(&gate));
        let id = JobId::new();
        store.store(id, png(256, 256)).await.unwrap();
        let making = tokio::spawn({
            let store = store.clone();
            async move { store.read(id, Variant::Thumbnail).await }
        });
        // The thumbnail is made from the image read before the delete, and not yet written.
        gate.reached.notified().await;
        store.remove(id).await.unwrap();
        gate.release.notify_one();
        assert!(making.await.unwrap().unwrap().is_none());
        assert!(!store.path(id, Variant::Thumbnail).exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[tokio::test]
    async fn the_folder_lists_images_and_thumbnails_by_id_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).await.unwrap();
        let (first, second) = (JobId::new(), JobId::new());
        store.store(first, png(32, 32)).await.unwrap();
        store.store(second, png(32, 32)).await.unwrap();
        store.read(second, Variant::Thumbnail).await.unwrap().unwrap();
        std::fs::write(dir.path().join("notes.png"), b"not an id").unwrap();
        std::fs::write(dir.path().join(format!(".{first}.png.x.tmp")), b"half").unwrap();
        let mut files = store.files().await.unwrap();
        files.sort_by_key(|file| (file.id, file.variant == Variant::Thumbnail));
        assert_eq!(
            files,
            vec![
                StoredFile {
                    id: first,
                    variant: Variant::Full
                },
                StoredFile {
                    id: second,
                    variant: Variant::Full
                },
                StoredFile {
                    id: second,
                    variant: Variant::Thumbnail
                },
            ]
        );
    }

    #[tokio::test]
    async fn an_image_moved_aside_leaves_the_store_for_the_lost_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).await.unwrap();
        let id = JobId::new();
        let original = png(32, 32);
        store.store(id, original.clone()).await.unwrap();
        store.read(id, Variant::Thumbnail).await.unwrap().unwrap();
        let aside = store.move_aside(id).await.unwrap();
        assert_eq!(aside, dir.path().join(LOST_AND_FOUND).join(format!("{id}.png")));
        assert_eq!(std::fs::read(&aside).unwrap(), original);
        assert!(store.files().await.unwrap().is_empty());
        assert!(store.read(id, Variant::Full).await.unwrap().is_none());
    }
}
