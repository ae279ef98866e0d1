//! Password hashing with Argon2id (the crate's defaults: OWASP's m = 19 MiB,
//! t = 2, p = 1). Hashing is CPU-bound, so it runs on the blocking pool.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::error::{Error, Result};

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
    tokio::task::spawn_blocking(move || hash_sync(&password))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

/// Check `password` against `hash`; with no hash (unknown user) it checks
/// against a fixed dummy so the answer takes as long as for a real user.
pub async fn verify(password: &str, hash: Option<&str>) -> Result<bool> {
    let password = password.to_string();
    let hash = hash.map(str::to_string);
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => Ok(verify_sync(&password, &h)),
        None => {
            let dummy = dummy_hash()?;
            verify_sync(&password, dummy);
            Ok(false)
        }
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
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
    use super::*;

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
