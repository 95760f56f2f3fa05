//! Rate limits per client: `governor`'s keyed GCRA limiter (a token bucket in one number per client)
//! over a state store of our own that holds at most a fixed number of clients.
//!
//! Why a store of our own rather than governor's `DashMap` store with `retain_recent` on a schedule:
//! `retain_recent` only drops clients whose bucket has filled up again, so a burst of fresh addresses
//! grows the map without bound until the refill time has passed, and a hard cap then has to forget
//! someone anyway. The store here is a least-recently-used map: its size is bounded at every moment,
//! with no background task, and the client forgotten first is the one that has not been seen for the
//! longest time. A client that is forgotten starts over with a full bucket, exactly as if it were new;
//! so rotating through more clients than the store holds gains an attacker nothing that the new keys
//! would not have given it anyway, and the capacity is far above what one home network has.
//!
//! The store also answers "would this be admitted?" without recording it ([`RateLimiter::check`]):
//! the sign-in limit must refuse the right secret from an address that used up its attempts, without
//! charging anyone for a right secret.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::Quota;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use hashlink::LruCache;

use super::network::ClientKey;

/// Clients a limiter remembers at most; a home network has far fewer, so this only matters under attack.
pub const MAX_CLIENTS: usize = 16_384;

/// A rate: `burst` requests at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    burst: NonZeroU32,
    interval: Duration,
}

impl Rate {
    /// `count` per minute, all of them at once if wanted. `None` for 0, which means no limit.
    pub fn per_minute(count: u32) -> Option<Rate> {
        let burst = NonZeroU32::new(count)?;
        Some(Rate {
            burst,
            interval: Duration::from_secs(60) / count,
        })
    }

    /// A burst of `burst` (at least one), refilled one every `interval` (at least a millisecond).
    pub fn new(burst: u32, interval: Duration) -> Rate {
        Rate {
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            interval: interval.max(Duration::from_millis(1)),
        }
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.interval)
            .unwrap_or_else(|| unreachable!("the interval is at least a millisecond"))
            .allow_burst(self.burst)
    }
}

/// The door's clock: the monotonic clock, or in unit tests a clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct DoorClock {
    /// The time of a manual clock; `None` for the real one.
    manual: Option<Arc<Mutex<Instant>>>,
}

impl DoorClock {
    /// The time now.
    pub fn now(&self) -> Instant {
        match &self.manual {
            Some(time) => *time.lock().unwrap_or_else(PoisonError::into_inner),
            None => Instant::now(),
        }
    }

    /// A clock standing still at the present moment until [`DoorClock::advance`] moves it.
    #[cfg(test)]
    pub(crate) fn manual() -> DoorClock {
        DoorClock {
            manual: Some(Arc::new(Mutex::new(Instant::now()))),
        }
    }

    /// Moves a manual clock (and every copy of it) forward.
    #[cfg(test)]
    pub(crate) fn advance(&self, by: Duration) {
        if let Some(time) = &self.manual {
            *time.lock().unwrap_or_else(PoisonError::into_inner) += by;
        }
    }
}

impl Clock for DoorClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        DoorClock::now(self)
    }
}

/// A question to the store: the bucket of `key`, and whether taking a token is recorded or only
/// tried (a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe<K> {
    key: K,
    record: bool,
}

/// Governor's per-key state (the bucket's "theoretical arrival time") in a bounded LRU map.
#[derive(Debug)]
struct BoundedStore<K: Hash + Eq> {
    buckets: Arc<Mutex<LruCache<K, Nanos>>>,
}

impl<K: Hash + Eq + Clone> StateStore for BoundedStore<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, decide: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A poisoned lock only means another request panicked midway; the buckets are still buckets.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        // `get` marks the bucket as used just now, so the least recently seen client is forgotten first.
        let (outcome, next) = decide(buckets.get(&probe.key).copied())?;
        if probe.record {
            buckets.insert(probe.key.clone(), next);
        }
        Ok(outcome)
    }
}

