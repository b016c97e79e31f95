//! Accounts: registration under the server's policy, roles and
//! deactivation, device sessions (expiry, listing, revocation) and
//! invitations.
//!
//! The writer applies every change ([`AccountOp`]) inside its transaction;
//! [`Readers`] answers the lookups. The SQL of each change is a function of
//! a connection, so that `chatd admin` can make the same changes beside a
//! running server (see [`offline`]).

use super::writer::{Writer, rejected};
use super::{Committed, Readers, StoreError};
use crate::proto::{Account, ErrorCode, Invite, Millis, ProtoError, Role, now_millis};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// Who may register (`[auth] registration`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Registration {
    /// Anyone who reaches the server.
    Open,
    /// Anyone with a valid invitation code.
    #[default]
    Invite,
    /// Only admins create accounts.
    Closed,
}

impl Registration {
    /// Whether a `register` may go ahead, the invitation aside (that is
    /// checked as it is used): the first account always may.
    pub fn admits(self, first_account: bool, invite: Option<&str>) -> Result<(), ProtoError> {
        match self {
            _ if first_account => Ok(()),
            Registration::Open => Ok(()),
            Registration::Closed => Err(ProtoError::new(
                ErrorCode::RegistrationClosed,
                "registration is closed here: ask an admin for an account",
            )),
            Registration::Invite if invite.is_some_and(|c| !c.is_empty()) => Ok(()),
            Registration::Invite => Err(ProtoError::new(
                ErrorCode::InviteRequired,
                "this server needs an invitation: register with --invite CODE",
            )),
        }
    }
}

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLife {
    /// A session unused this long expires.
    pub idle_ms: Millis,
    /// A session this old expires however much it is used.
    pub max_ms: Option<Millis>,
}

impl SessionLife {
    /// When a session expires, given when it was created and last used.
    pub fn expires_at(&self, created: Millis, last_seen: Millis) -> Millis {
        let idle = last_seen.saturating_add(self.idle_ms);
        match self.max_ms {
            Some(max) => idle.min(created.saturating_add(max)),
            None => idle,
        }
    }
}

/// Which sessions of an account to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// The session with this token hash.
    Token(String),
    /// The session with this public id.
    Id(String),
    /// Every session but the one with this token hash.
    AllBut(String),
    All,
}

/// A change to accounts, applied by the writer.
#[derive(Debug, Clone)]
pub enum AccountOp {
    Register {
        username: String,
        password_hash: String,
        invite: Option<String>,
        policy: Registration,
    },
    /// An account made by an admin, under any policy.
    CreateUser {
        username: String,
        password_hash: String,
        role: Role,
    },
    CreateSession {
        username: String,
        token_hash: String,
        device: String,
        address: Option<String>,
        max_per_user: usize,
    },
    /// A token was presented: check that it is live and refresh it.
    UseSession {
        token_hash: String,
        address: Option<String>,
        life: SessionLife,
    },
    RevokeSessions {
        username: String,
        which: Revoke,
    },
    /// A long connection on this session closed: it was in use until now.
    TouchSession {
        token_hash: String,
        address: Option<String>,
    },
    /// A new password; every session but `keep` ends.
    SetPassword {
        username: String,
        password_hash: String,
        keep: Option<String>,
    },
    SetActive {
        username: String,
        active: bool,
    },
    SetRole {
        username: String,
        role: Role,
    },
    CreateInvite {
        code: String,
        created_by: String,
        max_uses: u32,
        expires_at: Option<Millis>,
        max_per_user: usize,
    },
    RevokeInvite {
        code: String,
        by: String,
        admin: bool,
    },
    /// Erase an account: deactivated, password unusable, sessions ended,
    /// and every message it wrote deleted (a `delete` event each) with its
    /// stored text cleared. The name stays taken.
    Erase {
        username: String,
    },
    /// `username` holds the bytes of `digest` (an upload finished),
    /// within `quota` bytes of uploads.
    RecordUpload {
        username: String,
        digest: String,
        size: u64,
        quota: u64,
    },
    /// Forget uploads made before `before` that no `file` event of their
    /// uploader refers to; answers the digests nothing refers to any more.
    CollectUploads {
        before: Millis,
    },
    /// `blocker` starts (`on`) or stops blocking `blocked`.
    Block {
        blocker: String,
        blocked: String,
        on: bool,
    },
    /// Bots and webhooks (see `bots`).
    Bot(super::BotOp),
}

