//! The rate limiter every node shares through Redis: the same GCRA as the
//! in-process one (a token every `60 / per_minute` seconds, `burst` at
//! once), computed by one Lua script so reading and updating a key is one
//! atomic step, on Redis's clock so nodes' clocks do not matter. When Redis
//! fails the request is checked by this node's in-process limiter instead
//! (see `redis_conn`), so a dead Redis never refuses or fails a request.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::{Bucket, InProcess, RateLimited, RateLimiter, Subject};
use crate::config::RateLimitSettings;
use crate::redis_conn::Redis;

/// KEYS[1]: the bucket's key. ARGV[1]: microseconds between tokens.
/// ARGV[2]: burst. Returns 0 when a token was taken, else the microseconds
/// until one will be. The key holds the theoretical arrival time (TAT) and
/// expires when the bucket would be full again, so idle keys vanish.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local allow_at = tat + interval - interval * burst
if allow_at > now then
  return allow_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return 0
";

/// Keys longer than this are hashed (login names are bounded already; this
/// keeps any future key from growing Redis's memory per client).
const MAX_KEY: usize = 128;

pub struct Shared {
    redis: Arc<Redis>,
    script: redis::Script,
    settings: RateLimitSettings,
    fallback: InProcess,
}

impl Shared {
    pub fn new(redis: Arc<Redis>, settings: &RateLimitSettings) -> Self {
        Self {
            redis,
            script: redis::Script::new(GCRA),
            settings: settings.clone(),
            fallback: InProcess::new(settings),
        }
    }

    /// (microseconds between tokens, burst) of a bucket for a subject.
    fn quota(&self, bucket: Bucket, subject: Subject<'_>) -> (u64, u64) {
        let s = &self.settings;
        let (per_minute, burst) = match bucket {
            Bucket::Login => (s.login_per_minute, s.login_burst),
            Bucket::Query => (s.query_per_minute, s.query_burst),
            Bucket::Chat => (s.chat_per_minute, s.chat_burst),
            Bucket::Connect => (s.ws_connect_per_minute, s.ws_connect_burst),
        };
        let factor = match subject {
            Subject::Ip(_) => s.ip_factor,
            Subject::User(_) => 1,
        };
        let per_minute = u64::from(per_minute.saturating_mul(factor).max(1));
        let burst = u64::from(burst.saturating_mul(factor).max(1));
        (60_000_000 / per_minute, burst)
    }

    fn key(&self, bucket: Bucket, subject: Subject<'_>) -> String {
        let (kind, id) = match subject {
            Subject::Ip(ip) => ("ip", ip),
            Subject::User(user) => ("user", user),
        };
        let id = if id.len() > MAX_KEY {
            hex::encode(Sha256::digest(id.as_bytes()))
        } else {
            id.to_string()
        };
        self.redis.key(&format!("rl:{}:{kind}:{id}", bucket.name()))
    }
}

