//! Who is asking: the anonymous identity each browser carries in a cookie, and whether it signed in.
//! A job belongs to the identity that started it; only that identity, or someone signed in with the
//! studio's secret, may cancel it or delete its image.

use std::fmt;
use std::str::FromStr;

use rand::RngCore as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// The person behind a request, as far as the studio can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requester {
    /// The browser's anonymous identity, when it sent one (or was just given one).
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
    fn debug_output_shows_only_a_prefix() {
        let id = ClientId::new();
        let shown = format!("{id:?}");
        assert!(shown.starts_with("ClientId(") && !shown.contains(&id.to_string()));
    }

    proptest! {
        #[test]
        fn any_text_that_parses_is_the_one_spelling_of_its_id(text in "[0-9a-fA-F]{30,34}|.{0,40}") {
            if let Ok(id) = text.parse::<ClientId>() {
                prop_assert_eq!(id.to_string(), text);
            }
        }

        #[test]
        fn every_id_round_trips_through_its_text(bytes in any::<[u8; 16]>()) {
            let id = ClientId(bytes);
            prop_assert_eq!(id.to_string().parse::<ClientId>(), Ok(id));
        }
    }
}
