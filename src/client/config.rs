//! The client's configuration: TOML in the platform config dir, every key
//! with a default, command-line overrides, and where each value came from.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The address a local chatd listens on by default.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7878";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// Server address (`host:port`, `ws://…` or `wss://…`).
    pub server: String,
    /// Username to use when several are logged in on this server.
    pub user: String,
    /// Device name sent at login.
    pub device: String,
    /// Start a local chatd when none answers and no server is configured.
    pub autostart_server: bool,
    /// Allow a password or token over cleartext `ws://` to another machine.
    pub insecure: bool,
    /// A PEM file of certificates to trust for `wss://` besides the
    /// platform's roots: a private CA, or a server's self-signed certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// `ws`, `http` (server-sent events and POST, for networks whose
    /// proxies refuse WebSockets) or `auto` (the WebSocket, falling back to
    /// HTTP when the upgrade is refused or never answered).
    pub transport: crate::client::net::Transport,
    pub notifications: NotifyConfig,
    pub privacy: PrivacyConfig,
    pub ui: UiConfig,
    /// Key bindings: action name → key (e.g. `quick_switcher = "ctrl-k"`).
    pub keys: toml::Table,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Desktop notifications (quietly off where no notification service runs).
    pub desktop: bool,
    /// Ring the terminal bell (for tmux and SSH).
    pub bell: bool,
    /// Notify only for mentions.
    pub mentions_only: bool,
    /// Notifications written to the terminal itself (OSC 9 or OSC 777),
    /// for SSH sessions and desktops without a notification service.
    pub terminal: TerminalNotify,
}

/// Which terminal escape carries a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TerminalNotify {
    /// OSC 777 or OSC 9 where no desktop notification service answers.
    Auto,
    /// `ESC ] 9 ; text BEL` (iTerm2, WezTerm, Windows Terminal, kitty).
    Osc9,
    /// `ESC ] 777 ; notify ; title ; body BEL` (foot, urxvt, WezTerm).
    Osc777,
    Off,
}

/// What the client tells others about the user's activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Let others see "alice is typing…".
    pub send_typing: bool,
    /// Let others see how far I have read. When off, the read pointer stays
    /// on this device, so unread counts no longer follow me across devices.
    pub send_read_receipts: bool,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            send_typing: true,
            send_read_receipts: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// `dark`, `light`, or a path to a theme file.
    pub theme: String,
    /// Clickable URLs (OSC 8); always off when `TERM` is `dumb` or `linux`.
    pub hyperlinks: bool,
    /// Shared images drawn under their file row: `auto` (with the
    /// terminal's graphics protocol where it has one, as half-blocks
    /// elsewhere) or `off`.
    pub images: ImagesSetting,
}

/// `[ui] images`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImagesSetting {
    Auto,
    Off,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            server: DEFAULT_SERVER.into(),
            user: String::new(),
            device: default_device(),
            autostart_server: true,
            insecure: false,
            ca_file: None,
            transport: crate::client::net::Transport::Auto,
            notifications: NotifyConfig::default(),
            privacy: PrivacyConfig::default(),
            ui: UiConfig::default(),
            keys: toml::Table::new(),
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            desktop: true,
            bell: false,
            mentions_only: false,
            terminal: TerminalNotify::Auto,
        }
    }
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            theme: "dark".into(),
            hyperlinks: true,
            images: ImagesSetting::Auto,
        }
    }
}

fn default_device() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .map(|h| h.chars().take(64).collect())
        .unwrap_or_else(|| "terminal".into())
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Flag,
}

/// The effective configuration and the origin of each key.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: ClientConfig,
    pub path: PathBuf,
    file_keys: BTreeSet<String>,
    flag_keys: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Parse(PathBuf, String),
}

/// The platform directories: config, data.
pub fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "chat")
}

/// `~/.config/chat/config.toml` (or the platform's equivalent).
pub fn default_path() -> PathBuf {
    dirs()
        .map(|d| d.config_dir().join("config.toml"))
        .unwrap_or_else(|| PathBuf::from("chat.toml"))
}

