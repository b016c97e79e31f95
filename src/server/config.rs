//! chatd's configuration: defaults, the TOML file, and command-line overrides.

pub use crate::net::transport::IpNet;
use crate::proto::Limits;
pub use crate::server::files::FilesConfig;
pub use crate::store::log::Registration;
pub use crate::store::log::retention::RetentionConfig;
use crate::store::log::{SessionLife, StoreConfig};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything chatd can be told. Every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory; `None` means the platform data directory.
    pub data: Option<PathBuf>,
    pub limits: Limits,
    pub store: StoreConfig,
    pub bus: BusConfig,
    pub auth: AuthConfig,
    pub net: NetSettings,
    pub retention: RetentionConfig,
    pub files: FilesConfig,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
}

/// The network side of chatd.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSettings {
    /// Browser origins (`https://chat.example.org`) whose pages may open a
    /// WebSocket. Terminal clients send no `Origin` and always pass; any
    /// other origin is refused, so a web page a member opens cannot drive
    /// the server in their name.
    pub allowed_origins: Vec<String>,
    /// PEM certificate chain to serve TLS with (with `tls_key`); reread on
    /// SIGHUP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For`
    /// or `X-Real-IP` header names the client. From any other peer those
    /// headers are ignored and the socket's address is the client's.
    pub trusted_proxies: Vec<IpNet>,
    /// Where to serve `GET /metrics` (Prometheus text format), on a
    /// listener of its own; `None` (the default): no metrics. Keep it on a
    /// private address: the numbers are not secret, but they are not for
    /// everyone either, and the listener has no authentication.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
}

/// The bus between chatd nodes (`[bus]`): with several nodes on one
/// PostgreSQL database, Redis carries committed events, typing, presence and
/// revocations from the node that saw them to the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// `redis://HOST[:PORT][/DB]`; `None` (the default): one node, fan-out
    /// in process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Seconds a node's word that a user is online lasts without being
    /// renewed: a node that dies takes its users offline within this.
    pub presence_ttl_secs: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            url: None,
            presence_ttl_secs: 30,
        }
    }
}

/// Accounts, sessions and password hashing (argon2id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Who may register. On an empty server the first account registers
    /// without an invitation and becomes admin.
    pub registration: Registration,
    /// Whether members (not only admins) may create invitations.
    pub members_invite: bool,
    /// A session unused for this many days expires.
    pub session_idle_days: u32,
    /// A session expires this many days after login however much it is
    /// used; 0 means no such limit.
    pub session_max_days: u32,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Password hashes computed at once; more wait (each uses the memory above).
    pub max_concurrent_hashes: usize,
    /// Hashes waiting for a hashing thread; a `register` or `login` beyond
    /// them is answered `rate_limited` at once.
    pub hash_queue: usize,
    /// Hashes one client address may have queued or running; more wait
    /// their turn, so that one address cannot fill the queue.
    pub hashes_per_address: usize,
    /// Failed logins of one account before each further one waits.
    pub account_free_failures: u32,
    /// Failed logins and registrations from one address before each
    /// further one waits.
    pub address_free_failures: u32,
    /// The first wait after the free failures; it doubles with each failure.
    pub backoff_base_ms: u64,
    /// The longest wait.
    pub backoff_max_ms: u64,
    /// Failures are forgotten after this long without a new one.
    pub failure_memory_secs: u64,
    /// Accounts, and separately addresses, whose failures are remembered;
    /// beyond, the least recently failed are forgotten first.
    pub throttle_entries: usize,
}

/// What sessions apply of `[auth]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRules {
    pub registration: Registration,
    pub members_invite: bool,
    pub life: SessionLife,
}

