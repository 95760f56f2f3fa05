//! The door to the LAN: who may come in, and how much each client may ask of the studio.
//!
//! The decisions live here as plain functions and types (addresses, hosts, origins, secrets, cookies,
//! rate limits) so they are tested without HTTP; `routes::access` applies them to every request.
//! [`Access`] holds the configured policy and the little state the door keeps (rate buckets, open
//! streams, pairing links); it is built once and cheap to clone.

pub mod cookies;
pub mod headers;
pub mod host;
pub mod identity;
pub mod network;
pub mod origin;
pub mod pairing;
pub mod rate;
pub mod secret;
pub mod streams;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{AccessConfig, SecretSource, TwoSecrets};
use host::HostPolicy;
use identity::{ClientId, DerivedIdentities, Requester};
use network::{AddressAllowlist, ClientKey, canonical};
use pairing::PairingBook;
use rate::{DoorClock, Rate, RateLimiter};
use secret::{Secret, SessionKeys};
use streams::{StreamCounter, StreamPermit};

/// Wrong secrets one client (an IPv4 address, an IPv6 /64) may try in a burst, then one more every
/// [`SIGN_IN_INTERVAL`].
///
/// There is deliberately no budget shared by all clients: once it ran out, the right secret would have
/// to be refused too (or the answer would tell a guesser which guess was right), so anyone could lock
/// the owner out by guessing from a few addresses. Guessing stays slow because a client cannot make
/// itself new keys at will: the LAN's IPv4 addresses are few, and IPv6 is counted by /64.
const SIGN_IN_BURST: u32 = 5;
const SIGN_IN_INTERVAL: Duration = Duration::from_secs(12);
/// Unknown pairing links one client may open in a burst, then one more every
/// [`PAIRING_GUESS_INTERVAL`]: a budget of its own, apart from the secret's.
///
/// Pairing tokens are 256 random bits, so guessing one is hopeless whatever the rate; the limit only
/// keeps a script from hammering the door. Being apart, it never touches the secret's budget: a web
/// page that makes its visitors' browsers open `/pair/x` (an `<img>` will do) cannot lock the owner
/// out of signing in, and a live link works whatever either budget says.
const PAIRING_GUESS_BURST: u32 = 10;
const PAIRING_GUESS_INTERVAL: Duration = Duration::from_secs(6);
/// A refused client is logged at most this often, so a scanner cannot flood the log...
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// ...and refusals of all clients together at most this many at once, then one every
/// [`REFUSAL_LOG_TOTAL_INTERVAL`], so neither can a scanner with many addresses.
const REFUSAL_LOG_TOTAL_BURST: u32 = 20;
const REFUSAL_LOG_TOTAL_INTERVAL: Duration = Duration::from_secs(3);
/// Connections one client (an IPv4 address, an IPv6 /64) may hold open at once beside its event
/// streams (`--max-streams-per-client`, each a connection of its own; no cap on streams, no cap here
/// either). A browser opens six per host; a client that opens connections and sends nothing holds each
/// only until the server's time for a request's head runs out, and no more than these at a time.
pub const CONNECTIONS_BESIDE_STREAMS: usize = 96;

/// The door could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    TwoSecrets(#[from] TwoSecrets),
    #[error("cannot read the access secret from {path}")]
    PasswordFile { path: PathBuf, source: io::Error },
    #[error("the access secret file {0} is empty")]
    EmptyPasswordFile(PathBuf),
    #[error("cannot read or create the session key {path}")]
    InstallKey { path: PathBuf, source: io::Error },
}

/// A sign-in (by secret or pairing link) that did not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("the studio has no access secret")]
    NoSecret,
    #[error("wrong secret")]
    WrongSecret,
    #[error("the pairing link was used already or has expired")]
    UnknownLink,
    #[error("too many attempts")]
    TooManyAttempts { retry_after: Duration },
}

