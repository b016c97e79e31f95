//! Group messages of [`Crypto`]: encrypting for a conversation (with the
//! room-key shares its devices still need), what to do when the server
//! answers `devices_changed`, and decrypting an event with every check
//! that makes a placeholder say why.

use super::crypto::Crypto;
use super::megolm::{EventRef, InboundGroup, KeySender, OutboundGroup};
use super::wire::{DeviceRef, Encrypted, MEGOLM_ALGORITHM, MegolmPlaintext, PlainKind, Share};
use super::{E2eError, Trust, Undecryptable};
use std::collections::BTreeSet;

/// A message encrypted for a conversation, with the shares to send along.
#[derive(Debug)]
pub struct EncryptOutcome {
    pub encrypted: Encrypted,
    /// Room keys for the devices that do not hold the session yet. After the
    /// server accepts them, call [`Crypto::shares_delivered`].
    pub shares: Vec<Share>,
    /// A new session was started (rotation).
    pub rotated: bool,
}

/// What to do after a `devices_changed` refusal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The session was dropped (a device that left holds it).
    pub rotated: bool,
    /// Users whose device lists are stale: query them, then encrypt again.
    pub query_users: Vec<String>,
}

/// An event as the engine holds it, with its `encrypted` object.
#[derive(Debug, Clone, Copy)]
pub struct EncryptedEvent<'a> {
    pub conversation_id: &'a str,
    pub seq: u64,
    pub sender: &'a str,
    pub kind: PlainKind,
    pub encrypted: &'a Encrypted,
}

/// How far the sender of a decrypted message is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderTrust {
    /// This device.
    Own,
    /// The device or its user was verified in person.
    Verified,
    /// Certified by its user's identity key, which is not verified.
    Unverified,
}

/// A decrypted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub plaintext: MegolmPlaintext,
    pub sender_device: String,
    pub trust: SenderTrust,
}

impl Crypto {
    /// Encrypt `plaintext` for `conversation_id`, whose members' devices are
    /// `recipients` (this device is left out by itself). Fails, before
    /// anything is encrypted, with the devices whose keys must be queried
    /// ([`E2eError::UnknownDevices`]) or claimed ([`E2eError::NeedKeys`]),
    /// or that may not have the key ([`E2eError::Withheld`]).
    pub fn encrypt_for(
        &mut self,
        conversation_id: &str,
        recipients: &[DeviceRef],
        plaintext: &MegolmPlaintext,
        now: u64,
    ) -> Result<EncryptOutcome, E2eError> {
        if plaintext.conversation_id != conversation_id {
            return Err(E2eError::Malformed(
                "the plaintext names another conversation".into(),
            ));
        }
        let (shares, rotated) = self.prepare_shares(conversation_id, recipients, now)?;
        let encrypted = self.encrypt(conversation_id, plaintext)?;
        Ok(EncryptOutcome {
            encrypted,
            shares,
            rotated,
        })
    }

    /// Make sure the conversation has a current outbound session shared
    /// with nobody but `recipients`, and return the room-key shares the
    /// recipients still need (for `keys_share`, or a send's `shares`), and
    /// whether a new session was started.
    pub fn prepare_shares(
        &mut self,
        conversation_id: &str,
        recipients: &[DeviceRef],
        now: u64,
    ) -> Result<(Vec<Share>, bool), E2eError> {
        let me = self.me();
        let set: BTreeSet<DeviceRef> = recipients.iter().filter(|d| **d != me).cloned().collect();
        self.check_recipients(&set)?;
        let stale = self
            .outbound
            .get(conversation_id)
            .is_some_and(|o| o.needs_rotation(now) || !o.extra(&set).is_empty());
        if stale {
            self.drop_outbound(conversation_id);
        }
        let rotated = !self.outbound.contains_key(conversation_id);
        if rotated {
            self.new_outbound(conversation_id, now);
        }
        let Some(out) = self.outbound.get(conversation_id) else {
            return Err(E2eError::Store("no outbound session".into()));
        };
        let missing = out.missing(&set);
        let mut content =
            serde_json::to_value(out.room_key()).map_err(|e| E2eError::Malformed(e.to_string()))?;
        if let Some(obj) = content.as_object_mut() {
            obj.insert("type".into(), "room_key".into());
        }
        let mut shares = Vec::with_capacity(missing.len());
        for d in &missing {
            shares.push(self.encrypt_to_device(d, content.clone())?);
        }
        Ok((shares, rotated))
    }

