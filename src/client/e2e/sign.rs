//! The canonical strings that signatures cover (UTF-8, no trailing newline)
//! and the checks of those signatures. chatd checks the same strings.

use super::E2eError;
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

/// The string a user's identity key signs to certify one of their devices.
pub fn device_certificate_string(
    user: &str,
    device_id: &str,
    curve25519: &str,
    ed25519: &str,
) -> String {
    format!("chat-device-v1\n{user}\n{device_id}\n{curve25519}\n{ed25519}")
}

/// The string a device's Ed25519 key signs over each of its one-time and
/// fallback keys.
pub fn one_time_key_string(user: &str, device_id: &str, key_id: &str, key: &str) -> String {
    format!("chat-otk-v1\n{user}\n{device_id}\n{key_id}\n{key}")
}

/// Parse an Ed25519 public key given in base64.
pub fn ed25519(what: &str, b64: &str) -> Result<Ed25519PublicKey, E2eError> {
    Ed25519PublicKey::from_base64(b64).map_err(|_| E2eError::BadKey(what.to_string()))
}

/// Parse a Curve25519 public key given in base64.
pub fn curve25519(what: &str, b64: &str) -> Result<Curve25519PublicKey, E2eError> {
    Curve25519PublicKey::from_base64(b64).map_err(|_| E2eError::BadKey(what.to_string()))
}

/// Check `signature` (base64) by `key` over `message`.
pub fn verify(
    key: &Ed25519PublicKey,
    message: &str,
    signature: &str,
    what: &str,
) -> Result<(), E2eError> {
    let sig = Ed25519Signature::from_base64(signature)
        .map_err(|_| E2eError::BadSignature(what.to_string()))?;
    key.verify(message.as_bytes(), &sig)
        .map_err(|_| E2eError::BadSignature(what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::Ed25519SecretKey;

    #[test]
    fn strings_are_exactly_the_agreed_ones() {
        assert_eq!(
            device_certificate_string("bob", "DEV", "C", "E"),
            "chat-device-v1\nbob\nDEV\nC\nE"
        );
        assert_eq!(
            one_time_key_string("bob", "DEV", "AAAAAQ", "K"),
            "chat-otk-v1\nbob\nDEV\nAAAAAQ\nK"
        );
    }

    #[test]
    fn verify_accepts_the_right_signature_only() {
        let sk = Ed25519SecretKey::new();
        let pk = sk.public_key();
        let sig = sk.sign(b"hello").to_base64();
        assert!(verify(&pk, "hello", &sig, "x").is_ok());
        assert!(verify(&pk, "hellO", &sig, "x").is_err());
        assert!(verify(&pk, "hello", "not base64!", "x").is_err());
        assert!(verify(&pk, "hello", "", "x").is_err());
        assert!(ed25519("k", "short").is_err());
        assert!(curve25519("k", "").is_err());
    }
}
