//! Client addresses: CIDR blocks, the allowlist every connection is checked against first, and the
//! key the per-client limits count by.
//!
//! IPv4 clients of a dual-stack socket arrive as IPv4-mapped IPv6 addresses (`::ffff:192.168.1.7`);
//! they are compared as the IPv4 address they are, so `192.168.0.0/16` admits them. Blocks are parsed
//! and matched by `ipnet`; this module only adds the studio's rules on top (a bare address is a
//! block of one, host bits are a mistake worth naming, mapped blocks are IPv4 blocks).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The default allowlist: loopback, the private IPv4 ranges a home router hands out (RFC 1918) except
/// 172.16.0.0/12, link-local, and IPv6 unique-local and link-local addresses. Nothing routable.
///
/// 172.16.0.0/12 is left out on purpose: it is where Docker puts its bridge networks, and Docker's
/// userland proxy hands the gateway every connection it relays (IPv6 clients of a port published on
/// IPv6, or every client when Docker's iptables rules are off) from the bridge's own address, e.g.
/// `172.17.0.1`. Admitting that range would admit whoever reached the proxy, the internet included.
/// A home network in 172.16.0.0/12 is rare; it is listed in `ZIMAGE_ALLOW` (docs/security.md).
pub const DEFAULT_ALLOW: &str =
    "127.0.0.0/8,::1/128,10.0.0.0/8,192.168.0.0/16,169.254.0.0/16,fc00::/7,fe80::/10";

/// A block of addresses such as `192.168.1.0/24`; a bare address is a block of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(IpNet);

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
        let text = format!("{network}/{prefix}");
        let block = IpNet::new(network, prefix).map_err(|_| CidrError::PrefixTooLong {
            text: text.clone(),
            max: max_prefix(network),
        })?;
        if block.trunc() != block {
            return Err(CidrError::HostBitsSet {
                text,
                suggestion: block.trunc().to_string(),
            });
        }
        Ok(Cidr(block))
    }

    /// True when `address` lies in this block.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0.contains(&canonical(address))
    }

    /// True when the block admits every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.0.prefix_len() == 0
    }

    /// The first address of the block.
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The length of the prefix, in bits.
    pub fn prefix(&self) -> u8 {
        self.0.prefix_len()
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let text = text.trim();
        let malformed = || CidrError::Malformed(text.to_owned());
        let (network, prefix) = match text.parse::<IpNet>() {
            Ok(block) => (block.addr(), block.prefix_len()),
            Err(_) => match text.parse::<IpAddr>() {
                Ok(address) => (address, max_prefix(address)),
                Err(_) => return Err(too_long(text).unwrap_or_else(malformed)),
            },
        };
        match network {
            // `::ffff:a.b.c.d/n` is the IPv4 block a.b.c.d/(n - 96): clients are compared as IPv4.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => {
                    let prefix = prefix.checked_sub(96).ok_or_else(malformed)?;
                    let block = Ipv4Net::new(v4, prefix).map_err(|_| malformed())?;
                    Cidr::new(IpAddr::V4(block.addr()), block.prefix_len())
                }
                None => Cidr::new(network, prefix),
            },
            IpAddr::V4(_) => Cidr::new(network, prefix),
        }
    }
}

/// `address/prefix` whose only fault is a prefix longer than its family allows: named as such rather
/// than as malformed.
fn too_long(text: &str) -> Option<CidrError> {
    let (address, prefix) = text.split_once('/')?;
    let max = max_prefix(address.parse::<IpAddr>().ok()?);
    let digits = !prefix.is_empty() && prefix.bytes().all(|byte| byte.is_ascii_digit());
    // Digits too many for a `u8` are too long as well.
    let too_long = digits && prefix.parse::<u8>().ok().is_none_or(|prefix| prefix > max);
    too_long.then(|| CidrError::PrefixTooLong {
        text: text.to_owned(),
        max,
    })
}

impl fmt::Display for Cidr {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.0)
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

