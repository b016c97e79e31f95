//! Verifying another device in person: both screens show seven emoji
//! derived from a key agreement (vodozemac's SAS), the users compare them,
//! and each device then sends MACs over its device key and its user's
//! identity key, which the other checks against what the server said.
//!
//! The steps, each a to-device content carried over Olm:
//! 1. the starter sends `verify.start` with a commitment to its SAS key;
//! 2. the other answers `verify.key` with its SAS key;
//! 3. the starter sends its `verify.key` (checked against the commitment);
//! 4. both show the emoji; when the user confirms, `verify.mac`;
//! 5. a device that checked the other's MACs sends `verify.done`.
//!
//! `verify.cancel` ends it at any point. A step out of order cancels. No
//! timers: the caller drops verifications it no longer wants.

use super::E2eError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use vodozemac::sas::{EstablishedSas, Mac, Sas};

pub use super::emoji::EMOJI;

/// A verification step as it travels inside an Olm to-device content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum VerifyContent {
    #[serde(rename = "verify.start")]
    Start(Start),
    #[serde(rename = "verify.key")]
    Key(KeyStep),
    #[serde(rename = "verify.mac")]
    Mac(MacStep),
    #[serde(rename = "verify.done")]
    Done(DoneStep),
    #[serde(rename = "verify.cancel")]
    Cancel(CancelStep),
}

