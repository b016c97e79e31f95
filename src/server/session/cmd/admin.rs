//! Server administration: accounts (`admin_*`, admins only) and
//! invitations (`invite_*`: admins, and members where the server allows
//! it). The caller's role is read from the store on every request, so a
//! demotion takes effect at once.

use super::super::{Outcome, Session};
use crate::proto::{
    Account, AccountOk, Invite, InviteOk, ProtoError, Role, encode_ok, encode_ok_empty, now_millis,
};
use crate::server::queue::Ended;
use crate::server::validate;
use crate::store::log::{AccountOp, AccountReply};

/// Longest an invitation may stay valid: a year.
const MAX_INVITE_SECS: u64 = 365 * 24 * 3600;

/// A page of accounts as sent.
#[derive(serde::Serialize)]
pub(super) struct Page {
    pub(super) users: Vec<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) next: Option<String>,
}

impl Session {
    /// The caller's account, which must be active.
    pub(super) async fn caller(&self, user: &str) -> Result<Account, ProtoError> {
        self.account_of(user)
            .await?
            .filter(|a| a.active)
            .ok_or_else(|| ProtoError::forbidden("your account is not active"))
    }

    pub(super) async fn account_of(&self, user: &str) -> Result<Option<Account>, ProtoError> {
        let mut account = self
            .shared
            .store
            .readers()
            .account(user)
            .await
            .map_err(|e| e.to_proto())?;
        if let Some(a) = &mut account {
            a.online = self.shared.hub.is_online(&a.username);
        }
        Ok(account)
    }

    pub(super) async fn require_admin(&self, user: &str) -> Result<(), ProtoError> {
        match self.caller(user).await?.role {
            Role::Admin => Ok(()),
            Role::Member => Err(ProtoError::forbidden("only an admin may do that")),
        }
    }

    /// Answer with `username`'s account as it is now.
    pub(super) async fn account_reply(
        &self,
        rid: u64,
        username: &str,
    ) -> Result<Outcome, ProtoError> {
        let user = self
            .account_of(username)
            .await?
            .ok_or_else(|| ProtoError::not_found(format!("no user named {username}")))?;
        Ok(Outcome::Reply(encode_ok(rid, &AccountOk { user })))
    }

    /// A page of the accounts, by name.
    pub(super) async fn admin_users(
        &self,
        rid: u64,
        user: &str,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        let limits = &self.shared.limits;
        let size = super::page_size(limit, limits.list_page_cap);
        let mut users = self
            .shared
            .store
            .readers()
            .accounts(after, size as u32 + 1)
            .await
            .map_err(|e| e.to_proto())?;
        for u in &mut users {
            u.online = self.shared.hub.is_online(&u.username);
        }
        let (encoded, next) = super::page_of(users, size, limits, |u| u.username.clone())?;
        Ok(Outcome::Reply(encode_ok(
            rid,
            &Page {
                users: encoded,
                next,
            },
        )))
    }

    pub(super) async fn admin_create_user(
        &self,
        rid: u64,
        user: &str,
        username: String,
        password: String,
        role: Option<Role>,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        self.check_name_free(&username).await?;
        validate::password(&password, &self.shared.limits)?;
        let hash = self.hash_password(password).await?;
        let role = role.unwrap_or_default();
        self.account_change(AccountOp::CreateUser {
            username: username.clone(),
            password_hash: hash,
            role,
        })
        .await?;
        tracing::info!(admin = %user, user = %username, role = role.as_str(), "account created");
        self.account_reply(rid, &username).await
    }

    pub(super) async fn admin_reset_password(
        &self,
        rid: u64,
        user: &str,
        username: String,
        password: String,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        if self.account_of(&username).await?.is_some_and(|a| a.bot) {
            return Err(ProtoError::invalid(format!(
                "{username} is a bot and has no password; `chat admin bot token {username}` gives it a new token"
            )));
        }
        validate::password(&password, &self.shared.limits)?;
        if self.stored_hash(&username).await?.is_none() {
            return Err(ProtoError::not_found(format!("no user named {username}")));
        }
        let hash = self.hash_password(password).await?;
        let op = AccountOp::SetPassword {
            username: username.clone(),
            password_hash: hash,
            keep: None,
        };
        let revoked = self
            .end_sessions(&username, op, Ended::PasswordChanged)
            .await?;
        tracing::info!(admin = %user, user = %username, revoked, "password reset");
        self.account_reply(rid, &username).await
    }

    pub(super) async fn admin_set_active(
        &self,
        rid: u64,
        user: &str,
        username: String,
        active: bool,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        let op = AccountOp::SetActive {
            username: username.clone(),
            active,
        };
        if active {
            self.account_change(op).await?;
        } else {
            self.cut_off(&username, op).await?;
        }
        tracing::info!(admin = %user, user = %username, active, "account state changed");
        self.account_reply(rid, &username).await
    }