#[async_trait]
impl RateLimiter for Shared {
    async fn check(&self, bucket: Bucket, subject: Subject<'_>) -> Result<(), RateLimited> {
        let (interval, burst) = self.quota(bucket, subject);
        let key = self.key(bucket, subject);
        let script = &self.script;
        let wait = self
            .redis
            .run("rate_limit", |mut c| async move {
                script
                    .key(key)
                    .arg(interval)
                    .arg(burst)
                    .invoke_async::<u64>(&mut c)
                    .await
            })
            .await;
        match wait {
            Some(0) => Ok(()),
            Some(us) => Err(RateLimited {
                retry_after: Duration::from_micros(us).max(Duration::from_millis(1)),
            }),
            None => self.fallback.check(bucket, subject).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisSettings;
    use crate::metrics::RedisMetrics;
    use crate::redis_conn::testing::TestRedis;

    fn settings(per_minute: u32, burst: u32) -> RateLimitSettings {
        RateLimitSettings {
            query_per_minute: per_minute,
            query_burst: burst,
            ip_factor: 2,
            ..RateLimitSettings::default()
        }
    }

    /// A node's limiter on `server`, keys under `prefix`.
    fn node(server: &TestRedis, prefix: &str, limits: &RateLimitSettings) -> Shared {
        let redis = Redis::open(
            &RedisSettings {
                url: server.url(),
                key_prefix: prefix.into(),
                retry_after_ms: 100,
                ..Default::default()
            },
            RedisMetrics::default(),
        )
        .unwrap();
        Shared::new(redis, limits)
    }

    #[tokio::test]
    async fn a_limit_spent_on_one_node_holds_on_another() {
        let Some(server) = TestRedis::start() else {
            return;
        };
        // 6/min: a token every 10 s, so the wait is far from zero.
        let limits = settings(6, 3);
        let (a, b) = (node(&server, "t1", &limits), node(&server, "t1", &limits));
        for i in 0..3 {
            assert_eq!(
                a.check(Bucket::Query, Subject::User("u")).await,
                Ok(()),
                "{i}"
            );
        }
        let refused = b
            .check(Bucket::Query, Subject::User("u"))
            .await
            .expect_err("node B sees the burst node A spent");
        assert!(
            refused.retry_after > Duration::from_secs(9)
                && refused.retry_after <= Duration::from_secs(10),
            "{refused:?}"
        );
        // Other users, other buckets and IPs (twice the size) are apart.
        assert_eq!(b.check(Bucket::Query, Subject::User("v")).await, Ok(()));
        assert_eq!(b.check(Bucket::Chat, Subject::User("u")).await, Ok(()));
        for i in 0..6 {
            assert_eq!(
                a.check(Bucket::Query, Subject::Ip("10.0.0.1")).await,
                Ok(()),
                "{i}"
            );
        }
        assert!(b
            .check(Bucket::Query, Subject::Ip("10.0.0.1"))
            .await
            .is_err());
        // Another deployment's prefix shares nothing.
        let other = node(&server, "t2", &limits);
        assert_eq!(other.check(Bucket::Query, Subject::User("u")).await, Ok(()));
    }

    #[tokio::test]
    async fn tokens_come_back_at_the_rate() {
        let Some(server) = TestRedis::start() else {
            return;
        };
        // 600/min: one every 100 ms.
        let a = node(&server, "t", &settings(600, 1));
        assert_eq!(a.check(Bucket::Query, Subject::User("u")).await, Ok(()));
        let refused = a
            .check(Bucket::Query, Subject::User("u"))
            .await
            .expect_err("burst of one is spent");
        assert!(
            refused.retry_after <= Duration::from_millis(100),
            "{refused:?}"
        );
        tokio::time::sleep(refused.retry_after + Duration::from_millis(5)).await;
        assert_eq!(a.check(Bucket::Query, Subject::User("u")).await, Ok(()));
    }

    #[tokio::test]
    async fn without_redis_each_node_limits_alone_and_sharing_resumes() {
        let Some(mut server) = TestRedis::start() else {
            return;
        };
        let limits = settings(6, 2);
        let (a, b) = (node(&server, "t", &limits), node(&server, "t", &limits));
        server.stop();
        // No error, no refusal from a dead Redis: each node's own buckets.
        for node in [&a, &b] {
            for _ in 0..2 {
                assert_eq!(node.check(Bucket::Query, Subject::User("u")).await, Ok(()));
            }
            assert!(node.check(Bucket::Query, Subject::User("u")).await.is_err());
        }
        server.restart();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // The connection managers reconnect; then the skip window passes.
        while a.redis.ping().await.is_err() || b.redis.ping().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "Redis not reached again"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Shared again: a fresh user's two tokens, across both nodes (each
        // node's own bucket for this user is full, so any check that fell
        // back would make it more than two).
        let mut taken = 0;
        for n in [&a, &b, &a, &b] {
            if n.check(Bucket::Query, Subject::User("w")).await.is_ok() {
                taken += 1;
            }
        }
        assert_eq!(taken, 2);
    }
}
