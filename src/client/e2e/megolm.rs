//! Megolm group sessions. Each secret conversation has one outbound session
//! of ours, replaced after [`ROTATE_AFTER_MESSAGES`] messages, after
//! [`ROTATE_AFTER_SECS`], or when a device that holds it left; its key goes
//! to each member device once (a room key over Olm). Inbound sessions are
//! kept by session id with the device that sent the key, and a message
//! index seen for one event is refused for another (a replay).

use super::wire::{DeviceRef, Encrypted, MEGOLM_ALGORITHM, MegolmPlaintext, RoomKey};
use super::{E2eError, Undecryptable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use vodozemac::megolm::{
    DecryptionError, GroupSession, InboundGroupSession, MegolmMessage, SessionConfig, SessionKey,
};

/// An outbound session encrypts at most this many messages.
pub const ROTATE_AFTER_MESSAGES: u32 = 100;
/// An outbound session is used at most this long (seconds).
pub const ROTATE_AFTER_SECS: u64 = 7 * 24 * 3600;

/// Our outbound session in one conversation.
pub struct OutboundGroup {
    pub conversation_id: String,
    pub session: GroupSession,
    /// Unix seconds when it was made.
    pub created_at: u64,
    /// Devices the server confirmed hold its key.
    pub shared_with: BTreeSet<DeviceRef>,
}

impl OutboundGroup {
    pub fn new(conversation_id: &str, now: u64) -> OutboundGroup {
        OutboundGroup {
            conversation_id: conversation_id.to_string(),
            session: GroupSession::new(SessionConfig::version_1()),
            created_at: now,
            shared_with: BTreeSet::new(),
        }
    }

    pub fn session_id(&self) -> String {
        self.session.session_id()
    }

    /// How many messages it has encrypted.
    pub fn message_count(&self) -> u32 {
        self.session.message_index()
    }

    /// Whether the next message needs a new session (count or age).
    pub fn needs_rotation(&self, now: u64) -> bool {
        self.message_count() >= ROTATE_AFTER_MESSAGES
            || now.saturating_sub(self.created_at) >= ROTATE_AFTER_SECS
    }

    /// The room-key content handing the session, from its next message on.
    pub fn room_key(&self) -> RoomKey {
        RoomKey {
            conversation_id: self.conversation_id.clone(),
            session_id: self.session_id(),
            session_key: self.session.session_key().to_base64(),
            first_index: self.session.message_index(),
        }
    }

    /// Of `recipients`, those that do not hold the key yet.
    pub fn missing(&self, recipients: &BTreeSet<DeviceRef>) -> Vec<DeviceRef> {
        recipients.difference(&self.shared_with).cloned().collect()
    }

    /// Devices that hold the key but are no longer among `recipients`.
    pub fn extra(&self, recipients: &BTreeSet<DeviceRef>) -> Vec<DeviceRef> {
        self.shared_with.difference(recipients).cloned().collect()
    }

    /// Encrypt one plaintext as the event's `encrypted` object.
    pub fn encrypt(
        &mut self,
        device_id: &str,
        plaintext: &MegolmPlaintext,
    ) -> Result<Encrypted, E2eError> {
        let bytes =
            serde_json::to_vec(plaintext).map_err(|e| E2eError::Malformed(e.to_string()))?;
        let message = self.session.encrypt(&bytes);
        Ok(Encrypted {
            algorithm: MEGOLM_ALGORITHM.to_string(),
            device_id: device_id.to_string(),
            session_id: self.session_id(),
            ciphertext: message.to_base64(),
        })
    }
}

/// Who handed us an inbound session, as the Olm envelope proved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySender {
    pub user: String,
    pub device_id: String,
    pub curve25519: String,
    pub ed25519: String,
}

/// A session we can decrypt with, and where it came from.
pub struct InboundGroup {
    pub session: InboundGroupSession,
    pub session_id: String,
    pub conversation_id: String,
    pub sender: KeySender,
}

impl InboundGroup {
    /// A session from a room key `sender` sent us.
    pub fn from_room_key(key: &RoomKey, sender: KeySender) -> Result<InboundGroup, E2eError> {
        let sk = SessionKey::from_base64(&key.session_key)
            .map_err(|e| E2eError::Malformed(format!("room key: {e}")))?;
        let session = InboundGroupSession::new(&sk, SessionConfig::version_1());
        if session.session_id() != key.session_id {
            return Err(E2eError::Malformed(
                "room key: the session id does not match its key".into(),
            ));
        }
        if session.first_known_index() != key.first_index {
            return Err(E2eError::Malformed(
                "room key: the first index does not match its key".into(),
            ));
        }
        Ok(InboundGroup {
            session,
            session_id: key.session_id.clone(),
            conversation_id: key.conversation_id.clone(),
            sender,
        })
    }

    /// Our own copy of an outbound session, to read our own messages.
    pub fn from_outbound(out: &OutboundGroup, me: KeySender) -> InboundGroup {
        InboundGroup {
            session: InboundGroupSession::from(&out.session),
            session_id: out.session_id(),
            conversation_id: out.conversation_id.clone(),
            sender: me,
        }
    }

    pub fn first_index(&self) -> u32 {
        self.session.first_known_index()
    }

    /// Decrypt a ciphertext: the plaintext and its message index.
    pub fn decrypt(&mut self, ciphertext: &str) -> Result<(Vec<u8>, u32), Undecryptable> {
        let message = MegolmMessage::from_base64(ciphertext)
            .map_err(|e| Undecryptable::Malformed(e.to_string()))?;
        match self.session.decrypt(&message) {
            Ok(d) => Ok((d.plaintext, d.message_index)),
            Err(DecryptionError::UnknownMessageIndex(..)) => Err(Undecryptable::BeforeJoined),
            Err(e) => Err(Undecryptable::Malformed(e.to_string())),
        }
    }
}

