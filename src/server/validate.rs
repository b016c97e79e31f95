//! Argument checks shared by request handlers: sizes and shapes, before
//! anything reaches the store.

use crate::proto::{ErrorCode, FileInfo, Limits, ProtoError, valid_username};
use base64::Engine as _;

fn too_large(what: &str, max: usize) -> ProtoError {
    ProtoError::new(ErrorCode::TooLarge, format!("{what} is over {max} bytes"))
}

pub fn username(name: &str) -> Result<(), ProtoError> {
    if valid_username(name) {
        Ok(())
    } else {
        Err(ProtoError::invalid(
            "usernames are 2-32 characters of a-z, 0-9, _ . -",
        ))
    }
}

/// A new account's password: at least `min_password_chars` characters, at
/// most `max_password_bytes` bytes.
pub fn password(pw: &str, limits: &Limits) -> Result<(), ProtoError> {
    if pw.is_empty() {
        return Err(ProtoError::invalid("the password is empty"));
    }
    if pw.chars().count() < limits.min_password_chars {
        return Err(ProtoError::invalid(format!(
            "the password needs at least {} characters",
            limits.min_password_chars
        )));
    }
    if pw.len() > limits.max_password_bytes {
        return Err(too_large("the password", limits.max_password_bytes));
    }
    Ok(())
}

pub fn device(device: Option<String>, limits: &Limits) -> Result<String, ProtoError> {
    let d = device.unwrap_or_else(|| "unknown".into());
    if d.len() > limits.max_device_bytes {
        return Err(too_large("the device name", limits.max_device_bytes));
    }
    Ok(d)
}

pub fn body(body: &str, limits: &Limits) -> Result<(), ProtoError> {
    if body.len() > limits.max_body_bytes {
        return Err(too_large("the message", limits.max_body_bytes));
    }
    if body.trim().is_empty() {
        return Err(ProtoError::invalid("the message is empty"));
    }
    Ok(())
}

pub fn client_msg_id(id: &str, limits: &Limits) -> Result<(), ProtoError> {
    if id.is_empty() {
        return Err(ProtoError::invalid("client_msg_id is empty"));
    }
    if id.len() > limits.max_client_msg_id_bytes {
        return Err(too_large("client_msg_id", limits.max_client_msg_id_bytes));
    }
    Ok(())
}

pub fn emoji(emoji: &str, limits: &Limits) -> Result<(), ProtoError> {
    if emoji.trim().is_empty() {
        return Err(ProtoError::invalid("the emoji is empty"));
    }
    if emoji.len() > limits.max_emoji_bytes {
        return Err(too_large("the emoji", limits.max_emoji_bytes));
    }
    Ok(())
}

