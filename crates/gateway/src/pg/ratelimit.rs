//! Failed logins per source address: after too many in a window, further
//! attempts from that address are refused before any check is made.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed per address per window.
pub const MAX_FAILED_LOGINS: u32 = 10;
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; old windows are dropped past this.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl LoginLimiter {
    /// `Some(wait)` when `addr` must wait before trying again.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (since, count) = failures.get(&addr)?;
        let elapsed = now.saturating_duration_since(*since);
        (elapsed < FAILED_LOGIN_WINDOW && *count >= MAX_FAILED_LOGINS)
            .then(|| FAILED_LOGIN_WINDOW - elapsed)
    }

    pub fn failed(&self, addr: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_TRACKED_ADDRESSES {
            failures.retain(|_, (since, _)| {
                now.saturating_duration_since(*since) < FAILED_LOGIN_WINDOW
            });
        }
        let entry = failures.entry(addr).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= FAILED_LOGIN_WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_one_address_for_one_window() {
        let limiter = LoginLimiter::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS {
            assert_eq!(limiter.check(a, t0), None);
            limiter.failed(a, t0);
        }
        assert!(limiter.check(a, t0).is_some());
        assert_eq!(
            limiter.check(b, t0),
            None,
            "other addresses are not affected"
        );
        assert_eq!(
            limiter.check(a, t0 + FAILED_LOGIN_WINDOW),
            None,
            "the window passes"
        );
    }
}