impl AuthConfig {
    pub fn rules(&self) -> AccountRules {
        const DAY_MS: i64 = 24 * 3600 * 1000;
        AccountRules {
            registration: self.registration,
            members_invite: self.members_invite,
            life: SessionLife {
                idle_ms: i64::from(self.session_idle_days.max(1)) * DAY_MS,
                max_ms: (self.session_max_days > 0)
                    .then(|| i64::from(self.session_max_days) * DAY_MS),
            },
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            registration: Registration::Invite,
            members_invite: false,
            session_idle_days: 30,
            session_max_days: 0,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            max_concurrent_hashes: 2,
            hash_queue: 32,
            hashes_per_address: 2,
            account_free_failures: 5,
            address_free_failures: 20,
            backoff_base_ms: 1000,
            backoff_max_ms: 300_000,
            failure_memory_secs: 900,
            throttle_entries: 65_536,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data: None,
            limits: Limits::default(),
            store: StoreConfig::default(),
            bus: BusConfig::default(),
            auth: AuthConfig::default(),
            net: NetSettings::default(),
            retention: RetentionConfig::default(),
            files: FilesConfig::default(),
            shutdown_grace_secs: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("no data directory: pass --data DIR")]
    NoDataDir,
    /// A setting that parses but would make chatd misbehave, alone or with
    /// another.
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The longest `[store] commit_delay_us` (0.1 s, PostgreSQL's bound for its
/// `commit_delay`): every write under load may wait this long.
pub const MAX_COMMIT_DELAY_US: u64 = 100_000;

impl Config {
    /// Read a TOML config file; keys not in it keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Refuse settings that parse but would make chatd misbehave, naming
    /// the key to change. Values chatd can work with (a zero where one is
    /// the least that makes sense) are taken as that least where they are
    /// used; these are the ones no such reading saves.
    pub fn check(&self) -> Result<(), ConfigError> {
        let (l, store) = (&self.limits, &self.store);
        let invalid = |key, message| Err(ConfigError::Invalid { key, message });
        if store.commit_delay_us > MAX_COMMIT_DELAY_US {
            return invalid(
                "[store] commit_delay_us",
                format!(
                    "{} is above {MAX_COMMIT_DELAY_US} (0.1 s): every write under load would wait that long",
                    store.commit_delay_us
                ),
            );
        }
        let ping = l.ping_interval_secs.max(1);
        if l.idle_timeout_secs < ping.saturating_mul(2) {
            return invalid(
                "[limits] idle_timeout_secs",
                format!(
                    "{} must be at least twice ping_interval_secs ({ping}), or a live but quiet client is closed before it is pinged",
                    l.idle_timeout_secs
                ),
            );
        }
        if l.max_frame_bytes > l.hard_frame_bytes {
            return invalid(
                "[limits] max_frame_bytes",
                format!(
                    "{} is above hard_frame_bytes ({}): frames between the two would be cut off instead of answered too_large",
                    l.max_frame_bytes, l.hard_frame_bytes
                ),
            );
        }
        let burst = store.batch_max.max(l.max_inflight);
        if l.outbound_queue < burst {
            return invalid(
                "[limits] outbound_queue",
                format!(
                    "{} is below [store] batch_max ({}) or max_inflight ({}): one commit, or one connection's pipelined sends, can queue that many frames for a member at once, and a full queue closes the connection",
                    l.outbound_queue, store.batch_max, l.max_inflight
                ),
            );
        }
        Ok(())
    }

    /// The data directory to use: the configured one or the platform's.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        match &self.data {
            Some(d) => Ok(d.clone()),
            None => default_data_dir().ok_or(ConfigError::NoDataDir),
        }
    }

    /// Settings suited to tests: fast password hashing.
    pub fn for_tests(data: PathBuf) -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: Some(data),
            auth: AuthConfig {
                argon2_memory_kib: 64,
                argon2_iterations: 1,
                argon2_parallelism: 1,
                max_concurrent_hashes: 4,
                // Tests make many accounts; the invitation rules have
                // tests of their own.
                registration: Registration::Open,
                ..AuthConfig::default()
            },
            // In-process servers are "killed" by dropping their runtime;
            // the writer thread then drains what is queued, and with an
            // fsync per commit that outlasts a restart on the same file.
            // A real kill ends the thread at once; the crash test runs the
            // real binary with the default.
            store: StoreConfig {
                sync: crate::store::log::SyncMode::Normal,
                ..StoreConfig::default()
            },
            ..Config::default()
        }
    }
}

