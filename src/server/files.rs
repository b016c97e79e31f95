//! Where uploaded files live: content-addressed blobs behind a seam.
//!
//! A blob is named by the SHA-256 of its bytes, so a file shared many times
//! is stored once. An upload is streamed into a temporary file while it is
//! hashed and counted (constant memory, whatever the size), refused as soon
//! as it passes its size limit, synced, checked against the digest the
//! sender announced (if any), and only then renamed into place: a crash or
//! a refusal mid-upload leaves no blob, only a temporary file that the next
//! start sweeps away. Reads open the blob by digest; a name that is not 64
//! hex digits never reaches the filesystem.
//!
//! The operations block (file I/O and fsync): async callers run them on
//! blocking threads, a chunk at a time.
//!
//! [`FsBlobs`] keeps them under the data dir (`files/ab/abcdef…`, private
//! like the database). A store for many nodes (S3-compatible, through the
//! `object_store` crate) would implement the same [`Blobs`] operations:
//! multipart upload for `begin`/`write`/`finish`, ranged GET for `open`.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// `[files]` in chatd's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilesConfig {
    /// Largest file one upload may carry, in bytes.
    pub max_upload_bytes: u64,
    /// What one user's uploads may take in all, in bytes (a file counts
    /// once however often it is shared).
    pub quota_bytes: u64,
    /// Uploads no conversation refers to are removed after this many
    /// seconds (so are files whose every `file` event was deleted).
    pub unreferenced_grace_secs: u64,
    /// Uploads one user may have in progress at once.
    pub max_concurrent_uploads: usize,
}

impl Default for FilesConfig {
    fn default() -> FilesConfig {
        FilesConfig {
            max_upload_bytes: 100 * 1024 * 1024,
            quota_bytes: 2 * 1024 * 1024 * 1024,
            unreferenced_grace_secs: 24 * 3600,
            max_concurrent_uploads: 4,
        }
    }
}

/// The SHA-256 of a blob's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = FileError;

    /// Exactly 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<Digest, FileError> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(FileError::BadDigest);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| FileError::BadDigest)?;
        Ok(Digest(out))
    }
}

/// A blob once stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    pub size: u64,
    /// It was already there (the same bytes uploaded before).
    pub existed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file's bytes do not match the digest it was announced with")]
    DigestMismatch,
    #[error("not a file digest (64 lowercase hex digits)")]
    BadDigest,
    #[error("file storage: {0}")]
    Io(#[from] io::Error),
}

/// The operations a blob store offers (the seam).
pub trait Blobs {
    type Upload: Upload;
    /// Start an upload of at most `limit` bytes.
    fn begin(&self, limit: u64) -> Result<Self::Upload, FileError>;
    /// Finish an upload: verified against `expected` when given, then
    /// stored under its digest (or dropped if those bytes are there).
    fn finish(&self, upload: Self::Upload, expected: Option<Digest>) -> Result<Stored, FileError>;
    /// A blob's file and size, if stored.
    fn open(&self, digest: &Digest) -> Result<Option<(std::fs::File, u64)>, FileError>;
    /// Remove a blob (no error if it is not there).
    fn remove(&self, digest: &Digest) -> Result<(), FileError>;
}

/// An upload in progress.
pub trait Upload {
    /// Append bytes; refused (and the upload spoiled) past the limit.
    fn write(&mut self, chunk: &[u8]) -> Result<(), FileError>;
    /// Bytes written so far.
    fn size(&self) -> u64;
}

/// The files side of a running chatd: its blob store, its settings, the
/// uploads in progress per user, and the lock that keeps collection from
/// removing bytes an upload is just recording.
pub struct Files {
    pub blobs: FsBlobs,
    pub config: FilesConfig,
    busy: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Held while an upload stores and records its bytes, and while
    /// collection checks and removes a blob.
    pub store_lock: tokio::sync::Mutex<()>,
}

/// An upload in progress for a user; dropping it frees the place.
pub struct UploadSlot<'a> {
    files: &'a Files,
    user: String,
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut busy = self.files.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                busy.remove(&self.user);
            }
        }
    }
}

impl Files {
    /// The files of the data directory `data` (under `files/`).
    pub fn open(data: &Path, config: FilesConfig) -> Result<Files, FileError> {
        Ok(Files {
            blobs: FsBlobs::open(data.join("files"))?,
            config,
            busy: Default::default(),
            store_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// A place for one more upload by `user`, if they have one left.
    pub fn slot(&self, user: &str) -> Option<UploadSlot<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let n = busy.entry(user.to_string()).or_insert(0);
        if *n >= self.config.max_concurrent_uploads.max(1) {
            return None;
        }
        *n += 1;
        Some(UploadSlot {
            files: self,
            user: user.to_string(),
        })
    }
}

/// Collect what nothing refers to, once soon after start and then every
/// so often (a quarter of the grace period, at most hourly), until `stop`.
pub async fn collect(
    shared: std::sync::Arc<super::Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    let grace = Duration::from_secs(shared.files.config.unreferenced_grace_secs);
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match collect_once(&shared, grace).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(files = n, "unreferenced files removed"),
            Err(e) => tracing::warn!("collecting files: {e}"),
        }
    }
}

