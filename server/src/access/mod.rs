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
use identity::{ClientId, Requester};
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
/// A refused client is logged at most this often, so a scanner cannot flood the log...
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// ...and refusals of all clients together at most this many at once, then one every
/// [`REFUSAL_LOG_TOTAL_INTERVAL`], so neither can a scanner with many addresses.
const REFUSAL_LOG_TOTAL_BURST: u32 = 20;
const REFUSAL_LOG_TOTAL_INTERVAL: Duration = Duration::from_secs(3);

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
    pairing: PairingBook,
    job_rate: RateLimiter,
    sign_in_rate: RateLimiter,
    refusal_log: RateLimiter,
    refusal_log_total: RateLimiter<()>,
    streams: StreamCounter,
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
                pairing: PairingBook::new(),
                job_rate: limiter(Rate::per_minute(config.jobs_per_minute)),
                sign_in_rate: limiter(Some(Rate::new(SIGN_IN_BURST, SIGN_IN_INTERVAL))),
                refusal_log: limiter(Some(Rate::new(1, REFUSAL_LOG_INTERVAL))),
                refusal_log_total: RateLimiter::with_capacity(
                    Some(Rate::new(REFUSAL_LOG_TOTAL_BURST, REFUSAL_LOG_TOTAL_INTERVAL)),
                    &clock,
                    1,
                ),
                streams: StreamCounter::new(cap(config.max_streams_per_client)),
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

    /// Identifies a request from its cookies and `Authorization` header.
    pub fn identify(
        &self,
        client_cookie: Option<&str>,
        session_cookie: Option<&str>,
        authorization: Option<&str>,
        address: IpAddr,
    ) -> Identification {
        let client = client_cookie.and_then(|value| value.parse::<ClientId>().ok());
        let Some(keys) = &self.inner.keys else {
            return Identification {
                requester: Requester {
                    client,
                    signed_in: false,
                },
                bad_bearer: None,
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
                client,
                signed_in: session || bearer == Some(true),
            },
            bad_bearer,
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
    /// A live token works whatever the sign-in limit of the device's address says: tokens are 256
    /// random bits, so nobody gets one by guessing, and a signed-in device can always pair another one
    /// (say, the owner's phone on the same IPv6 /64 as someone who guessed wrong too often). Unknown
    /// tokens count as wrong attempts, so trying them only uses up the sender's own budget.
    pub fn redeem_pairing(&self, token: &str, address: IpAddr) -> Result<String, SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        if !self.inner.pairing.redeem(token, self.inner.clock.now()) {
            let key = ClientKey::of(address);
            self.inner
                .sign_in_rate
                .try_take(key)
                .map_err(|retry_after| SignInError::TooManyAttempts { retry_after })?;
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
        assert_eq!(seen.bad_bearer, None);
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
        let session = door.redeem_pairing(&token, address()).unwrap();
        assert!(
            door.identify(None, Some(&session), None, address())
                .requester
                .signed_in
        );
        assert_eq!(
            door.redeem_pairing(&token, address()),
            Err(SignInError::UnknownLink)
        );
    }

    #[test]
    fn a_live_pairing_link_works_for_an_address_that_used_up_its_attempts() {
        let door = door(Some("correct horse"));
        for _ in 0..SIGN_IN_BURST {
            assert_eq!(door.sign_in("wrong", address()), Err(SignInError::WrongSecret));
        }
        let token = door.open_pairing().unwrap();
        assert!(matches!(
            door.redeem_pairing(&"0".repeat(64), address()),
            Err(SignInError::TooManyAttempts { .. })
        ));
        assert!(door.redeem_pairing(&token, address()).is_ok());
    }

    #[test]
    fn unknown_pairing_links_use_up_attempts() {
        let door = door(Some("correct horse"));
        for _ in 0..SIGN_IN_BURST {
            assert_eq!(
                door.redeem_pairing(&"0".repeat(64), address()),
                Err(SignInError::UnknownLink)
            );
        }
        assert!(matches!(
            door.sign_in("correct horse", address()),
            Err(SignInError::TooManyAttempts { .. })
        ));
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
        fn any_text_that_decodes_is_the_one_spelling_of_its_bytes(text in "[0-9a-fA-F]{0,34}|.{0,40}") {
            if let Some(bytes) = decode_hex::<16>(&text) {
                prop_assert_eq!(hex::encode(bytes), text);
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
