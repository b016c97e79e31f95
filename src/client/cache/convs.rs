//! Conversations and receipts: the server's descriptions of conversations,
//! the forward-only receipt pointers, and the conversation list.

use super::schema::Seq;
use super::{Cache, CacheError, corrupt};
use crate::client::view::ConvSummary;
use crate::proto::{ConvKind, Conversation, ReceiptPair};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// Create a placeholder row for a conversation known only by its id, so
/// events, receipts and seqs for it can be stored before its description.
pub(crate) fn ensure_conversation(conn: &Connection, id: &str) -> Result<(), CacheError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO conversations(id, kind, stub) VALUES (?1, 'group', 1)",
    )?
    .execute([id])?;
    Ok(())
}

fn raise_receipt(
    conn: &Connection,
    conv: &str,
    user: &str,
    pair: ReceiptPair,
) -> Result<(), CacheError> {
    conn.prepare_cached(
        "INSERT INTO receipts(conversation_id, user, delivered, read) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(conversation_id, user) DO UPDATE SET
             delivered = max(delivered, excluded.delivered),
             read = max(read, excluded.read)",
    )?
    .execute(params![conv, user, Seq(pair.delivered), Seq(pair.read)])?;
    Ok(())
}

fn parse_members(json: &str) -> Result<Vec<String>, CacheError> {
    serde_json::from_str(json).map_err(|e| corrupt(format!("members: {e}")))
}

