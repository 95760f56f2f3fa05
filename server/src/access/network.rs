//! Client addresses: CIDR blocks and the allowlist every connection is checked against first.
//!
//! IPv4 clients of a dual-stack socket arrive as IPv4-mapped IPv6 addresses (`::ffff:192.168.1.7`);
//! they are compared as the IPv4 address they are, so `192.168.0.0/16` admits them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The default allowlist: loopback, the private IPv4 ranges (RFC 1918), link-local, and IPv6
/// unique-local and link-local addresses. Everything a home network hands out, nothing routable.
pub const DEFAULT_ALLOW: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,169.254.0.0/16,fc00::/7,fe80::/10";

/// A block of addresses such as `192.168.1.0/24`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR block that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an IP address or a CIDR block such as 192.168.1.0/24")]
    Malformed(String),
    #[error("the prefix length of `{text}` is larger than {max}")]
    PrefixTooLong { text: String, max: u8 },
    #[error("`{text}` has bits set after its prefix; did you mean {suggestion}?")]
    HostBitsSet { text: String, suggestion: String },
    #[error("the allowlist is empty, so no one could reach the studio")]
    Empty,
}

impl Cidr {
    /// The block `network/prefix`, if `prefix` fits the address family and no host bits are set.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(network);
        let text = format!("{network}/{prefix}");
        if prefix > max {
            return Err(CidrError::PrefixTooLong { text, max });
        }
        let masked = mask(network, prefix);
        if masked != network {
            return Err(CidrError::HostBitsSet {
                text,
                suggestion: format!("{masked}/{prefix}"),
            });
        }
        Ok(Cidr { network, prefix })
    }

    /// True when `address` lies in this block.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(address, self.prefix) == self.network
            }
            _ => false,
        }
    }

    /// True when the block admits every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let malformed = || CidrError::Malformed(text.to_owned());
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => {
                // `u8::from_str` accepts a leading `+`; a prefix is digits only.
                if prefix.is_empty() || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(malformed());
                }
                (address, Some(prefix.parse::<u8>().map_err(|_| malformed())?))
            }
            None => (text, None),
        };
        let (network, prefix) = match address.parse::<IpAddr>().map_err(|_| malformed())? {
            // `::ffff:a.b.c.d/n` is the IPv4 block a.b.c.d/(n - 96): clients are compared as IPv4.
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                let v4 = IpAddr::V4(v6.to_ipv4_mapped().ok_or_else(malformed)?);
                let prefix = prefix
                    .map(|prefix| prefix.checked_sub(96).ok_or_else(malformed))
                    .transpose()?;
                (v4, prefix)
            }
            network => (network, prefix),
        };
        Cidr::new(network, prefix.unwrap_or(max_prefix(network)))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.network, self.prefix)
    }
}

/// The client addresses that may talk to the studio at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressAllowlist {
    blocks: Vec<Cidr>,
}

impl AddressAllowlist {
    /// An allowlist of these blocks; an empty list admits nobody.
    pub fn new(blocks: Vec<Cidr>) -> AddressAllowlist {
        AddressAllowlist { blocks }
    }

    /// The default allowlist ([`DEFAULT_ALLOW`]).
    pub fn private_networks() -> AddressAllowlist {
        AddressAllowlist::new(parse_list(DEFAULT_ALLOW).unwrap_or_default())
    }

    /// True when `address` may come in.
    pub fn admits(&self, address: IpAddr) -> bool {
        self.blocks.iter().any(|block| block.contains(address))
    }

    /// True when some block admits every address of a family: the studio is open to the internet
    /// unless something in front of it filters.
    pub fn admits_everything(&self) -> bool {
        self.blocks.iter().any(Cidr::is_everything)
    }

    /// The blocks, in the order given.
    pub fn blocks(&self) -> &[Cidr] {
        &self.blocks
    }
}

impl FromStr for AddressAllowlist {
    type Err = CidrError;

    /// A comma-separated list of blocks (the form of `ZIMAGE_ALLOW`). An empty list would shut
    /// everyone out, so it is refused rather than taken literally.
    fn from_str(text: &str) -> Result<AddressAllowlist, CidrError> {
        let blocks = parse_list(text)?;
        if blocks.is_empty() {
            return Err(CidrError::Empty);
        }
        Ok(AddressAllowlist::new(blocks))
    }
}

impl fmt::Display for AddressAllowlist {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let blocks: Vec<String> = self.blocks.iter().map(Cidr::to_string).collect();
        formatter.write_str(&blocks.join(","))
    }
}

