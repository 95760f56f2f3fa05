//! The access secret and what is derived from it: checking an attempt in constant time, and session
//! tokens that prove a browser signed in.
//!
//! Sessions are signed, not stored: a token is `v1.<expiry>.<nonce>.<mac>`, its MAC keyed by both the
//! secret and a random key kept in the data folder. So sessions survive a restart, changing the secret
//! signs every device out, and a token seen on the network does not let anyone test guesses of the
//! secret offline.

use std::fmt;
use std::io::{self, Write as _};
use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

use super::decode_hex;

type HmacSha256 = Hmac<Sha256>;

/// The name of the key file in the data folder.
pub const KEY_FILE: &str = "access.key";
/// How long a browser stays signed in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Secrets shorter than this get a warning at start-up.
pub const SHORT_SECRET: usize = 12;

/// The access secret as configured. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from configuration: surrounding whitespace (a file's final newline) is not part of
    /// it, and an empty secret is no secret.
    pub fn new(text: &str) -> Option<Secret> {
        let trimmed = text.trim();
        (!trimmed.is_empty()).then(|| Secret(trimmed.to_owned()))
    }

    /// True for the empty setting (`ZIMAGE_PASSWORD=`), which means no secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret itself, to send it (`zimage generate`'s bearer token); never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters, for the start-up warning about short secrets.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    /// The setting as given, trimmed; it may be empty (see [`Secret::is_empty`]).
    fn from_str(text: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret(text.trim().to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret(…)")
    }
}

/// Everything derived from the secret that the door needs; the secret itself is not kept.
#[derive(Clone)]
pub struct SessionKeys {
    /// Keys the MAC of session tokens.
    session_key: [u8; 32],
    /// Keys the check of attempts.
    check_key: [u8; 32],
    /// The MAC of the secret under `check_key`; an attempt must produce the same.
    secret_check: [u8; 32],
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SessionKeys(…)")
    }
}

impl SessionKeys {
    /// Derives the keys from the secret and the installation's random key.
    pub fn new(secret: &Secret, install_key: &[u8; 32]) -> SessionKeys {
        let session_key = mac(install_key, &[b"zimage session v1\0", secret.0.as_bytes()]);
        let check_key = mac(install_key, &[b"zimage check v1\0"]);
        let secret_check = mac(&check_key, &[secret.0.as_bytes()]);
        SessionKeys {
            session_key,
            check_key,
            secret_check,
        }
    }

    /// True when `attempt` is the secret. Both sides are MACed first, so the comparison is between
    /// equal-length values, and it runs in constant time.
    pub fn is_secret(&self, attempt: &str) -> bool {
        let mut check = new_mac(&self.check_key);
        check.update(attempt.trim().as_bytes());
        check.verify_slice(&self.secret_check).is_ok()
    }

    /// A new session token valid until `now_s + lifetime` (seconds since the Unix epoch).
    pub fn issue(&self, now_s: u64, lifetime: Duration) -> String {
        let mut nonce = [0; 16];
        rand::rng().fill_bytes(&mut nonce);
        let body = format!(
            "v1.{}.{}",
            now_s.saturating_add(lifetime.as_secs()),
            hex::encode(nonce)
        );
        let tag = mac(&self.session_key, &[body.as_bytes()]);
        format!("{body}.{}", hex::encode(tag))
    }

