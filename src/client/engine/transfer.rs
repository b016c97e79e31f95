//! File transfers on the engine's side: uploads and downloads run as tasks
//! of their own (the engine never waits on one), report their progress
//! back on a channel the engine reads beside the network's, and end in the
//! engine: an upload as an outbox entry that shares the file (sent and
//! retried like a message), a download as a file ready on disk.
//!
//! Files opened or shown inline are kept under the data dir
//! (`files/<digest>/<name>`), so a second look costs nothing; saved ones go
//! to the user's downloads directory, never over an existing file.

use super::Engine;
use super::actions::new_client_msg_id;
use crate::client::attach;
use crate::client::cache::OutboxRequest;
use crate::client::e2e::files::{open_file, seal_file, sealed_path};
use crate::client::net::files::{FileClient, TransferError};
use crate::client::update::{Fetch, TransferState, TransferView, Update};
use crate::proto::FileInfo;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Least time between two progress reports of one transfer.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// What a transfer task tells the engine.
#[derive(Debug)]
pub enum TransferEvent {
    Progress(TransferView),
    /// An upload is stored on the server: share it.
    Uploaded {
        view: TransferView,
        conv: String,
        file: FileInfo,
        caption: Option<String>,
    },
    /// A download is on disk.
    Downloaded {
        view: TransferView,
        digest: String,
        path: PathBuf,
        purpose: Fetch,
    },
    Failed {
        view: TransferView,
        digest: Option<String>,
        error: String,
    },
}

/// What transfers need besides the engine's own state.
#[derive(Debug, Clone, Default)]
pub struct FilesSetup {
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    /// Where saved files go (the user's downloads directory).
    pub downloads: Option<PathBuf>,
}

