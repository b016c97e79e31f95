//! The whole sync path as a property: whatever the delivery (duplicated,
//! reordered, dropped, in any chunks), gap filling the way the client does it
//! ends with exactly the server's log, and the folded view equals folding
//! that log in seq order.

use super::*;
use crate::client::text::{excerpt, mentions};
use crate::client::view::{MessageRow, MessageView, ReactionView, ReplyQuote, SendState};
use crate::proto::{ConvKind, EventBody};
use proptest::prelude::*;
use std::collections::HashMap;

const USERS: [&str; 3] = ["alice", "bob", "carol"];
const TEXTS: [&str; 5] = [
    "hello",
    "@alice look",
    "two\nlines",
    "@bob hi",
    "ok @alice.",
];
const EMOJI: [&str; 2] = ["+1", "🎉"];

/// Turn generated choices into a valid, dense server log.
fn build_log(conv: &str, ops: &[(u8, u8, u16, u8)]) -> Vec<Event> {
    let members: Vec<String> = USERS.iter().map(|u| u.to_string()).collect();
    let mut log = vec![ev(
        conv,
        1,
        "alice",
        EventBody::Create {
            name: Some(conv.into()),
            members,
        },
    )];
    let mut messages: Vec<(u64, &str)> = Vec::new();
    for &(kind, user, pick, text) in ops {
        let seq = log.len() as u64 + 1;
        let user = USERS[user as usize % USERS.len()];
        let target = (!messages.is_empty()).then(|| messages[pick as usize % messages.len()]);
        let text = TEXTS[text as usize % TEXTS.len()];
        let body = match (kind % 10, target) {
            (5, Some((t, author))) => {
                let sender = if pick % 4 == 0 { user } else { author };
                log.push(ev(
                    conv,
                    seq,
                    sender,
                    EventBody::Edit {
                        target_seq: t,
                        body: text.into(),
                        encrypted: None,
                    },
                ));
                continue;
            }
            (6, Some((t, _))) => EventBody::Delete { target_seq: t },
            (7 | 8, Some((t, _))) => EventBody::Reaction {
                target_seq: t,
                emoji: EMOJI[pick as usize % 2].into(),
                remove: kind % 10 == 8,
                encrypted: None,
            },
            (9, _) => match pick % 3 {
                0 => EventBody::Rename { name: text.into() },
                1 => EventBody::Join {
                    members: vec![user.into()],
                },
                _ => EventBody::Leave {
                    members: vec![user.into()],
                },
            },
            _ => {
                let reply_to = (pick % 3 == 0).then(|| 1 + pick as u64 % (seq - 1));
                messages.push((seq, user));
                EventBody::Message {
                    body: text.into(),
                    reply_to,
                    encrypted: None,
                }
            }
        };
        log.push(ev(conv, seq, user, body));
    }
    log
}

/// The view of a whole log folded in seq order, written independently of
/// the cache's read-time folding.
fn reference_fold(log: &[Event], me: &str) -> Vec<MessageRow> {
    let mut rows: Vec<MessageRow> = Vec::new();
    let mut at: HashMap<u64, usize> = HashMap::new();
    let mut reacts: HashMap<u64, Vec<(String, String)>> = HashMap::new();
    for e in log {
        let target = match &e.body {
            EventBody::Edit { target_seq, .. }
            | EventBody::Delete { target_seq }
            | EventBody::Reaction { target_seq, .. } => at.get(target_seq).copied(),
            _ => None,
        };
        let tv = target.and_then(|i| match &mut rows[i] {
            MessageRow::Message(v) => Some(v),
            _ => None,
        });
        match (&e.body, tv) {
            (EventBody::Message { body, reply_to, .. }, _) => {
                at.insert(e.seq, rows.len());
                rows.push(MessageRow::Message(MessageView {
                    seq: Some(e.seq),
                    client_msg_id: e.client_msg_id.clone(),
                    sender: e.sender.clone(),
                    ts: e.ts,
                    body: body.clone(),
                    file: None,
                    edited: false,
                    deleted: false,
                    moderated: false,
                    reactions: vec![],
                    reply_to: reply_to.map(|seq| ReplyQuote {
                        seq,
                        sender: String::new(),
                        excerpt: String::new(),
                    }),
                    send_state: (e.sender == me).then_some(SendState::Sent),
                    mentions_me: false,
                    bot: e.bot,
                }));
            }
            (EventBody::Edit { body, .. }, Some(v)) if !v.deleted && v.sender == e.sender => {
                v.body = body.clone();
                v.edited = true;
            }
            (EventBody::Delete { .. }, Some(v)) => {
                if !v.deleted {
                    v.moderated = v.sender != e.sender;
                }
                v.deleted = true;
                v.body.clear();
            }
            (
                EventBody::Reaction {
                    target_seq,
                    emoji,
                    remove,
                    ..
                },
                Some(_),
            ) => {
                let list = reacts.entry(*target_seq).or_default();
                let key = (emoji.clone(), e.sender.clone());
                if *remove {
                    list.retain(|k| *k != key);
                } else if !list.contains(&key) {
                    list.push(key);
                }
            }
            (body, _) => {
                if let Some(change) = crate::client::view::SystemChange::of(body) {
                    rows.push(MessageRow::System {
                        seq: e.seq,
                        ts: e.ts,
                        sender: e.sender.clone(),
                        change,
                    });
                }
            }
        }
    }
    let snapshot = rows.clone();
    let quote = |seq: u64| -> (String, String) {
        match at.get(&seq).map(|i| &snapshot[*i]) {
            Some(MessageRow::Message(v)) => (v.sender.clone(), excerpt(&v.body)),
            _ => log
                .iter()
                .find(|e| e.seq == seq)
                .map_or((String::new(), String::new()), |e| {
                    (e.sender.clone(), String::new())
                }),
        }
    };
    for row in &mut rows {
        let MessageRow::Message(v) = row else {
            continue;
        };
        v.mentions_me = !v.deleted && mentions(&v.body, me);
        if let Some(q) = &mut v.reply_to {
            (q.sender, q.excerpt) = quote(q.seq);
        }
        let seq = v.seq.unwrap_or(0);
        if v.deleted {
            continue;
        }
        for (emoji, user) in reacts.get(&seq).into_iter().flatten() {
            match v.reactions.iter_mut().find(|r| &r.emoji == emoji) {
                Some(r) => r.users.push(user.clone()),
                None => v.reactions.push(ReactionView {
                    emoji: emoji.clone(),
                    users: vec![user.clone()],
                }),
            }
        }
    }
    rows
}