/// What an account change produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountReply {
    Done,
    /// The role of the account just registered or created.
    Role(Role),
    /// A new session: its public id, the account's role, and the token
    /// hashes of older sessions it pushed out.
    Session {
        id: String,
        role: Role,
        ended: Vec<String>,
    },
    Used(SessionUse),
    /// Token hashes of the sessions that ended.
    Revoked(Vec<String>),
    /// File digests nothing refers to any more.
    Digests(Vec<String>),
    /// A webhook just created.
    Webhook(super::Webhook),
}

/// The answer to a token presented at `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionUse {
    Live { username: String, role: Role },
    Unknown,
    Expired,
    Disabled,
}

/// A session as its owner sees it (with the token hash, to mark the
/// caller's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub token_hash: String,
    pub device: String,
    pub created_at: Millis,
    pub last_seen: Millis,
    pub last_address: Option<String>,
}

fn role_of(s: &str) -> Role {
    Role::parse(s).unwrap_or_default()
}

/// A new public session id.
fn session_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Whether an account exists.
pub(super) fn exists(c: &Connection, username: &str) -> Result<bool, StoreError> {
    Ok(c.prepare_cached("SELECT 1 FROM users WHERE username = ?1")?
        .query_row([username], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Insert an account (the name is known to be free).
pub(super) fn insert_user(
    c: &Connection,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO users (username, password_hash, created_at, role) VALUES (?1, ?2, ?3, ?4)",
        params![username, password_hash, now_millis(), role.as_str()],
    )?;
    Ok(())
}

/// Record a use of invitation `code` by `username`, if it is still good.
fn use_invite(c: &Connection, code: &str, username: &str) -> Result<(), StoreError> {
    let invalid = |why: &str| rejected(ErrorCode::InviteInvalid, why);
    let row: Option<(Option<Millis>, u32, bool)> = c
        .prepare_cached("SELECT expires_at, max_uses, revoked FROM invites WHERE code = ?1")?
        .query_row([code], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((expires, max_uses, revoked)) = row else {
        return Err(invalid("no such invitation"));
    };
    if revoked {
        return Err(invalid("that invitation was revoked"));
    }
    if expires.is_some_and(|e| e <= now_millis()) {
        return Err(invalid("that invitation has expired"));
    }
    let used: u32 = c
        .prepare_cached("SELECT COUNT(*) FROM invite_uses WHERE code = ?1")?
        .query_row([code], |r| r.get(0))?;
    if used >= max_uses {
        return Err(invalid("that invitation has been used up"));
    }
    c.execute(
        "INSERT INTO invite_uses (code, username, used_at) VALUES (?1, ?2, ?3)",
        params![code, username, now_millis()],
    )?;
    Ok(())
}

/// End sessions of `username`; returns their token hashes.
pub(super) fn revoke(
    c: &Connection,
    username: &str,
    which: &Revoke,
) -> Result<Vec<String>, StoreError> {
    let (sql, key): (&str, Option<&str>) = match which {
        Revoke::Token(t) => (
            "SELECT token_hash FROM sessions WHERE username = ?1 AND token_hash = ?2",
            Some(t),
        ),
        Revoke::Id(id) => (
            "SELECT token_hash FROM sessions WHERE username = ?1 AND id = ?2",
            Some(id),
        ),
        Revoke::AllBut(t) => (
            "SELECT token_hash FROM sessions WHERE username = ?1 AND token_hash <> ?2",
            Some(t),
        ),
        Revoke::All => ("SELECT token_hash FROM sessions WHERE username = ?1", None),
    };
    let mut stmt = c.prepare_cached(sql)?;
    let hashes: Vec<String> = match key {
        Some(k) => stmt
            .query_map(params![username, k], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
        None => stmt
            .query_map(params![username], |r| r.get(0))?
            .collect::<Result<_, _>>()?,
    };
    let mut del = c.prepare_cached("DELETE FROM sessions WHERE token_hash = ?1")?;
    for h in &hashes {
        del.execute([h])?;
    }
    Ok(hashes)
}

/// Set a password; every session but `keep` ends.
pub(super) fn set_password(
    c: &Connection,
    username: &str,
    password_hash: &str,
    keep: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let n = c.execute(
        "UPDATE users SET password_hash = ?2 WHERE username = ?1",
        params![username, password_hash],
    )?;
    if n == 0 {
        return Err(rejected(
            ErrorCode::NotFound,
            format!("no user named {username}"),
        ));
    }
    let which = match keep {
        Some(t) => Revoke::AllBut(t.to_string()),
        None => Revoke::All,
    };
    revoke(c, username, &which)
}

/// Admins whose accounts are active.
fn active_admins(c: &Connection) -> Result<u32, StoreError> {
    Ok(c.query_row(
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND deactivated_at IS NULL",
        [],
        |r| r.get(0),
    )?)
}

/// `(role, active)` of an account, or `not_found`.
fn standing(c: &Connection, username: &str) -> Result<(Role, bool), StoreError> {
    c.prepare_cached("SELECT role, deactivated_at IS NULL FROM users WHERE username = ?1")?
        .query_row([username], |r| {
            Ok((role_of(&r.get::<_, String>(0)?), r.get(1)?))
        })
        .optional()?
        .ok_or_else(|| rejected(ErrorCode::NotFound, format!("no user named {username}")))
}

/// Deactivate (ending every session) or reactivate an account. The last
/// active admin cannot be deactivated.
pub(super) fn set_active(
    c: &Connection,
    username: &str,
    active: bool,
) -> Result<Vec<String>, StoreError> {
    let (role, was_active) = standing(c, username)?;
    if active {
        c.execute(
            "UPDATE users SET deactivated_at = NULL WHERE username = ?1",
            [username],
        )?;
        return Ok(Vec::new());
    }
    if role == Role::Admin && was_active && active_admins(c)? <= 1 {
        return Err(rejected(
            ErrorCode::Conflict,
            "that is the last active admin; promote another account first",
        ));
    }
    c.execute(
        "UPDATE users SET deactivated_at = COALESCE(deactivated_at, ?2) WHERE username = ?1",
        params![username, now_millis()],
    )?;
    revoke(c, username, &Revoke::All)
}

/// Promote or demote; the last active admin cannot be demoted.
pub(super) fn set_role(c: &Connection, username: &str, role: Role) -> Result<(), StoreError> {
    let (old, active) = standing(c, username)?;
    if old == Role::Admin && role == Role::Member && active && active_admins(c)? <= 1 {
        return Err(rejected(
            ErrorCode::Conflict,
            "that is the last active admin; promote another account first",
        ));
    }
    c.execute(
        "UPDATE users SET role = ?2 WHERE username = ?1",
        params![username, role.as_str()],
    )?;
    Ok(())
}

/// Store a new invitation.
pub(super) fn create_invite(
    c: &Connection,
    code: &str,
    created_by: &str,
    max_uses: u32,
    expires_at: Option<Millis>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO invites (code, created_by, created_at, expires_at, max_uses) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![code, created_by, now_millis(), expires_at, max_uses],
    )?;
    Ok(())
}

/// Note a change made outside the server, for a running server to act on.
pub(super) fn note_change(c: &Connection, username: &str) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO account_changes (username, at) VALUES (?1, ?2)",
        params![username, now_millis()],
    )?;
    Ok(())
}

impl Writer {
    pub(super) fn account(&mut self, op: AccountOp) -> Result<AccountReply, StoreError> {
        let c = &self.conn;
        match op {
            AccountOp::Register {
                username,
                password_hash,
                invite,
                policy,
            } => {
                if exists(c, &username)? {
                    return Err(rejected(ErrorCode::UsernameTaken, "that username is taken"));
                }
                let first: bool =
                    c.query_row("SELECT NOT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?;
                policy.admits(first, invite.as_deref())?;
                // The server's first account needs no invitation and runs it.
                let role = if first { Role::Admin } else { Role::Member };
                if let (false, Registration::Invite, Some(code)) = (first, policy, &invite) {
                    use_invite(c, code, &username)?;
                }
                insert_user(c, &username, &password_hash, role)?;
                self.added_user(username);
                Ok(AccountReply::Role(role))
            }
            AccountOp::CreateUser {
                username,
                password_hash,
                role,
            } => {
                if exists(c, &username)? {
                    return Err(rejected(ErrorCode::UsernameTaken, "that username is taken"));
                }
                insert_user(c, &username, &password_hash, role)?;
                self.added_user(username);
                Ok(AccountReply::Role(role))
            }
            AccountOp::CreateSession {
                username,
                token_hash,
                device,
                address,
                max_per_user,
            } => {
                let (role, active) = standing(c, &username)?;
                if !active {
                    return Err(rejected(
                        ErrorCode::AccountDisabled,
                        "this account is deactivated; ask an admin",
                    ));
                }
                let id = session_id();
                let now = now_millis();
                c.execute(
                    "INSERT INTO sessions (token_hash, username, device, created_at, id, last_seen_at, last_address)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
                    params![token_hash, username, device, now, id, address],
                )?;
                // The oldest sessions beyond the cap end.
                let ended: Vec<String> = c
                    .prepare_cached(
                        "SELECT token_hash FROM sessions WHERE username = ?1
                         ORDER BY last_seen_at DESC, created_at DESC LIMIT -1 OFFSET ?2",
                    )?
                    .query_map(params![username, max_per_user.max(1) as i64], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                for h in &ended {
                    c.execute("DELETE FROM sessions WHERE token_hash = ?1", [h])?;
                }
                Ok(AccountReply::Session { id, role, ended })
            }
            AccountOp::UseSession {
                token_hash,
                address,
                life,
            } => {
                let row: Option<(String, Millis, Millis, String, bool, bool)> = c
                    .prepare_cached(
                        "SELECT s.username, s.created_at, s.last_seen_at, u.role, u.deactivated_at IS NULL,
                                u.kind = 'bot'
                         FROM sessions s JOIN users u ON u.username = s.username
                         WHERE s.token_hash = ?1",
                    )?
                    .query_row([&token_hash], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                    })
                    .optional()?;
                let Some((username, created, last_seen, role, active, bot)) = row else {
                    return Ok(AccountReply::Used(SessionUse::Unknown));
                };
                let now = now_millis();
                // A bot's token lasts until an admin replaces it.
                if !bot && life.expires_at(created, last_seen) <= now {
                    c.execute("DELETE FROM sessions WHERE token_hash = ?1", [&token_hash])?;
                    return Ok(AccountReply::Used(SessionUse::Expired));
                }
                if !active {
                    return Ok(AccountReply::Used(SessionUse::Disabled));
                }
                c.prepare_cached(
                    "UPDATE sessions SET last_seen_at = ?2, last_address = COALESCE(?3, last_address)
                     WHERE token_hash = ?1",
                )?
                .execute(params![token_hash, now, address])?;
                Ok(AccountReply::Used(SessionUse::Live {
                    username,
                    role: role_of(&role),
                }))
            }
            AccountOp::TouchSession {
                token_hash,
                address,
            } => {
                // Only a last use over an hour old is worth a write.
                c.prepare_cached(
                    "UPDATE sessions SET last_seen_at = ?2, last_address = COALESCE(?3, last_address)
                     WHERE token_hash = ?1 AND last_seen_at < ?2 - 3600000",
                )?
                .execute(params![token_hash, now_millis(), address])?;
                Ok(AccountReply::Done)
            }
            AccountOp::RevokeSessions { username, which } => {
                Ok(AccountReply::Revoked(revoke(c, &username, &which)?))
            }
            AccountOp::SetPassword {
                username,
                password_hash,
                keep,
            } => Ok(AccountReply::Revoked(set_password(
                c,
                &username,
                &password_hash,
                keep.as_deref(),
            )?)),
            AccountOp::SetActive { username, active } => {
                Ok(AccountReply::Revoked(set_active(c, &username, active)?))
            }
            AccountOp::SetRole { username, role } => {
                set_role(c, &username, role)?;
                Ok(AccountReply::Done)
            }
            AccountOp::CreateInvite {
                code,
                created_by,
                max_uses,
                expires_at,
                max_per_user,
            } => {
                let held: i64 = c.query_row(
                    "SELECT COUNT(*) FROM invites i WHERE created_by = ?1 AND revoked = 0
                     AND (expires_at IS NULL OR expires_at > ?2)
                     AND (SELECT COUNT(*) FROM invite_uses u WHERE u.code = i.code) < max_uses",
                    params![created_by, now_millis()],
                    |r| r.get(0),
                )?;
                if held >= max_per_user as i64 {
                    return Err(rejected(
                        ErrorCode::TooLarge,
                        format!("you hold {held} open invitations; revoke some first"),
                    ));
                }
                create_invite(c, &code, &created_by, max_uses, expires_at)?;
                Ok(AccountReply::Done)
            }
            AccountOp::Erase { username } => self.erase(&username),
            AccountOp::Bot(op) => self.bot(op),
            AccountOp::RecordUpload {
                username,
                digest,
                size,
                quota,
            } => self.record_upload(&username, &digest, size, quota),
            AccountOp::CollectUploads { before } => self.collect_uploads(before),
            AccountOp::Block {
                blocker,
                blocked,
                on,
            } => {
                self.block(&blocker, &blocked, on)?;
                Ok(AccountReply::Done)
            }
            AccountOp::RevokeInvite { code, by, admin } => {
                let owner: Option<String> = c
                    .prepare_cached("SELECT created_by FROM invites WHERE code = ?1")?
                    .query_row([&code], |r| r.get(0))
                    .optional()?;
                match owner {
                    None => Err(rejected(ErrorCode::NotFound, "no such invitation")),
                    Some(o) if o != by && !admin => Err(rejected(
                        ErrorCode::Forbidden,
                        "only its creator or an admin may revoke an invitation",
                    )),
                    Some(_) => {
                        c.execute("UPDATE invites SET revoked = 1 WHERE code = ?1", [&code])?;
                        Ok(AccountReply::Done)
                    }
                }
            }
        }
    }

    fn erase(&mut self, username: &str) -> Result<AccountReply, StoreError> {
        let revoked = set_active(&self.conn, username, false)?;
        self.conn.execute(
            "UPDATE users SET password_hash = '!', role = 'member' WHERE username = ?1",
            [username],
        )?;
        // Every message not deleted yet gets a deletion, so that clients
        // drop the text from their caches as they catch up.
        let live: Vec<(String, u64)> = self
            .conn
            .prepare(
                "SELECT conversation_id, seq FROM events e
                 WHERE sender = ?1 AND client_msg_id IS NOT NULL AND kind IN ('message', 'file')
                   AND NOT EXISTS (SELECT 1 FROM events d
                                   WHERE d.conversation_id = e.conversation_id
                                     AND d.target_seq = e.seq AND d.kind = 'delete')
                 ORDER BY conversation_id, seq",
            )?
            .query_map([username], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?
            .collect::<Result<_, _>>()?;
        for (conv, seq) in live {
            if self.mirror.convs.contains_key(&conv) {
                self.write_event(
                    username,
                    &conv,
                    None,
                    crate::proto::EventBody::Delete { target_seq: seq },
                )?;
            }
        }
        self.conn.execute(
            "UPDATE events SET data = json_set(data, '$.body', '')
             WHERE sender = ?1 AND kind IN ('message', 'edit')",
            [username],
        )?;
        // A secret conversation's ciphertext goes too.
        self.conn.execute(
            "UPDATE events SET data = json_set(data, '$.encrypted.ciphertext', '')
             WHERE sender = ?1 AND json_type(data, '$.encrypted') = 'object'",
            [username],
        )?;
        self.conn.execute(
            "UPDATE events SET data = json_remove(json_set(data, '$.file.name', 'file'),
                                                  '$.caption', '$.file.preview')
             WHERE sender = ?1 AND kind = 'file'",
            [username],
        )?;
        Ok(AccountReply::Revoked(revoked))
    }

    pub(super) fn added_user(&mut self, username: String) {
        self.mirror.users.insert(username.clone());
        self.changes.push(Committed::User(username));
    }
}

/// Accounts matching `filter` (SQL over the users table), by name, after
/// `after`, at most `limit`.
pub(super) fn account_page(
    c: &Connection,
    filter: &str,
    after: Option<String>,
    limit: u32,
) -> Result<Vec<Account>, StoreError> {
    Ok(c.prepare_cached(&format!(
        "{ACCOUNT} WHERE ({filter}) AND (?1 IS NULL OR username > ?1)
         ORDER BY username LIMIT ?2"
    ))?
    .query_map(params![after, limit], account_row)?
    .collect::<Result<_, _>>()?)
}

pub(super) fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        username: r.get(0)?,
        role: role_of(&r.get::<_, String>(1)?),
        active: r.get(2)?,
        created_at: r.get(3)?,
        last_seen: r.get(4)?,
        online: false,
        bot: r.get::<_, String>(5)? != "person",
    })
}

