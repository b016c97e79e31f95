//! The bytes of a file shared in a secret conversation: AES-256-GCM under a
//! random key and nonce, which travel (base64) in the Megolm plaintext's
//! `file` object. The server stores only the ciphertext.

use super::E2eError;
use crate::proto::FileInfo;
use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use std::path::{Path, PathBuf};

/// A file's ciphertext with its key and nonce (unpadded base64).
pub struct EncryptedFile {
    pub ciphertext: Vec<u8>,
    pub key: String,
    pub nonce: String,
}

impl std::fmt::Debug for EncryptedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedFile")
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl EncryptedFile {
    /// The `file` object of the Megolm plaintext: the real description
    /// with this file's key.
    pub fn info(
        &self,
        name: &str,
        media_type: &str,
        size: Option<(u32, u32)>,
    ) -> super::wire::FileInfo {
        super::wire::FileInfo {
            name: name.to_string(),
            media_type: media_type.to_string(),
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            key: self.key.clone(),
            nonce: self.nonce.clone(),
        }
    }
}

/// Encrypt `bytes` under a fresh random key and nonce.
pub fn encrypt(bytes: &[u8]) -> Result<EncryptedFile, E2eError> {
    let key: [u8; 32] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let ciphertext = seal(&key, &nonce, bytes)?;
    Ok(EncryptedFile {
        ciphertext,
        key: vodozemac::base64_encode(key),
        nonce: vodozemac::base64_encode(nonce),
    })
}

/// Decrypt and authenticate a file's ciphertext with the key and nonce of
/// its `file` object.
pub fn decrypt(ciphertext: &[u8], key: &str, nonce: &str) -> Result<Vec<u8>, E2eError> {
    let key: [u8; 32] = decode_exact(key, "file key")?;
    let nonce: [u8; 12] = decode_exact(nonce, "file nonce")?;
    open(&key, &nonce, ciphertext)
}

fn decode_exact<const N: usize>(b64: &str, what: &str) -> Result<[u8; N], E2eError> {
    let bytes = vodozemac::base64_decode(b64)
        .map_err(|_| E2eError::Malformed(format!("{what} is not base64")))?;
    bytes
        .try_into()
        .map_err(|_| E2eError::Malformed(format!("{what} has the wrong length")))
}

/// AES-256-GCM encryption (also used for secrets kept in the cache).
pub(crate) fn seal(key: &[u8; 32], nonce: &[u8; 12], plain: &[u8]) -> Result<Vec<u8>, E2eError> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .encrypt(&Nonce::from(*nonce), plain)
        .map_err(|_| E2eError::Decrypt("encryption failed".into()))
}

/// AES-256-GCM decryption and authentication.
pub(crate) fn open(key: &[u8; 32], nonce: &[u8; 12], sealed: &[u8]) -> Result<Vec<u8>, E2eError> {
    let cipher = Aes256Gcm::new(key.into());
    cipher.decrypt(&Nonce::from(*nonce), sealed).map_err(|_| {
        E2eError::Decrypt("the file does not match its key (damaged or altered)".into())
    })
}

/// Largest file shared in a secret conversation: it is encrypted and
/// decrypted whole, in memory.
pub const SECRET_FILE_MAX: u64 = 256 * 1024 * 1024;

/// Encrypt the file at `path` for a secret conversation into a new file
/// in `dir`: its description (the real name, type and size in pixels,
/// with the ciphertext's digest and size and the key, no preview) and
/// where the ciphertext is.
pub fn seal_file(path: &Path, dir: &Path) -> std::io::Result<(FileInfo, PathBuf)> {
    use sha2::Digest;
    let plain = crate::client::attach::describe(path)?;
    if plain.size > SECRET_FILE_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "larger than {} (the most a secret conversation shares)",
                crate::client::attach::human_size(SECRET_FILE_MAX)
            ),
        ));
    }
    let bytes = std::fs::read(path)?;
    let sealed = encrypt(&bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    drop(bytes);
    crate::private::dir(dir)?;
    let out = dir.join(format!("{}.up", uuid::Uuid::new_v4().simple()));
    std::fs::write(&out, &sealed.ciphertext)?;
    let file = FileInfo {
        digest: hex::encode(sha2::Sha256::digest(&sealed.ciphertext)),
        size: sealed.ciphertext.len() as u64,
        preview: None,
        key: Some(Box::new(crate::proto::FileKey {
            key: sealed.key.clone(),
            nonce: sealed.nonce.clone(),
        })),
        ..plain
    };
    Ok((file, out))
}

/// Where the ciphertext of a secret conversation's file is fetched to.
pub fn sealed_path(dest: &Path, digest: &str) -> PathBuf {
    let short: String = digest.chars().take(16).collect();
    dest.with_file_name(format!(".{short}.sealed"))
}

/// Decrypt the downloaded ciphertext at `sealed` into `dest` (a new file
/// unless `overwrite`).
pub fn open_file(
    sealed: &Path,
    key: &crate::proto::FileKey,
    dest: &Path,
    overwrite: bool,
) -> Result<PathBuf, String> {
    use std::io::Write;
    let ciphertext = std::fs::read(sealed).map_err(|e| e.to_string())?;
    let bytes = decrypt(&ciphertext, &key.key, &key.nonce)
        .map_err(|e| format!("the file does not decrypt: {e}"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if overwrite {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts
        .open(dest)
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    f.write_all(&bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", dest.display()))?;
    Ok(dest.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_keys() {
        let data = b"the quarterly numbers".repeat(100);
        let a = encrypt(&data).unwrap();
        let b = encrypt(&data).unwrap();
        assert_ne!(a.ciphertext, data);
        assert_eq!(a.ciphertext.len(), data.len() + 16);
        assert_ne!(a.key, b.key);
        assert_ne!(a.nonce, b.nonce);
        assert_eq!(decrypt(&a.ciphertext, &a.key, &a.nonce).unwrap(), data);
        let info = a.info("q3.png", "image/png", Some((640, 480)));
        assert_eq!((info.width, info.height), (Some(640), Some(480)));
        assert_eq!(
            decrypt(&a.ciphertext, &info.key, &info.nonce).unwrap(),
            data
        );
        assert_eq!(
            decrypt(
                &encrypt(b"").unwrap().ciphertext,
                &encrypt(b"").unwrap().key,
                "AAAAAAAAAAAAAAAA"
            )
            .ok(),
            None
        );
    }

    #[test]
    fn altered_bytes_or_wrong_keys_are_refused() {
        let f = encrypt(b"secret").unwrap();
        let mut bad = f.ciphertext.clone();
        bad[0] ^= 1;
        assert!(decrypt(&bad, &f.key, &f.nonce).is_err());
        let other = encrypt(b"x").unwrap();
        assert!(decrypt(&f.ciphertext, &other.key, &f.nonce).is_err());
        assert!(decrypt(&f.ciphertext, &f.key, &other.nonce).is_err());
        assert!(decrypt(&f.ciphertext, "short", &f.nonce).is_err());
        assert!(decrypt(&f.ciphertext, &f.key, "!!").is_err());
        assert!(decrypt(&[], &f.key, &f.nonce).is_err());
        assert!(!format!("{f:?}").contains(&f.key));
    }
}
