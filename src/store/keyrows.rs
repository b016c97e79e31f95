//! The rows of the key directory and the inboxes as both stores read them
//! (SQLite in `log::keys`, PostgreSQL in `pg::keys`), and what they become
//! on the wire: a `keys_query` answer, a claimed key, an inbox message and
//! its push.

use super::log::{StoreError, StoredDevice};
use super::rules::rejected;
use crate::proto::keys::{ClaimedKey, DeviceInfo, InboxMessage};
use crate::proto::{DeviceRef, ErrorCode, ServerFrame, ToDeviceMessage};

/// The columns of a stored device, read from `devices d`, in the order
/// the stores map them to a [`StoredDevice`].
pub(crate) const DEVICE_COLUMNS: &str = "d.username, d.device_id, d.token_hash,
    COALESCE((SELECT s.device FROM sessions s WHERE s.token_hash = d.token_hash), ''),
    d.curve25519, d.ed25519, d.certificate";

impl StoredDevice {
    /// The device as `keys_query` answers it.
    pub(crate) fn info(self) -> DeviceInfo {
        DeviceInfo {
            device_id: self.device_id,
            name: self.name,
            curve25519: self.keys.curve25519,
            ed25519: self.keys.ed25519,
            certificate: self.certificate,
        }
    }
}

/// A stored one-time or fallback key.
pub(crate) struct KeyRow {
    pub(crate) key_id: String,
    pub(crate) key: String,
    pub(crate) signature: String,
}

impl KeyRow {
    /// The key as claimed for device `d`.
    pub(crate) fn claimed(self, d: &DeviceRef, fallback: bool) -> ClaimedKey {
        ClaimedKey {
            user: d.user.clone(),
            device_id: d.device_id.clone(),
            key_id: self.key_id,
            key: self.key,
            signature: self.signature,
            fallback,
        }
    }
}

/// A stored inbox message.
pub(crate) struct InboxRow {
    pub(crate) seq: i64,
    pub(crate) sender: String,
    pub(crate) sender_device: String,
    /// The body as JSON text.
    pub(crate) body: String,
}

impl InboxRow {
    /// The message as its device reads it.
    pub(crate) fn message(self) -> Result<InboxMessage, StoreError> {
        let body = serde_json::from_str(&self.body)
            .map_err(|e| StoreError::Write(format!("a stored to-device body: {e}")))?;
        Ok(InboxMessage {
            seq: self.seq as u64,
            sender: self.sender,
            sender_device: self.sender_device,
            body,
        })
    }
}

/// The last seq an inbox gave out, from its device's `inbox_next`.
pub(crate) fn last_given(inbox_next: i64) -> u64 {
    (inbox_next - 1).max(0) as u64
}

/// The body of `m` as stored in the inbox (JSON text).
pub(crate) fn stored_body(m: &ToDeviceMessage) -> Result<String, StoreError> {
    serde_json::to_string(&m.body)
        .map_err(|e| StoreError::Write(format!("encoding a to-device body: {e}")))
}

/// The frame that pushes `m`, stored at `seq` and sent from `from`, to its
/// device's connections.
pub(crate) fn push_of(from: &DeviceRef, seq: i64, m: &ToDeviceMessage) -> String {
    ServerFrame::ToDevice(InboxMessage {
        seq: seq as u64,
        sender: from.user.clone(),
        sender_device: from.device_id.clone(),
        body: m.body.clone(),
    })
    .encode()
}

/// The 32 bytes of a stored token hash (hex), for the hub.
pub(crate) fn digest_of(token_hash: &str) -> Result<[u8; 32], StoreError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(token_hash, &mut out)
        .map_err(|_| StoreError::Write("a stored token hash is not hex".into()))?;
    Ok(out)
}

/// The device a to-device message or share goes to.
pub(crate) fn target_of(m: &ToDeviceMessage) -> DeviceRef {
    DeviceRef {
        user: m.user.clone(),
        device_id: m.device_id.clone(),
    }
}

/// The refusal of a key change made against an identity key that has
/// changed since.
pub(crate) fn changed_meanwhile() -> StoreError {
    rejected(
        ErrorCode::Conflict,
        "your identity key changed meanwhile; query your keys and try again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inbox_row_becomes_its_message_and_a_bad_body_is_an_error() {
        let row = |body: &str| InboxRow {
            seq: 7,
            sender: "alice".into(),
            sender_device: "AAAAAAAAAA".into(),
            body: body.into(),
        };
        let m = row(r#"{"type":0,"ciphertext":"c"}"#).message().unwrap();
        assert_eq!(m.seq, 7);
        assert_eq!(m.sender, "alice");
        assert_eq!(m.sender_device, "AAAAAAAAAA");
        assert_eq!(m.body["ciphertext"], "c");
        assert!(matches!(row("{").message(), Err(StoreError::Write(_))));
        assert_eq!(last_given(1), 0);
        assert_eq!(last_given(0), 0);
        assert_eq!(last_given(5), 4);
    }

    #[test]
    fn a_token_digest_is_32_bytes_of_hex() {
        assert_eq!(digest_of(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(digest_of("abc").is_err());
        assert!(digest_of(&"zz".repeat(32)).is_err());
    }
}
