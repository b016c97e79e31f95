//! Secret conversations on the wire: device keys, the per-device inbox of
//! to-device messages, the `encrypted` part of messages, and the canonical
//! strings that identity and device keys sign. The server only checks and
//! carries these; the content stays opaque to it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The two public keys of a device (unpadded standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceKeys {
    pub curve25519: String,
    pub ed25519: String,
}

/// A one-time or fallback key, signed by its device's Ed25519 key over
/// [`key_text`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedKey {
    pub key_id: String,
    pub key: String,
    pub signature: String,
}

/// `keys_upload`: a session's device, its keys, and keys others may claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysUpload {
    pub device_id: String,
    /// Required on the device's first upload; must not change later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<DeviceKeys>,
    /// The user's identity key (Ed25519): the first time, or with
    /// `replace_identity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_key: Option<String>,
    #[serde(default, skip_serializing_if = "crate::proto::is_false")]
    pub replace_identity: bool,
    /// The identity key's signature over this device's [`certificate_text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_time_keys: Vec<SignedKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_key: Option<SignedKey>,
}

/// One device of one user.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceRef {
    pub user: String,
    pub device_id: String,
}

/// A to-device message as sent: for `user`'s device `device_id`, an opaque
/// JSON object (an Olm body). Also the shape of a share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToDeviceMessage {
    pub user: String,
    pub device_id: String,
    pub body: serde_json::Value,
}

/// What a secret conversation's message, edit, reaction or file carries
/// instead of its text: a Megolm ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encrypted {
    /// `megolm.v1`.
    pub algorithm: String,
    /// The sending device.
    pub device_id: String,
    pub session_id: String,
    pub ciphertext: String,
}

/// The algorithm of [`Encrypted`].
pub const MEGOLM: &str = "megolm.v1";

/// A message of a device's inbox, as `inbox` lists it and the
/// `to_device` push carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxMessage {
    pub seq: u64,
    pub sender: String,
    pub sender_device: String,
    pub body: serde_json::Value,
}

/// Pushed when a user's devices change (one added, removed or certified,
/// or the identity key replaced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicesPush {
    pub user: String,
    #[serde(default)]
    pub identity_changed: bool,
}

/// Reply to `keys_upload`: the device's unclaimed one-time keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysUploadOk {
    pub one_time_keys: u32,
}

/// A device as `keys_query` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device_id: String,
    /// The session's device label.
    pub name: String,
    pub curve25519: String,
    pub ed25519: String,
    /// The identity key's signature over the device's certificate string,
    /// `null` until one is given.
    pub certificate: Option<String>,
}

/// One user's keys in a `keys_query` reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserKeys {
    pub identity_key: Option<String>,
    pub devices: Vec<DeviceInfo>,
}

/// Reply to `keys_query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysQueryOk {
    pub users: BTreeMap<String, UserKeys>,
}

/// A key handed out by `keys_claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedKey {
    pub user: String,
    pub device_id: String,
    pub key_id: String,
    pub key: String,
    pub signature: String,
    /// The device had no one-time key left: this is its fallback key.
    #[serde(default)]
    pub fallback: bool,
}

/// Reply to `keys_claim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysClaimOk {
    pub keys: Vec<ClaimedKey>,
}

/// Reply to `inbox`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxOk {
    pub messages: Vec<InboxMessage>,
    /// The last seq the inbox has given out (0: none yet): more follow
    /// when it is past the last message listed.
    pub last: u64,
}

/// Who must still get a Megolm session, and who holds it but should not:
/// the details of `devices_changed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDiff {
    pub missing: Vec<DeviceRef>,
    pub extra: Vec<DeviceRef>,
}

/// The string a user's identity key signs to certify a device.
pub fn certificate_text(user: &str, device_id: &str, curve25519: &str, ed25519: &str) -> String {
    format!("chat-device-v1\n{user}\n{device_id}\n{curve25519}\n{ed25519}")
}

/// The string a device's Ed25519 key signs for a one-time or fallback key.
pub fn key_text(user: &str, device_id: &str, key_id: &str, key: &str) -> String {
    format!("chat-otk-v1\n{user}\n{device_id}\n{key_id}\n{key}")
}

/// A device id: 10 characters `A-Z`.
pub fn valid_device_id(id: &str) -> bool {
    id.len() == 10 && id.bytes().all(|b| b.is_ascii_uppercase())
}

/// An id a client chooses for a key or a Megolm session: 1 to `max` bytes
/// of the base64 alphabets (standard and URL-safe) and `=`, so that it can
/// reach a log or a terminal as it is.
pub fn valid_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_strings_have_no_trailing_newline() {
        assert_eq!(
            certificate_text("bob", "ABCDEFGHIJ", "c", "e"),
            "chat-device-v1\nbob\nABCDEFGHIJ\nc\ne"
        );
        assert_eq!(
            key_text("bob", "ABCDEFGHIJ", "AAAAAQ", "k"),
            "chat-otk-v1\nbob\nABCDEFGHIJ\nAAAAAQ\nk"
        );
    }

    #[test]
    fn device_ids_and_tokens() {
        assert!(valid_device_id("QWERTYUIOP"));
        assert!(!valid_device_id("QWERTYUIO"));
        assert!(!valid_device_id("qwertyuiop"));
        assert!(!valid_device_id("QWERTYUIO\n"));
        assert!(valid_token("AAAAAQ", 64));
        assert!(valid_token("a+b/c=", 64));
        assert!(!valid_token("", 64));
        assert!(!valid_token("a b", 64));
        assert!(!valid_token("a\u{1b}", 64));
        assert!(!valid_token(&"A".repeat(65), 64));
    }
}
