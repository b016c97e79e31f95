//! The safety number two users compare (read aloud, or side by side) to
//! check each other's identity keys, in the way of Signal: for each user,
//! SHA-512 iterated over their identity key and name gives 30 digits; the
//! two halves are put in a fixed order so both sides see the same 60
//! digits, shown as 12 groups of 5.

use sha2::{Digest, Sha512};
use vodozemac::Ed25519PublicKey;

/// How many times each user's hash is iterated.
const ITERATIONS: usize = 5200;
const VERSION: [u8; 2] = [0, 0];

/// Sixty digits, the same on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The safety number of two users, whichever is "ours".
    pub fn new(
        user_a: &str,
        key_a: &Ed25519PublicKey,
        user_b: &str,
        key_b: &Ed25519PublicKey,
    ) -> SafetyNumber {
        let a = half(user_a, key_a);
        let b = half(user_b, key_b);
        let (first, second) = if a <= b { (a, b) } else { (b, a) };
        SafetyNumber(first + &second)
    }

    /// The 60 digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The 12 groups of 5 digits.
    pub fn groups(&self) -> Vec<&str> {
        (0..self.0.len() / 5)
            .map(|i| &self.0[i * 5..i * 5 + 5])
            .collect()
    }
}

impl std::fmt::Display for SafetyNumber {
    /// Three lines of four groups.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, line) in self.groups().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(&line.join(" "))?;
        }
        Ok(())
    }
}

/// One user's 30 digits.
fn half(user: &str, key: &Ed25519PublicKey) -> String {
    let key = key.as_bytes();
    let mut hash = Sha512::new()
        .chain_update(VERSION)
        .chain_update(key)
        .chain_update(user.as_bytes())
        .finalize();
    for _ in 0..ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(key)
            .finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in hash[..30].chunks(5) {
        let n = chunk.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", n % 100_000));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::Ed25519SecretKey;

    #[test]
    fn the_same_for_both_sides_and_changed_by_any_key_or_name() {
        let (ka, kb) = (
            Ed25519SecretKey::new().public_key(),
            Ed25519SecretKey::new().public_key(),
        );
        let ab = SafetyNumber::new("alice", &ka, "bob", &kb);
        let ba = SafetyNumber::new("bob", &kb, "alice", &ka);
        assert_eq!(ab, ba);
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(ab.groups().len(), 12);
        assert_eq!(ab.to_string().lines().count(), 3);
        let kc = Ed25519SecretKey::new().public_key();
        assert_ne!(ab, SafetyNumber::new("alice", &ka, "bob", &kc));
        assert_ne!(ab, SafetyNumber::new("alice", &ka, "bobby", &kb));
    }
}
