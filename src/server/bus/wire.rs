//! What travels on the bus: one JSON object per Redis message, tagged by
//! `t`, naming the node that sent it (`n`).
//!
//! A committed batch carries each event's push frame verbatim (`{"ev":
//! <frame>}`): the sending node encoded it once for its own clients, and
//! every other node hands the same text to theirs. Receivers decode the
//! frame to learn the event's conversation, seq and effect, never encode it
//! again. A batch larger than [`MAX_MESSAGE_BYTES`] is split between
//! changes, in order. Unknown tags decode to an error the receiver ignores,
//! so a newer node may add messages. The changes of secret conversations
//! (a conversation made secret, to-device pushes, changed devices) travel
//! in messages of their own tag (`k`), in their place in the batch's
//! order: a node that does not know them skips them and still applies the
//! rest.

use crate::proto::{ConvKind, Millis, PresenceStatus, ReceiptPair, ServerFrame};
use crate::server::queue::Ended;
use crate::store::log::Committed;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::fmt::Write;
use std::sync::Arc;

/// Bytes above which a committed batch is split into several messages (a
/// single larger change still goes, alone).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A message as received, borrowing from its text.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// Committed changes, in commit order.
    Commit {
        node: &'a str,
        changes: Vec<WireChange<'a>>,
    },
    Typing {
        node: &'a str,
        conversation: String,
        user: String,
        active: bool,
    },
    Presence(PresenceNote<'a>),
    End(EndNote<'a>),
    /// A node (re)joined the bus. With `lost`, it failed to publish some
    /// messages: everyone reconciles with the store.
    Hello {
        node: &'a str,
        lost: bool,
    },
}

// The bodies of the messages, after their tag. (A tagged enum would
// buffer each message, which the verbatim push frames cannot go through.)

#[derive(Deserialize)]
struct CommitBody<'a> {
    #[serde(rename = "n", borrow)]
    node: &'a str,
    #[serde(rename = "c", borrow)]
    changes: Vec<WireChange<'a>>,
}

#[derive(Deserialize)]
struct TypingBody<'a> {
    #[serde(rename = "n", borrow)]
    node: &'a str,
    #[serde(rename = "c")]
    conversation: String,
    #[serde(rename = "u")]
    user: String,
    #[serde(rename = "a")]
    active: bool,
}

#[derive(Deserialize)]
struct HelloBody<'a> {
    #[serde(rename = "n", borrow)]
    node: &'a str,
    #[serde(rename = "l", default)]
    lost: bool,
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(borrow)]
    t: std::borrow::Cow<'a, str>,
}

/// One change of a committed batch.
#[derive(Debug, Deserialize)]
pub enum WireChange<'a> {
    #[serde(rename = "new")]
    Created(String, ConvKind, Option<String>),
    /// An event's push frame, as its node encoded it.
    #[serde(rename = "ev", borrow)]
    Event(&'a RawValue),
    #[serde(rename = "rc")]
    Receipt(String, String, u64, u64),
    #[serde(rename = "u")]
    User(String),
    #[serde(rename = "bl")]
    Block(String, String, bool),
    /// A conversation just created is secret.
    #[serde(rename = "enc")]
    Encrypted(String),
    /// A to-device message: its user, the session's token digest (hex)
    /// and its push frame (as text).
    #[serde(rename = "td")]
    ToDevice(String, String, String),
    /// A user's devices changed (and whether their identity key did).
    #[serde(rename = "dv")]
    Devices(String, bool),
}

/// A user's presence on one node: `None` is offline there.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PresenceNote<'a> {
    #[serde(rename = "n", borrow)]
    pub node: &'a str,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "s")]
    pub status: PresenceStatus,
    /// When it changed (the last seen of a user going offline).
    #[serde(rename = "at")]
    pub at: Millis,
}

/// Close a user's connections: those using the sessions whose token
/// digests (hex) are listed, or all of them.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndNote<'a> {
    #[serde(rename = "n", borrow)]
    pub node: &'a str,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "k")]
    pub tokens: Option<Vec<String>>,
    #[serde(rename = "w")]
    pub why: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("undecodable bus message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a bus event frame is not an event")]
    NotAnEvent,
    #[error("a bus to-device message names no session")]
    BadToken,
    #[error("unknown bus message {0:?}")]
    Unknown(String),
}

