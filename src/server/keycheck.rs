//! Checks of the keys and signatures of secret conversations, with
//! vodozemac: a key must parse as what it claims to be, and a signature
//! must verify over its canonical string (see `crate::proto::keys`).

use crate::proto::ProtoError;
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

/// An Ed25519 public key in unpadded base64; `what` names it in the refusal.
pub fn ed25519(key: &str, what: &str) -> Result<Ed25519PublicKey, ProtoError> {
    Ed25519PublicKey::from_base64(key)
        .map_err(|_| ProtoError::invalid(format!("{what} is not an Ed25519 key in base64")))
}

/// A Curve25519 public key in unpadded base64.
pub fn curve25519(key: &str, what: &str) -> Result<(), ProtoError> {
    Curve25519PublicKey::from_base64(key)
        .map(|_| ())
        .map_err(|_| ProtoError::invalid(format!("{what} is not a Curve25519 key in base64")))
}

/// `signature` by `key` over `text`.
pub fn verify(
    key: &Ed25519PublicKey,
    text: &str,
    signature: &str,
    what: &str,
) -> Result<(), ProtoError> {
    let sig = Ed25519Signature::from_base64(signature)
        .map_err(|_| ProtoError::invalid(format!("{what}: the signature is not base64")))?;
    key.verify(text.as_bytes(), &sig)
        .map_err(|_| ProtoError::invalid(format!("{what}: the signature does not verify")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::Ed25519Keypair;

    #[test]
    fn signatures_verify_only_over_their_text() {
        let pair = Ed25519Keypair::new();
        let public = ed25519(&pair.public_key().to_base64(), "key").unwrap();
        let sig = pair.sign(b"chat-otk-v1\nbob").to_base64();
        assert!(verify(&public, "chat-otk-v1\nbob", &sig, "key").is_ok());
        assert!(verify(&public, "chat-otk-v1\nbob\n", &sig, "key").is_err());
        assert!(verify(&public, "chat-otk-v1\nbob", "!!", "key").is_err());
        assert!(ed25519("not a key", "key").is_err());
        assert!(curve25519(&pair.public_key().to_base64(), "key").is_ok());
        assert!(curve25519("AAAA", "key").is_err());
    }
}
