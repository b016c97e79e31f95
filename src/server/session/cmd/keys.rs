//! The device key directory and the inbox: `keys_upload`, `keys_sign`,
//! `keys_query`, `keys_claim`, `to_device`, `inbox` and `inbox_ack`.
//! Signatures are checked here, before the writer sees an upload; the
//! writer checks that the keys they were checked against are still the
//! stored ones.

use super::super::{Outcome, Session};
use super::page_size;
use crate::proto::keys::{
    InboxOk, KeysClaimOk, KeysQueryOk, KeysUpload, KeysUploadOk, certificate_text, key_text,
    valid_device_id, valid_token,
};
use crate::proto::{
    ByteBudget, DeviceRef, ErrorCode, ProtoError, ToDeviceMessage, encode_ok, encode_ok_empty,
};
use crate::server::{keycheck, validate};
use crate::store::log::{KeyCaps, KeyOp, KeyReply};

/// Most users one `keys_query` asks about.
pub const MAX_QUERY_USERS: usize = 100;
/// Most devices one `keys_claim` asks for, and messages one `to_device`
/// carries.
pub const MAX_DEVICES_PER_REQUEST: usize = 500;
/// Most inbox messages one `inbox` reply carries.
pub const INBOX_PAGE_CAP: u32 = 500;
/// Longest key id, in bytes.
const MAX_KEY_ID_BYTES: usize = 64;

impl Session {
    /// The caps of `[limits]` the writer enforces on keys and inboxes.
    pub(super) fn key_caps(&self) -> KeyCaps {
        let l = &self.shared.limits;
        KeyCaps {
            devices_per_user: l.max_devices_per_user,
            one_time_keys: l.max_one_time_keys,
            inbox: l.max_inbox_messages,
        }
    }

    async fn key_change(&self, op: KeyOp) -> Result<KeyReply, ProtoError> {
        self.shared.store.keys(op).await.map_err(|e| e.to_proto())
    }

    pub(super) async fn keys_upload(
        &self,
        rid: u64,
        user: &str,
        upload: KeysUpload,
    ) -> Result<Outcome, ProtoError> {
        if !valid_device_id(&upload.device_id) {
            return Err(ProtoError::invalid("device ids are 10 characters A-Z"));
        }
        if upload.one_time_keys.len() > self.shared.limits.max_one_time_keys {
            return Err(ProtoError::new(
                ErrorCode::LimitExceeded,
                format!(
                    "max_one_time_keys: at most {} one-time keys per device",
                    self.shared.limits.max_one_time_keys
                ),
            ));
        }
        let token = self.own_token_hash();
        let readers = self.shared.store.readers();
        let known = |e: crate::store::log::StoreError| e.to_proto();
        if let Some(mine) = readers.device_of_session(&token).await.map_err(known)?
            && mine.device_id != upload.device_id
        {
            return Err(ProtoError::invalid(format!(
                "this session's device is {}; a session has one device",
                mine.device_id
            )));
        }
        let stored = readers
            .device(user, &upload.device_id)
            .await
            .map_err(known)?;
        let keys = match (stored, &upload.keys) {
            (Some(d), Some(k)) if d.keys != *k => {
                return Err(ProtoError::invalid(
                    "a device's keys do not change; log in again for new ones",
                ));
            }
            (Some(d), _) => d.keys,
            (None, Some(k)) => k.clone(),
            (None, None) => {
                return Err(ProtoError::invalid(
                    "keys (curve25519 and ed25519) are required on a device's first upload",
                ));
            }
        };
        keycheck::curve25519(&keys.curve25519, "keys.curve25519")?;
        let device_key = keycheck::ed25519(&keys.ed25519, "keys.ed25519")?;
        let identity_seen = readers.identity_key(user).await.map_err(known)?;
        if let Some(new) = &upload.identity_key {
            keycheck::ed25519(new, "identity_key")?;
            if identity_seen.as_ref().is_some_and(|old| old != new) && !upload.replace_identity {
                return Err(ProtoError::invalid(
                    "you have an identity key; set replace_identity to replace it",
                ));
            }
        }
        if let Some(cert) = &upload.certificate {
            let identity = upload
                .identity_key
                .as_ref()
                .or(identity_seen.as_ref())
                .ok_or_else(|| {
                    ProtoError::invalid("no identity key to check the certificate against")
                })?;
            let identity = keycheck::ed25519(identity, "identity_key")?;
            let text = certificate_text(user, &upload.device_id, &keys.curve25519, &keys.ed25519);
            keycheck::verify(&identity, &text, cert, "certificate")?;
        }
        for k in upload.one_time_keys.iter().chain(&upload.fallback_key) {
            if !valid_token(&k.key_id, MAX_KEY_ID_BYTES) {
                return Err(ProtoError::invalid(format!(
                    "key ids are 1 to {MAX_KEY_ID_BYTES} characters of base64"
                )));
            }
            keycheck::curve25519(&k.key, "a one-time key")?;
            let text = key_text(user, &upload.device_id, &k.key_id, &k.key);
            keycheck::verify(
                &device_key,
                &text,
                &k.signature,
                &format!("key {}", k.key_id),
            )?;
        }
        let op = KeyOp::Upload {
            user: user.to_string(),
            token_hash: token,
            keys,
            upload: Box::new(upload),
            identity_seen,
            caps: self.key_caps(),
        };
        match self.key_change(op).await? {
            KeyReply::Count(n) => Ok(Outcome::Reply(encode_ok(
                rid,
                &KeysUploadOk { one_time_keys: n },
            ))),
            _ => Err(ProtoError::internal()),
        }
    }