impl Incoming<'_> {
    pub fn decode(text: &str) -> Result<Incoming<'_>, WireError> {
        // The tag comes first in what nodes write; read it without a parse
        // where it does.
        let tag = match crate::proto::leading_tag(text, "t") {
            Some(tag) => std::borrow::Cow::Borrowed(tag),
            None => serde_json::from_str::<Tag>(text)?.t,
        };
        Ok(match &*tag {
            "c" | "k" => {
                let b: CommitBody = serde_json::from_str(text)?;
                Incoming::Commit {
                    node: b.node,
                    changes: b.changes,
                }
            }
            "typ" => {
                let b: TypingBody = serde_json::from_str(text)?;
                Incoming::Typing {
                    node: b.node,
                    conversation: b.conversation,
                    user: b.user,
                    active: b.active,
                }
            }
            "pr" => Incoming::Presence(serde_json::from_str(text)?),
            "end" => Incoming::End(serde_json::from_str(text)?),
            "hello" => {
                let b: HelloBody = serde_json::from_str(text)?;
                Incoming::Hello {
                    node: b.node,
                    lost: b.lost,
                }
            }
            other => return Err(WireError::Unknown(other.to_string())),
        })
    }

    /// The node that sent it.
    pub fn node(&self) -> &str {
        match self {
            Incoming::Commit { node, .. }
            | Incoming::Typing { node, .. }
            | Incoming::Hello { node, .. } => node,
            Incoming::Presence(p) => p.node,
            Incoming::End(e) => e.node,
        }
    }
}

