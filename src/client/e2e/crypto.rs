//! [`Crypto`]: the one object the engine holds for secret conversations.
//! It owns this device's account, our identity key (on the device that
//! made it), the device lists and trust of the users we talk to, the Olm
//! and Megolm sessions and the verifications under way. Everything it
//! changes is noted, and [`Crypto::save`] writes exactly that inside the
//! caller's transaction (see `store`).
//!
//! This file: devices, keys and to-device messages. Group messages are in
//! `group.rs`, verifications in `verify.rs`.

use super::account::DeviceAccount;
use super::identity::{KnownDevice, Trust, UserIdentity, verify_device_list};
use super::lock::DeviceLock;
use super::megolm::{InboundGroup, KeySender, OutboundGroup, ReplayGuard};
use super::olm::OlmSessions;
use super::pickle_key::PickleKey;
use super::sas::{Outcome, Verification, VerifyContent};
use super::wire::{
    ClaimedKey, DeviceKeys, DeviceRef, KeysSign, KeysUpload, OlmBody, QueriedUser, RoomKey, Share,
};
use super::{E2eError, Withheld};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

pub use super::group::{Decrypted, EncryptOutcome, EncryptedEvent, Recovery, SenderTrust};

/// What we hold about one user: their trust record and checked devices.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    pub trust: Option<Trust>,
    pub devices: Vec<KnownDevice>,
}

/// What changed since the last save.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    pub account: bool,
    pub users: BTreeSet<String>,
    pub outbound: BTreeSet<String>,
    pub outbound_removed: BTreeSet<String>,
    pub inbound: BTreeSet<String>,
}

/// Our device's secret-conversation state.
pub struct Crypto {
    pub(super) me: DeviceAccount,
    pub(super) identity: Option<UserIdentity>,
    /// The server holds our identity key and this device's certificate.
    pub(super) identity_published: bool,
    pub(super) olm: OlmSessions,
    pub(super) outbound: HashMap<String, OutboundGroup>,
    pub(super) inbound: HashMap<String, InboundGroup>,
    pub(super) replay: ReplayGuard,
    pub(super) users: BTreeMap<String, UserState>,
    pub(super) verifications: HashMap<String, Verification>,
    pub(crate) dirty: Dirty,
    pub(crate) key: PickleKey,
    pub(super) lock: DeviceLock,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto")
            .field("user", &self.me.user())
            .field("device_id", &self.me.device_id())
            .finish_non_exhaustive()
    }
}

/// What a to-device message turned out to be.
#[derive(Debug)]
pub enum Received {
    /// A Megolm session for a conversation is now held.
    RoomKey {
        conversation_id: String,
        session_id: String,
        from: DeviceRef,
    },
    /// A verification step: send `replies`; `outcome` once verified.
    Verification {
        transaction_id: String,
        from: DeviceRef,
        replies: Vec<Share>,
        outcome: Option<Outcome>,
        cancelled: Option<(String, String)>,
    },
    /// Our user's identity key, from another device of ours verified in
    /// person: this device can now certify and verify like that one.
    Identity { from: DeviceRef },
    /// A content of another type, for the caller.
    Other { from: DeviceRef, content: Value },
}

/// What a device list update changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceUpdate {
    /// The user's identity key is not the one we held. A key nobody had
    /// verified is taken at once (the change is still said); see
    /// `blocking`.
    pub identity_changed: bool,
    /// The changed key replaced one verified in person: nothing goes to
    /// the user until the change is accepted (after comparing the safety
    /// number again).
    pub blocking: bool,
    /// Devices left out of the list, with why.
    pub rejected: Vec<(String, String)>,
}

impl Crypto {
    /// A new device of `user`, with fresh keys, under `key` and `lock`.
    pub fn new(user: &str, key: PickleKey, lock: DeviceLock) -> Crypto {
        Crypto::from_parts(DeviceAccount::new(user), key, lock)
    }

    pub(crate) fn from_parts(me: DeviceAccount, key: PickleKey, lock: DeviceLock) -> Crypto {
        Crypto {
            me,
            identity: None,
            identity_published: false,
            olm: OlmSessions::default(),
            outbound: HashMap::new(),
            inbound: HashMap::new(),
            replay: ReplayGuard::default(),
            users: BTreeMap::new(),
            verifications: HashMap::new(),
            dirty: Dirty {
                account: true,
                ..Dirty::default()
            },
            key,
            lock,
        }
    }

