//! Who is asking: the anonymous identity each browser carries in a cookie, and whether it signed in.
//! A job belongs to the identity that started it; only that identity, or someone signed in with the
//! studio's secret, may cancel it or delete its image.
//!
//! A client that keeps no cookies (curl, OpenAI's SDKs, a chat front end's server) still has one
//! stable identity ([`DerivedIdentities`]): its bearer token when it sends one, else its address (the
//! /64 for IPv6), so the engine's fair share and per-client limits hold for scripts as for browsers.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Sha256;

use super::network::ClientKey;

/// An anonymous browser identity: 128 random bits, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId([u8; 16]);

/// Text that is not a [`ClientId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a client id")]
pub struct NotAClientId;

impl ClientId {
    /// A fresh random identity.
    pub fn new() -> ClientId {
        let mut bytes = [0; 16];
        rand::rng().fill_bytes(&mut bytes);
        ClientId(bytes)
    }
}

impl Default for ClientId {
    fn default() -> ClientId {
        ClientId::new()
    }
}

impl FromStr for ClientId {
    type Err = NotAClientId;

    fn from_str(text: &str) -> Result<ClientId, NotAClientId> {
        super::decode_hex::<16>(text).map(ClientId).ok_or(NotAClientId)
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Enough to tell clients apart in logs without handing out the whole cookie value.
        write!(formatter, "ClientId({}…)", &self.to_string()[..8])
    }
}

impl Serialize for ClientId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClientId, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The identities of clients without the cookie, derived from what they send every time.
///
/// Each is a keyed hash (HMAC-SHA-256, truncated to a [`ClientId`]) under a key made at start-up and
/// never written anywhere: a bearer token is never kept in clear, and nobody can compute the identity
/// of another address or token to send it as a cookie and pass for that client. The key is new at each
/// start, so a script's identity is too: it only loses the right to cancel, without signing in, a job
/// it started before the restart.
pub struct DerivedIdentities {
    key: [u8; 32],
}

impl DerivedIdentities {
    /// Identities under a fresh random key.
    pub fn new() -> DerivedIdentities {
        let mut key = [0; 32];
        rand::rng().fill_bytes(&mut key);
        DerivedIdentities { key }
    }

    /// The identity of a client that sends `token` as `Authorization: Bearer`.
    pub fn of_bearer(&self, token: &str) -> ClientId {
        self.derive(b"bearer", token.as_bytes())
    }

    /// The identity of a client at `address`: every address of an IPv6 /64 is one client.
    pub fn of_address(&self, address: IpAddr) -> ClientId {
        self.derive(b"address", ClientKey::of(address).to_string().as_bytes())
    }

    fn derive(&self, kind: &[u8], value: &[u8]) -> ClientId {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        // The kind and a separator first, so a token can never spell an address's input.
        mac.update(kind);
        mac.update(&[0]);
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&digest[..16]);
        ClientId(bytes)
    }
}

impl Default for DerivedIdentities {
    fn default() -> DerivedIdentities {
        DerivedIdentities::new()
    }
}

impl fmt::Debug for DerivedIdentities {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("DerivedIdentities(..)")
    }
}

/// The person behind a request, as far as the studio can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requester {
    /// Which client it is: the browser's anonymous identity when it sent one (or was just given one),
    /// else the identity derived from its bearer token or its address ([`DerivedIdentities`]). `None`
    /// only where no request stands behind it.
    pub client: Option<ClientId>,
    /// Signed in with the studio's secret (session cookie or bearer token).
    pub signed_in: bool,
}

impl Requester {
    /// True when this requester may cancel or delete a job started by `owner`: its own jobs, or
    /// anyone's once signed in. A job without an owner can be changed only by the signed in.
    pub fn may_change(&self, owner: Option<ClientId>) -> bool {
        self.signed_in || (self.client.is_some() && self.client == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id = ClientId::new();
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<ClientId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ClientId>(&json).unwrap(), id);
        assert_ne!(ClientId::new(), id);
    }

