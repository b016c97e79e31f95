//! Pairwise Olm sessions, which carry to-device messages (room keys,
//! verification steps). A session starts from a claimed one-time key
//! (its signature checked first) or from a peer's pre-key message; a peer
//! device may have several sessions with us, tried newest first. Every
//! plaintext travels in an envelope naming sender and recipient, which the
//! receiver checks.

use super::E2eError;
use super::account::DeviceAccount;
use super::identity::KnownDevice;
use super::sign;
use super::wire::{ClaimedKey, DeviceRef, OLM_ALGORITHM, OlmBody, OlmPlaintext};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use vodozemac::olm::{OlmMessage, Session, SessionConfig};

/// Sessions kept per peer device; the oldest goes past this.
pub const MAX_SESSIONS_PER_DEVICE: usize = 8;

/// One Olm session with a peer device.
pub struct OlmSession {
    pub session: Session,
    pub session_id: String,
    /// The peer's Curve25519 key (base64).
    pub peer_curve: String,
    /// Order of creation among all sessions: higher is newer.
    pub created: u64,
}

/// All Olm sessions of this device, by the peer's Curve25519 key.
#[derive(Default)]
pub struct OlmSessions {
    by_key: HashMap<String, Vec<OlmSession>>,
    next: u64,
    /// Sessions changed since the last save, and sessions dropped.
    pub(crate) dirty: BTreeSet<String>,
    pub(crate) removed: BTreeSet<String>,
}

impl OlmSessions {
    /// Put back a stored session (see `store`).
    pub(crate) fn restore(&mut self, s: OlmSession) {
        self.next = self.next.max(s.created + 1);
        let list = self.by_key.entry(s.peer_curve.clone()).or_default();
        list.push(s);
        list.sort_by_key(|s| std::cmp::Reverse(s.created));
    }

    /// Every session (for saving).
    pub(crate) fn all(&self) -> impl Iterator<Item = &OlmSession> {
        self.by_key.values().flatten()
    }

    pub(crate) fn mark_all_dirty(&mut self) {
        let ids: Vec<String> = self.all().map(|s| s.session_id.clone()).collect();
        self.dirty.extend(ids);
    }

    /// Whether we hold a session with the device whose key is `curve`.
    pub fn has_session(&self, curve: &str) -> bool {
        self.by_key.get(curve).is_some_and(|l| !l.is_empty())
    }

    /// How many sessions we hold with the device whose key is `curve`.
    pub fn count(&self, curve: &str) -> usize {
        self.by_key.get(curve).map_or(0, Vec::len)
    }

    fn insert(&mut self, session: Session, peer_curve: String) {
        let s = OlmSession {
            session_id: session.session_id(),
            session,
            peer_curve: peer_curve.clone(),
            created: self.next,
        };
        self.next += 1;
        self.dirty.insert(s.session_id.clone());
        let list = self.by_key.entry(peer_curve).or_default();
        list.insert(0, s);
        while list.len() > MAX_SESSIONS_PER_DEVICE {
            if let Some(old) = list.pop() {
                self.dirty.remove(&old.session_id);
                self.removed.insert(old.session_id);
            }
        }
    }

    /// Start a session with `device` from a key `keys_claim` handed out,
    /// after checking the device's signature over it.
    pub fn create_outbound(
        &mut self,
        me: &DeviceAccount,
        device: &DeviceRef,
        known: &KnownDevice,
        claimed: &ClaimedKey,
    ) -> Result<(), E2eError> {
        if claimed.user != device.user || claimed.device_id != device.device_id {
            return Err(E2eError::Malformed(format!(
                "a claimed key for {}/{} given for {device}",
                claimed.user, claimed.device_id
            )));
        }
        let text = sign::one_time_key_string(
            &claimed.user,
            &claimed.device_id,
            &claimed.key_id,
            &claimed.key,
        );
        sign::verify(&known.ed_key()?, &text, &claimed.signature, "one-time key")?;
        let otk = sign::curve25519("one-time key", &claimed.key)?;
        let session = me
            .account()
            .create_outbound_session(SessionConfig::version_1(), known.curve_key()?, otk)
            .map_err(|e| E2eError::BadKey(e.to_string()))?;
        self.insert(session, known.curve25519.clone());
        Ok(())
    }

