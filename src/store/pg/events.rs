//! Writing the log on PostgreSQL: a conversation's row lock, the next seq
//! taken from its counter inside the inserting transaction, the event row
//! (idempotent by `(sender, client_msg_id)`), and what follows an event:
//! file references and the search index. The rules that decide whether
//! and what to write live above this.

use super::db::{exec, get, opt};
use super::{W, rejected};
use crate::proto::{ErrorCode, Event, EventBody, Millis, encode_event_with_body, now_millis};
use crate::store::log::{Appended, Committed, StoreError};
use deadpool_postgres::GenericClient;
use std::sync::Arc;

/// Lock conversation `id` against other writers of it, on any node, until
/// the transaction ends (as the rules' facts do when they first read it).
/// `not_found` if there is no such conversation.
pub(super) async fn lock_conversation(c: &impl GenericClient, id: &str) -> Result<(), StoreError> {
    opt(
        c,
        "SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE",
        &[&id],
    )
    .await?
    .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?;
    Ok(())
}

/// Insert members (known not to be members yet).
pub(super) async fn add_members(
    w: &mut W<'_>,
    conv: &str,
    users: &[String],
) -> Result<(), StoreError> {
    exec(
        w.tx,
        "INSERT INTO members (conversation_id, username) SELECT $1, u FROM unnest($2::text[]) AS u",
        &[&conv, &users],
    )
    .await?;
    Ok(())
}

/// The error that makes the store run a transaction again: the
/// idempotency key was taken by a transaction that committed meanwhile,
/// and a seq is already spent in this one. The retry finds the original.
pub(super) fn lost_race() -> StoreError {
    StoreError::Postgres(format!(
        "{} client_msg_id taken meanwhile",
        tokio_postgres::error::SqlState::UNIQUE_VIOLATION.code()
    ))
}

/// Take the conversation's next seq and write the event; its change goes
/// to the transaction's list, published after the commit. The caller holds
/// the conversation's lock ([`lock_conversation`]) or created it.
pub(super) async fn write_event(
    w: &mut W<'_>,
    user: &str,
    conv: &str,
    client_msg_id: Option<String>,
    body: EventBody,
) -> Result<Appended, StoreError> {
    let c = w.tx;
    let seq: i64 = get(
        &opt(
            c,
            "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
            &[&conv],
        )
        .await?
        .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?,
        0,
    )?;
    let ts = now_millis();
    let target = body.target_seq().map(|t| t as i64);
    let data = serde_json::to_string(&body)
        .map_err(|e| StoreError::Write(format!("encoding an event: {e}")))?;
    let eid = crate::store::log::new_event_id();
    let searchable = matches!(body, EventBody::Message { .. } | EventBody::File { .. });
    let row = opt(
        c,
        "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq,
                             data, eid, doc, bot)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9,
                 CASE WHEN $10 THEN nextval('search_doc_numbers') END,
                 (SELECT true FROM users WHERE username = $4 AND kind <> 'person'))
         ON CONFLICT (client_msg_id, sender) WHERE client_msg_id IS NOT NULL DO NOTHING
         RETURNING doc, bot",
        &[
            &conv,
            &seq,
            &ts,
            &user,
            &body.kind(),
            &client_msg_id,
            &target,
            &data,
            &eid,
            &searchable,
        ],
    )
    .await?;
    let Some(row) = row else {
        return Err(lost_race());
    };
    let doc: Option<i64> = get(&row, 0)?;
    let bot = get::<Option<bool>>(&row, 1)?.unwrap_or(false);
    super::files::track_file(c, user, conv, seq, &body).await?;
    index_event(c, conv, seq, ts, user, doc, &body).await?;
    let event = Event {
        conversation_id: conv.to_string(),
        seq: seq as u64,
        ts,
        sender: user.to_string(),
        client_msg_id,
        eid: Some(eid),
        bot,
        body,
    };
    let push = encode_event_with_body(&event, &data);
    w.changes.push(Committed::Event(Arc::new(event), push));
    Ok(Appended {
        conversation_id: conv.to_string(),
        seq: Some((seq as u64, ts)),
    })
}

/// Keep the search index in step with an event just written: a message
/// (or a shared file, by its name and caption) adds its words under its
/// doc number, an edit replaces them (the message keeps its place), a
/// deletion removes them.
async fn index_event(
    c: &impl GenericClient,
    conv: &str,
    seq: i64,
    ts: Millis,
    sender: &str,
    doc: Option<i64>,
    body: &EventBody,
) -> Result<(), StoreError> {
    use super::search::{add, file_text, remove};
    match (body, doc) {
        (EventBody::Message { body, .. }, Some(doc)) => {
            add(c, doc, conv, seq, ts, sender, body).await?;
        }
        (EventBody::File { file, caption, .. }, Some(doc)) => {
            let text = file_text(&file.name, caption.as_deref());
            add(c, doc, conv, seq, ts, sender, &text).await?;
        }
        (
            EventBody::Edit {
                target_seq, body, ..
            },
            _,
        ) => {
            let target = *target_seq as i64;
            let Some(row) = opt(
                c,
                "SELECT doc, ts, sender FROM events WHERE conversation_id = $1 AND seq = $2",
                &[&conv, &target],
            )
            .await?
            else {
                return Ok(());
            };
            let (doc, mts, author): (Option<i64>, Millis, String) =
                (get(&row, 0)?, get(&row, 1)?, get(&row, 2)?);
            let doc = match doc {
                Some(d) => d,
                None => get(
                    &super::db::one(
                        c,
                        "UPDATE events SET doc = nextval('search_doc_numbers')
                         WHERE conversation_id = $1 AND seq = $2 RETURNING doc",
                        &[&conv, &target],
                    )
                    .await?,
                    0,
                )?,
            };
            remove(c, doc).await?;
            add(c, doc, conv, target, mts, &author, body).await?;
        }
        (EventBody::Delete { target_seq }, _) => {
            exec(
                c,
                "DELETE FROM search_docs
                 WHERE id = (SELECT doc FROM events WHERE conversation_id = $1 AND seq = $2)",
                &[&conv, &(*target_seq as i64)],
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}
