//! What a client fetches on (re)connect, read from the hub a page at a
//! time: `sync` (its conversations, its contacts' presence, and where its
//! copy diverged), `conversations`, `channels` and `members`.
//!
//! Every page is bounded twice: by count (`sync_page_cap`,
//! `list_page_cap`) and by bytes ([`Limits::reply_bytes`]), so no reply
//! passes `hard_frame_bytes` however many conversations a user is in or
//! however large they are. The hub hands over a bounded copy; encoding
//! happens after its lock is released.

use super::super::{Outcome, Session, error};
use super::{page_size, raw};
use crate::proto::{
    ByteBudget, ChannelsOk, ErrorCode, Limits, MembersOk, Millis, ProtoError, encode_ok, now_millis,
};
use crate::server::hub::ConvPage;
use futures_util::FutureExt;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// A page of conversations as sent: each entry encoded once, to count
/// its bytes.
#[derive(Serialize)]
struct Page {
    conversations: Vec<Box<RawValue>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    presence: Vec<Box<RawValue>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    diverged: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retention_cutoff: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

impl Page {
    /// Encode the hub's page, ending it early where the bytes run out.
    fn encode(page: ConvPage, limits: &Limits) -> Result<Page, ProtoError> {
        let mut budget = ByteBudget::new(limits.reply_bytes());
        let mut out = Page {
            conversations: Vec::with_capacity(page.items.len()),
            presence: Vec::new(),
            diverged: Vec::new(),
            retention_cutoff: None,
            next: None,
        };
        let mut last = None;
        for item in page.items {
            let conv = raw(&item.conversation)?;
            let presence = item
                .presence
                .iter()
                .map(raw)
                .collect::<Result<Vec<_>, _>>()?;
            let size = conv.get().len() + presence.iter().map(|p| p.get().len() + 1).sum::<usize>();
            if !budget.admit(size + 1) {
                // Ends here: the next page starts after the last one sent.
                out.next = last;
                return Ok(out);
            }
            last = Some(item.conversation.id);
            out.conversations.push(conv);
            out.presence.extend(presence);
        }
        if page.more {
            out.next = last;
        }
        Ok(out)
    }
}

impl Session {
    /// A page of the conversations `user` belongs to, without presence.
    pub(super) fn conversations(
        &self,
        rid: u64,
        user: &str,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        let size = page_size(limit, limits.sync_page_cap);
        let page = self
            .shared
            .hub
            .conversations_page(user, after.as_deref(), size, false);
        Ok(Outcome::Reply(encode_ok(rid, &Page::encode(page, limits)?)))
    }

    /// A page of the conversations `user` belongs to with the presence of
    /// their contacts, and the conversations where the client's copy (its
    /// `cursors`, and the event `heads` it holds there) is not the
    /// server's: a cursor past the last seq, or another event at it. The
    /// cursors are checked whichever page they fall on, so a client holding
    /// many sends them in chunks with its page requests.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sync(
        &self,
        rid: u64,
        user: &str,
        cursors: HashMap<String, u64>,
        heads: HashMap<String, String>,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Result<Outcome, ProtoError> {
        let limits = &self.shared.limits;
        let max = limits.max_sync_cursors;
        if cursors.len() > max || heads.len() > max {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("too many cursors (at most {max} per sync; send the rest in another)"),
            ));
        }
        let hub = &self.shared.hub;
        let size = page_size(limit, limits.sync_page_cap);
        let page = hub.conversations_page(user, after.as_deref(), size, true);
        let mut reply = Page::encode(page, limits)?;
        reply.retention_cutoff = self.shared.retention.cutoff(now_millis());
        let mut to_check: Vec<(String, u64, String)> = Vec::new();
        for (id, last_seq) in hub.last_seqs(user, cursors.keys()) {
            let cursor = cursors[&id];
            if cursor > last_seq {
                reply.diverged.push(id);
            } else if let Some(head) = heads.get(&id).filter(|_| cursor > 0) {
                to_check.push((id, cursor, head.clone()));
            }
        }
        if to_check.is_empty() {
            reply.diverged.sort();
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
                        reply.diverged.sort();
                        encode_ok(rid, &reply)
                    }
                    Err(e) => error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }

    /// A page of the server's public channels, to find one to join.
    pub(super) fn channels(&self, rid: u64, after: Option<String>, limit: Option<u32>) -> Outcome {
        let size = page_size(limit, self.shared.limits.list_page_cap);
        let (channels, more) = self.shared.hub.channels(after.as_deref(), size);
        let next = more
            .then(|| channels.last().map(|c| c.name.clone()))
            .flatten();
        Outcome::Reply(encode_ok(rid, &ChannelsOk { channels, next }))
    }

    /// A page of a conversation's members, with roles and receipts.
    pub(super) fn members(
        &self,
        rid: u64,
        user: &str,
        conversation_id: String,
        after: Option<String>,
        limit: Option<u32>,
    ) -> Result<Outcome, ProtoError> {
        let size = page_size(limit, self.shared.limits.list_page_cap);
        let (members, more) =
            self.shared
                .hub
                .members_page(user, &conversation_id, after.as_deref(), size)?;
        let next = more
            .then(|| members.last().map(|m| m.user.clone()))
            .flatten();
        // Which of them are bots, read from the store once the hub's
        // lock is let go.
        let shared = self.shared.clone();
        Ok(Outcome::Later(
            async move {
                let mut members = members;
                let names: Vec<String> = members.iter().map(|m| m.user.clone()).collect();
                match shared.store.readers().bots_among(names).await {
                    Ok(bots) => {
                        for m in &mut members {
                            m.bot = bots.contains(&m.user);
                        }
                        encode_ok(rid, &MembersOk { members, next })
                    }
                    Err(e) => crate::proto::encode_error(Some(rid), &e.to_proto()),
                }
            }
            .boxed(),
        ))
    }
}