    pub(super) async fn admin_set_role(
        &self,
        rid: u64,
        user: &str,
        username: String,
        role: Role,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        self.account_change(AccountOp::SetRole {
            username: username.clone(),
            role,
        })
        .await?;
        tracing::info!(admin = %user, user = %username, role = role.as_str(), "role changed");
        self.account_reply(rid, &username).await
    }

    pub(super) async fn admin_erase(
        &self,
        rid: u64,
        user: &str,
        username: String,
    ) -> Result<Outcome, ProtoError> {
        self.require_admin(user).await?;
        if username == user {
            return Err(ProtoError::invalid(
                "you cannot erase your own account; ask another admin",
            ));
        }
        let op = AccountOp::Erase {
            username: username.clone(),
        };
        self.cut_off(&username, op).await?;
        tracing::info!(admin = %user, user = %username, "account erased");
        self.account_reply(rid, &username).await
    }

    /// Apply `op`, which deactivates `username`, and close every
    /// connection of theirs: those of the sessions it ended, and any
    /// between login and their session row.
    async fn cut_off(&self, username: &str, op: AccountOp) -> Result<(), ProtoError> {
        self.end_sessions(username, op, Ended::Deactivated).await?;
        self.shared
            .hub
            .end_sessions(username, None, Ended::Deactivated);
        Ok(())
    }

    /// May `user` create invitations? Returns whether they are an admin.
    async fn may_invite(&self, user: &str) -> Result<bool, ProtoError> {
        let admin = self.caller(user).await?.role == Role::Admin;
        if !admin && !self.shared.accounts.members_invite {
            return Err(ProtoError::forbidden(
                "only an admin may invite people to this server",
            ));
        }
        Ok(admin)
    }

    pub(super) async fn invite_create(
        &self,
        rid: u64,
        user: &str,
        uses: Option<u32>,
        expires_in_secs: Option<u64>,
    ) -> Result<Outcome, ProtoError> {
        self.may_invite(user).await?;
        let limits = &self.shared.limits;
        let max_uses = uses.unwrap_or(1);
        if max_uses == 0 || max_uses > limits.max_invite_uses {
            return Err(ProtoError::invalid(format!(
                "uses must be 1 to {}",
                limits.max_invite_uses
            )));
        }
        if expires_in_secs.is_some_and(|s| s == 0 || s > MAX_INVITE_SECS) {
            return Err(ProtoError::invalid(
                "an invitation expires after a second to a year",
            ));
        }
        let now = now_millis();
        let invite = Invite {
            code: new_invite_code(),
            created_by: user.to_string(),
            created_at: now,
            expires_at: expires_in_secs.map(|s| now + s as i64 * 1000),
            max_uses,
            used_by: Vec::new(),
            revoked: false,
        };
        self.account_change(AccountOp::CreateInvite {
            code: invite.code.clone(),
            created_by: invite.created_by.clone(),
            max_uses,
            expires_at: invite.expires_at,
            max_per_user: limits.max_invites_per_user,
        })
        .await?;
        tracing::info!(user = %user, max_uses, "invitation created");
        Ok(Outcome::Reply(encode_ok(rid, &InviteOk { invite })))
    }

    /// A page of the invitations, newest first.
    pub(super) async fn invite_list(
        &self,
        rid: u64,
        user: &str,
        after: Option<String>,
    ) -> Result<Outcome, ProtoError> {
        const PAGE: u32 = 100;
        let account = self.caller(user).await?;
        let creator = (account.role != Role::Admin).then(|| user.to_string());
        let invites = self
            .shared
            .store
            .readers()
            .invites(creator, after, PAGE + 1)
            .await
            .map_err(|e| e.to_proto())?;
        let (encoded, next) = super::page_of(invites, PAGE as usize, &self.shared.limits, |i| {
            i.code.clone()
        })?;
        #[derive(serde::Serialize)]
        struct InvitesPage {
            invites: Vec<Box<serde_json::value::RawValue>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            next: Option<String>,
        }
        Ok(Outcome::Reply(encode_ok(
            rid,
            &InvitesPage {
                invites: encoded,
                next,
            },
        )))
    }

    pub(super) async fn invite_revoke(
        &self,
        rid: u64,
        user: &str,
        code: String,
    ) -> Result<Outcome, ProtoError> {
        let admin = self.caller(user).await?.role == Role::Admin;
        let reply = self
            .account_change(AccountOp::RevokeInvite {
                code,
                by: user.to_string(),
                admin,
            })
            .await?;
        debug_assert_eq!(reply, AccountReply::Done);
        Ok(Outcome::Reply(encode_ok_empty(rid)))
    }
}

/// A new invitation code: 20 random bytes, hex (unguessable, and easy to
/// paste).
pub fn new_invite_code() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
