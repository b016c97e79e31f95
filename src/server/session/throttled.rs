//! The throttle around `register` and `login`: before one runs, the
//! client's address waits for its turn to hash, the account's and the
//! address's failures are checked, a server-wide handshake token is taken
//! and a place in the hashing queue reserved; a refusal is `rate_limited`
//! with the wait left. After, a failure is counted and logged, and a
//! successful login clears its account's count.

use super::Session;
use crate::proto::{AuthOk, ErrorCode, ProtoError};
use crate::server::auth::HashSlot;
use crate::server::throttle::{HashTurn, Refusal, loggable};
use std::time::Duration;

/// A handshake that may be throttled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    Register,
    Login,
}

/// An attempt let through; [`Session::settle`] it once answered.
pub(super) struct Admitted {
    attempt: Attempt,
    account: Option<u64>,
    name: String,
    _turn: HashTurn,
    _slot: HashSlot,
}

/// Milliseconds to tell a client to wait: rounded up, at least 1.
fn millis(wait: Duration) -> u64 {
    u64::try_from(wait.as_micros().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Session {
    /// Let an attempt on `username` go ahead, or say how long to wait.
    pub(super) async fn admit(
        &self,
        attempt: Attempt,
        username: &str,
    ) -> Result<Admitted, ProtoError> {
        let throttle = &self.shared.throttle;
        let account = (attempt == Attempt::Login).then(|| throttle.account_key(username));
        let turn = throttle.hash_turn(self.addr).await;
        if let Err(refusal) = throttle.check(self.addr, account) {
            return Err(match refusal {
                Refusal::Failures(wait) => {
                    // Debug only: refusals cost nothing and may come by the
                    // thousand; the failures that earned them are logged.
                    tracing::debug!(addr = %self.addr, user = %loggable(username),
                        wait_ms = millis(wait), "throttled: too many failed attempts");
                    ProtoError::rate_limited(
                        "too many failed attempts; try again later",
                        millis(wait),
                    )
                }
                Refusal::Busy(wait) => busy(wait),
            });
        }
        let slot = self.shared.hasher.reserve().map_err(busy)?;
        Ok(Admitted {
            attempt,
            account,
            name: loggable(username),
            _turn: turn,
            _slot: slot,
        })
    }

    /// Count and log the outcome of an admitted attempt.
    pub(super) fn settle(&self, admitted: Admitted, result: &Result<AuthOk, ProtoError>) {
        let throttle = &self.shared.throttle;
        let code = match result {
            Ok(_) => {
                if let Some(account) = admitted.account {
                    throttle.succeed(account);
                }
                return;
            }
            Err(e) => e.code,
        };
        if !counts_as_failure(admitted.attempt, code) {
            return;
        }
        let wait = throttle.fail(self.addr, admitted.account);
        let what = match admitted.attempt {
            Attempt::Login => "login failed",
            Attempt::Register => "registration refused",
        };
        tracing::warn!(addr = %self.addr, user = %admitted.name, code = code.as_str(),
            next_wait_ms = wait.as_millis() as u64, "{what}");
    }
}

/// Whether an attempt refused with `code` counts against the address (and
/// the account) in the throttle: a wrong password, or a registration the
/// client got wrong (a taken name, a bad invitation, a weak password...).
/// What the server could not do (its store unreachable or too slow, an
/// internal error, its own throttle) is not the client's failure.
fn counts_as_failure(attempt: Attempt, code: ErrorCode) -> bool {
    match attempt {
        Attempt::Login => code == ErrorCode::AuthFailed,
        Attempt::Register => !matches!(
            code,
            ErrorCode::Internal | ErrorCode::RateLimited | ErrorCode::Unavailable
        ),
    }
}

fn busy(wait: Duration) -> ProtoError {
    ProtoError::rate_limited("the server is busy; try again shortly", millis(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registration refused because the store could not be reached is
    /// retried by a well-behaved client: it must not earn the address a
    /// wait, or a busy database would lock out everyone behind one NAT.
    #[test]
    fn the_servers_own_failures_do_not_count() {
        for code in [
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::RateLimited,
        ] {
            assert!(!counts_as_failure(Attempt::Register, code), "{code:?}");
            assert!(!counts_as_failure(Attempt::Login, code), "{code:?}");
        }
        assert!(counts_as_failure(Attempt::Login, ErrorCode::AuthFailed));
        assert!(counts_as_failure(Attempt::Register, ErrorCode::Conflict));
        assert!(counts_as_failure(
            Attempt::Register,
            ErrorCode::InvalidArgument
        ));
    }
}
