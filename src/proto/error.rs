//! Stable error codes of the wire protocol.
//!
//! The `code` of an `error` frame is one of these, spelled in snake_case. The
//! codes are part of the fixed protocol core: tools match on them, so a code is
//! never renamed or given a new meaning. The human `message` beside it is free.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Every error code a server may answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be parsed, is not a JSON object, or its id is unusable.
    BadFrame,
    /// The frame parsed but its `type` is not one the server knows.
    UnknownType,
    /// A request other than the handshake arrived before authentication.
    Unauthenticated,
    /// Wrong password, unknown user, or a bad or revoked token.
    AuthFailed,
    /// `register` with a name that already exists.
    UsernameTaken,
    /// A field is missing, has the wrong type, or has a value out of range.
    InvalidArgument,
    /// The conversation, user or message does not exist.
    NotFound,
    /// The caller may not do this (not a member, not the author, ...).
    Forbidden,
    /// The frame or one of its fields is over a limit.
    TooLarge,
    /// Too many requests (or typing signals) in too short a time.
    RateLimited,
    /// The request contradicts existing state (e.g. a reused client_msg_id).
    Conflict,
    /// The server failed; the request may be retried.
    Internal,
    /// `register` on a server whose registration is closed: only an admin
    /// creates accounts.
    RegistrationClosed,
    /// `register` without an invitation on a server that needs one.
    InviteRequired,
    /// The invitation is unknown, expired, used up or revoked.
    InviteInvalid,
    /// The password was right but the account is deactivated.
    AccountDisabled,
    /// A quota is used up (conversations created per hour, conversations a
    /// user is in, connections); the message names it.
    LimitExceeded,
    /// The server cannot reach its database or the bus between its nodes
    /// just now; nothing was done, and the request may be retried.
    Unavailable,
    /// A send in a secret conversation whose Megolm session is not held by
    /// exactly the conversation's current devices; `missing` and `extra`
    /// name the difference.
    DevicesChanged,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::Unauthenticated,
        ErrorCode::AuthFailed,
        ErrorCode::UsernameTaken,
        ErrorCode::InvalidArgument,
        ErrorCode::NotFound,
        ErrorCode::Forbidden,
        ErrorCode::TooLarge,
        ErrorCode::RateLimited,
        ErrorCode::Conflict,
        ErrorCode::Internal,
        ErrorCode::RegistrationClosed,
        ErrorCode::InviteRequired,
        ErrorCode::InviteInvalid,
        ErrorCode::AccountDisabled,
        ErrorCode::LimitExceeded,
        ErrorCode::Unavailable,
        ErrorCode::DevicesChanged,
    ];

    /// The wire spelling of the code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::UsernameTaken => "username_taken",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::RegistrationClosed => "registration_closed",
            ErrorCode::InviteRequired => "invite_required",
            ErrorCode::InviteInvalid => "invite_invalid",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DevicesChanged => "devices_changed",
        }
    }

    /// Whether a client may retry the same request later and expect success.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answer: a code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: how long to wait before trying again.
    pub retry_after_ms: Option<u64>,
    /// With `devices_changed`: the devices missing and extra.
    pub devices: Option<Box<super::keys::DeviceDiff>>,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError {
            code,
            message: message.into(),
            retry_after_ms: None,
            devices: None,
        }
    }
    /// `devices_changed`, naming the devices missing and extra.
    pub fn devices_changed(diff: super::keys::DeviceDiff) -> Self {
        let message = format!(
            "the conversation's devices changed: {} missing, {} extra; share the session with the missing, or start a new one if any are extra",
            diff.missing.len(),
            diff.extra.len()
        );
        ProtoError {
            devices: Some(Box::new(diff)),
            ..Self::new(ErrorCode::DevicesChanged, message)
        }
    }
    /// `rate_limited`, to be retried after `retry_after_ms`.
    pub fn rate_limited(message: impl Into<String>, retry_after_ms: u64) -> Self {
        ProtoError {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }
    /// `unavailable`: the database or the bus cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal server error; try again")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_snake_case() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ErrorCode = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
    }
}