/// One collection: uploads older than `grace` that no `file` event of
/// their uploader refers to are forgotten, and blobs older than `grace`
/// that nothing refers to (those just forgotten, or left by a crash
/// between storing and recording) are removed. Returns how many blobs went.
pub async fn collect_once(shared: &super::Shared, grace: Duration) -> Result<usize, String> {
    use crate::store::log::{AccountOp, AccountReply};
    let now = std::time::SystemTime::now();
    let before = crate::proto::now_millis() - grace.as_millis() as i64;
    match shared
        .store
        .account(AccountOp::CollectUploads { before })
        .await
    {
        Ok(AccountReply::Digests(_)) | Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let blobs = shared.files.blobs.clone();
    let listed = tokio::task::spawn_blocking(move || blobs.list())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut removed = 0;
    for (digest, _, modified) in listed {
        if now.duration_since(modified).unwrap_or_default() < grace {
            continue;
        }
        let _held = shared.files.store_lock.lock().await;
        let referenced = shared
            .store
            .readers()
            .file_referenced(&digest.to_string())
            .await
            .map_err(|e| e.to_string())?;
        if !referenced {
            let blobs = shared.files.blobs.clone();
            tokio::task::spawn_blocking(move || blobs.remove(&digest))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Blobs on the local filesystem under `root`.
#[derive(Clone)]
pub struct FsBlobs {
    root: PathBuf,
}

/// An upload into a temporary file under `root/tmp`. Dropped unfinished,
/// it removes its file.
pub struct FsUpload {
    file: Option<std::fs::File>,
    path: PathBuf,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Upload for FsUpload {
    fn write(&mut self, chunk: &[u8]) -> Result<(), FileError> {
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        file.write_all(chunk)?;
        self.hasher.update(chunk);
        self.size = size;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }
}

impl FsBlobs {
    /// The store under `root` (created private), with temporary files left
    /// by an earlier run removed.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsBlobs, FileError> {
        let root = root.into();
        crate::private::dir(&root.join("tmp"))?;
        let store = FsBlobs { root };
        store.sweep_temp()?;
        Ok(store)
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_string();
        self.root.join(&hex[..2]).join(hex)
    }

    /// Remove every temporary file (uploads a crash interrupted). Only
    /// called at start, before any upload of this run.
    fn sweep_temp(&self) -> Result<(), FileError> {
        for entry in std::fs::read_dir(self.tmp())? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Every stored blob with its size and when it was stored (for
    /// collecting unreferenced ones).
    pub fn list(&self) -> Result<Vec<(Digest, u64, std::time::SystemTime)>, FileError> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(&self.root)? {
            let shard = shard?;
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !shard.file_type()?.is_dir() {
                continue;
            }
            for blob in std::fs::read_dir(shard.path())? {
                let blob = blob?;
                let Ok(digest) = blob.file_name().to_string_lossy().parse::<Digest>() else {
                    continue;
                };
                let meta = blob.metadata()?;
                out.push((digest, meta.len(), meta.modified()?));
            }
        }
        out.sort_by_key(|b| b.0);
        Ok(out)
    }
}

/// Make a directory entry durable (a rename into it, a new file).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()?;
    }
    let _ = dir;
    Ok(())
}

impl Blobs for FsBlobs {
    type Upload = FsUpload;

    fn begin(&self, limit: u64) -> Result<FsUpload, FileError> {
        let path = self
            .tmp()
            .join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(&path)?;
        Ok(FsUpload {
            file: Some(file),
            path,
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    fn finish(&self, mut upload: FsUpload, expected: Option<Digest>) -> Result<Stored, FileError> {
        let file = upload
            .file
            .take()
            .ok_or_else(|| io::Error::other("upload already finished"))?;
        let temp = upload.path.clone();
        let result = (|| {
            file.sync_all()?;
            drop(file);
            let digest = Digest(upload.hasher.clone().finalize().into());
            if expected.is_some_and(|e| e != digest) {
                return Err(FileError::DigestMismatch);
            }
            let dest = self.path_of(&digest);
            if dest.is_file() {
                std::fs::remove_file(&temp)?;
                // Stored again: young again, for collection.
                std::fs::File::options()
                    .write(true)
                    .open(&dest)?
                    .set_modified(std::time::SystemTime::now())?;
                return Ok(Stored {
                    digest,
                    size: upload.size,
                    existed: true,
                });
            }
            let shard = dest.parent().unwrap_or(&self.root);
            crate::private::dir(shard)?;
            std::fs::rename(&temp, &dest)?;
            sync_dir(shard)?;
            Ok(Stored {
                digest,
                size: upload.size,
                existed: false,
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn open(&self, digest: &Digest) -> Result<Option<(std::fs::File, u64)>, FileError> {
        match std::fs::File::open(self.path_of(digest)) {
            Ok(f) => {
                let size = f.metadata()?.len();
                Ok(Some((f, size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn remove(&self, digest: &Digest) -> Result<(), FileError> {
        match std::fs::remove_file(self.path_of(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn store() -> (tempfile::TempDir, FsBlobs) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::open(dir.path().join("files")).unwrap();
        (dir, blobs)
    }

    fn put(blobs: &FsBlobs, chunks: &[&[u8]], limit: u64) -> Result<Stored, FileError> {
        let mut up = blobs.begin(limit)?;
        for c in chunks {
            up.write(c)?;
        }
        blobs.finish(up, None)
    }

    fn temp_files(blobs: &FsBlobs) -> usize {
        std::fs::read_dir(blobs.tmp()).unwrap().count()
    }

    #[test]
    fn a_blob_is_named_by_its_sha256_and_read_back() {
        let (_d, blobs) = store();
        let s = put(&blobs, &[b"hello ", b"world"], 100).unwrap();
        assert_eq!(
            s.digest.to_string(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!((s.size, s.existed), (11, false));
        let (mut f, size) = blobs.open(&s.digest).unwrap().expect("stored");
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        assert_eq!((text.as_str(), size), ("hello world", 11));
        assert_eq!(blobs.list().unwrap().len(), 1);
        assert_eq!(temp_files(&blobs), 0);
    }

    #[test]
    fn the_same_bytes_are_stored_once() {
        let (_d, blobs) = store();
        let a = put(&blobs, &[b"same"], 100).unwrap();
        let b = put(&blobs, &[b"sa", b"me"], 100).unwrap();
        assert_eq!(a.digest, b.digest);
        assert!(b.existed);
        assert_eq!(blobs.list().unwrap().len(), 1);
        assert_eq!(temp_files(&blobs), 0);
    }

    #[test]
    fn an_upload_past_its_limit_is_refused_and_leaves_nothing() {
        let (_d, blobs) = store();
        let mut up = blobs.begin(8).unwrap();
        up.write(b"12345").unwrap();
        assert!(matches!(
            up.write(b"6789"),
            Err(FileError::TooLarge { limit: 8 })
        ));
        drop(up);
        assert_eq!(temp_files(&blobs), 0);
        assert!(blobs.list().unwrap().is_empty());
    }

    #[test]
    fn a_digest_mismatch_stores_nothing() {
        let (_d, blobs) = store();
        let mut up = blobs.begin(100).unwrap();
        up.write(b"what was sent").unwrap();
        let wrong: Digest = "00".repeat(32).parse().unwrap();
        assert!(matches!(
            blobs.finish(up, Some(wrong)),
            Err(FileError::DigestMismatch)
        ));
        assert_eq!(temp_files(&blobs), 0);
        assert!(blobs.list().unwrap().is_empty());
    }

    #[test]
    fn uploads_cut_off_by_a_crash_are_swept_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("files");
        let blobs = FsBlobs::open(&root).unwrap();
        let kept = put(&blobs, &[b"kept"], 100).unwrap();
        let mut up = blobs.begin(100).unwrap();
        up.write(b"half of it").unwrap();
        // A crash: the upload is never finished nor dropped.
        std::mem::forget(up);
        assert_eq!(temp_files(&blobs), 1);
        let again = FsBlobs::open(&root).unwrap();
        assert_eq!(temp_files(&again), 0);
        assert!(again.open(&kept.digest).unwrap().is_some());
    }

    #[test]
    fn only_hex_digests_name_blobs() {
        for bad in [
            "",
            "../../etc/passwd",
            &"A".repeat(64),
            &"0".repeat(63),
            &format!("{}/", "0".repeat(63)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?}");
        }
        let ok = "ab".repeat(32);
        assert_eq!(ok.parse::<Digest>().unwrap().to_string(), ok);
    }

    #[test]
    fn removing_is_idempotent() {
        let (_d, blobs) = store();
        let s = put(&blobs, &[b"gone soon"], 100).unwrap();
        blobs.remove(&s.digest).unwrap();
        blobs.remove(&s.digest).unwrap();
        assert!(blobs.open(&s.digest).unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn blobs_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, blobs) = store();
        let s = put(&blobs, &[b"secret"], 100).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let path = blobs.path_of(&s.digest);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&blobs.root), 0o700);
    }
}
