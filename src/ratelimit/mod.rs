//! Request rate limits: token buckets keyed by client IP and by user, one
//! quota per kind of request. Behind a trait: in process by default, shared
//! through Redis ([`shared`]) when several nodes serve together. Also the
//! count of open WebSockets per user and per client address.

mod shared;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimitSettings;
use crate::redis_conn::Redis;

/// The kinds of request with their own quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Login,
    Query,
    Chat,
    /// WebSocket upgrades.
    Connect,
}

/// Who a token is taken for. Per-IP buckets are `rate_limit.ip_factor` times
/// larger than per-user ones, since several users may share one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Ip(&'a str),
    User(&'a str),
}

/// Refused: the caller may retry after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Take one token from `bucket` for `subject`, or say how long to wait.
    async fn check(&self, bucket: Bucket, subject: Subject<'_>) -> Result<(), RateLimited>;
}

impl Bucket {
    pub const ALL: [Bucket; 4] = [Bucket::Login, Bucket::Query, Bucket::Chat, Bucket::Connect];

    pub fn name(self) -> &'static str {
        match self {
            Bucket::Login => "login",
            Bucket::Query => "query",
            Bucket::Chat => "chat",
            Bucket::Connect => "connect",
        }
    }
}

/// Build the configured limiter: shared through `redis` when given.
pub fn from_settings(
    settings: &RateLimitSettings,
    redis: Option<Arc<Redis>>,
) -> Arc<dyn RateLimiter> {
    match (settings.enabled, redis) {
        (false, _) => Arc::new(Unlimited),
        (true, Some(redis)) => Arc::new(shared::Shared::new(redis, settings)),
        (true, None) => Arc::new(InProcess::new(settings)),
    }
}

/// `rate_limit.enabled = false`.
struct Unlimited;

#[async_trait]
impl RateLimiter for Unlimited {
    async fn check(&self, _bucket: Bucket, _subject: Subject<'_>) -> Result<(), RateLimited> {
        Ok(())
    }
}

/// Checks between two sweeps of a bucket's keys. Keys come from the network
/// (any IP, any username tried at login), so without sweeps the map would grow
/// with every client ever seen; with them it holds at most this many stale
/// keys besides the ones still inside their refill window. A sweep is linear
/// in the map's size, so sweeping every N checks costs O(size / N) per check.
const SWEEP_EVERY: u64 = 1024;

/// One GCRA limiter per bucket and kind of subject, each with its own map of keys.
struct InProcess {
    login: PerSubject,
    query: PerSubject,
    chat: PerSubject,
    connect: PerSubject,
}

struct PerSubject {
    ip: Keyed,
    user: Keyed,
}

impl PerSubject {
    fn new(per_minute: u32, burst: u32, ip_factor: u32) -> Self {
        Self {
            ip: Keyed::new(
                per_minute.saturating_mul(ip_factor),
                burst.saturating_mul(ip_factor),
            ),
            user: Keyed::new(per_minute, burst),
        }
    }

    fn check(&self, subject: Subject<'_>) -> Result<(), RateLimited> {
        match subject {
            Subject::Ip(ip) => self.ip.check(ip),
            Subject::User(user) => self.user.check(user),
        }
    }
}

struct Keyed {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl InProcess {
    fn new(s: &RateLimitSettings) -> Self {
        Self {
            login: PerSubject::new(s.login_per_minute, s.login_burst, s.ip_factor),
            query: PerSubject::new(s.query_per_minute, s.query_burst, s.ip_factor),
            chat: PerSubject::new(s.chat_per_minute, s.chat_burst, s.ip_factor),
            connect: PerSubject::new(s.ws_connect_per_minute, s.ws_connect_burst, s.ip_factor),
        }
    }

    fn bucket(&self, bucket: Bucket) -> &PerSubject {
        match bucket {
            Bucket::Login => &self.login,
            Bucket::Query => &self.query,
            Bucket::Chat => &self.chat,
            Bucket::Connect => &self.connect,
        }
    }
}

impl Keyed {
    fn new(per_minute: u32, burst: u32) -> Self {
        // Settings validation already refuses 0; clamping keeps a hand-built
        // `RateLimitSettings` from panicking here.
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            checks: AtomicU64::new(0),
        }
    }