/// chatd's platform data directory (e.g. `~/.local/share/chatd`).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "chatd").map(|d| d.data_dir().to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_files_keep_defaults() {
        let c: Config = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            [limits]
            max_body_bytes = 100
            [store]
            sync = "normal"
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.max_body_bytes, 100);
        assert_eq!(c.limits.max_frame_bytes, Limits::default().max_frame_bytes);
        assert_eq!(c.store.sync, crate::store::log::SyncMode::Normal);
        assert_eq!(c.net.metrics_listen, None, "metrics are off by default");
    }

    #[test]
    fn pushes_go_out_at_commit_unless_told_to_wait_for_the_sync() {
        use crate::store::log::PushMode;
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.store.push, PushMode::AtCommit);
        let c: Config = toml::from_str("[store]\npush = \"after_sync\"\n").unwrap();
        assert_eq!(c.store.push, PushMode::AfterSync);
        assert!(toml::from_str::<Config>("[store]\npush = \"later\"\n").is_err());
    }

    #[test]
    fn small_commits_wait_under_load_unless_turned_off() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(
            (c.store.commit_delay_us, c.store.commit_delay_above),
            (300, 4_000)
        );
        let c: Config = toml::from_str("[store]\ncommit_delay_us = 0\n").unwrap();
        assert_eq!(
            (c.store.commit_delay_us, c.store.commit_delay_above),
            (0, 4_000)
        );
        assert!(toml::from_str::<Config>("[store]\ncommit_delay_us = -1\n").is_err());
    }

    #[test]
    fn the_defaults_pass_the_check() {
        Config::default().check().unwrap();
        Config::for_tests(PathBuf::from("/nowhere"))
            .check()
            .unwrap();
    }

    /// Each rule names its key; a value at the rule's edge passes.
    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let refused = |text: &str| -> String {
            let c: Config = toml::from_str(text).unwrap();
            match c.check() {
                Err(e @ ConfigError::Invalid { .. }) => e.to_string(),
                other => panic!("{text}: {other:?}"),
            }
        };
        let passes = |text: &str| {
            let c: Config = toml::from_str(text).unwrap();
            c.check().unwrap_or_else(|e| panic!("{text}: {e}"));
        };
        let e = refused("[store]\ncommit_delay_us = 100001\n");
        assert!(
            e.starts_with("[store] commit_delay_us: 100001 is above"),
            "{e}"
        );
        passes("[store]\ncommit_delay_us = 100000\n");
        let e = refused("[limits]\nping_interval_secs = 30\nidle_timeout_secs = 59\n");
        assert!(
            e.starts_with("[limits] idle_timeout_secs: 59 must be at least twice"),
            "{e}"
        );
        passes("[limits]\nping_interval_secs = 30\nidle_timeout_secs = 60\n");
        // A zero interval is taken as one second where it is used.
        refused("[limits]\nping_interval_secs = 0\nidle_timeout_secs = 1\n");
        passes("[limits]\nping_interval_secs = 0\nidle_timeout_secs = 2\n");
        refused(&format!("[limits]\nping_interval_secs = {}\n", i64::MAX));
        let e = refused("[limits]\nmax_frame_bytes = 2000\nhard_frame_bytes = 1999\n");
        assert!(
            e.starts_with("[limits] max_frame_bytes: 2000 is above"),
            "{e}"
        );
        passes("[limits]\nmax_frame_bytes = 2000\nhard_frame_bytes = 2000\n");
        let e = refused("[limits]\noutbound_queue = 511\n");
        assert!(
            e.starts_with("[limits] outbound_queue: 511 is below"),
            "{e}"
        );
        passes("[limits]\noutbound_queue = 512\n");
        refused("[limits]\noutbound_queue = 600\nmax_inflight = 601\n");
        passes("[limits]\noutbound_queue = 64\n[store]\nbatch_max = 64\n");
    }

    #[test]
    fn metrics_listen_is_read() {
        let c: Config = toml::from_str("[net]\nmetrics_listen = \"127.0.0.1:9464\"\n").unwrap();
        assert_eq!(
            c.net.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<Config>(&text).unwrap(), c);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn the_default_config_round_trips() {
        let text = toml::to_string(&Config::default()).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
    }
}
