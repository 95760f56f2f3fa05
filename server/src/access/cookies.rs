//! The studio's two cookies, read from `Cookie` headers and written as `Set-Cookie` values. Both are
//! HttpOnly (no script reads them) and SameSite=Strict (no other site's page sends them).

use std::time::Duration;

/// The anonymous client identity.
pub const CLIENT: &str = "zimage_client";
/// The session of a browser that signed in with the secret.
pub const SESSION: &str = "zimage_session";

/// How long a browser keeps its anonymous identity.
pub const CLIENT_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

/// The value of the first cookie called `name` in these `Cookie` header values.
pub fn find<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"'))
        })
}

/// A `Set-Cookie` value for a cookie that lives `lifetime` (zero deletes it).
///
/// `value` must be a cookie-safe token; the studio only writes hex and dots.
pub fn set(name: &str, value: &str, lifetime: Duration) -> String {
    // No `Secure`: the studio speaks plain HTTP on the LAN, where browsers would drop such a cookie.
    format!(
        "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        lifetime.as_secs()
    )
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear(name: &str) -> String {
    set(name, "", Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let headers = [
            "theme=dark; zimage_client=abc",
            "zimage_session=\"v1.x\"; other=1",
        ];
        assert_eq!(find(headers, CLIENT), Some("abc"));
        assert_eq!(find(headers, SESSION), Some("v1.x"));
        assert_eq!(find(headers, "zimage"), None);
        assert_eq!(find(["x_zimage_client=1; zimage_client=2"], CLIENT), Some("2"));
        assert_eq!(find(["zimage_client=1; zimage_client=2"], CLIENT), Some("1"));
        assert_eq!(find([""], CLIENT), None);
    }

    #[test]
    fn set_cookie_values_are_http_only_and_strict() {
        assert_eq!(
            set(CLIENT, "ab", Duration::from_secs(60)),
            "zimage_client=ab; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
        );
        assert!(clear(SESSION).starts_with("zimage_session=; Path=/; Max-Age=0;"));
    }

    proptest! {
        #[test]
        fn any_cookie_header_is_read_without_panicking(header in ".{0,120}") {
            let _ = find([header.as_str()], CLIENT);
        }
    }
}
