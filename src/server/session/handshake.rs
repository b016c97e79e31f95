//! The handshake: the first request must be `register`, `login` or `auth`.
//! Success joins the hub (so pushes start flowing) and answers with the
//! user, the protocol version and, for a new device session, its token;
//! too many failures close the connection.

use super::throttled::Attempt;
use super::{Outcome, Session, close, error};
use crate::proto::{AuthOk, ErrorCode, PROTOCOL_VERSION, ProtoError, Request, Role, encode_ok};
use crate::server::auth::{new_token, token_digest};
use crate::server::hub::Registration;
use crate::server::queue::Ended;
use crate::server::validate;
use crate::store::log::{AccountOp, AccountReply, SessionUse};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl Session {
    pub(super) async fn handshake(&mut self, id: Option<u64>, req: Request) -> Outcome {
        let result = match req {
            Request::Register {
                username,
                password,
                device,
                invite,
            } => match self.admit(Attempt::Register, &username).await {
                Ok(admitted) => {
                    let result = self.register(username, password, device, invite).await;
                    self.settle(admitted, &result);
                    result
                }
                Err(e) => Err(e),
            },
            Request::Login {
                username,
                password,
                device,
            } => match self.admit(Attempt::Login, &username).await {
                Ok(admitted) => {
                    let result = self.login(username, password, device).await;
                    self.settle(admitted, &result);
                    result
                }
                Err(e) => Err(e),
            },
            Request::Auth { token } => self.auth(token).await,
            _ => Err(ProtoError::new(
                ErrorCode::Unauthenticated,
                "authenticate first: register, login or auth",
            )),
        };
        match result {
            Ok(ok) => Outcome::Reply(encode_ok(id.unwrap_or(0), &ok)),
            Err(e) => {
                // Refusals count too, so that a throttled peer cannot keep
                // one connection busy with them.
                if matches!(e.code, ErrorCode::AuthFailed | ErrorCode::RateLimited) {
                    self.auth_failures += 1;
                    if self.auth_failures >= self.shared.limits.max_auth_failures {
                        return Outcome::Close(
                            error(id, &e),
                            close(CloseCode::Policy, "too many failed attempts"),
                        );
                    }
                }
                Outcome::Reply(error(id, &e))
            }
        }
    }

    async fn register(
        &mut self,
        username: String,
        password: String,
        device: Option<String>,
        invite: Option<String>,
    ) -> Result<AuthOk, ProtoError> {
        validate::username(&username)?;
        let device = validate::device(device, &self.shared.limits)?;
        self.check_name_free(&username).await?;
        self.admissible(invite.as_deref()).await?;
        validate::password(&password, &self.shared.limits)?;
        let hash = self.hash_password(password).await?;
        let reply = self
            .account_change(AccountOp::Register {
                username: username.clone(),
                password_hash: hash,
                invite,
                policy: self.shared.accounts.registration,
            })
            .await?;
        let role = match reply {
            AccountReply::Role(r) => r,
            _ => Role::Member,
        };
        tracing::info!(user = %username, role = role.as_str(), "registered");
        self.new_session(username, device).await
    }

    /// Refuse a registration the policy cannot allow before hashing its
    /// password (the writer checks again, and checks the invitation).
    async fn admissible(&self, invite: Option<&str>) -> Result<(), ProtoError> {
        let policy = self.shared.accounts.registration;
        if policy.admits(false, invite).is_ok() {
            return Ok(());
        }
        // Refused unless this is the server's first account.
        let empty = self
            .shared
            .store
            .readers()
            .no_accounts()
            .await
            .map_err(|e| e.to_proto())?;
        policy.admits(empty, invite)
    }

    /// The password hash of `username`, if the account exists.
    pub(super) async fn stored_hash(&self, username: &str) -> Result<Option<String>, ProtoError> {
        self.shared
            .store
            .readers()
            .password_hash(username)
            .await
            .map_err(|e| e.to_proto())
    }

    async fn login(
        &mut self,
        username: String,
        password: String,
        device: Option<String>,
    ) -> Result<AuthOk, ProtoError> {
        let device = validate::device(device, &self.shared.limits)?;
        let failed = || ProtoError::new(ErrorCode::AuthFailed, "wrong username or password");
        if password.len() > self.shared.limits.max_password_bytes {
            return Err(failed());
        }
        let stored = self.stored_hash(&username).await?;
        if !self.shared.hasher.verify(password, stored).await {
            return Err(failed());
        }
        self.new_session(username, device).await
    }

    async fn new_session(&mut self, user: String, device: String) -> Result<AuthOk, ProtoError> {
        let token = new_token();
        let digest = token_digest(&token);
        // Join the hub first: a login refused for too many connections must
        // not leave a session behind.
        let reg = self
            .shared
            .hub
            .register(&user, self.queue.clone(), digest)?;
        let reply = self
            .account_change(AccountOp::CreateSession {
                username: user.clone(),
                token_hash: hex::encode(digest),
                device,
                address: self.address(),
                max_per_user: self.shared.limits.max_sessions_per_user,
            })
            .await?;
        let AccountReply::Session { role, ended, .. } = reply else {
            return Err(ProtoError::internal());
        };
        if !ended.is_empty() {
            let ended = digests(&ended);
            self.shared
                .hub
                .end_sessions(&user, Some(&ended), Ended::Revoked);
        }
        self.become_user(reg, user.clone(), digest);
        Ok(AuthOk {
            user,
            token: Some(token),
            protocol: PROTOCOL_VERSION,
            role: Some(role),
        })
    }

    async fn auth(&mut self, token: String) -> Result<AuthOk, ProtoError> {
        let digest = token_digest(&token);
        let reply = self
            .account_change(AccountOp::UseSession {
                token_hash: hex::encode(digest),
                address: self.address(),
                life: self.shared.accounts.life,
            })
            .await?;
        let (user, role) = match reply {
            AccountReply::Used(SessionUse::Live { username, role }) => (username, role),
            AccountReply::Used(SessionUse::Expired) => {
                return Err(ProtoError::new(
                    ErrorCode::AuthFailed,
                    "session expired; log in again",
                ));
            }
            AccountReply::Used(SessionUse::Disabled) => {
                return Err(ProtoError::new(
                    ErrorCode::AccountDisabled,
                    "this account is deactivated; ask an admin",
                ));
            }
            _ => {
                return Err(ProtoError::new(
                    ErrorCode::AuthFailed,
                    "unknown or revoked token",
                ));
            }
        };
        let reg = self
            .shared
            .hub
            .register(&user, self.queue.clone(), digest)?;
        self.become_user(reg, user.clone(), digest);
        Ok(AuthOk {
            user,
            token: None,
            protocol: PROTOCOL_VERSION,
            role: Some(role),
        })
    }

    /// A connection that stayed open a long time used its session all
    /// along: refresh the session's last use as it closes (if it is over an
    /// hour old), so that it does not expire for having been connected
    /// rather than reconnecting.
    pub(super) async fn touch_on_leave(&self) {
        let Some(digest) = self.token_digest else {
            return;
        };
        if self.queue.ended().is_some() {
            return;
        }
        let op = AccountOp::TouchSession {
            token_hash: hex::encode(digest),
            address: self.address(),
        };
        if let Err(e) = self.shared.store.account(op).await {
            tracing::debug!("refreshing a session on close: {e}");
        }
    }

    /// The client's address as sessions record it.
    pub(super) fn address(&self) -> Option<String> {
        Some(self.addr.to_string())
    }

    fn become_user(&mut self, reg: Registration, user: String, digest: [u8; 32]) {
        tracing::debug!(user = %user, "connection authenticated");
        self.budget = Some(self.shared.budgets.of(&user));
        self.registration = Some(reg);
        self.user = Some(user);
        self.token_digest = Some(digest);
    }
}

/// Token digests from their stored hex form (bad ones are skipped).
pub(super) fn digests(hashes: &[String]) -> Vec<[u8; 32]> {
    hashes
        .iter()
        .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
        .collect()
}