    pub fn user(&self) -> &str {
        self.me.user()
    }

    pub fn device_id(&self) -> &str {
        self.me.device_id()
    }

    pub fn device_keys(&self) -> DeviceKeys {
        self.me.device_keys()
    }

    pub fn me(&self) -> DeviceRef {
        DeviceRef::new(self.me.user(), self.me.device_id())
    }

    /// The lock this state is held under.
    pub fn lock(&self) -> &DeviceLock {
        &self.lock
    }

    /// Our user's identity key, when this device holds it.
    pub fn identity_key(&self) -> Option<String> {
        self.identity.as_ref().map(|i| i.public_key().to_base64())
    }

    /// Make our user's identity key on this device (the user's first
    /// device, or replacing a lost one: then every other device needs
    /// signing again). The next upload carries it.
    pub fn create_identity(&mut self) -> String {
        let identity = UserIdentity::generate();
        let key = identity.public_key().to_base64();
        self.identity = Some(identity);
        self.identity_published = false;
        let me = self.user().to_string();
        let state = self.users.entry(me.clone()).or_default();
        state.trust = Some(Trust::Verified {
            identity_key: key.clone(),
        });
        self.dirty.users.insert(me);
        self.dirty.account = true;
        key
    }

    /// The fields of the next `keys_upload`: this device's keys, one-time
    /// keys topped up to `target` (with `unclaimed` still on the server), a
    /// fallback key when needed, and our identity key with this device's
    /// certificate when not published yet (`replace_identity` when
    /// `replace`).
    pub fn keys_upload(&mut self, unclaimed: usize, target: usize, replace: bool) -> KeysUpload {
        self.me.top_up_one_time_keys(unclaimed, target);
        self.me.ensure_fallback_key();
        self.dirty.account = true;
        let (one_time_keys, fallback_key) = self.me.unpublished_keys();
        let keys = self.me.device_keys();
        let (identity_key, certificate) = match (&self.identity, self.identity_published) {
            (Some(id), false) => (
                Some(id.public_key().to_base64()),
                Some(id.certify(
                    self.me.user(),
                    self.me.device_id(),
                    &keys.curve25519,
                    &keys.ed25519,
                )),
            ),
            _ => (None, None),
        };
        KeysUpload {
            device_id: self.me.device_id().to_string(),
            replace_identity: replace && identity_key.is_some(),
            keys: Some(keys),
            identity_key,
            certificate,
            one_time_keys,
            fallback_key,
        }
    }

    /// The server accepted the last [`Self::keys_upload`].
    pub fn keys_uploaded(&mut self) {
        self.me.mark_published();
        if self.identity.is_some() {
            self.identity_published = true;
        }
        self.dirty.account = true;
    }

    /// A `keys_sign` certifying another device of our user, which must have
    /// been verified in person first.
    pub fn sign_device(&self, device_id: &str) -> Result<KeysSign, E2eError> {
        let identity = self.identity.as_ref().ok_or(E2eError::NoIdentity)?;
        let device = self
            .users
            .get(self.user())
            .and_then(|s| s.devices.iter().find(|d| d.device_id == device_id))
            .ok_or_else(|| {
                E2eError::UnknownDevices(vec![DeviceRef::new(self.user(), device_id)])
            })?;
        if !device.verified {
            return Err(E2eError::Verification(
                String::new(),
                format!("verify device {device_id} before signing it"),
            ));
        }
        identity.sign_device(
            self.user(),
            &super::wire::QueriedDevice {
                device_id: device.device_id.clone(),
                name: device.name.clone().unwrap_or_default(),
                curve25519: device.curve25519.clone(),
                ed25519: device.ed25519.clone(),
                certificate: None,
            },
        )
    }