impl Cache {
    /// Store the server's description of a conversation. `last_seq` and the
    /// receipts only ever move forward; kind, name and members are replaced.
    pub fn upsert_conversation(&mut self, conv: &Conversation) -> Result<(), CacheError> {
        let members = serde_json::to_string(&conv.members).map_err(corrupt)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO conversations(id, kind, name, members, last_seq, stub, member_count,
                 encrypted)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET
                 kind = excluded.kind, name = excluded.name, members = excluded.members,
                 last_seq = max(last_seq, excluded.last_seq), stub = 0,
                 member_count = excluded.member_count,
                 encrypted = max(encrypted, excluded.encrypted)",
            params![
                conv.id,
                conv.kind.as_str(),
                conv.name,
                members,
                Seq(conv.last_seq),
                Seq(conv.member_total()),
                conv.encrypted
            ],
        )?;
        for (user, pair) in &conv.receipts {
            raise_receipt(&tx, &conv.id, user, *pair)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored description of a conversation, if any.
    pub fn conversation(&self, id: &str) -> Result<Option<Conversation>, CacheError> {
        let row = self
            .conn
            .query_row(
                "SELECT kind, name, members, last_seq, member_count, encrypted FROM conversations
                 WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Seq>(3)?.0,
                        r.get::<_, Seq>(4)?.0,
                        r.get::<_, bool>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((kind, name, members, last_seq, member_count, encrypted)) = row else {
            return Ok(None);
        };
        Ok(Some(Conversation {
            id: id.to_string(),
            kind: ConvKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind:?}")))?,
            name,
            members: parse_members(&members)?,
            member_count,
            last_seq,
            receipts: self.receipts(id)?,
            // Roles come with the server's answers; the cache does not
            // keep them.
            roles: Default::default(),
            encrypted,
        }))
    }

    /// Forget a conversation (I left it): its events, receipts and outbox.
    pub fn remove_conversation(&mut self, id: &str) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM outbox WHERE conversation_id = ?1", [id])?;
        super::search::forget_conversation(&tx, id)?;
        tx.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    /// Forget a conversation's events and start it again from nothing (the
    /// server's history turned out to differ): its settings, receipts and
    /// outbox stay.
    pub fn reset_history(&mut self, id: &str) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM events WHERE conversation_id = ?1", [id])?;
        super::search::forget_conversation(&tx, id)?;
        tx.execute(
            "UPDATE conversations SET last_seq = 0, floor = 1, cursor = 0 WHERE id = ?1",
            [id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Raise the known last seq of a conversation (never lowers it).
    pub fn set_last_seq(&mut self, id: &str, seq: u64) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        ensure_conversation(&tx, id)?;
        tx.execute(
            "UPDATE conversations SET last_seq = max(last_seq, ?2) WHERE id = ?1",
            params![id, Seq(seq)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Mute or unmute notifications for a conversation (no-op if unknown).
    pub fn set_muted(&mut self, id: &str, muted: bool) -> Result<(), CacheError> {
        self.conn.execute(
            "UPDATE conversations SET muted = ?2 WHERE id = ?1",
            params![id, muted],
        )?;
        Ok(())
    }

    /// Whether notifications of a conversation are muted.
    pub fn is_muted(&self, id: &str) -> Result<bool, CacheError> {
        Ok(self
            .conn
            .prepare_cached("SELECT muted FROM conversations WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
    }

    /// Raise a user's receipt pointers; lower values are ignored.
    pub fn apply_receipt(
        &mut self,
        conv: &str,
        user: &str,
        delivered: u64,
        read: u64,
    ) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        ensure_conversation(&tx, conv)?;
        raise_receipt(&tx, conv, user, ReceiptPair { delivered, read })?;
        tx.commit()?;
        Ok(())
    }

    /// Every user's receipt pointers in a conversation.
    pub fn receipts(&self, conv: &str) -> Result<BTreeMap<String, ReceiptPair>, CacheError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user, delivered, read FROM receipts WHERE conversation_id = ?1",
        )?;
        let rows = stmt.query_map([conv], |r| {
            Ok((
                r.get::<_, String>(0)?,
                ReceiptPair {
                    delivered: r.get::<_, Seq>(1)?.0,
                    read: r.get::<_, Seq>(2)?.0,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// My read pointer in a conversation (0 if unknown).
    pub fn my_read_seq(&self, conv: &str) -> Result<u64, CacheError> {
        let Some(me) = self.me()? else {
            return Ok(0);
        };
        Ok(self
            .conn
            .query_row(
                "SELECT read FROM receipts WHERE conversation_id = ?1 AND user = ?2",
                params![conv, me],
                |r| r.get::<_, Seq>(0),
            )
            .optional()?
            .map_or(0, |s| s.0))
    }

    /// The conversation list, most recent activity first. `unread` and
    /// `mentions` count the held messages from others above my read pointer
    /// (and of those, the ones mentioning me), from the flags kept when
    /// events are stored; events not held yet are not counted.
    pub fn conversations(&self) -> Result<Vec<ConvSummary>, CacheError> {
        let me = self.me()?.unwrap_or_default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.id, c.kind, c.name, c.members, c.last_seq, c.cursor, c.muted,
                 c.member_count,
                 COALESCE((SELECT ts FROM events e WHERE e.conversation_id = c.id
                           ORDER BY e.seq DESC LIMIT 1), 0),
                 COALESCE(r.read, 0),
                 (SELECT COUNT(*) FROM events u WHERE u.conversation_id = c.id
                  AND u.counts_unread = 1 AND u.seq > COALESCE(r.read, 0)),
                 (SELECT COUNT(*) FROM events u WHERE u.conversation_id = c.id
                  AND u.counts_unread = 1 AND u.seq > COALESCE(r.read, 0) AND u.mentions_me = 1),
                 c.encrypted
             FROM conversations c
             LEFT JOIN receipts r ON r.conversation_id = c.id AND r.user = ?1",
        )?;
        let rows = stmt
            .query_map([&me], |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                    ),
                    (
                        r.get::<_, Seq>(4)?.0,
                        r.get::<_, Seq>(5)?.0,
                        r.get::<_, bool>(6)?,
                        r.get::<_, i64>(8)?,
                    ),
                    (
                        r.get::<_, Seq>(9)?.0,
                        r.get::<_, Seq>(10)?.0,
                        r.get::<_, Seq>(11)?.0,
                        r.get::<_, Seq>(7)?.0,
                    ),
                    r.get::<_, bool>(12)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::with_capacity(rows.len());
        for (
            (id, kind, name, members),
            (last_seq, cursor, muted, last_activity),
            (read_seq, unread, mentions, member_count),
            encrypted,
        ) in rows
        {
            let kind = ConvKind::parse(&kind).ok_or_else(|| corrupt(format!("kind {kind:?}")))?;
            let members = parse_members(&members)?;
            out.push(ConvSummary {
                title: crate::client::text::conv_title(&id, kind, name.as_deref(), &members, &me),
                mentions,
                id,
                kind,
                member_count: member_count.max(members.len() as u64),
                members,
                last_seq,
                cursor,
                read_seq,
                unread,
                last_activity,
                muted,
                has_gap: cursor < last_seq,
                encrypted,
            });
        }
        out.sort_by(|a, b| {
            b.last_activity
                .cmp(&a.last_activity)
                .then_with(|| a.title.cmp(&b.title))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Conversation ids, most recent activity first (the order sync pages in).
    pub fn conversation_ids_by_activity(&self) -> Result<Vec<String>, CacheError> {
        Ok(self.conversations()?.into_iter().map(|c| c.id).collect())
    }
}
