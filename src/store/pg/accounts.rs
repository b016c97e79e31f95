//! Accounts on PostgreSQL: registration under the server's policy, roles
//! and deactivation, device sessions and invitations, each change in the
//! transaction the store opened for it (serializable: two nodes checking
//! "is this the last admin?" at once cannot both act on the same answer),
//! and the lookups of [`PgReaders`].

use super::db::{exec, get, one, opt, rows};
use super::{PgReaders, W, rejected};
use crate::proto::{Account, ErrorCode, Invite, Millis, Role, now_millis};
use crate::store::log::{
    AccountOp, AccountReply, Committed, Registration, Revoke, SessionRow, SessionUse, StoreError,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

fn role_of(s: &str) -> Role {
    Role::parse(s).unwrap_or_default()
}

/// A new public session id.
pub(super) fn session_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Whether an account exists.
pub(super) async fn exists(c: &impl GenericClient, username: &str) -> Result<bool, StoreError> {
    Ok(
        opt(c, "SELECT 1 FROM users WHERE username = $1", &[&username])
            .await?
            .is_some(),
    )
}

pub(super) async fn insert_user(
    c: &impl GenericClient,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO users (username, password_hash, created_at, role) VALUES ($1, $2, $3, $4)",
        &[&username, &password_hash, &now_millis(), &role.as_str()],
    )
    .await?;
    Ok(())
}

/// Record a use of invitation `code` by `username`, if it is still good.
async fn use_invite(c: &impl GenericClient, code: &str, username: &str) -> Result<(), StoreError> {
    let invalid = |why: &str| rejected(ErrorCode::InviteInvalid, why);
    let Some(row) = opt(
        c,
        "SELECT expires_at, max_uses, revoked,
                (SELECT COUNT(*) FROM invite_uses u WHERE u.code = i.code)
         FROM invites i WHERE code = $1",
        &[&code],
    )
    .await?
    else {
        return Err(invalid("no such invitation"));
    };
    let (expires, max_uses, revoked, used): (Option<Millis>, i64, bool, i64) =
        (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?, get(&row, 3)?);
    if revoked {
        return Err(invalid("that invitation was revoked"));
    }
    if expires.is_some_and(|e| e <= now_millis()) {
        return Err(invalid("that invitation has expired"));
    }
    if used >= max_uses {
        return Err(invalid("that invitation has been used up"));
    }
    exec(
        c,
        "INSERT INTO invite_uses (code, username, used_at) VALUES ($1, $2, $3)",
        &[&code, &username, &now_millis()],
    )
    .await?;
    Ok(())
}

/// End sessions of `username`; returns their token hashes.
pub(super) async fn revoke(
    c: &impl GenericClient,
    username: &str,
    which: &Revoke,
) -> Result<Vec<String>, StoreError> {
    let found = match which {
        Revoke::Token(t) => {
            rows(
                c,
                "DELETE FROM sessions WHERE username = $1 AND token_hash = $2 RETURNING token_hash",
                &[&username, t],
            )
            .await?
        }
        Revoke::Id(id) => {
            rows(
                c,
                "DELETE FROM sessions WHERE username = $1 AND id = $2 RETURNING token_hash",
                &[&username, id],
            )
            .await?
        }
        Revoke::AllBut(t) => rows(
            c,
            "DELETE FROM sessions WHERE username = $1 AND token_hash <> $2 RETURNING token_hash",
            &[&username, t],
        )
        .await?,
        Revoke::All => {
            rows(
                c,
                "DELETE FROM sessions WHERE username = $1 RETURNING token_hash",
                &[&username],
            )
            .await?
        }
    };
    found.iter().map(|r| get(r, 0)).collect()
}

/// Set a password; every session but `keep` ends.
pub(super) async fn set_password(
    c: &impl GenericClient,
    username: &str,
    password_hash: &str,
    keep: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let n = exec(
        c,
        "UPDATE users SET password_hash = $2 WHERE username = $1",
        &[&username, &password_hash],
    )
    .await?;
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
    revoke(c, username, &which).await
}

