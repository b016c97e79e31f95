//! Where the session token lives: the OS keyring (service `chat`, account
//! `user@server`) or, where no keyring answers, a 0600 file in the config
//! dir, with a one-line notice. Never both, never the password.
//!
//! Other secrets of an account (the key of its secret-conversation state)
//! are kept the same way under `what:user@server`.
//!
//! Keyring calls run on a helper thread with a deadline, so a keyring
//! service that never answers cannot hang the client.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const SERVICE: &str = "chat";
const KEYRING_DEADLINE: Duration = Duration::from_secs(3);

/// Where a token was found or put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Keyring,
    File(PathBuf),
}

/// The token store for one machine.
#[derive(Debug, Clone)]
pub struct TokenStore {
    file: PathBuf,
    use_keyring: bool,
    /// A token given from outside (`CHAT_TOKEN`): the only one this store
    /// answers, and it stores nothing.
    fixed: Option<Fixed>,
}

/// A token that never shows in debug output or logs.
#[derive(Clone)]
struct Fixed(String);

impl std::fmt::Debug for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fixed(<token>)")
    }
}

/// The environment variable scripts and bots pass a token in.
pub const TOKEN_VAR: &str = "CHAT_TOKEN";

/// The token in `CHAT_TOKEN`, if set and not empty.
pub fn env_token() -> Option<String> {
    std::env::var(TOKEN_VAR)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("cannot write {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("no place to keep the {0}: the session token came from {TOKEN_VAR}")]
    Fixed(String),
}

fn account(user: &str, server: &str) -> String {
    format!("{user}@{server}")
}

fn secret_account(what: &str, user: &str, server: &str) -> String {
    format!("{what}:{user}@{server}")
}

/// Run a keyring operation with a deadline; `None` means no keyring answered.
fn with_keyring<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, keyring::Error> + Send + 'static,
) -> Option<Result<T, keyring::Error>> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
        });
    if spawned.is_err() {
        return None;
    }
    match rx.recv_timeout(KEYRING_DEADLINE) {
        Ok(Err(keyring::Error::NoStorageAccess(_)))
        | Ok(Err(keyring::Error::PlatformFailure(_)))
        | Ok(Err(keyring::Error::NoDefaultStore)) => None,
        Ok(r) => Some(r),
        Err(_) => None,
    }
}

impl TokenStore {
    /// A store using the keyring when one answers, else `file`.
    pub fn new(file: PathBuf) -> TokenStore {
        let disabled = std::env::var_os("CHAT_NO_KEYRING").is_some();
        TokenStore {
            file,
            use_keyring: !disabled,
            fixed: None,
        }
    }

    /// Whether this store holds a token given from outside (`CHAT_TOKEN`):
    /// then nothing about the session is remembered on this machine.
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// A store holding only `token` (from `CHAT_TOKEN`): it answers that
    /// token for anyone and never writes or forgets anything.
    pub fn fixed(token: String) -> TokenStore {
        TokenStore {
            file: PathBuf::new(),
            use_keyring: false,
            fixed: Some(Fixed(token)),
        }
    }

    /// A store that never touches the keyring (tests, `CHAT_NO_KEYRING`).
    pub fn file_only(file: PathBuf) -> TokenStore {
        TokenStore {
            file,
            use_keyring: false,
            fixed: None,
        }
    }

