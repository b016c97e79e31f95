//! Appends and receipts on PostgreSQL.

use super::db::{get, opt};
use super::{W, rejected};
use crate::proto::{ErrorCode, ReceiptPair};
use crate::store::log::{Append, Appended, Committed, StoreError};
use deadpool_postgres::GenericClient;

/// The id of the channel named `name`, if there is one.
pub(super) async fn channel_named(
    c: &impl GenericClient,
    name: &str,
) -> Result<Option<String>, StoreError> {
    let row = opt(
        c,
        "SELECT id FROM conversations WHERE kind = 'channel' AND name = $1",
        &[&name],
    )
    .await?;
    row.map(|r| get(&r, 0)).transpose()
}

pub(super) async fn apply(_w: &mut W<'_>, _op: Append) -> Result<Appended, StoreError> {
    Err(StoreError::Write("appends are not written yet".into()))
}

/// Move `user`'s receipt pointers in a conversation forward (never past its
/// last seq, `read` never past `delivered`); `None` when nothing moved.
pub(super) async fn receipt(
    w: &mut W<'_>,
    user: &str,
    conv: &str,
    delivered: u64,
    read: u64,
) -> Result<Option<ReceiptPair>, StoreError> {
    let row = opt(
        w.tx,
        "SELECT last_seq, EXISTS (SELECT 1 FROM members m
                                  WHERE m.conversation_id = c.id AND m.username = $2)
         FROM conversations c WHERE id = $1",
        &[&conv, &user],
    )
    .await?
    .ok_or_else(|| rejected(ErrorCode::NotFound, "no such conversation"))?;
    let (last, member): (i64, bool) = (get(&row, 0)?, get(&row, 1)?);
    if !member {
        return Err(rejected(
            ErrorCode::Forbidden,
            "you are not a member of this conversation",
        ));
    }
    let last = last.max(0) as u64;
    let read = read.min(last);
    let delivered = delivered.max(read).min(last);
    let (d, r) = (delivered as i64, read as i64);
    let moved = opt(
        w.tx,
        "UPDATE members SET delivered_seq = GREATEST(delivered_seq, $1),
                            read_seq = GREATEST(read_seq, $2)
         WHERE conversation_id = $3 AND username = $4
           AND (delivered_seq < $1 OR read_seq < $2)
         RETURNING delivered_seq, read_seq",
        &[&d, &r, &conv, &user],
    )
    .await?;
    let Some(row) = moved else {
        return Ok(None);
    };
    let receipt = ReceiptPair {
        delivered: get::<i64>(&row, 0)? as u64,
        read: get::<i64>(&row, 1)? as u64,
    };
    w.changes.push(Committed::Receipt {
        conversation_id: conv.to_string(),
        user: user.to_string(),
        receipt,
    });
    Ok(Some(receipt))
}
