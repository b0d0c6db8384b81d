//! Per-client-IP rate limits: one bucket for requests that check a password
//! (register, login, password change), and a larger one for the other
//! credential endpoints (refresh, logout, revocation, and introspection
//! calls whose client authentication fails). IPv6 clients are counted per
//! /64, the block one subscriber usually holds; idle entries are forgotten,
//! so the limiters' memory stays bounded by the clients of the last minute.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::error::ApiError;

type Limiter<C> =
    RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A limit of `per_minute` requests per client (0 = off).
#[derive(Clone)]
pub struct IpLimiter<C: Clock + Clone = DefaultClock> {
    limiter: Option<Arc<Limiter<C>>>,
    clock: C,
}

impl IpLimiter {
    pub fn per_minute(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default())
    }
}

impl<C: Clock + Clone> IpLimiter<C> {
    fn with_clock(per_minute: u32, clock: C) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| {
            let store = DefaultKeyedStateStore::default();
            Arc::new(RateLimiter::new(Quota::per_minute(n), store, clock.clone()))
        });
        Self { limiter, clock }
    }

    /// Counts one request of `ip`; `429` with the wait once the bucket is empty.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.limiter, ip) else {
            return Ok(());
        };
        limiter.check_key(&client_key(ip)).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            ApiError::RateLimited {
                retry_after: wait.as_secs().max(1),
            }
        })
    }

    /// Forgets clients whose bucket has refilled: their entry says nothing
    /// a fresh one would not.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Clients remembered now.
    pub fn len(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key a client is counted under: an IPv4 address (also one written
/// IPv4-mapped), or the /64 an IPv6 address is in.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(client_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn a_64_is_one_client_for_the_limit() {
        let limiter = IpLimiter::with_clock(2, FakeRelativeClock::default());
        assert!(limiter.check(Some(ip("2001:db8::1"))).is_ok());
        assert!(limiter.check(Some(ip("2001:db8::2"))).is_ok());
        assert!(limiter.check(Some(ip("2001:db8::3"))).is_err());
        assert!(limiter.check(Some(ip("2001:db8:0:1::1"))).is_ok());
    }

    #[test]
    fn idle_clients_are_forgotten_so_memory_stays_bounded() {
        let clock = FakeRelativeClock::default();
        let limiter = IpLimiter::with_clock(60, clock.clone());
        for n in 0..1000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(n));
            limiter.check(Some(client)).expect("under the limit");
        }
        assert_eq!(limiter.len(), 1000);
        limiter.forget_idle();
        assert_eq!(limiter.len(), 1000, "buckets not yet refilled are kept");
        clock.advance(Duration::from_secs(61));
        limiter.forget_idle();
        assert!(limiter.is_empty());
    }

    #[test]
    fn zero_is_off() {
        let limiter = IpLimiter::per_minute(0);
        for _ in 0..100 {
            assert!(limiter.check(Some(ip("192.0.2.1"))).is_ok());
        }
    }
}
