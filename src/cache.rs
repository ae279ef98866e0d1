//! Byte caches behind one trait: in process (moka), or in Redis, shared by
//! every node. Callers build keys that say everything an entry depends on
//! (see `retrieve::cache`) and serialise values themselves; a cache only
//! stores bytes for a while.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::Expiry;

use crate::redis_conn::Redis;

#[async_trait]
pub trait Cache: Send + Sync {
    /// The value under `key`, if present and not expired. Never an error:
    /// a cache that cannot answer is a miss.
    async fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Keep `value` under `key` for at most `ttl`. Best effort.
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration);
    /// `memory` or `redis`, for logs.
    fn kind(&self) -> &'static str;
}

#[derive(Clone)]
struct Entry {
    bytes: Arc<[u8]>,
    ttl: Duration,
}

/// Each entry expires after its own TTL.
struct PerEntry;

impl Expiry<String, Entry> for PerEntry {
    fn expire_after_create(&self, _key: &String, value: &Entry, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// A process's own cache, bounded in bytes.
pub struct InProcess {
    entries: moka::future::Cache<String, Entry>,
}

impl InProcess {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            entries: moka::future::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Entry| {
                    u32::try_from(k.len() + v.bytes.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntry)
                .build(),
        }
    }
}

#[async_trait]
impl Cache for InProcess {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).await.map(|e| e.bytes.to_vec())
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let entry = Entry {
            bytes: value.into(),
            ttl,
        };
        self.entries.insert(key.to_string(), entry).await;
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// Entries in Redis under `<prefix>:<key>`, with Redis expiring them.
pub struct RedisCache {
    redis: Arc<Redis>,
}

impl RedisCache {
    pub fn new(redis: Arc<Redis>) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        let key = self.redis.key(key);
        self.redis
            .run("cache_get", |mut c| async move {
                redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await
            .flatten()
    }

    async fn put(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let key = self.redis.key(key);
        let ms = ttl.as_millis().max(1) as u64;
        let _ = self
            .redis
            .run("cache_put", |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .arg("PX")
                    .arg(ms)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_entries_expire_on_their_own_ttl() {
        let c = InProcess::new(1 << 20);
        c.put("short", b"a".to_vec(), Duration::from_millis(50))
            .await;
        c.put("long", b"b".to_vec(), Duration::from_secs(60)).await;
        assert_eq!(c.get("short").await.as_deref(), Some(&b"a"[..]));
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(c.get("short").await, None);
        assert_eq!(c.get("long").await.as_deref(), Some(&b"b"[..]));
    }

    #[tokio::test]
    async fn redis_entries_are_shared_expire_and_survive_an_outage_as_misses() {
        use crate::config::RedisSettings;
        use crate::metrics::RedisMetrics;
        use crate::redis_conn::testing::TestRedis;
        let Some(mut server) = TestRedis::start() else {
            return;
        };
        let node = || {
            let settings = RedisSettings {
                url: server.url(),
                retry_after_ms: 100,
                ..Default::default()
            };
            RedisCache::new(Redis::open(&settings, RedisMetrics::default()).unwrap())
        };
        let (a, b) = (node(), node());
        a.put("k", b"v".to_vec(), Duration::from_secs(60)).await;
        a.put("brief", b"w".to_vec(), Duration::from_millis(50))
            .await;
        assert_eq!(b.get("k").await.as_deref(), Some(&b"v"[..]), "shared");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(b.get("brief").await, None, "expired");
        server.stop();
        let t = Instant::now();
        assert_eq!(a.get("k").await, None, "a dead Redis is a miss");
        a.put("k2", b"x".to_vec(), Duration::from_secs(60)).await;
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            a.put("k3", b"y".to_vec(), Duration::from_secs(60)).await;
            if b.get("k3").await.as_deref() == Some(&b"y"[..]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not shared again after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn in_process_is_bounded_in_bytes() {
        let c = InProcess::new(64 * 1024);
        for i in 0..100 {
            c.put(&format!("k{i}"), vec![0u8; 4096], Duration::from_secs(60))
                .await;
        }
        c.entries.run_pending_tasks().await;
        assert!(
            c.entries.weighted_size() <= 64 * 1024,
            "{}",
            c.entries.weighted_size()
        );
    }
}
