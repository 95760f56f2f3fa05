//! Cross-site request refusal: a state-changing request that a browser marks as coming from another
//! origin (its `Origin` or `Sec-Fetch-Site` header) is refused, so no web page elsewhere can drive the
//! studio from a visitor's browser. Requests that carry neither header (curl, scripts) are not from a
//! browser page and pass; the address allowlist, the secret and the rate limits still apply to them.

use super::host::{Authority, HostName, parse_authority};

/// Why a request looks cross-site.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrossSite {
    #[error("the browser says the request comes from another site (Sec-Fetch-Site: {0})")]
    FetchSite(String),
    #[error("the request comes from another origin ({0})")]
    Origin(String),
}

/// True for the methods that may change something (everything but GET, HEAD, OPTIONS and TRACE).
pub fn is_state_changing(method: &str) -> bool {
    !matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Checks that a browser's request comes from the studio's own pages: `Sec-Fetch-Site`, when sent, must
/// be `same-origin`, and `Origin`, when sent, must name the same host and port as `Host`.
pub fn check_same_origin(
    host: Option<&str>,
    origin: Option<&str>,
    fetch_site: Option<&str>,
) -> Result<(), CrossSite> {
    if let Some(site) = fetch_site
        && !site.trim().eq_ignore_ascii_case("same-origin")
    {
        return Err(CrossSite::FetchSite(printable(site)));
    }
    let Some(origin) = origin else { return Ok(()) };
    let refused = || CrossSite::Origin(printable(origin));
    // `Origin: null` comes from sandboxed frames, data: URLs and the like: never the studio.
    let (scheme, rest) = origin.trim().split_once("://").ok_or_else(refused)?;
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(refused()),
    };
    let origin = parse_authority(rest).ok_or_else(refused)?;
    let host = host.and_then(parse_authority).ok_or_else(refused)?;
    if same_place(&origin, &host, default_port) {
        Ok(())
    } else {
        Err(refused())
    }
}

/// True when a browser marks a request as sent by another site's page: its `Sec-Fetch-Site` is anything
/// but `same-origin` or `none` (`none`: the person typed the address, opened a bookmark or scanned a
/// code), or its `Origin` or `Referer` names another place than `Host`. A header present but not text
/// counts as another site. A request without any of them (a script, an older browser's typed link) is
/// not marked.
///
/// Used for what a request may cost the visitor rather than for refusing it: any page can make a
/// browser load a link of the studio (`<img src=".../pair/x">`), but not mark it as the studio's own.
pub fn is_cross_site(
    host: Option<&str>,
    origin: Result<Option<&str>, ()>,
    referer: Result<Option<&str>, ()>,
    fetch_site: Result<Option<&str>, ()>,
) -> bool {
    let (Ok(origin), Ok(referer), Ok(fetch_site)) = (origin, referer, fetch_site) else {
        return true;
    };
    let marked_elsewhere = fetch_site.is_some_and(|site| {
        let site = site.trim();
        !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none")
    });
    let names_elsewhere = |url: &str| check_same_origin(host, Some(origin_of(url)), None).is_err();
    marked_elsewhere || origin.is_some_and(names_elsewhere) || referer.is_some_and(names_elsewhere)
}

/// The `scheme://authority` at the start of a URL (a `Referer` carries a path and a query too).
fn origin_of(url: &str) -> &str {
    let url = url.trim();
    let Some(scheme_end) = url.find("://") else {
        return url;
    };
    let authority = scheme_end + 3;
    url[authority..]
        .find(['/', '?', '#'])
        .map_or(url, |end| &url[..authority + end])
}

/// Same host and same port, a missing port being the scheme's default. The scheme itself is not
/// compared: behind a TLS proxy the browser says `https` while the studio sees plain HTTP.
fn same_place(origin: &Authority, host: &Authority, default_port: u16) -> bool {
    let same_host = match (&origin.host, &host.host) {
        (HostName::Ip(a), HostName::Ip(b)) => a == b,
        (HostName::Name(a), HostName::Name(b)) => a == b,
        _ => false,
    };
    same_host && origin.port.unwrap_or(default_port) == host.port.unwrap_or(default_port)
}