/// How a request identified itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identification {
    /// Who it is, as far as the studio can tell.
    pub requester: Requester,
    /// A bearer token was sent and it was wrong (or its client tried too many).
    pub bad_bearer: Option<SignInError>,
    /// The client identity came from the client cookie. Otherwise it is the one derived from the
    /// bearer token or the address ([`DerivedIdentities`]).
    pub from_cookie: bool,
}

/// The configured door and its state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    clock: DoorClock,
    allow: AddressAllowlist,
    hosts: HostPolicy,
    keys: Option<SessionKeys>,
    derived: DerivedIdentities,
    pairing: PairingBook,
    job_rate: RateLimiter,
    sign_in_rate: RateLimiter,
    pairing_rate: RateLimiter,
    refusal_log: RateLimiter,
    refusal_log_total: RateLimiter<()>,
    streams: StreamCounter,
    connections: StreamCounter,
}

impl Access {
    /// The door as configured for a studio listening on `listen`. With a secret, reads (or creates)
    /// the session key in `data_dir`.
    pub async fn new(
        config: &AccessConfig,
        listen: SocketAddr,
        data_dir: &Path,
    ) -> Result<Access, AccessError> {
        let secret = match config.secret_source()? {
            SecretSource::None => None,
            SecretSource::Setting(secret) => Some(secret),
            SecretSource::File(path) => Some(read_secret_file(&path).await?),
        };
        let keys = match &secret {
            Some(secret) => {
                let key = secret::load_or_create_install_key(data_dir)
                    .await
                    .map_err(|source| AccessError::InstallKey {
                        path: data_dir.join(secret::KEY_FILE),
                        source,
                    })?;
                Some(SessionKeys::new(secret, &key))
            }
            None => None,
        };
        let access = Access::with_keys(config, listen, keys);
        access.report(secret.as_ref());
        Ok(access)
    }

    /// The door with session keys already derived (tests and [`Access::new`]).
    pub fn with_keys(config: &AccessConfig, listen: SocketAddr, keys: Option<SessionKeys>) -> Access {
        Access::with_clock(config, listen, keys, DoorClock::default())
    }

    fn with_clock(
        config: &AccessConfig,
        listen: SocketAddr,
        keys: Option<SessionKeys>,
        clock: DoorClock,
    ) -> Access {
        let cap = |limit: usize| (limit > 0).then_some(limit);
        let limiter = |rate: Option<Rate>| RateLimiter::new(rate, &clock);
        Access {
            inner: Arc::new(Inner {
                allow: config.allow.clone(),
                hosts: HostPolicy::new(&config.allowed_hosts.0, listen),
                keys,
                derived: DerivedIdentities::new(),
                pairing: PairingBook::new(),
                job_rate: limiter(Rate::per_minute(config.jobs_per_minute)),
                sign_in_rate: limiter(Some(Rate::new(SIGN_IN_BURST, SIGN_IN_INTERVAL))),
                pairing_rate: limiter(Some(Rate::new(PAIRING_GUESS_BURST, PAIRING_GUESS_INTERVAL))),
                refusal_log: limiter(Some(Rate::new(1, REFUSAL_LOG_INTERVAL))),
                refusal_log_total: RateLimiter::with_capacity(
                    Some(Rate::new(REFUSAL_LOG_TOTAL_BURST, REFUSAL_LOG_TOTAL_INTERVAL)),
                    &clock,
                    1,
                ),
                streams: StreamCounter::new(cap(config.max_streams_per_client)),
                connections: StreamCounter::new(
                    cap(config.max_streams_per_client)
                        .map(|streams| streams.saturating_add(CONNECTIONS_BESIDE_STREAMS)),
                ),
                clock,
            }),
        }
    }

    fn report(&self, secret: Option<&Secret>) {
        let allow = self
            .inner
            .allow
            .blocks()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(%allow, secret = secret.is_some(), "access policy");
        if self.inner.allow.admits_everything() {
            tracing::warn!("the address allowlist admits every address: keep the studio behind a firewall");
        }
        match secret {
            None => tracing::info!("no access secret: anyone on the allowed networks may use the studio"),
            Some(secret) if secret.chars() < secret::SHORT_SECRET => {
                tracing::warn!(
                    length = secret.chars(),
                    "the access secret is short; {} characters or more are safer",
                    secret::SHORT_SECRET
                );
            }
            Some(_) => {}
        }
    }

