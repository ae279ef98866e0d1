//! Password hashing with Argon2id (the crate's defaults: OWASP's m = 19 MiB,
//! t = 2, p = 1). Hashing is CPU-bound, so it runs on the blocking pool, and
//! at most about one hash per core runs at once: the blocking pool has
//! hundreds of threads, so without a bound a burst of logins or
//! registrations would take every core and 19 MiB per request in flight.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Runs blocking work, at most `permits` pieces at once; the rest wait.
struct Gate(Arc<Semaphore>);

impl Gate {
    fn new(permits: usize) -> Self {
        Gate(Arc::new(Semaphore::new(permits.max(1))))
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = self
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("password hashing gate: {e}")))?;
        // The permit goes with the work: if the request is dropped while the
        // hash runs, the slot stays taken until the hash is done.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
    }
}

/// One gate for the process, one permit per core.
fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| Gate::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

fn hash_sync(password: &str) -> Result<String> {
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| Error::Internal(format!("password salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing: {e}")))
}

fn verify_sync(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

pub async fn hash(password: &str) -> Result<String> {
    let password = password.to_string();
    gate().run(move || hash_sync(&password)).await?
}

/// Check `password` against `hash`; with no hash (unknown user) it checks
/// against a fixed dummy so the answer takes as long as for a real user.
pub async fn verify(password: &str, hash: Option<&str>) -> Result<bool> {
    let password = password.to_string();
    let hash = hash.map(str::to_string);
    gate()
        .run(move || match hash {
            Some(h) => Ok(verify_sync(&password, &h)),
            None => {
                let dummy = dummy_hash()?;
                verify_sync(&password, dummy);
                Ok(false)
            }
        })
        .await?
}

fn dummy_hash() -> Result<&'static str> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_sync("dummy password for unknown users")?;
    Ok(DUMMY.get_or_init(|| h))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_gate_bounds_how_many_run_at_once() {
        let gate = Arc::new(Gate::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    gate.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(30));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=2).contains(&most),
            "{most} ran at once through a gate of 2"
        );
    }

    #[tokio::test]
    async fn a_dropped_caller_keeps_its_slot_until_the_work_ends() {
        let gate = Arc::new(Gate::new(1));
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let first = {
            let gate = gate.clone();
            tokio::spawn(async move {
                gate.run(move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                })
                .await
            })
        };
        tokio::task::spawn_blocking(move || started_rx.recv().unwrap())
            .await
            .unwrap();
        // The request waiting on the hash goes away; the hash still runs.
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(gate.0.available_permits(), 0);
        release_tx.send(()).unwrap();
        gate.run(|| ()).await.unwrap();
        assert_eq!(gate.0.available_permits(), 1);
    }

    #[tokio::test]
    async fn hashes_verify_and_are_salted() {
        let a = hash("correct horse battery").await.unwrap();
        let b = hash("correct horse battery").await.unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(&a)).await.unwrap());
        assert!(!verify("wrong horse battery", Some(&a)).await.unwrap());
        assert!(!verify("x", Some("not a hash")).await.unwrap());
        assert!(!verify("correct horse battery", None).await.unwrap());
    }
}
