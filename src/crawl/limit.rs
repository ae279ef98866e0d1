//! Per-host politeness: requests to one host start at least `interval` apart.
//!
//! A small slot scheduler rather than `governor`: the interval of a host can
//! only become known after its first request (robots.txt's `Crawl-delay`),
//! and the gap after that request must already use the new interval. A
//! governor limiter cannot change its quota in place, and replacing it would
//! forget when the last request went out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::lock;

pub(crate) struct HostLimiter {
    default_interval: Duration,
    hosts: Mutex<HashMap<String, Slot>>,
}

struct Slot {
    /// When the last reserved request may start (possibly in the future).
    last: Option<Instant>,
    interval: Duration,
}

impl HostLimiter {
    pub(crate) fn new(default_interval: Duration) -> Self {
        HostLimiter {
            default_interval,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Wait for this host's next free slot. The slot is reserved before the
    /// wait, so concurrent callers queue up one interval apart; a caller
    /// dropped while waiting leaves a gap, which only errs on the polite side.
    pub(crate) async fn acquire(&self, host: &str) {
        let at = {
            let mut hosts = lock(&self.hosts);
            let slot = hosts.entry(host.to_string()).or_insert(Slot {
                last: None,
                interval: self.default_interval,
            });
            let now = Instant::now();
            let at = match slot.last {
                Some(last) => (last + slot.interval).max(now),
                None => now,
            };
            slot.last = Some(at);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Make this host's interval at least `interval` (never faster than the
    /// configured rate).
    pub(crate) fn slow_down(&self, host: &str, interval: Duration) {
        let mut hosts = lock(&self.hosts);
        let slot = hosts.entry(host.to_string()).or_insert(Slot {
            last: None,
            interval: self.default_interval,
        });
        slot.interval = slot.interval.max(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real time (tokio's paused clock needs the `test-util` feature, which
    // the crate does not enable): lower bounds only.
    #[tokio::test]
    async fn spaces_requests_per_host_and_honours_slow_down() {
        let ms = Duration::from_millis;
        let limiter = HostLimiter::new(ms(50));
        let t0 = Instant::now();
        limiter.acquire("a").await;
        limiter.acquire("a").await;
        assert!(t0.elapsed() >= ms(50));
        limiter.slow_down("a", ms(200));
        limiter.acquire("a").await;
        assert!(t0.elapsed() >= ms(250));
        // A laxer delay never speeds a host up.
        limiter.slow_down("a", ms(1));
        limiter.acquire("a").await;
        assert!(t0.elapsed() >= ms(450));
    }
}