    /// Encrypt `content` for `device` in the envelope the receiver checks.
    pub fn encrypt(
        &mut self,
        me: &DeviceAccount,
        device: &DeviceRef,
        known: &KnownDevice,
        content: Value,
    ) -> Result<OlmBody, E2eError> {
        let envelope = OlmPlaintext {
            sender: me.user().to_string(),
            sender_device: me.device_id().to_string(),
            recipient: device.user.clone(),
            recipient_device: device.device_id.clone(),
            recipient_ed25519: known.ed25519.clone(),
            sender_ed25519: me.ed25519().to_base64(),
            content,
        };
        let plaintext =
            serde_json::to_vec(&envelope).map_err(|e| E2eError::Malformed(e.to_string()))?;
        let s = self
            .by_key
            .get_mut(&known.curve25519)
            .and_then(|l| l.first_mut())
            .ok_or_else(|| E2eError::NoSession(device.clone()))?;
        let message = s
            .session
            .encrypt(&plaintext)
            .map_err(|e| E2eError::Decrypt(e.to_string()))?;
        self.dirty.insert(s.session_id.clone());
        let (message_type, bytes) = message.to_parts();
        Ok(OlmBody {
            algorithm: OLM_ALGORITHM.to_string(),
            sender_key: me.curve25519().to_base64(),
            message_type: message_type as u8,
            ciphertext: vodozemac::base64_encode(bytes),
        })
    }

    /// Decrypt a to-device body the server says `sender`/`sender_device`
    /// sent, and check every field of the envelope: sender and recipient,
    /// and, when the sender's device is known (`expected`: its Curve25519
    /// and Ed25519 keys), that the body's `sender_key` and the envelope's
    /// `sender_ed25519` are its keys. A new session is kept only when all
    /// of that holds.
    pub fn decrypt(
        &mut self,
        me: &mut DeviceAccount,
        sender: &str,
        sender_device: &str,
        expected: Option<(&str, &str)>,
        body: &OlmBody,
    ) -> Result<OlmPlaintext, E2eError> {
        if body.algorithm != OLM_ALGORITHM {
            return Err(E2eError::Malformed(format!(
                "unknown algorithm {:?}",
                body.algorithm
            )));
        }
        let their_curve = sign::curve25519("sender key", &body.sender_key)?;
        let bytes = vodozemac::base64_decode(&body.ciphertext)
            .map_err(|_| E2eError::Malformed("ciphertext is not base64".into()))?;
        let message = OlmMessage::from_parts(body.message_type.into(), &bytes)
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        let trial = self.decrypt_message(me, &body.sender_key, their_curve, &message)?;
        let plaintext = match &trial {
            Trial::Existing { plaintext, .. } | Trial::New { plaintext, .. } => plaintext,
        };
        let envelope: OlmPlaintext = serde_json::from_slice(plaintext)
            .map_err(|e| E2eError::Malformed(format!("envelope: {e}")))?;
        check_envelope(me, sender, sender_device, &envelope)?;
        if let Some((curve, ed)) = expected {
            if body.sender_key != curve {
                return Err(E2eError::Envelope(
                    "sender_key is not the sender device's key".into(),
                ));
            }
            if envelope.sender_ed25519 != ed {
                return Err(E2eError::Envelope(
                    "sender_ed25519 is not the sender device's key".into(),
                ));
            }
        }
        // Genuine: keep what decrypting it changed.
        match trial {
            Trial::Existing { index, session, .. } => {
                if let Some(s) = self
                    .by_key
                    .get_mut(&body.sender_key)
                    .and_then(|l| l.get_mut(index))
                {
                    s.session = session;
                    self.dirty.insert(s.session_id.clone());
                }
            }
            Trial::New {
                session, account, ..
            } => {
                *me = *account;
                self.insert(session, body.sender_key.clone());
            }
        }
        Ok(envelope)
    }

    /// Decrypt on copies: nothing held changes until the envelope checks out.
    fn decrypt_message(
        &self,
        me: &DeviceAccount,
        curve_b64: &str,
        their_curve: vodozemac::Curve25519PublicKey,
        message: &OlmMessage,
    ) -> Result<Trial, E2eError> {
        if let Some(list) = self.by_key.get(curve_b64) {
            for (index, s) in list.iter().enumerate() {
                let mut session = Session::from_pickle(s.session.pickle());
                if let Ok(plaintext) = session.decrypt(message) {
                    return Ok(Trial::Existing {
                        index,
                        session,
                        plaintext,
                    });
                }
            }
        }
        match message {
            OlmMessage::PreKey(pre) => {
                let mut account = me.trial_copy();
                let created = account
                    .create_inbound(their_curve, pre)
                    .map_err(|e| E2eError::Decrypt(e.to_string()))?;
                Ok(Trial::New {
                    session: created.session,
                    account: Box::new(account),
                    plaintext: created.plaintext,
                })
            }
            OlmMessage::Normal(_) => Err(E2eError::Decrypt(
                "no session with the sender decrypts this message".into(),
            )),
        }
    }
}

