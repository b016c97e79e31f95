//! Plain messages of a batch, decided together and written with one
//! statement.
//!
//! A run of plain messages (no reply, the commonest write by far) would
//! cost eight or so statements each through the general path. Here the
//! facts the rules ask about such a message (the conversation's kind, the
//! sender's membership, a DM's members and blocks, an earlier use of the
//! `client_msg_id`) are read for the whole run at once, each message is
//! decided by the same [`rules`] over those facts, and what was decided is
//! written by one statement: the counters, the events and their search
//! words.
//!
//! The run is decided either under its conversations' row locks, inside a
//! batch's transaction (see [`super::batch`]), or without any lock, on its
//! own ([`Mode::Unlocked`]): then the facts read may change before the
//! write, and the write guards against that. A conversation's members and
//! roles (what a plain message's rules depend on besides facts that never
//! change) change only with its count of member changes, which the
//! database counts up in the changing transaction; the write updates a
//! conversation's counter only where that count is still the one read,
//! and writes the events only of conversations it updated. Messages to
//! the others are decided again, under the lock. The seqs come from the
//! counter as the write updates it, so the row is locked only for that
//! statement and its commit.

use super::W;
use super::db::{BEGIN, Conn, Tx, get};
use super::search::words;
use crate::proto::{ConvKind, Event, EventBody, MemberRole, encode_event_with_body, now_millis};
use crate::store::log::{Append, Appended, Committed, StoreError, new_event_id};
use crate::store::rules::{self, Decision, Facts, Prior, Target};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio_postgres::Statement;
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
    /// Each conversation's kind and count of member changes (see
    /// [`write`]).
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
    /// The senders that are bots.
    bots: HashSet<String>,
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

/// How a run is decided and written.
#[derive(Clone, Copy)]
pub(super) enum Mode<'a> {
    /// Inside a batch's transaction that holds the conversations' locks or
    /// takes them first: what `around` says goes out with the statements.
    Locked(Around<'a>),
    /// On its own, with no lock: the reads (in a short transaction of
    /// their own, closed before anything is decided) each answer what was
    /// committed when it ran, and the write is one statement that commits
    /// itself, guarded as the module doc says.
    Unlocked,
}

/// A message decided, to be written.
struct New {
    conv: String,
    /// Its place among the run's messages to its conversation, from 1.
    k: i64,
    ts: i64,
    user: String,
    client_msg_id: String,
    body: EventBody,
    data: String,
    eid: String,
}

/// A message's answer once decided: now, or once the write says its seq.
enum Answer {
    Now(Result<Appended, StoreError>),
    /// The seq of the run's `n`th message written (itself, or the earlier
    /// message of the run that used the same client message id).
    Written(usize),
}

/// Lock the batch's conversations, in id order (see [`super::batch`]).
pub(super) const LOCK: &str =
    "SELECT 1 FROM conversations WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE";

/// What a run in a batch's transaction sends besides its own statements,
/// in the same round trips: a run that opens the transaction sends `BEGIN`
/// and the locks before its reads, and one that is the whole transaction
/// sends `COMMIT` after its write. Such a batch takes two round trips in
/// all, and holds its conversations' locks for one and the commit.
#[derive(Clone, Copy, Default)]
pub(super) struct Around<'a> {
    /// The transaction to begin, when the run opens it.
    pub(super) begin: Option<&'a Tx>,
    /// Conversations to lock before anything is read (the batch's, when
    /// the run opens it).
    pub(super) lock: &'a [&'a str],
    /// The transaction to commit with the write, when the run is all of it.
    pub(super) commit: Option<&'a Tx>,
}

/// Send what `around` opens with: the transaction's `BEGIN`, then the
/// locks (`lock` is [`LOCK`] prepared). Both go out when this is first
/// polled, so a caller that polls it before other statements has them run
/// after these.
pub(super) async fn open(
    c: &Conn,
    around: Around<'_>,
    lock: &Statement,
) -> Result<(), tokio_postgres::Error> {
    let p: [&(dyn ToSql + Sync); 1] = [&around.lock];
    let begin = async {
        match around.begin {
            Some(t) => {
                t.begun();
                c.batch_execute(BEGIN).await
            }
            None => Ok(()),
        }
    };
    let locked = async {
        if around.lock.is_empty() {
            return Ok(Vec::new());
        }
        c.query(lock, &p).await
    };
    let (begun, locked) = tokio::join!(begin, locked);
    begun?;
    locked?;
    Ok(())
}

