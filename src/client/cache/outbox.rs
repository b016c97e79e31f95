//! The outbox: requests the user made that the server has not confirmed by
//! an event yet. An entry is pending until acknowledged (or refused), and
//! disappears once the event carrying its `client_msg_id` is held, so a
//! message is never shown twice.

use super::schema::Seq;
use super::{Cache, CacheError, corrupt};
use crate::client::text::mentions;
use crate::client::view::{MessageRow, MessageView, ReplyQuote, SendState};
use crate::proto::Millis;
use rusqlite::{Connection, Row, params};
use serde::{Deserialize, Serialize};

/// What an outbox entry asks the server to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OutboxRequest {
    Send {
        body: String,
        #[serde(default)]
        reply_to: Option<u64>,
    },
    /// Share a file already uploaded.
    SendFile {
        file: crate::proto::FileInfo,
        #[serde(default)]
        caption: Option<String>,
        #[serde(default)]
        reply_to: Option<u64>,
    },
    Edit {
        target_seq: u64,
        body: String,
    },
    Delete {
        target_seq: u64,
    },
    React {
        target_seq: u64,
        emoji: String,
        #[serde(default)]
        remove: bool,
    },
}

/// One request waiting for the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub client_msg_id: String,
    pub conversation_id: String,
    pub request: OutboxRequest,
    pub created_at: Millis,
}

/// Where an outbox entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutboxState {
    Pending,
    /// Acknowledged with this seq; the event is not held yet.
    Sent(u64),
    Failed(String),
}

const ITEM_COLUMNS: &str = "client_msg_id, conversation_id, request, created_at, state, seq, error";

fn item_from_row(row: &Row<'_>) -> Result<(OutboxItem, OutboxState), CacheError> {
    let request: String = row.get(2)?;
    let item = OutboxItem {
        client_msg_id: row.get(0)?,
        conversation_id: row.get(1)?,
        request: serde_json::from_str(&request)
            .map_err(|e| corrupt(format!("outbox request: {e}")))?,
        created_at: row.get(3)?,
    };
    let state: String = row.get(4)?;
    let state = match state.as_str() {
        "pending" => OutboxState::Pending,
        "sent" => OutboxState::Sent(row.get::<_, Option<Seq>>(5)?.map(|s| s.0).unwrap_or(0)),
        "failed" => OutboxState::Failed(row.get::<_, Option<String>>(6)?.unwrap_or_default()),
        other => return Err(corrupt(format!("outbox state {other:?}"))),
    };
    Ok((item, state))
}

fn query_items(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<(OutboxItem, OutboxState)>, CacheError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM outbox WHERE {filter} ORDER BY id"
    ))?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(item_from_row(row)?);
    }
    Ok(out)
}

/// Every entry of a conversation still in the outbox, in creation order.
pub(crate) fn conversation_outbox(
    conn: &Connection,
    conv: &str,
) -> Result<Vec<(OutboxItem, OutboxState)>, CacheError> {
    query_items(conn, "conversation_id = ?1", [conv])
}

/// The row an outbox `send` shows as until its event is held.
pub(crate) fn outbox_row(me: &str, item: OutboxItem, state: OutboxState) -> Option<MessageRow> {
    let (body, file, reply_to) = match item.request {
        OutboxRequest::Send { body, reply_to } => (body, None, reply_to),
        OutboxRequest::SendFile {
            file,
            caption,
            reply_to,
        } => (caption.unwrap_or_default(), Some(Box::new(file)), reply_to),
        _ => return None,
    };
    let (seq, send_state) = match state {
        OutboxState::Pending => (None, SendState::Pending),
        OutboxState::Sent(seq) => (Some(seq), SendState::Sent),
        OutboxState::Failed(msg) => (None, SendState::Failed(msg)),
    };
    Some(MessageRow::Message(MessageView {
        seq,
        client_msg_id: Some(item.client_msg_id),
        sender: me.to_string(),
        ts: item.created_at,
        mentions_me: mentions(&body, me),
        bot: false,
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
        send_state: Some(send_state),
    }))
}

