//! The store a chatd runs on, behind one type: the embedded SQLite log in
//! its data directory ([`log`]), or a PostgreSQL database that any number
//! of nodes share ([`pg`]), chosen by `[store] url`. Each call goes to the
//! backend as it is; both decide writes with [`super::rules`].

use super::log::{
    self, AccountOp, AccountReply, Append, Appended, CommitSink, KeyOp, KeyReply, SearchPage,
    SearchScope, SecretOp, SessionRow, Snapshot, StoreConfig, StoreError, StoredDevice, Webhook,
    WriteLimits, WriteStats,
};
use super::pg;
use crate::proto::keys::{InboxMessage, UserKeys};
use crate::proto::{Account, Event, Invite, MemberRole, ReceiptPair};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Which database a store URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// What `[store] url` names: nothing (the embedded SQLite file) or
/// `postgres://` / `postgresql://`; anything else is refused.
pub fn kind_of(url: Option<&str>) -> Result<Kind, StoreError> {
    match url {
        None => Ok(Kind::Sqlite),
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Kind::Postgres)
        }
        Some(u) => Err(StoreError::Open(format!(
            "[store] url must be a postgres:// URL (or unset for the embedded store), not {}",
            redact(u)
        ))),
    }
}

/// A store URL fit for a log line: without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Clone)]
enum Backend {
    Sqlite(log::LogStore),
    Postgres(pg::PgStore),
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    readers: Readers,
    /// The SQLite store's stand-in for a cluster id: one node, its own.
    local_id: Arc<str>,
}

/// The read side. Cheap to clone.
#[derive(Clone)]
pub enum Readers {
    Sqlite(log::Readers),
    Postgres(pg::PgReaders),
}

macro_rules! both {
    ($on:expr, $b:ident => $e:expr) => {
        match $on {
            Backend::Sqlite($b) => $e,
            Backend::Postgres($b) => $e,
        }
    };
}

/// Await the future `$f` of whichever backend. PostgreSQL's writes await
/// a pool and a lane and their futures run to KiBs; they are boxed, so
/// that every caller's own future (a connection's request, on SQLite too)
/// stays as small as the embedded store's.
macro_rules! both_await {
    ($on:expr, $b:ident => $f:expr) => {
        match $on {
            Backend::Sqlite($b) => $f.await,
            Backend::Postgres($b) => Box::pin($f).await,
        }
    };
}

impl Store {
    /// Open the store `config` names: the SQLite file in `data` when
    /// `url` is unset, else the PostgreSQL database (migrated on the way).
    pub async fn open(
        data: &Path,
        config: &StoreConfig,
        limits: WriteLimits,
        sink: Arc<dyn CommitSink>,
    ) -> Result<(Store, Snapshot), StoreError> {
        match kind_of(config.url.as_deref())? {
            Kind::Sqlite => {
                let (data, config) = (data.to_path_buf(), config.clone());
                let (store, snapshot) = tokio::task::spawn_blocking(move || {
                    log::LogStore::open(&data, &config, limits, sink)
                })
                .await
                .map_err(|e| StoreError::Open(format!("opening the store: {e}")))??;
                Ok((Store::sqlite(store), snapshot))
            }
            Kind::Postgres => {
                let url = config.url.as_deref().unwrap_or_default();
                let (store, snapshot) = pg::PgStore::open(url, config, limits, sink).await?;
                let readers = Readers::Postgres(store.readers().clone());
                Ok((
                    Store {
                        backend: Backend::Postgres(store),
                        readers,
                        local_id: Arc::from(""),
                    },
                    snapshot,
                ))
            }
        }
    }

    /// The embedded store, opened by the caller.
    pub fn sqlite(store: log::LogStore) -> Store {
        let readers = Readers::Sqlite(store.readers().clone());
        Store {
            backend: Backend::Sqlite(store),
            readers,
            local_id: Arc::from(hex::encode(rand::random::<[u8; 8]>())),
        }
    }

    /// The PostgreSQL store, when this is one.
    pub fn postgres(&self) -> Option<&pg::PgStore> {
        match &self.backend {
            Backend::Postgres(s) => Some(s),
            Backend::Sqlite(_) => None,
        }
    }

    pub fn kind(&self) -> Kind {
        match self.backend {
            Backend::Sqlite(_) => Kind::Sqlite,
            Backend::Postgres(_) => Kind::Postgres,
        }
    }

    /// What nodes sharing this store have in common, to keep their bus
    /// traffic apart from other clusters': the database's id on
    /// PostgreSQL; on SQLite, which has one node, an id of this process.
    pub fn cluster_id(&self) -> String {
        match &self.backend {
            Backend::Sqlite(_) => self.local_id.to_string(),
            Backend::Postgres(s) => s.cluster_id(),
        }
    }