/// A message decrypted on a copy of a session or of the account.
enum Trial {
    Existing {
        index: usize,
        session: Session,
        plaintext: Vec<u8>,
    },
    New {
        session: Session,
        account: Box<DeviceAccount>,
        plaintext: Vec<u8>,
    },
}

/// Check the envelope's sender and recipient against what the server said
/// and who we are.
fn check_envelope(
    me: &DeviceAccount,
    sender: &str,
    sender_device: &str,
    e: &OlmPlaintext,
) -> Result<(), E2eError> {
    let checks = [
        ("sender", e.sender.as_str(), sender),
        ("sender_device", &e.sender_device, sender_device),
        ("recipient", &e.recipient, me.user()),
        ("recipient_device", &e.recipient_device, me.device_id()),
        (
            "recipient_ed25519",
            &e.recipient_ed25519,
            &me.ed25519().to_base64(),
        ),
    ];
    for (field, got, want) in checks {
        if got != want {
            return Err(E2eError::Envelope(format!("{field} is not {want:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::e2e::identity::KnownDevice;
    use serde_json::json;

    fn known(d: &DeviceAccount) -> KnownDevice {
        let k = d.device_keys();
        KnownDevice {
            device_id: d.device_id().into(),
            name: None,
            curve25519: k.curve25519,
            ed25519: k.ed25519,
            certified: true,
            verified: false,
        }
    }

    fn claim(d: &mut DeviceAccount) -> ClaimedKey {
        d.top_up_one_time_keys(0, 1);
        let (otks, _) = d.unpublished_keys();
        d.mark_published();
        let k = otks.into_iter().next().unwrap();
        ClaimedKey {
            user: d.user().into(),
            device_id: d.device_id().into(),
            key_id: k.key_id,
            key: k.key,
            signature: k.signature,
            fallback: false,
        }
    }

    fn me_ref(d: &DeviceAccount) -> DeviceRef {
        DeviceRef::new(d.user(), d.device_id())
    }

    #[test]
    fn a_session_from_a_claimed_key_carries_messages_both_ways() {
        let (mut alice, mut bob) = (DeviceAccount::new("alice"), DeviceAccount::new("bob"));
        let (mut a, mut b) = (OlmSessions::default(), OlmSessions::default());
        let c = claim(&mut bob);
        a.create_outbound(&alice, &me_ref(&bob), &known(&bob), &c)
            .unwrap();
        let body = a
            .encrypt(
                &alice,
                &me_ref(&bob),
                &known(&bob),
                json!({"type":"x","n":1}),
            )
            .unwrap();
        assert_eq!(body.message_type, 0);
        let got = b
            .decrypt(&mut bob, "alice", alice.device_id(), None, &body)
            .unwrap();
        assert_eq!(got.content["n"], 1);
        assert_eq!(got.sender_ed25519, alice.ed25519().to_base64());
        // The one-time key is used up: the same pre-key message cannot make
        // a second session, but the session now held decrypts nothing twice.
        assert!(
            b.decrypt(&mut bob, "alice", alice.device_id(), None, &body)
                .is_err()
        );
        // Bob answers on the session he now holds.
        let back = b
            .encrypt(&bob, &me_ref(&alice), &known(&alice), json!({"n":2}))
            .unwrap();
        assert_eq!(back.message_type, 1);
        let got = a
            .decrypt(&mut alice, "bob", bob.device_id(), None, &back)
            .unwrap();
        assert_eq!(got.content["n"], 2);
    }

    #[test]
    fn a_forged_one_time_key_is_refused() {
        let (alice, mut bob) = (DeviceAccount::new("alice"), DeviceAccount::new("bob"));
        let mut a = OlmSessions::default();
        let mut c = claim(&mut bob);
        c.key = DeviceAccount::new("eve").device_keys().curve25519;
        assert!(matches!(
            a.create_outbound(&alice, &me_ref(&bob), &known(&bob), &c),
            Err(E2eError::BadSignature(_))
        ));
        let c = claim(&mut bob);
        let other = DeviceRef::new("bob", "OTHERDEVIC");
        assert!(a.create_outbound(&alice, &other, &known(&bob), &c).is_err());
        assert!(!a.has_session(&known(&bob).curve25519));
    }

    #[test]
    fn an_envelope_for_someone_else_is_refused() {
        let (mut alice, mut bob) = (DeviceAccount::new("alice"), DeviceAccount::new("bob"));
        let mut bob2 = DeviceAccount::new("bob");
        let (mut a, mut b) = (OlmSessions::default(), OlmSessions::default());
        a.create_outbound(&alice, &me_ref(&bob), &known(&bob), &claim(&mut bob))
            .unwrap();
        let body = a
            .encrypt(&alice, &me_ref(&bob), &known(&bob), json!({}))
            .unwrap();
        // The server claims another sender.
        assert!(matches!(
            b.decrypt(&mut bob, "mallory", alice.device_id(), None, &body),
            Err(E2eError::Envelope(_))
        ));
        assert!(matches!(
            b.decrypt(&mut bob, "alice", "XXXXXXXXXX", None, &body),
            Err(E2eError::Envelope(_))
        ));
        // Addressed to bob's other device: that device cannot read it.
        assert!(
            b.decrypt(&mut bob2, "alice", alice.device_id(), None, &body)
                .is_err()
        );
        // Refused copies cost nothing: the genuine delivery still works.
        b.decrypt(&mut bob, "alice", alice.device_id(), None, &body)
            .unwrap();
        // Garbage in every field is an error, never a panic.
        let mut bad = body.clone();
        bad.ciphertext = "!!".into();
        assert!(
            b.decrypt(&mut bob, "alice", alice.device_id(), None, &bad)
                .is_err()
        );
        bad = body.clone();
        bad.message_type = 7;
        assert!(
            b.decrypt(&mut bob, "alice", alice.device_id(), None, &bad)
                .is_err()
        );
        bad = body.clone();
        bad.algorithm = "megolm.v1".into();
        assert!(
            b.decrypt(&mut bob, "alice", alice.device_id(), None, &bad)
                .is_err()
        );
        bad = body;
        bad.sender_key = "short".into();
        assert!(
            b.decrypt(&mut bob, "alice", alice.device_id(), None, &bad)
                .is_err()
        );
        let _ = &mut alice;
    }

    #[test]
    fn the_sender_keys_must_be_the_known_devices() {
        let (alice, mut bob) = (DeviceAccount::new("alice"), DeviceAccount::new("bob"));
        let eve = DeviceAccount::new("alice");
        let (mut a, mut b) = (OlmSessions::default(), OlmSessions::default());
        a.create_outbound(&alice, &me_ref(&bob), &known(&bob), &claim(&mut bob))
            .unwrap();
        let body = a
            .encrypt(&alice, &me_ref(&bob), &known(&bob), json!({}))
            .unwrap();
        let (ak, ek) = (known(&alice), known(&eve));
        let wrong_curve = Some((ek.curve25519.as_str(), ak.ed25519.as_str()));
        let wrong_ed = Some((ak.curve25519.as_str(), ek.ed25519.as_str()));
        let right = Some((ak.curve25519.as_str(), ak.ed25519.as_str()));
        for expected in [wrong_curve, wrong_ed] {
            assert!(matches!(
                b.decrypt(&mut bob, "alice", alice.device_id(), expected, &body),
                Err(E2eError::Envelope(_))
            ));
        }
        b.decrypt(&mut bob, "alice", alice.device_id(), right, &body)
            .unwrap();
    }

    #[test]
    fn several_sessions_with_one_device_all_decrypt() {
        let (alice, mut bob) = (DeviceAccount::new("alice"), DeviceAccount::new("bob"));
        let (mut a1, mut a2, mut b) = (
            OlmSessions::default(),
            OlmSessions::default(),
            OlmSessions::default(),
        );
        // Two sessions from alice (as after a restore from an old copy).
        a1.create_outbound(&alice, &me_ref(&bob), &known(&bob), &claim(&mut bob))
            .unwrap();
        a2.create_outbound(&alice, &me_ref(&bob), &known(&bob), &claim(&mut bob))
            .unwrap();
        let m1 = a1
            .encrypt(&alice, &me_ref(&bob), &known(&bob), json!({"n":1}))
            .unwrap();
        let m2 = a2
            .encrypt(&alice, &me_ref(&bob), &known(&bob), json!({"n":2}))
            .unwrap();
        b.decrypt(&mut bob, "alice", alice.device_id(), None, &m1)
            .unwrap();
        b.decrypt(&mut bob, "alice", alice.device_id(), None, &m2)
            .unwrap();
        assert_eq!(b.count(&alice.device_keys().curve25519), 2);
        let m3 = a1
            .encrypt(&alice, &me_ref(&bob), &known(&bob), json!({"n":3}))
            .unwrap();
        let got = b
            .decrypt(&mut bob, "alice", alice.device_id(), None, &m3)
            .unwrap();
        assert_eq!(got.content["n"], 3);
    }
}
