//! Verifications of [`Crypto`]: starting one with another device, taking
//! the other side's steps (carried over Olm), confirming or refusing the
//! emoji, and recording the outcome: the device verified, and its user's
//! identity key verified when it was the one we hold.

use super::crypto::{Crypto, Received};
use super::identity::UserIdentity;
use super::sas::{Outcome, Party, Verification, VerifyContent};
use super::wire::{DeviceRef, Share};
use super::{E2eError, Trust};
use serde_json::{Value, json};

/// The to-device content carrying our user's identity key to another of
/// our devices.
pub(super) const IDENTITY_SECRET: &str = "identity.secret";

impl Crypto {
    fn party_us(&self) -> Party {
        Party {
            user: self.user().to_string(),
            device_id: self.device_id().to_string(),
            device_ed25519: self.device_keys().ed25519,
            identity_key: self.own_identity_key(),
        }
    }

    fn party_them(&self, d: &DeviceRef) -> Result<Party, E2eError> {
        let known = self
            .known(d)
            .ok_or_else(|| E2eError::UnknownDevices(vec![d.clone()]))?;
        Ok(Party {
            user: d.user.clone(),
            device_id: d.device_id.clone(),
            device_ed25519: known.ed25519.clone(),
            identity_key: self
                .trust(&d.user)
                .and_then(Trust::accepted_key)
                .map(str::to_string),
        })
    }

    fn step_to(&mut self, d: &DeviceRef, step: &VerifyContent) -> Result<Share, E2eError> {
        let content = serde_json::to_value(step).map_err(|e| E2eError::Malformed(e.to_string()))?;
        self.encrypt_to_device(d, content)
    }

    /// Start verifying device `d`: the transaction id and the first step
    /// to send (an Olm session with it is needed).
    pub fn start_verification(&mut self, d: &DeviceRef) -> Result<(String, Share), E2eError> {
        let (v, start) = Verification::start(self.party_us(), self.party_them(d)?);
        let share = self.step_to(d, &start)?;
        let txn = v.transaction_id().to_string();
        self.verifications.insert(txn.clone(), v);
        Ok((txn, share))
    }

    /// A verification under way (its state, its emoji).
    pub fn verification(&self, txn: &str) -> Option<&Verification> {
        self.verifications.get(txn)
    }

    /// Drop a verification nobody finishes (the caller's own timeout).
    pub fn forget_verification(&mut self, txn: &str) {
        self.verifications.remove(txn);
    }

    pub(super) fn receive_verification(
        &mut self,
        from: &DeviceRef,
        step: &VerifyContent,
    ) -> Result<Received, E2eError> {
        let txn = step.transaction_id().to_string();
        let (replies, outcome) = if let VerifyContent::Start(start) = step {
            if self.verifications.contains_key(&txn) {
                return Err(E2eError::Verification(txn, "started twice".into()));
            }
            let (v, key) = Verification::answer(self.party_us(), self.party_them(from)?, start)?;
            self.verifications.insert(txn.clone(), v);
            (vec![key], None)
        } else {
            let v = self.verifications.get_mut(&txn).ok_or_else(|| {
                E2eError::Verification(txn.clone(), "no such verification".into())
            })?;
            if v.them().user != from.user || v.them().device_id != from.device_id {
                return Err(E2eError::Verification(
                    txn,
                    "a step from another device".into(),
                ));
            }
            match v.receive(step) {
                Ok(s) => (s.replies, s.outcome),
                Err(_) => (v.cancel_content().into_iter().collect(), None),
            }
        };
        let shares = replies
            .iter()
            .map(|r| self.step_to(from, r))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(o) = &outcome {
            self.record_outcome(o);
        }
        let cancelled = self
            .verifications
            .get(&txn)
            .and_then(|v| v.cancelled())
            .map(|(c, r)| (c.to_string(), r.to_string()));
        Ok(Received::Verification {
            transaction_id: txn,
            from: from.clone(),
            replies: shares,
            outcome,
            cancelled,
        })
    }