    /// Whether the database answers (the embedded one always does).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(s) => s.ping().await,
        }
    }

    /// Apply a change to accounts, sessions or invitations.
    pub async fn account(&self, op: AccountOp) -> Result<AccountReply, StoreError> {
        both_await!(&self.backend, s => s.account(op))
    }

    /// Queue an append and return a receiver for its durable result.
    /// Appends submitted one after another from one task are sequenced in
    /// that order.
    pub async fn submit_append(
        &self,
        op: Append,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        both_await!(&self.backend, s => s.submit_append(op))
    }

    /// Append and wait until the result is durable.
    pub async fn append(&self, op: Append) -> Result<Appended, StoreError> {
        both_await!(&self.backend, s => s.append(op))
    }

    /// Queue a receipt update; the receiver yields the new pointers, or
    /// `None` when nothing moved.
    pub async fn submit_receipt(
        &self,
        user: &str,
        conversation_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<oneshot::Receiver<Result<Option<ReceiptPair>, StoreError>>, StoreError> {
        both_await!(&self.backend, s => s.submit_receipt(user, conversation_id, delivered, read))
    }

    pub async fn receipt(
        &self,
        user: &str,
        conversation_id: &str,
        delivered: u64,
        read: u64,
    ) -> Result<Option<ReceiptPair>, StoreError> {
        both_await!(&self.backend, s => s.receipt(user, conversation_id, delivered, read))
    }

    /// Apply a change to device keys or inboxes (secret conversations).
    pub async fn keys(&self, op: KeyOp) -> Result<KeyReply, StoreError> {
        both_await!(&self.backend, s => s.keys(op))
    }

    /// Queue a write to a secret conversation, in order with appends; the
    /// receiver gets its durable result.
    pub async fn submit_secret(
        &self,
        op: SecretOp,
    ) -> Result<oneshot::Receiver<Result<Appended, StoreError>>, StoreError> {
        both_await!(&self.backend, s => s.submit_secret(op))
    }

    /// The read side.
    pub fn readers(&self) -> &Readers {
        &self.readers
    }

    /// What the store measures of its commits, and whether writes failed.
    pub fn stats(&self) -> Arc<WriteStats> {
        both!(&self.backend, s => s.stats())
    }

    /// Stop accepting writes, finish what is under way, and close.
    pub async fn close(self) {
        let Store {
            backend, readers, ..
        } = self;
        drop(readers);
        both!(backend, s => s.close().await)
    }
}

macro_rules! forward {
    ($( $(#[$m:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Readers {
            $(
                $(#[$m])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    match self {
                        Readers::Sqlite(r) => r.$name($($arg),*).await,
                        Readers::Postgres(r) => r.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    /// The password hash of a user, if the user exists.
    fn password_hash(&self, username: &str) -> Option<String>;
    /// The ids of the events at these (conversation, seq) places.
    fn event_ids(&self, at: Vec<(String, u64)>) -> Vec<Option<String>>;
    /// A page of a conversation's log.
    fn history(
        &self,
        conversation_id: &str,
        after: Option<u64>,
        before: Option<u64>,
        limit: u32,
        max_bytes: usize
    ) -> Vec<Event>;
    /// Usernames starting with `prefix`.
    fn users(&self, prefix: &str, limit: u32) -> Vec<String>;
    fn search(&self, scope: SearchScope) -> SearchPage;
    fn upload_usage(&self, username: &str, digest: Option<String>) -> (u64, bool);
    fn may_read_file(&self, username: &str, digest: &str) -> bool;
    fn file_referenced(&self, digest: &str) -> bool;
    fn webhook(&self, id: &str) -> Option<Webhook>;
    fn webhooks(&self, conversation_id: &str) -> Vec<Webhook>;
    fn bots(&self, after: Option<String>, limit: u32) -> Vec<Account>;
    fn member_role(&self, conversation_id: &str, user: &str) -> Option<MemberRole>;
    fn bots_among(&self, names: Vec<String>) -> Vec<String>;
    fn no_accounts(&self) -> bool;
    fn account(&self, username: &str) -> Option<Account>;
    fn accounts(&self, after: Option<String>, limit: u32) -> Vec<Account>;
    fn sessions(&self, username: &str) -> Vec<SessionRow>;
    fn invites(&self, creator: Option<String>, after: Option<String>, limit: u32) -> Vec<Invite>;
    fn blocks(&self, blocker: &str) -> Vec<String>;
    fn account_changes(&self, after: i64) -> Vec<(i64, String)>;
    fn last_account_change(&self) -> i64;
    /// Everything the server keeps in memory, read again.
    fn snapshot(&self) -> Snapshot;
    /// The device of the session `token_hash`, if it uploaded keys.
    fn device_of_session(&self, token_hash: &str) -> Option<StoredDevice>;
    /// One device of `user`.
    fn device(&self, user: &str, device_id: &str) -> Option<StoredDevice>;
    /// `user`'s identity key, if they gave one.
    fn identity_key(&self, user: &str) -> Option<String>;
    /// The identity key and devices of each of `users`.
    fn keys_query(&self, users: Vec<String>) -> BTreeMap<String, UserKeys>;
    /// A page of the inbox of the session `token_hash`'s device, and the
    /// last seq it gave out.
    fn inbox(&self, token_hash: &str, after: u64, limit: u32) -> (Vec<InboxMessage>, u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_store_and_hide_their_password() {
        assert_eq!(kind_of(None).unwrap(), Kind::Sqlite);
        assert_eq!(
            kind_of(Some("postgres://u:p@h/db")).unwrap(),
            Kind::Postgres
        );
        assert_eq!(kind_of(Some("postgresql://h/db")).unwrap(), Kind::Postgres);
        let refused = kind_of(Some("mysql://u:secret@h/db"))
            .unwrap_err()
            .to_string();
        assert!(!refused.contains("secret"), "{refused}");
        assert_eq!(
            redact("postgres://u:p@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    }
}