    /// True when a client at `address` may talk to the studio at all.
    pub fn admits_address(&self, address: IpAddr) -> bool {
        self.inner.allow.admits(address)
    }

    /// True when a client at `address` may ask whether the studio is up and ready, whatever the
    /// allowlist says: loopback, which is the machine itself (in Docker, the container itself, where
    /// the image's health check runs). Docker's proxy never relays a connection from loopback: what it
    /// relays arrives from the bridge's gateway address. So a narrowed `ZIMAGE_ALLOW` cannot turn the
    /// health check into a 403, and this opens nothing to the network.
    pub fn admits_health_probe(&self, address: IpAddr) -> bool {
        canonical(address).is_loopback()
    }

    /// True when a refusal of `address` should be logged now: at most once a minute per client, and a
    /// few a minute for all clients together.
    pub fn should_log_refusal(&self, address: IpAddr) -> bool {
        self.inner
            .refusal_log
            .try_take(ClientKey::of(address))
            .and_then(|()| self.inner.refusal_log_total.try_take(()))
            .is_ok()
    }

    /// True when a request naming `host` is meant for the studio. A request without a `Host` header
    /// does not come from a browser, and DNS rebinding needs one.
    pub fn admits_host(&self, host: Option<&str>) -> bool {
        host.is_none_or(|host| self.inner.hosts.admits(host))
    }

    /// True when the studio has an access secret, so requests must be signed in.
    pub fn secret_required(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// Identifies a request from its cookies, its `Authorization` header and its address.
    ///
    /// Every request gets a client identity: the client cookie's when it sent one, else one derived
    /// from its bearer token when it sends one, else from its address (the /64 for IPv6).
    pub fn identify(
        &self,
        client_cookie: Option<&str>,
        session_cookie: Option<&str>,
        authorization: Option<&str>,
        address: IpAddr,
    ) -> Identification {
        let cookie = client_cookie.and_then(|value| value.parse::<ClientId>().ok());
        let token = authorization
            .and_then(bearer_token)
            .filter(|token| !token.is_empty());
        let client = cookie.unwrap_or_else(|| match token {
            Some(token) => self.inner.derived.of_bearer(token),
            None => self.inner.derived.of_address(address),
        });
        let from_cookie = cookie.is_some();
        let Some(keys) = &self.inner.keys else {
            return Identification {
                requester: Requester {
                    client: Some(client),
                    signed_in: false,
                },
                bad_bearer: None,
                from_cookie,
            };
        };
        let session = session_cookie.is_some_and(|token| keys.verify(token, unix_now()));
        let mut bad_bearer = None;
        let bearer =
            authorization
                .and_then(bearer_token)
                .map(|token| match self.check_secret(token, address) {
                    Ok(()) => true,
                    Err(error) => {
                        bad_bearer = Some(error);
                        false
                    }
                });
        Identification {
            requester: Requester {
                client: Some(client),
                signed_in: session || bearer == Some(true),
            },
            bad_bearer,
            from_cookie,
        }
    }

    /// Signs in with the secret: a new session token for the cookie.
    pub fn sign_in(&self, attempt: &str, address: IpAddr) -> Result<String, SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        self.check_secret(attempt, address)?;
        tracing::info!(%address, "signed in with the secret");
        Ok(keys.issue(unix_now(), secret::SESSION_LIFETIME))
    }

    /// A new one-time pairing token, for a signed-in device to show as a QR code.
    pub fn open_pairing(&self) -> Result<String, SignInError> {
        if self.inner.keys.is_none() {
            return Err(SignInError::NoSecret);
        }
        Ok(self.inner.pairing.issue(self.inner.clock.now()))
    }

