//! A thin VFS over SQLite's own that writes a transaction's WAL frames to
//! the file in one call instead of two per page.
//!
//! SQLite writes each WAL frame with two `pwrite`s: its 24-byte header, then
//! the page. A batch of 32 messages in 32 conversations dirties about 55
//! pages (each conversation's tail of the `(conversation_id, seq)` index is
//! a page of its own), so the writer made about 110 system calls per commit,
//! and the kernel prepared the same page-cache pages up to three times
//! (a frame is 4,120 bytes and straddles two of them). Measured on the
//! target machine with the same shapes of write: 3.2 µs per frame written
//! that way, 0.9 µs per frame written as one block.
//!
//! Files other than the WAL are SQLite's own, untouched. For the WAL, this
//! layer keeps writes that continue the previous write in a buffer and
//! hands the buffer to SQLite's file as one write:
//!
//! - as soon as the page of the frame marked as a commit is in it, so every
//!   frame of a transaction is in the file before `walFrames` returns and
//!   before the WAL index points readers (other connections, other
//!   processes) at those frames;
//! - before any other operation on the WAL file (a read, a sync, a
//!   truncation, its size, a file control, closing), so the file never
//!   looks different from what SQLite wrote;
//! - when the buffer reaches [`FLUSH_AT`] (a transaction that spills its
//!   page cache).
//!
//! A write that does not continue the previous one (a page overwritten in
//! place, a checksum rewritten by `walRewriteChecksums`, the WAL header at
//! a restart) goes straight through after the buffer. The file descriptor
//! fsynced by the sync stage (`durable`) is a different one; it sees the
//! frames because they are in the page cache by the time `COMMIT` returns.
//!
//! The write that ends a transaction is padded with zeros to the end of
//! its last memory page. After a restart the WAL is written over its old
//! frames, and a write that ends inside a page which has left memory
//! (evicted under memory pressure, or by a host's proactive reclaim) makes
//! the kernel read that page from disk before the write returns: the writer
//! and every request behind it waited for the read, which behind another
//! process's bulk write took 50–110 ms. A padded write covers its last page
//! to the end, so the kernel needs none of the old bytes. The bytes after a
//! transaction's commit frame are not part of the WAL (recovery stops at the
//! first frame whose salt or checksum does not match, and zeros match
//! neither), and the writer holds the WAL's write lock while it commits:
//! nothing valid is overwritten. The next transaction starts in that page,
//! which was just written and is in memory. The header of a WAL that starts
//! over is written with the rest of its page zeroed, for the same reason:
//! no frame is valid yet.
//!
//! What a crash can lose is unchanged: frames of a transaction whose commit
//! frame is not in the file are ignored by recovery, with or without this
//! layer.

use std::ffi::{CStr, c_int, c_void};
use std::mem::size_of;
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name the VFS is registered under.
const NAME: &CStr = c"chatd-wal";

/// The buffer is written out when it reaches this many bytes.
const FLUSH_AT: usize = 1 << 20;

/// The memory page size a transaction's last write is padded to.
const PAGE: usize = 4096;

/// The WAL's header, written alone at offset 0 when the WAL starts (over).
const WAL_HEADER: usize = 32;

/// The most the unix VFS writes in one call: it masks a write's length to
/// 17 bits, so a longer buffer goes in pieces of this size.
const MAX_WRITE: usize = 0x1f000;

/// Register the VFS (once per process) and return its name, or `None`
/// when SQLite has no default VFS to wrap; connections then use SQLite's
/// default directly.
pub(crate) fn name() -> Option<&'static str> {
    // SAFETY: `register` runs once (inside `get_or_init`) and the
    // structures it hands SQLite are leaked, so they live as long as the
    // process.
    if BASE.get_or_init(|| unsafe { register() }).is_some() {
        NAME.to_str().ok()
    } else {
        tracing::warn!("SQLite has no default VFS to wrap; WAL frames are written one by one");
        None
    }
}

/// SQLite's default VFS, which every call ends in, once this VFS is
/// registered over it (`None`: it could not be).
static BASE: OnceLock<Option<Base>> = OnceLock::new();

