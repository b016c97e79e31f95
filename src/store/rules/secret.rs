//! The rules of secret conversations, apart from storage: what a secret
//! conversation may be, what its writes carry, who owns a Megolm session,
//! the coverage check (the devices that hold a session are exactly the
//! conversation's devices), and the inbox cap of to-device messages.
//!
//! A backend answers the extra questions through [`SecretFacts`] inside
//! the transaction of the write, as it does [`Facts`].

use super::{Decision, Facts, NewConversation, WriteLimits, member, prior, rejected};
use crate::proto::keys::{DeviceDiff, MEGOLM, valid_device_id, valid_token};
use crate::proto::{ConvKind, DeviceRef, Encrypted, ErrorCode, EventBody, ProtoError};
use crate::store::log::StoreError;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

/// Members a secret group may have (on `create` and `add_members`): every
/// message's keys go to each of their devices.
pub const MAX_SECRET_MEMBERS: usize = 100;

/// Longest Megolm session id, in bytes.
pub const MAX_SESSION_ID_BYTES: usize = 128;

/// Most to-device messages (or shares) in one request.
pub const MAX_MESSAGES_PER_REQUEST: usize = 500;

/// What the secret rules ask of a store besides [`Facts`].
pub trait SecretFacts: Facts {
    /// The ids of `user`'s devices with keys.
    fn devices(
        &mut self,
        user: &str,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// The device that first used Megolm session `session` in `conv`.
    fn session_owner(
        &mut self,
        conv: &str,
        session: &str,
    ) -> impl Future<Output = Result<Option<DeviceRef>, StoreError>> + Send;
    /// The devices recorded as holding `session` in `conv`.
    fn holders(
        &mut self,
        conv: &str,
        session: &str,
    ) -> impl Future<Output = Result<Vec<DeviceRef>, StoreError>> + Send;
    /// How many messages `device`'s inbox holds; `None` when there is no
    /// such device.
    fn inbox_len(
        &mut self,
        device: &DeviceRef,
    ) -> impl Future<Output = Result<Option<usize>, StoreError>> + Send;
}

/// The key that makes a secret DM unique, apart from the plain DM of the
/// same two users (a username has no newline, so the keys never meet).
pub fn secret_dm_key<'a>(members: impl IntoIterator<Item = &'a String>) -> String {
    format!("secret\n{}", super::dm_key(members))
}

/// `user` creates a secret DM or group. Creating a secret DM that exists
/// answers the existing one.
pub async fn create(
    f: &mut impl Facts,
    limits: &WriteLimits,
    user: &str,
    kind: ConvKind,
    name: Option<String>,
    members: Vec<String>,
) -> Result<Decision<NewConversation>, StoreError> {
    if kind == ConvKind::Channel {
        return Err(rejected(
            ErrorCode::InvalidArgument,
            "a channel cannot be secret; make a secret group",
        ));
    }
    let decided = super::create_kind(f, limits, user, kind, name, members, true).await?;
    if let Decision::Write(new) = &decided
        && new.members.len() > MAX_SECRET_MEMBERS
    {
        return Err(too_many());
    }
    Ok(decided)
}

/// The refusal of a secret group past [`MAX_SECRET_MEMBERS`].
pub fn too_many() -> StoreError {
    rejected(
        ErrorCode::LimitExceeded,
        format!("a secret group has at most {MAX_SECRET_MEMBERS} members"),
    )
}

/// Whether a secret conversation's request carries its ciphertext only:
/// no text beside it, and the fields of [`Encrypted`] well formed.
pub fn check_encrypted(enc: &Encrypted, body: &EventBody) -> Result<(), ProtoError> {
    if enc.algorithm != MEGOLM {
        return Err(ProtoError::invalid(format!(
            "encrypted.algorithm must be {MEGOLM}"
        )));
    }
    if !valid_device_id(&enc.device_id) {
        return Err(ProtoError::invalid(
            "encrypted.device_id must be 10 characters A-Z",
        ));
    }
    if !valid_token(&enc.session_id, MAX_SESSION_ID_BYTES) {
        return Err(ProtoError::invalid(format!(
            "encrypted.session_id must be 1 to {MAX_SESSION_ID_BYTES} characters of base64"
        )));
    }
    if enc.ciphertext.is_empty() {
        return Err(ProtoError::invalid("encrypted.ciphertext is empty"));
    }
    let clear = match body {
        EventBody::Message { body, .. } | EventBody::Edit { body, .. } => body.is_empty(),
        EventBody::Reaction { emoji, .. } => emoji.is_empty(),
        EventBody::File { file, caption, .. } => {
            file.name.is_empty()
                && file.media_type == "application/octet-stream"
                && file.width.is_none()
                && file.height.is_none()
                && file.preview.is_none()
                && caption.is_none()
        }
        _ => false,
    };
    if !clear {
        return Err(ProtoError::invalid(
            "a secret conversation's text travels inside the ciphertext: leave body, emoji, caption and the file's name, type and size in pixels empty",
        ));
    }
    Ok(())
}

