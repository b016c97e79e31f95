//! Appends and receipts on PostgreSQL: [`rules`] decide over the
//! transaction's facts (which lock the conversation as they read it), and
//! this only writes what they decided.

use super::W;
use super::db::{exec, get, opt};
use super::events::{add_members, write_event};
use super::facts::PgFacts;
use crate::proto::{ConvKind, EventBody, MemberRole, ReceiptPair, now_millis};
use crate::store::log::{Append, Appended, Committed, StoreError, new_conversation_id};
use crate::store::rules::{self, Decision};
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

/// Decide and write an append.
pub(super) async fn apply(w: &mut W<'_>, op: Append) -> Result<Appended, StoreError> {
    let limits = w.limits;
    let mut f = PgFacts::locking(w.tx);
    match op {
        Append::Event {
            user,
            conversation_id: conv,
            client_msg_id,
            body,
        } => {
            let cmid = Some(client_msg_id);
            match rules::event(&mut f, &user, &conv, cmid.as_deref(), &body).await? {
                Decision::Done(done) => Ok(done),
                Decision::Write(()) => {
                    // A retry of a plain message is found before its seq is
                    // taken (the rules leave that to the insert, which here
                    // would have spent a seq).
                    if let Some(done) =
                        rules::prior(&mut f, &user, cmid.as_deref(), &conv, body.kind()).await?
                    {
                        return Ok(done);
                    }
                    write_event(w, &user, &conv, cmid, body).await
                }
            }
        }
        Append::Create {
            user,
            kind,
            name,
            members,
        } => match rules::create(&mut f, limits, &user, kind, name, members).await? {
            Decision::Done(done) => Ok(done),
            Decision::Write(new) => create(w, &user, kind, new, false).await,
        },
        Append::Join {
            user,
            conversation_id,
            name,
        } => match rules::join(&mut f, limits, &user, conversation_id, name).await? {
            Decision::Done(done) => Ok(done),
            Decision::Write(id) => {
                let me = vec![user.clone()];
                add_members(w, &id, &me).await?;
                write_event(w, &user, &id, None, EventBody::Join { members: me }).await
            }
        },
        Append::Leave {
            user,
            conversation_id: conv,
        } => {
            let heir = rules::leave(&mut f, &user, &conv).await?;
            if let Some(heir) = heir {
                store_role(w.tx, &conv, &heir, MemberRole::Owner).await?;
                let role = EventBody::Role {
                    user: heir,
                    role: MemberRole::Owner,
                };
                write_event(w, &user, &conv, None, role).await?;
            }
            let me = vec![user.clone()];
            let left = EventBody::Leave {
                members: me.clone(),
            };
            let ev = write_event(w, &user, &conv, None, left).await?;
            drop_members(w.tx, &conv, &me).await?;
            Ok(ev)
        }
        Append::AddMembers {
            user,
            conversation_id: conv,
            members,
        } => match rules::add_members(&mut f, limits, &user, &conv, members).await? {
            Decision::Done(done) => Ok(done),
            Decision::Write(new) => {
                add_members(w, &conv, &new).await?;
                // Members added by an admin may join again later.
                exec(
                    w.tx,
                    "DELETE FROM removed WHERE conversation_id = $1 AND username = ANY($2)",
                    &[&conv, &new],
                )
                .await?;
                write_event(w, &user, &conv, None, EventBody::Join { members: new }).await
            }
        },
        Append::RemoveMembers {
            user,
            conversation_id: conv,
            members,
        } => match rules::remove_members(&mut f, &user, &conv, members).await? {
            Decision::Done(done) => Ok(done),
            Decision::Write(gone) => {
                let removal = EventBody::Remove {
                    members: gone.clone(),
                };
                let ev = write_event(w, &user, &conv, None, removal).await?;
                drop_members(w.tx, &conv, &gone).await?;
                // They may not join again until an admin adds them back.
                exec(
                    w.tx,
                    "INSERT INTO removed (conversation_id, username, removed_by, at)
                     SELECT $1, u, $3, $4 FROM unnest($2::text[]) AS u
                     ON CONFLICT (conversation_id, username)
                     DO UPDATE SET removed_by = excluded.removed_by, at = excluded.at",
                    &[&conv, &gone, &user, &now_millis()],
                )
                .await?;
                Ok(ev)
            }
        },
        Append::SetRole {
            user,
            conversation_id: conv,
            target,
            role,
        } => match rules::set_role(&mut f, &user, &conv, &target, role).await? {
            Decision::Done(done) => Ok(done),
            Decision::Write(change) => {
                if change.hand_over {
                    store_role(w.tx, &conv, &user, MemberRole::Admin).await?;
                }
                store_role(w.tx, &conv, &target, role).await?;
                let body = EventBody::Role { user: target, role };
                write_event(w, &user, &conv, None, body).await
            }
        },
        Append::Rename {
            user,
            conversation_id: conv,
            client_msg_id,
            name,
        } => match rules::rename(&mut f, &user, &conv, client_msg_id.as_deref(), &name).await? {
            Decision::Done(done) => Ok(done),
            Decision::Write(_) => {
                exec(
                    w.tx,
                    "UPDATE conversations SET name = $1 WHERE id = $2",
                    &[&name, &conv],
                )
                .await?;
                write_event(w, &user, &conv, client_msg_id, EventBody::Rename { name }).await
            }
        },
    }
}

