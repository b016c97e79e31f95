//! Where the client keeps things: one cache database per server and user,
//! and which user was last used on each server.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The client's data directory and the files in it.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data: PathBuf,
}

impl Default for Paths {
    /// The platform data dir (e.g. `~/.local/share/chat`).
    fn default() -> Self {
        Paths {
            data: super::config::data_dir(),
        }
    }
}

/// A file-name-safe form of a server address.
fn slug(server: &str) -> String {
    let s: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.chars().take(100).collect()
}

impl Paths {
    pub fn new(data: PathBuf) -> Paths {
        Paths { data }
    }

    /// `DATA/cache/<server>/<user>.db`.
    pub fn cache_path(&self, server: &str, user: &str) -> PathBuf {
        self.data
            .join("cache")
            .join(slug(server))
            .join(format!("{}.db", slug(user)))
    }

    fn accounts_file(&self) -> PathBuf {
        self.data.join("accounts.toml")
    }

    fn accounts(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.accounts_file())
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    fn write_accounts(&self, map: &BTreeMap<String, String>) {
        let path = self.accounts_file();
        let _ = crate::private::dir(&self.data);
        if let Ok(text) = toml::to_string(map) {
            let tmp = path.with_extension("tmp");
            if std::fs::write(&tmp, text).is_ok() {
                let _ = std::fs::rename(tmp, path);
            }
        }
    }

    /// The user last logged in on `server`.
    pub fn last_user(&self, server: &str) -> Option<String> {
        self.accounts().get(server).cloned()
    }

    /// Remember `user` as the last user of `server` (best effort).
    pub fn remember_user(&self, server: &str, user: &str) {
        let mut map = self.accounts();
        if map.get(server).map(String::as_str) != Some(user) {
            map.insert(server.to_string(), user.to_string());
            self.write_accounts(&map);
        }
    }

    /// Forget the last user of `server`.
    pub fn forget_user(&self, server: &str) {
        let mut map = self.accounts();
        if map.remove(server).is_some() {
            self.write_accounts(&map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_safe() {
        assert_eq!(slug("127.0.0.1:7878"), "127.0.0.1_7878");
        assert_eq!(slug("wss://x/y"), "wss___x_y");
        assert!(!slug("../../etc").contains('/'));
    }

    #[test]
    fn accounts_are_remembered_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let p = Paths::new(dir.path().to_path_buf());
        assert_eq!(p.last_user("a:1"), None);
        p.remember_user("a:1", "alice");
        p.remember_user("b:2", "bob");
        assert_eq!(p.last_user("a:1").as_deref(), Some("alice"));
        p.forget_user("a:1");
        assert_eq!(p.last_user("a:1"), None);
        assert_eq!(p.last_user("b:2").as_deref(), Some("bob"));
    }
}