async fn active_admins(c: &impl GenericClient) -> Result<i64, StoreError> {
    let row = one(
        c,
        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND deactivated_at IS NULL",
        &[],
    )
    .await?;
    get(&row, 0)
}

/// `(role, active)` of an account, or `not_found`.
async fn standing(c: &impl GenericClient, username: &str) -> Result<(Role, bool), StoreError> {
    let row = opt(
        c,
        "SELECT role, deactivated_at IS NULL FROM users WHERE username = $1",
        &[&username],
    )
    .await?
    .ok_or_else(|| rejected(ErrorCode::NotFound, format!("no user named {username}")))?;
    Ok((role_of(&get::<String>(&row, 0)?), get(&row, 1)?))
}

fn last_admin() -> StoreError {
    rejected(
        ErrorCode::Conflict,
        "that is the last active admin; promote another account first",
    )
}

/// Deactivate (ending every session) or reactivate an account. The last
/// active admin cannot be deactivated.
pub(super) async fn set_active(
    c: &impl GenericClient,
    username: &str,
    active: bool,
) -> Result<Vec<String>, StoreError> {
    let (role, was_active) = standing(c, username).await?;
    if active {
        exec(
            c,
            "UPDATE users SET deactivated_at = NULL WHERE username = $1",
            &[&username],
        )
        .await?;
        return Ok(Vec::new());
    }
    if role == Role::Admin && was_active && active_admins(c).await? <= 1 {
        return Err(last_admin());
    }
    exec(
        c,
        "UPDATE users SET deactivated_at = COALESCE(deactivated_at, $2) WHERE username = $1",
        &[&username, &now_millis()],
    )
    .await?;
    revoke(c, username, &Revoke::All).await
}

/// Promote or demote; the last active admin cannot be demoted.
async fn set_role(c: &impl GenericClient, username: &str, role: Role) -> Result<(), StoreError> {
    let (old, active) = standing(c, username).await?;
    if old == Role::Admin && role == Role::Member && active && active_admins(c).await? <= 1 {
        return Err(last_admin());
    }
    exec(
        c,
        "UPDATE users SET role = $2 WHERE username = $1",
        &[&username, &role.as_str()],
    )
    .await?;
    Ok(())
}

fn taken() -> StoreError {
    rejected(ErrorCode::UsernameTaken, "that username is taken")
}

/// Note that `username` was added, for the hub.
pub(super) fn added_user(w: &mut W<'_>, username: String) {
    w.changes.push(Committed::User(username));
}

