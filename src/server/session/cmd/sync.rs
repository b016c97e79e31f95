//! What a client fetches on (re)connect, all read from the hub at once:
//! `sync` (its conversations and its contacts' presence), `conversations`
//! and `channels`.

use super::super::{Outcome, Session};
use crate::proto::{ChannelsOk, ConversationsOk, ErrorCode, ProtoError, encode_ok, now_millis};

impl Session {
    /// The conversations `user` belongs to, without presence.
    pub(super) fn conversations(&self, rid: u64, user: &str) -> Outcome {
        Outcome::Reply(encode_ok(
            rid,
            &ConversationsOk {
                conversations: self.shared.hub.conversations_of(user),
                presence: Vec::new(),
                retention_cutoff: None,
            },
        ))
    }

    /// The conversations `user` belongs to and the presence of their
    /// contacts; `cursors` counts the client's cursors, which are bounded.
    pub(super) fn sync(&self, rid: u64, user: &str, cursors: usize) -> Result<Outcome, ProtoError> {
        if cursors > self.shared.limits.max_sync_cursors {
            return Err(ProtoError::new(ErrorCode::TooLarge, "too many cursors"));
        }
        let hub = &self.shared.hub;
        Ok(Outcome::Reply(encode_ok(
            rid,
            &ConversationsOk {
                conversations: hub.conversations_of(user),
                presence: hub.contacts_presence(user),
                retention_cutoff: self.shared.retention.cutoff(now_millis()),
            },
        )))
    }

    /// The server's public channels, to find one to join.
    pub(super) fn channels(&self, rid: u64) -> Outcome {
        Outcome::Reply(encode_ok(
            rid,
            &ChannelsOk {
                channels: self.shared.hub.channels(),
            },
        ))
    }
}