/// What the per-client limits (sign-in attempts, jobs per minute, refusal log lines) count by: an
/// IPv4 address, or the /64 network of an IPv6 address.
///
/// A /64 is the smallest network IPv6 hands out (one home network, or one host with its temporary
/// privacy addresses): whoever has one can rotate through its 2^64 addresses at will, so counting
/// IPv6 addresses one by one would limit nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    /// The key of a client at `address`.
    pub fn of(address: IpAddr) -> ClientKey {
        match canonical(address) {
            IpAddr::V6(v6) => ClientKey(IpAddr::V6(
                Ipv6Net::new(v6, 64).map_or(v6, |network| network.network()),
            )),
            v4 => ClientKey(v4),
        }
    }

    /// The client as one address: the IPv4 address, or the first address of the IPv6 /64.
    pub fn network(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for ClientKey {
    fn from(address: IpAddr) -> ClientKey {
        ClientKey::of(address)
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(formatter, "{v4}"),
            IpAddr::V6(v6) => write!(formatter, "{v6}/64"),
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
        assert_eq!(allow.blocks().len(), 7);
        for inside in [
            "127.0.0.1",
            "::1",
            "10.1.2.3",
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
    fn the_default_list_refuses_the_addresses_docker_relays_connections_from() {
        // Docker's bridge networks (172.17.0.0/16 and up, the range the default address pools start
        // with) and the gateway address its userland proxy connects from.
        let allow = AddressAllowlist::private_networks();
        for bridge in [
            "172.17.0.1",
            "172.18.0.1",
            "172.16.0.1",
            "172.31.255.254",
            "::ffff:172.17.0.1",
        ] {
            assert!(!allow.admits(ip(bridge)), "{bridge}");
        }
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

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_ipv4_clients_by_their_address() {
        let key = |text: &str| ClientKey::of(ip(text));
        assert_eq!(
            key("2001:db8:1:2:aaaa::1"),
            key("2001:db8:1:2:bbbb:cccc:dddd:eeee")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_ne!(key("192.168.1.30"), key("192.168.1.31"));
        assert_eq!(key("::ffff:192.168.1.30"), key("192.168.1.30"));
        assert_eq!(key("192.168.1.30").to_string(), "192.168.1.30");
    }

    proptest! {
        #[test]
        fn an_address_with_or_without_a_prefix_is_the_block_it_names_or_a_named_mistake(
            v4 in any::<u32>(),
            v6 in any::<u128>(),
            six in any::<bool>(),
            mapped in any::<bool>(),
            prefix in proptest::option::of(0u8..=130),
            truncate in any::<bool>(),
            padding in " {0,2}",
        ) {
            // Texts as people write them in ZIMAGE_ALLOW: an IPv4 or IPv6 address (IPv4-mapped ones
            // too), with or without a prefix, often the network's own first address, maybe padded.
            let mut address = match (six, mapped) {
                (false, _) => IpAddr::V4(Ipv4Addr::from(v4)),
                (true, false) => IpAddr::V6(Ipv6Addr::from(v6)),
                (true, true) => IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped()),
            };
            if let (true, Some(prefix)) = (truncate, prefix)
                && let Ok(network) = IpNet::new(address, prefix)
            {
                address = network.network();
            }
            let text = match prefix {
                Some(prefix) => format!("{padding}{address}/{prefix}{padding}"),
                None => format!("{padding}{address}{padding}"),
            };
            match text.parse::<Cidr>() {
                Ok(block) => {
                    prop_assert!(block.contains(block.network()));
                    prop_assert!(block.contains(address), "{text}: {block}");
                    prop_assert_eq!(block.to_string().parse::<Cidr>(), Ok(block));
                    prop_assert_eq!(block.to_string(), format!("{}/{}", block.network(), block.prefix()));
                    if prefix.is_none() {
                        // A bare address is the block of that one address.
                        prop_assert_eq!(block.network(), canonical(address));
                        prop_assert_eq!(block.prefix(), max_prefix(canonical(address)));
                    }
                }
                // Only a prefix can be wrong: too long for the family, host bits set, or shorter than
                // the 96 bits that make an IPv4-mapped address.
                Err(CidrError::PrefixTooLong { .. } | CidrError::HostBitsSet { .. }) => {
                    prop_assert!(prefix.is_some(), "{text}");
                }
                Err(CidrError::Malformed(_)) => {
                    prop_assert!(mapped && six && prefix.is_some_and(|prefix| prefix < 96), "{text}");
                }
                Err(CidrError::Empty) => prop_assert!(false, "{text}"),
            }
        }

        #[test]
        fn an_address_with_a_prefix_is_a_block_exactly_when_the_prefix_fits_and_no_host_bit_is_set(
            a in any::<u32>(), b in any::<u128>(), prefix in any::<u8>(),
        ) {
            for address in [IpAddr::V4(Ipv4Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b))] {
                prop_assume!(canonical(address) == address);
                let max = if address.is_ipv4() { 32 } else { 128 };
                let text = format!("{address}/{prefix}");
                match text.parse::<Cidr>() {
                    Ok(block) => {
                        prop_assert!(prefix <= max);
                        prop_assert_eq!((block.network(), block.prefix()), (address, prefix));
                        prop_assert!(block.contains(address));
                    }
                    Err(CidrError::PrefixTooLong { max: named, .. }) => {
                        prop_assert!(prefix > max);
                        prop_assert_eq!(named, max);
                    }
                    Err(CidrError::HostBitsSet { suggestion, .. }) => {
                        // The suggestion is the block the address lies in, and it is a block.
                        let suggested: Cidr = suggestion.parse().unwrap();
                        prop_assert!(suggested.contains(address) && suggested.network() != address);
                        prop_assert_eq!(suggested.prefix(), prefix);
                    }
                    Err(other) => prop_assert!(false, "{text}: {other}"),
                }
            }
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

        #[test]
        fn two_ipv6_addresses_share_a_key_exactly_when_they_share_their_first_64_bits(
            a in any::<u128>(), b in any::<u128>(), same_network in any::<bool>(),
        ) {
            let b = if same_network { (a & !(u64::MAX as u128)) | (b & u64::MAX as u128) } else { b };
            let (first, second) = (Ipv6Addr::from(a), Ipv6Addr::from(b));
            prop_assume!(first.to_ipv4_mapped().is_none() && second.to_ipv4_mapped().is_none());
            let shared = ClientKey::of(IpAddr::V6(first)) == ClientKey::of(IpAddr::V6(second));
            prop_assert_eq!(shared, a >> 64 == b >> 64);
        }
    }
}