/// Which event a decrypted message was shown as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub conversation_id: String,
    pub seq: u64,
}

/// Message indexes already decrypted, and for which event.
#[derive(Default)]
pub struct ReplayGuard {
    seen: HashMap<(String, u32), EventRef>,
    /// Entries added since the last save, and conversations whose entries
    /// from a seq on were forgotten.
    pub(crate) added: Vec<(String, u32, EventRef)>,
    pub(crate) forgotten: Vec<(String, u64)>,
}

impl ReplayGuard {
    pub(crate) fn restore(&mut self, session_id: String, index: u32, event: EventRef) {
        self.seen.insert((session_id, index), event);
    }

    /// Note that (`session_id`, `index`) decrypted as `event`; refused
    /// when it was another event before.
    pub fn check(
        &mut self,
        session_id: &str,
        index: u32,
        event: &EventRef,
    ) -> Result<(), Undecryptable> {
        let key = (session_id.to_string(), index);
        match self.seen.get(&key) {
            Some(prev) if prev == event => Ok(()),
            Some(_) => Err(Undecryptable::Replay),
            None => {
                self.seen.insert(key, event.clone());
                self.added
                    .push((session_id.to_string(), index, event.clone()));
                Ok(())
            }
        }
    }

    /// Forget what events of `conversation_id` from `seq` on decrypted (the
    /// server lost them, and ours are sent again under new seqs).
    pub fn forget_from(&mut self, conversation_id: &str, seq: u64) {
        self.seen
            .retain(|_, e| !(e.conversation_id == conversation_id && e.seq >= seq));
        self.added
            .retain(|(_, _, e)| !(e.conversation_id == conversation_id && e.seq >= seq));
        self.forgotten.push((conversation_id.to_string(), seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::e2e::wire::PlainKind;

    fn sender() -> KeySender {
        KeySender {
            user: "alice".into(),
            device_id: "AAAAAAAAAA".into(),
            curve25519: "c".into(),
            ed25519: "e".into(),
        }
    }

    fn msg(n: u32) -> MegolmPlaintext {
        MegolmPlaintext::text("c1", PlainKind::Message, &format!("m{n}"))
    }

    #[test]
    fn a_room_key_decrypts_from_its_index_on() {
        let mut out = OutboundGroup::new("c1", 0);
        let early = out.encrypt("AAAAAAAAAA", &msg(0)).unwrap();
        let key = out.room_key();
        assert_eq!(key.first_index, 1);
        let late = out.encrypt("AAAAAAAAAA", &msg(1)).unwrap();
        let mut inb = InboundGroup::from_room_key(&key, sender()).unwrap();
        let (plain, index) = inb.decrypt(&late.ciphertext).unwrap();
        assert_eq!(index, 1);
        let p: MegolmPlaintext = serde_json::from_slice(&plain).unwrap();
        assert_eq!(p.body.as_deref(), Some("m1"));
        assert_eq!(
            inb.decrypt(&early.ciphertext),
            Err(Undecryptable::BeforeJoined)
        );
        assert!(matches!(
            inb.decrypt("garbage"),
            Err(Undecryptable::Malformed(_))
        ));
    }

    #[test]
    fn a_room_key_that_lies_about_itself_is_refused() {
        let out = OutboundGroup::new("c1", 0);
        let mut key = out.room_key();
        key.session_id = OutboundGroup::new("c1", 0).session_id();
        assert!(InboundGroup::from_room_key(&key, sender()).is_err());
        let mut key = out.room_key();
        key.first_index = 5;
        assert!(InboundGroup::from_room_key(&key, sender()).is_err());
        let mut key = out.room_key();
        key.session_key = "AAAA".into();
        assert!(InboundGroup::from_room_key(&key, sender()).is_err());
    }

    #[test]
    fn rotation_after_a_hundred_messages_or_a_week() {
        let mut out = OutboundGroup::new("c1", 1000);
        for n in 0..ROTATE_AFTER_MESSAGES {
            assert!(!out.needs_rotation(1000));
            out.encrypt("D", &msg(n)).unwrap();
        }
        assert!(out.needs_rotation(1000));
        let fresh = OutboundGroup::new("c1", 1000);
        assert!(!fresh.needs_rotation(1000 + ROTATE_AFTER_SECS - 1));
        assert!(fresh.needs_rotation(1000 + ROTATE_AFTER_SECS));
    }

    #[test]
    fn missing_and_extra_devices() {
        let mut out = OutboundGroup::new("c1", 0);
        let (a, b, c) = (
            DeviceRef::new("a", "1"),
            DeviceRef::new("b", "1"),
            DeviceRef::new("c", "1"),
        );
        out.shared_with.extend([a.clone(), b.clone()]);
        let now: BTreeSet<_> = [b.clone(), c.clone()].into();
        assert_eq!(out.missing(&now), vec![c]);
        assert_eq!(out.extra(&now), vec![a]);
    }

    #[test]
    fn the_same_index_for_another_event_is_a_replay() {
        let mut g = ReplayGuard::default();
        let e1 = EventRef {
            conversation_id: "c1".into(),
            seq: 4,
        };
        let e2 = EventRef {
            conversation_id: "c1".into(),
            seq: 5,
        };
        g.check("S", 0, &e1).unwrap();
        g.check("S", 0, &e1).unwrap();
        assert_eq!(g.check("S", 0, &e2), Err(Undecryptable::Replay));
        g.check("S", 1, &e2).unwrap();
        g.forget_from("c1", 4);
        g.check("S", 0, &e2).unwrap();
    }
}
