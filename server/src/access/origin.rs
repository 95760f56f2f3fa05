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

    proptest! {
        #[test]
        fn any_headers_are_judged_without_panicking(host in ".{0,40}", origin in ".{0,60}", site in ".{0,20}") {
            let _ = check_same_origin(Some(&host), Some(&origin), Some(&site));
            let _ = check_same_origin(Some(&host), Some(&origin), None);
        }
    }
}