/// Apply an account change inside the open transaction.
pub(super) async fn apply(w: &mut W<'_>, op: AccountOp) -> Result<AccountReply, StoreError> {
    let c = w.tx;
    match op {
        AccountOp::Register {
            username,
            password_hash,
            invite,
            policy,
        } => {
            if exists(c, &username).await? {
                return Err(taken());
            }
            let first: bool = get(
                &one(c, "SELECT NOT EXISTS (SELECT 1 FROM users)", &[]).await?,
                0,
            )?;
            policy.admits(first, invite.as_deref())?;
            // The server's first account needs no invitation and runs it.
            let role = if first { Role::Admin } else { Role::Member };
            if let (false, Registration::Invite, Some(code)) = (first, policy, &invite) {
                use_invite(c, code, &username).await?;
            }
            insert_user(c, &username, &password_hash, role).await?;
            added_user(w, username);
            Ok(AccountReply::Role(role))
        }
        AccountOp::CreateUser {
            username,
            password_hash,
            role,
        } => {
            if exists(c, &username).await? {
                return Err(taken());
            }
            insert_user(c, &username, &password_hash, role).await?;
            added_user(w, username);
            Ok(AccountReply::Role(role))
        }
        AccountOp::CreateSession {
            username,
            token_hash,
            device,
            address,
            max_per_user,
        } => {
            let (role, active) = standing(c, &username).await?;
            if !active {
                return Err(rejected(
                    ErrorCode::AccountDisabled,
                    "this account is deactivated; ask an admin",
                ));
            }
            let id = session_id();
            let now = now_millis();
            exec(
                c,
                "INSERT INTO sessions (token_hash, username, device, created_at, id, last_seen_at, last_address)
                 VALUES ($1, $2, $3, $4, $5, $4, $6)",
                &[&token_hash, &username, &device, &now, &id, &address],
            )
            .await?;
            // The oldest sessions beyond the cap end.
            let ended = rows(
                c,
                "SELECT token_hash FROM sessions WHERE username = $1
                 ORDER BY last_seen_at DESC, created_at DESC OFFSET $2",
                &[&username, &(max_per_user.max(1) as i64)],
            )
            .await?;
            let ended: Vec<String> = ended.iter().map(|r| get(r, 0)).collect::<Result<_, _>>()?;
            if !ended.is_empty() {
                exec(
                    c,
                    "DELETE FROM sessions WHERE token_hash = ANY($1)",
                    &[&ended],
                )
                .await?;
            }
            Ok(AccountReply::Session { id, role, ended })
        }
        AccountOp::UseSession {
            token_hash,
            address,
            life,
        } => {
            let Some(row) = opt(
                c,
                "SELECT s.username, s.created_at, s.last_seen_at, u.role,
                        u.deactivated_at IS NULL, u.kind = 'bot'
                 FROM sessions s JOIN users u ON u.username = s.username
                 WHERE s.token_hash = $1",
                &[&token_hash],
            )
            .await?
            else {
                return Ok(AccountReply::Used(SessionUse::Unknown));
            };
            let username: String = get(&row, 0)?;
            let (created, last_seen): (Millis, Millis) = (get(&row, 1)?, get(&row, 2)?);
            let role: String = get(&row, 3)?;
            let (active, bot): (bool, bool) = (get(&row, 4)?, get(&row, 5)?);
            let now = now_millis();
            // A bot's token lasts until an admin replaces it.
            if !bot && life.expires_at(created, last_seen) <= now {
                exec(
                    c,
                    "DELETE FROM sessions WHERE token_hash = $1",
                    &[&token_hash],
                )
                .await?;
                return Ok(AccountReply::Used(SessionUse::Expired));
            }
            if !active {
                return Ok(AccountReply::Used(SessionUse::Disabled));
            }
            exec(
                c,
                "UPDATE sessions SET last_seen_at = $2, last_address = COALESCE($3, last_address)
                 WHERE token_hash = $1",
                &[&token_hash, &now, &address],
            )
            .await?;
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
            exec(
                c,
                "UPDATE sessions SET last_seen_at = $2, last_address = COALESCE($3, last_address)
                 WHERE token_hash = $1 AND last_seen_at < $2::bigint - 3600000",
                &[&token_hash, &now_millis(), &address],
            )
            .await?;
            Ok(AccountReply::Done)
        }
        AccountOp::RevokeSessions { username, which } => {
            Ok(AccountReply::Revoked(revoke(c, &username, &which).await?))
        }
        AccountOp::SetPassword {
            username,
            password_hash,
            keep,
        } => Ok(AccountReply::Revoked(
            set_password(c, &username, &password_hash, keep.as_deref()).await?,
        )),
        AccountOp::SetActive { username, active } => Ok(AccountReply::Revoked(
            set_active(c, &username, active).await?,
        )),
        AccountOp::SetRole { username, role } => {
            set_role(c, &username, role).await?;
            Ok(AccountReply::Done)
        }
        AccountOp::CreateInvite {
            code,
            created_by,
            max_uses,
            expires_at,
            max_per_user,
        } => {
            let held: i64 = get(
                &one(
                    c,
                    "SELECT COUNT(*) FROM invites i WHERE created_by = $1 AND NOT revoked
                     AND (expires_at IS NULL OR expires_at > $2)
                     AND (SELECT COUNT(*) FROM invite_uses u WHERE u.code = i.code) < max_uses",
                    &[&created_by, &now_millis()],
                )
                .await?,
                0,
            )?;
            if held >= max_per_user as i64 {
                return Err(rejected(
                    ErrorCode::TooLarge,
                    format!("you hold {held} open invitations; revoke some first"),
                ));
            }
            create_invite(c, &code, &created_by, max_uses, expires_at).await?;
            Ok(AccountReply::Done)
        }
        AccountOp::RevokeInvite { code, by, admin } => {
            let owner = opt(
                c,
                "SELECT created_by FROM invites WHERE code = $1",
                &[&code],
            )
            .await?;
            match owner.map(|r| get::<String>(&r, 0)).transpose()? {
                None => Err(rejected(ErrorCode::NotFound, "no such invitation")),
                Some(o) if o != by && !admin => Err(rejected(
                    ErrorCode::Forbidden,
                    "only its creator or an admin may revoke an invitation",
                )),
                Some(_) => {
                    exec(
                        c,
                        "UPDATE invites SET revoked = true WHERE code = $1",
                        &[&code],
                    )
                    .await?;
                    Ok(AccountReply::Done)
                }
            }
        }
        AccountOp::Erase { username } => super::erase::erase(w, &username).await,
        AccountOp::RecordUpload {
            username,
            digest,
            size,
            quota,
        } => super::files::record_upload(c, &username, &digest, size, quota).await,
        AccountOp::CollectUploads { before } => super::files::collect_uploads(c, before).await,
        AccountOp::Block {
            blocker,
            blocked,
            on,
        } => {
            block(w, &blocker, &blocked, on).await?;
            Ok(AccountReply::Done)
        }
        AccountOp::Bot(op) => super::bots::apply(w, op).await,
    }
}