    /// True when `token` was issued with this secret and has not expired at `now_s`.
    pub fn verify(&self, token: &str, now_s: u64) -> bool {
        let Some((body, tag)) = token.rsplit_once('.') else {
            return false;
        };
        let Some(tag) = decode_hex::<32>(tag) else {
            return false;
        };
        let mut parts = body.split('.');
        let (Some("v1"), Some(expiry), Some(nonce), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        if decode_hex::<16>(nonce).is_none()
            || expiry.is_empty()
            || !expiry.bytes().all(|b| b.is_ascii_digit())
        {
            return false;
        }
        let mut check = new_mac(&self.session_key);
        check.update(body.as_bytes());
        // Constant time: the MAC is checked before the expiry is looked at.
        check.verify_slice(&tag).is_ok() && expiry.parse::<u64>().is_ok_and(|expiry| expiry > now_s)
    }
}

/// Reads the installation's random key from `dir`, creating it (readable by this user only) on the
/// first start.
///
/// The key is written whole or not at all (a temporary file in the same folder, flushed, renamed over
/// the name, and the folder flushed), so a crash never leaves half a key behind. A key file of the
/// wrong length (from an older version that wrote in place and crashed, or damaged otherwise) is
/// replaced by a new key, with a warning: the sessions it signed cannot be checked any more anyway,
/// so every device signs in again, and the owner is never kept out by a file they must find and
/// delete. A key file that cannot be read at all (permissions, I/O errors) is an error, never
/// overwritten.
pub async fn load_or_create_install_key(dir: &Path) -> io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    match tokio::fs::read(&path).await {
        Ok(bytes) => match <[u8; 32]>::try_from(bytes.as_slice()) {
            Ok(key) => Ok(key),
            Err(_) => {
                tracing::warn!(
                    path = %path.display(),
                    length = bytes.len(),
                    "the session key is damaged (not 32 bytes); replacing it: every device must sign in again"
                );
                write_new_key(dir, Replace::Damaged).await
            }
        },
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            tokio::fs::create_dir_all(dir).await?;
            write_new_key(dir, Replace::Nothing).await
        }
        Err(error) => Err(error),
    }
}

/// What a new key may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// Nothing: if another process made a key meanwhile, that one is used.
    Nothing,
    /// A damaged key file.
    Damaged,
}

async fn write_new_key(dir: &Path, replace: Replace) -> io::Result<[u8; 32]> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        // `tempfile` creates the file readable and writable by its owner only. Its name is hidden and
        // ends in `.tmp`, like the other temporaries of the data folder.
        let mut file = tempfile::Builder::new()
            .prefix(&format!(".{KEY_FILE}."))
            .suffix(".tmp")
            .tempfile_in(&dir)?;
        file.write_all(&key)?;
        file.as_file().sync_all()?;
        let path = dir.join(KEY_FILE);
        match replace {
            Replace::Damaged => {
                file.persist(&path).map_err(|error| error.error)?;
            }
            Replace::Nothing => match file.persist_noclobber(&path) {
                Ok(_) => {}
                Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
                    // Two starts raced; the first key written is everyone's.
                    let bytes = std::fs::read(&path)?;
                    return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "the session key is damaged")
                    });
                }
                Err(error) => return Err(error.error),
            },
        }
        sync_folder(&dir)?;
        Ok(key)
    })
    .await
    .map_err(io::Error::other)?
}

