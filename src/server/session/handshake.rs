//! The handshake: the first request must be `register`, `login` or `auth`.
//! Success joins the hub (so pushes start flowing) and answers with the
//! user, the protocol version and, for a new device session, its token;
//! too many failures close the connection.

use super::{Outcome, Session, close, error};
use crate::proto::{AuthOk, ErrorCode, PROTOCOL_VERSION, ProtoError, Request, encode_ok};
use crate::server::auth::{new_token, token_digest};
use crate::server::hub::Registration;
use crate::server::validate;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

impl Session {
    pub(super) async fn handshake(&mut self, id: Option<u64>, req: Request) -> Outcome {
        let result = match req {
            Request::Register {
                username,
                password,
                device,
            } => self.register(username, password, device).await,
            Request::Login {
                username,
                password,
                device,
            } => self.login(username, password, device).await,
            Request::Auth { token } => self.auth(token).await,
            _ => Err(ProtoError::new(
                ErrorCode::Unauthenticated,
                "authenticate first: register, login or auth",
            )),
        };
        match result {
            Ok(ok) => Outcome::Reply(encode_ok(id.unwrap_or(0), &ok)),
            Err(e) => {
                if e.code == ErrorCode::AuthFailed {
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
    ) -> Result<AuthOk, ProtoError> {
        validate::username(&username)?;
        let device = validate::device(device, &self.shared.limits)?;
        // A taken name is refused before any hashing: a loop of registers
        // with taken names costs the server a lookup each, not a hash.
        if self.stored_hash(&username).await?.is_some() {
            return Err(ProtoError::new(
                ErrorCode::UsernameTaken,
                "that username is taken",
            ));
        }
        validate::password(&password, &self.shared.limits)?;
        let hash = self
            .shared
            .hasher
            .hash(password)
            .await
            .map_err(|_| ProtoError::internal())?;
        self.shared
            .store
            .register(&username, hash)
            .await
            .map_err(|e| e.to_proto())?;
        tracing::info!(user = %username, "registered");
        self.new_session(username, device).await
    }

    /// The password hash of `username`, if the account exists.
    async fn stored_hash(&self, username: &str) -> Result<Option<String>, ProtoError> {
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
            tracing::info!(user = %username, "login failed");
            return Err(failed());
        }
        self.new_session(username, device).await
    }

    async fn new_session(&mut self, user: String, device: String) -> Result<AuthOk, ProtoError> {
        let token = new_token();
        let digest = token_digest(&token);
        // Join the hub first: a login refused for too many connections must
        // not leave a session behind.
        let reg = self.shared.hub.register(&user, self.queue.clone())?;
        self.shared
            .store
            .create_session(&user, hex::encode(digest), device)
            .await
            .map_err(|e| e.to_proto())?;
        self.become_user(reg, user.clone(), digest);
        Ok(AuthOk {
            user,
            token: Some(token),
            protocol: PROTOCOL_VERSION,
        })
    }

    async fn auth(&mut self, token: String) -> Result<AuthOk, ProtoError> {
        let digest = token_digest(&token);
        let user = self
            .shared
            .store
            .readers()
            .session_user(&hex::encode(digest))
            .await
            .map_err(|e| e.to_proto())?
            .ok_or_else(|| ProtoError::new(ErrorCode::AuthFailed, "unknown or revoked token"))?;
        self.start(user.clone(), digest)?;
        Ok(AuthOk {
            user,
            token: None,
            protocol: PROTOCOL_VERSION,
        })
    }

    /// Become `user`: join the hub so pushes start flowing.
    fn start(&mut self, user: String, digest: [u8; 32]) -> Result<(), ProtoError> {
        let reg = self.shared.hub.register(&user, self.queue.clone())?;
        self.become_user(reg, user, digest);
        Ok(())
    }

    fn become_user(&mut self, reg: Registration, user: String, digest: [u8; 32]) {
        tracing::debug!(user = %user, "connection authenticated");
        self.registration = Some(reg);
        self.user = Some(user);
        self.token_digest = Some(digest);
    }
}