/// Earlier writes with the run's client message ids ($1, $2: sender and
/// id pairs): one probe of the idempotency index per pair, whatever the
/// log's size (`OFFSET 0` keeps the lookup apart; joined plainly, the
/// generic plan of a small log hashed all of it, about 0.5 ms a run).
pub(super) const PRIOR: &str =
    "SELECT e.sender, e.client_msg_id, e.conversation_id, e.seq, e.ts, e.kind
     FROM unnest($1::text[], $2::text[]) AS q(u, m)
     CROSS JOIN LATERAL (SELECT * FROM events e
                         WHERE e.sender = q.u AND e.client_msg_id = q.m OFFSET 0) AS e";

/// Sent before a run's reads inside a transaction. Their questions are
/// asked with arrays of any length, so PostgreSQL's own choice plans most
/// of them again on every run (a custom plan for the one length it sees
/// looks cheaper than the generic plan, made for arrays of ten): under
/// `fanout` through three nodes that planning took about a sixth of
/// PostgreSQL's processor. The generic plans are the index lookups the
/// questions are written for.
const GENERIC: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

/// Sent after a run's reads inside a transaction: what follows is planned
/// as the session says again.
const GENERIC_END: &str = "SET LOCAL plan_cache_mode TO DEFAULT";

/// Sent before a run's reads outside any transaction: they go in one of
/// their own (each then still sees what was committed when it ran, as
/// before), with generic plans.
const READS_GENERIC: &str =
    "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL plan_cache_mode = force_generic_plan";

