//! Security headers on every answer, the size limits of a request's head, and the one rule every query
//! string obeys: no control characters in any parameter.
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

/// A query parameter holding a control character (NUL, a line break, an escape...). Nothing the studio
/// reads from a query (a search, an id, a page size, a path to return to) has one, and some readers
/// would stop short at a NUL (SQLite's full-text queries read their text as a C string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the query parameter `{parameter}` holds a control character")]
pub struct ControlInQuery {
    /// The parameter's name, its own control characters escaped (`\u{0}`).
    pub parameter: String,
}

/// Checks every parameter of a query string (names and values, as `application/x-www-form-urlencoded`
/// decodes them) for control characters (Unicode's `Cc`: C0, DEL and C1).
pub fn check_query(query: &str) -> Result<(), ControlInQuery> {
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name.chars().chain(value.chars()).any(char::is_control) {
            let parameter = name
                .chars()
                .map(|character| {
                    if character.is_control() {
                        character.escape_unicode().to_string()
                    } else {
                        character.to_string()
                    }
                })
                .collect();
            return Err(ControlInQuery { parameter });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_characters_in_a_query_name_their_parameter() {
        let named = |query: &str| check_query(query).map_err(|error| error.parameter);
        assert_eq!(named("q=fox&limit=3"), Ok(()));
        assert_eq!(named("q=%E7%8B%90+fox&before="), Ok(()));
        assert_eq!(named(""), Ok(()));
        assert_eq!(named("limit=3&q=fo%00x"), Err("q".to_owned()));
        assert_eq!(named("q=a%0Ab"), Err("q".to_owned()));
        assert_eq!(named("q=%1B%5B31m"), Err("q".to_owned()));
        assert_eq!(named("q=%7F"), Err("q".to_owned()));
        assert_eq!(named("q=%C2%85"), Err("q".to_owned()));
        assert_eq!(named("next=%2F&x%00y=1"), Err("x\\u{0}y".to_owned()));
    }

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

    proptest! {
        #[test]
        fn a_query_is_refused_exactly_when_a_parameter_holds_a_control_character(
            pairs in proptest::collection::vec(("[a-z]{1,8}", "\\PC{0,12}"), 0..5),
            control in proptest::option::of((0usize..5, prop_oneof![0u32..0x20, Just(0x7f), 0x80u32..0xa0])),
        ) {
            let mut pairs = pairs;
            let mut expected = Ok(());
            if let Some((index, code)) = control
                && !pairs.is_empty()
            {
                let index = index % pairs.len();
                let character = char::from_u32(code).unwrap_or('\0');
                pairs[index].1.push(character);
                expected = Err(pairs[index].0.clone());
            }
            // The first parameter with a control character is the one named.
            if let Err(first) = &expected {
                let at = pairs.iter().position(|(_, value)| value.chars().any(char::is_control));
                prop_assert_eq!(at.map(|at| &pairs[at].0), Some(first));
            }
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(name, value)| (name.as_str(), value.as_str())))
                .finish();
            prop_assert_eq!(check_query(&query).map_err(|error| error.parameter), expected);
        }
    }
}
