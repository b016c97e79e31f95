//! Verifications of [`Crypto`]: starting one with another device, taking
//! the other side's steps (carried over Olm), confirming or refusing the
//! emoji, and recording the outcome: the device verified, and its user's
//! identity key verified when it was the one we hold.

use super::crypto::{Crypto, Received};
use super::sas::{Outcome, Party, Verification, VerifyContent};
use super::wire::{DeviceRef, Share};
use super::{E2eError, Trust};

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
}
