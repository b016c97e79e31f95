//! Erasing an account on PostgreSQL: deactivated, password unusable,
//! sessions ended, every live message it wrote deleted (a `delete` event
//! each, so that clients drop the text as they catch up) and the stored
//! text of its messages, edits and shared files cleared. The name stays
//! taken.

use super::W;
use super::accounts::set_active;
use super::db::{exec, get, rows};
use super::events::{lock_conversation, write_event};
use crate::proto::EventBody;
use crate::store::log::{AccountReply, StoreError};
use deadpool_postgres::GenericClient;

/// The conversations in which `username` has messages not deleted yet,
/// sorted: the ones an erase writes to.
pub(super) async fn conversations(
    c: &impl GenericClient,
    username: &str,
) -> Result<Vec<String>, StoreError> {
    let found = rows(
        c,
        &format!("SELECT DISTINCT conversation_id FROM ({LIVE}) l ORDER BY 1"),
        &[&username],
    )
    .await?;
    found.iter().map(|r| get(r, 0)).collect()
}

/// `username`'s messages and shared files not deleted yet.
const LIVE: &str = "SELECT conversation_id, seq FROM events e
     WHERE sender = $1 AND client_msg_id IS NOT NULL AND kind IN ('message', 'file')
       AND NOT EXISTS (SELECT 1 FROM events d
                       WHERE d.conversation_id = e.conversation_id
                         AND d.target_seq = e.seq AND d.kind = 'delete')";

pub(super) async fn erase(w: &mut W<'_>, username: &str) -> Result<AccountReply, StoreError> {
    let c = w.tx;
    let revoked = set_active(c, username, false).await?;
    exec(
        c,
        "UPDATE users SET password_hash = '!', role = 'member' WHERE username = $1",
        &[&username],
    )
    .await?;
    let live = rows(
        c,
        &format!("{LIVE} ORDER BY conversation_id, seq"),
        &[&username],
    )
    .await?;
    let mut locked: Option<String> = None;
    for r in &live {
        let (conv, seq): (String, i64) = (get(r, 0)?, get(r, 1)?);
        if locked.as_deref() != Some(conv.as_str()) {
            lock_conversation(c, &conv).await?;
            locked = Some(conv.clone());
        }
        write_event(
            w,
            username,
            &conv,
            None,
            EventBody::Delete {
                target_seq: seq as u64,
            },
        )
        .await?;
    }
    clear_text(c, username).await?;
    Ok(AccountReply::Revoked(revoked))
}

/// Clear the text of `username`'s messages and edits, and the name,
/// caption and preview of the files they shared. The stored JSON is
/// rewritten from its parsed body, which gives the text the body was
/// first written as, less what is cleared.
async fn clear_text(c: &impl GenericClient, username: &str) -> Result<(), StoreError> {
    let found = rows(
        c,
        "SELECT conversation_id, seq, data FROM events
         WHERE sender = $1 AND client_msg_id IS NOT NULL AND kind IN ('message', 'edit', 'file')",
        &[&username],
    )
    .await?;
    for r in &found {
        let (conv, seq, data): (String, i64, String) = (get(r, 0)?, get(r, 1)?, get(r, 2)?);
        let Ok(mut body) = serde_json::from_str::<EventBody>(&data) else {
            continue;
        };
        match &mut body {
            EventBody::Message { body, .. } | EventBody::Edit { body, .. } => body.clear(),
            EventBody::File { file, caption, .. } => {
                file.name = "file".into();
                file.preview = None;
                *caption = None;
            }
            _ => continue,
        }
        let cleared = serde_json::to_string(&body)
            .map_err(|e| StoreError::Write(format!("encoding an event: {e}")))?;
        if cleared != data {
            exec(
                c,
                "UPDATE events SET data = $3 WHERE conversation_id = $1 AND seq = $2",
                &[&conv, &seq, &cleared],
            )
            .await?;
        }
    }
    Ok(())
}
