//! One-time pairing links: a signed-in device asks for a link (shown as a QR code), a phone opens it
//! once within a few minutes and is signed in without typing the secret.
//!
//! Only a digest of each token is kept, and the book is small: a handful of links can be open at once,
//! and the oldest gives way to a new one.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::decode_hex;

/// How long a pairing link works.
pub const PAIRING_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// Pairing links open at once, at most.
const MAX_OPEN: usize = 8;

/// The pairing links handed out and not yet used.
#[derive(Debug, Default)]
pub struct PairingBook {
    open: Mutex<HashMap<[u8; 32], Instant>>,
}

impl PairingBook {
    /// An empty book.
    pub fn new() -> PairingBook {
        PairingBook::default()
    }

    /// A new one-time token, valid for [`PAIRING_LIFETIME`] from `now`.
    pub fn issue(&self, now: Instant) -> String {
        let mut token = [0; 32];
        rand::rng().fill_bytes(&mut token);
        let token = hex::encode(token);
        let mut open = self.open();
        open.retain(|_, expires| *expires > now);
        if open.len() >= MAX_OPEN
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(digest, _)| *digest)
        {
            open.remove(&oldest);
        }
        open.insert(digest(&token), now + PAIRING_LIFETIME);
        token
    }

    /// Uses up `token`: true once, if it was issued and has not expired.
    pub fn redeem(&self, token: &str, now: Instant) -> bool {
        // Tokens are 64 hex digits; anything else is not worth hashing.
        if decode_hex::<32>(token).is_none() {
            return false;
        }
        self.open()
            .remove(&digest(token))
            .is_some_and(|expires| expires > now)
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_link_works_once() {
        let book = PairingBook::new();
        let now = Instant::now();
        let token = book.issue(now);
        assert_eq!(token.len(), 64);
        assert!(book.redeem(&token, now + Duration::from_secs(1)));
        assert!(!book.redeem(&token, now + Duration::from_secs(2)));
    }

    #[test]
    fn a_link_expires() {
        let book = PairingBook::new();
        let now = Instant::now();
        let token = book.issue(now);
        assert!(!book.redeem(&token, now + PAIRING_LIFETIME));
    }

    #[test]
    fn unknown_and_malformed_tokens_do_nothing() {
        let book = PairingBook::new();
        let now = Instant::now();
        let token = book.issue(now);
        assert!(!book.redeem(&"0".repeat(64), now));
        assert!(!book.redeem("../../etc/passwd", now));
        assert!(!book.redeem(&token.to_uppercase(), now));
        assert!(book.redeem(&token, now));
    }

    #[test]
    fn only_a_few_links_are_open_at_once_and_the_oldest_gives_way() {
        let book = PairingBook::new();
        let start = Instant::now();
        let tokens: Vec<String> = (0..=MAX_OPEN as u64)
            .map(|index| book.issue(start + Duration::from_secs(index)))
            .collect();
        assert_eq!(book.open().len(), MAX_OPEN);
        let now = start + Duration::from_secs(30);
        assert!(!book.redeem(&tokens[0], now));
        assert!(tokens[1..].iter().all(|token| book.redeem(token, now)));
    }

    proptest! {
        #[test]
        fn no_text_but_the_issued_token_redeems_it(text in "[0-9a-f]{64}|.{0,80}") {
            let book = PairingBook::new();
            let now = Instant::now();
            let token = book.issue(now);
            prop_assume!(text != token);
            prop_assert!(!book.redeem(&text, now));
            prop_assert!(book.redeem(&token, now), "a wrong guess does not use up the link");
        }
    }
}
