//! The 32-byte key the crypto state is pickled under in the cache. It is
//! kept where the session token is (the OS keyring, or the 0600 file where
//! no keyring answers), never in the cache itself.

use super::E2eError;
use crate::client::credentials::{Stored, TokenStore};

/// The name of the secret in the token store.
pub const SECRET_NAME: &str = "e2e-pickle-key";

/// A pickle key. Never printed.
#[derive(Clone)]
pub struct PickleKey([u8; 32]);

impl std::fmt::Debug for PickleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PickleKey(<secret>)")
    }
}

impl PickleKey {
    /// A fresh random key.
    pub fn random() -> PickleKey {
        PickleKey(rand::random())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn to_base64(&self) -> String {
        vodozemac::base64_encode(self.0)
    }

    fn from_base64(b64: &str) -> Result<PickleKey, E2eError> {
        let bytes = vodozemac::base64_decode(b64.trim())
            .map_err(|_| E2eError::Store("the stored pickle key is not base64".into()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| E2eError::Store("the stored pickle key has the wrong length".into()))?;
        Ok(PickleKey(bytes))
    }

    /// The key of `user@server` from `store`. When none is stored: a new one
    /// is made and stored if the cache holds no crypto state yet
    /// (`state_exists` false); otherwise that is an error, since a new key
    /// could not read the state (a keyring that did not answer this time
    /// must not cost the device its keys).
    pub fn load_or_create(
        store: &TokenStore,
        user: &str,
        server: &str,
        state_exists: bool,
    ) -> Result<(PickleKey, Stored), E2eError> {
        if let Some((b64, at)) = store.load_secret(SECRET_NAME, user, server) {
            return Ok((PickleKey::from_base64(&b64)?, at));
        }
        if state_exists {
            return Err(E2eError::Store(
                "the key of this device's secret-conversation state is missing from the \
                 keyring and the credentials file; unlock the keyring and try again, or \
                 reset this device's keys"
                    .into(),
            ));
        }
        let key = PickleKey::random();
        let at = store
            .save_secret(SECRET_NAME, user, server, &key.to_base64())
            .map_err(|e| E2eError::Store(e.to_string()))?;
        Ok((key, at))
    }

    /// Forget the key of `user@server` (when the device's state goes).
    pub fn remove(store: &TokenStore, user: &str, server: &str) -> Result<(), E2eError> {
        store
            .remove_secret(SECRET_NAME, user, server)
            .map_err(|e| E2eError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_found_again_in_the_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::file_only(dir.path().join("credentials.toml"));
        assert!(PickleKey::load_or_create(&store, "alice", "h:1", true).is_err());
        let (k1, at) = PickleKey::load_or_create(&store, "alice", "h:1", false).unwrap();
        assert_eq!(at, Stored::File(store.file().to_path_buf()));
        let (k2, _) = PickleKey::load_or_create(&store, "alice", "h:1", true).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        assert!(!format!("{k1:?}").contains(&k1.to_base64()));
        let text = std::fs::read_to_string(store.file()).unwrap();
        assert!(text.contains(SECRET_NAME));
        PickleKey::remove(&store, "alice", "h:1").unwrap();
        assert!(PickleKey::load_or_create(&store, "alice", "h:1", true).is_err());
    }

    #[test]
    fn a_headless_keyring_neither_hangs_nor_crashes() {
        // `TokenStore::new` tries the keyring (none answers on a headless
        // machine) and falls back to the file within its deadline.
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("credentials.toml"));
        let started = std::time::Instant::now();
        let (k1, _) = PickleKey::load_or_create(&store, "e2e-test", "h:9", false).unwrap();
        let (k2, _) = PickleKey::load_or_create(&store, "e2e-test", "h:9", true).unwrap();
        assert_eq!(k1.as_bytes(), k2.as_bytes());
        PickleKey::remove(&store, "e2e-test", "h:9").unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn a_damaged_stored_key_is_an_error() {
        assert!(PickleKey::from_base64("not base64!").is_err());
        assert!(PickleKey::from_base64("AAAA").is_err());
    }
}
