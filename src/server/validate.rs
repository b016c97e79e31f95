//! Argument checks shared by request handlers: sizes and shapes, before
//! anything reaches the store.

use crate::proto::{ErrorCode, Limits, ProtoError, valid_username};

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

#[cfg(test)]
mod tests {
    use super::*;

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
