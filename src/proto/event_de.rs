//! Decoding [`Event`] and [`EventBody`] in one pass.
//!
//! Serde's derive for an internally tagged enum (`EventBody`, tagged by
//! `kind`) and for a struct that flattens one (`Event`) first copies every
//! field into an intermediate tree and then decodes the variant from that
//! copy: most of what a client spent per pushed event went there. Here
//! the fields of every kind are read into one flat struct, in any order,
//! and the variant is built from the ones its kind uses. Fields of other
//! kinds are read and dropped; a field missing for its kind is an error
//! named after it, as with the derive. So a field's name has one type in
//! every kind: a new field takes a new name rather than another kind's
//! with another type.

use super::keys::Encrypted;
use super::types::{Event, EventBody, FileInfo, MemberRole, Millis};
use serde::Deserialize;
use serde::de::{self, Deserializer};

/// The kinds, spelt as on the wire.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Message,
    Edit,
    Delete,
    Reaction,
    Join,
    Leave,
    Remove,
    Role,
    Rename,
    File,
    Create,
}

/// Every field an event or its body may carry.
#[derive(Deserialize)]
struct Flat {
    conversation_id: Option<String>,
    seq: Option<u64>,
    ts: Option<Millis>,
    sender: Option<String>,
    #[serde(default)]
    client_msg_id: Option<String>,
    #[serde(default)]
    eid: Option<String>,
    #[serde(default)]
    bot: bool,
    kind: Option<Kind>,
    body: Option<String>,
    reply_to: Option<u64>,
    encrypted: Option<Box<Encrypted>>,
    target_seq: Option<u64>,
    emoji: Option<String>,
    #[serde(default)]
    remove: bool,
    members: Option<Vec<String>>,
    user: Option<String>,
    role: Option<MemberRole>,
    name: Option<String>,
    file: Option<Box<FileInfo>>,
    caption: Option<String>,
}

fn need<T, E: de::Error>(v: Option<T>, field: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(field))
}

impl Flat {
    /// The body its kind describes, taken out of the fields.
    fn take_body<E: de::Error>(&mut self) -> Result<EventBody, E> {
        let kind = need(self.kind.take(), "kind")?;
        Ok(match kind {
            Kind::Message => EventBody::Message {
                body: need(self.body.take(), "body")?,
                reply_to: self.reply_to,
                encrypted: self.encrypted.take(),
            },
            Kind::Edit => EventBody::Edit {
                target_seq: need(self.target_seq, "target_seq")?,
                body: need(self.body.take(), "body")?,
                encrypted: self.encrypted.take(),
            },
            Kind::Delete => EventBody::Delete {
                target_seq: need(self.target_seq, "target_seq")?,
            },
            Kind::Reaction => EventBody::Reaction {
                target_seq: need(self.target_seq, "target_seq")?,
                emoji: need(self.emoji.take(), "emoji")?,
                remove: self.remove,
                encrypted: self.encrypted.take(),
            },
            Kind::Join => EventBody::Join {
                members: need(self.members.take(), "members")?,
            },
            Kind::Leave => EventBody::Leave {
                members: need(self.members.take(), "members")?,
            },
            Kind::Remove => EventBody::Remove {
                members: need(self.members.take(), "members")?,
            },
            Kind::Role => EventBody::Role {
                user: need(self.user.take(), "user")?,
                role: need(self.role, "role")?,
            },
            Kind::Rename => EventBody::Rename {
                name: need(self.name.take(), "name")?,
            },
            Kind::File => EventBody::File {
                file: need(self.file.take(), "file")?,
                caption: self.caption.take(),
                reply_to: self.reply_to,
                encrypted: self.encrypted.take(),
            },
            Kind::Create => EventBody::Create {
                name: self.name.take(),
                members: need(self.members.take(), "members")?,
            },
        })
    }
}

