//! The Host header allowlist against DNS rebinding: a page on some other site can point its own name at
//! the studio's address, but the browser then sends that name as `Host`, and the studio answers only to
//! `localhost`, the names it was given and IP addresses it listens on.
//!
//! When the studio listens on every interface (`0.0.0.0`, as in Docker) it cannot know every address
//! a phone may dial (Docker's port mapping hides the host's addresses), so every IP address is admitted:
//! rebinding always needs a name, never an address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::network::canonical;

/// The host part of a `Host` header (or of an origin), lower-cased, without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    Ip(IpAddr),
    Name(String),
}

/// A `Host` header value split into host and optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: HostName,
    pub port: Option<u16>,
}

/// A name (or address) configured as one the studio answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost(HostName);

/// A configured host name that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a host name (such as studio.lan) or an IP address")]
pub struct AllowedHostError(String);

impl FromStr for AllowedHost {
    type Err = AllowedHostError;

    fn from_str(text: &str) -> Result<AllowedHost, AllowedHostError> {
        let trimmed = text.trim();
        // In configuration a bare IPv6 address is natural; in a Host header it must be bracketed.
        if let Ok(address) = trimmed.parse::<IpAddr>() {
            return Ok(AllowedHost(HostName::Ip(canonical(address))));
        }
        match parse_authority(trimmed) {
            Some(Authority { host, port: None }) => Ok(AllowedHost(host)),
            _ => Err(AllowedHostError(text.to_owned())),
        }
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            HostName::Ip(address) => write!(formatter, "{address}"),
            HostName::Name(name) => formatter.write_str(name),
        }
    }
}

/// The configured names, from a comma-separated list (the form of `ZIMAGE_ALLOWED_HOSTS`); empty items
/// are skipped, so an empty setting means none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts(pub Vec<AllowedHost>);

impl FromStr for AllowedHosts {
    type Err = AllowedHostError;

    fn from_str(text: &str) -> Result<AllowedHosts, AllowedHostError> {
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(AllowedHosts)
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(AllowedHost::to_string).collect();
        formatter.write_str(&names.join(","))
    }
}

/// Which `Host` values the studio answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    configured: Vec<HostName>,
    listen: IpAddr,
}

impl HostPolicy {
    /// `localhost`, the `configured` names and the address of `listen` (every address when it is
    /// unspecified). Ports are not compared: Docker may publish the studio on another port.
    pub fn new(configured: &[AllowedHost], listen: SocketAddr) -> HostPolicy {
        HostPolicy {
            configured: configured.iter().map(|allowed| allowed.0.clone()).collect(),
            listen: canonical(listen.ip()),
        }
    }

    /// True when a request naming `host` is meant for the studio.
    pub fn admits(&self, host: &str) -> bool {
        let Some(authority) = parse_authority(host) else {
            return false;
        };
        if self.configured.contains(&authority.host) {
            return true;
        }
        match authority.host {
            HostName::Ip(address) => {
                self.listen.is_unspecified()
                    || address == self.listen
                    || (address.is_loopback() && self.listen.is_loopback())
            }
            // RFC 6761: `localhost` and its subdomains always mean this machine; no one else's DNS
            // can hand them out.
            HostName::Name(name) => name == "localhost" || name.ends_with(".localhost"),
        }
    }
}