struct Base(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is immutable and meant to be used from any
// thread; SQLite calls it from every connection's thread.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}

unsafe fn register() -> Option<Base> {
    unsafe {
        // SAFETY (whole function): `sqlite3_vfs_find(NULL)` returns SQLite's
        // default VFS, which stays registered for the life of the process.
        let base = ffi::sqlite3_vfs_find(ptr::null());
        if base.is_null() {
            return None;
        }
        let mut vfs = *base;
        vfs.zName = NAME.as_ptr();
        vfs.pNext = ptr::null_mut();
        vfs.szOsFile = (size_of::<WalFile>() as c_int) + (*base).szOsFile;
        vfs.xOpen = Some(open);
        // Every other method, and `pAppData`, stay the base VFS's: they do not
        // look at which VFS they were called through.
        let vfs = Box::leak(Box::new(vfs));
        (ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK).then_some(Base(base))
    }
}

/// A WAL file opened through this VFS: the buffer, then SQLite's own file
/// structure in the rest of the space SQLite allocated (`szOsFile`).
#[repr(C)]
struct WalFile {
    /// Must come first: SQLite reads `pMethods` through a `sqlite3_file *`.
    base: ffi::sqlite3_file,
    /// Bytes written but not yet handed to the real file, which belong at
    /// `start`.
    buf: Vec<u8>,
    start: i64,
    /// Where the previous write ended (-1 before the first).
    next: i64,
    /// The last write was the header of a commit frame: the next one, its
    /// page, completes the transaction.
    commit_page_next: bool,
}

impl WalFile {
    /// SQLite's own file structure, placed right after ours.
    unsafe fn real(this: *mut WalFile) -> *mut ffi::sqlite3_file {
        unsafe {
            // SAFETY: `szOsFile` reserved room for it there; `WalFile`'s size
            // is a multiple of 8, as SQLite's structures expect.
            (this as *mut u8).add(size_of::<WalFile>()) as *mut ffi::sqlite3_file
        }
    }

    unsafe fn methods(this: *mut WalFile) -> &'static ffi::sqlite3_io_methods {
        unsafe {
            // SAFETY: set by the base VFS's `xOpen` to its static methods.
            &*(*WalFile::real(this)).pMethods
        }
    }

    /// Write `bytes` at `offset` in the real file.
    unsafe fn write_real(this: *mut WalFile, bytes: &[u8], offset: i64) -> c_int {
        unsafe {
            #[cfg(test)]
            tests::count_write(offset, bytes.len());
            match WalFile::methods(this).xWrite {
                Some(write) => write(
                    WalFile::real(this),
                    bytes.as_ptr() as *const c_void,
                    bytes.len() as c_int,
                    offset,
                ),
                None => ffi::SQLITE_IOERR_WRITE,
            }
        }
    }

    /// Hand the buffer to the real file; with `pad`, to the end of its
    /// last page (see the module doc).
    unsafe fn flush_padded(this: *mut WalFile, pad: bool) -> c_int {
        unsafe {
            let f = &mut *this;
            if f.buf.is_empty() {
                return ffi::SQLITE_OK;
            }
            if pad {
                let end = f.start as usize + f.buf.len();
                let short = end.next_multiple_of(PAGE) - end;
                f.buf.resize(f.buf.len() + short, 0);
            }
            let mut rc = ffi::SQLITE_OK;
            let mut offset = f.start;
            for chunk in f.buf.chunks(MAX_WRITE) {
                rc = WalFile::write_real(this, chunk, offset);
                if rc != ffi::SQLITE_OK {
                    break;
                }
                offset += chunk.len() as i64;
            }
            f.buf.clear();
            if rc != ffi::SQLITE_OK {
                // Whatever follows is written through until writes line up again.
                f.next = -1;
            }
            rc
        }
    }

    /// Hand the buffer to the real file.
    unsafe fn flush(this: *mut WalFile) -> c_int {
        unsafe { WalFile::flush_padded(this, false) }
    }
}