impl<'de> Deserialize<'de> for EventBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Flat::deserialize(d)?.take_body()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut f = Flat::deserialize(d)?;
        let body = f.take_body()?;
        Ok(Event {
            conversation_id: need(f.conversation_id, "conversation_id")?,
            seq: need(f.seq, "seq")?,
            ts: need(f.ts, "ts")?,
            sender: need(f.sender, "sender")?,
            client_msg_id: f.client_msg_id,
            eid: f.eid,
            bot: f.bot,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::types::FileKey;

    fn file() -> Box<FileInfo> {
        Box::new(FileInfo {
            digest: "ab".repeat(32),
            name: "plan.pdf".into(),
            size: 1234,
            media_type: "application/pdf".into(),
            width: Some(10),
            height: None,
            preview: Some("iVBOR".into()),
            key: Some(Box::new(FileKey {
                key: "k".into(),
                nonce: "n".into(),
            })),
        })
    }

    fn every_kind() -> Vec<EventBody> {
        let enc = || {
            Some(Box::new(Encrypted {
                algorithm: crate::proto::keys::MEGOLM.into(),
                device_id: "dev".into(),
                session_id: "sid".into(),
                ciphertext: "ct".into(),
            }))
        };
        vec![
            EventBody::Message {
                body: "hi \"there\"\n".into(),
                reply_to: Some(3),
                encrypted: None,
            },
            EventBody::Message {
                body: String::new(),
                reply_to: None,
                encrypted: enc(),
            },
            EventBody::Edit {
                target_seq: 4,
                body: "fixed".into(),
                encrypted: None,
            },
            EventBody::Delete { target_seq: 5 },
            EventBody::Reaction {
                target_seq: 6,
                emoji: "👍".into(),
                remove: true,
                encrypted: enc(),
            },
            EventBody::Join {
                members: vec!["bob".into(), "carol".into()],
            },
            EventBody::Leave {
                members: vec!["bob".into()],
            },
            EventBody::Remove { members: vec![] },
            EventBody::Role {
                user: "bob".into(),
                role: MemberRole::Admin,
            },
            EventBody::Rename { name: "ops".into() },
            EventBody::File {
                file: file(),
                caption: Some("the plan".into()),
                reply_to: Some(2),
                encrypted: None,
            },
            EventBody::Create {
                name: None,
                members: vec!["alice".into()],
            },
            EventBody::Create {
                name: Some("team".into()),
                members: vec!["alice".into(), "bob".into()],
            },
        ]
    }

    /// The decoder's kind of a body. Exhaustive: a kind added to
    /// `EventBody` fails to compile here until `Kind` and `Flat` know it.
    fn kind_of(b: &EventBody) -> Kind {
        match b {
            EventBody::Message { .. } => Kind::Message,
            EventBody::Edit { .. } => Kind::Edit,
            EventBody::Delete { .. } => Kind::Delete,
            EventBody::Reaction { .. } => Kind::Reaction,
            EventBody::Join { .. } => Kind::Join,
            EventBody::Leave { .. } => Kind::Leave,
            EventBody::Remove { .. } => Kind::Remove,
            EventBody::Role { .. } => Kind::Role,
            EventBody::Rename { .. } => Kind::Rename,
            EventBody::File { .. } => Kind::File,
            EventBody::Create { .. } => Kind::Create,
        }
    }

    #[test]
    fn every_kind_round_trips_alone_and_in_an_event_and_a_push() {
        let kinds: std::collections::BTreeSet<u8> =
            every_kind().iter().map(|b| kind_of(b) as u8).collect();
        assert_eq!(
            kinds.len(),
            Kind::Create as usize + 1,
            "a kind is not tried"
        );
        for (i, body) in every_kind().into_iter().enumerate() {
            let text = serde_json::to_string(&body).unwrap();
            assert_eq!(serde_json::from_str::<EventBody>(&text).unwrap(), body);
            let ev = Event {
                conversation_id: "c1".into(),
                seq: i as u64 + 1,
                ts: 1_700_000_000_000,
                sender: "alice".into(),
                client_msg_id: (i % 2 == 0).then(|| format!("m{i}")),
                eid: Some("e1".into()),
                bot: i % 3 == 0,
                body,
            };
            let text = serde_json::to_string(&ev).unwrap();
            assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev);
            let value = serde_json::to_value(&ev).unwrap();
            assert_eq!(serde_json::from_value::<Event>(value).unwrap(), ev);
            let push = crate::proto::encode_event(&ev);
            assert_eq!(serde_json::from_str::<Event>(&push).unwrap(), ev);
        }
    }

    #[test]
    fn fields_are_read_in_any_order_and_other_kinds_fields_are_dropped() {
        let text = r#"{"body":"hi","members":["x"],"sender":"bob","kind":"message",
            "ts":5,"seq":2,"conversation_id":"c","type":"event","future":{"a":[1]}}"#;
        let ev: Event = serde_json::from_str(text).unwrap();
        assert_eq!(ev.seq, 2);
        assert_eq!(ev.client_msg_id, None);
        assert!(!ev.bot);
        assert_eq!(
            ev.body,
            EventBody::Message {
                body: "hi".into(),
                reply_to: None,
                encrypted: None
            }
        );
    }

    #[test]
    fn a_missing_or_unknown_field_is_named_in_the_error() {
        let err = |t: &str| serde_json::from_str::<Event>(t).unwrap_err().to_string();
        let head = r#""conversation_id":"c","seq":1,"ts":1,"sender":"a""#;
        assert!(err(&format!("{{{head}}}")).contains("missing field `kind`"));
        assert!(
            err(&format!(r#"{{{head},"kind":"edit","body":"x"}}"#))
                .contains("missing field `target_seq`")
        );
        assert!(err(&format!(r#"{{{head},"kind":"shout"}}"#)).contains("unknown variant `shout`"));
        assert!(
            err(r#"{"conversation_id":"c","ts":1,"sender":"a","kind":"delete","target_seq":1}"#)
                .contains("missing field `seq`")
        );
        assert!(err(&format!(r#"{{{head},"kind":"message","body":7}}"#)).contains("invalid type"));
        assert!(
            err(&format!(
                r#"{{{head},"seq":2,"kind":"message","body":"x"}}"#
            ))
            .contains("duplicate field `seq`")
        );
        let body = |t: &str| {
            serde_json::from_str::<EventBody>(t)
                .unwrap_err()
                .to_string()
        };
        assert!(body(r#"{"kind":"rename"}"#).contains("missing field `name`"));
        assert!(body(r#"{"kind":"role","user":"b","role":"king"}"#).contains("unknown variant"));
    }
}