/// A header value as it may appear in a message: printable ASCII, at most 100 characters.
fn printable(value: &str) -> String {
    value
        .chars()
        .filter(|character| character.is_ascii_graphic() || *character == ' ')
        .take(100)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn requests_without_browser_headers_pass() {
        assert_eq!(check_same_origin(Some("192.168.1.20:7860"), None, None), Ok(()));
        assert_eq!(check_same_origin(None, None, None), Ok(()));
    }

    #[test]
    fn loads_marked_by_another_site_are_cross_site_and_the_studios_own_or_unmarked_are_not() {
        let host = Some("192.168.1.20:7860");
        let cross = |origin: Option<&str>, referer: Option<&str>, site: Option<&str>| {
            is_cross_site(host, Ok(origin), Ok(referer), Ok(site))
        };
        assert!(!cross(None, None, None));
        assert!(!cross(None, None, Some("none")));
        assert!(!cross(None, None, Some("same-origin")));
        assert!(!cross(
            Some("http://192.168.1.20:7860"),
            Some("http://192.168.1.20:7860/gallery?q=fox"),
            Some("Same-Origin")
        ));
        assert!(cross(None, None, Some("cross-site")));
        assert!(cross(None, None, Some("same-site")));
        assert!(cross(None, None, Some("nonsense")));
        assert!(cross(Some("http://evil.example"), None, None));
        assert!(cross(Some("null"), None, None));
        assert!(cross(None, Some("http://evil.example/page.html"), None));
        assert!(cross(None, Some("http://192.168.1.20:8080/"), None));
        assert!(cross(None, Some("http://192.168.1.20:7860.evil.example/"), None));
        assert!(is_cross_site(host, Err(()), Ok(None), Ok(None)));
        assert!(is_cross_site(host, Ok(None), Err(()), Ok(None)));
        assert!(is_cross_site(host, Ok(None), Ok(None), Err(())));
        assert_eq!(origin_of("http://a.b:1/c?d#e"), "http://a.b:1");
        assert_eq!(origin_of("http://a.b?x"), "http://a.b");
        assert_eq!(origin_of("http://a.b"), "http://a.b");
    }

    #[test]
    fn the_studios_own_pages_pass() {
        let host = Some("192.168.1.20:7860");
        assert_eq!(
            check_same_origin(host, Some("http://192.168.1.20:7860"), Some("same-origin")),
            Ok(())
        );
        assert_eq!(check_same_origin(host, None, Some("same-origin")), Ok(()));
        assert_eq!(
            check_same_origin(Some("Studio.lan"), Some("http://studio.lan:80"), None),
            Ok(())
        );
        assert_eq!(
            check_same_origin(Some("studio.lan:443"), Some("https://studio.lan"), None),
            Ok(())
        );
        assert_eq!(
            check_same_origin(Some("[::1]:7860"), Some("http://[::1]:7860"), None),
            Ok(())
        );
    }

    #[test]
    fn other_sites_ports_and_opaque_origins_are_refused() {
        let host = Some("192.168.1.20:7860");
        for fetch_site in ["cross-site", "same-site", "none", "nonsense"] {
            assert!(
                matches!(
                    check_same_origin(host, None, Some(fetch_site)),
                    Err(CrossSite::FetchSite(_))
                ),
                "{fetch_site}"
            );
        }
        for origin in [
            "http://evil.example",
            "http://192.168.1.20:8080",
            "http://192.168.1.20",
            "null",
            "file://",
            "ftp://192.168.1.20:7860",
            "http://192.168.1.20:7860.evil.example",
            "",
        ] {
            assert!(
                matches!(
                    check_same_origin(host, Some(origin), None),
                    Err(CrossSite::Origin(_))
                ),
                "{origin}"
            );
        }
        // A same-origin claim does not excuse a foreign Origin.
        assert!(check_same_origin(host, Some("http://evil.example"), Some("same-origin")).is_err());
        // Without a Host to compare with, an Origin cannot be the studio's.
        assert!(check_same_origin(None, Some("http://192.168.1.20:7860"), None).is_err());
    }

    #[test]
    fn only_reading_methods_are_safe() {
        for method in ["GET", "HEAD", "OPTIONS", "TRACE"] {
            assert!(!is_state_changing(method));
        }
        for method in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"] {
            assert!(is_state_changing(method));
        }
    }

    #[test]
    fn messages_quote_header_values_harmlessly() {
        let error = check_same_origin(Some("a"), Some("http://evil\u{7}\n.example"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the request comes from another origin (http://evil.example)"
        );
    }

    /// Hosts to build `Host` and `Origin` values from: spellings of the same host, and other hosts.
    const HOSTS: [&str; 9] = [
        "studio.lan",
        "Studio.LAN",
        "studio.lan.",
        "other.lan",
        "192.168.1.20",
        "192.168.1.21",
        "[::1]",
        "[0:0::1]",
        "[::2]",
    ];

    /// What a host is, whatever its spelling: the address, or the name lower-cased without its dot.
    fn host_key(host: &str) -> String {
        match host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
            Some(address) => address.parse::<std::net::Ipv6Addr>().unwrap().to_string(),
            None => host.trim_end_matches('.').to_ascii_lowercase(),
        }
    }

    fn with_port(host: &str, port: Option<u16>) -> String {
        match port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }

    /// Ports, mostly none and the schemes' defaults, which are equal when written out or left out.
    fn port() -> impl Strategy<Value = Option<u16>> {
        prop_oneof![
            3 => Just(None),
            2 => Just(Some(80)),
            2 => Just(Some(443)),
            1 => prop::sample::select(vec![7860, 8080]).prop_map(Some),
            1 => any::<u16>().prop_map(Some),
        ]
    }

    /// The hosts of an origin and of a `Host` header: half the time the same entry of `HOSTS`.
    fn host_pair() -> impl Strategy<Value = (&'static str, &'static str)> {
        prop_oneof![
            prop::sample::select(HOSTS.to_vec()).prop_map(|host| (host, host)),
            (
                prop::sample::select(HOSTS.to_vec()),
                prop::sample::select(HOSTS.to_vec())
            ),
        ]
    }

    fn scheme() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "http", "https", "HTTP", "Https", "ftp", "ws", "file", "null",
        ])
    }

    /// `Sec-Fetch-Site` values: absent, same-origin in any case and spacing, and the others.
    fn fetch_site() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            2 => Just(None),
            2 => prop::sample::select(vec!["same-origin", " Same-Origin ", "SAME-ORIGIN"])
                .prop_map(|site| Some(site.to_owned())),
            1 => prop::sample::select(vec!["cross-site", "same-site", "none", ""]).prop_map(|site| Some(site.to_owned())),
            1 => ".{0,20}".prop_map(Some),
        ]
    }

    fn is_same_origin_site(site: Option<&str>) -> bool {
        site.is_none_or(|site| site.trim().eq_ignore_ascii_case("same-origin"))
    }

    /// How a refusal quotes a header: printable ASCII, at most 100 characters.
    fn is_harmless(quoted: &str) -> bool {
        quoted.chars().count() <= 100
            && quoted
                .chars()
                .all(|character| character.is_ascii_graphic() || character == ' ')
    }

    proptest! {
        #[test]
        fn an_origin_is_admitted_exactly_when_it_names_the_hosts_host_and_port(
            scheme in scheme(),
            (origin_host, host_host) in host_pair(),
            origin_port in port(),
            host_port in port(),
            site in fetch_site(),
        ) {
            let origin = format!("{scheme}://{}", with_port(origin_host, origin_port));
            let host = with_port(host_host, host_port);
            let result = check_same_origin(Some(&host), Some(&origin), site.as_deref());
            // The scheme only sets the default port: behind a TLS proxy the browser says https.
            let default_port = match scheme.to_ascii_lowercase().as_str() {
                "http" => Some(80),
                "https" => Some(443),
                _ => None,
            };
            let same_place = default_port.is_some_and(|default| {
                host_key(origin_host) == host_key(host_host)
                    && origin_port.unwrap_or(default) == host_port.unwrap_or(default)
            });
            if !is_same_origin_site(site.as_deref()) {
                prop_assert!(matches!(result, Err(CrossSite::FetchSite(_))), "{result:?}");
            } else if same_place {
                prop_assert_eq!(result, Ok(()));
            } else {
                prop_assert!(matches!(result, Err(CrossSite::Origin(_))), "{result:?}");
            }
        }

        #[test]
        fn an_origin_copied_from_the_host_or_with_its_default_port_is_admitted_and_another_host_or_port_refused(
            scheme in prop::sample::select(vec!["http", "https"]),
            host_name in prop::sample::select(HOSTS.to_vec()),
            port in port(),
            other_host in prop::sample::select(HOSTS.to_vec()),
        ) {
            let host = with_port(host_name, port);
            let same = format!("{scheme}://{host}");
            prop_assert_eq!(check_same_origin(Some(&host), Some(&same), Some("same-origin")), Ok(()));
            prop_assert_eq!(check_same_origin(Some(&host), Some(&same), None), Ok(()));
            let default = if scheme == "http" { 80 } else { 443 };
            // The scheme's default port may be written out on either side or left out.
            let written_out = format!("{scheme}://{}", with_port(host_name, Some(default)));
            let left_out = format!("{scheme}://{host_name}");
            let default_host = with_port(host_name, Some(default));
            prop_assert_eq!(check_same_origin(Some(host_name), Some(&written_out), None), Ok(()));
            prop_assert_eq!(check_same_origin(Some(&default_host), Some(&left_out), None), Ok(()));
            let other_port = format!("{scheme}://{}", with_port(host_name, Some(port.unwrap_or(default).wrapping_add(1))));
            prop_assert!(matches!(
                check_same_origin(Some(&host), Some(&other_port), None),
                Err(CrossSite::Origin(_))
            ));
            if host_key(other_host) != host_key(host_name) {
                let elsewhere = format!("{scheme}://{}", with_port(other_host, port));
                prop_assert!(matches!(
                    check_same_origin(Some(&host), Some(&elsewhere), None),
                    Err(CrossSite::Origin(_))
                ));
            }
        }

        #[test]
        fn arbitrary_headers_are_admitted_only_from_an_http_origin_naming_the_host(
            host in prop_oneof![".{0,40}", (prop::sample::select(HOSTS.to_vec()), port())
                .prop_map(|(host, port)| with_port(host, port))],
            origin in prop_oneof![".{0,60}", (scheme(), prop::sample::select(HOSTS.to_vec()), port())
                .prop_map(|(scheme, host, port)| format!("{scheme}://{}", with_port(host, port)))],
            site in fetch_site(),
        ) {
            let result = check_same_origin(Some(&host), Some(&origin), site.as_deref());
            match &result {
                Ok(()) => {
                    prop_assert!(is_same_origin_site(site.as_deref()));
                    let (scheme, rest) = origin.trim().split_once("://").unwrap();
                    prop_assert!(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"));
                    let origin_host = parse_authority(rest).unwrap().host;
                    prop_assert_eq!(Some(origin_host), parse_authority(&host).map(|host| host.host));
                }
                Err(CrossSite::FetchSite(quoted)) => {
                    prop_assert!(!is_same_origin_site(site.as_deref()));
                    prop_assert!(is_harmless(quoted), "{quoted:?}");
                }
                Err(CrossSite::Origin(quoted)) => {
                    prop_assert!(is_same_origin_site(site.as_deref()));
                    prop_assert!(is_harmless(quoted), "{quoted:?}");
                }
            }
            // Without an Origin only Sec-Fetch-Site counts.
            prop_assert_eq!(
                check_same_origin(Some(&host), None, site.as_deref()).is_ok(),
                is_same_origin_site(site.as_deref())
            );
        }
    }
}