/// The committed changes a batch carries, as the hub applies them.
pub fn committed(changes: &[WireChange<'_>]) -> Result<Vec<Committed>, WireError> {
    changes
        .iter()
        .map(|c| {
            Ok(match c {
                WireChange::Created(id, kind, name) => Committed::Created {
                    id: id.clone(),
                    kind: *kind,
                    name: name.clone(),
                },
                WireChange::Event(raw) => {
                    let text = raw.get();
                    match ServerFrame::decode(text)? {
                        ServerFrame::Event(ev) => Committed::Event(Arc::new(ev), text.to_string()),
                        _ => return Err(WireError::NotAnEvent),
                    }
                }
                WireChange::Receipt(conversation_id, user, delivered, read) => Committed::Receipt {
                    conversation_id: conversation_id.clone(),
                    user: user.clone(),
                    receipt: ReceiptPair {
                        delivered: *delivered,
                        read: *read,
                    },
                },
                WireChange::User(u) => Committed::User(u.clone()),
                WireChange::Block(blocker, blocked, on) => Committed::Block {
                    blocker: blocker.clone(),
                    blocked: blocked.clone(),
                    on: *on,
                },
                WireChange::Encrypted(id) => Committed::Encrypted(id.clone()),
                WireChange::ToDevice(user, token, push) => {
                    let mut digest = [0u8; 32];
                    hex::decode_to_slice(token, &mut digest).map_err(|_| WireError::BadToken)?;
                    Committed::ToDevice {
                        user: user.clone(),
                        token: digest,
                        push: push.clone(),
                    }
                }
                WireChange::Devices(user, identity_changed) => Committed::Devices {
                    user: user.clone(),
                    identity_changed: *identity_changed,
                },
            })
        })
        .collect()
}

/// A committed batch as messages of at most [`MAX_MESSAGE_BYTES`] (but
/// one change each at least), in order. Push frames are copied in as they
/// are.
pub fn encode_commit(node: &str, changes: &[Committed]) -> Vec<String> {
    let head = |tag: &str| format!(r#"{{"t":"{tag}","n":{},"c":["#, json(node));
    let mut out = Vec::new();
    let mut tag = "c";
    let mut msg = head(tag);
    let mut items = 0;
    for change in changes {
        let item = encode_change(change);
        let wants = if secret(change) { "k" } else { "c" };
        if items > 0 && (wants != tag || msg.len() + item.len() + 3 > MAX_MESSAGE_BYTES) {
            msg.push_str("]}");
            out.push(std::mem::replace(&mut msg, head(wants)));
            items = 0;
        }
        if items == 0 && wants != tag {
            msg = head(wants);
        }
        tag = wants;
        if items > 0 {
            msg.push(',');
        }
        msg.push_str(&item);
        items += 1;
    }
    if items > 0 {
        msg.push_str("]}");
        out.push(msg);
    }
    out
}

/// Whether `change` is one of secret conversations (see the module doc).
fn secret(change: &Committed) -> bool {
    matches!(
        change,
        Committed::Encrypted(_) | Committed::ToDevice { .. } | Committed::Devices { .. }
    )
}

fn encode_change(change: &Committed) -> String {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = match change {
        Committed::Created { id, kind, name } => write!(
            s,
            r#"{{"new":[{},{},{}]}}"#,
            json(id),
            json(kind),
            json(name)
        ),
        Committed::Event(_, push) => {
            s.reserve(push.len() + 8);
            s.push_str(r#"{"ev":"#);
            s.push_str(push);
            s.push('}');
            Ok(())
        }
        Committed::Receipt {
            conversation_id,
            user,
            receipt,
        } => write!(
            s,
            r#"{{"rc":[{},{},{},{}]}}"#,
            json(conversation_id),
            json(user),
            receipt.delivered,
            receipt.read
        ),
        Committed::User(u) => write!(s, r#"{{"u":{}}}"#, json(u)),
        Committed::Block {
            blocker,
            blocked,
            on,
        } => write!(s, r#"{{"bl":[{},{},{on}]}}"#, json(blocker), json(blocked)),
        Committed::Encrypted(id) => write!(s, r#"{{"enc":{}}}"#, json(id)),
        Committed::ToDevice { user, token, push } => write!(
            s,
            r#"{{"td":[{},"{}",{}]}}"#,
            json(user),
            hex::encode(token),
            json(push)
        ),
        Committed::Devices {
            user,
            identity_changed,
        } => write!(s, r#"{{"dv":[{},{identity_changed}]}}"#, json(user)),
    };
    s
}

pub fn encode_typing(node: &str, conversation: &str, user: &str, active: bool) -> String {
    format!(
        r#"{{"t":"typ","n":{},"c":{},"u":{},"a":{active}}}"#,
        json(node),
        json(conversation),
        json(user)
    )
}

pub fn encode_presence(note: &PresenceNote<'_>) -> String {
    tagged("pr", note)
}

pub fn encode_end(note: &EndNote<'_>) -> String {
    tagged("end", note)
}

pub fn encode_hello(node: &str, lost: bool) -> String {
    format!(r#"{{"t":"hello","n":{},"l":{lost}}}"#, json(node))
}

/// `value`'s JSON object with `"t":tag` in front.
fn tagged(tag: &str, value: &impl Serialize) -> String {
    let body = json(value);
    match body.strip_prefix('{') {
        Some(rest) if rest != "}" => format!(r#"{{"t":"{tag}",{rest}"#),
        _ => format!(r#"{{"t":"{tag}"}}"#),
    }
}

fn json(v: &(impl Serialize + ?Sized)) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

/// [`Ended`] on the wire.
pub fn ended_code(why: Ended) -> u8 {
    why as u8
}

pub fn ended_from(code: u8) -> Option<Ended> {
    Ended::from_u8(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Event, EventBody, encode_event_with_body};

    fn event(conv: &str, seq: u64, body: &str) -> Committed {
        let ev = Event {
            conversation_id: conv.into(),
            seq,
            ts: 1_700_000_000_000,
            sender: "alice".into(),
            client_msg_id: Some("m1".into()),
            eid: Some("e1".into()),
            bot: false,
            body: EventBody::Message {
                body: body.into(),
                reply_to: None,
                encrypted: None,
            },
        };
        let data = serde_json::to_string(&ev.body).unwrap();
        let push = encode_event_with_body(&ev, &data);
        Committed::Event(Arc::new(ev), push)
    }

    fn sample() -> Vec<Committed> {
        vec![
            Committed::Created {
                id: "c1".into(),
                kind: ConvKind::Group,
                name: Some("ops \"team\"".into()),
            },
            event("c1", 1, "hello\nworld ☃"),
            Committed::Receipt {
                conversation_id: "c1".into(),
                user: "bob".into(),
                receipt: ReceiptPair {
                    delivered: 1,
                    read: 0,
                },
            },
            Committed::User("carol".into()),
            Committed::Block {
                blocker: "bob".into(),
                blocked: "eve".into(),
                on: true,
            },
            Committed::Encrypted("c1".into()),
            Committed::ToDevice {
                user: "bob".into(),
                token: [7u8; 32],
                push: r#"{"type":"to_device","seq":3,"body":{"x":"\"☃\""}}"#.into(),
            },
            Committed::Devices {
                user: "carol".into(),
                identity_changed: true,
            },
        ]
    }

    #[test]
    fn a_commit_round_trips_with_its_push_frames_verbatim() {
        let changes = sample();
        let msgs = encode_commit("node-a", &changes);
        // The secret conversations' changes in a message of their own,
        // after the rest (their place in the batch).
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].starts_with(r#"{"t":"c","#), "{}", msgs[0]);
        assert!(msgs[1].starts_with(r#"{"t":"k","#), "{}", msgs[1]);
        let mut back = Vec::new();
        for m in &msgs {
            let Incoming::Commit {
                node,
                changes: wire,
            } = Incoming::decode(m).unwrap()
            else {
                panic!("not a commit: {m}");
            };
            assert_eq!(node, "node-a");
            back.extend(committed(&wire).unwrap());
        }
        assert_eq!(back.len(), changes.len());
        for (a, b) in changes.iter().zip(&back) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
        // The frame is the sender's text, byte for byte.
        let (Committed::Event(_, sent), Committed::Event(_, got)) = (&changes[1], &back[1]) else {
            panic!("events expected");
        };
        assert_eq!(sent, got);
    }

    #[test]
    fn secret_changes_keep_their_place_between_the_others() {
        let changes = vec![
            Committed::Created {
                id: "s".into(),
                kind: ConvKind::Dm,
                name: None,
            },
            Committed::Encrypted("s".into()),
            event("s", 1, ""),
            Committed::Devices {
                user: "bob".into(),
                identity_changed: false,
            },
        ];
        let msgs = encode_commit("n", &changes);
        let tags: Vec<&str> = msgs.iter().map(|m| &m[6..7]).collect();
        assert_eq!(tags, ["c", "k", "c", "k"]);
        let mut back = Vec::new();
        for m in &msgs {
            let Incoming::Commit { changes, .. } = Incoming::decode(m).unwrap() else {
                panic!("not a commit: {m}");
            };
            back.extend(committed(&changes).unwrap());
        }
        for (a, b) in changes.iter().zip(&back) {
            assert_eq!(format!("{a:?}"), format!("{b:?}"));
        }
    }

    #[test]
    fn a_large_batch_is_split_in_order() {
        let big = "x".repeat(MAX_MESSAGE_BYTES / 3);
        let changes: Vec<_> = (1..=7).map(|s| event("c", s, &big)).collect();
        let msgs = encode_commit("n", &changes);
        assert!(msgs.len() >= 3, "{} messages", msgs.len());
        let mut seqs = Vec::new();
        for m in &msgs {
            assert!(m.len() <= MAX_MESSAGE_BYTES, "{}", m.len());
            let Incoming::Commit { changes, .. } = Incoming::decode(m).unwrap() else {
                panic!("not a commit");
            };
            for c in committed(&changes).unwrap() {
                if let Committed::Event(ev, _) = c {
                    seqs.push(ev.seq);
                }
            }
        }
        assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
        // A change larger than a message goes alone.
        let huge = event("c", 9, &"y".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(encode_commit("n", &[huge]).len(), 1);
        assert!(encode_commit("n", &[]).is_empty());
    }

    #[test]
    fn the_small_messages_round_trip() {
        let t = encode_typing("n1", "c\"1", "bob", true);
        match Incoming::decode(&t).unwrap() {
            Incoming::Typing {
                node,
                conversation,
                user,
                active,
            } => assert_eq!(
                (node, &*conversation, &*user, active),
                ("n1", "c\"1", "bob", true)
            ),
            other => panic!("{other:?}"),
        }
        let note = PresenceNote {
            node: "n1",
            user: "bob".into(),
            status: PresenceStatus::Away,
            at: 5,
        };
        match Incoming::decode(&encode_presence(&note)).unwrap() {
            Incoming::Presence(p) => assert_eq!(p, note),
            other => panic!("{other:?}"),
        }
        let end = EndNote {
            node: "n2",
            user: "bob".into(),
            tokens: Some(vec!["ab".repeat(32)]),
            why: ended_code(Ended::PasswordChanged),
        };
        match Incoming::decode(&encode_end(&end)).unwrap() {
            Incoming::End(e) => {
                assert_eq!(e, end);
                assert_eq!(ended_from(e.why), Some(Ended::PasswordChanged));
            }
            other => panic!("{other:?}"),
        }
        match Incoming::decode(&encode_hello("n3", true)).unwrap() {
            Incoming::Hello { node, lost } => assert_eq!((node, lost), ("n3", true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn strangers_are_refused_not_fatal() {
        assert!(Incoming::decode(r#"{"t":"future","n":"x"}"#).is_err());
        assert!(Incoming::decode("not json").is_err());
        let not_event = r#"{"t":"c","n":"x","c":[{"ev":{"type":"typing","conversation_id":"c","user":"u","active":true}}]}"#;
        let Incoming::Commit { changes, .. } = Incoming::decode(not_event).unwrap() else {
            panic!("not a commit");
        };
        assert!(matches!(committed(&changes), Err(WireError::NotAnEvent)));
    }
}
