//! `typing`: an ephemeral signal, throttled per conversation and relayed by
//! the hub to the other members; it never touches the log.

use super::super::{Outcome, Session};
use super::reply_if;
use crate::proto::{ErrorCode, ProtoError};
use tokio::time::Duration;

impl Session {
    /// Relay that `user` started (`active`) or stopped typing.
    pub(super) fn typing_signal(
        &mut self,
        id: Option<u64>,
        user: &str,
        conversation_id: &str,
        active: bool,
    ) -> Result<Outcome, ProtoError> {
        // Membership first: the throttle keeps an entry per conversation,
        // so only conversations the user is in (bounded, with short ids)
        // may ever make one.
        self.shared.hub.check_member(user, conversation_id)?;
        let interval = Duration::from_millis(self.shared.limits.typing_interval_ms);
        if !self.typing.allow(conversation_id, active, interval) {
            return Err(ProtoError::new(
                ErrorCode::RateLimited,
                "typing signals at most once a second",
            ));
        }
        self.shared.hub.typing(user, conversation_id, active)?;
        Ok(reply_if(id))
    }
}
