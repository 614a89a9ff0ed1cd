//! Logins per client address: a token bucket each, `rate` a minute with a
//! burst of as many, so a script cannot mint sessions without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Past this many addresses, the ones whose bucket is full again are
/// forgotten (they would be allowed anyway): memory stays bounded.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Debug)]
pub(crate) struct LoginLimiter {
    /// Logins a minute per address; 0: no limit.
    rate: u32,
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl LoginLimiter {
    pub(crate) fn per_minute(rate: u32) -> Self {
        Self {
            rate,
            buckets: Arc::default(),
        }
    }

    /// Takes a login for `addr`, or says how long until one is free.
    pub(crate) fn take(&self, addr: IpAddr) -> Result<(), Duration> {
        self.take_at(addr, Instant::now())
    }

    fn take_at(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let burst = f64::from(self.rate);
        let per_sec = burst / 60.0;
        let refilled = |bucket: &Bucket| {
            (bucket.tokens + now.saturating_duration_since(bucket.at).as_secs_f64() * per_sec)
                .min(burst)
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(&addr) {
            buckets.retain(|_, bucket| refilled(bucket) < burst);
        }
        let bucket = buckets.entry(addr).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let tokens = refilled(bucket);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / per_sec))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_per_address() {
        let limiter = LoginLimiter::per_minute(6);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let start = Instant::now();
        for _ in 0..6 {
            assert!(limiter.take_at(a, start).is_ok());
        }
        let wait = limiter.take_at(a, start).unwrap_err();
        assert!((9.9..=10.1).contains(&wait.as_secs_f64()), "{wait:?}");
        // Another address is not held back; ten seconds later one more.
        assert!(limiter.take_at(b, start).is_ok());
        assert!(limiter.take_at(a, start + Duration::from_secs(10)).is_ok());
        assert!(limiter.take_at(a, start + Duration::from_secs(10)).is_err());
        assert!(LoginLimiter::per_minute(0).take_at(a, start).is_ok());
    }
}