/// Splits `host[:port]` (`[v6]:port` for IPv6). `None` for anything that is not a plausible host.
pub fn parse_authority(value: &str) -> Option<Authority> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (address, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':')?)?),
        };
        let address = address.parse::<std::net::Ipv6Addr>().ok()?;
        return Some(Authority {
            host: HostName::Ip(canonical(IpAddr::V6(address))),
            port,
        });
    } else {
        match value.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (value, None),
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if let Ok(address) = host.parse::<std::net::Ipv4Addr>() {
        return Some(Authority {
            host: HostName::Ip(IpAddr::V4(address)),
            port,
        });
    }
    is_host_name(&host).then_some(Authority {
        host: HostName::Name(host),
        port,
    })
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Letters, digits, `-` and `_` in dot-separated labels of 1 to 63 characters, 253 at most in all.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(configured: &[&str], listen: &str) -> HostPolicy {
        let configured: Vec<AllowedHost> = configured.iter().map(|name| name.parse().unwrap()).collect();
        HostPolicy::new(&configured, listen.parse().unwrap())
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        let parsed = parse_authority("Studio.LAN.:7860").unwrap();
        assert_eq!(
            parsed,
            Authority {
                host: HostName::Name("studio.lan".to_owned()),
                port: Some(7860)
            }
        );
        let parsed = parse_authority("[::1]:80").unwrap();
        assert_eq!(
            parsed,
            Authority {
                host: HostName::Ip("::1".parse().unwrap()),
                port: Some(80)
            }
        );
        let parsed = parse_authority("192.168.1.20").unwrap();
        assert_eq!(
            parsed,
            Authority {
                host: HostName::Ip("192.168.1.20".parse().unwrap()),
                port: None
            }
        );
        for bad in [
            "",
            ":80",
            "a:",
            "a:b",
            "a:99999",
            "a:+80",
            "::1",
            "[::1",
            "[nonsense]",
            "[::1]x",
            "a b",
            "a..b",
            "évil.com",
            "a/b",
            "a@b",
        ] {
            assert_eq!(parse_authority(bad), None, "{bad}");
        }
    }

    #[test]
    fn on_every_interface_localhost_configured_names_and_any_address_are_admitted() {
        let policy = policy(&["studio.lan", "Desk.local."], "0.0.0.0:7860");
        for good in [
            "localhost:7860",
            "LOCALHOST",
            "app.localhost:1",
            "studio.lan:8080",
            "desk.local",
            "192.168.1.20:7860",
            "[fe80::1]:7860",
            "127.0.0.1",
        ] {
            assert!(policy.admits(good), "{good}");
        }
        for bad in [
            "evil.example:7860",
            "studio.lan.evil.example",
            "lan",
            "",
            "localhost.evil.example",
        ] {
            assert!(!policy.admits(bad), "{bad}");
        }
    }

    #[test]
    fn on_one_address_only_that_address_and_names_are_admitted() {
        let policy = policy(&[], "192.168.1.20:7860");
        assert!(policy.admits("192.168.1.20:7860"));
        assert!(policy.admits("localhost:7860"));
        assert!(!policy.admits("192.168.1.21:7860"));
        let loopback = self::policy(&[], "127.0.0.1:0");
        assert!(loopback.admits("127.0.0.1:41234") && loopback.admits("[::1]:41234"));
        assert!(!loopback.admits("10.0.0.1"));
    }

    #[test]
    fn configured_hosts_are_names_or_addresses_without_ports() {
        assert_eq!("fd00::7".parse::<AllowedHost>().unwrap().to_string(), "fd00::7");
        assert_eq!(
            " Studio.Lan ".parse::<AllowedHost>().unwrap().to_string(),
            "studio.lan"
        );
        for bad in ["", "studio.lan:80", "http://studio.lan", "*.lan"] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad}");
        }
        let policy = policy(&["10.8.0.1"], "192.168.1.20:7860");
        assert!(policy.admits("10.8.0.1:7860"));
    }

    #[test]
    fn host_lists_skip_empty_items() {
        assert_eq!("".parse::<AllowedHosts>().unwrap(), AllowedHosts::default());
        let hosts: AllowedHosts = "studio.lan, ,desk.local".parse().unwrap();
        assert_eq!(hosts.to_string(), "studio.lan,desk.local");
        assert!("studio.lan,http://x".parse::<AllowedHosts>().is_err());
    }

    /// The host part of a `Host` value as a person reads it: the port dropped (an IPv6 address without
    /// its brackets), lower-cased, one trailing dot removed.
    fn bare_host(value: &str) -> String {
        let host = match value.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(rest),
            None => value.rsplit_once(':').map_or(value, |(host, _)| host),
        };
        host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
    }

    /// The address `host` spells, IPv4-mapped IPv6 addresses read as IPv4.
    fn address(host: &str) -> Option<IpAddr> {
        host.parse::<IpAddr>().ok().map(|address| address.to_canonical())
    }

    fn is_localhost(host: &str) -> bool {
        host == "localhost" || host.ends_with(".localhost")
    }

    /// Names and addresses the policies below allow, and some they do not.
    const SHAPES: [&str; 18] = [
        "studio.lan",
        "localhost",
        "app.localhost",
        "10.8.0.1",
        "192.168.1.20",
        "[::ffff:192.168.1.20]",
        "[::1]",
        "127.0.0.1",
        "localhost.evil.example",
        "studio.lan.evil.example",
        "evil.example",
        "lan",
        "192.168.1.21",
        "[fe80::1]",
        "[::ffff:10.0.0.1]",
        "0.0.0.0",
        "evillocalhost",
        "localhost.",
    ];

    /// `name` with the letters whose bit is set in `mask` upper-cased.
    fn mixed_case(name: &str, mask: u64) -> String {
        name.chars()
            .enumerate()
            .map(|(at, character)| {
                if (mask >> (at % 64)) & 1 == 1 {
                    character.to_ascii_uppercase()
                } else {
                    character
                }
            })
            .collect()
    }

    /// `Host` values: arbitrary text, and the shapes real ones have, in any case, with or without a
    /// trailing dot and a (possibly malformed) port.
    fn host_header() -> impl Strategy<Value = String> {
        let shaped = (
            prop_oneof![
                prop::sample::select(SHAPES.to_vec()).prop_map(str::to_owned),
                "[a-zA-Z0-9._-]{1,24}",
            ],
            any::<u64>(),
            any::<bool>(),
            prop::option::of("[0-9]{0,6}"),
        )
            .prop_map(|(name, mask, dot, port)| {
                let mut value = mixed_case(&name, mask);
                if dot {
                    value.push('.');
                }
                if let Some(port) = port {
                    value = format!("{value}:{port}");
                }
                value
            });
        prop_oneof![".{0,80}", shaped]
    }

    proptest! {
        #[test]
        fn an_admitted_host_is_localhost_a_configured_name_or_an_address_listened_on(value in host_header()) {
            let bare = bare_host(&value);
            let configured = ["studio.lan", "10.8.0.1"];
            let is_configured = configured.contains(&bare.as_str())
                || address(&bare).is_some_and(|address| address == "10.8.0.1".parse::<IpAddr>().unwrap());
            // On every interface any address is the studio's; a name must be localhost or configured.
            if policy(&configured, "0.0.0.0:7860").admits(&value) {
                prop_assert!(is_localhost(&bare) || is_configured || address(&bare).is_some(), "{value}");
            }
            // On one address only that one is (besides the configured ones).
            let listen: IpAddr = "192.168.1.20".parse().unwrap();
            if policy(&configured, "192.168.1.20:7860").admits(&value) {
                prop_assert!(
                    is_localhost(&bare) || is_configured || address(&bare) == Some(listen),
                    "{value}"
                );
            }
        }

        #[test]
        fn an_allowed_name_is_admitted_in_any_case_with_or_without_dot_and_port(
            name in prop::sample::select(vec!["studio.lan", "localhost", "app.localhost", "10.8.0.1"]),
            mask in any::<u64>(),
            dot in any::<bool>(),
            port in prop::option::of(any::<u16>()),
        ) {
            let mut value = mixed_case(name, mask);
            if dot {
                value.push('.');
            }
            if let Some(port) = port {
                value = format!("{value}:{port}");
            }
            prop_assert!(policy(&["studio.lan", "10.8.0.1"], "192.168.1.20:7860").admits(&value), "{value}");
            prop_assert!(policy(&["studio.lan", "10.8.0.1"], "0.0.0.0:7860").admits(&value), "{value}");
        }

        #[test]
        fn a_configured_host_reads_back_from_its_text_and_is_admitted(value in host_header()) {
            let Ok(allowed) = value.parse::<AllowedHost>() else {
                return Ok(());
            };
            let text = allowed.to_string();
            // Addresses in their canonical spelling, names lower-cased without the trailing dot.
            let trimmed = value.trim();
            let expected = address(trimmed)
                .or_else(|| address(&bare_host(trimmed)))
                .map_or_else(|| bare_host(trimmed), |address| address.to_string());
            prop_assert_eq!(&text, &expected);
            prop_assert_eq!(text.parse::<AllowedHost>(), Ok(allowed.clone()));
            // A policy that lists it answers to it, on any port, even when listening elsewhere.
            let header = if text.contains(':') { format!("[{text}]") } else { text };
            let policy = HostPolicy::new(&[allowed], "192.168.1.20:7860".parse().unwrap());
            prop_assert!(policy.admits(&header), "{header}");
            let with_port = format!("{header}:8080");
            prop_assert!(policy.admits(&with_port), "{with_port}");
        }

        #[test]
        fn a_host_list_reads_back_from_its_text(values in prop::collection::vec(host_header(), 0..4)) {
            let text = values.join(",");
            if let Ok(hosts) = text.parse::<AllowedHosts>() {
                // One host for every item that is not blank.
                let items = text.split(',').filter(|item| !item.trim().is_empty()).count();
                prop_assert_eq!(hosts.0.len(), items);
                prop_assert_eq!(hosts.to_string().parse::<AllowedHosts>(), Ok(hosts));
            }
        }

        #[test]
        fn names_outside_the_list_are_refused_on_every_interface(name in "[a-z][a-z0-9-]{0,20}\\.[a-z]{2,6}") {
            prop_assume!(name != "studio.lan" && !name.ends_with(".localhost"));
            let policy = policy(&["studio.lan"], "0.0.0.0:7860");
            let with_port = format!("{name}:7860");
            prop_assert!(!policy.admits(&name));
            prop_assert!(!policy.admits(&with_port));
        }
    }
}