/// Store a new invitation.
pub(super) async fn create_invite(
    c: &impl GenericClient,
    code: &str,
    created_by: &str,
    max_uses: u32,
    expires_at: Option<Millis>,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO invites (code, created_by, created_at, expires_at, max_uses)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &code,
            &created_by,
            &now_millis(),
            &expires_at,
            &i64::from(max_uses),
        ],
    )
    .await?;
    Ok(())
}

/// `blocker` starts (`on`) or stops blocking `blocked`.
async fn block(w: &mut W<'_>, blocker: &str, blocked: &str, on: bool) -> Result<(), StoreError> {
    crate::store::rules::block(&mut super::facts::PgFacts::reading(w.tx), blocker, blocked).await?;
    if on {
        exec(
            w.tx,
            "INSERT INTO blocks (blocker, blocked, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&blocker, &blocked, &now_millis()],
        )
        .await?;
    } else {
        exec(
            w.tx,
            "DELETE FROM blocks WHERE blocker = $1 AND blocked = $2",
            &[&blocker, &blocked],
        )
        .await?;
    }
    w.changes.push(Committed::Block {
        blocker: blocker.to_string(),
        blocked: blocked.to_string(),
        on,
    });
    Ok(())
}

/// The columns an [`Account`] is read from (`account_row`).
pub(super) const ACCOUNT: &str = "SELECT username, role, deactivated_at IS NULL, created_at,
     (SELECT MAX(last_seen_at) FROM sessions s WHERE s.username = users.username), kind
     FROM users";

pub(super) fn account_row(r: &Row) -> Result<Account, StoreError> {
    Ok(Account {
        username: get(r, 0)?,
        role: role_of(&get::<String>(r, 1)?),
        active: get(r, 2)?,
        created_at: get(r, 3)?,
        last_seen: get(r, 4)?,
        online: false,
        bot: get::<String>(r, 5)? != "person",
    })
}

/// Accounts of `kind` (any when `None`), by name, after `after`, at most
/// `limit`.
pub(super) async fn account_page(
    c: &impl GenericClient,
    kind: Option<&str>,
    after: Option<String>,
    limit: u32,
) -> Result<Vec<Account>, StoreError> {
    let found = rows(
        c,
        &format!(
            "{ACCOUNT} WHERE ($1::text IS NULL OR kind = $1)
             AND ($2::text IS NULL OR username > $2)
             ORDER BY username LIMIT $3"
        ),
        &[&kind, &after, &i64::from(limit)],
    )
    .await?;
    found.iter().map(account_row).collect()
}

