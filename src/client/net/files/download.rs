//! Downloads: resuming a partial file with `Range`, writing chunk by
//! chunk, checking the digest, and putting the file in place without
//! replacing another unless asked.

use super::{CHUNK, FileClient, TransferError, is_digest, lost_reason, read_small, refusal};
use http_body_util::{BodyExt, Empty};
use hyper::{StatusCode, header};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// How a download went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub path: PathBuf,
    /// Bytes already held from an earlier, interrupted download.
    pub resumed_from: u64,
}

/// What to do with a partial file of `have` bytes of a file of `size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Nothing usable: start from the first byte.
    Fresh,
    /// Ask for the bytes from this offset on.
    From(u64),
    /// Every byte is there: only check the digest.
    Complete,
}

impl Resume {
    pub fn plan(have: u64, size: u64) -> Resume {
        match have {
            0 => Resume::Fresh,
            h if h == size => Resume::Complete,
            h if h > size => Resume::Fresh,
            h => Resume::From(h),
        }
    }
}

/// The `Range` header asking for the bytes from `start` on.
pub fn range_header(start: u64) -> String {
    format!("bytes={start}-")
}

/// The first byte a `206` answer's `Content-Range` (`bytes START-END/SIZE`)
/// starts at.
pub fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// The partial file a download of `digest` to `dest` writes into: beside
/// it (so the final rename never crosses file systems), hidden, and named
/// by the digest so that a resume continues the same bytes.
pub fn partial_path(dest: &Path, digest: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let short: String = digest.chars().take(16).collect();
    dest.with_file_name(format!(".{name}.{short}.part"))
}

impl FileClient {
    /// Download the file `digest` of `size` bytes to `dest`, resuming a
    /// partial file left beside it; an existing `dest` is replaced only
    /// when `overwrite`. `progress` counts the bytes held.
    pub async fn download(
        &self,
        digest: &str,
        size: u64,
        dest: &Path,
        overwrite: bool,
        progress: &watch::Sender<u64>,
    ) -> Result<Downloaded, TransferError> {
        if !is_digest(digest) {
            return Err(TransferError::BadReply(format!("not a digest: {digest:?}")));
        }
        let part = partial_path(dest, digest);
        match self.fetch_into(&part, digest, size, progress).await {
            // The server could not serve the range (the partial file was
            // not a prefix of this file): once more from the start.
            Err(Retry::FromStart) => {
                remove_quietly(&part).await;
                match self.fetch_into(&part, digest, size, progress).await {
                    Ok(from) => finish(&part, dest, overwrite, from).await,
                    Err(Retry::FromStart) => Err(TransferError::BadReply(
                        "the server keeps refusing the range".into(),
                    )),
                    Err(Retry::Fail(e)) => Err(e),
                }
            }
            Err(Retry::Fail(e)) => Err(e),
            Ok(from) => finish(&part, dest, overwrite, from).await,
        }
    }

