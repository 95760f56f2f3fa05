//! Security headers on every answer, and the size limits of a request's head.
//!
//! Pages get a Content-Security-Policy that admits the studio's own scripts and styles, its WebAssembly
//! (`'wasm-unsafe-eval'`) and the one inline script Leptos writes to start hydration, which carries the
//! page's nonce. Everything else (JSON, images, event streams) gets a policy that admits nothing.

use rand::RngCore as _;

/// The longest request target (path and query) accepted.
pub const MAX_URI_BYTES: usize = 4096;
/// The most header bytes (names and values) accepted in one request.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The most header fields accepted in one request.
pub const MAX_HEADER_COUNT: usize = 64;

/// Headers every answer carries, whatever it is.
pub const ALWAYS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

/// The policy of everything that is not a page: nothing may load, nothing may frame it. Images opened
/// on their own still show (`img-src 'self'`).
pub const RESOURCE_POLICY: &str =
    "default-src 'none'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The policy of a page rendered with `nonce`.
///
/// Style attributes are allowed (`style-src-attr`): the UI sets widths of progress bars with them,
/// and a style attribute cannot run code. `<style>` elements are not.
pub fn page_policy(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; img-src 'self' data: blob:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// A fresh nonce for one page: 128 random bits.
pub fn new_nonce() -> String {
    let mut bytes = [0; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A request head beyond the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadTooLarge {
    #[error("the address is longer than {MAX_URI_BYTES} bytes")]
    Uri,
    #[error(
        "the request headers are larger than {MAX_HEADER_BYTES} bytes or more than {MAX_HEADER_COUNT} fields"
    )]
    Headers,
}

/// Checks the size of the request target and of the headers (each as name and value lengths).
pub fn check_head(
    uri_bytes: usize,
    headers: impl IntoIterator<Item = (usize, usize)>,
) -> Result<(), HeadTooLarge> {
    if uri_bytes > MAX_URI_BYTES {
        return Err(HeadTooLarge::Uri);
    }
    let (mut count, mut bytes) = (0usize, 0usize);
    for (name, value) in headers {
        count += 1;
        bytes = bytes.saturating_add(name).saturating_add(value);
        if count > MAX_HEADER_COUNT || bytes > MAX_HEADER_BYTES {
            return Err(HeadTooLarge::Headers);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_policy_admits_own_scripts_wasm_and_the_nonce_only() {
        let policy = page_policy("abc123");
        assert!(
            policy.contains("script-src 'self' 'nonce-abc123' 'wasm-unsafe-eval';"),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"));
        assert!(!policy.contains(" 'unsafe-eval'"));
        assert!(!policy.contains("script-src 'self' 'unsafe-inline'"));
        assert!(RESOURCE_POLICY.starts_with("default-src 'none'"));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(new_nonce(), new_nonce());
        assert_eq!(new_nonce().len(), 32);
    }

    #[test]
    fn heads_within_the_limits_pass_and_others_do_not() {
        assert_eq!(check_head(100, [(4, 10), (10, 100)]), Ok(()));
        assert_eq!(check_head(MAX_URI_BYTES + 1, []), Err(HeadTooLarge::Uri));
        assert_eq!(
            check_head(10, [(10, MAX_HEADER_BYTES)]),
            Err(HeadTooLarge::Headers)
        );
        assert_eq!(
            check_head(10, (0..=MAX_HEADER_COUNT).map(|_| (1, 1))),
            Err(HeadTooLarge::Headers)
        );
        assert_eq!(
            check_head(10, [(usize::MAX, usize::MAX)]),
            Err(HeadTooLarge::Headers)
        );
    }
}