/// Flushes a folder's entries to disk, so a rename in it survives a power cut.
fn sync_folder(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` fails for fixed-length MACs only.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = new_mac(key);
    for part in parts {
        mac.update(part);
    }
    let mut tag = [0; 32];
    tag.copy_from_slice(&mac.finalize().into_bytes());
    tag
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn keys(secret: &str) -> SessionKeys {
        SessionKeys::new(&Secret::new(secret).unwrap(), &[7; 32])
    }

    #[test]
    fn secrets_are_trimmed_and_empty_ones_are_none() {
        assert_eq!(Secret::new("  hunter2\n"), Secret::new("hunter2"));
        assert!(Secret::new(" \n").is_none());
        assert_eq!(format!("{:?}", Secret::new("hunter2").unwrap()), "Secret(…)");
        assert_eq!(Secret::new("héllo").unwrap().chars(), 5);
        assert!("  ".parse::<Secret>().unwrap().is_empty());
        assert_eq!(" x ".parse::<Secret>().unwrap(), Secret::new("x").unwrap());
    }

    #[test]
    fn only_the_secret_itself_is_the_secret() {
        let keys = keys("correct horse battery staple");
        assert!(keys.is_secret("correct horse battery staple"));
        assert!(keys.is_secret("correct horse battery staple\n"));
        for wrong in [
            "",
            "correct horse battery stapl",
            "Correct horse battery staple",
            "correct horse battery staple!",
        ] {
            assert!(!keys.is_secret(wrong), "{wrong}");
        }
    }

    #[test]
    fn sessions_are_valid_until_they_expire() {
        let keys = keys("s3cret-s3cret");
        let token = keys.issue(NOW, Duration::from_secs(60));
        assert!(keys.verify(&token, NOW));
        assert!(keys.verify(&token, NOW + 59));
        assert!(!keys.verify(&token, NOW + 60));
        assert_ne!(
            keys.issue(NOW, Duration::from_secs(60)),
            token,
            "each token has its own nonce"
        );
    }

    #[test]
    fn another_secret_or_installation_does_not_accept_the_token() {
        let token = keys("first secret!").issue(NOW, SESSION_LIFETIME);
        assert!(!keys("second secret").verify(&token, NOW));
        let other_install = SessionKeys::new(&Secret::new("first secret!").unwrap(), &[8; 32]);
        assert!(!other_install.verify(&token, NOW));
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let keys = keys("s3cret-s3cret");
        let token = keys.issue(NOW, Duration::from_secs(60));
        let parts: Vec<&str> = token.split('.').collect();
        let longer = format!("v1.{}.{}.{}", NOW + 999_999, parts[2], parts[3]);
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        for bad in [
            longer,
            String::from_utf8(flipped).unwrap(),
            format!("{token}.x"),
            format!("v2{}", &token[2..]),
            String::new(),
        ] {
            assert!(!keys.verify(&bad, NOW), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_install_key_is_made_once_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_install_key(dir.path()).await.unwrap();
        let second = load_or_create_install_key(dir.path()).await.unwrap();
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert_eq!(file_names(dir.path()), [KEY_FILE], "no temporary is left behind");
    }

    fn file_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_damaged_key_is_replaced_and_its_sessions_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let old = load_or_create_install_key(dir.path()).await.unwrap();
        let session =
            SessionKeys::new(&Secret::new("s3cret-s3cret").unwrap(), &old).issue(NOW, SESSION_LIFETIME);
        // What an in-place write cut short by a crash leaves: nothing, or part of the key.
        for damaged in [&b""[..], &old[..7], b"short", &[0; 33][..]] {
            std::fs::write(&path, damaged).unwrap();
            let new = load_or_create_install_key(dir.path()).await.unwrap();
            assert_ne!(new, old);
            assert_eq!(std::fs::read(&path).unwrap(), new, "the new key is on disk");
            assert_eq!(
                load_or_create_install_key(dir.path()).await.unwrap(),
                new,
                "and kept"
            );
            let keys = SessionKeys::new(&Secret::new("s3cret-s3cret").unwrap(), &new);
            assert!(!keys.verify(&session, NOW));
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{mode:o}");
            }
        }
        assert_eq!(file_names(dir.path()), [KEY_FILE]);
    }

    #[tokio::test]
    async fn a_temporary_left_by_a_crash_does_not_stand_in_the_way() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = dir.path().join(format!(".{KEY_FILE}.abc123.tmp"));
        std::fs::write(&leftover, b"half").unwrap();
        let key = load_or_create_install_key(dir.path()).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join(KEY_FILE)).unwrap(), key);
    }

    #[tokio::test]
    async fn a_key_that_cannot_be_read_is_an_error_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(KEY_FILE)).unwrap();
        assert!(load_or_create_install_key(dir.path()).await.is_err());
        assert!(dir.path().join(KEY_FILE).is_dir());
    }

    proptest! {
        #[test]
        fn any_token_text_is_refused_without_panicking(token in ".{0,160}") {
            prop_assert!(!keys("s3cret-s3cret").verify(&token, NOW));
        }

        #[test]
        fn an_altered_session_never_verifies(position in any::<prop::sample::Index>(), replacement in any::<char>()) {
            let keys = keys("s3cret-s3cret");
            let token = keys.issue(NOW, SESSION_LIFETIME);
            let mut altered: Vec<char> = token.chars().collect();
            let at = position.index(altered.len());
            altered[at] = replacement;
            let altered: String = altered.into_iter().collect();
            prop_assume!(altered != token);
            prop_assert!(keys.verify(&token, NOW));
            prop_assert!(!keys.verify(&altered, NOW));
        }

        #[test]
        fn any_attempt_other_than_the_secret_is_refused(attempt in ".{0,40}") {
            prop_assume!(attempt.trim() != "s3cret-s3cret");
            prop_assert!(!keys("s3cret-s3cret").is_secret(&attempt));
        }
    }
}
