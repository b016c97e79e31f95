//! The message view: rows folded at read time from the stored events, so
//! the result never depends on the order events arrived in. A window reads
//! its rows plus only the events that target them (edits, deletions,
//! reactions, via the `target_seq` index), then the conversation's outbox.

use super::apply::{EVENT_COLUMNS, MAX_SEQ, event_from_row};
use super::outbox::{OutboxRequest, OutboxState, conversation_outbox, outbox_row};
use super::schema::Seq;
use super::{Cache, CacheError};
use crate::client::text::{excerpt, mentions};
use crate::client::view::{
    MessageRow, MessageView, ReactionView, ReplyQuote, SendState, SystemChange,
};
use crate::proto::{Event, EventBody};
use rusqlite::{OptionalExtension, params};
use std::collections::{BTreeMap, HashMap};

/// A change one event (or outbox entry) makes to the message it targets.
enum Op<'a> {
    Edit(&'a str),
    Delete,
    React { emoji: &'a str, remove: bool },
}

fn event_op(body: &EventBody) -> Option<(u64, Op<'_>)> {
    match body {
        EventBody::Edit {
            target_seq, body, ..
        } => Some((*target_seq, Op::Edit(body))),
        EventBody::Delete { target_seq } => Some((*target_seq, Op::Delete)),
        EventBody::Reaction {
            target_seq,
            emoji,
            remove,
            ..
        } => Some((
            *target_seq,
            Op::React {
                emoji,
                remove: *remove,
            },
        )),
        _ => None,
    }
}

fn request_op(req: &OutboxRequest) -> Option<(u64, Op<'_>)> {
    match req {
        OutboxRequest::Send { .. } | OutboxRequest::SendFile { .. } => None,
        OutboxRequest::Edit { target_seq, body } => Some((*target_seq, Op::Edit(body))),
        OutboxRequest::Delete { target_seq } => Some((*target_seq, Op::Delete)),
        OutboxRequest::React {
            target_seq,
            emoji,
            remove,
        } => Some((
            *target_seq,
            Op::React {
                emoji,
                remove: *remove,
            },
        )),
    }
}

/// Rows being folded, in ascending seq order.
struct Window<'a> {
    me: &'a str,
    rows: Vec<MessageRow>,
    /// seq of a message row → its index in `rows`.
    messages: HashMap<u64, usize>,
    /// Per message: (emoji, user) → order key of the reaction.
    reactions: HashMap<u64, BTreeMap<(String, String), u64>>,
}

impl<'a> Window<'a> {
    fn new(me: &'a str) -> Self {
        Window {
            me,
            rows: Vec::new(),
            messages: HashMap::new(),
            reactions: HashMap::new(),
        }
    }

    fn push(&mut self, ev: Event) {
        let (body, file, reply_to) = match ev.body {
            EventBody::Message { body, reply_to, .. } => (body, None, reply_to),
            EventBody::File {
                file,
                caption,
                reply_to,
                ..
            } => (caption.unwrap_or_default(), Some(file), reply_to),
            body => {
                if let Some(change) = SystemChange::of(&body) {
                    self.rows.push(MessageRow::System {
                        seq: ev.seq,
                        ts: ev.ts,
                        sender: ev.sender,
                        change,
                    });
                }
                return;
            }
        };
        self.messages.insert(ev.seq, self.rows.len());
        let mine = !self.me.is_empty() && ev.sender == self.me;
        self.rows.push(MessageRow::Message(MessageView {
            seq: Some(ev.seq),
            client_msg_id: ev.client_msg_id,
            sender: ev.sender,
            ts: ev.ts,
            body,
            file,
            edited: false,
            deleted: false,
            moderated: false,
            reactions: Vec::new(),
            reply_to: reply_to.map(|seq| ReplyQuote {
                seq,
                sender: String::new(),
                excerpt: String::new(),
            }),
            send_state: mine.then_some(SendState::Sent),
            mentions_me: false,
            bot: ev.bot,
        }));
    }