/// The device of the sending session, which it must have to write in a
/// secret conversation or to send to-device messages.
fn sender(user: &str, device: Option<&str>) -> Result<DeviceRef, StoreError> {
    match device {
        Some(d) => Ok(DeviceRef {
            user: user.to_string(),
            device_id: d.to_string(),
        }),
        None => Err(rejected(
            ErrorCode::Forbidden,
            "this session has no device keys; upload them first (keys_upload)",
        )),
    }
}

/// What a secret message, edit, reaction or file comes to besides its
/// event, and what `keys_share` comes to: the steps each store carries out
/// with its own statements, in the transaction of the write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretWrite {
    /// The sending device, which owns the session from now on if it is
    /// new, and from which the shares go to their devices' inboxes.
    pub device: DeviceRef,
    /// The session is used for the first time in this conversation.
    pub new_session: bool,
    /// The conversation and the Megolm session shared.
    pub conversation_id: String,
    pub session: String,
    /// The devices to record as holding the session (besides those that
    /// do already), one per share.
    pub holders: Vec<DeviceRef>,
}

impl SecretWrite {
    fn new(
        me: DeviceRef,
        new_session: bool,
        conv: &str,
        session: &str,
        shares: &[DeviceRef],
    ) -> Self {
        SecretWrite {
            device: me,
            new_session,
            conversation_id: conv.to_string(),
            session: session.to_string(),
            holders: shares.to_vec(),
        }
    }

    /// The device to record as the session's owner: the sender, when the
    /// session is new here.
    pub fn owner(&self) -> Option<&DeviceRef> {
        self.new_session.then_some(&self.device)
    }
}

/// A message, edit, reaction or file by `user` from `device` in the secret
/// conversation `conv`, with `shares` of its session to these devices.
#[allow(clippy::too_many_arguments)]
pub async fn event(
    f: &mut impl SecretFacts,
    inbox_cap: usize,
    user: &str,
    device: Option<&str>,
    conv: &str,
    client_msg_id: Option<&str>,
    body: &EventBody,
    shares: &[DeviceRef],
) -> Result<Decision<SecretWrite>, StoreError> {
    // A retry answers as the first time did, whatever changed since.
    if let Some(done) = prior(f, user, client_msg_id, conv, body.kind()).await? {
        return Ok(Decision::Done(done));
    }
    let enc = body
        .encrypted()
        .ok_or_else(|| rejected(ErrorCode::InvalidArgument, "no encrypted part"))?;
    let me = sender(user, device)?;
    if enc.device_id != me.device_id {
        return Err(rejected(
            ErrorCode::InvalidArgument,
            "encrypted.device_id is not this session's device",
        ));
    }
    check_encrypted(enc, body)?;
    check_share_count(shares.len())?;
    // Membership, blocks, targets, and that the conversation is secret.
    if let Decision::Done(done) = super::event(f, user, conv, client_msg_id, body).await? {
        return Ok(Decision::Done(done));
    }
    let new_session = owns(f, conv, &enc.session_id, &me).await?;
    coverage(f, conv, &enc.session_id, &me, shares).await?;
    room(f, inbox_cap, shares).await?;
    Ok(Decision::Write(SecretWrite::new(
        me,
        new_session,
        conv,
        &enc.session_id,
        shares,
    )))
}