    /// The user confirms the emoji match: the steps to send, and the
    /// outcome if the other side's MACs already came and checked out.
    pub fn confirm_verification(
        &mut self,
        txn: &str,
    ) -> Result<(Vec<Share>, Option<Outcome>), E2eError> {
        let v = self.verifications.get_mut(txn).ok_or_else(|| {
            E2eError::Verification(txn.to_string(), "no such verification".into())
        })?;
        let to = DeviceRef::new(&v.them().user, &v.them().device_id);
        let (replies, outcome, err) = match v.confirm() {
            Ok(s) => (s.replies, s.outcome, None),
            Err(e) => (v.cancel_content().into_iter().collect(), None, Some(e)),
        };
        let shares = replies
            .iter()
            .map(|r| self.step_to(&to, r))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(o) = &outcome {
            self.record_outcome(o);
        }
        match err {
            // The other side still hears why it stopped.
            Some(e) if shares.is_empty() => Err(e),
            _ => Ok((shares, outcome)),
        }
    }

    /// Stop a verification: `mismatch` when the user says the emoji
    /// differ. The step telling the other side.
    pub fn cancel_verification(&mut self, txn: &str, mismatch: bool) -> Result<Share, E2eError> {
        let v = self.verifications.get_mut(txn).ok_or_else(|| {
            E2eError::Verification(txn.to_string(), "no such verification".into())
        })?;
        let to = DeviceRef::new(&v.them().user, &v.them().device_id);
        let step = if mismatch {
            v.mismatch()
        } else {
            v.cancel("user", "cancelled by the user")
        };
        self.step_to(&to, &step)
    }

    fn record_outcome(&mut self, o: &Outcome) {
        let Some(state) = self.users.get_mut(&o.user) else {
            return;
        };
        if let Some(d) = state
            .devices
            .iter_mut()
            .find(|d| d.device_id == o.device_id && d.ed25519 == o.device_ed25519)
        {
            d.verified = true;
        }
        if let (Some(key), Some(t)) = (&o.identity_key, &state.trust)
            && t.accepted_key() == Some(key.as_str())
        {
            state.trust = Some(Trust::Verified {
                identity_key: key.clone(),
            });
        }
        self.dirty.users.insert(o.user.clone());
    }

    /// Our user's identity key for another device of ours, verified in
    /// person first: the to-device message that links it.
    pub fn share_identity(&mut self, device_id: &str) -> Result<Share, E2eError> {
        let identity = self.identity.as_ref().ok_or(E2eError::NoIdentity)?;
        let d = DeviceRef::new(self.user(), device_id);
        if !self.known(&d).is_some_and(|k| k.verified) {
            return Err(E2eError::Verification(
                String::new(),
                format!("verify device {device_id} before sharing the identity key with it"),
            ));
        }
        let content = json!({
            "type": IDENTITY_SECRET,
            "identity_key": identity.public_key().to_base64(),
            "secret": vodozemac::base64_encode(identity.to_bytes().as_slice()),
        });
        self.encrypt_to_device(&d, content)
    }

    /// Take our user's identity key from `from`, which must be another
    /// device of ours verified in person, and the key the one the server
    /// shows for our user.
    pub(super) fn receive_identity(
        &mut self,
        from: &DeviceRef,
        content: &Value,
    ) -> Result<(), E2eError> {
        let refuse = |why: &str| Err(E2eError::Envelope(format!("identity key refused: {why}")));
        if from.user != self.user() {
            return refuse("from another user");
        }
        if !self.known(from).is_some_and(|k| k.verified) {
            return refuse("from a device not verified in person");
        }
        let claimed = content.get("identity_key").and_then(Value::as_str);
        let secret = content
            .get("secret")
            .and_then(Value::as_str)
            .and_then(|s| vodozemac::base64_decode(s).ok())
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok());
        let (Some(claimed), Some(secret)) = (claimed, secret) else {
            return refuse("malformed");
        };
        let identity = UserIdentity::from_bytes(&secret);
        let public = identity.public_key().to_base64();
        if public != claimed {
            return refuse("the secret does not match its key");
        }
        let shown = self
            .trust(self.user())
            .and_then(Trust::accepted_key)
            .map(str::to_string);
        if shown.as_deref() != Some(public.as_str()) {
            return refuse("not the identity key the server shows for this user");
        }
        if let Some(held) = self.identity_key() {
            return if held == public {
                Ok(())
            } else {
                refuse("this device holds another identity key")
            };
        }
        self.identity = Some(identity);
        // It is on the server already, with this device's certificate.
        self.identity_published = true;
        let me = self.user().to_string();
        if let Some(state) = self.users.get_mut(&me) {
            state.trust = Some(Trust::Verified {
                identity_key: public,
            });
        }
        self.dirty.users.insert(me);
        self.dirty.account = true;
        Ok(())
    }
}