type Keyed<K> = governor::RateLimiter<Probe<K>, BoundedStore<K>, DoorClock, NoOpMiddleware<Instant>>;

/// One token bucket per client, for at most `capacity` clients at once.
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq + Clone = ClientKey> {
    /// `None` admits everything.
    limiter: Option<Keyed<K>>,
    clock: DoorClock,
    /// The limiter's buckets, for tests to count.
    #[cfg(test)]
    buckets: Arc<Mutex<LruCache<K, Nanos>>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter at `rate` (`None` admits everything) remembering [`MAX_CLIENTS`] clients.
    pub fn new(rate: Option<Rate>, clock: &DoorClock) -> RateLimiter<K> {
        RateLimiter::with_capacity(rate, clock, MAX_CLIENTS)
    }

    /// A limiter at `rate` remembering at most `capacity` clients (at least one).
    pub fn with_capacity(rate: Option<Rate>, clock: &DoorClock, capacity: usize) -> RateLimiter<K> {
        let buckets = Arc::new(Mutex::new(LruCache::new(capacity.max(1))));
        let limiter = rate.map(|rate| {
            let store = BoundedStore {
                buckets: Arc::clone(&buckets),
            };
            governor::RateLimiter::new(rate.quota(), store, clock.clone())
        });
        RateLimiter {
            limiter,
            clock: clock.clone(),
            #[cfg(test)]
            buckets,
        }
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub fn try_take(&self, key: K) -> Result<(), Duration> {
        self.ask(Probe { key, record: true })
    }

    /// Takes `count` tokens for `key` at once, or none. `Err(Some(wait))`: they are there after
    /// `wait`; `Err(None)`: `count` is more than the burst, so they never are at once.
    pub fn try_take_n(&self, key: K, count: u32) -> Result<(), Option<Duration>> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        let Some(count) = NonZeroU32::new(count) else {
            return Ok(());
        };
        match limiter.check_key_n(&Probe { key, record: true }, count) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Some(not_until.wait_time_from(self.clock.now()))),
            Err(_) => Err(None),
        }
    }

    /// Whether a token is there for `key`, without taking it.
    pub fn check(&self, key: K) -> Result<(), Duration> {
        self.ask(Probe { key, record: false })
    }

    /// Takes a token for `key` if there is one (a failed sign-in is charged after the fact).
    pub fn charge(&self, key: K) {
        let _ = self.try_take(key);
    }

    fn ask(&self, probe: Probe<K>) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&probe)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Whole seconds to put in a `Retry-After` header: rounded up, at least one.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv6Addr};

    fn ip(last: u8) -> ClientKey {
        ClientKey::of(IpAddr::from([192, 168, 1, last]))
    }

    #[test]
    fn a_burst_is_allowed_then_one_per_interval() {
        let clock = DoorClock::manual();
        let limiter = RateLimiter::new(Rate::per_minute(3), &clock);
        for _ in 0..3 {
            assert_eq!(limiter.try_take(ip(1)), Ok(()));
        }
        assert_eq!(limiter.try_take(ip(1)), Err(Duration::from_secs(20)));
        clock.advance(Duration::from_secs(5));
        assert_eq!(limiter.try_take(ip(1)), Err(Duration::from_secs(15)));
        clock.advance(Duration::from_secs(15));
        assert_eq!(limiter.try_take(ip(1)), Ok(()));
        assert!(limiter.try_take(ip(1)).is_err());
        // Other clients have their own buckets.
        assert_eq!(limiter.try_take(ip(2)), Ok(()));
        // A long pause refills to the burst, no further.
        clock.advance(Duration::from_secs(3600));
        for _ in 0..3 {
            assert_eq!(limiter.try_take(ip(1)), Ok(()));
        }
        assert!(limiter.try_take(ip(1)).is_err());
    }

    #[test]
    fn several_tokens_are_taken_all_at_once_or_not_at_all() {
        let clock = DoorClock::manual();
        let limiter = RateLimiter::new(Rate::per_minute(3), &clock);
        assert_eq!(limiter.try_take_n(ip(1), 2), Ok(()));
        // One token left: two are refused, and the one is still there afterwards.
        assert_eq!(limiter.try_take_n(ip(1), 2), Err(Some(Duration::from_secs(20))));
        assert_eq!(limiter.try_take(ip(1)), Ok(()));
        // More than the burst never fits.
        assert_eq!(limiter.try_take_n(ip(2), 4), Err(None));
        assert_eq!(limiter.try_take_n(ip(2), 3), Ok(()));
    }

    #[test]
    fn checking_does_not_take_and_charging_does() {
        let clock = DoorClock::manual();
        let limiter = RateLimiter::new(Some(Rate::new(2, Duration::from_secs(30))), &clock);
        for _ in 0..5 {
            assert_eq!(limiter.check(ip(1)), Ok(()));
        }
        assert_eq!(limiter.remembered(), 0, "a dry run remembers nobody");
        limiter.charge(ip(1));
        limiter.charge(ip(1));
        limiter.charge(ip(1));
        assert_eq!(limiter.check(ip(1)), Err(Duration::from_secs(30)));
        assert_eq!(limiter.check(ip(1)), Err(Duration::from_secs(30)));
        clock.advance(Duration::from_secs(30));
        assert_eq!(limiter.check(ip(1)), Ok(()));
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limiter = RateLimiter::new(Rate::per_minute(0), &DoorClock::manual());
        for _ in 0..1000 {
            assert_eq!(limiter.try_take(ip(1)), Ok(()));
        }
    }

    #[test]
    fn the_store_stays_bounded_and_forgets_the_client_seen_least_recently() {
        let clock = DoorClock::manual();
        let limiter = RateLimiter::with_capacity(Rate::per_minute(1), &clock, 4);
        for last in 1..=4 {
            limiter.charge(ip(last));
        }
        // Client 1 is seen again, so client 2 is now the one seen least recently.
        assert!(limiter.try_take(ip(1)).is_err());
        limiter.charge(ip(5));
        assert_eq!(limiter.remembered(), 4);
        assert_eq!(limiter.try_take(ip(2)), Ok(()), "forgotten: a fresh bucket");
        for remembered in [1, 4, 5] {
            assert!(limiter.check(ip(remembered)).is_err(), "{remembered}");
        }
    }

    #[test]
    fn a_used_up_client_stays_limited_while_fewer_new_clients_than_the_capacity_come() {
        let clock = DoorClock::manual();
        let limiter = RateLimiter::with_capacity(Rate::per_minute(1), &clock, 1000);
        let guesser = ClientKey::of(IpAddr::from([10, 0, 0, 1]));
        limiter.charge(guesser);
        for index in 0..999u32 {
            let network = Ipv6Addr::from((0xfd00_u128 << 112) | (u128::from(index) << 64));
            limiter.charge(ClientKey::of(IpAddr::V6(network)));
        }
        assert!(limiter.check(guesser).is_err());
        assert_eq!(limiter.remembered(), 1000);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2001)), 3);
    }

    proptest! {
        #[test]
        fn over_any_span_no_more_than_burst_plus_refills_are_admitted(
            burst in 1u32..10, interval_ms in 1u64..5000, offsets in proptest::collection::vec(0u64..60_000, 1..200),
        ) {
            let clock = DoorClock::manual();
            let limiter = RateLimiter::new(Some(Rate::new(burst, Duration::from_millis(interval_ms))), &clock);
            let mut offsets = offsets;
            offsets.sort_unstable();
            let mut elapsed = 0;
            let mut admitted = 0u64;
            for offset in &offsets {
                clock.advance(Duration::from_millis(offset - elapsed));
                elapsed = *offset;
                admitted += u64::from(limiter.try_take(ip(1)).is_ok());
            }
            let span = offsets.last().copied().unwrap_or(0);
            prop_assert!(admitted <= u64::from(burst) + span / interval_ms);
            // And a burst at the start is always admitted whole.
            prop_assert!(admitted >= 1);
        }
    }
}