/// Write a conversation the rules accepted (a secret one when
/// `encrypted`): its row, its members, its owner and its `create` event.
/// A DM or channel made meanwhile by another transaction surfaces as a
/// unique key taken, and the write runs again.
pub(super) async fn create(
    w: &mut W<'_>,
    user: &str,
    kind: ConvKind,
    new: rules::NewConversation,
    encrypted: bool,
) -> Result<Appended, StoreError> {
    let rules::NewConversation {
        members,
        name,
        dm_key,
    } = new;
    let id = new_conversation_id();
    exec(
        w.tx,
        "INSERT INTO conversations (id, kind, name, dm_key, last_seq, created_at, encrypted)
         VALUES ($1, $2, $3, $4, 0, $5, $6)",
        &[
            &id,
            &kind.as_str(),
            &name,
            &dm_key,
            &now_millis(),
            &encrypted,
        ],
    )
    .await?;
    w.changes.push(Committed::Created {
        id: id.clone(),
        kind,
        name: name.clone(),
    });
    if encrypted {
        w.changes.push(Committed::Encrypted(id.clone()));
    }
    add_members(w, &id, &members).await?;
    if kind != ConvKind::Dm {
        store_role(w.tx, &id, user, MemberRole::Owner).await?;
    }
    write_event(w, user, &id, None, EventBody::Create { name, members }).await
}

/// Record a member's role.
async fn store_role(
    c: &impl GenericClient,
    conv: &str,
    user: &str,
    role: MemberRole,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE members SET role = $3 WHERE conversation_id = $1 AND username = $2",
        &[&conv, &user, &role.as_str()],
    )
    .await?;
    Ok(())
}

async fn drop_members(
    c: &impl GenericClient,
    conv: &str,
    users: &[String],
) -> Result<(), StoreError> {
    exec(
        c,
        "DELETE FROM members WHERE conversation_id = $1 AND username = ANY($2)",
        &[&conv, &users],
    )
    .await?;
    Ok(())
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
    rules::member(&mut PgFacts::reading(w.tx), user, conv).await?;
    let row = opt(
        w.tx,
        "SELECT last_seq FROM conversations WHERE id = $1",
        &[&conv],
    )
    .await?;
    let last: i64 = match row {
        Some(r) => get(&r, 0)?,
        None => 0,
    };
    let (delivered, read) = rules::receipt_bounds(last.max(0) as u64, delivered, read);
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
