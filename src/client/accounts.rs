//! Accounts in words, for every front end: what a refusal of the server
//! means for the user, why a session ended, how long ago something was,
//! and what state an invitation is in. Plain functions of data; no I/O.

use crate::proto::{ErrorCode, Invite, Millis, ProtoError};

/// Close reasons (chatd's close frames) that end the session for good:
/// reconnecting with the same token cannot succeed.
pub const SESSION_ENDED: &[&str] = &[
    "session revoked",
    "account deactivated",
    "password changed; log in again",
    "logged out",
];

/// The refusal a close `reason` stands for, when it ends the session: a
/// `ProtoError` whose message says what happened and what to do.
pub fn session_ended(reason: &str) -> Option<ProtoError> {
    let reason = reason.trim();
    if !SESSION_ENDED.contains(&reason) {
        return None;
    }
    Some(match reason {
        "account deactivated" => ProtoError::new(
            ErrorCode::AccountDisabled,
            "this account was deactivated: ask an admin to reactivate it",
        ),
        "password changed; log in again" => ProtoError::new(
            ErrorCode::AuthFailed,
            "the password was changed: log in again with the new one",
        ),
        "logged out" => ProtoError::new(
            ErrorCode::AuthFailed,
            "this session was logged out: log in again",
        ),
        _ => ProtoError::new(
            ErrorCode::AuthFailed,
            "this session was ended from another device or by an admin: log in again",
        ),
    })
}

/// One line for a refusal of the server, saying what to do next.
pub fn refusal(e: &ProtoError) -> String {
    match e.code {
        ErrorCode::InviteRequired => "this server needs an invitation: ask an admin for a code".into(),
        ErrorCode::InviteInvalid => {
            "the invitation code is unknown, expired, used up or revoked: ask an admin for a new one"
                .into()
        }
        ErrorCode::RegistrationClosed => {
            "this server does not take new accounts: ask an admin to create yours".into()
        }
        ErrorCode::AccountDisabled => {
            "this account is deactivated: ask an admin to reactivate it".into()
        }
        ErrorCode::RateLimited => match e.retry_after_ms {
            Some(ms) => format!("too many attempts: try again in {} s", ms.div_ceil(1000).max(1)),
            None => format!("too many requests: {}", e.message),
        },
        _ => e.message.clone(),
    }
}

/// `ts` relative to `now`, for people: `just now`, `5 min ago`,
/// `3 h ago`, `2 days ago`.
pub fn ago(now: Millis, ts: Millis) -> String {
    let secs = (now - ts).max(0) / 1000;
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        86_400..172_800 => "1 day ago".into(),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// `ts` relative to `now` in the future, to the nearest unit: `in 5 min`,
/// `in 7 days`.
pub fn within(now: Millis, ts: Millis) -> String {
    let secs = (ts - now).max(0) / 1000;
    let near = |unit: i64| (secs + unit / 2) / unit;
    match secs {
        0..60 => "in under a minute".into(),
        60..3600 => format!("in {} min", near(60)),
        3600..86_400 => format!("in {} h", near(3600)),
        _ if near(86_400) == 1 => "in 1 day".into(),
        _ => format!("in {} days", near(86_400)),
    }
}

/// What ending sessions did: `one` names the session asked for (`None`:
/// every other one).
pub fn revoked_notice(one: Option<&str>, revoked: u32) -> String {
    match (one, revoked) {
        (Some(id), 0) => format!("session {id} had already ended"),
        (Some(id), _) => format!("ended session {id}"),
        (None, 0) => "no other session was open".to_string(),
        (None, 1) => "ended 1 other session".to_string(),
        (None, n) => format!("ended {n} other sessions"),
    }
}

/// What a password change did.
pub fn password_notice(revoked: u32) -> String {
    match revoked {
        0 => "password changed".to_string(),
        1 => "password changed; 1 other session ended".to_string(),
        n => format!("password changed; {n} other sessions ended"),
    }
}

/// Whether an invitation can still create an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Open,
    Expired,
    UsedUp,
    Revoked,
}

impl InviteState {
    pub fn of(invite: &Invite, now: Millis) -> InviteState {
        if invite.revoked {
            InviteState::Revoked
        } else if invite.used_by.len() >= invite.max_uses as usize {
            InviteState::UsedUp
        } else if invite.expires_at.is_some_and(|t| t <= now) {
            InviteState::Expired
        } else {
            InviteState::Open
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InviteState::Open => "open",
            InviteState::Expired => "expired",
            InviteState::UsedUp => "used up",
            InviteState::Revoked => "revoked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_that_end_a_session() {
        for r in SESSION_ENDED {
            assert!(session_ended(r).is_some(), "{r}");
        }
        let gone = session_ended("account deactivated").unwrap();
        assert_eq!(gone.code, ErrorCode::AccountDisabled);
        assert!(session_ended("idle timeout").is_none());
        assert!(session_ended("server shutting down").is_none());
        assert!(session_ended("too slow: outbound queue full; reconnect and resync").is_none());
    }

    #[test]
    fn refusals_say_what_to_do() {
        let wait = ProtoError::rate_limited("too many failed logins", 4001);
        assert_eq!(refusal(&wait), "too many attempts: try again in 5 s");
        let wait = ProtoError::rate_limited("x", 10);
        assert_eq!(refusal(&wait), "too many attempts: try again in 1 s");
        let need = ProtoError::new(ErrorCode::InviteRequired, "server text");
        assert!(refusal(&need).contains("invitation"));
        let other = ProtoError::new(ErrorCode::AuthFailed, "wrong username or password");
        assert_eq!(refusal(&other), "wrong username or password");
    }

    #[test]
    fn notices() {
        assert_eq!(revoked_notice(None, 2), "ended 2 other sessions");
        assert_eq!(revoked_notice(None, 0), "no other session was open");
        assert_eq!(revoked_notice(Some("ab12"), 1), "ended session ab12");
        assert_eq!(
            password_notice(1),
            "password changed; 1 other session ended"
        );
    }

    #[test]
    fn times_for_people() {
        let now = 10_000_000_000;
        assert_eq!(ago(now, now - 5_000), "just now");
        assert_eq!(ago(now, now - 5 * 60_000), "5 min ago");
        assert_eq!(ago(now, now - 3 * 3_600_000), "3 h ago");
        assert_eq!(ago(now, now - 86_400_000), "1 day ago");
        assert_eq!(ago(now, now - 3 * 86_400_000), "3 days ago");
        assert_eq!(ago(now, now + 1_000), "just now");
        assert_eq!(within(now, now + 7 * 86_400_000), "in 7 days");
        assert_eq!(within(now, now + 14 * 86_400_000 - 900), "in 14 days");
        assert_eq!(within(now, now + 86_400_000), "in 1 day");
    }

    #[test]
    fn invitation_states() {
        let mut inv = Invite {
            code: "c".into(),
            created_by: "alice".into(),
            created_at: 0,
            expires_at: Some(100),
            max_uses: 1,
            used_by: vec![],
            revoked: false,
        };
        assert_eq!(InviteState::of(&inv, 50), InviteState::Open);
        assert_eq!(InviteState::of(&inv, 100), InviteState::Expired);
        inv.used_by.push("bob".into());
        assert_eq!(InviteState::of(&inv, 50), InviteState::UsedUp);
        inv.revoked = true;
        assert_eq!(InviteState::of(&inv, 50), InviteState::Revoked);
    }
}