    fn check(&self, key: &str) -> Result<(), RateLimited> {
        let n = self.checks.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                // Refusal means the next token is in the future; a zero wait could
                // only come from clock rounding and would tell the client
                // `Retry-After: 0`, inviting an immediate retry that fails again.
                RateLimited {
                    retry_after: wait.max(Duration::from_millis(1)),
                }
            })
    }

    /// Forget keys whose bucket has refilled: their state equals a new key's.
    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }
}

#[async_trait]
impl RateLimiter for InProcess {
    async fn check(&self, bucket: Bucket, subject: Subject<'_>) -> Result<(), RateLimited> {
        self.bucket(bucket).check(subject)
    }
}

/// Open long-lived connections (WebSockets), counted per user and per client
/// address, so one account or one host cannot hold every socket the server
/// can keep open. In process, like [`InProcess`]: each instance counts its own.
pub struct Connections {
    per_user: usize,
    per_ip: usize,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    users: HashMap<String, usize>,
    ips: HashMap<String, usize>,
}

/// Which limit a refused connection hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooMany {
    User,
    Ip,
}

/// One counted connection; dropping it frees its place.
pub struct ConnectionSlot {
    owner: Arc<Connections>,
    user: String,
    ip: String,
}

impl Connections {
    pub fn new(per_user: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user,
            per_ip,
            open: Mutex::new(Open::default()),
        })
    }

    /// Count a new connection of `user` from `ip`, or say which limit it is over.
    pub fn acquire(self: &Arc<Self>, user: &str, ip: &str) -> Result<ConnectionSlot, TooMany> {
        let mut open = self.lock();
        if open.users.get(user).copied().unwrap_or(0) >= self.per_user {
            return Err(TooMany::User);
        }
        if open.ips.get(ip).copied().unwrap_or(0) >= self.per_ip {
            return Err(TooMany::Ip);
        }
        *open.users.entry(user.to_string()).or_default() += 1;
        *open.ips.entry(ip.to_string()).or_default() += 1;
        Ok(ConnectionSlot {
            owner: self.clone(),
            user: user.to_string(),
            ip: ip.to_string(),
        })
    }

    // A panic while the lock is held cannot leave the counts half-updated
    // (each update is one statement), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn tracked(&self) -> (usize, usize) {
        let open = self.lock();
        (open.users.len(), open.ips.len())
    }
}

