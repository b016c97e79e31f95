//! Files that hold secrets or private history (chatd's database, the
//! client's cache and credentials): directories `0700`, files `0600`, so
//! that other local users cannot read them. On platforms without Unix
//! modes these do the creation only.

use std::io;
use std::path::Path;

/// Create `path` (and its missing parents) `0700`. A directory that
/// already exists keeps its mode: it may be shared (`/tmp`), and the files
/// inside are private anyway.
pub fn dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// Make `path` a file only its owner may read or write, creating it empty
/// if it does not exist (never truncating it). Files SQLite makes beside a
/// database (`-wal`, `-shm`, `-journal`) take the database file's mode.
pub fn file(path: &Path) -> io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    drop(opts.open(path)?);
    restrict(path)
}

/// Replace the contents of `path` with `bytes`, the file `0600`, and wait
/// until they are on disk.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    restrict(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Make an existing file `0600`; a missing one is left missing.
pub fn restrict(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_private() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        // An existing directory keeps its mode.
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        dir(t.path()).unwrap();
        assert_eq!(mode(t.path()), 0o755);
        let f = d.join("x.db");
        std::fs::write(&f, b"keep").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"keep", "never truncated");
        let g = d.join("new.db");
        file(&g).unwrap();
        assert_eq!(mode(&g), 0o600);
        restrict(&d.join("missing")).unwrap();
        assert!(!d.join("missing").exists());
    }
}