    #[test]
    fn only_32_lowercase_hex_digits_are_ids() {
        for bad in [
            "",
            "0123",
            "0123456789abcdef0123456789ABCDEF",
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcdef0",
        ] {
            assert!(bad.parse::<ClientId>().is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<ClientId>("\"../../x\"").is_err());
    }

    #[test]
    fn a_job_is_changed_by_its_owner_or_by_the_signed_in() {
        let owner = ClientId::new();
        let stranger = Requester {
            client: Some(ClientId::new()),
            signed_in: false,
        };
        assert!(
            Requester {
                client: Some(owner),
                signed_in: false
            }
            .may_change(Some(owner))
        );
        assert!(!stranger.may_change(Some(owner)));
        assert!(
            Requester {
                client: None,
                signed_in: true
            }
            .may_change(Some(owner))
        );
        assert!(!Requester::default().may_change(None));
        assert!(!stranger.may_change(None));
        assert!(
            Requester {
                client: None,
                signed_in: true
            }
            .may_change(None)
        );
    }

    #[test]
    fn derived_identities_are_stable_per_token_and_per_address_and_apart_from_each_other() {
        let derived = DerivedIdentities::new();
        let address: IpAddr = "192.168.1.30".parse().unwrap();
        assert_eq!(derived.of_bearer("sk-one"), derived.of_bearer("sk-one"));
        assert_ne!(derived.of_bearer("sk-one"), derived.of_bearer("sk-two"));
        assert_eq!(derived.of_address(address), derived.of_address(address));
        assert_ne!(
            derived.of_address(address),
            derived.of_address("192.168.1.31".parse().unwrap())
        );
        // The same text as a token and as an address is two clients.
        assert_ne!(derived.of_bearer("192.168.1.30"), derived.of_address(address));
        // An IPv6 /64 is one client; the next /64 another.
        let in_64 = |host: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, host, 1]);
        assert_eq!(derived.of_address(in_64(1)), derived.of_address(in_64(2)));
        assert_ne!(
            derived.of_address(in_64(1)),
            derived.of_address(IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 1, 1]))
        );
        // Another start, another key: nothing carries over, nothing can be computed from outside.
        assert_ne!(
            DerivedIdentities::new().of_bearer("sk-one"),
            derived.of_bearer("sk-one")
        );
        assert!(!format!("{derived:?}").contains(&hex::encode(derived.key)));
    }

    #[test]
    fn debug_output_shows_only_a_prefix() {
        let id = ClientId::new();
        let shown = format!("{id:?}");
        assert!(shown.starts_with("ClientId(") && !shown.contains(&id.to_string()));
    }

    proptest! {
        #[test]
        fn a_text_is_an_id_exactly_when_it_is_the_one_spelling_of_one(
            bytes in any::<[u8; 16]>(), edit in 0usize..4, at in 0usize..32, digit in "[0-9a-fA-F]",
        ) {
            // An id's own spelling, or that spelling with one hex digit changed, removed or added: texts
            // near the valid ones, so both answers come up.
            let spelled = ClientId(bytes).to_string();
            let mut text = spelled.clone();
            match edit {
                0 => {}
                1 => text.replace_range(at..=at, &digit),
                2 => { text.remove(at); }
                _ => text.insert_str(at, &digit),
            }
            let canonical = text.len() == 32 && !text.bytes().any(|byte| byte.is_ascii_uppercase());
            match text.parse::<ClientId>() {
                Ok(id) => prop_assert_eq!(id.to_string(), text.clone()),
                Err(NotAClientId) => prop_assert!(!canonical, "{text} was refused"),
            }
            if edit == 0 {
                prop_assert_eq!(text.parse::<ClientId>(), Ok(ClientId(bytes)));
            }
        }

        #[test]
        fn every_id_round_trips_through_its_text(bytes in any::<[u8; 16]>()) {
            let id = ClientId(bytes);
            prop_assert_eq!(id.to_string().parse::<ClientId>(), Ok(id));
        }
    }
}