impl VerifyContent {
    pub fn transaction_id(&self) -> &str {
        match self {
            VerifyContent::Start(s) => &s.transaction_id,
            VerifyContent::Key(s) => &s.transaction_id,
            VerifyContent::Mac(s) => &s.transaction_id,
            VerifyContent::Done(s) => &s.transaction_id,
            VerifyContent::Cancel(s) => &s.transaction_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub transaction_id: String,
    pub from_device: String,
    /// base64 SHA-256 of the starter's SAS key and the transaction id.
    pub commitment: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStep {
    pub transaction_id: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacStep {
    pub transaction_id: String,
    /// MAC over the sorted, comma-joined key ids of `mac`.
    pub keys: String,
    /// Key id (`ed25519:DEVICE`, `identity:USER`) to the MAC of that key.
    pub mac: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneStep {
    pub transaction_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelStep {
    pub transaction_id: String,
    pub code: String,
    pub reason: String,
}

/// One side of a verification, with the keys the server gave for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub user: String,
    pub device_id: String,
    pub device_ed25519: String,
    pub identity_key: Option<String>,
}

/// What a finished verification proved about the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub user: String,
    pub device_id: String,
    pub device_ed25519: String,
    /// Their user's identity key, when they sent a MAC over it.
    pub identity_key: Option<String>,
}

enum State {
    /// We started and wait for their key.
    Started(Sas),
    /// We answered a start and wait for their key, committed to earlier.
    Answered {
        sas: Sas,
        commitment: String,
    },
    /// Keys exchanged: emoji shown.
    Keys {
        sas: Box<EstablishedSas>,
        confirmed: bool,
        their_mac: Option<MacStep>,
    },
    /// Their MACs checked out.
    Verified {
        outcome: Outcome,
        done_seen: bool,
    },
    Cancelled {
        code: String,
        reason: String,
    },
}

/// A step's result: what to send back, and the outcome once verified.
#[derive(Debug, Default)]
pub struct Step {
    pub replies: Vec<VerifyContent>,
    pub outcome: Option<Outcome>,
}

/// One verification with one other device.
pub struct Verification {
    txn: String,
    we_started: bool,
    us: Party,
    them: Party,
    /// The SAS keys, starter's first (for the info strings).
    keys: Option<(String, String)>,
    state: State,
}

impl std::fmt::Debug for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verification")
            .field("txn", &self.txn)
            .field("them", &self.them)
            .field("state", &self.state_name())
            .finish()
    }
}

fn commitment(key: &str, txn: &str) -> String {
    let hash = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update(b"|")
        .chain_update(txn.as_bytes())
        .finalize();
    vodozemac::base64_encode(hash)
}

impl Verification {
    /// Start verifying `them`: the verification and its `verify.start`.
    pub fn start(us: Party, them: Party) -> (Verification, VerifyContent) {
        let txn = hex::encode(rand::random::<[u8; 12]>());
        let sas = Sas::new();
        let start = Start {
            transaction_id: txn.clone(),
            from_device: us.device_id.clone(),
            commitment: commitment(&sas.public_key().to_base64(), &txn),
        };
        let v = Verification {
            txn,
            we_started: true,
            us,
            them,
            keys: None,
            state: State::Started(sas),
        };
        (v, VerifyContent::Start(start))
    }

    /// Answer a `verify.start` from `them`: the verification and our key.
    pub fn answer(
        us: Party,
        them: Party,
        start: &Start,
    ) -> Result<(Verification, VerifyContent), E2eError> {
        if start.from_device != them.device_id || start.transaction_id.is_empty() {
            return Err(E2eError::Verification(
                start.transaction_id.clone(),
                "the start does not come from the device it names".into(),
            ));
        }
        let sas = Sas::new();
        let key = KeyStep {
            transaction_id: start.transaction_id.clone(),
            key: sas.public_key().to_base64(),
        };
        let v = Verification {
            txn: start.transaction_id.clone(),
            we_started: false,
            us,
            them,
            keys: None,
            state: State::Answered {
                sas,
                commitment: start.commitment.clone(),
            },
        };
        Ok((v, VerifyContent::Key(key)))
    }

    pub fn transaction_id(&self) -> &str {
        &self.txn
    }

    pub fn them(&self) -> &Party {
        &self.them
    }

    /// A word for the state, for the screen and for debugging.
    pub fn state_name(&self) -> &'static str {
        match &self.state {
            State::Started(_) => "started",
            State::Answered { .. } => "answered",
            State::Keys {
                confirmed: false, ..
            } => "compare emoji",
            State::Keys {
                confirmed: true, ..
            } => "waiting for the other device",
            State::Verified { .. } => "verified",
            State::Cancelled { .. } => "cancelled",
        }
    }

    pub fn is_cancelled(&self) -> bool {
        matches!(self.state, State::Cancelled { .. })
    }

    /// The cancellation code and reason, once cancelled.
    pub fn cancelled(&self) -> Option<(&str, &str)> {
        match &self.state {
            State::Cancelled { code, reason } => Some((code, reason)),
            _ => None,
        }
    }

    /// Verified, and the other side said it verified us too.
    pub fn is_done(&self) -> bool {
        matches!(
            self.state,
            State::Verified {
                done_seen: true,
                ..
            }
        )
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Verified { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    /// The seven emoji (with names) to compare, once keys are exchanged.
    pub fn emoji(&self) -> Option<[(&'static str, &'static str); 7]> {
        let State::Keys { sas, .. } = &self.state else {
            return None;
        };
        let indices = sas.bytes(&self.sas_info()).emoji_indices();
        Some(indices.map(|i| EMOJI[usize::from(i) % EMOJI.len()]))
    }

    fn sas_info(&self) -> String {
        let (starter, other) = if self.we_started {
            (&self.us, &self.them)
        } else {
            (&self.them, &self.us)
        };
        let (sk, ok) = self.keys.clone().unwrap_or_default();
        format!(
            "CHAT_SAS_V1|{}|{}|{sk}|{}|{}|{ok}|{}",
            starter.user, starter.device_id, other.user, other.device_id, self.txn
        )
    }

    fn mac_info(&self, from: &Party, to: &Party, key_id: &str) -> String {
        format!(
            "CHAT_MAC_V1|{}|{}|{}|{}|{}|{key_id}",
            from.user, from.device_id, to.user, to.device_id, self.txn
        )
    }

    /// Cancel with `code`: the state ends and the content to send.
    pub fn cancel(&mut self, code: &str, reason: &str) -> VerifyContent {
        self.state = State::Cancelled {
            code: code.to_string(),
            reason: reason.to_string(),
        };
        VerifyContent::Cancel(CancelStep {
            transaction_id: self.txn.clone(),
            code: code.to_string(),
            reason: reason.to_string(),
        })
    }

    /// The user says the emoji differ.
    pub fn mismatch(&mut self) -> VerifyContent {
        self.cancel("mismatched_sas", "the emoji did not match")
    }

    /// A refusal: cancels, and the error carries the cancel to send.
    fn refuse(&mut self, code: &str, reason: &str) -> Result<Step, E2eError> {
        self.cancel(code, reason);
        Err(E2eError::Verification(
            self.txn.clone(),
            format!("{code}: {reason}"),
        ))
    }

    /// The content telling the other side why we stopped (after an error).
    pub fn cancel_content(&self) -> Option<VerifyContent> {
        self.cancelled().map(|(code, reason)| {
            VerifyContent::Cancel(CancelStep {
                transaction_id: self.txn.clone(),
                code: code.to_string(),
                reason: reason.to_string(),
            })
        })
    }

    /// Take the next step the other device sent.
    pub fn receive(&mut self, content: &VerifyContent) -> Result<Step, E2eError> {
        if content.transaction_id() != self.txn {
            return Err(E2eError::Verification(
                content.transaction_id().to_string(),
                "not this verification".into(),
            ));
        }
        if let VerifyContent::Cancel(c) = content {
            self.state = State::Cancelled {
                code: c.code.clone(),
                reason: c.reason.clone(),
            };
            return Ok(Step::default());
        }
        let state = std::mem::replace(
            &mut self.state,
            State::Cancelled {
                code: String::new(),
                reason: String::new(),
            },
        );
        match (state, content) {
            (State::Started(sas), VerifyContent::Key(k)) => {
                let ours = sas.public_key().to_base64();
                let Ok(est) = sas.diffie_hellman_with_raw(&k.key) else {
                    return self.refuse("invalid_message", "their key does not parse");
                };
                self.keys = Some((ours.clone(), k.key.clone()));
                self.state = State::Keys {
                    sas: Box::new(est),
                    confirmed: false,
                    their_mac: None,
                };
                Ok(Step {
                    replies: vec![VerifyContent::Key(KeyStep {
                        transaction_id: self.txn.clone(),
                        key: ours,
                    })],
                    outcome: None,
                })
            }
            (State::Answered { sas, commitment: c }, VerifyContent::Key(k)) => {
                if commitment(&k.key, &self.txn) != c {
                    return self.refuse(
                        "mismatched_commitment",
                        "their key is not the one committed to",
                    );
                }
                let ours = sas.public_key().to_base64();
                let Ok(est) = sas.diffie_hellman_with_raw(&k.key) else {
                    return self.refuse("invalid_message", "their key does not parse");
                };
                self.keys = Some((k.key.clone(), ours));
                self.state = State::Keys {
                    sas: Box::new(est),
                    confirmed: false,
                    their_mac: None,
                };
                Ok(Step::default())
            }
            (
                State::Keys {
                    sas,
                    confirmed,
                    their_mac: None,
                },
                VerifyContent::Mac(m),
            ) => {
                self.state = State::Keys {
                    sas,
                    confirmed,
                    their_mac: Some(m.clone()),
                };
                if confirmed {
                    self.finish()
                } else {
                    Ok(Step::default())
                }
            }
            (State::Verified { outcome, .. }, VerifyContent::Done(_)) => {
                self.state = State::Verified {
                    outcome,
                    done_seen: true,
                };
                Ok(Step::default())
            }
            (_, _) => self.refuse("unexpected_message", "a step out of order"),
        }
    }

    /// The user confirms the emoji match: our MACs go out (and, if theirs
    /// came already, they are checked).
    pub fn confirm(&mut self) -> Result<Step, E2eError> {
        let State::Keys {
            sas,
            confirmed: false,
            ..
        } = &self.state
        else {
            return self.refuse("unexpected_message", "nothing to confirm now");
        };
        let mut mac = BTreeMap::new();
        let device_id = format!("ed25519:{}", self.us.device_id);
        mac.insert(
            device_id.clone(),
            sas.calculate_mac(
                &self.us.device_ed25519,
                &self.mac_info(&self.us, &self.them, &device_id),
            )
            .to_base64(),
        );
        if let Some(identity) = &self.us.identity_key {
            let id = format!("identity:{}", self.us.user);
            let info = self.mac_info(&self.us, &self.them, &id);
            mac.insert(id, sas.calculate_mac(identity, &info).to_base64());
        }
        let ids: Vec<&str> = mac.keys().map(String::as_str).collect();
        let keys = sas
            .calculate_mac(
                &ids.join(","),
                &self.mac_info(&self.us, &self.them, "KEY_IDS"),
            )
            .to_base64();
        let ours = VerifyContent::Mac(MacStep {
            transaction_id: self.txn.clone(),
            keys,
            mac,
        });
        if let State::Keys { confirmed, .. } = &mut self.state {
            *confirmed = true;
        }
        let mut step = if matches!(
            &self.state,
            State::Keys {
                their_mac: Some(_),
                ..
            }
        ) {
            self.finish()?
        } else {
            Step::default()
        };
        step.replies.insert(0, ours);
        Ok(step)
    }

    /// Check their MACs (we confirmed, theirs came): verified or cancelled.
    fn finish(&mut self) -> Result<Step, E2eError> {
        let State::Keys {
            sas,
            their_mac: Some(m),
            ..
        } = &self.state
        else {
            return self.refuse("unexpected_message", "no MAC to check");
        };
        let check = |input: &str, key_id: &str, tag: &str| -> bool {
            let Ok(tag) = Mac::from_base64(tag) else {
                return false;
            };
            sas.verify_mac(input, &self.mac_info(&self.them, &self.us, key_id), &tag)
                .is_ok()
        };
        let ids: Vec<&str> = m.mac.keys().map(String::as_str).collect();
        if !check(&ids.join(","), "KEY_IDS", &m.keys) {
            return self.refuse("key_mismatch", "the list of keys does not match its MAC");
        }
        let device_id = format!("ed25519:{}", self.them.device_id);
        let identity_id = format!("identity:{}", self.them.user);
        let mut identity = None;
        let mut device_ok = false;
        for (key_id, tag) in &m.mac {
            let key = if *key_id == device_id {
                Some(&self.them.device_ed25519)
            } else if *key_id == identity_id {
                self.them.identity_key.as_ref()
            } else {
                None
            };
            let Some(key) = key else {
                return self.refuse("key_mismatch", "a MAC over a key we do not know of");
            };
            if !check(key, key_id, tag) {
                return self.refuse("key_mismatch", "a key does not match its MAC");
            }
            if *key_id == device_id {
                device_ok = true;
            } else {
                identity = Some(key.clone());
            }
        }
        if !device_ok {
            return self.refuse("key_mismatch", "no MAC over the device key");
        }
        let outcome = Outcome {
            user: self.them.user.clone(),
            device_id: self.them.device_id.clone(),
            device_ed25519: self.them.device_ed25519.clone(),
            identity_key: identity,
        };
        self.state = State::Verified {
            outcome: outcome.clone(),
            done_seen: false,
        };
        Ok(Step {
            replies: vec![VerifyContent::Done(DoneStep {
                transaction_id: self.txn.clone(),
            })],
            outcome: Some(outcome),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party(user: &str, dev: &str, identity: bool) -> Party {
        Party {
            user: user.into(),
            device_id: dev.into(),
            device_ed25519: vodozemac::Ed25519SecretKey::new().public_key().to_base64(),
            identity_key: identity
                .then(|| vodozemac::Ed25519SecretKey::new().public_key().to_base64()),
        }
    }

    /// Run a verification to the point where both show emoji.
    fn to_emoji(alice: &Party, bob: &Party) -> (Verification, Verification) {
        let (mut a, start) = Verification::start(alice.clone(), bob.clone());
        let VerifyContent::Start(s) = &start else {
            panic!()
        };
        let (mut b, key) = Verification::answer(bob.clone(), alice.clone(), s).unwrap();
        let step = a.receive(&key).unwrap();
        b.receive(&step.replies[0]).unwrap();
        (a, b)
    }

    #[test]
    fn both_sides_see_the_same_emoji_and_verify_each_other() {
        let (alice, bob) = (
            party("alice", "AAAAAAAAAA", true),
            party("bob", "BBBBBBBBBB", true),
        );
        let (mut a, mut b) = to_emoji(&alice, &bob);
        let (ea, eb) = (a.emoji().unwrap(), b.emoji().unwrap());
        assert_eq!(ea, eb);
        let a_mac = a.confirm().unwrap();
        assert_eq!(a_mac.replies.len(), 1);
        // Bob's MAC arrives before Bob's user confirms... no: Alice's does.
        let s = b.receive(&a_mac.replies[0]).unwrap();
        assert!(s.replies.is_empty());
        let b_step = b.confirm().unwrap();
        assert_eq!(b_step.replies.len(), 2, "mac and done");
        let got = b_step.outcome.unwrap();
        assert_eq!(got.user, "alice");
        assert_eq!(got.identity_key, alice.identity_key);
        let a_step = a.receive(&b_step.replies[0]).unwrap();
        let got = a_step.outcome.unwrap();
        assert_eq!(got.device_ed25519, bob.device_ed25519);
        assert_eq!(got.identity_key, bob.identity_key);
        a.receive(&b_step.replies[1]).unwrap();
        assert!(!b.is_done());
        b.receive(&a_step.replies[0]).unwrap();
        assert_eq!(a.state_name(), "verified");
        assert!(a.is_done() && b.is_done());
    }

    #[test]
    fn a_key_that_differs_from_the_servers_fails_the_mac() {
        let (alice, bob) = (
            party("alice", "AAAAAAAAAA", true),
            party("bob", "BBBBBBBBBB", false),
        );
        // Alice was told another key for bob's device than bob's own.
        let mut bob_as_alice_knows = bob.clone();
        bob_as_alice_knows.device_ed25519 = party("x", "X", false).device_ed25519;
        let (mut a, start) = Verification::start(alice.clone(), bob_as_alice_knows);
        let VerifyContent::Start(s) = &start else {
            panic!()
        };
        let (mut b, key) = Verification::answer(bob, alice, s).unwrap();
        let step = a.receive(&key).unwrap();
        b.receive(&step.replies[0]).unwrap();
        a.confirm().unwrap();
        let b_step = b.confirm().unwrap();
        let err = a.receive(&b_step.replies[0]).unwrap_err();
        assert!(err.to_string().contains("key_mismatch"), "{err}");
        assert!(a.is_cancelled());
        assert!(matches!(a.cancel_content(), Some(VerifyContent::Cancel(_))));
    }

    #[test]
    fn a_tampered_mac_is_detected() {
        let (alice, bob) = (
            party("alice", "AAAAAAAAAA", true),
            party("bob", "BBBBBBBBBB", true),
        );
        let (mut a, mut b) = to_emoji(&alice, &bob);
        a.confirm().unwrap();
        let mut step = b.confirm().unwrap();
        let VerifyContent::Mac(m) = &mut step.replies[0] else {
            panic!()
        };
        let id = format!("identity:{}", bob.user);
        let tag = m.mac.get_mut(&id).unwrap();
        *tag = vodozemac::base64_encode([0u8; 32]);
        assert!(a.receive(&step.replies[0]).is_err());
        assert_eq!(a.cancelled().unwrap().0, "key_mismatch");
    }

    #[test]
    fn a_key_not_matching_the_commitment_is_refused() {
        let (alice, bob) = (
            party("alice", "AAAAAAAAAA", false),
            party("bob", "BBBBBBBBBB", false),
        );
        let (_a, start) = Verification::start(alice.clone(), bob.clone());
        let VerifyContent::Start(s) = &start else {
            panic!()
        };
        let (mut b, _) = Verification::answer(bob, alice, s).unwrap();
        let other = Sas::new().public_key().to_base64();
        let err = b
            .receive(&VerifyContent::Key(KeyStep {
                transaction_id: s.transaction_id.clone(),
                key: other,
            }))
            .unwrap_err();
        assert!(err.to_string().contains("mismatched_commitment"));
    }

    #[test]
    fn steps_out_of_order_and_cancels() {
        let (alice, bob) = (
            party("alice", "AAAAAAAAAA", false),
            party("bob", "BBBBBBBBBB", false),
        );
        let (mut a, start) = Verification::start(alice.clone(), bob.clone());
        // A MAC before any key: refused, and the verification is over.
        let mac = VerifyContent::Mac(MacStep {
            transaction_id: a.transaction_id().into(),
            keys: String::new(),
            mac: BTreeMap::new(),
        });
        assert!(a.receive(&mac).is_err());
        assert!(a.is_cancelled());
        // Confirming before keys is refused.
        let (mut a, _) = Verification::start(alice.clone(), bob.clone());
        assert!(a.confirm().is_err());
        // Another transaction's step does not touch this one.
        let (mut a, _) = Verification::start(alice.clone(), bob.clone());
        let other = VerifyContent::Done(DoneStep {
            transaction_id: "other".into(),
        });
        assert!(a.receive(&other).is_err());
        assert_eq!(a.state_name(), "started");
        // A cancel from them ends it.
        let VerifyContent::Start(s) = &start else {
            panic!()
        };
        let (mut b, _) = Verification::answer(bob.clone(), alice.clone(), s).unwrap();
        let cancel = VerifyContent::Cancel(CancelStep {
            transaction_id: s.transaction_id.clone(),
            code: "user".into(),
            reason: "no".into(),
        });
        b.receive(&cancel).unwrap();
        assert_eq!(b.cancelled(), Some(("user", "no")));
        // The emoji differ: the user says so.
        let (mut a, _b) = to_emoji(&alice, &bob);
        assert!(matches!(a.mismatch(), VerifyContent::Cancel(c) if c.code == "mismatched_sas"));
        // A start naming another device is refused.
        let mut s2 = s.clone();
        s2.from_device = "ZZZZZZZZZZ".into();
        assert!(Verification::answer(bob, alice, &s2).is_err());
    }

    #[test]
    fn steps_round_trip_as_json() {
        let c = VerifyContent::Key(KeyStep {
            transaction_id: "t".into(),
            key: "k".into(),
        });
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["type"], "verify.key");
        assert_eq!(serde_json::from_value::<VerifyContent>(v).unwrap(), c);
        assert!(serde_json::from_str::<VerifyContent>(r#"{"type":"verify.key"}"#).is_err());
    }
}