    pub(super) async fn keys_sign(
        &self,
        rid: u64,
        user: &str,
        device_id: String,
        certificate: String,
    ) -> Result<Outcome, ProtoError> {
        validate::device_ref(user, &device_id)?;
        let readers = self.shared.store.readers();
        let device = readers
            .device(user, &device_id)
            .await
            .map_err(|e| e.to_proto())?
            .ok_or_else(|| ProtoError::not_found(format!("you have no device {device_id}")))?;
        let identity_seen = readers
            .identity_key(user)
            .await
            .map_err(|e| e.to_proto())?
            .ok_or_else(|| ProtoError::invalid("you have no identity key; upload one first"))?;
        let identity = keycheck::ed25519(&identity_seen, "identity_key")?;
        let text = certificate_text(
            user,
            &device_id,
            &device.keys.curve25519,
            &device.keys.ed25519,
        );
        keycheck::verify(&identity, &text, &certificate, "certificate")?;
        let op = KeyOp::Sign {
            user: user.to_string(),
            device_id,
            certificate,
            identity_seen,
        };
        self.key_change(op).await?;
        Ok(Outcome::Reply(encode_ok_empty(rid)))
    }

    pub(super) async fn keys_query(
        &self,
        rid: u64,
        mut users: Vec<String>,
    ) -> Result<Outcome, ProtoError> {
        if users.len() > MAX_QUERY_USERS {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_QUERY_USERS} users in one keys_query"),
            ));
        }
        for u in &users {
            validate::username(u)?;
        }
        users.sort();
        users.dedup();
        let found = self
            .shared
            .store
            .readers()
            .keys_query(users)
            .await
            .map_err(|e| e.to_proto())?;
        Ok(Outcome::Reply(encode_ok(
            rid,
            &KeysQueryOk { users: found },
        )))
    }

    pub(super) async fn keys_claim(
        &self,
        rid: u64,
        devices: Vec<DeviceRef>,
    ) -> Result<Outcome, ProtoError> {
        if devices.len() > MAX_DEVICES_PER_REQUEST {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_DEVICES_PER_REQUEST} devices in one keys_claim"),
            ));
        }
        for d in &devices {
            validate::device_ref(&d.user, &d.device_id)?;
        }
        match self.key_change(KeyOp::Claim { devices }).await? {
            KeyReply::Claimed(keys) => Ok(Outcome::Reply(encode_ok(rid, &KeysClaimOk { keys }))),
            _ => Err(ProtoError::internal()),
        }
    }

    pub(super) async fn to_device(
        &self,
        rid: u64,
        user: &str,
        messages: Vec<ToDeviceMessage>,
    ) -> Result<Outcome, ProtoError> {
        if messages.len() > MAX_DEVICES_PER_REQUEST {
            return Err(ProtoError::new(
                ErrorCode::TooLarge,
                format!("at most {MAX_DEVICES_PER_REQUEST} messages in one to_device"),
            ));
        }
        for m in &messages {
            validate::to_device(m, &self.shared.limits)?;
        }
        let op = KeyOp::ToDevice {
            user: user.to_string(),
            token_hash: self.own_token_hash(),
            messages,
            caps: self.key_caps(),
        };
        self.key_change(op).await?;
        Ok(Outcome::Reply(encode_ok_empty(rid)))
    }

    pub(super) async fn inbox(
        &self,
        rid: u64,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<Outcome, ProtoError> {
        let limit = page_size(limit, INBOX_PAGE_CAP) as u32;
        let (mut messages, last) = self
            .shared
            .store
            .readers()
            .inbox(&self.own_token_hash(), after.unwrap_or(0), limit)
            .await
            .map_err(|e| e.to_proto())?;
        // A page ends before the reply outgrows a frame; `last` tells the
        // client that more follow.
        let mut budget = ByteBudget::new(self.shared.limits.reply_bytes());
        let fits = messages
            .iter()
            .take_while(|m| budget.admit(serde_json::to_string(m).map_or(usize::MAX, |t| t.len())))
            .count();
        messages.truncate(fits);
        Ok(Outcome::Reply(encode_ok(rid, &InboxOk { messages, last })))
    }

    pub(super) async fn inbox_ack(&self, rid: u64, upto: u64) -> Result<Outcome, ProtoError> {
        let op = KeyOp::Ack {
            token_hash: self.own_token_hash(),
            upto,
        };
        self.key_change(op).await?;
        Ok(Outcome::Reply(encode_ok_empty(rid)))
    }
}