    fn apply(&mut self, target: u64, sender: &str, op: Op<'_>, key: u64) {
        let Some(&i) = self.messages.get(&target) else {
            return;
        };
        let Some(MessageRow::Message(v)) = self.rows.get_mut(i) else {
            return;
        };
        match op {
            Op::Edit(body) => {
                // A shared file cannot be edited.
                if !v.deleted && v.sender == sender && v.file.is_none() {
                    v.body = body.to_string();
                    v.edited = true;
                }
            }
            Op::Delete => {
                if !v.deleted {
                    v.moderated = v.sender != sender;
                }
                v.deleted = true;
                v.body.clear();
                v.file = None;
            }
            Op::React { emoji, remove } => {
                let set = self.reactions.entry(target).or_default();
                let k = (emoji.to_string(), sender.to_string());
                if remove {
                    set.remove(&k);
                } else {
                    set.entry(k).or_insert(key);
                }
            }
        }
    }

    /// Put reactions and mention flags into the rows.
    fn settle(&mut self) {
        for (seq, &i) in &self.messages {
            let Some(MessageRow::Message(v)) = self.rows.get_mut(i) else {
                continue;
            };
            v.mentions_me = !v.deleted && mentions(&v.body, self.me);
            if v.deleted {
                continue;
            }
            if let Some(set) = self.reactions.get(seq) {
                v.reactions = group_reactions(set);
            }
        }
    }

    /// The (sender, excerpt) a reply to `seq` quotes, if `seq` is a row here.
    fn quote(&self, seq: u64) -> Option<(String, String)> {
        match self.rows.get(*self.messages.get(&seq)?)? {
            MessageRow::Message(v) => Some((v.sender.clone(), excerpt(&v.body))),
            _ => None,
        }
    }
}

/// Reactions grouped by emoji, emojis and users in the order they reacted.
pub(crate) fn group_reactions(set: &BTreeMap<(String, String), u64>) -> Vec<ReactionView> {
    let mut by_emoji: BTreeMap<&str, Vec<(u64, &str)>> = BTreeMap::new();
    for ((emoji, user), key) in set {
        by_emoji.entry(emoji).or_default().push((*key, user));
    }
    let mut groups: Vec<(u64, ReactionView)> = by_emoji
        .into_iter()
        .map(|(emoji, mut users)| {
            users.sort();
            let first = users.first().map_or(0, |u| u.0);
            let users = users.into_iter().map(|(_, u)| u.to_string()).collect();
            (
                first,
                ReactionView {
                    emoji: emoji.to_string(),
                    users,
                },
            )
        })
        .collect();
    groups.sort_by_key(|g| g.0);
    groups.into_iter().map(|(_, r)| r).collect()
}

