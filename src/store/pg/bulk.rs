//! Plain messages of a batch, decided together and written with one
//! statement per table.
//!
//! A run of plain messages (no reply, the commonest write by far) would
//! cost eight or so statements each through the general path. Here the
//! facts the rules ask about such a message (the conversation's kind and
//! last seq, the sender's membership, a DM's members and blocks, an earlier
//! use of the `client_msg_id`) are read for the whole run at once, each
//! message is decided by the same [`rules`] over those facts, and what was
//! decided is written with one update of the counters, one insert of the
//! events and one of their search words. The batch holds every
//! conversation's row lock (see [`super::batch`]), so the seqs counted here
//! are the ones the rows would have given.

use super::W;
use super::db::{exec, get, rows};
use super::events::lost_race;
use super::search::words;
use crate::proto::{ConvKind, Event, EventBody, MemberRole, encode_event_with_body, now_millis};
use crate::store::log::{Append, Appended, Committed, StoreError, new_event_id};
use crate::store::rules::{self, Decision, Facts, Prior, Target};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio_postgres::types::ToSql;

/// Whether `op` is a plain message, which [`apply`] writes: no reply, and
/// no ciphertext (a secret conversation's writes carry their keys' shares
/// and go through [`super::secret`]).
pub(super) fn plain(op: &Append) -> bool {
    matches!(
        op,
        Append::Event {
            body: EventBody::Message {
                reply_to: None,
                encrypted: None,
                ..
            },
            ..
        }
    )
}

/// What the rules may ask about a run of plain messages, read at once.
#[derive(Default)]
struct Known {
    /// Each conversation's kind and last seq (counted on as messages are
    /// decided).
    convs: HashMap<String, (ConvKind, i64)>,
    /// The secret conversations among them.
    encrypted: HashSet<String>,
    /// The senders' roles where they are members.
    roles: HashMap<(String, String), MemberRole>,
    /// The members of the DMs written to.
    dm_members: HashMap<String, Vec<(String, MemberRole)>>,
    /// (blocker, blocked) pairs among the DMs' members.
    blocks: HashSet<(String, String)>,
    /// Earlier uses of the run's client message ids (and the run's own).
    prior: HashMap<(String, String), Prior>,
}

fn unasked(what: &str) -> StoreError {
    StoreError::Write(format!(
        "a plain message's rules asked about {what}, which was not read"
    ))
}

impl Facts for Known {
    async fn kind(&mut self, conv: &str) -> Result<Option<ConvKind>, StoreError> {
        Ok(self.convs.get(conv).map(|(k, _)| *k))
    }

    async fn role(&mut self, conv: &str, user: &str) -> Result<Option<MemberRole>, StoreError> {
        Ok(self
            .roles
            .get(&(conv.to_string(), user.to_string()))
            .copied())
    }

    async fn member_count(&mut self, _conv: &str) -> Result<usize, StoreError> {
        Err(unasked("a member count"))
    }

    async fn members(&mut self, conv: &str) -> Result<Vec<(String, MemberRole)>, StoreError> {
        self.dm_members
            .get(conv)
            .cloned()
            .ok_or_else(|| unasked("the members of a conversation other than a DM"))
    }

    async fn user_exists(&mut self, _name: &str) -> Result<bool, StoreError> {
        Err(unasked("a user"))
    }

    async fn server_admin(&mut self, _user: &str) -> Result<bool, StoreError> {
        Err(unasked("a server admin"))
    }

    async fn blocks(&mut self, blocker: &str, blocked: &str) -> Result<bool, StoreError> {
        Ok(self
            .blocks
            .contains(&(blocker.to_string(), blocked.to_string())))
    }

    async fn memberships(&mut self, _user: &str) -> Result<usize, StoreError> {
        Err(unasked("memberships"))
    }

    async fn dm(&mut self, _key: &str) -> Result<Option<String>, StoreError> {
        Err(unasked("a DM key"))
    }

    async fn channel(&mut self, _name: &str) -> Result<Option<String>, StoreError> {
        Err(unasked("a channel"))
    }

    async fn removed(&mut self, _conv: &str, _user: &str) -> Result<bool, StoreError> {
        Err(unasked("a removal"))
    }