pub(super) const ACCOUNT: &str = "SELECT username, role, deactivated_at IS NULL, created_at,
     (SELECT MAX(last_seen_at) FROM sessions s WHERE s.username = users.username), kind
     FROM users";

impl Readers {
    /// Whether the server has no account yet (the first registers freely).
    pub async fn no_accounts(&self) -> Result<bool, StoreError> {
        self.with(|c| Ok(c.query_row("SELECT NOT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?))
            .await
    }

    /// An account, if it exists.
    pub async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        let username = username.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(&format!("{ACCOUNT} WHERE username = ?1"))?
                .query_row([username], account_row)
                .optional()?)
        })
        .await
    }

    /// Accounts by name, after `after`, at most `limit` (`online` left
    /// false for the caller to fill).
    pub async fn accounts(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Account>, StoreError> {
        self.with(move |c| account_page(c, "TRUE", after, limit))
            .await
    }

    /// The sessions of `username`, most recently used first.
    pub async fn sessions(&self, username: &str) -> Result<Vec<SessionRow>, StoreError> {
        let username = username.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, token_hash, device, created_at, last_seen_at, last_address
                 FROM sessions WHERE username = ?1 ORDER BY last_seen_at DESC, created_at DESC",
            )?
            .query_map([username], |r| {
                Ok(SessionRow {
                    id: r.get(0)?,
                    token_hash: r.get(1)?,
                    device: r.get(2)?,
                    created_at: r.get(3)?,
                    last_seen: r.get(4)?,
                    last_address: r.get(5)?,
                })
            })?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Invitations, newest first: all, or those `creator` made.
    /// Invitations, newest first (those of `creator`, or all), after the
    /// invitation `after`, at most `limit`.
    pub async fn invites(
        &self,
        creator: Option<String>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Invite>, StoreError> {
        self.with(move |c| invites(c, creator.as_deref(), after.as_deref(), limit))
            .await
    }

    /// The users `blocker` blocks, by name.
    pub async fn blocks(&self, blocker: &str) -> Result<Vec<String>, StoreError> {
        let blocker = blocker.to_string();
        self.with(move |c| {
            Ok(c.prepare_cached(
                "SELECT blocked FROM blocks WHERE blocker = ?1 ORDER BY blocked LIMIT 10000",
            )?
            .query_map([blocker], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Changes noted by `chatd admin` after `after`: `(id, username)`.
    pub async fn account_changes(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        self.with(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, username FROM account_changes WHERE id > ?1 ORDER BY id LIMIT 1000",
            )?
            .query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?)
        })
        .await
    }

    /// The id of the last change noted by `chatd admin` (0: none).
    pub async fn last_account_change(&self) -> Result<i64, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(MAX(id), 0) FROM account_changes",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }
}

/// Invitations with who used them, newest first.
pub(super) fn invites(
    c: &Connection,
    creator: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Invite>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT code, created_by, created_at, expires_at, max_uses, revoked FROM invites
         WHERE (?1 IS NULL OR created_by = ?1)
           AND (?2 IS NULL OR (created_at, code) <
                (SELECT created_at, code FROM invites WHERE code = ?2))
         ORDER BY created_at DESC, code DESC LIMIT ?3",
    )?;
    let mut out: Vec<Invite> = stmt
        .query_map(params![creator, after, limit], |r| {
            Ok(Invite {
                code: r.get(0)?,
                created_by: r.get(1)?,
                created_at: r.get(2)?,
                expires_at: r.get(3)?,
                max_uses: r.get(4)?,
                used_by: Vec::new(),
                revoked: r.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut uses =
        c.prepare_cached("SELECT username FROM invite_uses WHERE code = ?1 ORDER BY used_at")?;
    for invite in &mut out {
        invite.used_by = uses
            .query_map([&invite.code], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
    }
    Ok(out)
}

/// Account changes made with the server's database file directly, for
/// `chatd admin` on the server host. Each runs in one transaction and is
/// noted in `account_changes`, which a running chatd polls to disconnect
/// what the change ends.
pub mod offline {
    use super::*;
    use std::path::Path;

    /// Open the database of `data_dir` for writing, migrating it if needed.
    pub fn open(data_dir: &Path) -> Result<Connection, StoreError> {
        let path = super::super::db_path(data_dir);
        super::super::private_files(data_dir, &path)?;
        let mut c = Connection::open(path)?;
        super::super::tune(&c)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        super::super::schema::migrate(&mut c)?;
        Ok(c)
    }

    /// Create an account, or (`replace`) give an existing one this
    /// password and role, ending its sessions.
    pub fn put_user(
        c: &mut Connection,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> Result<bool, StoreError> {
        let tx = c.transaction()?;
        let existed = exists(&tx, username)?;
        if existed {
            set_password(&tx, username, password_hash, None)?;
            tx.execute(
                "UPDATE users SET role = ?2, deactivated_at = NULL WHERE username = ?1",
                params![username, role.as_str()],
            )?;
        } else {
            insert_user(&tx, username, password_hash, role)?;
        }
        note_change(&tx, username)?;
        tx.commit()?;
        Ok(existed)
    }

    /// Set the password of an existing account, ending its sessions.
    pub fn reset_password(
        c: &mut Connection,
        username: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let tx = c.transaction()?;
        set_password(&tx, username, password_hash, None)?;
        note_change(&tx, username)?;
        tx.commit()?;
        Ok(())
    }

    /// Create an invitation made by `created_by` (any name; the operator).
    pub fn create_invite(
        c: &mut Connection,
        code: &str,
        created_by: &str,
        max_uses: u32,
        expires_at: Option<Millis>,
    ) -> Result<(), StoreError> {
        super::create_invite(c, code, created_by, max_uses, expires_at)
    }

    /// Invitations, newest first.
    pub fn invites(c: &Connection) -> Result<Vec<Invite>, StoreError> {
        super::invites(c, None, None, u32::MAX)
    }
}
