//! Writes of secret conversations on PostgreSQL, as on the embedded store
//! (`log::secret`): creating one, a message (or edit, reaction, file) with
//! the shares of its Megolm session, and `keys_share`.
//! [`rules::secret`] decides over the transaction's facts, which hold the
//! conversation's row lock (the batch took it, or the first question
//! about the conversation does) and the locks of the devices shared with;
//! the event, the shares it records and the inbox messages they become are
//! written in that one transaction.

use super::W;
use super::append::create;
use super::db::Conn;
use super::db::{exec, get, opt, rows};
use super::events::write_event;
use super::facts::PgFacts;
use super::keys::{deliver, device_of_session, lock_devices};
use crate::proto::{DeviceRef, ToDeviceMessage};
use crate::store::keyrows::target_of;
use crate::store::log::{Appended, SecretOp, StoreError};
use crate::store::rules::secret::{self, SecretFacts, SecretWrite};
use crate::store::rules::{Decision, Facts};

/// Decide and write a secret conversation's write.
pub(super) async fn apply(w: &mut W<'_>, op: SecretOp) -> Result<Appended, StoreError> {
    let limits = w.limits;
    match op {
        SecretOp::Create {
            user,
            kind,
            name,
            members,
        } => {
            let mut f = PgFacts::locking(w.tx);
            match secret::create(&mut f, limits, &user, kind, name, members).await? {
                Decision::Done(done) => Ok(done),
                Decision::Write(new) => create(w, &user, kind, new, true).await,
            }
        }
        SecretOp::Event {
            user,
            token_hash,
            conversation_id: conv,
            client_msg_id,
            body,
            shares,
            caps,
        } => {
            let Sharing {
                device,
                to,
                mut facts,
            } = sharing(w.tx, &token_hash, &conv, &shares).await?;
            let cmid = Some(client_msg_id);
            let decided = secret::event(
                &mut facts,
                caps.inbox,
                &user,
                device.as_deref(),
                &conv,
                cmid.as_deref(),
                &body,
                &to,
            )
            .await?;
            let write = match decided {
                Decision::Done(done) => return Ok(done),
                Decision::Write(w) => w,
            };
            let done = write_event(w, &user, &conv, cmid, body).await?;
            record_shares(w, &write, &shares).await?;
            Ok(done)
        }
        SecretOp::Share {
            user,
            token_hash,
            conversation_id: conv,
            session_id,
            shares,
            caps,
        } => {
            let Sharing {
                device,
                to,
                mut facts,
            } = sharing(w.tx, &token_hash, &conv, &shares).await?;
            let write = secret::share(
                &mut facts,
                caps.inbox,
                &user,
                device.as_deref(),
                &conv,
                &session_id,
                &to,
            )
            .await?;
            record_shares(w, &write, &shares).await?;
            Ok(Appended {
                conversation_id: conv,
                seq: None,
            })
        }
    }
}

/// What a write that shares a Megolm session starts from.
struct Sharing<'a> {
    /// The device of the sending session, if it has one.
    device: Option<String>,
    /// The devices shared with.
    to: Vec<DeviceRef>,
    /// The transaction's facts, the conversation and those devices locked.
    facts: PgFacts<'a>,
}

/// Find the device of the session `token_hash` and the targets of
/// `shares`, and lock the conversation first (as every write takes it),
/// then the devices shared with (unless the rules will refuse that many).
async fn sharing<'a>(
    tx: &'a Conn,
    token_hash: &str,
    conv: &str,
    shares: &[ToDeviceMessage],
) -> Result<Sharing<'a>, StoreError> {
    let device = device_of_session(tx, token_hash)
        .await?
        .map(|d| d.device_id);
    let to = shares.iter().map(target_of).collect();
    let mut facts = PgFacts::locking(tx);
    facts.kind(conv).await?;
    if shares.len() <= secret::MAX_MESSAGES_PER_REQUEST {
        lock_devices(tx, shares).await?;
    }
    Ok(Sharing { device, to, facts })
}

/// Carry out `write`: record the session's owner (when new) and its
/// holders, and deliver each share to its device's inbox.
async fn record_shares(
    w: &mut W<'_>,
    write: &SecretWrite,
    shares: &[ToDeviceMessage],
) -> Result<(), StoreError> {
    let (conv, session) = (&write.conversation_id, &write.session);
    if let Some(owner) = write.owner() {
        exec(
            w.tx,
            "INSERT INTO megolm_sessions (conversation_id, session_id, username, device_id)
             VALUES ($1, $2, $3, $4)",
            &[conv, session, &owner.user, &owner.device_id],
        )
        .await?;
        // The device's earlier sessions here are rotated out: who holds
        // them need not be kept (a send with one again would only be asked
        // to share it anew).
        exec(
            w.tx,
            "DELETE FROM megolm_holders WHERE conversation_id = $1 AND session_id IN
               (SELECT session_id FROM megolm_sessions
                WHERE conversation_id = $1 AND username = $3 AND device_id = $4
                  AND session_id <> $2)",
            &[conv, session, &owner.user, &owner.device_id],
        )
        .await?;
    }
    if !write.holders.is_empty() {
        let users: Vec<&str> = write.holders.iter().map(|h| h.user.as_str()).collect();
        let ids: Vec<&str> = write.holders.iter().map(|h| h.device_id.as_str()).collect();
        exec(
            w.tx,
            "INSERT INTO megolm_holders (conversation_id, session_id, username, device_id)
             SELECT $1, $2, q.u, q.i FROM unnest($3::text[], $4::text[]) AS q(u, i)
             ON CONFLICT DO NOTHING",
            &[&conv, &session, &users, &ids],
        )
        .await?;
    }
    deliver(w, &write.device, shares).await
}

impl SecretFacts for PgFacts<'_> {
    async fn devices(&mut self, user: &str) -> Result<Vec<String>, StoreError> {
        rows(
            self.tx(),
            "SELECT device_id FROM devices WHERE username = $1 ORDER BY device_id",
            &[&user],
        )
        .await?
        .iter()
        .map(|r| get(r, 0))
        .collect()
    }

    async fn session_owner(
        &mut self,
        conv: &str,
        session: &str,
    ) -> Result<Option<DeviceRef>, StoreError> {
        opt(
            self.tx(),
            "SELECT username, device_id FROM megolm_sessions
             WHERE conversation_id = $1 AND session_id = $2",
            &[&conv, &session],
        )
        .await?
        .map(|r| {
            Ok(DeviceRef {
                user: get(&r, 0)?,
                device_id: get(&r, 1)?,
            })
        })
        .transpose()
    }

    async fn holders(&mut self, conv: &str, session: &str) -> Result<Vec<DeviceRef>, StoreError> {
        rows(
            self.tx(),
            "SELECT username, device_id FROM megolm_holders
             WHERE conversation_id = $1 AND session_id = $2",
            &[&conv, &session],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(DeviceRef {
                user: get(r, 0)?,
                device_id: get(r, 1)?,
            })
        })
        .collect()
    }

    async fn inbox_len(&mut self, d: &DeviceRef) -> Result<Option<usize>, StoreError> {
        let row = opt(
            self.tx(),
            "SELECT (SELECT COUNT(*) FROM inbox i
                     WHERE i.username = d.username AND i.device_id = d.device_id)
             FROM devices d WHERE d.username = $1 AND d.device_id = $2",
            &[&d.user, &d.device_id],
        )
        .await?;
        row.map(|r| Ok(usize::try_from(get::<i64>(&r, 0)?).unwrap_or(usize::MAX)))
            .transpose()
    }
}