/// A conversation name, trimmed; `None` stays `None`.
pub fn conv_name(name: Option<String>, limits: &Limits) -> Result<Option<String>, ProtoError> {
    let Some(name) = name else { return Ok(None) };
    let name = name.trim().trim_start_matches('#').to_string();
    if name.len() > limits.max_name_bytes {
        return Err(too_large("the name", limits.max_name_bytes));
    }
    if name.is_empty() {
        return Err(ProtoError::invalid("the name is empty"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(ProtoError::invalid("the name has control characters"));
    }
    Ok(Some(name))
}

pub fn members(members: &[String], limits: &Limits) -> Result<(), ProtoError> {
    if members.len() > limits.max_members {
        return Err(ProtoError::new(ErrorCode::TooLarge, "too many members"));
    }
    for m in members {
        username(m).map_err(|_| ProtoError::not_found(format!("no user named {m:?}")))?;
    }
    Ok(())
}

/// Longest file name, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Largest image preview, decoded.
pub const MAX_PREVIEW_BYTES: usize = 16 * 1024;

/// What a `file` event may say about its file: a digest, a plain name (no
/// directories, no control characters), a size within the upload limit, a
/// media type of the `type/subtype` shape, and a small PNG or JPEG preview.
pub fn file(f: &FileInfo, max_upload_bytes: u64) -> Result<(), ProtoError> {
    file_digest(f, max_upload_bytes)?;
    let name = f.name.as_str();
    if name.trim().is_empty() || name == "." || name == ".." {
        return Err(ProtoError::invalid("the file has no name"));
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(too_large("the file name", MAX_FILE_NAME_BYTES));
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err(ProtoError::invalid(
            "a file name has no directories and no control characters",
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let shaped = f.media_type.len() <= 127
        && f.media_type
            .split_once('/')
            .is_some_and(|(t, s)| token(t) && token(s));
    if !shaped {
        return Err(ProtoError::invalid(
            "the media type is type/subtype, like image/png",
        ));
    }
    for side in [f.width, f.height].into_iter().flatten() {
        if side == 0 || side > 1_000_000 {
            return Err(ProtoError::invalid("an image side is 1 to 1000000 pixels"));
        }
    }
    if f.key.is_some() {
        return Err(ProtoError::invalid(
            "a file's key travels inside a secret conversation's ciphertext, never beside the file",
        ));
    }
    if let Some(p) = &f.preview {
        if p.len() > MAX_PREVIEW_BYTES / 3 * 4 + 4 {
            return Err(too_large("the preview", MAX_PREVIEW_BYTES));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(p)
            .map_err(|_| ProtoError::invalid("the preview is not base64"))?;
        let png = bytes.starts_with(b"\x89PNG\r\n\x1a\n");
        let jpeg = bytes.starts_with(&[0xff, 0xd8, 0xff]);
        if !png && !jpeg {
            return Err(ProtoError::invalid("the preview is a PNG or a JPEG"));
        }
    }
    Ok(())
}

/// A file's digest (64 lowercase hex digits) and size (within the upload
/// limit): all a secret conversation's file event shows of it.
pub fn file_digest(f: &FileInfo, max_upload_bytes: u64) -> Result<(), ProtoError> {
    if f.digest.len() != 64
        || !f
            .digest
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ProtoError::invalid(
            "the file digest is 64 lowercase hex digits (its SHA-256)",
        ));
    }
    if f.size > max_upload_bytes {
        return Err(ProtoError::new(
            ErrorCode::TooLarge,
            format!("files are limited to {max_upload_bytes} bytes"),
        ));
    }
    Ok(())
}

/// A device a request names: a username and a device id (10 of `A-Z`).
pub fn device_ref(user: &str, device_id: &str) -> Result<(), ProtoError> {
    username(user)?;
    if !crate::proto::keys::valid_device_id(device_id) {
        return Err(ProtoError::invalid("device ids are 10 characters A-Z"));
    }
    Ok(())
}

/// A to-device message or share: for a device, a JSON object of at most
/// `max_to_device_bytes`.
pub fn to_device(m: &crate::proto::ToDeviceMessage, limits: &Limits) -> Result<(), ProtoError> {
    device_ref(&m.user, &m.device_id)?;
    if !m.body.is_object() {
        return Err(ProtoError::invalid("a to-device body is a JSON object"));
    }
    let size = serde_json::to_string(&m.body).map_or(usize::MAX, |s| s.len());
    if size > limits.max_to_device_bytes {
        return Err(too_large("a to-device body", limits.max_to_device_bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_never_carries_its_key_in_the_clear() {
        let mut f = FileInfo {
            digest: "a".repeat(64),
            name: "notes.txt".into(),
            size: 10,
            media_type: "text/plain".into(),
            width: None,
            height: None,
            preview: None,
            key: None,
        };
        assert!(file(&f, 100).is_ok());
        f.key = Some(Box::new(crate::proto::FileKey {
            key: "k".into(),
            nonce: "n".into(),
        }));
        let err = file(&f, 100).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert!(err.message.contains("key"), "{err:?}");
    }

    #[test]
    fn sizes_and_shapes() {
        let l = Limits::default();
        assert!(body("hi", &l).is_ok());
        assert_eq!(
            body(" \n", &l).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            body(&"x".repeat(l.max_body_bytes + 1), &l)
                .unwrap_err()
                .code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            conv_name(Some(" #general ".into()), &l).unwrap(),
            Some("general".into())
        );
        assert!(conv_name(Some("a\u{7}b".into()), &l).is_err());
        assert!(client_msg_id("", &l).is_err());
        assert!(emoji("👍", &l).is_ok());
        assert_eq!(
            members(&["Bad Name".into()], &l).unwrap_err().code,
            ErrorCode::NotFound
        );
    }
}
