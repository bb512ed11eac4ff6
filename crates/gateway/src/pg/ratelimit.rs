//! Failed logins per source address and claimed task: after too many in a
//! window, further attempts at that task from that address are refused
//! before any check is made. Keyed by both, so a client that fails at one
//! task (its own typo, or a flood) locks out no other task's sessions from
//! the same address: agents on one runner, or behind one NAT, share an
//! address. Task tokens are 256-bit random, so the limit is there against
//! floods and their cost, not to make guessing hard.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed attempts allowed per address and task per window.
pub const MAX_FAILED_LOGINS: u32 = 10;
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// (address, task) pairs remembered at most; old windows are dropped past
/// this, and while it stays full no new pair is tracked (memory stays
/// bounded whatever names a client claims).
const MAX_TRACKED: usize = 100_000;

/// Failures of one address in its current window.
struct Window {
    since: Instant,
    count: u32,
    /// Whether a refusal in this window has been reported already.
    reported: bool,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            since: now,
            count: 0,
            reported: false,
        }
    }
}

#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<(IpAddr, String), Window>>,
}

/// An address that must wait.
#[derive(Debug, PartialEq, Eq)]
pub struct Limited {
    pub wait: Duration,
    /// The first refusal of this window: worth an event. Later ones of the
    /// same flood are only refused, so a flood cannot flood the audit log.
    pub first: bool,
}

impl LoginLimiter {
    /// `Some` when `addr` must wait before trying `task` again.
    pub fn check(&self, addr: IpAddr, task: &str, now: Instant) -> Option<Limited> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let window = failures.get_mut(&(addr, task.to_owned()))?;
        let elapsed = now.saturating_duration_since(window.since);
        if elapsed >= FAILED_LOGIN_WINDOW || window.count < MAX_FAILED_LOGINS {
            return None;
        }
        let first = !window.reported;
        window.reported = true;
        Some(Limited {
            wait: FAILED_LOGIN_WINDOW - elapsed,
            first,
        })
    }

    pub fn failed(&self, addr: IpAddr, task: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let key = (addr, task.to_owned());
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&key) {
            failures.retain(|_, w| now.saturating_duration_since(w.since) < FAILED_LOGIN_WINDOW);
            if failures.len() >= MAX_TRACKED {
                return;
            }
        }
        let window = failures.entry(key).or_insert_with(|| Window::new(now));
        if now.saturating_duration_since(window.since) >= FAILED_LOGIN_WINDOW {
            *window = Window::new(now);
        }
        window.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_one_task_from_one_address_for_one_window() {
        let limiter = LoginLimiter::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_LOGINS {
            assert_eq!(limiter.check(a, "tsk_1", t0), None);
            limiter.failed(a, "tsk_1", t0);
        }
        assert_eq!(limiter.check(a, "tsk_1", t0).map(|l| l.first), Some(true));
        assert_eq!(limiter.check(a, "tsk_1", t0).map(|l| l.first), Some(false));
        assert_eq!(
            limiter.check(b, "tsk_1", t0),
            None,
            "other addresses are not affected"
        );
        assert_eq!(
            limiter.check(a, "tsk_2", t0),
            None,
            "other tasks from the same address are not affected"
        );
        assert_eq!(
            limiter.check(a, "tsk_1", t0 + FAILED_LOGIN_WINDOW),
            None,
            "the window passes"
        );
    }
}