/// Read the facts of a run, having first begun the transaction and locked
/// the batch's conversations where `mode`'s [`Around`] says so, and taken
/// `docs`
/// search doc numbers: every statement is sent before any answer is
/// awaited (the connection pipelines them), so the database runs them in
/// the order sent and answers in one round trip; the reads see what was
/// committed before the locks were granted. Doc numbers a refused or
/// repeated message leaves unused are skipped, as a rolled-back one's are.
async fn read(
    w: &W<'_>,
    ops: &[(&str, &str, &str)],
    mode: Mode<'_>,
    docs: usize,
) -> Result<(Known, Vec<i64>), StoreError> {
    let mut convs: Vec<&str> = ops.iter().map(|(_, c, _)| *c).collect();
    convs.sort_unstable();
    convs.dedup();
    let mut pairs: Vec<(&str, &str)> = ops.iter().map(|(u, c, _)| (*c, *u)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (pc, pu): (Vec<&str>, Vec<&str>) = pairs.into_iter().unzip();
    let mut senders: Vec<&str> = ops.iter().map(|(u, _, _)| *u).collect();
    senders.sort_unstable();
    senders.dedup();
    let (mu, mm): (Vec<&str>, Vec<&str>) = ops.iter().map(|(u, _, m)| (*u, *m)).unzip();
    let docs = docs as i64;
    let tx = w.tx;
    // Prepared first (once per connection), so that each query below is
    // sent when first polled, in the order written.
    let mut st = Vec::with_capacity(8);
    for sql in [
        LOCK,
        "SELECT id, kind, member_changes, encrypted FROM conversations WHERE id = ANY($1)",
        "SELECT m.conversation_id, m.username, m.role FROM members m
         JOIN unnest($1::text[], $2::text[]) AS q(c, u)
           ON m.conversation_id = q.c AND m.username = q.u",
        "SELECT m.conversation_id, m.username, m.role FROM members m
         JOIN conversations c ON c.id = m.conversation_id AND c.kind = 'dm'
         WHERE m.conversation_id = ANY($1)",
        "SELECT DISTINCT b.blocker, b.blocked FROM blocks b
         JOIN members m ON m.username = b.blocker AND m.conversation_id = ANY($2)
         JOIN conversations c ON c.id = m.conversation_id AND c.kind = 'dm'
         WHERE b.blocked = ANY($1)",
        PRIOR,
        "SELECT username FROM users WHERE username = ANY($1) AND kind <> 'person'",
        "SELECT nextval('search_doc_numbers') FROM generate_series(1, $1::int8)",
    ] {
        st.push(tx.prepare_cached(sql).await?);
    }
    let p_convs: [&(dyn ToSql + Sync); 1] = [&convs];
    let p_roles: [&(dyn ToSql + Sync); 2] = [&pc, &pu];
    let p_blocks: [&(dyn ToSql + Sync); 2] = [&senders, &convs];
    let p_prior: [&(dyn ToSql + Sync); 2] = [&mu, &mm];
    let p_bots: [&(dyn ToSql + Sync); 1] = [&senders];
    let p_docs: [&(dyn ToSql + Sync); 1] = [&docs];
    // The reads run with generic plans (see [`GENERIC`]): in the batch's
    // transaction, or, unlocked, in a transaction of their own. All are
    // answered before any is looked at: after a failed statement the rest
    // fail as "transaction aborted", and the first failure in the order
    // sent is the one that says why.
    let (around, before, after) = match mode {
        Mode::Locked(around) => (around, GENERIC, GENERIC_END),
        Mode::Unlocked => (Around::default(), READS_GENERIC, "COMMIT"),
    };
    let set = tx.batch_execute(before);
    let unset = tx.batch_execute(after);
    let (
        opened,
        set,
        conv_rows,
        role_rows,
        dm_rows,
        block_rows,
        prior_rows,
        bot_rows,
        doc_rows,
        unset,
    ) = tokio::join!(
        open(tx, around, &st[0]),
        set,
        tx.query(&st[1], &p_convs),
        tx.query(&st[2], &p_roles),
        tx.query(&st[3], &p_convs),
        tx.query(&st[4], &p_blocks),
        tx.query(&st[5], &p_prior),
        tx.query(&st[6], &p_bots),
        tx.query(&st[7], &p_docs),
        unset,
    );
    opened?;
    set?;
    let (conv_rows, role_rows, dm_rows, block_rows, prior_rows, bot_rows, doc_rows) = (
        conv_rows?,
        role_rows?,
        dm_rows?,
        block_rows?,
        prior_rows?,
        bot_rows?,
        doc_rows?,
    );
    unset?;
    let docs = doc_rows
        .iter()
        .map(|r| get(r, 0))
        .collect::<Result<_, _>>()?;
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
    for r in bot_rows {
        k.bots.insert(get(&r, 0)?);
    }
    Ok((k, docs))
}

/// Decide and write a run of plain messages ([`plain`]): each one's
/// answer (a refusal among them writes nothing), `None` for a message
/// [`Mode::Unlocked`] left to be decided again under the lock, or an error
/// that fails the run (and, locked, its transaction).
pub(super) async fn apply(
    w: &mut W<'_>,
    ops: Vec<Append>,
    mode: Mode<'_>,
) -> Result<Vec<Option<Result<Appended, StoreError>>>, StoreError> {
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
    let (mut known, docs) = read(w, &keys, mode, keys.len()).await?;
    let mut answers = Vec::with_capacity(msgs.len());
    let mut new: Vec<New> = Vec::new();
    // Which of `new` each client message id of the run went to.
    let mut ours: HashMap<(String, String), usize> = HashMap::new();
    let mut count: HashMap<String, i64> = HashMap::new();
    for (user, conv, cmid, body) in msgs {
        match decide(&mut known, &user, &conv, &cmid, &body).await {
            Ok(Some(done)) => match ours.get(&(user, cmid)) {
                // Sent twice in one run: the second is the first.
                Some(&n) => answers.push(Answer::Written(n)),
                None => answers.push(Answer::Now(Ok(done))),
            },
            Ok(None) => {
                let k = count.entry(conv.clone()).or_default();
                *k += 1;
                let ts = now_millis();
                // Seen by a later message of the run with the same id; its
                // seq is filled in once written.
                known.prior.insert(
                    (user.clone(), cmid.clone()),
                    Prior {
                        conversation_id: conv.clone(),
                        seq: 0,
                        ts,
                        kind: body.kind().to_string(),
                    },
                );
                ours.insert((user.clone(), cmid.clone()), new.len());
                answers.push(Answer::Written(new.len()));
                let data = serde_json::to_string(&body)
                    .map_err(|e| StoreError::Write(format!("encoding an event: {e}")))?;
                new.push(New {
                    conv,
                    k: *k,
                    ts,
                    user,
                    client_msg_id: cmid,
                    body,
                    data,
                    eid: new_event_id(),
                });
            }
            Err(e @ StoreError::Rejected(_)) => answers.push(Answer::Now(Err(e))),
            Err(e) => return Err(e),
        }
    }
    #[cfg(test)]
    if matches!(mode, Mode::Unlocked) {
        for conv in count.keys() {
            if let Some(h) = hold::take(conv) {
                h.reached.notify_one();
                h.release.notified().await;
            }
        }
    }
    let commit = match mode {
        Mode::Locked(around) => around.commit,
        Mode::Unlocked => None,
    };
    let bases = write(w, &new, &known, &docs, commit).await?;
    if matches!(mode, Mode::Locked(_)) && bases.len() != count.len() {
        return Err(StoreError::Postgres(
            "a locked conversation's member changes moved under its lock".into(),
        ));
    }
    let seqs: Vec<Option<i64>> = new
        .iter()
        .map(|n| bases.get(&n.conv).map(|base| base + n.k))
        .collect();
    let answers = answers
        .into_iter()
        .map(|a| match a {
            Answer::Now(r) => Some(r),
            Answer::Written(i) => seqs[i].map(|seq| {
                Ok(Appended {
                    conversation_id: new[i].conv.clone(),
                    seq: Some((seq as u64, new[i].ts)),
                })
            }),
        })
        .collect();
    for (n, seq) in new.into_iter().zip(seqs) {
        let Some(seq) = seq else {
            continue;
        };
        let event = Event {
            conversation_id: n.conv,
            seq: seq as u64,
            ts: n.ts,
            bot: known.bots.contains(&n.user),
            sender: n.user,
            client_msg_id: Some(n.client_msg_id),
            eid: Some(n.eid),
            body: n.body,
        };
        let push = encode_event_with_body(&event, &n.data);
        w.changes.push(Committed::Event(Arc::new(event), push));
    }
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

/// Write what was decided in one statement: each conversation's counter
/// moved on by its messages (where its member changes are still the count
/// read), the events of the conversations moved on, numbered from there,
/// with doc numbers from `docs` (taken with the reads), and their search
/// words; with it, when `commit` is given, the transaction's `COMMIT`.
/// Answers the seq before the run's first message of each conversation
/// written.
///
/// One statement, so that nothing can be half written: a `COMMIT` in the
/// same pipeline commits all of it or, once it failed, nothing; without a
/// transaction it commits itself. A client message id another writer took
/// meanwhile fails it as a unique key taken, and the run is tried again.
async fn write(
    w: &W<'_>,
    new: &[New],
    known: &Known,
    docs: &[i64],
    commit: Option<&Tx>,
) -> Result<HashMap<String, i64>, StoreError> {
    let tx = w.tx;
    if new.is_empty() {
        return Ok(HashMap::new());
    }
    let Some(docs) = docs.get(..new.len()) else {
        return Err(StoreError::Postgres("too few doc numbers".into()));
    };
    let mut moves: HashMap<&str, i64> = HashMap::new();
    for n in new {
        moves.insert(&n.conv, n.k);
    }
    let mut mc = Vec::with_capacity(moves.len());
    let mut mn = Vec::with_capacity(moves.len());
    let mut mv = Vec::with_capacity(moves.len());
    for (conv, n) in moves {
        let Some((_, changes)) = known.convs.get(conv) else {
            return Err(unasked("a conversation's member changes"));
        };
        mc.push(conv);
        mn.push(n);
        mv.push(*changes);
    }
    let conv: Vec<&str> = new.iter().map(|n| n.conv.as_str()).collect();
    let k: Vec<i64> = new.iter().map(|n| n.k).collect();
    let ts: Vec<i64> = new.iter().map(|n| n.ts).collect();
    let user: Vec<&str> = new.iter().map(|n| n.user.as_str()).collect();
    let cmid: Vec<&str> = new.iter().map(|n| n.client_msg_id.as_str()).collect();
    let data: Vec<&str> = new.iter().map(|n| n.data.as_str()).collect();
    let eid: Vec<&str> = new.iter().map(|n| n.eid.as_str()).collect();
    let bot: Vec<bool> = new.iter().map(|n| known.bots.contains(&n.user)).collect();
    let docs = docs.to_vec();
    let mut index_doc = Vec::new();
    let mut index_words = Vec::new();
    for (n, doc) in new.iter().zip(&docs) {
        let EventBody::Message { body, .. } = &n.body else {
            continue;
        };
        if body.trim().is_empty() {
            continue;
        }
        index_doc.push(*doc);
        index_words.push(words(body));
    }
    let params: [&(dyn ToSql + Sync); 14] = [
        &mc,
        &mn,
        &mv,
        &conv,
        &k,
        &ts,
        &user,
        &cmid,
        &data,
        &eid,
        &docs,
        &bot,
        &index_doc,
        &index_words,
    ];
    let st = tx
        .prepare_cached(
            "WITH moved AS (
                 UPDATE conversations c SET last_seq = c.last_seq + v.n
                 FROM unnest($1::text[], $2::int8[], $3::int8[]) AS v(id, n, changes)
                 WHERE c.id = v.id AND c.member_changes = v.changes
                 RETURNING c.id, c.last_seq - v.n AS base
             ), written AS (
                 INSERT INTO events (conversation_id, seq, ts, sender, kind, client_msg_id,
                                     target_seq, data, eid, doc, bot)
                 SELECT v.c, moved.base + v.k, v.t, v.u, 'message', v.m, NULL, v.d, v.e, v.i,
                        NULLIF(v.b, false)
                 FROM unnest($4::text[], $5::int8[], $6::int8[], $7::text[], $8::text[],
                             $9::text[], $10::text[], $11::int8[], $12::bool[])
                      AS v(c, k, t, u, m, d, e, i, b)
                 JOIN moved ON moved.id = v.c
                 RETURNING doc, conversation_id, seq, ts, sender
             ), indexed AS (
                 INSERT INTO search_docs (id, conversation_id, seq, ts, sender, words)
                 SELECT written.doc, written.conversation_id, written.seq, written.ts,
                        written.sender, v.w::tsvector
                 FROM written JOIN unnest($13::int8[], $14::text[]) AS v(i, w)
                   ON v.i = written.doc
                 RETURNING 1
             )
             SELECT id, base FROM moved",
        )
        .await?;
    let commit_too = async {
        match commit {
            Some(_) => tx.batch_execute("COMMIT").await,
            None => Ok(()),
        }
    };
    let (moved, committed) = tokio::join!(tx.query(&st, &params), commit_too);
    if let Some(t) = commit {
        // Answered: committed, or rolled back as the write failed.
        t.ended();
    }
    let moved = moved?;
    committed?;
    moved.iter().map(|r| Ok((get(r, 0)?, get(r, 1)?))).collect()
}

/// A pause between deciding and writing, for tests: the next unlocked run
/// with a message to a conversation named here stops once decided, until
/// released, so that a test can change the facts under it.
#[cfg(test)]
pub(super) mod hold {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Notify;

    #[derive(Default)]
    pub(in crate::store::pg) struct Hold {
        /// Notified once the run has decided.
        pub(in crate::store::pg) reached: Notify,
        /// The run writes once this is notified.
        pub(in crate::store::pg) release: Notify,
    }

    static HOLDS: Mutex<Option<HashMap<String, Arc<Hold>>>> = Mutex::new(None);

    /// Hold the next unlocked run that writes to `conv`.
    pub(in crate::store::pg) fn at(conv: &str) -> Arc<Hold> {
        let hold = Arc::new(Hold::default());
        let mut holds = HOLDS.lock().unwrap();
        holds
            .get_or_insert_default()
            .insert(conv.to_string(), hold.clone());
        hold
    }

    pub(super) fn take(conv: &str) -> Option<Arc<Hold>> {
        HOLDS.lock().unwrap().as_mut()?.remove(conv)
    }
}
