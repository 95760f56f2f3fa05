//! SHA-256 digests of model files: the hex form the manifest, the hub and the record use, and hashing a
//! file already on disk (in a blocking thread: model files are gigabytes).

use std::fmt;
use std::io::{self, Read as _};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest written as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// Reads 64 hex digits (either case); anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        (text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    /// The digest of everything fed to `hasher`.
    pub(crate) fn from_hasher(hasher: Sha256) -> Self {
        let bytes = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in bytes {
            hex.push(char::from(HEX[usize::from(byte >> 4)]));
            hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        Self(hex)
    }

    /// The 64 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Sha256Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text).ok_or_else(|| format!("`{text}` is not a sha256 (64 hex digits)"))
    }
}

impl From<Sha256Digest> for String {
    fn from(digest: Sha256Digest) -> Self {
        digest.0
    }
}

/// Feeds the first `limit` bytes of the file at `path` (all of it when `None`) to a new hasher and
/// returns the hasher, so a download can go on from there, and the number of bytes read.
pub(crate) async fn hash_file(path: &Path, limit: Option<u64>) -> io::Result<(Sha256, u64)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || hash_file_blocking(&path, limit))
        .await
        .map_err(io::Error::other)?
}

fn hash_file_blocking(path: &Path, limit: Option<u64>) -> io::Result<(Sha256, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader = file.take(limit.unwrap_or(u64::MAX));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1 << 20];
    let mut total = 0_u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok((hasher, total));
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_digest_is_read_in_either_case_and_kept_lowercase() {
        let upper = EMPTY.to_ascii_uppercase();
        assert_eq!(Sha256Digest::parse(&upper).unwrap().as_str(), EMPTY);
    }

    #[test]
    fn anything_but_64_hex_digits_is_not_a_digest() {
        assert!(Sha256Digest::parse("abc").is_none());
        assert!(Sha256Digest::parse(&EMPTY.replace('e', "g")).is_none());
        assert!(Sha256Digest::parse(&format!("{EMPTY}0")).is_none());
        // A git blob id (40 hex digits, the ETag of a file that is not in LFS) is not a sha256.
        assert!(Sha256Digest::parse("6b0d4a4c6fc1f4f3b5a0f0a5c4a8b0d0e6b1c2d3").is_none());
    }

    #[test]
    fn the_digest_of_nothing_is_the_known_empty_hash() {
        assert_eq!(Sha256Digest::from_hasher(Sha256::new()).as_str(), EMPTY);
    }

    #[tokio::test]
    async fn hashing_a_prefix_of_a_file_equals_hashing_those_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, b"hello world").unwrap();
        let (hasher, read) = hash_file(&path, Some(5)).await.unwrap();
        assert_eq!(read, 5);
        let mut expected = Sha256::new();
        expected.update(b"hello");
        assert_eq!(
            Sha256Digest::from_hasher(hasher),
            Sha256Digest::from_hasher(expected)
        );
    }
}
