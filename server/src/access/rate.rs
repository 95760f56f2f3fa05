//! Rate limits per client address: token buckets that fill at a steady rate up to a burst.
//!
//! The clock is a parameter, so the decisions are tested without waiting. The map of buckets is
//! bounded: buckets that have filled up again carry no information and are dropped first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Buckets kept at most; a LAN has far fewer clients, so this only matters under attack.
const MAX_BUCKETS: usize = 4096;

/// A rate: `burst` requests at once, then one every `interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    burst: u32,
    interval: Duration,
}

impl Rate {
    /// `count` per minute, all of them at once if wanted. `None` for 0, which means no limit.
    pub fn per_minute(count: u32) -> Option<Rate> {
        (count > 0).then(|| Rate {
            burst: count,
            interval: Duration::from_secs(60) / count,
        })
    }

    /// A burst of `burst`, refilled one every `interval`.
    pub fn new(burst: u32, interval: Duration) -> Rate {
        Rate {
            burst: burst.max(1),
            interval: interval.max(Duration::from_millis(1)),
        }
    }
}

/// One token bucket per client address.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<Rate>,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens left, in units of one request.
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter at `rate`; `None` admits everything.
    pub fn new(rate: Option<Rate>) -> RateLimiter {
        RateLimiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long until one is there.
    pub fn try_take(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        self.with_bucket(key, now, |bucket, rate| {
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                Ok(())
            } else {
                Err(wait_for_token(bucket.tokens, rate))
            }
        })
    }

    /// Whether a token is there for `key`, without taking it.
    pub fn check(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        self.with_bucket(key, now, |bucket, rate| {
            if bucket.tokens >= 1.0 {
                Ok(())
            } else {
                Err(wait_for_token(bucket.tokens, rate))
            }
        })
    }

    /// Takes a token for `key` if there is one (a failed sign-in is charged after the fact).
    pub fn charge(&self, key: IpAddr, now: Instant) {
        let _ = self.try_take(key, now);
    }

    fn with_bucket(
        &self,
        key: IpAddr,
        now: Instant,
        decide: impl FnOnce(&mut Bucket, Rate) -> Result<(), Duration>,
    ) -> Result<(), Duration> {
        let Some(rate) = self.rate else { return Ok(()) };
        let burst = f64::from(rate.burst);
        // A poisoned lock only means another request panicked midway; the counts are still counts.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| refilled(bucket, rate, now) < burst);
            if buckets.len() >= MAX_BUCKETS {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.tokens = refilled(bucket, rate, now);
        bucket.updated = now.max(bucket.updated);
        decide(bucket, rate)
    }
}

fn refilled(bucket: &Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed / rate.interval.as_secs_f64()).min(f64::from(rate.burst))
}

fn wait_for_token(tokens: f64, rate: Rate) -> Duration {
    rate.interval.mul_f64((1.0 - tokens).clamp(0.0, 1.0))
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

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, last])
    }

    #[test]
    fn a_burst_is_allowed_then_one_per_interval() {
        let limiter = RateLimiter::new(Rate::per_minute(3));
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.try_take(ip(1), start), Ok(()));
        }
        assert_eq!(limiter.try_take(ip(1), start), Err(Duration::from_secs(20)));
        assert_eq!(
            limiter.try_take(ip(1), start + Duration::from_secs(5)),
            Err(Duration::from_secs(15))
        );
        assert_eq!(limiter.try_take(ip(1), start + Duration::from_secs(20)), Ok(()));
        assert!(limiter.try_take(ip(1), start + Duration::from_secs(20)).is_err());
        // Other clients have their own buckets.
        assert_eq!(limiter.try_take(ip(2), start), Ok(()));
        // A long pause refills to the burst, no further.
        let later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.try_take(ip(1), later), Ok(()));
        }
        assert!(limiter.try_take(ip(1), later).is_err());
    }

    #[test]
    fn checking_does_not_take_and_charging_does() {
        let limiter = RateLimiter::new(Some(Rate::new(2, Duration::from_secs(30))));
        let now = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(ip(1), now), Ok(()));
        }
        limiter.charge(ip(1), now);
        limiter.charge(ip(1), now);
        limiter.charge(ip(1), now);
        assert_eq!(limiter.check(ip(1), now), Err(Duration::from_secs(30)));
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limiter = RateLimiter::new(Rate::per_minute(0));
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.try_take(ip(1), now), Ok(()));
        }
    }

    #[test]
    fn the_bucket_map_stays_bounded() {
        let limiter = RateLimiter::new(Rate::per_minute(1));
        let now = Instant::now();
        for index in 0..(MAX_BUCKETS as u32 + 10) {
            let _ = limiter.try_take(IpAddr::from((index as u128).to_be_bytes()), now);
        }
        assert!(limiter.buckets.lock().unwrap().len() <= MAX_BUCKETS);
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
            let limiter = RateLimiter::new(Some(Rate::new(burst, Duration::from_millis(interval_ms))));
            let start = Instant::now();
            let mut offsets = offsets;
            offsets.sort_unstable();
            let admitted = offsets
                .iter()
                .filter(|offset| limiter.try_take(ip(1), start + Duration::from_millis(**offset)).is_ok())
                .count() as u64;
            let span = offsets.last().copied().unwrap_or(0);
            prop_assert!(admitted <= u64::from(burst) + span / interval_ms);
        }
    }
}
