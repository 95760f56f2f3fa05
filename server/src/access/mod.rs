//! The door to the LAN: who may come in, and how much each client may ask of the studio.
//!
//! The decisions live here as plain functions and types (addresses, hosts, origins, secrets, cookies,
//! rate limits) so they are tested without HTTP; `routes::access` applies them to every request.
//! [`Access`] holds the configured policy and the little state the door keeps (rate buckets, open
//! streams, pairing links); it is built once and cheap to clone.

pub mod cookies;
pub mod headers;
mod hex;
pub mod host;
pub mod identity;
pub mod network;
pub mod origin;
pub mod pairing;
pub mod rate;
pub mod secret;
pub mod streams;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::AccessConfig;
use host::HostPolicy;
use identity::{ClientId, Requester};
use network::AddressAllowlist;
use pairing::PairingBook;
use rate::{Rate, RateLimiter};
use secret::{Secret, SessionKeys};
use streams::{StreamCounter, StreamPermit};

/// Wrong secrets one client address may try in a burst, then one more every [`SIGN_IN_INTERVAL`].
const SIGN_IN_BURST: u32 = 5;
const SIGN_IN_INTERVAL: Duration = Duration::from_secs(12);
/// Wrong secrets all clients together may try in a burst, then one more every [`GLOBAL_SIGN_IN_INTERVAL`].
const GLOBAL_SIGN_IN_BURST: u32 = 20;
const GLOBAL_SIGN_IN_INTERVAL: Duration = Duration::from_secs(3);
/// A refused address is logged at most this often, so a scanner cannot flood the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The door could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read the access secret from {path}")]
    PasswordFile { path: PathBuf, source: io::Error },
    #[error("the access secret file {0} is empty")]
    EmptyPasswordFile(PathBuf),
    #[error("cannot read or create the session key in {path}")]
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
    allow: AddressAllowlist,
    hosts: HostPolicy,
    keys: Option<SessionKeys>,
    pairing: PairingBook,
    job_rate: RateLimiter,
    sign_in_rate: RateLimiter,
    global_sign_in_rate: RateLimiter,
    refusal_log: RateLimiter,
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
        let secret = match (&config.password, &config.password_file) {
            (Some(secret), _) if !secret.is_empty() => Some(secret.clone()),
            (_, Some(path)) => Some(read_secret_file(path).await?),
            _ => None,
        };
        let keys = match &secret {
            Some(secret) => {
                let key = secret::load_or_create_install_key(data_dir)
                    .await
                    .map_err(|source| AccessError::InstallKey {
                        path: data_dir.to_owned(),
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
        let cap = |limit: usize| (limit > 0).then_some(limit);
        Access {
            inner: Arc::new(Inner {
                allow: config.allow.clone(),
                hosts: HostPolicy::new(&config.allowed_hosts.0, listen),
                keys,
                pairing: PairingBook::new(),
                job_rate: RateLimiter::new(Rate::per_minute(config.jobs_per_minute)),
                sign_in_rate: RateLimiter::new(Some(Rate::new(SIGN_IN_BURST, SIGN_IN_INTERVAL))),
                global_sign_in_rate: RateLimiter::new(Some(Rate::new(
                    GLOBAL_SIGN_IN_BURST,
                    GLOBAL_SIGN_IN_INTERVAL,
                ))),
                refusal_log: RateLimiter::new(Some(Rate::new(1, REFUSAL_LOG_INTERVAL))),
                streams: StreamCounter::new(cap(config.max_streams_per_client)),
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

    /// True when a refusal of `address` should be logged now (at most once a minute per address).
    pub fn should_log_refusal(&self, address: IpAddr, now: Instant) -> bool {
        self.inner.refusal_log.try_take(address, now).is_ok()
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
        now: Instant,
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
                .map(|token| match self.check_secret(token, address, now) {
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
    pub fn sign_in(&self, attempt: &str, address: IpAddr, now: Instant) -> Result<String, SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        self.check_secret(attempt, address, now)?;
        tracing::info!(%address, "signed in with the secret");
        Ok(keys.issue(unix_now(), secret::SESSION_LIFETIME))
    }

    /// A new one-time pairing token, for a signed-in device to show as a QR code.
    pub fn open_pairing(&self, now: Instant) -> Result<String, SignInError> {
        if self.inner.keys.is_none() {
            return Err(SignInError::NoSecret);
        }
        Ok(self.inner.pairing.issue(now))
    }

    /// Uses a pairing token: a new session token for the device that opened the link.
    pub fn redeem_pairing(&self, token: &str, address: IpAddr, now: Instant) -> Result<String, SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        self.attempts_left(address, now)?;
        if !self.inner.pairing.redeem(token, now) {
            self.charge_attempt(address, now);
            return Err(SignInError::UnknownLink);
        }
        tracing::info!(%address, "device paired");
        Ok(keys.issue(unix_now(), secret::SESSION_LIFETIME))
    }

    /// Admits one more job from `address`, or says how long to wait.
    pub fn admit_job(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        self.inner.job_rate.try_take(address, now)
    }

    /// A place for one more event stream of `address`, unless it holds its limit.
    pub fn open_stream(&self, address: IpAddr) -> Option<StreamPermit> {
        self.inner.streams.try_open(address)
    }

    fn check_secret(&self, attempt: &str, address: IpAddr, now: Instant) -> Result<(), SignInError> {
        let keys = self.inner.keys.as_ref().ok_or(SignInError::NoSecret)?;
        self.attempts_left(address, now)?;
        if keys.is_secret(attempt) {
            return Ok(());
        }
        self.charge_attempt(address, now);
        tracing::warn!(%address, "wrong access secret");
        Err(SignInError::WrongSecret)
    }

    fn attempts_left(&self, address: IpAddr, now: Instant) -> Result<(), SignInError> {
        let everyone = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        self.inner
            .sign_in_rate
            .check(address, now)
            .and_then(|()| self.inner.global_sign_in_rate.check(everyone, now))
            .map_err(|retry_after| SignInError::TooManyAttempts { retry_after })
    }

    fn charge_attempt(&self, address: IpAddr, now: Instant) {
        self.inner.sign_in_rate.charge(address, now);
        self.inner
            .global_sign_in_rate
            .charge(IpAddr::V4(Ipv4Addr::UNSPECIFIED), now);
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
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

    fn address() -> IpAddr {
        "192.168.1.30".parse().unwrap()
    }

    fn door(secret: Option<&str>) -> Access {
        let keys = secret.map(|secret| SessionKeys::new(&Secret::new(secret).unwrap(), &[1; 32]));
        Access::with_keys(&AccessConfig::default(), "0.0.0.0:7860".parse().unwrap(), keys)
    }

    #[test]
    fn without_a_secret_nobody_is_signed_in_and_bearers_are_ignored() {
        let door = door(None);
        let client = ClientId::new().to_string();
        let seen = door.identify(
            Some(&client),
            Some("v1.x"),
            Some("Bearer whatever"),
            address(),
            Instant::now(),
        );
        assert_eq!(
            seen.requester,
            Requester {
                client: client.parse().ok(),
                signed_in: false
            }
        );
        assert_eq!(seen.bad_bearer, None);
        assert_eq!(
            door.sign_in("x", address(), Instant::now()),
            Err(SignInError::NoSecret)
        );
        assert_eq!(door.open_pairing(Instant::now()), Err(SignInError::NoSecret));
        assert!(!door.secret_required());
    }

    #[test]
    fn a_session_from_sign_in_identifies_the_browser() {
        let door = door(Some("correct horse"));
        let now = Instant::now();
        let session = door.sign_in("correct horse", address(), now).unwrap();
        assert!(
            door.identify(None, Some(&session), None, address(), now)
                .requester
                .signed_in
        );
        assert!(
            !door
                .identify(None, Some("v1.1.2.3"), None, address(), now)
                .requester
                .signed_in
        );
        assert!(
            !door
                .identify(None, None, None, address(), now)
                .requester
                .signed_in
        );
    }

    #[test]
    fn bearer_tokens_sign_in_scripts_and_wrong_ones_are_reported() {
        let door = door(Some("correct horse"));
        let now = Instant::now();
        let seen = door.identify(None, None, Some("Bearer correct horse"), address(), now);
        assert!(seen.requester.signed_in && seen.bad_bearer.is_none());
        let seen = door.identify(None, None, Some("bearer wrong"), address(), now);
        assert_eq!(
            (seen.requester.signed_in, seen.bad_bearer),
            (false, Some(SignInError::WrongSecret))
        );
        let seen = door.identify(None, None, Some("Basic Zm9vOmJhcg=="), address(), now);
        assert_eq!((seen.requester.signed_in, seen.bad_bearer), (false, None));
    }

    #[test]
    fn wrong_secrets_are_limited_per_address_even_when_the_right_one_follows() {
        let door = door(Some("correct horse"));
        let now = Instant::now();
        for _ in 0..SIGN_IN_BURST {
            assert_eq!(
                door.sign_in("wrong", address(), now),
                Err(SignInError::WrongSecret)
            );
        }
        assert!(matches!(
            door.sign_in("correct horse", address(), now),
            Err(SignInError::TooManyAttempts { .. })
        ));
        let other: IpAddr = "192.168.1.31".parse().unwrap();
        assert!(door.sign_in("correct horse", other, now).is_ok());
        assert!(
            door.sign_in("correct horse", address(), now + SIGN_IN_INTERVAL)
                .is_ok()
        );
    }

    #[test]
    fn right_secrets_do_not_use_up_attempts() {
        let door = door(Some("correct horse"));
        let now = Instant::now();
        for _ in 0..(SIGN_IN_BURST * 3) {
            assert!(door.sign_in("correct horse", address(), now).is_ok());
        }
    }

    #[test]
    fn many_addresses_guessing_together_meet_the_global_limit() {
        let door = door(Some("correct horse"));
        let now = Instant::now();
        let results: Vec<_> = (0..(GLOBAL_SIGN_IN_BURST + 1))
            .map(|index| door.sign_in("wrong", IpAddr::from([10, 0, 0, index as u8]), now))
            .collect();
        assert!(
            matches!(results.last(), Some(Err(SignInError::TooManyAttempts { .. }))),
            "{results:?}"
        );
    }

    #[test]
    fn a_pairing_link_signs_in_one_device_once() {
        let door = door(Some("correct horse"));
        let now = Instant::now();
        let token = door.open_pairing(now).unwrap();
        let session = door.redeem_pairing(&token, address(), now).unwrap();
        assert!(
            door.identify(None, Some(&session), None, address(), now)
                .requester
                .signed_in
        );
        assert_eq!(
            door.redeem_pairing(&token, address(), now),
            Err(SignInError::UnknownLink)
        );
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
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
        assert!(door.sign_in("from the file", address(), Instant::now()).is_ok());

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