    /// Uses a pairing token: a new session token for the device that opened the link.
    ///
    /// A live token works whatever the limits of the device's address say: tokens are 256 random
    /// bits, so nobody gets one by guessing, and a signed-in device can always pair another one (say,
    /// the owner's phone on the same IPv6 /64 as someone who guessed wrong too often).
    ///
    /// An unknown token never touches the secret's budget: it counts against a pairing budget of its
    /// own ([`PAIRING_GUESS_BURST`]), and not even that when the browser marks the request as coming
    /// from another site (`cross_site`): any page can make its visitors' browsers open such a link, and
    /// what that cost would be the visitor's, not the page's.
    pub fn redeem_pairing(
        &self,
        token: &str,
        address: IpAddr,
        cross_site: bool,
    ) -> Result<String, SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        if !self.inner.pairing.redeem(token, self.inner.clock.now()) {
            if !cross_site {
                self.inner
                    .pairing_rate
                    .try_take(ClientKey::of(address))
                    .map_err(|retry_after| SignInError::TooManyAttempts { retry_after })?;
            }
            return Err(SignInError::UnknownLink);
        }
        tracing::info!(%address, "device paired");
        Ok(keys.issue(unix_now(), secret::SESSION_LIFETIME))
    }

    /// Admits one more job from `address`, or says how long to wait.
    pub fn admit_job(&self, address: IpAddr) -> Result<(), Duration> {
        self.inner.job_rate.try_take(ClientKey::of(address))
    }

    /// Admits `count` jobs of `address` at once, or none (see [`RateLimiter::try_take_n`]).
    pub fn admit_jobs(&self, address: IpAddr, count: u32) -> Result<(), Option<Duration>> {
        self.inner.job_rate.try_take_n(ClientKey::of(address), count)
    }

    /// A place for one more event stream of `address`, unless it holds its limit.
    pub fn open_stream(&self, address: IpAddr) -> Option<StreamPermit> {
        self.inner.streams.try_open(address)
    }

    /// A place for one more open connection of the client at `address` (counted by [`ClientKey`]),
    /// unless it holds its limit already ([`CONNECTIONS_BESIDE_STREAMS`] more than its event streams);
    /// the place is freed when dropped.
    pub fn hold_connection(&self, address: IpAddr) -> Option<StreamPermit> {
        self.inner.connections.try_open(ClientKey::of(address).network())
    }

    /// Checks an attempt at the secret against the sign-in budget of its client.
    ///
    /// A client that used up its attempts is refused before the attempt is looked at, the right
    /// secret included: otherwise a guesser could go on guessing and learn from the answer which guess
    /// was right. Right secrets cost nothing, so scripts may send the secret with every request.
    fn check_secret(&self, attempt: &str, address: IpAddr) -> Result<(), SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        let key = ClientKey::of(address);
        let too_many = |retry_after| SignInError::TooManyAttempts { retry_after };
        self.inner.sign_in_rate.check(key).map_err(too_many)?;
        if keys.is_secret(attempt) {
            return Ok(());
        }
        self.inner.sign_in_rate.charge(key);
        tracing::warn!(%address, client = %key, "wrong access secret");
        Err(SignInError::WrongSecret)
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Exactly `N` bytes written as `2N` lowercase hex digits, the one spelling the studio writes (with
/// `hex::encode`), so a token or id has exactly one text form; anything else is `None`.
pub(crate) fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let mut bytes = [0; N];
    let lowercase = !text.bytes().any(|byte| byte.is_ascii_uppercase());
    (lowercase && hex::decode_to_slice(text, &mut bytes).is_ok()).then_some(bytes)
}