/// Decrement `key`'s count, forgetting keys that reach zero so the maps hold
/// only addresses and users with a connection open.
fn release(map: &mut HashMap<String, usize>, key: &str) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        release(&mut open.users, &self.user);
        release(&mut open.ips, &self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_minute: u32, burst: u32) -> RateLimitSettings {
        RateLimitSettings {
            enabled: true,
            login_per_minute: per_minute,
            login_burst: burst,
            query_per_minute: per_minute,
            query_burst: burst,
            chat_per_minute: per_minute,
            chat_burst: burst,
            ws_connect_per_minute: per_minute,
            ws_connect_burst: burst,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            ip_factor: 1,
        }
    }

    fn subject(key: &str) -> Subject<'_> {
        match key.split_once(':') {
            Some(("ip", ip)) => Subject::Ip(ip),
            _ => Subject::User(key),
        }
    }

    async fn take_burst(limiter: &dyn RateLimiter, bucket: Bucket, key: &str, burst: u32) {
        for i in 0..burst {
            assert_eq!(
                limiter.check(bucket, subject(key)).await,
                Ok(()),
                "token {i} of {burst} for {key}"
            );
        }
    }

    #[tokio::test]
    async fn ip_buckets_are_larger_by_the_factor() {
        let mut s = settings(10, 2);
        s.ip_factor = 3;
        let limiter = from_settings(&s, None);
        take_burst(&*limiter, Bucket::Query, "ip:10.0.0.9", 6).await;
        assert!(limiter
            .check(Bucket::Query, Subject::Ip("10.0.0.9"))
            .await
            .is_err());
        take_burst(&*limiter, Bucket::Query, "user:a", 2).await;
        assert!(limiter
            .check(Bucket::Query, subject("user:a"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn burst_then_refused_with_a_wait() {
        // 10/min: one token every 6 s, so the wait is far from zero.
        let limiter = from_settings(&settings(10, 3), None);
        take_burst(&*limiter, Bucket::Login, "ip:10.0.0.1", 3).await;
        let refused = limiter
            .check(Bucket::Login, subject("ip:10.0.0.1"))
            .await
            .expect_err("the fourth request is over the burst");
        assert!(
            refused.retry_after > Duration::from_secs(5)
                && refused.retry_after <= Duration::from_secs(6),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn keys_are_independent() {
        let limiter = from_settings(&settings(10, 2), None);
        take_burst(&*limiter, Bucket::Query, "user:a", 2).await;
        assert!(limiter
            .check(Bucket::Query, subject("user:a"))
            .await
            .is_err());
        take_burst(&*limiter, Bucket::Query, "user:b", 2).await;
        take_burst(&*limiter, Bucket::Query, "ip:127.0.0.1", 2).await;
    }

    #[tokio::test]
    async fn buckets_are_independent() {
        let mut s = settings(10, 1);
        s.chat_burst = 2;
        let limiter = from_settings(&s, None);
        take_burst(&*limiter, Bucket::Login, "user:a", 1).await;
        assert!(limiter
            .check(Bucket::Login, subject("user:a"))
            .await
            .is_err());
        take_burst(&*limiter, Bucket::Query, "user:a", 1).await;
        assert!(limiter
            .check(Bucket::Query, subject("user:a"))
            .await
            .is_err());
        // Each bucket has its own burst, too.
        take_burst(&*limiter, Bucket::Chat, "user:a", 2).await;
        assert!(limiter
            .check(Bucket::Chat, subject("user:a"))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn disabled_never_refuses() {
        let mut s = settings(1, 1);
        s.enabled = false;
        let limiter = from_settings(&s, None);
        for bucket in [Bucket::Login, Bucket::Query, Bucket::Chat, Bucket::Connect] {
            for _ in 0..100 {
                assert_eq!(limiter.check(bucket, subject("ip:10.0.0.1")).await, Ok(()));
            }
        }
    }

    #[tokio::test]
    async fn refills_after_the_wait() {
        // 600/min: one token every 100 ms.
        let limiter = from_settings(&settings(600, 1), None);
        take_burst(&*limiter, Bucket::Chat, "user:a", 1).await;
        let refused = limiter
            .check(Bucket::Chat, subject("user:a"))
            .await
            .expect_err("burst of one is spent");
        assert!(refused.retry_after > Duration::ZERO, "{refused:?}");
        tokio::time::sleep(refused.retry_after).await;
        assert_eq!(limiter.check(Bucket::Chat, subject("user:a")).await, Ok(()));
    }

    #[tokio::test]
    async fn refilled_keys_are_swept() {
        let keyed = Keyed::new(600, 1);
        for i in 0..100 {
            assert_eq!(keyed.check(&format!("ip:10.0.0.{i}")), Ok(()));
        }
        assert_eq!(keyed.len(), 100);
        // Every bucket refills within one period (plus the burst of one).
        tokio::time::sleep(Duration::from_millis(300)).await;
        keyed.sweep();
        assert_eq!(keyed.len(), 0);
    }

    #[test]
    fn sweeps_happen_without_being_asked() {
        let keyed = Keyed::new(600, 1);
        for i in 0..SWEEP_EVERY - 1 {
            let _ = keyed.check(&format!("ip:{i}"));
        }
        assert_eq!(keyed.len() as u64, SWEEP_EVERY - 1);
        std::thread::sleep(Duration::from_millis(300));
        // This check sweeps first, so only its own key is left.
        assert_eq!(keyed.check("ip:new"), Ok(()));
        assert_eq!(keyed.len(), 1);
    }

    #[test]
    fn connections_are_counted_per_user_and_per_ip() {
        let c = Connections::new(2, 3);
        let a1 = c.acquire("ann", "10.0.0.1").unwrap();
        let a2 = c.acquire("ann", "10.0.0.2").unwrap();
        assert_eq!(c.acquire("ann", "10.0.0.3").err(), Some(TooMany::User));
        let b1 = c.acquire("bob", "10.0.0.1").unwrap();
        let _c1 = c.acquire("cy", "10.0.0.1").unwrap();
        assert_eq!(c.acquire("dee", "10.0.0.1").err(), Some(TooMany::Ip));
        // A refused attempt takes no place: closing one frees exactly one.
        drop(a1);
        let a3 = c.acquire("ann", "10.0.0.4").unwrap();
        drop(b1);
        let _d1 = c.acquire("dee", "10.0.0.1").unwrap();
        drop((a2, a3, _c1, _d1));
        assert_eq!(c.tracked(), (0, 0), "closed connections are forgotten");
    }
}
