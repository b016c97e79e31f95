//! One process at a time holds a device's crypto state. Two processes
//! (the TUI and a CLI command) each advancing their own copy of the Olm and
//! Megolm ratchets would fork them for good, so the state is guarded by an
//! exclusive lock on a file beside the cache: the second process waits a
//! bounded time, then gets a clear error. The operating system releases
//! the lock when its holder exits, however it exits.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting process tries again.
const RETRY: Duration = Duration::from_millis(50);

/// The lock, held until dropped.
#[derive(Debug)]
pub struct DeviceLock {
    path: PathBuf,
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another chat process{} holds this account's secret-conversation keys \
         ({}); close it, or wait for it to finish, and try again",
        .holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        .path.display()
    )]
    Held { path: PathBuf, holder: Option<u32> },
    #[error("cannot open the lock file {}: {}", .0.display(), .1)]
    Io(PathBuf, std::io::Error),
}

/// The lock file beside a cache file (`chat.db` → `chat.db.e2e-lock`).
pub fn lock_path_for(cache: &Path) -> PathBuf {
    let mut s = cache.as_os_str().to_owned();
    s.push(".e2e-lock");
    PathBuf::from(s)
}

impl DeviceLock {
    /// Take the lock at `path`, waiting at most `wait` for another holder.
    pub fn acquire(path: &Path, wait: Duration) -> Result<DeviceLock, LockError> {
        let io = |e| LockError::Io(path.to_path_buf(), e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private::dir(dir).map_err(io)?;
        }
        crate::private::file(path).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(
                        RETRY.min(deadline.saturating_duration_since(Instant::now())),
                    );
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = std::fs::read_to_string(path)
                        .ok()
                        .and_then(|t| t.trim().parse().ok());
                    return Err(LockError::Held {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        // Say who holds it, for the other process's message.
        let _ = file.set_len(0);
        let _ = write!(file, "{}", std::process::id());
        Ok(DeviceLock {
            path: path.to_path_buf(),
            _file: file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock_path_for(&dir.path().join("chat.db"));
        let first = DeviceLock::acquire(&path, Duration::ZERO).unwrap();
        let started = Instant::now();
        let err = DeviceLock::acquire(&path, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        match &err {
            LockError::Held { holder, .. } => assert_eq!(*holder, Some(std::process::id())),
            e => panic!("{e}"),
        }
        assert!(err.to_string().contains("another chat process"));
        drop(first);
        let again = DeviceLock::acquire(&path, Duration::ZERO).unwrap();
        assert_eq!(again.path(), path);
    }

    #[test]
    fn a_waiting_holder_gets_the_lock_when_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = DeviceLock::acquire(&path, Duration::ZERO).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        DeviceLock::acquire(&path, Duration::from_secs(5)).unwrap();
        releaser.join().unwrap();
    }
}
