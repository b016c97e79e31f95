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

/// Whether `op` is a plain message, which [`apply`] writes.
pub(super) fn plain(op: &Append) -> bool {
    matches!(
        op,
        Append::Event {
            body: EventBody::Message { reply_to: None, .. },
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

/// Read the facts of a run.
async fn read(w: &W<'_>, ops: &[(&str, &str, &str)]) -> Result<Known, StoreError> {
    let mut k = Known::default();
    let mut convs: Vec<&str> = ops.iter().map(|(_, c, _)| *c).collect();
    convs.sort_unstable();
    convs.dedup();
    for r in rows(
        w.tx,
        "SELECT id, kind, last_seq FROM conversations WHERE id = ANY($1)",
        &[&convs],
    )
    .await?
    {
        let kind: String = get(&r, 1)?;
        let kind = ConvKind::parse(&kind)
            .ok_or_else(|| StoreError::Postgres(format!("a conversation of kind {kind}")))?;
        k.convs.insert(get(&r, 0)?, (kind, get(&r, 2)?));
    }
    let mut pairs: Vec<(&str, &str)> = ops.iter().map(|(u, c, _)| (*c, *u)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (pc, pu): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    for r in rows(
        w.tx,
        "SELECT m.conversation_id, m.username, m.role FROM members m
         JOIN unnest($1::text[], $2::text[]) AS q(c, u)
           ON m.conversation_id = q.c AND m.username = q.u",
        &[&pc, &pu],
    )
    .await?
    {
        let role = MemberRole::parse(&get::<String>(&r, 2)?).unwrap_or_default();
        k.roles.insert((get(&r, 0)?, get(&r, 1)?), role);
    }
    let dms: Vec<&str> = convs
        .iter()
        .copied()
        .filter(|c| matches!(k.convs.get(*c), Some((ConvKind::Dm, _))))
        .collect();
    if !dms.is_empty() {
        for r in rows(
            w.tx,
            "SELECT conversation_id, username, role FROM members WHERE conversation_id = ANY($1)",
            &[&dms],
        )
        .await?
        {
            let role = MemberRole::parse(&get::<String>(&r, 2)?).unwrap_or_default();
            k.dm_members
                .entry(get(&r, 0)?)
                .or_default()
                .push((get(&r, 1)?, role));
        }
        let people: Vec<&str> = k
            .dm_members
            .values()
            .flatten()
            .map(|(u, _)| u.as_str())
            .collect();
        let senders: Vec<&str> = ops.iter().map(|(u, _, _)| *u).collect();
        for r in rows(
            w.tx,
            "SELECT blocker, blocked FROM blocks WHERE blocker = ANY($1) AND blocked = ANY($2)",
            &[&people, &senders],
        )
        .await?
        {
            k.blocks.insert((get(&r, 0)?, get(&r, 1)?));
        }
    }
    let (mu, mm): (Vec<&str>, Vec<&str>) = ops.iter().map(|(u, _, m)| (*u, *m)).unzip();
    for r in rows(
        w.tx,
        "SELECT e.sender, e.client_msg_id, e.conversation_id, e.seq, e.ts, e.kind FROM events e
         JOIN unnest($1::text[], $2::text[]) AS q(u, m)
           ON e.sender = q.u AND e.client_msg_id = q.m",
        &[&mu, &mm],
    )
    .await?
    {
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

/// Write what was decided: the counters, the events, their search words;
/// then the events go to the transaction's changes, in order.
async fn write(w: &mut W<'_>, new: Vec<New>, known: &Known) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, i64> = HashMap::new();
    for n in &new {
        last.insert(&n.conv, n.seq);
    }
    let (lc, ls): (Vec<&str>, Vec<i64>) = last.into_iter().unzip();
    exec(
        w.tx,
        "UPDATE conversations c SET last_seq = v.s
         FROM unnest($1::text[], $2::int8[]) AS v(id, s) WHERE c.id = v.id",
        &[&lc, &ls],
    )
    .await?;
    debug_assert!(lc.iter().all(|c| known.convs.contains_key(*c)));
    let conv: Vec<&str> = new.iter().map(|n| n.conv.as_str()).collect();
    let seq: Vec<i64> = new.iter().map(|n| n.seq).collect();
    let ts: Vec<i64> = new.iter().map(|n| n.ts).collect();
    let user: Vec<&str> = new.iter().map(|n| n.user.as_str()).collect();
    let cmid: Vec<&str> = new.iter().map(|n| n.client_msg_id.as_str()).collect();
    let data: Vec<&str> = new.iter().map(|n| n.data.as_str()).collect();
    let eid: Vec<&str> = new.iter().map(|n| n.eid.as_str()).collect();
    let written = rows(
        w.tx,
        "INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id, target_seq,
                             data, eid, doc, bot)
         SELECT v.c, v.s, v.t, v.u, 'message', v.m, NULL, v.d, v.e,
                nextval('search_doc_numbers'),
                (SELECT true FROM users WHERE username = v.u AND kind <> 'person')
         FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[],
                     $7::text[]) WITH ORDINALITY AS v(c, s, t, u, m, d, e, n)
         ORDER BY v.n
         ON CONFLICT (sender, client_msg_id) WHERE client_msg_id IS NOT NULL DO NOTHING
         RETURNING conversation_id, seq, doc, bot",
        &[&conv, &seq, &ts, &user, &cmid, &data, &eid],
    )
    .await?;
    if written.len() != new.len() {
        // A client_msg_id was taken meanwhile by another node: run again.
        return Err(lost_race());
    }
    let mut stored: HashMap<(String, i64), (i64, bool)> = HashMap::with_capacity(written.len());
    for r in &written {
        let doc: i64 = get(r, 2)?;
        let bot = get::<Option<bool>>(r, 3)?.unwrap_or(false);
        stored.insert((get(r, 0)?, get(r, 1)?), (doc, bot));
    }
    let mut index: (
        Vec<i64>,
        Vec<&str>,
        Vec<i64>,
        Vec<i64>,
        Vec<&str>,
        Vec<String>,
    ) = Default::default();
    for n in &new {
        let EventBody::Message { body, .. } = &n.body else {
            continue;
        };
        if body.trim().is_empty() {
            continue;
        }
        let Some((doc, _)) = stored.get(&(n.conv.clone(), n.seq)) else {
            return Err(StoreError::Write("an event was not written back".into()));
        };
        index.0.push(*doc);
        index.1.push(&n.conv);
        index.2.push(n.seq);
        index.3.push(n.ts);
        index.4.push(&n.user);
        index.5.push(words(body));
    }
    if !index.0.is_empty() {
        exec(
            w.tx,
            "INSERT INTO search_docs (id, conversation_id, seq, ts, sender, words)
             SELECT v.i, v.c, v.s, v.t, v.u, v.w::tsvector
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::text[])
                  AS v(i, c, s, t, u, w)",
            &[&index.0, &index.1, &index.2, &index.3, &index.4, &index.5],
        )
        .await?;
    }
    for n in new {
        let bot = stored.get(&(n.conv.clone(), n.seq)).is_some_and(|s| s.1);
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
