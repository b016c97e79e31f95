//! Where the client keeps things: one cache database per server and user,
//! and which user was last used on each server.

use std::collections::BTreeMap;
use std::path::PathBuf;

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

/// `DATA/cache/<server>/<user>.db`.
pub fn cache_path(server: &str, user: &str) -> PathBuf {
    super::config::data_dir()
        .join("cache")
        .join(slug(server))
        .join(format!("{}.db", slug(user)))
}

fn accounts_file() -> PathBuf {
    super::config::data_dir().join("accounts.toml")
}

/// The user last logged in on `server`.
pub fn last_user(server: &str) -> Option<String> {
    let text = std::fs::read_to_string(accounts_file()).ok()?;
    let map: BTreeMap<String, String> = toml::from_str(&text).ok()?;
    map.get(server).cloned()
}

/// Remember `user` as the last user of `server` (best effort).
pub fn remember_user(server: &str, user: &str) {
    let path = accounts_file();
    let mut map: BTreeMap<String, String> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    if map.get(server).map(String::as_str) == Some(user) {
        return;
    }
    map.insert(server.to_string(), user.to_string());
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(text) = toml::to_string(&map) {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(tmp, path);
        }
    }
}

/// Forget the last user of `server`.
pub fn forget_user(server: &str) {
    let path = accounts_file();
    let mut map: BTreeMap<String, String> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default();
    if map.remove(server).is_some()
        && let Ok(text) = toml::to_string(&map)
    {
        let _ = std::fs::write(path, text);
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
}