    fn check_recipients(&self, set: &BTreeSet<DeviceRef>) -> Result<(), E2eError> {
        let mut unknown = Vec::new();
        let mut withheld = Vec::new();
        let mut no_session = Vec::new();
        for d in set {
            match self.known(d) {
                None => unknown.push(d.clone()),
                Some(k) => {
                    if let Some(w) = self.withheld(d, k) {
                        withheld.push((d.clone(), w));
                    } else if !self.olm.has_session(&k.curve25519) {
                        no_session.push(d.clone());
                    }
                }
            }
        }
        if !unknown.is_empty() {
            return Err(E2eError::UnknownDevices(unknown));
        }
        if !withheld.is_empty() {
            return Err(E2eError::Withheld(withheld));
        }
        if !no_session.is_empty() {
            return Err(E2eError::NeedKeys(no_session));
        }
        Ok(())
    }

    fn new_outbound(&mut self, conversation_id: &str, now: u64) {
        let out = OutboundGroup::new(conversation_id, now);
        let own = InboundGroup::from_outbound(
            &out,
            KeySender {
                user: self.user().to_string(),
                device_id: self.device_id().to_string(),
                curve25519: self.device_keys().curve25519,
                ed25519: self.device_keys().ed25519,
            },
        );
        self.dirty.inbound.insert(own.session_id.clone());
        self.inbound.insert(own.session_id.clone(), own);
        self.dirty.outbound.insert(conversation_id.to_string());
        self.dirty.outbound_removed.remove(conversation_id);
        self.outbound.insert(conversation_id.to_string(), out);
    }

    fn drop_outbound(&mut self, conversation_id: &str) {
        if self.outbound.remove(conversation_id).is_some() {
            self.dirty.outbound.remove(conversation_id);
            self.dirty
                .outbound_removed
                .insert(conversation_id.to_string());
        }
    }

    /// Encrypt with the conversation's current session (after
    /// [`Self::prepare_shares`]).
    pub fn encrypt(
        &mut self,
        conversation_id: &str,
        plaintext: &MegolmPlaintext,
    ) -> Result<Encrypted, E2eError> {
        let device_id = self.device_id().to_string();
        let out = self
            .outbound
            .get_mut(conversation_id)
            .ok_or_else(|| E2eError::Store("prepare the shares first".into()))?;
        let encrypted = out.encrypt(&device_id, plaintext)?;
        self.dirty.outbound.insert(conversation_id.to_string());
        Ok(encrypted)
    }

    /// The server accepted shares of `session_id` for `devices`.
    pub fn shares_delivered(
        &mut self,
        conversation_id: &str,
        session_id: &str,
        devices: &[DeviceRef],
    ) {
        if let Some(out) = self.outbound.get_mut(conversation_id)
            && out.session_id() == session_id
        {
            out.shared_with.extend(devices.iter().cloned());
            self.dirty.outbound.insert(conversation_id.to_string());
        }
    }

    /// The current outbound session of a conversation and the devices the
    /// server confirmed hold it.
    pub fn shared_with(&self, conversation_id: &str) -> Option<(String, Vec<DeviceRef>)> {
        self.outbound
            .get(conversation_id)
            .map(|o| (o.session_id(), o.shared_with.iter().cloned().collect()))
    }

    /// Start a new session in `conversation_id` with the next message.
    pub fn rotate(&mut self, conversation_id: &str) {
        self.drop_outbound(conversation_id);
    }