/// The user's downloads directory: the platform's, else `~/Downloads`,
/// else the current directory.
pub fn default_downloads() -> PathBuf {
    directories::UserDirs::new()
        .and_then(|u| {
            u.download_dir()
                .map(Path::to_path_buf)
                .or_else(|| Some(u.home_dir().join("Downloads")).filter(|d| d.is_dir()))
        })
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `dir/name`, or `dir/stem (2).ext` and so on where that is taken.
pub fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    (2..10_000)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

impl Engine {
    /// The cached copy of a file (opened or shown inline).
    fn cached_file(&self, file: &FileInfo) -> PathBuf {
        self.paths
            .data
            .join("files")
            .join(&file.digest)
            .join(attach::safe_name(&file.name))
    }

    fn file_client(&self) -> Result<FileClient, String> {
        let me = self.me.as_deref().ok_or("not logged in")?;
        let token = self
            .tokens
            .load(me, &self.server)
            .map(|(t, _)| t)
            .ok_or("not logged in")?;
        FileClient::new(
            &self.server,
            token,
            self.files.insecure,
            self.files.ca_file.as_deref(),
        )
        .map_err(|e| e.to_string())
    }

    fn next_transfer(&mut self, name: &str, total: u64, upload: bool) -> TransferView {
        self.transfers += 1;
        TransferView {
            id: self.transfers,
            name: crate::client::text::clean(name),
            done: 0,
            total,
            upload,
            state: TransferState::Running,
        }
    }

    /// Upload `path` and then share it in `conv`.
    pub(super) fn upload(&mut self, conv: String, path: PathBuf, caption: Option<String>) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        let view = self.next_transfer(&name, 0, true);
        let client = match self.file_client() {
            Ok(c) => c,
            Err(e) => return self.notice(format!("cannot upload {name}: {e}")),
        };
        // In a secret conversation the server gets only the ciphertext.
        let sealed_dir = self
            .is_secret(&conv)
            .then(|| self.paths.data.join("files").join(".sealed"));
        self.dirty.updates.push(Update::Transfer(view.clone()));
        let tx = self.transfer_tx.clone();
        tokio::spawn(async move {
            let described = tokio::task::spawn_blocking({
                let path = path.clone();
                move || match sealed_dir {
                    Some(dir) => seal_file(&path, &dir).map(|(f, p)| (f, Some(p))),
                    None => attach::describe(&path).map(|f| (f, None)),
                }
            })
            .await;
            let (file, sealed) = match described {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => return fail(&tx, view, None, format!("{}: {e}", path.display())),
                Err(e) => return fail(&tx, view, None, e.to_string()),
            };
            let mut view = TransferView {
                total: file.size,
                ..view
            };
            let (progress, rx) = watch::channel(0);
            let reporter = report(tx.clone(), view.clone(), rx);
            let result = client
                .upload(
                    sealed.as_deref().unwrap_or(&path),
                    &file.digest,
                    file.size,
                    &progress,
                )
                .await;
            drop(progress);
            reporter.abort();
            if let Some(p) = &sealed {
                let _ = tokio::fs::remove_file(p).await;
            }
            match result {
                Ok(_) => {
                    view.done = view.total;
                    view.state = TransferState::Done;
                    let _ = tx.send(TransferEvent::Uploaded {
                        view,
                        conv,
                        file,
                        caption,
                    });
                }
                Err(e) => fail(&tx, view, None, e.to_string()),
            }
        });
    }

    /// Download a shared file for `purpose`.
    pub(super) fn download(&mut self, file: FileInfo, purpose: Fetch) {
        let dest = match purpose {
            Fetch::Open | Fetch::Show => self.cached_file(&file),
            Fetch::Save => {
                let dir = self
                    .files
                    .downloads
                    .clone()
                    .unwrap_or_else(default_downloads);
                free_path(&dir, &attach::safe_name(&file.name))
            }
        };
        if purpose != Fetch::Save && dest.is_file() {
            self.dirty.updates.push(Update::FileReady {
                digest: file.digest,
                path: dest,
                purpose,
            });
            return;
        }
        if purpose == Fetch::Show && !self.showing.insert(file.digest.clone()) {
            return;
        }
        let client = match self.file_client() {
            Ok(c) => c,
            Err(e) => return self.notice(format!("cannot download {}: {e}", file.name)),
        };
        let view = self.next_transfer(&file.name, file.size, false);
        if purpose != Fetch::Show {
            self.dirty.updates.push(Update::Transfer(view.clone()));
        }
        let tx = self.transfer_tx.clone();
        tokio::spawn(async move {
            // The client's own copies (opened, shown) are private; a saved
            // file goes where the user keeps their downloads.
            let made = match dest.parent() {
                Some(dir) if purpose != Fetch::Save => {
                    let d = dir.to_path_buf();
                    tokio::task::spawn_blocking(move || crate::private::dir(&d))
                        .await
                        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                }
                Some(dir) => tokio::fs::create_dir_all(dir).await,
                None => Ok(()),
            };
            if let (Some(dir), Err(e)) = (dest.parent(), made) {
                return fail(
                    &tx,
                    view,
                    Some(file.digest),
                    format!("{}: {e}", dir.display()),
                );
            }
            let (progress, rx) = watch::channel(0);
            let reporter = (purpose != Fetch::Show).then(|| report(tx.clone(), view.clone(), rx));
            let overwrite = purpose != Fetch::Save;
            let result = match &file.key {
                None => {
                    client
                        .download(&file.digest, file.size, &dest, overwrite, &progress)
                        .await
                }
                // The ciphertext beside the destination, then the bytes.
                Some(key) => {
                    let sealed = sealed_path(&dest, &file.digest);
                    match client
                        .download(&file.digest, file.size, &sealed, true, &progress)
                        .await
                    {
                        Ok(_) => {
                            let (key, dest) = (key.clone(), dest.clone());
                            let opened = tokio::task::spawn_blocking(move || {
                                let out = open_file(&sealed, &key, &dest, overwrite);
                                let _ = std::fs::remove_file(&sealed);
                                out
                            })
                            .await;
                            match opened {
                                Ok(Ok(path)) => Ok(crate::client::net::files::Downloaded {
                                    path,
                                    resumed_from: 0,
                                }),
                                Ok(Err(e)) => Err(TransferError::BadReply(e)),
                                Err(e) => Err(TransferError::BadReply(e.to_string())),
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            drop(progress);
            if let Some(r) = reporter {
                r.abort();
            }
            match result {
                Ok(done) => {
                    let _ = tx.send(TransferEvent::Downloaded {
                        view: TransferView {
                            done: file.size,
                            state: TransferState::Done,
                            ..view
                        },
                        digest: file.digest,
                        path: done.path,
                        purpose,
                    });
                }
                Err(e) => fail(&tx, view, Some(file.digest), describe_error(&e)),
            }
        });
    }

    pub(super) fn on_transfer(&mut self, ev: TransferEvent) {
        match ev {
            TransferEvent::Progress(view) => self.dirty.updates.push(Update::Transfer(view)),
            TransferEvent::Uploaded {
                view,
                conv,
                file,
                caption,
            } => {
                self.dirty.updates.push(Update::Transfer(view));
                self.enqueue(
                    new_client_msg_id(),
                    conv,
                    OutboxRequest::SendFile {
                        file,
                        caption,
                        reply_to: None,
                    },
                );
            }
            TransferEvent::Downloaded {
                view,
                digest,
                path,
                purpose,
            } => {
                self.showing.remove(&digest);
                if purpose != Fetch::Show {
                    self.dirty.updates.push(Update::Transfer(view));
                }
                self.dirty.updates.push(Update::FileReady {
                    digest,
                    path,
                    purpose,
                });
            }
            TransferEvent::Failed {
                view,
                digest,
                error,
            } => {
                if let Some(d) = digest
                    && self.showing.remove(&d)
                {
                    // An inline image that could not be fetched stays a
                    // preview; nobody asked for it, nobody is told.
                    tracing::debug!("image {d} not fetched: {error}");
                    return;
                }
                self.dirty.updates.push(Update::Transfer(TransferView {
                    state: TransferState::Failed(error),
                    ..view
                }));
            }
        }
    }
}

fn describe_error(e: &TransferError) -> String {
    e.to_string()
}

fn fail(
    tx: &mpsc::UnboundedSender<TransferEvent>,
    view: TransferView,
    digest: Option<String>,
    error: String,
) {
    let _ = tx.send(TransferEvent::Failed {
        view,
        digest,
        error,
    });
}

/// Forward `progress` to the engine, at most every [`REPORT_EVERY`].
fn report(
    tx: mpsc::UnboundedSender<TransferEvent>,
    view: TransferView,
    mut progress: watch::Receiver<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while progress.changed().await.is_ok() {
            let done = *progress.borrow_and_update();
            let sent = tx.send(TransferEvent::Progress(TransferView {
                done,
                ..view.clone()
            }));
            if sent.is_err() {
                return;
            }
            tokio::time::sleep(REPORT_EVERY).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_file_never_replaces_another() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a.txt"));
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a (2).txt"));
        std::fs::write(dir.path().join("a (2).txt"), "x").unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a (3).txt"));
        std::fs::write(dir.path().join("README"), "x").unwrap();
        assert_eq!(
            free_path(dir.path(), "README"),
            dir.path().join("README (2)")
        );
    }
}