impl Cache {
    /// Queue a request. Pushing the same `client_msg_id` again is a no-op.
    pub fn outbox_push(&mut self, item: &OutboxItem) -> Result<(), CacheError> {
        let request = serde_json::to_string(&item.request).map_err(corrupt)?;
        self.conn.execute(
            "INSERT INTO outbox(client_msg_id, conversation_id, request, created_at)
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT(client_msg_id) DO NOTHING",
            params![
                item.client_msg_id,
                item.conversation_id,
                request,
                item.created_at
            ],
        )?;
        Ok(())
    }

    /// Entries not yet acknowledged nor refused, oldest first.
    #[cfg(test)]
    pub fn outbox_pending(&self) -> Result<Vec<OutboxItem>, CacheError> {
        Ok(query_items(&self.conn, "state = 'pending'", [])?
            .into_iter()
            .map(|(item, _)| item)
            .collect())
    }

    /// The oldest pending entry of each conversation, oldest first: the
    /// only ones that may go now, as a conversation's entries go one after
    /// another. Read on every acknowledgement while an outbox drains, so
    /// only these rows are decoded, however many wait behind them.
    pub fn outbox_next(&self) -> Result<Vec<OutboxItem>, CacheError> {
        Ok(query_items(
            &self.conn,
            "id IN (SELECT min(id) FROM outbox WHERE state = 'pending' GROUP BY conversation_id)",
            [],
        )?
        .into_iter()
        .map(|(item, _)| item)
        .collect())
    }

    /// The server acknowledged an entry with `seq`. The entry stays (shown as
    /// sent) until that event is held, and is removed at once if it already is.
    pub fn outbox_mark_sent(&mut self, client_msg_id: &str, seq: u64) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        outbox_mark_sent_in(&tx, client_msg_id, seq)?;
        tx.commit()?;
        Ok(())
    }

    /// The server refused a pending entry; it will not be sent again.
    pub fn outbox_mark_failed(
        &mut self,
        client_msg_id: &str,
        message: &str,
    ) -> Result<(), CacheError> {
        self.conn.execute(
            "UPDATE outbox SET state = 'failed', error = ?2
             WHERE client_msg_id = ?1 AND state = 'pending'",
            params![client_msg_id, message],
        )?;
        Ok(())
    }

    /// Refused entries of a conversation with the server's message, oldest first.
    pub fn outbox_failed(&self, conv: &str) -> Result<Vec<(OutboxItem, String)>, CacheError> {
        Ok(query_items(
            &self.conn,
            "conversation_id = ?1 AND state = 'failed'",
            [conv],
        )?
        .into_iter()
        .filter_map(|(item, state)| match state {
            OutboxState::Failed(msg) => Some((item, msg)),
            _ => None,
        })
        .collect())
    }

    /// Drop an entry (the user dismissed a failed send).
    pub fn outbox_discard(&mut self, client_msg_id: &str) -> Result<(), CacheError> {
        self.conn.execute(
            "DELETE FROM outbox WHERE client_msg_id = ?1",
            [client_msg_id],
        )?;
        Ok(())
    }
}

/// [`Cache::outbox_mark_sent`] inside the caller's transaction (a secret
/// send's crypto state commits with it).
pub fn outbox_mark_sent_in(
    conn: &Connection,
    client_msg_id: &str,
    seq: u64,
) -> Result<(), CacheError> {
    conn.execute(
        "UPDATE outbox SET state = 'sent', seq = ?2, error = NULL WHERE client_msg_id = ?1",
        params![client_msg_id, Seq(seq)],
    )?;
    conn.execute(
        "DELETE FROM outbox WHERE client_msg_id = ?1 AND EXISTS (
             SELECT 1 FROM events e
             WHERE e.conversation_id = outbox.conversation_id AND e.seq = ?2)",
        params![client_msg_id, Seq(seq)],
    )?;
    Ok(())
}

/// Set a meta value inside the caller's transaction.
pub fn set_meta_in(conn: &Connection, key: &str, value: &str) -> Result<(), CacheError> {
    conn.execute(
        "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)",
        params![key, value],
    )?;
    Ok(())
}
