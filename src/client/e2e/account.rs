//! This device's Olm account: its Curve25519 and Ed25519 keys, its one-time
//! keys and fallback key, each signed with the device key over the
//! `chat-otk-v1` string, and what a `keys_upload` carries of them.

use super::sign;
use super::wire::{DeviceKeys, SignedKey};
use vodozemac::olm::{Account, AccountPickle};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, KeyId};

/// The prefix of fallback key ids: one-time key ids are the 11 characters
/// of an 8-byte counter in base64, fallback ids this letter and such 11
/// characters, so the two never collide (chatd refuses a reused id).
const FALLBACK_PREFIX: &str = "F";

/// This device: its user, its id and its Olm account.
pub struct DeviceAccount {
    user: String,
    device_id: String,
    account: Account,
    flags: AccountFlags,
}

/// What the account remembers beside its pickle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AccountFlags {
    /// A fallback key was made (then one is always held).
    pub fallback_made: bool,
    /// A peer used our fallback key: a new one goes up next time.
    pub fallback_used: bool,
}

impl std::fmt::Debug for DeviceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAccount")
            .field("user", &self.user)
            .field("device_id", &self.device_id)
            .finish_non_exhaustive()
    }
}

/// A new random device id: 10 characters `A-Z`.
pub fn new_device_id() -> String {
    let bytes: [u8; 10] = rand::random();
    bytes.iter().map(|b| char::from(b'A' + b % 26)).collect()
}

/// Whether `id` has the shape of a device id this client makes.
pub fn is_device_id(id: &str) -> bool {
    id.len() == 10 && id.bytes().all(|b| b.is_ascii_uppercase())
}

impl DeviceAccount {
    /// A new device of `user` with fresh keys.
    pub fn new(user: &str) -> DeviceAccount {
        DeviceAccount {
            user: user.to_string(),
            device_id: new_device_id(),
            account: Account::new(),
            flags: AccountFlags::default(),
        }
    }

    /// A device restored from its parts (see `store`).
    pub(crate) fn restore(
        user: String,
        device_id: String,
        pickle: AccountPickle,
        flags: AccountFlags,
    ) -> DeviceAccount {
        DeviceAccount {
            user,
            device_id,
            account: Account::from_pickle(pickle),
            flags,
        }
    }

    pub(crate) fn pickle(&self) -> AccountPickle {
        self.account.pickle()
    }