    /// Take in what `keys_query` answered for `user`.
    pub fn update_devices(&mut self, user: &str, queried: &QueriedUser) -> DeviceUpdate {
        let list = verify_device_list(user, queried);
        let state = self.users.entry(user.to_string()).or_default();
        let mut trust = Trust::observe(state.trust.as_ref(), list.identity_key.as_deref());
        let identity_changed = matches!(trust, Some(Trust::Changed { .. })) && trust != state.trust;
        let blocking = matches!(
            trust,
            Some(Trust::Changed {
                was_verified: true,
                ..
            })
        );
        if identity_changed && !blocking {
            // Only a verified key holds messages back; an unverified one
            // is replaced, and the caller says so.
            trust = trust.map(|t| t.accept());
        }
        state.trust = trust;
        // Keep what we verified in person while the keys stay the same.
        let devices = list
            .devices
            .into_iter()
            .map(|mut d| {
                d.verified = state.devices.iter().any(|old| {
                    old.verified
                        && old.device_id == d.device_id
                        && old.ed25519 == d.ed25519
                        && old.curve25519 == d.curve25519
                });
                d
            })
            .collect();
        state.devices = devices;
        self.dirty.users.insert(user.to_string());
        DeviceUpdate {
            identity_changed,
            blocking: identity_changed && blocking,
            rejected: list.rejected,
        }
    }

    /// The trust record of `user`, if we have seen their identity key.
    pub fn trust(&self, user: &str) -> Option<&Trust> {
        self.users.get(user).and_then(|s| s.trust.as_ref())
    }