/// Whether a 24-byte frame header marks its frame as a commit: bytes 4..8
/// hold the database size after the commit, zero for other frames.
fn commits(header: &[u8]) -> bool {
    header.len() == 24 && header[4..8] != [0, 0, 0, 0]
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    unsafe {
        let Some(Some(base)) = BASE.get() else {
            return ffi::SQLITE_ERROR;
        };
        let Some(base_open) = (*base.0).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            // Not the WAL: SQLite's own file, at the start of the space.
            return base_open(base.0, name, file, flags, out_flags);
        }
        let this = file as *mut WalFile;
        (*this).base.pMethods = ptr::null();
        let real = WalFile::real(this);
        (*real).pMethods = ptr::null();
        let rc = base_open(base.0, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            if !(*real).pMethods.is_null()
                && let Some(close) = (*(*real).pMethods).xClose
            {
                close(real);
            }
            return rc;
        }
        ptr::write(
            this,
            WalFile {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                buf: Vec::new(),
                start: 0,
                next: -1,
                commit_page_next: false,
            },
        );
        ffi::SQLITE_OK
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    // Version 1: the WAL file is never mapped and holds no shared memory.
    iVersion: 1,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// Call the real file's method `$m`, after the buffer when `$flush`.
macro_rules! forward {
    ($file:expr, $m:ident, $flush:expr $(, $arg:expr)*) => {{
        let this = $file as *mut WalFile;
        if $flush {
            let rc = WalFile::flush(this);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        match WalFile::methods(this).$m {
            Some(m) => m(WalFile::real(this) $(, $arg)*),
            None => ffi::SQLITE_IOERR,
        }
    }};
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let this = file as *mut WalFile;
        let flushed = WalFile::flush(this);
        let closed = match WalFile::methods(this).xClose {
            Some(m) => m(WalFile::real(this)),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(ptr::addr_of_mut!((*this).buf));
        (*this).base.pMethods = ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    unsafe {
        let this = file as *mut WalFile;
        let bytes = std::slice::from_raw_parts(data as *const u8, amount.max(0) as usize);
        let completes = (*this).commit_page_next;
        (*this).commit_page_next = commits(bytes);
        if offset != (*this).next {
            // Not a continuation: what is buffered goes first, then this.
            let rc = WalFile::flush(this);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let rc = if offset == 0 && bytes.len() == WAL_HEADER {
                // A new WAL's header: no frame is valid yet, so the rest
                // of the page goes too (see the module doc).
                let mut page = [0u8; PAGE];
                page[..WAL_HEADER].copy_from_slice(bytes);
                WalFile::write_real(this, &page, 0)
            } else {
                WalFile::write_real(this, bytes, offset)
            };
            (*this).next = if rc == ffi::SQLITE_OK {
                offset + i64::from(amount)
            } else {
                -1
            };
            return rc;
        }
        let f = &mut *this;
        if f.buf.is_empty() {
            f.start = offset;
        }
        f.buf.extend_from_slice(bytes);
        f.next = offset + i64::from(amount);
        if completes || f.buf.len() >= FLUSH_AT {
            // The commit frame's page ends the transaction: nothing valid
            // follows it.
            return WalFile::flush_padded(this, completes);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: ffi::sqlite3_int64,
) -> c_int {
    unsafe { forward!(file, xRead, true, data, amount, offset) }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: ffi::sqlite3_int64) -> c_int {
    unsafe {
        let rc = forward!(file, xTruncate, true, size);
        (*(file as *mut WalFile)).next = -1;
        rc
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe { forward!(file, xSync, true, flags) }
}

unsafe extern "C" fn file_size(
    file: *mut ffi::sqlite3_file,
    size: *mut ffi::sqlite3_int64,
) -> c_int {
    unsafe { forward!(file, xFileSize, true, size) }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { forward!(file, xLock, false, level) }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    unsafe { forward!(file, xUnlock, false, level) }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    unsafe { forward!(file, xCheckReservedLock, false, out) }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    unsafe { forward!(file, xFileControl, true, op, arg) }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe { forward!(file, xSectorSize, false) }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe { forward!(file, xDeviceCharacteristics, false) }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::Path;

    use rusqlite::{Connection, OpenFlags};

    thread_local! {
        static WRITES: RefCell<Vec<(i64, usize)>> = const { RefCell::new(Vec::new()) };
    }

    /// Notes a write that reaches SQLite's own WAL file on this thread:
    /// where, and how long.
    pub(super) fn count_write(offset: i64, len: usize) {
        WRITES.with(|w| w.borrow_mut().push((offset, len)));
    }

    /// The writes noted on this thread after the first `from`.
    fn writes_since(from: usize) -> Vec<(i64, usize)> {
        WRITES.with(|w| w.borrow()[from..].to_vec())
    }

    fn writes() -> usize {
        WRITES.with(|w| w.borrow().len())
    }

    fn writer(path: &Path) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let c = Connection::open_with_flags_and_vfs(path, flags, super::name().unwrap()).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "synchronous", "NORMAL").unwrap();
        c.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        c.execute_batch(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE n (id INTEGER PRIMARY KEY, c INTEGER NOT NULL);
             INSERT INTO n VALUES (1, 0);",
        )
        .unwrap();
        c
    }

    fn count(c: &Connection) -> (i64, i64) {
        c.query_row(
            "SELECT (SELECT count(*) FROM t), (SELECT c FROM n)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }

    /// What a crash that spares the page cache leaves: the files as they
    /// are, opened by a fresh connection that recovers the WAL.
    fn after_crash(dir: &Path) -> Connection {
        let copy = dir.join("copy");
        std::fs::create_dir(&copy).unwrap();
        for name in ["t.db", "t.db-wal"] {
            std::fs::copy(dir.join(name), copy.join(name)).unwrap();
        }
        Connection::open(copy.join("t.db")).unwrap()
    }

    #[test]
    fn a_commits_frames_reach_the_file_in_one_write_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path);
        let reader = Connection::open(&path).unwrap();
        let body = "x".repeat(3_000);
        let wal_len = || {
            std::fs::metadata(dir.path().join("t.db-wal"))
                .unwrap()
                .len() as usize
        };
        for round in 1..=20i64 {
            let before = writes();
            let len_before = wal_len();
            let tx = w.unchecked_transaction().unwrap();
            for i in 0..40 {
                // Keys far apart: one page each, as a batch of messages in
                // many conversations.
                let k = round + i * 1_000_000;
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (k, &body))
                    .unwrap();
                tx.execute("UPDATE n SET c = c + 1", []).unwrap();
            }
            tx.commit().unwrap();
            // Another connection sees the whole transaction at once.
            assert_eq!(count(&reader), (round * 40, round * 40));
            if round > 1 {
                // (The first round writes the WAL's header on its own.)
                let ws = writes_since(before);
                for w in ws.windows(2) {
                    assert_eq!(w[0].0 + w[0].1 as i64, w[1].0, "round {round}: in one run");
                }
                let start = ws[0].0 as usize;
                let (last, len) = ws[ws.len() - 1];
                let end = last as usize + len;
                // It starts right after the previous transaction's frames
                // (in the page that transaction padded), and ends a page.
                assert_eq!((start - 32) % 4120, 0, "round {round}: starts at a frame");
                assert!(start < len_before, "round {round}");
                assert_eq!(end % super::PAGE, 0, "round {round}: ends a page");
                assert_eq!(wal_len(), end);
                let frames = (end - start) / 4120;
                assert!(frames > 40, "round {round}: {frames} frames");
                assert!(end - start - frames * 4120 < super::PAGE, "round {round}");
                let pieces = (end - start).div_ceil(super::MAX_WRITE);
                assert_eq!(ws.len(), pieces, "round {round}: {frames} frames");
            }
        }
        assert_eq!(count(&after_crash(dir.path())), (800, 800));
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_its_frames_is_whole_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path);
        // A tiny page cache: the transaction spills to the WAL, then
        // changes spilled pages again, which SQLite overwrites in place and
        // whose checksums it rewrites at the commit.
        w.pragma_update(None, "cache_size", 8).unwrap();
        let body = "y".repeat(700);
        for round in 1..=3i64 {
            let tx = w.unchecked_transaction().unwrap();
            for i in 0..3_000 {
                tx.execute("INSERT INTO t VALUES (?1, ?2)", (round * 10_000 + i, &body))
                    .unwrap();
                tx.execute("UPDATE n SET c = c + 1", []).unwrap();
            }
            tx.commit().unwrap();
        }
        let reader = Connection::open(&path).unwrap();
        assert_eq!(count(&reader), (9_000, 9_000));
        let copy = after_crash(dir.path());
        assert_eq!(count(&copy), (9_000, 9_000));
        let check: String = copy
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    /// Bytes this thread has had read from storage so far.
    #[cfg(target_os = "linux")]
    fn read_bytes() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("read_bytes: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn commits_over_a_restarted_wal_whose_pages_left_memory_read_nothing() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let w = writer(&path);
        let body = "z".repeat(3_000);
        for k in 0..300 {
            w.execute("INSERT INTO t VALUES (?1, ?2)", (k, &body))
                .unwrap();
        }
        // Every frame copied back: the next transaction starts the WAL
        // over, writing over the old frames.
        let (log, done): (i64, i64) = w
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert!(log >= 300 && done == log, "{done} of {log} frames copied");
        // The old frames' pages leave memory (once on disk, they may).
        let wal = std::fs::File::open(dir.path().join("t.db-wal")).unwrap();
        wal.sync_all().unwrap();
        // SAFETY: a system call on an open descriptor; no memory is passed.
        let err = unsafe { libc::posix_fadvise(wal.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(err, 0);

        let before = read_bytes();
        let w0 = writes();
        for k in 0..40 {
            // (A change: an identical row leaves its page untouched.)
            let v = format!("{k}{body}");
            w.execute("UPDATE t SET v = ?2 WHERE k = ?1", (k * 7, &v))
                .unwrap();
        }
        let read = read_bytes() - before;
        assert_eq!(read, 0, "bytes read for 40 commits");
        // They wrote over the old frames, from the start.
        assert_eq!(writes_since(w0)[0], (0, super::PAGE), "the new header");
        assert_eq!(count(&after_crash(dir.path())).0, 300);
    }
}