async fn read_secret_file(path: &Path) -> Result<Secret, AccessError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| AccessError::PasswordFile {
            path: path.to_owned(),
            source,
        })?;
    Secret::new(&text).ok_or_else(|| AccessError::EmptyPasswordFile(path.to_owned()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn address() -> IpAddr {
        "192.168.1.30".parse().unwrap()
    }

    fn door_with_clock(secret: Option<&str>, clock: &DoorClock) -> Access {
        let keys = secret.map(|secret| SessionKeys::new(&Secret::new(secret).unwrap(), &[1; 32]));
        Access::with_clock(
            &AccessConfig::default(),
            "0.0.0.0:7860".parse().unwrap(),
            keys,
            clock.clone(),
        )
    }

    fn door(secret: Option<&str>) -> Access {
        door_with_clock(secret, &DoorClock::manual())
    }

    #[test]
    fn without_a_secret_nobody_is_signed_in_and_bearers_are_ignored() {
        let door = door(None);
        let client = ClientId::new().to_string();
        let seen = door.identify(Some(&client), Some("v1.x"), Some("Bearer whatever"), address());
        assert_eq!(
            seen.requester,
            Requester {
                client: client.parse().ok(),
                signed_in: false
            }
        );
        assert_eq!((seen.bad_bearer, seen.from_cookie), (None, true));
        assert_eq!(door.sign_in("x", address()), Err(SignInError::NoSecret));
        assert_eq!(door.open_pairing(), Err(SignInError::NoSecret));
        assert!(!door.secret_required());
    }

    #[test]
    fn a_session_from_sign_in_identifies_the_browser() {
        let door = door(Some("correct horse"));
        let session = door.sign_in("correct horse", address()).unwrap();
        let signed_in =
            |session: Option<&str>| door.identify(None, session, None, address()).requester.signed_in;
        assert!(signed_in(Some(&session)));
        assert!(!signed_in(Some("v1.1.2.3")));
        assert!(!signed_in(None));
    }

    #[test]
    fn bearer_tokens_sign_in_scripts_and_wrong_ones_are_reported() {
        let door = door(Some("correct horse"));
        let seen = door.identify(None, None, Some("Bearer correct horse"), address());
        assert!(seen.requester.signed_in && seen.bad_bearer.is_none());
        let seen = door.identify(None, None, Some("bearer wrong"), address());
        assert_eq!(
            (seen.requester.signed_in, seen.bad_bearer),
            (false, Some(SignInError::WrongSecret))
        );
        let seen = door.identify(None, None, Some("Basic Zm9vOmJhcg=="), address());
        assert_eq!((seen.requester.signed_in, seen.bad_bearer), (false, None));
    }

    #[test]
    fn wrong_secrets_are_limited_per_address_even_when_the_right_one_follows() {
        let clock = DoorClock::manual();
        let door = door_with_clock(Some("correct horse"), &clock);
        for _ in 0..SIGN_IN_BURST {
            assert_eq!(door.sign_in("wrong", address()), Err(SignInError::WrongSecret));
        }
        assert_eq!(
            door.sign_in("correct horse", address()),
            Err(SignInError::TooManyAttempts {
                retry_after: SIGN_IN_INTERVAL
            })
        );
        let other: IpAddr = "192.168.1.31".parse().unwrap();
        assert!(door.sign_in("correct horse", other).is_ok());
        clock.advance(SIGN_IN_INTERVAL);
        assert!(door.sign_in("correct horse", address()).is_ok());
    }

    #[test]
    fn right_secrets_do_not_use_up_attempts() {
        let door = door(Some("correct horse"));
        for _ in 0..(SIGN_IN_BURST * 3) {
            assert!(door.sign_in("correct horse", address()).is_ok());
            let seen = door.identify(None, None, Some("Bearer correct horse"), address());
            assert!(seen.requester.signed_in);
        }
    }

    #[test]
    fn guesses_from_many_addresses_never_lock_out_the_right_secret_from_another() {
        let door = door(Some("correct horse"));
        for index in 0..200u8 {
            let guesser = IpAddr::from([10, 0, 0, index]);
            for _ in 0..(SIGN_IN_BURST + 2) {
                assert!(door.sign_in("wrong", guesser).is_err());
            }
        }
        assert!(door.sign_in("correct horse", address()).is_ok());
        let seen = door.identify(None, None, Some("Bearer correct horse"), address());
        assert!(seen.requester.signed_in);
    }

    #[test]
    fn an_ipv6_guesser_cannot_escape_its_limit_by_changing_address_within_its_64() {
        let door = door(Some("correct horse"));
        let in_64 = |host: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, host, 1]);
        for host in 0..u16::try_from(SIGN_IN_BURST).unwrap() {
            assert_eq!(door.sign_in("wrong", in_64(host)), Err(SignInError::WrongSecret));
        }
        assert!(matches!(
            door.sign_in("wrong", in_64(999)),
            Err(SignInError::TooManyAttempts { .. })
        ));
        // Another /64 is another client.
        let elsewhere = IpAddr::from([0x2001, 0xdb8, 1, 3, 0, 0, 0, 1]);
        assert!(door.sign_in("correct horse", elsewhere).is_ok());
    }

    #[test]
    fn a_pairing_link_signs_in_one_device_once() {
        let door = door(Some("correct horse"));
        let token = door.open_pairing().unwrap();
        let session = door.redeem_pairing(&token, address(), false).unwrap();
        assert!(
            door.identify(None, Some(&session), None, address())
                .requester
                .signed_in
        );
        assert_eq!(
            door.redeem_pairing(&token, address(), false),
            Err(SignInError::UnknownLink)
        );
    }

    #[test]
    fn a_live_pairing_link_works_for_an_address_that_used_up_both_budgets() {
        let door = door(Some("correct horse"));
        for _ in 0..SIGN_IN_BURST {
            assert_eq!(door.sign_in("wrong", address()), Err(SignInError::WrongSecret));
        }
        // Wrong secrets do not touch the pairing budget...
        assert_eq!(
            door.redeem_pairing(&"0".repeat(64), address(), false),
            Err(SignInError::UnknownLink)
        );
        for _ in 1..PAIRING_GUESS_BURST {
            let _ = door.redeem_pairing(&"0".repeat(64), address(), false);
        }
        assert!(matches!(
            door.redeem_pairing(&"0".repeat(64), address(), false),
            Err(SignInError::TooManyAttempts { .. })
        ));
        // ...and a live link works whatever both say.
        let token = door.open_pairing().unwrap();
        assert!(door.redeem_pairing(&token, address(), false).is_ok());
    }

    #[test]
    fn unknown_pairing_links_use_up_their_own_budget_never_the_secrets() {
        let clock = DoorClock::manual();
        let door = door_with_clock(Some("correct horse"), &clock);
        for _ in 0..PAIRING_GUESS_BURST {
            assert_eq!(
                door.redeem_pairing("x", address(), false),
                Err(SignInError::UnknownLink)
            );
        }
        assert_eq!(
            door.redeem_pairing(&"0".repeat(64), address(), false),
            Err(SignInError::TooManyAttempts {
                retry_after: PAIRING_GUESS_INTERVAL
            })
        );
        assert!(door.sign_in("correct horse", address()).is_ok());
        // Wrong secrets still meet their own limit, unchanged by the guesses.
        for _ in 0..SIGN_IN_BURST {
            assert_eq!(door.sign_in("wrong", address()), Err(SignInError::WrongSecret));
        }
        clock.advance(PAIRING_GUESS_INTERVAL);
        assert_eq!(
            door.redeem_pairing("x", address(), false),
            Err(SignInError::UnknownLink)
        );
    }

    #[test]
    fn links_a_browser_marks_cross_site_cost_nothing() {
        let door = door(Some("correct horse"));
        for _ in 0..(PAIRING_GUESS_BURST + SIGN_IN_BURST) * 3 {
            assert_eq!(
                door.redeem_pairing("x", address(), true),
                Err(SignInError::UnknownLink)
            );
        }
        assert_eq!(
            door.redeem_pairing("x", address(), false),
            Err(SignInError::UnknownLink)
        );
        assert!(door.sign_in("correct horse", address()).is_ok());
        let token = door.open_pairing().unwrap();
        assert!(door.redeem_pairing(&token, address(), true).is_ok());
    }

    #[test]
    fn every_request_has_a_client_the_cookie_else_the_bearer_else_the_address() {
        for secret in [None, Some("correct horse")] {
            let door = door(secret);
            let other: IpAddr = "192.168.1.31".parse().unwrap();
            let client = |cookie: Option<&str>, bearer: Option<&str>, address: IpAddr| {
                let seen = door.identify(cookie, None, bearer, address);
                (seen.requester.client.unwrap(), seen.from_cookie)
            };
            let cookie = ClientId::new();
            let cookie_text = cookie.to_string();
            let bearer = "Bearer correct horse";
            assert_eq!(
                client(Some(&cookie_text), Some(bearer), address()),
                (cookie, true)
            );
            // A cookie that is not an id is no cookie.
            assert_eq!(
                client(Some("nonsense"), None, address()),
                client(None, None, address())
            );
            let (by_bearer, from_cookie) = client(None, Some(bearer), address());
            assert!(!from_cookie);
            assert_eq!(client(None, Some(bearer), other).0, by_bearer);
            assert_ne!(client(None, None, address()).0, by_bearer);
            let (by_address, from_cookie) = client(None, None, address());
            assert!(!from_cookie);
            assert_eq!(client(None, None, address()).0, by_address);
            assert_eq!(client(None, Some("Basic Zm9v"), address()).0, by_address);
            assert_ne!(client(None, None, other).0, by_address);
            if secret.is_none() {
                // Without a secret any token is a name a script goes by.
                assert_ne!(client(None, Some("Bearer sk-other"), address()).0, by_bearer);
            }
        }
    }

    #[test]
    fn jobs_are_counted_per_client() {
        let clock = DoorClock::manual();
        let config = AccessConfig {
            jobs_per_minute: 2,
            ..AccessConfig::default()
        };
        let door = Access::with_clock(&config, "0.0.0.0:7860".parse().unwrap(), None, clock.clone());
        let in_64 = |host: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, host, 1]);
        assert!(door.admit_job(in_64(1)).is_ok() && door.admit_job(in_64(2)).is_ok());
        assert_eq!(door.admit_job(in_64(3)), Err(Duration::from_secs(30)));
        assert!(door.admit_job(address()).is_ok());
        clock.advance(Duration::from_secs(30));
        assert!(door.admit_job(in_64(3)).is_ok());
    }

    #[test]
    fn a_client_holds_only_so_many_connections_and_a_closed_one_frees_its_place() {
        let door = door(None);
        let limit = AccessConfig::default().max_streams_per_client + CONNECTIONS_BESIDE_STREAMS;
        let in_64 = |host: u16| IpAddr::from([0x2001, 0xdb8, 1, 2, 0, 0, host, 1]);
        let mut held: Vec<_> = (0..limit)
            .map(|index| door.hold_connection(in_64(u16::try_from(index).unwrap())))
            .collect();
        assert!(held.iter().all(Option::is_some));
        // Another address of the same /64 is the same client...
        assert!(door.hold_connection(in_64(9999)).is_none());
        // ...another client is not.
        assert!(door.hold_connection(address()).is_some());
        held.pop();
        assert!(door.hold_connection(in_64(9999)).is_some());
    }

    #[test]
    fn only_loopback_may_always_probe_health() {
        let door = Access::with_keys(
            &AccessConfig {
                allow: "192.168.1.0/24".parse().unwrap(),
                ..AccessConfig::default()
            },
            "0.0.0.0:7860".parse().unwrap(),
            None,
        );
        for loopback in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            let loopback: IpAddr = loopback.parse().unwrap();
            assert!(!door.admits_address(loopback) && door.admits_health_probe(loopback));
        }
        for other in ["172.17.0.1", "192.168.2.1", "8.8.8.8", "::", "0.0.0.0", "fe80::1"] {
            assert!(!door.admits_health_probe(other.parse().unwrap()), "{other}");
        }
    }

    #[test]
    fn refusals_are_logged_once_a_minute_per_client_and_a_few_at_a_time_overall() {
        let clock = DoorClock::manual();
        let door = door_with_clock(None, &clock);
        let scanner = IpAddr::from([8, 8, 8, 8]);
        assert!(door.should_log_refusal(scanner));
        assert!(!door.should_log_refusal(scanner));
        let logged = (0..100u8)
            .filter(|index| door.should_log_refusal(IpAddr::from([9, 9, 9, *index])))
            .count();
        assert_eq!(logged, REFUSAL_LOG_TOTAL_BURST as usize - 1);
        clock.advance(REFUSAL_LOG_INTERVAL);
        assert!(door.should_log_refusal(scanner));
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn hex_is_lowercase_and_exact() {
        assert_eq!(hex::encode([0x00, 0xab, 0xff]), "00abff");
        assert_eq!(decode_hex::<3>("00abff"), Some([0x00, 0xab, 0xff]));
        assert_eq!(decode_hex::<3>("00ABFF"), None);
        assert_eq!(decode_hex::<3>("00abf"), None);
        assert_eq!(decode_hex::<2>("00abff"), None);
        assert_eq!(decode_hex::<1>("é"), None);
    }

    proptest! {
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 16]>()) {
            prop_assert_eq!(decode_hex::<16>(&hex::encode(bytes)), Some(bytes));
        }

        #[test]
        fn a_text_decodes_exactly_when_it_is_the_one_spelling_of_its_bytes(
            bytes in any::<[u8; 16]>(), edit in 0usize..4, at in 0usize..32, digit in "[0-9a-fA-F]",
        ) {
            // Some bytes' own spelling, or that spelling with one hex digit changed, removed or added:
            // texts near the valid ones, so both answers come up.
            let spelled = hex::encode(bytes);
            let mut text = spelled.clone();
            match edit {
                0 => {}
                1 => text.replace_range(at..=at, &digit),
                2 => {
                    text.remove(at);
                }
                _ => text.insert_str(at, &digit),
            }
            let canonical = text.len() == 32 && !text.bytes().any(|byte| byte.is_ascii_uppercase());
            match decode_hex::<16>(&text) {
                Some(decoded) => prop_assert_eq!(hex::encode(decoded), text.clone()),
                None => prop_assert!(!canonical, "{text} was refused"),
            }
            if edit == 0 {
                prop_assert_eq!(decode_hex::<16>(&text), Some(bytes));
            }
        }
    }

    #[tokio::test]
    async fn the_secret_comes_from_the_setting_or_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from the file\n").unwrap();
        let config = AccessConfig {
            password_file: Some(file.clone()),
            ..AccessConfig::default()
        };
        let door = Access::new(&config, listen, dir.path()).await.unwrap();
        assert!(door.sign_in("from the file", address()).is_ok());

        // An empty setting is no setting: the file beside it is used (Compose always sets the variable).
        let config = AccessConfig {
            password: "".parse().ok(),
            password_file: Some(file.clone()),
            ..AccessConfig::default()
        };
        let door = Access::new(&config, listen, dir.path()).await.unwrap();
        assert!(door.sign_in("from the file", address()).is_ok());

        let config = AccessConfig {
            password: "  ".parse().ok(),
            ..AccessConfig::default()
        };
        assert!(
            !Access::new(&config, listen, dir.path())
                .await
                .unwrap()
                .secret_required()
        );

        let config = AccessConfig {
            password: "a secret".parse().ok(),
            password_file: Some(file.clone()),
            ..AccessConfig::default()
        };
        assert!(matches!(
            Access::new(&config, listen, dir.path()).await,
            Err(AccessError::TwoSecrets(_))
        ));

        std::fs::write(&file, "\n").unwrap();
        let config = AccessConfig {
            password_file: Some(file),
            ..AccessConfig::default()
        };
        assert!(matches!(
            Access::new(&config, listen, dir.path()).await,
            Err(AccessError::EmptyPasswordFile(_))
        ));
        let config = AccessConfig {
            password_file: Some(dir.path().join("missing")),
            ..AccessConfig::default()
        };
        assert!(matches!(
            Access::new(&config, listen, dir.path()).await,
            Err(AccessError::PasswordFile { .. })
        ));
    }
}
