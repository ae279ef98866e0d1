//! A Qdrant server for tests: with `RAGCHAT_TEST_QDRANT_URL` set to its gRPC
//! address (`scripts/qdrant-test-server.sh` starts one), every test gets a
//! collection of its own there ([`TestCollection`]), deleted when dropped, so
//! tests running at once never see each other's points.
//!
//! Helpers for tests only: they panic on failure, which fails the test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use qdrant_client::Qdrant;

use crate::config::VectorSettings;

/// The variable naming the Qdrant server's gRPC URL; unset or empty means
/// the tests use the embedded index only.
pub const QDRANT_ENV: &str = "RAGCHAT_TEST_QDRANT_URL";
/// Set to `1` where a missing server must fail the tests instead of
/// skipping the server's own (`scripts/test.sh` does, for the PostgreSQL run).
pub const REQUIRE_ENV: &str = "RAGCHAT_TEST_REQUIRE_QDRANT";

/// The server's URL from [`QDRANT_ENV`], if set. Panics when it is not set
/// but [`REQUIRE_ENV`] is.
pub fn qdrant_url() -> Option<String> {
    let url = std::env::var(QDRANT_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty());
    if url.is_none() && std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_ENV}=1 but {QDRANT_ENV} is not set: start scripts/qdrant-test-server.sh");
    }
    url
}

/// A uniquely named collection on the test server, deleted on drop.
pub struct TestCollection {
    pub url: String,
    pub name: String,
}

impl TestCollection {
    /// A fresh name; the collection itself is created by whoever opens it.
    pub fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            name: format!("{prefix}_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Vector settings pointing at this collection.
    pub fn settings(&self) -> VectorSettings {
        VectorSettings {
            qdrant_url: self.url.clone(),
            qdrant_collection: self.name.clone(),
            ..VectorSettings::default()
        }
    }

    /// A client for the test server, for checks behind the index's back.
    pub fn client(&self) -> Qdrant {
        Qdrant::from_url(&self.url)
            .timeout(Duration::from_secs(30))
            .skip_compatibility_check()
            .build()
            .expect("Qdrant test client")
    }
}

impl Drop for TestCollection {
    fn drop(&mut self) {
        let client = self.client();
        let name = self.name.clone();
        // Drop may run inside a runtime (async tests) or outside one: a
        // thread of its own with its own runtime works in both.
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?
                .block_on(client.delete_collection(name))
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!("could not delete test collection {}: {e}", self.name);
        }
    }
}
