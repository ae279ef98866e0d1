//! The connection to Redis that shared rate limits and caches go through,
//! and what happens when Redis is gone: every command has a deadline, a
//! failure is logged once (not once per request) and counted, and for
//! `redis.retry_after_ms` afterwards Redis is not asked at all, so callers
//! fall back at once (the limiter to its in-process twin, caches to none).
//! The first command that works again is logged too, and the shared path
//! resumes. The connection manager reconnects by itself.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;

use crate::config::RedisSettings;
use crate::metrics::{OpLabels, RedisMetrics};

#[derive(Debug, thiserror::Error)]
#[error("redis.url: {0}")]
pub struct RedisConfigError(String);

pub struct Redis {
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
    retry_after: Duration,
    /// Whether the last command worked; starts true so the first failure
    /// is reported.
    up: AtomicBool,
    /// Milliseconds after `epoch` before which Redis is not tried again.
    skip_until_ms: AtomicU64,
    epoch: Instant,
    metrics: RedisMetrics,
}

impl Redis {
    /// Set up the connection without waiting for it: a node whose Redis is
    /// down at start serves anyway, on the fallbacks, and logs it.
    pub fn open(
        settings: &RedisSettings,
        metrics: RedisMetrics,
    ) -> Result<Arc<Self>, RedisConfigError> {
        let client = redis::Client::open(settings.url.trim())
            .map_err(|e| RedisConfigError(e.to_string()))?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnecting is also triggered by the next command that
            // finds the connection broken; a short series each time is enough.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisConfigError(e.to_string()))?;
        metrics.up.set(1);
        Ok(Arc::new(Self {
            conn,
            prefix: settings.key_prefix.clone(),
            timeout,
            retry_after: Duration::from_millis(settings.retry_after_ms),
            up: AtomicBool::new(true),
            skip_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            metrics,
        }))
    }

    /// `<prefix>:<rest>`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    /// Run `command` on the shared connection within the deadline. `None`
    /// when Redis failed, timed out, or is being skipped after a failure:
    /// the caller takes its fallback. `op` names the command in the log and
    /// in `ragchat_redis_errors_total`.
    pub async fn run<T, F, Fut>(&self, op: &'static str, command: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let now = self.now_ms();
        if now < self.skip_until_ms.load(Ordering::Relaxed) {
            self.metrics.fallbacks.get_or_create(&OpLabels { op }).inc();
            return None;
        }
        let failure = match tokio::time::timeout(self.timeout, command(self.conn.clone())).await {
            Ok(Ok(value)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    self.metrics.up.set(1);
                    tracing::info!("Redis answers again: shared rate limits and caches resume");
                }
                return Some(value);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        self.metrics.errors.get_or_create(&OpLabels { op }).inc();
        self.metrics.fallbacks.get_or_create(&OpLabels { op }).inc();
        // From the failure, not the attempt: a command that timed out has
        // used up part of the window already.
        self.skip_until_ms.store(
            self.now_ms() + self.retry_after.as_millis() as u64,
            Ordering::Relaxed,
        );
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.up.set(0);
            tracing::warn!(
                op,
                error = %failure,
                "Redis failed: rate limits are per node and shared caches are skipped until it answers again"
            );
        }
        None
    }

    /// Whether Redis answers a PING now (bypassing the skip window).
    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", self.timeout.as_millis())),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port nothing listens on: every command fails at once.
    fn dead() -> Arc<Redis> {
        let settings = RedisSettings {
            url: "redis://127.0.0.1:1".into(),
            retry_after_ms: 200,
            ..Default::default()
        };
        Redis::open(&settings, RedisMetrics::default()).unwrap()
    }

    async fn get(r: &Redis) -> Option<Option<String>> {
        r.run("get", |mut c| async move {
            redis::cmd("GET")
                .arg("k")
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
    }

    #[tokio::test]
    async fn a_dead_server_is_skipped_for_a_while_then_tried_again() {
        let r = dead();
        assert_eq!(get(&r).await, None);
        assert!(!r.up.load(Ordering::Relaxed));
        assert_eq!(r.metrics.up.get(), 0);
        let errors = || {
            r.metrics
                .errors
                .get_or_create(&OpLabels { op: "get" })
                .get()
        };
        assert_eq!(errors(), 1);
        // Within the window: not tried, so no new error, but a fallback.
        assert_eq!(get(&r).await, None);
        assert_eq!(errors(), 1);
        assert_eq!(
            r.metrics
                .fallbacks
                .get_or_create(&OpLabels { op: "get" })
                .get(),
            2
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(get(&r).await, None);
        assert_eq!(errors(), 2, "tried again after the window");
    }
}

/// A Redis server of a test's own, on a free loopback port, so a test can
/// stop and restart it without touching anyone else's. Helpers for tests
/// only: they panic on failure, which fails the test.
#[allow(clippy::expect_used, clippy::unwrap_used)]
pub mod testing {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    /// Names the `redis-server` binary; default: the one on PATH.
    pub const SERVER_ENV: &str = "RAGCHAT_TEST_REDIS_SERVER";
    /// Set to `1` where a missing `redis-server` must fail the tests
    /// instead of skipping them (`scripts/test.sh` does).
    pub const REQUIRE_ENV: &str = "RAGCHAT_TEST_REQUIRE_REDIS";

    pub struct TestRedis {
        pub port: u16,
        binary: String,
        child: Option<Child>,
    }

    impl TestRedis {
        /// Start one; `None` (after saying so) when no `redis-server` can be
        /// run and [`REQUIRE_ENV`] is not set.
        pub fn start() -> Option<Self> {
            let binary = std::env::var(SERVER_ENV).unwrap_or_else(|_| "redis-server".into());
            let found = Command::new(&binary)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !found {
                if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                    panic!("{REQUIRE_ENV}=1 but `{binary}` cannot be run: install redis-server");
                }
                eprintln!("skipped: no redis-server (set {SERVER_ENV} or install it)");
                return None;
            }
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut redis = Self {
                port,
                binary,
                child: None,
            };
            redis.restart();
            Some(redis)
        }

        pub fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        /// Kill it (SIGKILL: nothing is saved, it keeps nothing anyway).
        pub fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }

        /// Start it (again) on the same port, empty, and wait until it answers.
        pub fn restart(&mut self) {
            self.stop();
            let child = Command::new(&self.binary)
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server");
            self.child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !self.answers() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn answers(&self) -> bool {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
                return false;
            };
            let mut buf = [0u8; 7];
            s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
        }
    }

    impl Drop for TestRedis {
        fn drop(&mut self) {
            self.stop();
        }
    }
}