/// The client's data dir (caches, state).
pub fn data_dir() -> PathBuf {
    dirs()
        .map(|d| d.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".chat"))
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if prefix.is_empty() && k != "keys" => flatten(&key, t, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

impl Loaded {
    /// Read `path` (missing is fine: defaults), then apply overrides.
    pub fn load(
        path: Option<&Path>,
        server: Option<&str>,
        user: Option<&str>,
    ) -> Result<Loaded, ConfigError> {
        let path = path.map(Path::to_path_buf).unwrap_or_else(default_path);
        let (mut config, file_keys) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let table: toml::Table = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse(path.clone(), e.to_string()))?;
                let config: ClientConfig = toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse(path.clone(), e.to_string()))?;
                let mut keys = BTreeSet::new();
                flatten("", &table, &mut keys);
                (config, keys)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (ClientConfig::default(), BTreeSet::new())
            }
            Err(e) => return Err(ConfigError::Read(path, e)),
        };
        let mut flag_keys = BTreeSet::new();
        if let Some(s) = server {
            config.server = s.to_string();
            flag_keys.insert("server".to_string());
        }
        if let Some(u) = user {
            config.user = u.to_string();
            flag_keys.insert("user".to_string());
        }
        Ok(Loaded {
            config,
            path,
            file_keys,
            flag_keys,
        })
    }

    pub fn source(&self, key: &str) -> Source {
        if self.flag_keys.contains(key) {
            Source::Flag
        } else if self.file_keys.contains(key) {
            Source::File(self.path.clone())
        } else {
            Source::Default
        }
    }

    /// `--insecure` on the command line.
    pub fn allow_insecure(&mut self) {
        self.config.insecure = true;
        self.flag_keys.insert("insecure".to_string());
    }

    /// `--ca-file PATH` on the command line.
    pub fn set_ca_file(&mut self, path: PathBuf) {
        self.config.ca_file = Some(path);
        self.flag_keys.insert("ca_file".to_string());
    }

    /// `--transport ws|http|auto` on the command line.
    pub fn set_transport(&mut self, transport: crate::client::net::Transport) {
        self.config.transport = transport;
        self.flag_keys.insert("transport".to_string());
    }

    /// Whether the user chose a server (file or flag) rather than the default.
    pub fn server_chosen(&self) -> bool {
        self.source("server") != Source::Default
    }

    /// `key = value  # source` lines for `chat config`.
    pub fn describe(&self) -> String {
        let value =
            toml::Value::try_from(&self.config).unwrap_or(toml::Value::Table(Default::default()));
        let mut lines = vec![format!("# config file: {}", self.path.display())];
        let mut emit = |key: String, v: &toml::Value| {
            let src = match self.source(&key) {
                Source::Default => "default".to_string(),
                Source::File(p) => format!("file {}", p.display()),
                Source::Flag => "command line".to_string(),
            };
            lines.push(format!("{key} = {v}  # {src}"));
        };
        if let toml::Value::Table(t) = &value {
            for (k, v) in t {
                match v {
                    toml::Value::Table(inner) if k != "keys" => {
                        for (k2, v2) in inner {
                            emit(format!("{k}.{k2}"), v2);
                        }
                    }
                    _ => emit(k.clone(), v),
                }
            }
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_tracked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "user = \"alice\"\n[notifications]\nbell = true\n").unwrap();
        let l = Loaded::load(Some(&path), Some("example.org:1"), None).unwrap();
        assert_eq!(l.config.user, "alice");
        assert!(l.config.notifications.bell);
        assert!(l.config.notifications.desktop, "default kept");
        assert_eq!(l.source("server"), Source::Flag);
        assert_eq!(l.source("user"), Source::File(path.clone()));
        assert_eq!(l.source("notifications.bell"), Source::File(path));
        assert_eq!(l.source("notifications.desktop"), Source::Default);
        let text = l.describe();
        assert!(
            text.contains("server = \"example.org:1\"  # command line"),
            "{text}"
        );
        assert!(
            text.contains("notifications.desktop = true  # default"),
            "{text}"
        );
    }

    #[test]
    fn inline_images_can_be_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let l = Loaded::load(Some(&path), None, None).unwrap();
        assert_eq!(l.config.ui.images, ImagesSetting::Auto);
        std::fs::write(&path, "[ui]\nimages = \"off\"\n").unwrap();
        let l = Loaded::load(Some(&path), None, None).unwrap();
        assert_eq!(l.config.ui.images, ImagesSetting::Off);
        assert!(
            l.describe().contains("ui.images = \"off\""),
            "{}",
            l.describe()
        );
        std::fs::write(&path, "[ui]\nimages = \"sometimes\"\n").unwrap();
        assert!(Loaded::load(Some(&path), None, None).is_err());
    }

    #[test]
    fn a_missing_file_means_defaults_and_a_bad_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let l = Loaded::load(Some(&dir.path().join("none.toml")), None, None).unwrap();
        assert_eq!(l.config, ClientConfig::default());
        assert!(!l.server_chosen());
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "server = [").unwrap();
        assert!(Loaded::load(Some(&bad), None, None).is_err());
        std::fs::write(&bad, "sever = \"x\"").unwrap();
        assert!(
            Loaded::load(Some(&bad), None, None).is_err(),
            "unknown keys"
        );
    }
}