/// Invitations with who used them, newest first.
pub(super) async fn invites(
    c: &impl GenericClient,
    creator: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Invite>, StoreError> {
    let found = rows(
        c,
        "SELECT code, created_by, created_at, expires_at, max_uses, revoked,
                ARRAY(SELECT username FROM invite_uses u WHERE u.code = i.code
                      ORDER BY used_at, username)
         FROM invites i
         WHERE ($1::text IS NULL OR created_by = $1)
           AND ($2::text IS NULL OR (created_at, code) <
                (SELECT created_at, code FROM invites WHERE code = $2))
         ORDER BY created_at DESC, code DESC LIMIT $3",
        &[&creator, &after, &i64::from(limit)],
    )
    .await?;
    found
        .iter()
        .map(|r| {
            Ok(Invite {
                code: get(r, 0)?,
                created_by: get(r, 1)?,
                created_at: get(r, 2)?,
                expires_at: get(r, 3)?,
                max_uses: u32::try_from(get::<i64>(r, 4)?).unwrap_or(u32::MAX),
                revoked: get(r, 5)?,
                used_by: get(r, 6)?,
            })
        })
        .collect()
}

impl PgReaders {
    /// Whether the server has no account yet (the first registers freely).
    pub async fn no_accounts(&self) -> Result<bool, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                get(
                    &one(&c, "SELECT NOT EXISTS (SELECT 1 FROM users)", &[]).await?,
                    0,
                )
            })
            .await
    }

    /// An account, if it exists.
    pub async fn account(&self, username: &str) -> Result<Option<Account>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let row = opt(&c, &format!("{ACCOUNT} WHERE username = $1"), &[&username]).await?;
                row.as_ref().map(account_row).transpose()
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
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                account_page(&c, None, after, limit).await
            })
            .await
    }

    /// The sessions of `username`, most recently used first.
    pub async fn sessions(&self, username: &str) -> Result<Vec<SessionRow>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let found = rows(
                    &c,
                    "SELECT id, token_hash, device, created_at, last_seen_at, last_address
                     FROM sessions WHERE username = $1
                     ORDER BY last_seen_at DESC, created_at DESC",
                    &[&username],
                )
                .await?;
                found
                    .iter()
                    .map(|r| {
                        Ok(SessionRow {
                            id: get(r, 0)?,
                            token_hash: get(r, 1)?,
                            device: get(r, 2)?,
                            created_at: get(r, 3)?,
                            last_seen: get(r, 4)?,
                            last_address: get(r, 5)?,
                        })
                    })
                    .collect()
            })
            .await
    }

    /// Invitations, newest first (those of `creator`, or all), after the
    /// invitation `after`, at most `limit`.
    pub async fn invites(
        &self,
        creator: Option<String>,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<Invite>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                invites(&c, creator.as_deref(), after.as_deref(), limit).await
            })
            .await
    }

    /// The users `blocker` blocks, by name.
    pub async fn blocks(&self, blocker: &str) -> Result<Vec<String>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let found = rows(
                    &c,
                    "SELECT blocked FROM blocks WHERE blocker = $1 ORDER BY blocked LIMIT 10000",
                    &[&blocker],
                )
                .await?;
                found.iter().map(|r| get(r, 0)).collect()
            })
            .await
    }

    /// Changes noted by `chatd admin` after `after`: `(id, username)`.
    pub async fn account_changes(&self, after: i64) -> Result<Vec<(i64, String)>, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                let found = rows(
                    &c,
                    "SELECT id, username FROM account_changes WHERE id > $1 ORDER BY id LIMIT 1000",
                    &[&after],
                )
                .await?;
                found.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
            })
            .await
    }

    /// The id of the last change noted by `chatd admin` (0: none).
    pub async fn last_account_change(&self) -> Result<i64, StoreError> {
        self.db
            .bounded(async {
                let c = self.db.client().await?;
                get(
                    &one(
                        &c,
                        "SELECT COALESCE(MAX(id), 0)::bigint FROM account_changes",
                        &[],
                    )
                    .await?,
                    0,
                )
            })
            .await
    }
}