    async fn prior(
        &mut self,
        user: &str,
        client_msg_id: &str,
    ) -> Result<Option<Prior>, StoreError> {
        Ok(self
            .prior
            .get(&(user.to_string(), client_msg_id.to_string()))
            .cloned())
    }

    async fn target(&mut self, _conv: &str, _seq: u64) -> Result<Option<Target>, StoreError> {
        Err(unasked("a target message"))
    }

    async fn upload_size(&mut self, _user: &str, _digest: &str) -> Result<Option<u64>, StoreError> {
        Err(unasked("an upload"))
    }

    async fn encrypted(&mut self, conv: &str) -> Result<bool, StoreError> {
        Ok(self.encrypted.contains(conv))
    }
}

/// A message decided, to be written.
struct New {
    conv: String,
    seq: i64,
    ts: i64,
    user: String,
    client_msg_id: String,
    body: EventBody,
    data: String,
    eid: String,
}

/// Read the facts of a run: every query sent at once (the connection
/// pipelines them), answered in one round trip.
async fn read(w: &W<'_>, ops: &[(&str, &str, &str)]) -> Result<Known, StoreError> {
    let mut convs: Vec<&str> = ops.iter().map(|(_, c, _)| *c).collect();
    convs.sort_unstable();
    convs.dedup();
    let mut pairs: Vec<(&str, &str)> = ops.iter().map(|(u, c, _)| (*c, *u)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (pc, pu): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    let senders: Vec<&str> = ops.iter().map(|(u, _, _)| *u).collect();
    let (mu, mm): (Vec<&str>, Vec<&str>) = ops.iter().map(|(u, _, m)| (*u, *m)).unzip();
    let p_convs: [&(dyn ToSql + Sync); 1] = [&convs];
    let p_roles: [&(dyn ToSql + Sync); 2] = [&pc, &pu];
    let p_dms: [&(dyn ToSql + Sync); 1] = [&convs];
    let p_blocks: [&(dyn ToSql + Sync); 2] = [&senders, &convs];
    let p_prior: [&(dyn ToSql + Sync); 2] = [&mu, &mm];
    let (conv_rows, role_rows, dm_rows, block_rows, prior_rows) = tokio::try_join!(
        rows(
            w.tx,
            "SELECT id, kind, last_seq, encrypted FROM conversations WHERE id = ANY($1)",
            &p_convs,
        ),
        rows(
            w.tx,
            "SELECT m.conversation_id, m.username, m.role FROM members m
             JOIN unnest($1::text[], $2::text[]) AS q(c, u)
               ON m.conversation_id = q.c AND m.username = q.u",
            &p_roles,
        ),
        rows(
            w.tx,
            "SELECT m.conversation_id, m.username, m.role FROM members m
             JOIN conversations c ON c.id = m.conversation_id AND c.kind = 'dm'
             WHERE m.conversation_id = ANY($1)",
            &p_dms,
        ),
        rows(
            w.tx,
            "SELECT DISTINCT b.blocker, b.blocked FROM blocks b
             JOIN members m ON m.username = b.blocker AND m.conversation_id = ANY($2)
             JOIN conversations c ON c.id = m.conversation_id AND c.kind = 'dm'
             WHERE b.blocked = ANY($1)",
            &p_blocks,
        ),
        rows(
            w.tx,
            "SELECT e.sender, e.client_msg_id, e.conversation_id, e.seq, e.ts, e.kind
             FROM events e JOIN unnest($1::text[], $2::text[]) AS q(u, m)
               ON e.sender = q.u AND e.client_msg_id = q.m",
            &p_prior,
        ),
    )?;
    let mut k = Known::default();
    for r in conv_rows {
        let kind: String = get(&r, 1)?;
        let kind = ConvKind::parse(&kind)
            .ok_or_else(|| StoreError::Postgres(format!("a conversation of kind {kind}")))?;
        let id: String = get(&r, 0)?;
        if get::<bool>(&r, 3)? {
            k.encrypted.insert(id.clone());
        }
        k.convs.insert(id, (kind, get(&r, 2)?));
    }
    for r in role_rows {
        let role = MemberRole::parse(&get::<String>(&r, 2)?).unwrap_or_default();
        k.roles.insert((get(&r, 0)?, get(&r, 1)?), role);
    }
    for r in dm_rows {
        let role = MemberRole::parse(&get::<String>(&r, 2)?).unwrap_or_default();
        k.dm_members
            .entry(get(&r, 0)?)
            .or_default()
            .push((get(&r, 1)?, role));
    }
    for r in block_rows {
        k.blocks.insert((get(&r, 0)?, get(&r, 1)?));
    }
    for r in prior_rows {
        let prior = Prior {
            conversation_id: get(&r, 2)?,
            seq: get::<i64>(&r, 3)? as u64,
            ts: get(&r, 4)?,
            kind: get(&r, 5)?,
        };
        k.prior.insert((get(&r, 0)?, get(&r, 1)?), prior);
    }
    Ok(k)
}

/// Decide and write a run of plain messages ([`plain`]); each one's answer
/// (a refusal among them writes nothing), or an error that fails the
/// transaction.
pub(super) async fn apply(
    w: &mut W<'_>,
    ops: Vec<Append>,
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let mut msgs = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Append::Event {
                user,
                conversation_id,
                client_msg_id,
                body,
            } => msgs.push((user, conversation_id, client_msg_id, body)),
            _ => return Err(StoreError::Write("not a plain message".into())),
        }
    }
    let keys: Vec<(&str, &str, &str)> = msgs
        .iter()
        .map(|(u, c, m, _)| (u.as_str(), c.as_str(), m.as_str()))
        .collect();
    let mut known = read(w, &keys).await?;
    let mut answers = Vec::with_capacity(msgs.len());
    let mut new = Vec::new();
    for (user, conv, cmid, body) in msgs {
        match decide(&mut known, &user, &conv, &cmid, &body).await {
            Ok(Some(done)) => answers.push(Ok(done)),
            Ok(None) => {
                let Some((_, last)) = known.convs.get_mut(&conv) else {
                    return Err(unasked("a conversation's last seq"));
                };
                *last += 1;
                let (seq, ts) = (*last, now_millis());
                known.prior.insert(
                    (user.clone(), cmid.clone()),
                    Prior {
                        conversation_id: conv.clone(),
                        seq: seq as u64,
                        ts,
                        kind: body.kind().to_string(),
                    },
                );
                answers.push(Ok(Appended {
                    conversation_id: conv.clone(),
                    seq: Some((seq as u64, ts)),
                }));
                let data = serde_json::to_string(&body)
                    .map_err(|e| StoreError::Write(format!("encoding an event: {e}")))?;
                new.push(New {
                    conv,
                    seq,
                    ts,
                    user,
                    client_msg_id: cmid,
                    body,
                    data,
                    eid: new_event_id(),
                });
            }
            Err(e @ StoreError::Rejected(_)) => answers.push(Err(e)),
            Err(e) => return Err(e),
        }
    }
    write(w, new, &known).await?;
    Ok(answers)
}