/// Parses a comma-separated list of blocks (the form of `ZIMAGE_ALLOW`); empty items are skipped.
pub fn parse_list(text: &str) -> Result<Vec<Cidr>, CidrError> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::parse)
        .collect()
}

/// An IPv4-mapped IPv6 address is the IPv4 address it carries; others are themselves.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

fn mask(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & kept).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let kept = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & kept).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_parse_with_and_without_a_prefix() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            " 192.168.1.7 ".parse::<Cidr>().unwrap().to_string(),
            "192.168.1.7/32"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!("fe80::/10".parse::<Cidr>().unwrap().to_string(), "fe80::/10");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(
            "::ffff:192.168.0.0/112".parse::<Cidr>().unwrap().to_string(),
            "192.168.0.0/16"
        );
        assert_eq!(
            "::ffff:192.168.1.7".parse::<Cidr>().unwrap().to_string(),
            "192.168.1.7/32"
        );
    }

    #[test]
    fn malformed_blocks_are_refused_with_a_reason() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/ 8",
            "10.0.0/8",
            "host.lan",
            "10.0.0.0/8/8",
            "::ffff:10.0.0.0/8",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { max: 32, .. })
        ));
        assert!(matches!(
            "::/129".parse::<Cidr>(),
            Err(CidrError::PrefixTooLong { max: 128, .. })
        ));
        let error = "192.168.1.7/24".parse::<Cidr>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`192.168.1.7/24` has bits set after its prefix; did you mean 192.168.1.0/24?"
        );
    }

    #[test]
    fn the_default_list_admits_home_networks_and_loopback_and_nothing_routable() {
        let allow = AddressAllowlist::private_networks();
        assert_eq!(allow.blocks().len(), 8);
        for inside in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.20",
            "169.254.3.4",
            "fd12::1",
            "fe80::1",
            "::ffff:192.168.1.20",
        ] {
            assert!(allow.admits(ip(inside)), "{inside}");
        }
        for outside in [
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.64.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "0.0.0.0",
            "::",
        ] {
            assert!(!allow.admits(ip(outside)), "{outside}");
        }
        assert!(!allow.admits_everything());
    }

    #[test]
    fn an_empty_list_admits_nobody_and_a_zero_prefix_admits_its_whole_family() {
        assert!(!AddressAllowlist::new(Vec::new()).admits(ip("127.0.0.1")));
        let v4_only = AddressAllowlist::new(parse_list("0.0.0.0/0").unwrap());
        assert!(v4_only.admits(ip("8.8.8.8")) && v4_only.admits(ip("::ffff:8.8.8.8")));
        assert!(!v4_only.admits(ip("2001:db8::1")));
        assert!(v4_only.admits_everything());
    }

    #[test]
    fn lists_skip_empty_items_and_stop_at_the_first_bad_one() {
        assert_eq!(parse_list(" 10.0.0.0/8 , ,::1").unwrap().len(), 2);
        assert!(parse_list("").unwrap().is_empty());
        assert!(parse_list("10.0.0.0/8,nonsense").is_err());
    }

    #[test]
    fn allowlists_parse_from_their_setting_and_print_back() {
        let allow: AddressAllowlist = DEFAULT_ALLOW.parse().unwrap();
        assert_eq!(allow, AddressAllowlist::private_networks());
        assert_eq!(allow.to_string(), DEFAULT_ALLOW);
        assert_eq!(" ,".parse::<AddressAllowlist>(), Err(CidrError::Empty));
        assert!("10.0.0.1/8".parse::<AddressAllowlist>().is_err());
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in ".{0,48}") {
            let _ = text.parse::<Cidr>();
        }

        #[test]
        fn any_address_with_any_prefix_parses_or_is_refused_without_panicking(
            a in any::<u32>(), b in any::<u128>(), prefix in any::<u8>(),
        ) {
            let _ = format!("{}/{prefix}", Ipv4Addr::from(a)).parse::<Cidr>();
            let _ = format!("{}/{prefix}", Ipv6Addr::from(b)).parse::<Cidr>();
        }

        #[test]
        fn a_block_contains_exactly_the_addresses_that_share_its_prefix(
            network in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>(),
        ) {
            let kept = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let block = Cidr::new(IpAddr::V4((network & kept).into()), prefix).unwrap();
            let expected = (probe & kept) == (network & kept);
            prop_assert_eq!(block.contains(IpAddr::V4(probe.into())), expected);
            prop_assert!(block.contains(IpAddr::V4((network & kept).into())));
            let round_trip: Cidr = block.to_string().parse().unwrap();
            prop_assert_eq!(round_trip, block);
        }
    }
}