    /// The server refused a send with `devices_changed`: with `extra`
    /// devices the session is dropped; the users of `missing` and `extra`
    /// are to be queried again before encrypting anew.
    pub fn devices_changed(
        &mut self,
        conversation_id: &str,
        missing: &[DeviceRef],
        extra: &[DeviceRef],
    ) -> Recovery {
        let rotated = !extra.is_empty() && self.outbound.contains_key(conversation_id);
        if !extra.is_empty() {
            self.drop_outbound(conversation_id);
        }
        let users: BTreeSet<String> = missing
            .iter()
            .chain(extra)
            .map(|d| d.user.clone())
            .collect();
        Recovery {
            rotated,
            query_users: users.into_iter().collect(),
        }
    }

    /// Decrypt an event, or say why not.
    pub fn decrypt_event(&mut self, ev: &EncryptedEvent<'_>) -> Result<Decrypted, Undecryptable> {
        let enc = ev.encrypted;
        if enc.algorithm != MEGOLM_ALGORITHM {
            return Err(Undecryptable::Malformed(format!(
                "unknown algorithm {:?}",
                enc.algorithm
            )));
        }
        let inb = self
            .inbound
            .get(&enc.session_id)
            .ok_or(Undecryptable::NoKey)?;
        if inb.conversation_id != ev.conversation_id {
            return Err(Undecryptable::Untrusted(
                "its key belongs to another conversation".into(),
            ));
        }
        if inb.sender.user != ev.sender || inb.sender.device_id != enc.device_id {
            return Err(Undecryptable::Untrusted(
                "its key came from another device than the sender's".into(),
            ));
        }
        let trust = self.sender_trust(&inb.sender)?;
        let inb = self
            .inbound
            .get_mut(&enc.session_id)
            .ok_or(Undecryptable::NoKey)?;
        let (bytes, index) = inb.decrypt(&enc.ciphertext)?;
        self.dirty.inbound.insert(enc.session_id.clone());
        let at = EventRef {
            conversation_id: ev.conversation_id.to_string(),
            seq: ev.seq,
        };
        self.replay.check(&enc.session_id, index, &at)?;
        let plaintext: MegolmPlaintext = serde_json::from_slice(&bytes)
            .map_err(|e| Undecryptable::Malformed(format!("plaintext: {e}")))?;
        if plaintext.conversation_id != ev.conversation_id || plaintext.kind != ev.kind {
            return Err(Undecryptable::Malformed(
                "the plaintext does not match its event".into(),
            ));
        }
        Ok(Decrypted {
            plaintext,
            sender_device: enc.device_id.clone(),
            trust,
        })
    }

    /// Whether the device that handed us a key is one we trust now.
    fn sender_trust(&self, s: &KeySender) -> Result<SenderTrust, Undecryptable> {
        if s.user == self.user() && s.device_id == self.device_id() {
            return if s.curve25519 == self.device_keys().curve25519 {
                Ok(SenderTrust::Own)
            } else {
                Err(Undecryptable::Untrusted("not this device's key".into()))
            };
        }
        let d = DeviceRef::new(&s.user, &s.device_id);
        let known = self.known(&d).ok_or(Undecryptable::UnknownDevice)?;
        if known.curve25519 != s.curve25519 || known.ed25519 != s.ed25519 {
            return Err(Undecryptable::Untrusted(
                "the device's keys are not the ones that sent the key".into(),
            ));
        }
        if let Some(w) = self.withheld(&d, known) {
            return Err(Undecryptable::Untrusted(w.to_string()));
        }
        let verified = known.verified || self.trust(&s.user).is_some_and(Trust::is_verified);
        Ok(if verified {
            SenderTrust::Verified
        } else {
            SenderTrust::Unverified
        })
    }

    /// Forget which events of `conversation_id` from `seq` on decrypted
    /// (the server lost them; our own are sent again under new seqs).
    pub fn forget_events_from(&mut self, conversation_id: &str, seq: u64) {
        self.replay.forget_from(conversation_id, seq);
    }
}
