//! The wire shapes of secret conversations, as the agreed format fixes
//! them: the pieces of `keys_upload`, what `keys_query` and `keys_claim`
//! answer, the Olm body of a to-device message and its plaintext envelope,
//! the room key, the `encrypted` object of an event and its Megolm
//! plaintext. The engine wraps these in its requests (`type`, `id`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The algorithm name of an Olm to-device body.
pub const OLM_ALGORITHM: &str = "olm.v1";
/// The algorithm name of an event's `encrypted` object.
pub const MEGOLM_ALGORITHM: &str = crate::proto::keys::MEGOLM;

// The shapes the server's protocol defines are the protocol's own types.
pub use crate::proto::keys::{
    ClaimedKey, DeviceInfo as QueriedDevice, DeviceKeys, DeviceRef, Encrypted, KeysUpload,
    SignedKey, ToDeviceMessage, UserKeys as QueriedUser,
};

impl DeviceRef {
    pub fn new(user: impl Into<String>, device_id: impl Into<String>) -> DeviceRef {
        DeviceRef {
            user: user.into(),
            device_id: device_id.into(),
        }
    }
}

impl std::fmt::Display for DeviceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.user, self.device_id)
    }
}

/// The fields of a `keys_sign` request: this user's identity key certifies
/// another of their devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysSign {
    pub device_id: String,
    pub certificate: String,
}

/// The `body` of an Olm to-device message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OlmBody {
    pub algorithm: String,
    pub sender_key: String,
    #[serde(rename = "type")]
    pub message_type: u8,
    pub ciphertext: String,
}

/// The plaintext of an Olm body: who sent it to whom, and the content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OlmPlaintext {
    pub sender: String,
    pub sender_device: String,
    pub recipient: String,
    pub recipient_device: String,
    pub recipient_ed25519: String,
    pub sender_ed25519: String,
    pub content: Value,
}

/// A to-device message ready for `to_device`, `keys_share` or a send's
/// `shares`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub user: String,
    pub device_id: String,
    pub body: OlmBody,
}

impl Share {
    pub fn device(&self) -> DeviceRef {
        DeviceRef::new(&self.user, &self.device_id)
    }

    /// The share as the server's requests carry it.
    pub fn to_wire(&self) -> ToDeviceMessage {
        ToDeviceMessage {
            user: self.user.clone(),
            device_id: self.device_id.clone(),
            body: serde_json::to_value(&self.body).unwrap_or_default(),
        }
    }
}

/// The room-key content: a Megolm session handed to one device.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomKey {
    pub conversation_id: String,
    pub session_id: String,
    pub session_key: String,
    pub first_index: u32,
}

impl std::fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomKey")
            .field("conversation_id", &self.conversation_id)
            .field("session_id", &self.session_id)
            .field("first_index", &self.first_index)
            .finish_non_exhaustive()
    }
}

/// What kind of event a Megolm plaintext belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlainKind {
    Message,
    Edit,
    Reaction,
    File,
}

/// The real description of a shared file, with the key of its bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub name: String,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    pub key: String,
    pub nonce: String,
}

impl std::fmt::Debug for FileInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileInfo")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// The Megolm plaintext of an event: only the fields of its kind are set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MegolmPlaintext {
    pub conversation_id: String,
    pub kind: PlainKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emoji: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
}

impl MegolmPlaintext {
    /// A message (or, with `kind` Edit, an edit) with its text.
    pub fn text(conversation_id: &str, kind: PlainKind, body: &str) -> MegolmPlaintext {
        MegolmPlaintext {
            conversation_id: conversation_id.to_string(),
            kind,
            body: Some(body.to_string()),
            emoji: None,
            file: None,
            caption: None,
        }
    }

    /// A reaction.
    pub fn reaction(conversation_id: &str, emoji: &str) -> MegolmPlaintext {
        MegolmPlaintext {
            emoji: Some(emoji.to_string()),
            body: None,
            ..MegolmPlaintext::text(conversation_id, PlainKind::Reaction, "")
        }
    }

    /// A shared file, with its real description and its key.
    pub fn file(conversation_id: &str, file: FileInfo, caption: Option<String>) -> MegolmPlaintext {
        MegolmPlaintext {
            file: Some(file),
            caption,
            body: None,
            ..MegolmPlaintext::text(conversation_id, PlainKind::File, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_upload_omits_what_is_not_given() {
        let up = KeysUpload {
            device_id: "QWERTYUIOP".into(),
            keys: Some(DeviceKeys {
                curve25519: "c".into(),
                ed25519: "e".into(),
            }),
            identity_key: None,
            replace_identity: false,
            certificate: None,
            one_time_keys: vec![SignedKey {
                key_id: "AAAAAQ".into(),
                key: "k".into(),
                signature: "s".into(),
            }],
            fallback_key: None,
        };
        let v = serde_json::to_value(&up).unwrap();
        assert_eq!(
            v,
            json!({"device_id":"QWERTYUIOP","keys":{"curve25519":"c","ed25519":"e"},
                   "one_time_keys":[{"key_id":"AAAAAQ","key":"k","signature":"s"}]})
        );
        assert_eq!(serde_json::from_value::<KeysUpload>(v).unwrap(), up);
    }

    #[test]
    fn query_and_claim_answers_parse_as_the_format_shows() {
        let q: QueriedUser = serde_json::from_value(json!({"identity_key":null,
            "devices":[{"device_id":"D","name":"laptop","curve25519":"c","ed25519":"e","certificate":null}]}))
        .unwrap();
        assert_eq!(q.identity_key, None);
        assert_eq!(q.devices[0].name, "laptop");
        let c: ClaimedKey = serde_json::from_value(json!({"user":"bob","device_id":"D",
            "key_id":"K","key":"k","signature":"s","fallback":true}))
        .unwrap();
        assert!(c.fallback);
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let k = RoomKey {
            conversation_id: "c".into(),
            session_id: "s".into(),
            session_key: "SECRETKEY".into(),
            first_index: 0,
        };
        assert!(!format!("{k:?}").contains("SECRETKEY"));
        let f = FileInfo {
            name: "a".into(),
            media_type: "b".into(),
            width: None,
            height: None,
            key: "SECRETKEY".into(),
            nonce: "SECRETNONCE".into(),
        };
        assert!(!format!("{f:?}").contains("SECRET"));
    }

    #[test]
    fn olm_body_uses_type_for_the_message_type() {
        let b = OlmBody {
            algorithm: OLM_ALGORITHM.into(),
            sender_key: "c".into(),
            message_type: 0,
            ciphertext: "x".into(),
        };
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(
            v,
            json!({"algorithm":"olm.v1","sender_key":"c","type":0,"ciphertext":"x"})
        );
    }

    #[test]
    fn megolm_plaintext_holds_only_the_fields_of_its_kind() {
        let p = MegolmPlaintext::reaction("c1", "👍");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"conversation_id":"c1","kind":"reaction","emoji":"👍"})
        );
        let p = MegolmPlaintext::text("c1", PlainKind::Edit, "hi");
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"conversation_id":"c1","kind":"edit","body":"hi"})
        );
        assert!(
            serde_json::from_value::<MegolmPlaintext>(json!({"conversation_id":"c","kind":"poll"}))
                .is_err()
        );
    }
}