/// A small deterministic generator for the delivery schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn ops() -> impl Strategy<Value = Vec<(u8, u8, u16, u8)>> {
    proptest::collection::vec((any::<u8>(), any::<u8>(), any::<u16>(), any::<u8>()), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn delivery_then_gap_filling_converges(
        convs in proptest::collection::vec(ops(), 1..=3),
        seed in any::<u64>(),
        drop_pct in 0u64..60,
    ) {
        let logs: Vec<(String, Vec<Event>)> = convs
            .iter()
            .enumerate()
            .map(|(i, ops)| {
                let id = format!("c{i}");
                let log = build_log(&id, ops);
                (id, log)
            })
            .collect();
        let mut rng = Rng(seed);
        let mut delivery: Vec<Event> = Vec::new();
        for e in logs.iter().flat_map(|(_, l)| l) {
            if rng.below(100) < drop_pct {
                continue;
            }
            for _ in 0..1 + rng.below(3) / 2 {
                delivery.push(e.clone());
            }
        }
        for i in (1..delivery.len()).rev() {
            delivery.swap(i, rng.below(i as u64 + 1) as usize);
        }

        let mut cache = cache_as("alice");
        let mut rest = &delivery[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(25) as usize).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            cache.apply_events(chunk).unwrap();
            rest = tail;
        }
        for (id, log) in &logs {
            let mut conv = conversation(id, ConvKind::Group, Some(id), &USERS);
            conv.last_seq = log.len() as u64;
            cache.upsert_conversation(&conv).unwrap();
        }

        let mut rounds = 0;
        loop {
            let mut fetched = false;
            for (id, log) in &logs {
                for (from, to) in cache.missing_ranges(id).unwrap() {
                    prop_assert!(from >= 1 && to <= log.len() as u64 && from <= to);
                    let page = &log[from as usize - 1..to as usize];
                    for chunk in page.chunks(7) {
                        cache.apply_events(chunk).unwrap();
                    }
                    fetched = true;
                }
            }
            rounds += 1;
            if !fetched {
                break;
            }
            prop_assert!(rounds < 3, "gap filling did not converge");
        }

        for (id, log) in &logs {
            let last = log.len() as u64;
            prop_assert_eq!(&cache.events(id, 0, u64::MAX).unwrap(), &without_deleted_text(log));
            prop_assert_eq!(cache.cursor(id).unwrap(), last);
            prop_assert!(cache.missing_ranges(id).unwrap().is_empty());
            let expected = reference_fold(log, "alice");
            prop_assert_eq!(&cache.messages(id, None, 10_000).unwrap(), &expected);

            let mut paged: Vec<MessageRow> = Vec::new();
            let mut before = None;
            loop {
                let page = cache.messages(id, before, 4).unwrap();
                let Some(first) = page.iter().find_map(|r| match r {
                    MessageRow::Message(v) => v.seq,
                    MessageRow::System { seq, .. } => Some(*seq),
                    MessageRow::Missing { .. } => None,
                }) else {
                    break;
                };
                paged.splice(0..0, page);
                before = Some(first);
            }
            prop_assert_eq!(&paged, &expected);
        }
        let summaries = cache.conversations().unwrap();
        prop_assert!(summaries.iter().all(|s| !s.has_gap && s.cursor == s.last_seq));
    }
}

/// The log as the cache keeps it: the text of deleted messages and of their
/// edits cleared.
fn without_deleted_text(log: &[Event]) -> Vec<Event> {
    let deleted: std::collections::HashSet<u64> = log
        .iter()
        .filter_map(|e| match e.body {
            EventBody::Delete { target_seq } => Some(target_seq),
            _ => None,
        })
        .collect();
    log.iter()
        .cloned()
        .map(|mut e| {
            match &mut e.body {
                EventBody::Message { body, .. } if deleted.contains(&e.seq) => body.clear(),
                EventBody::Edit {
                    target_seq, body, ..
                } if deleted.contains(target_seq) => body.clear(),
                _ => {}
            }
            e
        })
        .collect()
}
