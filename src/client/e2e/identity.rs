//! Users' identity keys: one Ed25519 key per user certifies each of their
//! devices (`chat-device-v1`). Here: our own identity (signing), checking a
//! queried device list against its identity key, and the [`Trust`] kept
//! per user, which notices when a user's identity key changes.

use super::E2eError;
use super::sign;
use super::wire::{KeysSign, QueriedDevice, QueriedUser};
use serde::{Deserialize, Serialize};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519SecretKey};

/// Our user's identity key, held by the device that made it.
pub struct UserIdentity {
    secret: Ed25519SecretKey,
}

impl std::fmt::Debug for UserIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserIdentity({})", self.public_key().to_base64())
    }
}

impl UserIdentity {
    /// A new random identity key.
    pub fn generate() -> UserIdentity {
        UserIdentity {
            secret: Ed25519SecretKey::new(),
        }
    }

    pub(crate) fn to_bytes(&self) -> Box<[u8; 32]> {
        self.secret.to_bytes()
    }

    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> UserIdentity {
        UserIdentity {
            secret: Ed25519SecretKey::from_slice(bytes),
        }
    }

    pub fn public_key(&self) -> Ed25519PublicKey {
        self.secret.public_key()
    }

    /// The certificate of a device of `user` (base64 signature).
    pub fn certify(&self, user: &str, device_id: &str, curve25519: &str, ed25519: &str) -> String {
        let text = sign::device_certificate_string(user, device_id, curve25519, ed25519);
        self.secret.sign(text.as_bytes()).to_base64()
    }

    /// A `keys_sign` request certifying another device of our user, after
    /// checking that its keys parse.
    pub fn sign_device(&self, user: &str, device: &QueriedDevice) -> Result<KeysSign, E2eError> {
        sign::curve25519("device curve25519 key", &device.curve25519)?;
        sign::ed25519("device ed25519 key", &device.ed25519)?;
        Ok(KeysSign {
            device_id: device.device_id.clone(),
            certificate: self.certify(user, &device.device_id, &device.curve25519, &device.ed25519),
        })
    }
}

/// A device whose keys parsed, and whether the user's identity key
/// certifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownDevice {
    pub device_id: String,
    pub name: Option<String>,
    pub curve25519: String,
    pub ed25519: String,
    /// A valid certificate by the user's current identity key.
    pub certified: bool,
    /// Checked by us in person (a SAS verification).
    #[serde(default)]
    pub verified: bool,
}

impl KnownDevice {
    pub fn curve_key(&self) -> Result<Curve25519PublicKey, E2eError> {
        sign::curve25519("device curve25519 key", &self.curve25519)
    }

    pub fn ed_key(&self) -> Result<Ed25519PublicKey, E2eError> {
        sign::ed25519("device ed25519 key", &self.ed25519)
    }
}

/// A queried device list, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    pub identity_key: Option<String>,
    pub devices: Vec<KnownDevice>,
    /// Devices left out, with why (keys that do not parse, a certificate
    /// that does not verify).
    pub rejected: Vec<(String, String)>,
}

/// Check each device of `user` in a `keys_query` answer: its keys must
/// parse; a certificate, when there is one, must verify against the
/// identity key (a device whose certificate is bad is left out, one without
/// a certificate is kept as uncertified).
pub fn verify_device_list(user: &str, queried: &QueriedUser) -> DeviceList {
    let identity = queried
        .identity_key
        .as_deref()
        .map(|k| sign::ed25519("identity key", k));
    let mut list = DeviceList::default();
    let identity = match identity {
        Some(Ok(k)) => {
            list.identity_key = queried.identity_key.clone();
            Some(k)
        }
        Some(Err(e)) => {
            list.rejected.push((String::new(), e.to_string()));
            None
        }
        None => None,
    };
    for d in &queried.devices {
        if let Err(e) = check_device(user, d, identity.as_ref()) {
            list.rejected.push((d.device_id.clone(), e.to_string()));
            continue;
        }
        list.devices.push(KnownDevice {
            device_id: d.device_id.clone(),
            name: Some(d.name.clone()).filter(|n| !n.is_empty()),
            curve25519: d.curve25519.clone(),
            ed25519: d.ed25519.clone(),
            certified: identity.is_some() && d.certificate.is_some(),
            verified: false,
        });
    }
    list
}

fn check_device(
    user: &str,
    d: &QueriedDevice,
    identity: Option<&Ed25519PublicKey>,
) -> Result<(), E2eError> {
    if d.device_id.is_empty() {
        return Err(E2eError::Malformed("a device without an id".into()));
    }
    sign::curve25519("device curve25519 key", &d.curve25519)?;
    sign::ed25519("device ed25519 key", &d.ed25519)?;
    if let (Some(identity), Some(cert)) = (identity, &d.certificate) {
        let text = sign::device_certificate_string(user, &d.device_id, &d.curve25519, &d.ed25519);
        sign::verify(identity, &text, cert, "device certificate")?;
    }
    Ok(())
}

/// What we hold about a user's identity key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Trust {
    /// Seen (first use) but not checked in person.
    Unverified { identity_key: String },
    /// Checked in person (SAS or safety number).
    Verified { identity_key: String },
    /// The server now shows another key than the one we held: nothing goes
    /// to or is accepted from this user until the change is accepted.
    Changed {
        old: String,
        new: String,
        was_verified: bool,
    },
}

