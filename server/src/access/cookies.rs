//! The studio's two cookies, read from `Cookie` headers and written as `Set-Cookie` values with the
//! `cookie` crate. Both are HttpOnly (no script reads them) and SameSite=Strict (no other site's page
//! sends them).

use std::time::Duration;

use cookie::{Cookie, SameSite};

/// The anonymous client identity.
pub const CLIENT: &str = "zimage_client";
/// The session of a browser that signed in with the secret.
pub const SESSION: &str = "zimage_session";

/// How long a browser keeps its anonymous identity.
pub const CLIENT_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

/// The value of the first cookie called `name` in these `Cookie` header values, without the double
/// quotes a value may be wrapped in. Pairs that do not parse are skipped, as browsers do.
pub fn find<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<String> {
    headers
        .into_iter()
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name)
        .map(|cookie| cookie.value_trimmed().to_owned())
}

/// A `Set-Cookie` value for a cookie that lives `lifetime` (zero deletes it).
///
/// `value` must be a cookie-safe token; the studio only writes hex and dots.
pub fn set(name: &str, value: &str, lifetime: Duration) -> String {
    let max_age = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
    // No `Secure`: the studio speaks plain HTTP on the LAN, where browsers would drop such a cookie.
    Cookie::build((name, value))
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age))
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
        .to_string()
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear(name: &str) -> String {
    set(name, "", Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The attributes of a `Set-Cookie` value, as a browser reads them.
    fn attributes(
        set_cookie: &str,
    ) -> (
        String,
        String,
        Option<String>,
        Option<i64>,
        bool,
        Option<SameSite>,
    ) {
        let cookie = Cookie::parse(set_cookie).unwrap();
        (
            cookie.name().to_owned(),
            cookie.value().to_owned(),
            cookie.path().map(str::to_owned),
            cookie.max_age().map(|age| age.whole_seconds()),
            cookie.http_only() == Some(true) && cookie.secure().is_none(),
            cookie.same_site(),
        )
    }

    #[test]
    fn cookies_are_found_by_exact_name_across_headers() {
        let headers = [
            "theme=dark; zimage_client=abc",
            "zimage_session=\"v1.x\"; other=1",
        ];
        assert_eq!(find(headers, CLIENT).as_deref(), Some("abc"));
        assert_eq!(find(headers, SESSION).as_deref(), Some("v1.x"));
        assert_eq!(find(headers, "zimage"), None);
        assert_eq!(
            find(["x_zimage_client=1; zimage_client=2"], CLIENT).as_deref(),
            Some("2")
        );
        assert_eq!(
            find(["zimage_client=1; zimage_client=2"], CLIENT).as_deref(),
            Some("1")
        );
        assert_eq!(find(["broken; zimage_client=3"], CLIENT).as_deref(), Some("3"));
        assert_eq!(find([""], CLIENT), None);
    }

    #[test]
    fn set_cookie_values_are_http_only_and_strict() {
        assert_eq!(
            attributes(&set(CLIENT, "ab", Duration::from_secs(60))),
            (
                CLIENT.to_owned(),
                "ab".to_owned(),
                Some("/".to_owned()),
                Some(60),
                true,
                Some(SameSite::Strict)
            )
        );
        assert_eq!(
            attributes(&clear(SESSION)),
            (
                SESSION.to_owned(),
                String::new(),
                Some("/".to_owned()),
                Some(0),
                true,
                Some(SameSite::Strict)
            )
        );
    }

    proptest! {
        #[test]
        fn the_value_found_is_the_first_one_of_exactly_that_name(
            pairs in proptest::collection::vec(
                (
                    prop_oneof![
                        Just(CLIENT.to_owned()),
                        Just(SESSION.to_owned()),
                        Just(format!("x_{CLIENT}")),
                        Just(format!("{CLIENT}x")),
                        "[a-z_]{1,12}",
                    ],
                    "[0-9a-zA-Z.\\-]{0,16}",
                    any::<bool>(),
                ),
                0..6,
            ),
            split_at in 0usize..6,
        ) {
            // A browser's cookies as it sends them: `name=value` pairs joined by "; ", values maybe in
            // double quotes, spread over one or two `Cookie` headers.
            let spelled: Vec<String> = pairs
                .iter()
                .map(|(name, value, quoted)| {
                    if *quoted { format!("{name}=\"{value}\"") } else { format!("{name}={value}") }
                })
                .collect();
            let split_at = split_at.min(spelled.len());
            let headers = [spelled[..split_at].join("; "), spelled[split_at..].join("; ")];
            let expected = pairs
                .iter()
                .find(|(name, _, _)| name == CLIENT)
                .map(|(_, value, _)| value.clone());
            prop_assert_eq!(find(headers.iter().map(String::as_str), CLIENT), expected);
        }

        #[test]
        fn a_cookie_the_studio_sets_is_what_the_browser_sends_back(
            value in "[0-9a-f.]{0,80}", seconds in 0u64..100_000_000,
        ) {
            let set_cookie = set(SESSION, &value, Duration::from_secs(seconds));
            let (name, sent, path, max_age, http_only, same_site) = attributes(&set_cookie);
            prop_assert_eq!((name.as_str(), sent.as_str()), (SESSION, value.as_str()));
            prop_assert_eq!(path.as_deref(), Some("/"));
            prop_assert_eq!(max_age, Some(i64::try_from(seconds).unwrap()));
            prop_assert!(http_only);
            prop_assert_eq!(same_site, Some(SameSite::Strict));
            // The browser sends back `name=value`, among other cookies.
            let header = format!("theme=dark; {SESSION}={value}; zimage_x=1");
            prop_assert_eq!(find([header.as_str()], SESSION), Some(value));
        }
    }
}
