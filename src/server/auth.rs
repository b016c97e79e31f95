//! Passwords and session tokens.
//!
//! Passwords are hashed with argon2id on blocking threads, at most a few at a
//! time (each hash takes memory on purpose). Tokens are 32 random bytes shown
//! to the client once and stored only as their SHA-256.

use super::config::AuthConfig;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Hashes and verifies passwords with bounded concurrency.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// A hash of a random password, verified against when the user does not
    /// exist so that both failures take the same time.
    decoy: Arc<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed")]
    Hash,
}

impl Hasher {
    pub fn new(cfg: &AuthConfig) -> Result<Hasher, AuthError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| AuthError::Params(e.to_string()))?;
        let decoy = hash_with(&params, &new_token())?;
        Ok(Hasher {
            params,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_hashes.max(1))),
            decoy: Arc::new(decoy),
        })
    }

    /// Hash a new password.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        let _permit = self.permits.acquire().await.map_err(|_| AuthError::Hash)?;
        let params = self.params.clone();
        tokio::task::spawn_blocking(move || hash_with(&params, &password))
            .await
            .map_err(|_| AuthError::Hash)?
    }

    /// Check a password against a stored hash, or against the decoy when the
    /// user is unknown (`None`), which always fails.
    pub async fn verify(&self, password: String, stored: Option<String>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| self.decoy.as_ref().clone());
        let ok = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .unwrap_or(false);
        ok && known
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, AuthError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|_| AuthError::Hash)
}

/// A new random session token (64 hex characters).
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// The SHA-256 of a token; what is stored is its hex form ([`token_hash`]).
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What is stored for a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(token_digest(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> AuthConfig {
        AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
            ..AuthConfig::default()
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = Hasher::new(&fast()).unwrap();
        let a = h.hash("correct horse".into()).await.unwrap();
        let b = h.hash("correct horse".into()).await.unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(h.verify("correct horse".into(), Some(a.clone())).await);
        assert!(!h.verify("wrong".into(), Some(a)).await);
        assert!(!h.verify("anything".into(), None).await);
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t = new_token();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token());
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_ne!(token_hash(&t), t);
    }
}
