//! Access JWTs (HS256, algorithm pinned) and opaque secrets (refresh tokens,
//! API keys, WebSocket tickets) that are stored only as SHA-256 hashes: they
//! carry 256 random bits, so a fast hash is enough and lookups stay a single
//! indexed read.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ISSUER: &str = "ragchat";
pub const REFRESH_PREFIX: &str = "rcr_";
pub const API_KEY_PREFIX: &str = "rck_";
/// Single-use WebSocket tickets.
pub const TICKET_PREFIX: &str = "rcw_";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    /// User id.
    pub sub: String,
    /// Session id: logout revokes it, and with it every access token it issued.
    pub sid: String,
    /// The user's token version at issue; a password change or disabling bumps it.
    pub ver: i32,
    pub iat: i64,
    pub exp: i64,
    /// Unique per token, so two tokens issued in the same second differ.
    pub jti: String,
}

#[derive(Debug, PartialEq)]
pub enum TokenError {
    Expired,
    Invalid,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn issue(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// A new random secret with the given prefix.
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            iss: ISSUER.into(),
            sub: "u1".into(),
            sid: "s1".into(),
            ver: 3,
            iat: now,
            exp: now + exp_in,
            jti: "j1".into(),
        }
    }

    #[test]
    fn round_trip_expiry_and_wrong_key() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        let c = claims(60);
        let t = keys.issue(&c).unwrap();
        assert_eq!(keys.verify(&t).unwrap(), c);
        let old = keys.issue(&claims(-5)).unwrap();
        assert_eq!(keys.verify(&old), Err(TokenError::Expired));
        let other = JwtKeys::new(b"another secret another secret 00");
        assert_eq!(other.verify(&t), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not.a.jwt"), Err(TokenError::Invalid));
    }

    #[test]
    fn algorithm_is_pinned() {
        // An unsigned token ("alg": "none") must not pass.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = b64.encode(serde_json::to_vec(&claims(60)).unwrap());
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            keys.verify(&format!("{header}.{body}.")),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let a = new_secret(API_KEY_PREFIX);
        assert!(a.starts_with("rck_") && a.len() == 4 + 64);
        assert_ne!(a, new_secret(API_KEY_PREFIX));
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), a);
    }
}