impl Cache {
    /// The newest `limit` rows before `before_seq` (or the newest overall),
    /// ascending by seq, folded: edits, deletions, reactions and reply quotes
    /// applied, holes shown as one `Missing` row each. On the newest page,
    /// the conversation's outbox messages follow as pending/failed rows.
    pub fn messages(
        &self,
        conv: &str,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<MessageRow>, CacheError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let me = self.me()?.unwrap_or_default();
        let (last_seq, floor): (u64, u64) = self
            .conn
            .prepare_cached("SELECT last_seq, floor FROM conversations WHERE id = ?1")?
            .query_row([conv], |r| {
                Ok((r.get::<_, Seq>(0)?.0, r.get::<_, Seq>(1)?.0))
            })
            .optional()?
            .unwrap_or((0, 1));
        let hi = match before_seq {
            Some(b) => b.saturating_sub(1).min(last_seq),
            None => last_seq,
        }
        .min(MAX_SEQ);

        let rows = self.select_events(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE conversation_id = ?1
                 AND target_seq IS NULL AND seq <= ?2 ORDER BY seq DESC LIMIT ?3"
            ),
            conv,
            params![conv, Seq(hi), limit.min(i64::MAX as usize) as i64],
        )?;
        let lo = match rows.last() {
            Some(e) if rows.len() == limit => e.seq,
            Some(e) => e.seq.min(floor),
            None => floor.max(1),
        };
        let mut w = Window::new(&me);
        for ev in rows.into_iter().rev() {
            w.push(ev);
        }
        let targeting = self.select_events(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_target
                 WHERE conversation_id = ?1 AND target_seq >= ?2 AND target_seq <= ?3 ORDER BY seq"
            ),
            conv,
            params![conv, Seq(lo), Seq(hi)],
        )?;
        for ev in &targeting {
            if let Some((target, op)) = event_op(&ev.body) {
                w.apply(target, &ev.sender, op, ev.seq);
            }
        }
        let outbox = conversation_outbox(&self.conn, conv)?;
        if !me.is_empty() {
            for (i, (item, state)) in outbox.iter().enumerate() {
                if let (false, Some((target, op))) = (
                    matches!(state, OutboxState::Failed(_)),
                    request_op(&item.request),
                ) {
                    w.apply(target, &me, op, MAX_SEQ + 1 + i as u64);
                }
            }
        }
        w.settle();
        self.resolve_replies(conv, &mut w)?;

        let holes = if lo <= hi {
            self.holes(conv, lo, hi)?
        } else {
            Vec::new()
        };
        let mut out = Vec::with_capacity(w.rows.len() + holes.len() + outbox.len());
        let mut holes = holes.into_iter().peekable();
        for row in w.rows {
            let seq = match &row {
                MessageRow::Message(v) => v.seq.unwrap_or(0),
                MessageRow::System { seq, .. } => *seq,
                MessageRow::Missing { to, .. } => *to,
            };
            while let Some(&(from, to)) = holes.peek().filter(|h| h.1 < seq) {
                out.push(MessageRow::Missing { from, to });
                holes.next();
            }
            out.push(row);
        }
        out.extend(holes.map(|(from, to)| MessageRow::Missing { from, to }));
        if before_seq.is_none() {
            out.extend(
                outbox
                    .into_iter()
                    .filter_map(|(item, state)| outbox_row(&me, item, state)),
            );
        }
        Ok(out)
    }

    fn select_events(
        &self,
        sql: &str,
        conv: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Event>, CacheError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(args)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(event_from_row(conv, row)?);
        }
        Ok(out)
    }

    /// Inclusive ranges in `lo..=hi` holding no event.
    fn holes(&self, conv: &str, lo: u64, hi: u64) -> Result<Vec<(u64, u64)>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq FROM events WHERE conversation_id = ?1 AND seq >= ?2 AND seq <= ?3
             ORDER BY seq",
        )?;
        let mut rows = stmt.query(params![conv, Seq(lo), Seq(hi)])?;
        let mut out = Vec::new();
        let mut next = lo;
        while let Some(r) = rows.next()? {
            let seq = r.get::<_, Seq>(0)?.0;
            if seq > next {
                out.push((next, seq - 1));
            }
            next = seq + 1;
        }
        if next <= hi {
            out.push((next, hi));
        }
        Ok(out)
    }

    /// Fill each reply quote from its target's current (folded) state.
    fn resolve_replies(&self, conv: &str, w: &mut Window<'_>) -> Result<(), CacheError> {
        let mut quotes: HashMap<u64, (String, String)> = HashMap::new();
        for row in &w.rows {
            let MessageRow::Message(MessageView {
                reply_to: Some(q), ..
            }) = row
            else {
                continue;
            };
            if quotes.contains_key(&q.seq) {
                continue;
            }
            let quote = match w.quote(q.seq) {
                Some(found) => found,
                None => self.quote_outside(conv, q.seq)?,
            };
            quotes.insert(q.seq, quote);
        }
        for row in &mut w.rows {
            if let MessageRow::Message(MessageView {
                reply_to: Some(q), ..
            }) = row
                && let Some((sender, text)) = quotes.get(&q.seq)
            {
                q.sender.clone_from(sender);
                q.excerpt.clone_from(text);
            }
        }
        Ok(())
    }

    /// Fold one message outside the window for a reply quote.
    fn quote_outside(&self, conv: &str, seq: u64) -> Result<(String, String), CacheError> {
        let Some(target) = self.event(conv, seq)? else {
            return Ok((String::new(), String::new()));
        };
        let sender = target.sender.clone();
        let mut w = Window::new("");
        w.push(target);
        let changes = self.select_events(
            &format!(
                "SELECT {EVENT_COLUMNS} FROM events INDEXED BY events_target
                 WHERE conversation_id = ?1 AND target_seq = ?2 AND kind IN ('edit', 'delete') ORDER BY seq"
            ),
            conv,
            params![conv, Seq(seq)],
        )?;
        for ev in &changes {
            if let Some((t, op)) = event_op(&ev.body) {
                w.apply(t, &ev.sender, op, ev.seq);
            }
        }
        Ok(w.quote(seq).unwrap_or((sender, String::new())))
    }
}