    /// Fill `part` with the file's bytes and check them; returns where it
    /// resumed from.
    async fn fetch_into(
        &self,
        part: &Path,
        digest: &str,
        size: u64,
        progress: &watch::Sender<u64>,
    ) -> Result<u64, Retry> {
        let have = tokio::fs::metadata(part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let plan = Resume::plan(have, size);
        let mut hasher = Sha256::new();
        let mut held = match plan {
            Resume::Fresh => 0,
            Resume::From(_) | Resume::Complete => {
                hash_prefix(part, have, &mut hasher).await?;
                have
            }
        };
        let mut resumed_from = held;
        progress.send_replace(held);
        if plan != Resume::Complete {
            let mut req = self.request(hyper::Method::GET, &format!("/files/{digest}"));
            if let Resume::From(start) = plan {
                req = req.header(header::RANGE, range_header(start));
            }
            let req = req
                .body(Empty::new().map_err(|never| match never {}).boxed())
                .map_err(|e| TransferError::BadReply(e.to_string()))?;
            let resp = tokio::time::timeout(self.idle, self.exchange(req))
                .await
                .map_err(|_| TransferError::Timeout(self.idle))??;
            let status = resp.status();
            // Opened only once the server serves the bytes, so a refusal
            // leaves nothing behind.
            let open = || async {
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(part)
                    .await
                    .map_err(TransferError::io(part))
            };
            let mut file = match status {
                StatusCode::OK => {
                    // The whole file (also when a range was asked for).
                    let file = open().await?;
                    file.set_len(0).await.map_err(TransferError::io(part))?;
                    hasher = Sha256::new();
                    held = 0;
                    resumed_from = 0;
                    file
                }
                StatusCode::PARTIAL_CONTENT => {
                    let start = resp
                        .headers()
                        .get(header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(content_range_start);
                    if start != Some(held) {
                        return Err(Retry::FromStart);
                    }
                    open().await?
                }
                StatusCode::RANGE_NOT_SATISFIABLE => return Err(Retry::FromStart),
                _ => {
                    let body = read_small(resp.into_body()).await?;
                    return Err(refusal(status, &body).into());
                }
            };
            let mut body = resp.into_body();
            // Stopped early (lost, silent): what arrived is written out all
            // the same, so that the next try resumes after it.
            let mut stopped = None;
            loop {
                let frame = match tokio::time::timeout(self.idle, body.frame()).await {
                    Err(_) => {
                        stopped = Some(TransferError::Timeout(self.idle));
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        stopped = Some(TransferError::Lost(lost_reason(&e)));
                        break;
                    }
                    Ok(Some(Ok(frame))) => frame,
                };
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                held += data.len() as u64;
                if held > size {
                    return Err(Retry::FromStart);
                }
                file.write_all(&data)
                    .await
                    .map_err(TransferError::io(part))?;
                hasher.update(&data);
                progress.send_replace(held);
            }
            file.flush().await.map_err(TransferError::io(part))?;
            file.sync_all().await.map_err(TransferError::io(part))?;
            if let Some(e) = stopped {
                return Err(e.into());
            }
        }
        if held != size {
            return Err(TransferError::Lost(format!("got {held} of {size} bytes")).into());
        }
        if hex::encode(hasher.finalize()) != digest.to_ascii_lowercase() {
            remove_quietly(part).await;
            return Err(TransferError::DigestMismatch.into());
        }
        Ok(resumed_from)
    }
}

/// Why a download attempt stopped.
enum Retry {
    FromStart,
    Fail(TransferError),
}

impl From<TransferError> for Retry {
    fn from(e: TransferError) -> Self {
        Retry::Fail(e)
    }
}

/// Put the checked partial file in place: replacing `dest` when
/// `overwrite`, otherwise only if nothing is there (atomically, by a link).
async fn finish(
    part: &Path,
    dest: &Path,
    overwrite: bool,
    resumed_from: u64,
) -> Result<Downloaded, TransferError> {
    if overwrite {
        tokio::fs::rename(part, dest)
            .await
            .map_err(TransferError::io(dest))?;
    } else {
        match tokio::fs::hard_link(part, dest).await {
            Ok(()) => remove_quietly(part).await,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(TransferError::Io {
                    path: dest.to_path_buf(),
                    source: std::io::Error::new(
                        e.kind(),
                        "already exists (the download is kept beside it until replaced)",
                    ),
                });
            }
            // A file system without hard links.
            Err(_) if tokio::fs::metadata(dest).await.is_err() => tokio::fs::rename(part, dest)
                .await
                .map_err(TransferError::io(dest))?,
            Err(e) => return Err(TransferError::io(dest)(e)),
        }
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(Downloaded {
        path: dest.to_path_buf(),
        resumed_from,
    })
}

async fn remove_quietly(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
    }
}

/// Feed the first `n` bytes of `path` to `hasher`.
async fn hash_prefix(path: &Path, n: u64, hasher: &mut Sha256) -> Result<(), TransferError> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(TransferError::io(path))?
        .take(n);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let got = f.read(&mut buf).await.map_err(TransferError::io(path))?;
        if got == 0 {
            return Ok(());
        }
        hasher.update(&buf[..got]);
    }
}
