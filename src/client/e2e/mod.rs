//! End-to-end encryption of secret conversations, as pure logic: no
//! socket, no screen. The engine feeds it what the server answers and sends
//! what it produces; the agreed wire format lives in [`wire`].
//!
//! - [`account`]: this device's Olm account and its signed one-time keys.
//! - [`identity`]: users' identity keys, device certificates, [`Trust`].
//! - [`olm`]: pairwise Olm sessions carrying to-device messages in a
//!   checked envelope.
//! - [`megolm`]: one outbound group session per conversation (rotated),
//!   inbound sessions by id, replay refusal.
//! - [`files`]: AES-256-GCM for the bytes of shared files.
//! - [`sas`]: verifying another device by comparing seven emoji.
//! - [`safety`]: the safety number two users compare.
//! - [`store`], [`pickle_key`], [`lock`]: the state pickled into the client
//!   cache under a key kept in the keyring, and one process at a time.
//! - [`crypto`]: [`Crypto`], the one object the engine holds.

pub mod account;
pub mod crypto;
pub mod emoji;
pub mod files;
mod group;
pub mod identity;
pub mod lock;
pub mod megolm;
pub mod olm;
pub mod pickle_key;
pub mod safety;
pub mod sas;
pub mod sign;
pub mod store;
mod verify;
pub mod wire;

#[cfg(test)]
mod tests;

pub use crypto::{
    Crypto, Decrypted, DeviceUpdate, EncryptOutcome, EncryptedEvent, Received, Recovery,
    SenderTrust, UserState,
};
pub use identity::Trust;
pub use lock::DeviceLock;
pub use pickle_key::PickleKey;

use wire::DeviceRef;

/// What can go wrong in the crypto layer. None of these carry a secret.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("a key that does not parse: {0}")]
    BadKey(String),
    #[error("a signature that does not verify: {0}")]
    BadSignature(String),
    #[error("decryption failed: {0}")]
    Decrypt(String),
    #[error("the message envelope does not match: {0}")]
    Envelope(String),
    #[error("no Olm session with {0}: claim one of its keys first")]
    NoSession(DeviceRef),
    #[error("the keys of {} are not known: query them first", list(.0))]
    UnknownDevices(Vec<DeviceRef>),
    #[error("no Olm session with {}: claim their keys first", list(.0))]
    NeedKeys(Vec<DeviceRef>),
    #[error("withheld from devices that are not trusted: {}", withheld(.0))]
    Withheld(Vec<(DeviceRef, Withheld)>),
    #[error("no secret-conversation keys on this device yet")]
    NoAccount,
    #[error("this device holds no identity key of its user")]
    NoIdentity,
    #[error("verification {0}: {1}")]
    Verification(String, String),
    #[error("crypto state: {0}")]
    Store(String),
    #[error("{0}")]
    Locked(#[from] lock::LockError),
}

impl From<rusqlite::Error> for E2eError {
    fn from(e: rusqlite::Error) -> E2eError {
        E2eError::Store(e.to_string())
    }
}

/// Why a device gets no room key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Withheld {
    /// Its user's identity key changed and the change is not accepted.
    IdentityChanged,
    /// Its user's identity key does not certify it.
    Uncertified,
}

impl std::fmt::Display for Withheld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Withheld::IdentityChanged => "identity key changed",
            Withheld::Uncertified => "not certified by its user",
        })
    }
}

fn list(devices: &[DeviceRef]) -> String {
    let names: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    names.join(", ")
}

fn withheld(devices: &[(DeviceRef, Withheld)]) -> String {
    let names: Vec<String> = devices.iter().map(|(d, w)| format!("{d} ({w})")).collect();
    names.join(", ")
}

/// Why an event cannot be shown: the UI shows a placeholder saying so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undecryptable {
    /// Its room key has not arrived (it may still come).
    #[error("waiting for this message's key")]
    NoKey,
    /// Sent before this device received the conversation's key.
    #[error("sent before this device joined")]
    BeforeJoined,
    /// The sender's device keys are not known yet: query and try again.
    #[error("the sender's device is not known yet")]
    UnknownDevice,
    /// The key or the sender does not check out (a changed identity key, an
    /// uncertified device, a key from someone else than the sender).
    #[error("from a device that is not trusted: {0}")]
    Untrusted(String),
    /// The same message was already seen as another event.
    #[error("a replayed message")]
    Replay,
    /// The ciphertext or its plaintext is damaged or does not match the event.
    #[error("damaged: {0}")]
    Malformed(String),
}