impl Trust {
    /// The key this record accepts for the user, if any.
    pub fn accepted_key(&self) -> Option<&str> {
        match self {
            Trust::Unverified { identity_key } | Trust::Verified { identity_key } => {
                Some(identity_key)
            }
            Trust::Changed { .. } => None,
        }
    }

    pub fn is_verified(&self) -> bool {
        matches!(self, Trust::Verified { .. })
    }

    /// The record after the server shows `seen` as the user's identity key
    /// (`None`: the user has none).
    pub fn observe(current: Option<&Trust>, seen: Option<&str>) -> Option<Trust> {
        let Some(seen) = seen else {
            return current.cloned();
        };
        Some(match current {
            None => Trust::Unverified {
                identity_key: seen.to_string(),
            },
            Some(t @ (Trust::Unverified { identity_key } | Trust::Verified { identity_key })) => {
                if identity_key == seen {
                    t.clone()
                } else {
                    Trust::Changed {
                        old: identity_key.clone(),
                        new: seen.to_string(),
                        was_verified: t.is_verified(),
                    }
                }
            }
            Some(Trust::Changed {
                old,
                new,
                was_verified,
            }) => {
                if seen == old {
                    // Back to the key we held.
                    if *was_verified {
                        Trust::Verified {
                            identity_key: old.clone(),
                        }
                    } else {
                        Trust::Unverified {
                            identity_key: old.clone(),
                        }
                    }
                } else {
                    Trust::Changed {
                        old: old.clone(),
                        new: if new == seen {
                            new.clone()
                        } else {
                            seen.to_string()
                        },
                        was_verified: *was_verified,
                    }
                }
            }
        })
    }

    /// The user accepts a changed key: it is held again, unverified.
    pub fn accept(&self) -> Trust {
        match self {
            Trust::Changed { new, .. } => Trust::Unverified {
                identity_key: new.clone(),
            },
            t => t.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::e2e::account::DeviceAccount;

    fn queried(identity: &UserIdentity, user: &str, devs: &[&DeviceAccount]) -> QueriedUser {
        QueriedUser {
            identity_key: Some(identity.public_key().to_base64()),
            devices: devs
                .iter()
                .map(|d| {
                    let k = d.device_keys();
                    QueriedDevice {
                        device_id: d.device_id().into(),
                        name: String::new(),
                        certificate: Some(identity.certify(
                            user,
                            d.device_id(),
                            &k.curve25519,
                            &k.ed25519,
                        )),
                        curve25519: k.curve25519,
                        ed25519: k.ed25519,
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn certified_devices_verify_and_forged_ones_are_left_out() {
        let id = UserIdentity::generate();
        let (d1, d2) = (DeviceAccount::new("bob"), DeviceAccount::new("bob"));
        let mut q = queried(&id, "bob", &[&d1, &d2]);
        let list = verify_device_list("bob", &q);
        assert_eq!(list.devices.len(), 2);
        assert!(list.devices.iter().all(|d| d.certified));
        // A certificate made for another user does not carry over.
        assert_eq!(verify_device_list("carol", &q).devices.len(), 0);
        // A swapped device key breaks its certificate.
        q.devices[1].curve25519 = d1.device_keys().curve25519;
        let list = verify_device_list("bob", &q);
        assert_eq!(list.devices.len(), 1);
        assert_eq!(list.rejected[0].0, d2.device_id());
        // No certificate: kept, uncertified.
        q.devices[1] = queried(&id, "bob", &[&d2]).devices.remove(0);
        q.devices[1].certificate = None;
        let list = verify_device_list("bob", &q);
        assert!(list.devices[0].certified && !list.devices[1].certified);
        // Garbage keys are refused, not panicked on.
        q.devices[0].ed25519 = "@@".into();
        assert_eq!(verify_device_list("bob", &q).devices.len(), 1);
    }

    #[test]
    fn sign_device_makes_a_certificate_that_verifies() {
        let id = UserIdentity::generate();
        let d = DeviceAccount::new("bob");
        let mut q = queried(&id, "bob", &[&d]);
        q.devices[0].certificate = None;
        let signed = id.sign_device("bob", &q.devices[0]).unwrap();
        q.devices[0].certificate = Some(signed.certificate);
        assert!(verify_device_list("bob", &q).devices[0].certified);
        let restored = UserIdentity::from_bytes(&id.to_bytes());
        assert_eq!(restored.public_key(), id.public_key());
    }

    #[test]
    fn trust_notices_a_changed_key_until_accepted() {
        let t = Trust::observe(None, Some("K1")).unwrap();
        assert_eq!(
            t,
            Trust::Unverified {
                identity_key: "K1".into()
            }
        );
        assert_eq!(Trust::observe(Some(&t), Some("K1")), Some(t.clone()));
        assert_eq!(Trust::observe(Some(&t), None), Some(t.clone()));
        let v = Trust::Verified {
            identity_key: "K1".into(),
        };
        let changed = Trust::observe(Some(&v), Some("K2")).unwrap();
        assert_eq!(
            changed,
            Trust::Changed {
                old: "K1".into(),
                new: "K2".into(),
                was_verified: true
            }
        );
        assert_eq!(changed.accepted_key(), None);
        // Coming back to the old key restores what was held.
        assert_eq!(Trust::observe(Some(&changed), Some("K1")), Some(v));
        let accepted = changed.accept();
        assert_eq!(accepted.accepted_key(), Some("K2"));
        assert!(!accepted.is_verified());
    }
}