    /// Users whose identity key changed and is not accepted yet, with
    /// whether the old key was verified (sending to them is held back).
    pub fn changed_identities(&self) -> Vec<(String, bool)> {
        let mut out: Vec<(String, bool)> = self
            .users
            .iter()
            .filter_map(|(u, s)| match &s.trust {
                Some(Trust::Changed { was_verified, .. }) => Some((u.clone(), *was_verified)),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Accept `user`'s changed identity key. Returns whether there was a
    /// change to accept.
    pub fn accept_identity(&mut self, user: &str) -> bool {
        let Some(state) = self.users.get_mut(user) else {
            return false;
        };
        let Some(t @ Trust::Changed { .. }) = &state.trust else {
            return false;
        };
        state.trust = Some(t.accept());
        self.dirty.users.insert(user.to_string());
        true
    }

    /// The checked devices of `user`.
    pub fn devices(&self, user: &str) -> &[KnownDevice] {
        self.users.get(user).map_or(&[], |s| &s.devices)
    }

    /// Every known device of `users`, except this one: the recipients of
    /// a conversation's room key.
    pub fn devices_of(&self, users: &[String]) -> Vec<DeviceRef> {
        let me = self.me();
        users
            .iter()
            .flat_map(|u| {
                self.devices(u)
                    .iter()
                    .map(move |d| DeviceRef::new(u, &d.device_id))
            })
            .filter(|d| *d != me)
            .collect()
    }

    pub(super) fn known(&self, d: &DeviceRef) -> Option<&KnownDevice> {
        self.users
            .get(&d.user)?
            .devices
            .iter()
            .find(|k| k.device_id == d.device_id)
    }

    /// Why nothing may go to `d` (or `None`: it may).
    pub(super) fn withheld(&self, d: &DeviceRef, known: &KnownDevice) -> Option<Withheld> {
        match self.trust(&d.user) {
            Some(Trust::Changed { .. }) => Some(Withheld::IdentityChanged),
            _ if !known.certified && !known.verified => Some(Withheld::Uncertified),
            _ => None,
        }
    }

    /// Of `devices`, those we hold no Olm session with: claim their keys.
    pub fn needs_claim(&self, devices: &[DeviceRef]) -> Vec<DeviceRef> {
        devices
            .iter()
            .filter(|d| {
                self.known(d)
                    .is_some_and(|k| !self.olm.has_session(&k.curve25519))
            })
            .cloned()
            .collect()
    }

    /// Start Olm sessions from what `keys_claim` answered. Keys that fail
    /// their checks are returned with why, and make no session.
    pub fn receive_claimed(&mut self, keys: &[ClaimedKey]) -> Vec<(DeviceRef, E2eError)> {
        let mut failed = Vec::new();
        for k in keys {
            let d = DeviceRef::new(&k.user, &k.device_id);
            let Some(known) = self.known(&d).cloned() else {
                failed.push((d.clone(), E2eError::UnknownDevices(vec![d])));
                continue;
            };
            if let Err(e) = self.olm.create_outbound(&self.me, &d, &known, k) {
                failed.push((d, e));
            }
        }
        failed
    }

    /// Encrypt `content` (a JSON object with a `type`) for one device.
    pub fn encrypt_to_device(&mut self, d: &DeviceRef, content: Value) -> Result<Share, E2eError> {
        let known = self
            .known(d)
            .cloned()
            .ok_or_else(|| E2eError::UnknownDevices(vec![d.clone()]))?;
        let body = self.olm.encrypt(&self.me, d, &known, content)?;
        Ok(Share {
            user: d.user.clone(),
            device_id: d.device_id.clone(),
            body,
        })
    }

    /// Decrypt and act on a to-device message the server says
    /// `sender`/`sender_device` sent.
    pub fn receive_to_device(
        &mut self,
        sender: &str,
        sender_device: &str,
        body: &OlmBody,
    ) -> Result<Received, E2eError> {
        let from = DeviceRef::new(sender, sender_device);
        let known = self.known(&from).cloned();
        let expected = known
            .as_ref()
            .map(|k| (k.curve25519.as_str(), k.ed25519.as_str()));
        let envelope = self
            .olm
            .decrypt(&mut self.me, sender, sender_device, expected, body)?;
        // Decrypting may have used up a one-time key.
        self.dirty.account = true;
        let kind = envelope
            .content
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if kind == "room_key" {
            let key: RoomKey = serde_json::from_value(envelope.content)
                .map_err(|e| E2eError::Malformed(format!("room key: {e}")))?;
            let sender = KeySender {
                user: from.user.clone(),
                device_id: from.device_id.clone(),
                curve25519: body.sender_key.clone(),
                ed25519: envelope.sender_ed25519,
            };
            self.add_room_key(&key, sender)?;
            return Ok(Received::RoomKey {
                conversation_id: key.conversation_id,
                session_id: key.session_id,
                from,
            });
        }
        if kind == super::verify::IDENTITY_SECRET {
            self.receive_identity(&from, &envelope.content)?;
            return Ok(Received::Identity { from });
        }
        if kind.starts_with("verify.") {
            let step: VerifyContent = serde_json::from_value(envelope.content)
                .map_err(|e| E2eError::Malformed(format!("verification step: {e}")))?;
            return self.receive_verification(&from, &step);
        }
        Ok(Received::Other {
            from,
            content: envelope.content,
        })
    }

    fn add_room_key(&mut self, key: &RoomKey, sender: KeySender) -> Result<(), E2eError> {
        let new = InboundGroup::from_room_key(key, sender)?;
        if let Some(old) = self.inbound.get(&key.session_id) {
            if old.sender.curve25519 != new.sender.curve25519
                || old.conversation_id != new.conversation_id
            {
                return Err(E2eError::Envelope(
                    "a session already held from another device or conversation".into(),
                ));
            }
            if old.first_index() <= new.first_index() {
                return Ok(());
            }
        }
        self.dirty.inbound.insert(key.session_id.clone());
        self.inbound.insert(key.session_id.clone(), new);
        Ok(())
    }

    /// The safety number with `user`, from our user's identity key and
    /// theirs (as accepted).
    pub fn safety_number(&self, user: &str) -> Option<super::safety::SafetyNumber> {
        let ours = self.own_identity_key()?;
        let theirs = self.trust(user)?.accepted_key()?;
        let ours = super::sign::ed25519("identity key", &ours).ok()?;
        let theirs = super::sign::ed25519("identity key", theirs).ok()?;
        Some(super::safety::SafetyNumber::new(
            self.user(),
            &ours,
            user,
            &theirs,
        ))
    }

    /// The identity key of our user as this device holds or accepts it.
    pub(super) fn own_identity_key(&self) -> Option<String> {
        self.identity_key().or_else(|| {
            self.trust(self.user())
                .and_then(Trust::accepted_key)
                .map(str::to_string)
        })
    }

    /// Mark `user`'s identity key verified in person (safety number
    /// compared). Refused when `identity_key` is not the one held.
    pub fn mark_identity_verified(&mut self, user: &str, identity_key: &str) -> bool {
        let Some(state) = self.users.get_mut(user) else {
            return false;
        };
        if state.trust.as_ref().and_then(Trust::accepted_key) != Some(identity_key) {
            return false;
        }
        state.trust = Some(Trust::Verified {
            identity_key: identity_key.to_string(),
        });
        self.dirty.users.insert(user.to_string());
        true
    }

    /// Note everything as changed, so that the next save writes it all
    /// (after a save whose transaction was rolled back).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.account = true;
        self.dirty.users.extend(self.users.keys().cloned());
        self.dirty.outbound.extend(self.outbound.keys().cloned());
        self.dirty.inbound.extend(self.inbound.keys().cloned());
        self.olm.mark_all_dirty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn crypto(user: &str) -> (Crypto, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let lock = DeviceLock::acquire(&dir.path().join("l"), Duration::ZERO).unwrap();
        (Crypto::new(user, PickleKey::random(), lock), dir)
    }

    #[test]
    fn the_identity_key_and_certificate_go_up_once() {
        let (mut c, _d) = crypto("alice");
        let up = c.keys_upload(0, 5, false);
        assert!(up.identity_key.is_none() && up.certificate.is_none());
        assert_eq!(up.one_time_keys.len(), 5);
        assert!(up.fallback_key.is_some());
        c.keys_uploaded();
        let id = c.create_identity();
        let up = c.keys_upload(5, 5, false);
        assert_eq!(up.identity_key.as_deref(), Some(id.as_str()));
        assert!(!up.replace_identity);
        assert!(up.one_time_keys.is_empty() && up.fallback_key.is_none());
        // The certificate verifies against the identity key.
        let q = QueriedUser {
            identity_key: Some(id),
            devices: vec![super::super::wire::QueriedDevice {
                device_id: c.device_id().into(),
                name: String::new(),
                curve25519: up.keys.as_ref().unwrap().curve25519.clone(),
                ed25519: up.keys.as_ref().unwrap().ed25519.clone(),
                certificate: up.certificate.clone(),
            }],
        };
        assert!(verify_device_list("alice", &q).devices[0].certified);
        c.keys_uploaded();
        let up = c.keys_upload(5, 5, false);
        assert!(up.identity_key.is_none() && up.certificate.is_none());
    }

    #[test]
    fn only_a_verified_own_device_is_signed() {
        let (mut c, _d) = crypto("alice");
        assert!(matches!(
            c.sign_device("OTHERDEVIC"),
            Err(E2eError::NoIdentity)
        ));
        c.create_identity();
        let (other, _d2) = crypto("alice");
        let k = other.device_keys();
        let q = QueriedUser {
            identity_key: c.identity_key(),
            devices: vec![super::super::wire::QueriedDevice {
                device_id: other.device_id().into(),
                name: "laptop".into(),
                curve25519: k.curve25519,
                ed25519: k.ed25519,
                certificate: None,
            }],
        };
        let update = c.update_devices("alice", &q);
        assert!(!update.identity_changed);
        assert!(
            c.sign_device(other.device_id()).is_err(),
            "not verified yet"
        );
        c.users.get_mut("alice").unwrap().devices[0].verified = true;
        let ks = c.sign_device(other.device_id()).unwrap();
        assert_eq!(ks.device_id, other.device_id());
        // A re-query with the same keys keeps the in-person verification.
        c.update_devices("alice", &q);
        assert!(c.devices("alice")[0].verified);
        assert_eq!(c.devices_of(&["alice".into()]).len(), 1);
    }

    #[test]
    fn an_identity_verified_by_safety_number_must_be_the_held_one() {
        let (mut c, _d) = crypto("alice");
        c.update_devices(
            "bob",
            &QueriedUser {
                identity_key: Some(UserIdentity::generate().public_key().to_base64()),
                devices: vec![],
            },
        );
        let held = c.trust("bob").unwrap().accepted_key().unwrap().to_string();
        assert!(!c.mark_identity_verified("bob", "another"));
        assert!(c.mark_identity_verified("bob", &held));
        assert!(c.trust("bob").unwrap().is_verified());
        assert!(!c.accept_identity("bob"), "nothing changed");
        assert!(c.safety_number("bob").is_none(), "alice holds no identity");
        c.create_identity();
        assert!(c.safety_number("bob").is_some());
    }
}