    /// The default file: `credentials.toml` in the config dir.
    pub fn default_file() -> PathBuf {
        super::config::dirs()
            .map(|d| d.config_dir().join("credentials.toml"))
            .unwrap_or_else(|| PathBuf::from("chat-credentials.toml"))
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Store a token; returns where it went.
    pub fn save(&self, user: &str, server: &str, token: &str) -> Result<Stored, CredError> {
        if self.fixed.is_some() {
            // Nothing is stored: the token comes from the environment.
            return Ok(Stored::Keyring);
        }
        self.save_entry(account(user, server), token)
    }

    /// Find the token of `user@server`.
    pub fn load(&self, user: &str, server: &str) -> Option<(String, Stored)> {
        if let Some(Fixed(t)) = &self.fixed {
            return Some((t.clone(), Stored::Keyring));
        }
        self.load_entry(account(user, server))
    }

    /// Forget the token of `user@server`, wherever it is.
    pub fn remove(&self, user: &str, server: &str) -> Result<(), CredError> {
        if self.fixed.is_some() {
            return Ok(());
        }
        self.remove_entry(account(user, server))
    }

    /// Store another secret of `user@server`, named `what`, like a token.
    /// A store holding a fixed token keeps nothing and says so.
    pub fn save_secret(
        &self,
        what: &str,
        user: &str,
        server: &str,
        value: &str,
    ) -> Result<Stored, CredError> {
        if self.fixed.is_some() {
            return Err(CredError::Fixed(what.to_string()));
        }
        self.save_entry(secret_account(what, user, server), value)
    }

    /// Find the secret `what` of `user@server`.
    pub fn load_secret(&self, what: &str, user: &str, server: &str) -> Option<(String, Stored)> {
        if self.fixed.is_some() {
            return None;
        }
        self.load_entry(secret_account(what, user, server))
    }

    /// Forget the secret `what` of `user@server`, wherever it is.
    pub fn remove_secret(&self, what: &str, user: &str, server: &str) -> Result<(), CredError> {
        if self.fixed.is_some() {
            return Ok(());
        }
        self.remove_entry(secret_account(what, user, server))
    }

    fn save_entry(&self, acct: String, value: &str) -> Result<Stored, CredError> {
        if self.use_keyring {
            let (a, t) = (acct.clone(), value.to_string());
            if let Some(Ok(())) =
                with_keyring(move || keyring::Entry::new(SERVICE, &a)?.set_password(&t))
            {
                // Keep exactly one copy: drop any file copy.
                let _ = self.edit_file(|m| {
                    m.remove(&acct);
                });
                return Ok(Stored::Keyring);
            }
        }
        self.edit_file(|m| {
            m.insert(acct, value.to_string());
        })?;
        Ok(Stored::File(self.file.clone()))
    }

    fn load_entry(&self, acct: String) -> Option<(String, Stored)> {
        if self.use_keyring {
            let a = acct.clone();
            if let Some(Ok(t)) =
                with_keyring(move || keyring::Entry::new(SERVICE, &a)?.get_password())
            {
                return Some((t, Stored::Keyring));
            }
        }
        self.read_file()
            .remove(&acct)
            .map(|t| (t, Stored::File(self.file.clone())))
    }

    fn remove_entry(&self, acct: String) -> Result<(), CredError> {
        if self.use_keyring {
            let a = acct.clone();
            let _ = with_keyring(move || keyring::Entry::new(SERVICE, &a)?.delete_credential());
        }
        if self.read_file().contains_key(&acct) {
            self.edit_file(|m| {
                m.remove(&acct);
            })?;
        }
        Ok(())
    }

    fn read_file(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn edit_file(&self, f: impl FnOnce(&mut BTreeMap<String, String>)) -> Result<(), CredError> {
        let mut map = self.read_file();
        let before = map.clone();
        f(&mut map);
        if map == before && self.file.exists() {
            return Ok(());
        }
        if map.is_empty() && !self.file.exists() {
            return Ok(());
        }
        let err = |e| CredError::Write(self.file.clone(), e);
        if let Some(dir) = self.file.parent() {
            crate::private::dir(dir).map_err(err)?;
        }
        let text = toml::to_string(&map).unwrap_or_default();
        let tmp = self.file.with_extension("tmp");
        crate::private::write(&tmp, text.as_bytes()).map_err(err)?;
        std::fs::rename(&tmp, &self.file).map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_token_is_answered_never_stored_and_never_shown() {
        let store = TokenStore::fixed("s3cret-token".into());
        assert_eq!(store.load("bot", "h:1").unwrap().0, "s3cret-token");
        store.save("bot", "h:1", "other").unwrap();
        store.remove("bot", "h:1").unwrap();
        assert_eq!(store.load("bot", "h:1").unwrap().0, "s3cret-token");
        assert!(!format!("{store:?}").contains("s3cret"));
    }

    #[test]
    fn file_fallback_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::file_only(dir.path().join("sub/credentials.toml"));
        assert_eq!(store.load("alice", "h:1"), None);
        let at = store.save("alice", "h:1", "tok1").unwrap();
        assert_eq!(at, Stored::File(store.file().to_path_buf()));
        store.save("bob", "h:1", "tok2").unwrap();
        assert_eq!(store.load("alice", "h:1").unwrap().0, "tok1");
        assert_eq!(store.load("bob", "h:1").unwrap().0, "tok2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.file())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store.remove("alice", "h:1").unwrap();
        assert_eq!(store.load("alice", "h:1"), None);
        assert!(store.load("bob", "h:1").is_some());
    }

    #[test]
    fn other_secrets_sit_beside_the_token_and_apart_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::file_only(dir.path().join("credentials.toml"));
        store.save("alice", "h:1", "tok").unwrap();
        store.save_secret("e2e", "alice", "h:1", "k3y").unwrap();
        assert_eq!(store.load("alice", "h:1").unwrap().0, "tok");
        assert_eq!(store.load_secret("e2e", "alice", "h:1").unwrap().0, "k3y");
        assert_eq!(store.load_secret("e2e", "bob", "h:1"), None);
        store.remove("alice", "h:1").unwrap();
        assert_eq!(store.load_secret("e2e", "alice", "h:1").unwrap().0, "k3y");
        store.remove_secret("e2e", "alice", "h:1").unwrap();
        assert_eq!(store.load_secret("e2e", "alice", "h:1"), None);
        let fixed = TokenStore::fixed("t".into());
        assert!(fixed.save_secret("e2e", "a", "h", "v").is_err());
        assert_eq!(fixed.load_secret("e2e", "a", "h"), None);
    }

    #[test]
    fn a_headless_keyring_falls_back_without_hanging() {
        // With no session bus the keyring cannot answer: the store must fall
        // back to the file promptly.
        let dir = tempfile::tempdir().unwrap();
        let mut store = TokenStore::new(dir.path().join("credentials.toml"));
        store.use_keyring = true;
        let started = std::time::Instant::now();
        // SAFETY-free: only this test's process reads the variable, and the
        // keyring backend is consulted on a fresh thread after this point.
        let saved = store.save("carol", "h:2", "tok3").unwrap();
        let loaded = store.load("carol", "h:2").unwrap();
        assert_eq!(loaded.0, "tok3");
        match saved {
            Stored::Keyring => assert_eq!(loaded.1, Stored::Keyring),
            Stored::File(_) => assert!(store.file().exists()),
        }
        store.remove("carol", "h:2").unwrap();
        assert_eq!(store.load("carol", "h:2"), None);
        assert!(started.elapsed() < KEYRING_DEADLINE * 7);
    }
}