    pub(crate) fn flags(&self) -> AccountFlags {
        self.flags
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub fn curve25519(&self) -> Curve25519PublicKey {
        self.account.curve25519_key()
    }

    pub fn ed25519(&self) -> Ed25519PublicKey {
        self.account.ed25519_key()
    }

    /// The device's keys as `keys_upload` carries them.
    pub fn device_keys(&self) -> DeviceKeys {
        DeviceKeys {
            curve25519: self.curve25519().to_base64(),
            ed25519: self.ed25519().to_base64(),
        }
    }

    /// The most one-time keys the account keeps unclaimed on the server:
    /// more would make it forget private keys peers may still use.
    pub fn max_one_time_keys(&self) -> usize {
        self.account.max_number_of_one_time_keys()
    }

    /// Make new one-time keys so that, with `unclaimed` still on the
    /// server, `target` are there (capped at [`Self::max_one_time_keys`]).
    /// Returns how many were made.
    pub fn top_up_one_time_keys(&mut self, unclaimed: usize, target: usize) -> usize {
        let pending = self.account.one_time_keys().len();
        let want = target
            .min(self.max_one_time_keys())
            .saturating_sub(unclaimed + pending);
        if want > 0 {
            self.account.generate_one_time_keys(want);
        }
        want
    }

    /// Make a new fallback key when there is none yet or a peer used the
    /// current one (and no new one waits to go up). Returns whether one was
    /// made.
    pub fn ensure_fallback_key(&mut self) -> bool {
        let waiting = !self.account.fallback_key().is_empty();
        if waiting || (self.flags.fallback_made && !self.flags.fallback_used) {
            return false;
        }
        self.account.generate_fallback_key();
        self.flags = AccountFlags {
            fallback_made: true,
            fallback_used: false,
        };
        true
    }

    /// The one-time keys and the fallback key not published yet, signed.
    pub fn unpublished_keys(&self) -> (Vec<SignedKey>, Option<SignedKey>) {
        let mut otks: Vec<(KeyId, Curve25519PublicKey)> =
            self.account.one_time_keys().into_iter().collect();
        otks.sort_by_key(|(id, _)| id.to_base64());
        let otks = otks
            .into_iter()
            .map(|(id, key)| self.signed(id.to_base64(), key))
            .collect();
        let fallback = self
            .account
            .fallback_key()
            .into_iter()
            .next()
            .map(|(id, key)| self.signed(format!("{FALLBACK_PREFIX}{}", id.to_base64()), key));
        (otks, fallback)
    }

    fn signed(&self, key_id: String, key: Curve25519PublicKey) -> SignedKey {
        let key = key.to_base64();
        let text = sign::one_time_key_string(&self.user, &self.device_id, &key_id, &key);
        let signature = self.account.sign(text.as_bytes()).to_base64();
        SignedKey {
            key_id,
            key,
            signature,
        }
    }

    /// The server holds every key from [`Self::unpublished_keys`].
    pub fn mark_published(&mut self) {
        self.account.mark_keys_as_published();
    }

    /// Sign bytes with the device's Ed25519 key.
    pub fn sign(&self, message: &str) -> String {
        self.account.sign(message.as_bytes()).to_base64()
    }

    /// A copy to try a pre-key message on: it replaces this account only
    /// if the message turns out genuine, so a forged one costs no key.
    pub(crate) fn trial_copy(&self) -> DeviceAccount {
        DeviceAccount {
            user: self.user.clone(),
            device_id: self.device_id.clone(),
            account: Account::from_pickle(self.account.pickle()),
            flags: self.flags,
        }
    }

    pub(crate) fn account(&self) -> &Account {
        &self.account
    }

    /// The account for creating an inbound session; notes a used fallback key.
    pub(crate) fn create_inbound(
        &mut self,
        their_curve: Curve25519PublicKey,
        message: &vodozemac::olm::PreKeyMessage,
    ) -> Result<vodozemac::olm::InboundCreationResult, vodozemac::olm::SessionCreationError> {
        let before = self.account.stored_one_time_key_count();
        let created = self.account.create_inbound_session(
            vodozemac::olm::SessionConfig::version_1(),
            their_curve,
            message,
        )?;
        if self.account.stored_one_time_key_count() == before {
            // No one-time key went: the peer used the fallback key.
            self.flags.fallback_used = true;
        }
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_ten_capitals() {
        for _ in 0..20 {
            let id = new_device_id();
            assert!(is_device_id(&id), "{id}");
        }
        assert!(!is_device_id("ABCDEFGHI"));
        assert!(!is_device_id("abcdefghij"));
    }

    #[test]
    fn keys_are_signed_over_the_agreed_string_and_marked_published() {
        let mut a = DeviceAccount::new("alice");
        assert_eq!(a.top_up_one_time_keys(0, 5), 5);
        assert!(a.ensure_fallback_key());
        assert!(!a.ensure_fallback_key(), "one is waiting to go up");
        let (otks, fallback) = a.unpublished_keys();
        assert_eq!(otks.len(), 5);
        let fallback = fallback.unwrap();
        assert!(fallback.key_id.starts_with(FALLBACK_PREFIX));
        for k in otks.iter().chain([&fallback]) {
            assert!(!otks.iter().any(|o| o.key_id == fallback.key_id));
            let text = sign::one_time_key_string("alice", a.device_id(), &k.key_id, &k.key);
            sign::verify(&a.ed25519(), &text, &k.signature, "otk").unwrap();
        }
        a.mark_published();
        let (otks, fallback) = a.unpublished_keys();
        assert!(otks.is_empty() && fallback.is_none());
        // Topping up counts what the server still holds.
        assert_eq!(a.top_up_one_time_keys(3, 5), 2);
        assert_eq!(a.top_up_one_time_keys(0, 1000), a.max_one_time_keys() - 2);
        // A published, unused fallback key is kept; a used one is replaced.
        assert!(!a.ensure_fallback_key());
        a.flags.fallback_used = true;
        assert!(a.ensure_fallback_key());
    }

    #[test]
    fn key_ids_never_repeat() {
        let mut a = DeviceAccount::new("alice");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            a.top_up_one_time_keys(0, 4);
            a.flags.fallback_used = true;
            a.ensure_fallback_key();
            let (otks, fb) = a.unpublished_keys();
            for k in otks.into_iter().chain(fb) {
                assert!(seen.insert(k.key_id.clone()), "{} twice", k.key_id);
            }
            a.mark_published();
        }
    }
}