/// `keys_share`: `user` from `device` shares Megolm session `session` of
/// `conv` with `shares` ahead of a send. Each must be a current device of
/// a current member. What it comes to is as for [`event`].
pub async fn share(
    f: &mut impl SecretFacts,
    inbox_cap: usize,
    user: &str,
    device: Option<&str>,
    conv: &str,
    session: &str,
    shares: &[DeviceRef],
) -> Result<SecretWrite, StoreError> {
    let me = sender(user, device)?;
    if !valid_token(session, MAX_SESSION_ID_BYTES) {
        return Err(rejected(
            ErrorCode::InvalidArgument,
            format!("session_id must be 1 to {MAX_SESSION_ID_BYTES} characters of base64"),
        ));
    }
    check_share_count(shares.len())?;
    member(f, user, conv).await?;
    if !f.encrypted(conv).await? {
        return Err(rejected(
            ErrorCode::InvalidArgument,
            "this is not a secret conversation",
        ));
    }
    let new_session = owns(f, conv, session, &me).await?;
    let expected = current_devices(f, conv, &me).await?;
    let extra: BTreeSet<DeviceRef> = shares
        .iter()
        .filter(|s| !expected.contains(*s))
        .cloned()
        .collect();
    if !extra.is_empty() {
        return Err(StoreError::Rejected(ProtoError::devices_changed(
            DeviceDiff {
                missing: Vec::new(),
                extra: extra.into_iter().collect(),
            },
        )));
    }
    room(f, inbox_cap, shares).await?;
    Ok(SecretWrite::new(me, new_session, conv, session, shares))
}

/// `to_device`: the sender's device (it must have one) after checking that
/// every recipient device exists and has room.
pub async fn to_device(
    f: &mut impl SecretFacts,
    inbox_cap: usize,
    user: &str,
    device: Option<&str>,
    to: &[DeviceRef],
) -> Result<DeviceRef, StoreError> {
    let me = sender(user, device)?;
    check_share_count(to.len())?;
    room(f, inbox_cap, to).await?;
    Ok(me)
}

fn check_share_count(n: usize) -> Result<(), StoreError> {
    if n > MAX_MESSAGES_PER_REQUEST {
        return Err(rejected(
            ErrorCode::TooLarge,
            format!("at most {MAX_MESSAGES_PER_REQUEST} messages in one request"),
        ));
    }
    Ok(())
}

/// Whether `me` may use `session` in `conv`: it is new there (then `me`
/// becomes its owner: `true`), or `me` started it.
async fn owns(
    f: &mut impl SecretFacts,
    conv: &str,
    session: &str,
    me: &DeviceRef,
) -> Result<bool, StoreError> {
    match f.session_owner(conv, session).await? {
        None => Ok(true),
        Some(owner) if owner == *me => Ok(false),
        Some(_) => Err(rejected(
            ErrorCode::Forbidden,
            "that session belongs to another device; start a session of your own",
        )),
    }
}

/// The devices with keys of the members of `conv`, but `me`.
async fn current_devices(
    f: &mut impl SecretFacts,
    conv: &str,
    me: &DeviceRef,
) -> Result<BTreeSet<DeviceRef>, StoreError> {
    let mut out = BTreeSet::new();
    for (user, _) in f.members(conv).await? {
        for device_id in f.devices(&user).await? {
            out.insert(DeviceRef {
                user: user.clone(),
                device_id,
            });
        }
    }
    out.remove(me);
    Ok(out)
}

/// Refuse with `devices_changed` unless the devices holding `session`
/// (recorded, plus `shares`) are exactly the conversation's current
/// devices but `me`.
pub async fn coverage(
    f: &mut impl SecretFacts,
    conv: &str,
    session: &str,
    me: &DeviceRef,
    shares: &[DeviceRef],
) -> Result<(), StoreError> {
    let expected = current_devices(f, conv, me).await?;
    let mut held: BTreeSet<DeviceRef> = f.holders(conv, session).await?.into_iter().collect();
    held.extend(shares.iter().cloned());
    let diff = DeviceDiff {
        missing: expected.difference(&held).cloned().collect(),
        extra: held.difference(&expected).cloned().collect(),
    };
    if diff.missing.is_empty() && diff.extra.is_empty() {
        return Ok(());
    }
    Err(StoreError::Rejected(ProtoError::devices_changed(diff)))
}

/// Refuse unless every device in `to` exists (`not_found`) and its inbox
/// has room for what `to` sends it (`limit_exceeded`).
async fn room(
    f: &mut impl SecretFacts,
    inbox_cap: usize,
    to: &[DeviceRef],
) -> Result<(), StoreError> {
    let mut counts: BTreeMap<&DeviceRef, usize> = BTreeMap::new();
    for d in to {
        *counts.entry(d).or_default() += 1;
    }
    for (d, n) in counts {
        let Some(len) = f.inbox_len(d).await? else {
            return Err(rejected(
                ErrorCode::NotFound,
                format!("{} has no device {}", d.user, d.device_id),
            ));
        };
        if len + n > inbox_cap {
            return Err(rejected(
                ErrorCode::LimitExceeded,
                format!(
                    "max_inbox_messages: the inbox of {}'s device {} is full",
                    d.user, d.device_id
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "secret_tests.rs"]
mod tests;
