//! What a client fetches on (re)connect, all read from the hub at once:
//! `sync` (its conversations and its contacts' presence), `conversations`
//! and `channels`.

use super::super::{Outcome, Session, error};
use crate::proto::{ChannelsOk, ConversationsOk, ErrorCode, ProtoError, encode_ok, now_millis};
use futures_util::FutureExt;
use std::collections::HashMap;

impl Session {
    /// The conversations `user` belongs to, without presence.
    pub(super) fn conversations(&self, rid: u64, user: &str) -> Outcome {
        Outcome::Reply(encode_ok(
            rid,
            &ConversationsOk {
                conversations: self.shared.hub.conversations_of(user),
                presence: Vec::new(),
                diverged: Vec::new(),
                retention_cutoff: None,
            },
        ))
    }

    /// The conversations `user` belongs to and the presence of their
    /// contacts, and the conversations where the client's copy (its
    /// `cursors`, and the event `heads` it holds there) is not the
    /// server's: a cursor past the last seq, or another event at it.
    pub(super) fn sync(
        &self,
        rid: u64,
        user: &str,
        cursors: HashMap<String, u64>,
        heads: HashMap<String, String>,
    ) -> Result<Outcome, ProtoError> {
        let limit = self.shared.limits.max_sync_cursors;
        if cursors.len() > limit || heads.len() > limit {
            return Err(ProtoError::new(ErrorCode::TooLarge, "too many cursors"));
        }
        let hub = &self.shared.hub;
        let conversations = hub.conversations_of(user);
        let mut diverged: Vec<String> = Vec::new();
        let mut to_check: Vec<(String, u64, String)> = Vec::new();
        for c in &conversations {
            let Some(&cursor) = cursors.get(&c.id) else {
                continue;
            };
            if cursor > c.last_seq {
                diverged.push(c.id.clone());
            } else if let Some(head) = heads.get(&c.id).filter(|_| cursor > 0) {
                to_check.push((c.id.clone(), cursor, head.clone()));
            }
        }
        let reply = ConversationsOk {
            conversations,
            presence: hub.contacts_presence(user),
            diverged,
            retention_cutoff: self.shared.retention.cutoff(now_millis()),
        };
        if to_check.is_empty() {
            return Ok(Outcome::Reply(encode_ok(rid, &reply)));
        }
        let readers = self.shared.store.readers().clone();
        Ok(Outcome::Later(
            async move {
                let mut reply = reply;
                match readers
                    .event_ids(to_check.iter().map(|(c, s, _)| (c.clone(), *s)).collect())
                    .await
                {
                    Ok(ids) => {
                        for ((conv, _, head), id) in to_check.into_iter().zip(ids) {
                            // No event there (it was checked against
                            // last_seq above) proves nothing either way.
                            if id.is_some_and(|id| id != head) {
                                reply.diverged.push(conv);
                            }
                        }
                        encode_ok(rid, &reply)
                    }
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
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