/// The rules' answer for one message: its earlier self, or `None` to write.
async fn decide(
    known: &mut Known,
    user: &str,
    conv: &str,
    cmid: &str,
    body: &EventBody,
) -> Result<Option<Appended>, StoreError> {
    match rules::event(known, user, conv, Some(cmid), body).await? {
        Decision::Done(done) => Ok(Some(done)),
        Decision::Write(()) => rules::prior(known, user, Some(cmid), conv, body.kind()).await,
    }
}

/// The search words of a run's messages, column by column.
#[derive(Default)]
struct Words<'a> {
    doc: Vec<i64>,
    conv: Vec<&'a str>,
    seq: Vec<i64>,
    ts: Vec<i64>,
    sender: Vec<&'a str>,
    words: Vec<String>,
}

/// Write what was decided: the counters, the events and their search
/// words (doc numbers taken first, so the three go out together); then the
/// events go to the transaction's changes, in order.
async fn write(w: &mut W<'_>, new: Vec<New>, known: &Known) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, i64> = HashMap::new();
    for n in &new {
        last.insert(&n.conv, n.seq);
    }
    debug_assert!(last.keys().all(|c| known.convs.contains_key(*c)));
    let (lc, ls): (Vec<&str>, Vec<i64>) = last.into_iter().unzip();
    let docs: Vec<i64> = rows(
        w.tx,
        "SELECT nextval('search_doc_numbers') FROM generate_series(1, $1::int8)",
        &[&(new.len() as i64)],
    )
    .await?
    .iter()
    .map(|r| get(r, 0))
    .collect::<Result<_, _>>()?;
    if docs.len() != new.len() {
        return Err(StoreError::Postgres("too few doc numbers".into()));
    }
    let conv: Vec<&str> = new.iter().map(|n| n.conv.as_str()).collect();
    let seq: Vec<i64> = new.iter().map(|n| n.seq).collect();
    let ts: Vec<i64> = new.iter().map(|n| n.ts).collect();
    let user: Vec<&str> = new.iter().map(|n| n.user.as_str()).collect();
    let cmid: Vec<&str> = new.iter().map(|n| n.client_msg_id.as_str()).collect();
    let data: Vec<&str> = new.iter().map(|n| n.data.as_str()).collect();
    let eid: Vec<&str> = new.iter().map(|n| n.eid.as_str()).collect();
    let mut index = Words::default();
    for (n, doc) in new.iter().zip(&docs) {
        let EventBody::Message { body, .. } = &n.body else {
            continue;
        };
        if body.trim().is_empty() {
            continue;
        }
        index.doc.push(*doc);
        index.conv.push(&n.conv);
        index.seq.push(n.seq);
        index.ts.push(n.ts);
        index.sender.push(&n.user);
        index.words.push(words(body));
    }
    let p_counters: [&(dyn ToSql + Sync); 2] = [&lc, &ls];
    let p_events: [&(dyn ToSql + Sync); 8] = [&conv, &seq, &ts, &user, &cmid, &data, &eid, &docs];
    let counters = exec(
        w.tx,
        "UPDATE conversations c SET last_seq = v.s
         FROM unnest($1::text[], $2::int8[]) AS v(id, s) WHERE c.id = v.id",
        &p_counters,
    );
    let events = rows(
        w.tx,
        "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq,
                             data, eid, doc, bot)
         SELECT v.c, v.s, v.t, v.u, 'message', v.m, NULL, v.d, v.e, v.i,
                (SELECT true FROM users WHERE username = v.u AND kind <> 'person')
         FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::int8[]) AS v(c, s, t, u, m, d, e, i)
         ON CONFLICT (client_msg_id, sender) WHERE client_msg_id IS NOT NULL DO NOTHING
         RETURNING conversation_id, seq, bot",
        &p_events,
    );
    let search = async {
        if index.doc.is_empty() {
            return Ok(0);
        }
        exec(
            w.tx,
            "INSERT INTO search_docs (id, conversation_id, seq, ts, sender, words)
             SELECT v.i, v.c, v.s, v.t, v.u, v.w::tsvector
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[])
                  AS v(i, c, s, t, u, w)",
            &[
                &index.doc,
                &index.conv,
                &index.seq,
                &index.ts,
                &index.sender,
                &index.words,
            ],
        )
        .await
    };
    let (_, written, _) = tokio::try_join!(counters, events, search)?;
    if written.len() != new.len() {
        // A client_msg_id was taken meanwhile by another node: run again.
        return Err(lost_race());
    }
    let mut bots: HashSet<(String, i64)> = HashSet::new();
    for r in &written {
        if get::<Option<bool>>(r, 2)?.unwrap_or(false) {
            bots.insert((get(r, 0)?, get(r, 1)?));
        }
    }
    for n in new {
        let bot = !bots.is_empty() && bots.contains(&(n.conv.clone(), n.seq));
        let event = Event {
            conversation_id: n.conv,
            seq: n.seq as u64,
            ts: n.ts,
            sender: n.user,
            client_msg_id: Some(n.client_msg_id),
            eid: Some(n.eid),
            bot,
            body: n.body,
        };
        let push = encode_event_with_body(&event, &n.data);
        w.changes.push(Committed::Event(Arc::new(event), push));
    }
    Ok(())
}
