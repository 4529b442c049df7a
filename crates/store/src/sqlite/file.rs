//! The store is the file it opened, and its write-ahead log belongs to it.
//!
//! SQLite knows a database only by its path. Two things then go wrong
//! without a word:
//!
//! * the file is deleted or replaced under a running server: the server
//!   keeps writing into the inode it holds open, which nobody will ever
//!   read again ([`Opened`] notices: the path no longer names that inode);
//! * a backup is copied over a file whose `-wal` is still there (a crash
//!   left it): the next open replays that log, written on top of another
//!   version of the file, onto the backup and corrupts it.
//!
//! For the second, every checkpoint (the only time the file itself is
//! written in WAL mode) goes through [`Checkpointer`], which records in
//! `<store>-walbase` the state of the file the log now builds on (its
//! size, modification time and inode). A log is replayed only onto that
//! state; [`check_log`] refuses to open a file whose log was written for
//! another. A checkpoint cut short by a crash leaves the record marked
//! "pending": the file may then be in any state the checkpoint could have
//! left, all of them consistent with the log, so it is accepted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;

/// `<store>-wal`, SQLite's log next to the store.
pub fn wal_path(path: &Path) -> PathBuf {
    sibling(path, "-wal")
}

/// `<store>-shm`, SQLite's index of the log.
pub fn shm_path(path: &Path) -> PathBuf {
    sibling(path, "-shm")
}

/// `<store>-walbase`, the state of the file the log builds on.
fn base_path(path: &Path) -> PathBuf {
    sibling(path, "-walbase")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Which file a path names: its device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    dev: u64,
    ino: u64,
}

impl Opened {
    /// The file `path` names now.
    pub fn of(path: &Path) -> std::io::Result<Opened> {
        let meta = fs::metadata(path)?;
        Ok(Opened {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// Why `path` is no longer the file that was opened, if it is not.
    pub fn changed(&self, path: &Path) -> Option<String> {
        match Opened::of(path) {
            Ok(now) if now == *self => None,
            Ok(_) => Some(format!(
                "the store file {} was replaced by another file while the server had it open; \
                 writes are refused (restart the server to serve the new file)",
                path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
                "the store file {} was deleted while the server had it open; writes are refused \
                 (restore it and restart the server)",
                path.display()
            )),
            Err(e) => Some(format!("the store file {}: {e}", path.display())),
        }
    }
}

/// The state of the file a log builds on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileState {
    len: u64,
    mtime_ns: i128,
    dev: u64,
    ino: u64,
}

impl FileState {
    fn of(path: &Path) -> std::io::Result<FileState> {
        let meta = fs::metadata(path)?;
        Ok(FileState {
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    fn text(&self, pending: bool) -> String {
        format!(
            "trading-pro walbase 1 {} {} {} {} {}\n",
            if pending { "pending" } else { "settled" },
            self.len,
            self.mtime_ns,
            self.dev,
            self.ino
        )
    }

    /// The record's state, and whether a checkpoint was under way.
    fn parse(text: &str) -> Option<(FileState, bool)> {
        let mut words = text.split_whitespace();
        if (words.next()?, words.next()?, words.next()?) != ("trading-pro", "walbase", "1") {
            return None;
        }
        let pending = match words.next()? {
            "pending" => true,
            "settled" => false,
            _ => return None,
        };
        let state = FileState {
            len: words.next()?.parse().ok()?,
            mtime_ns: words.next()?.parse().ok()?,
            dev: words.next()?.parse().ok()?,
            ino: words.next()?.parse().ok()?,
        };
        Some((state, pending))
    }
}

/// Writes the record whole or not at all: a new file, synced, renamed
/// over the old one.
fn record(path: &Path, state: FileState, pending: bool) -> std::io::Result<()> {
    let target = base_path(path);
    let temporary = sibling(path, "-walbase.new");
    let mut file = fs::File::create(&temporary)?;
    file.write_all(state.text(pending).as_bytes())?;
    file.sync_all()?;
    fs::rename(&temporary, &target)
}

/// Refuses a store whose log (`-wal`, not empty) was written on top of
/// another version of the file than the one at `path` now.
pub fn check_log(path: &Path) -> Result<(), String> {
    let log_len = fs::metadata(wal_path(path)).map_or(0, |m| m.len());
    if log_len == 0 {
        return Ok(());
    }
    if !path.exists() {
        // SQLite would apply it to the new, empty file made here.
        return Err(format!(
            "store {}: there is a write-ahead log {} ({log_len} bytes) but no store file: the \
             file was deleted or moved after a crash. Put it back, or remove {}, {} and {} to \
             start a new store",
            path.display(),
            wal_path(path).display(),
            wal_path(path).display(),
            shm_path(path).display(),
            base_path(path).display()
        ));
    }
    // A store written before the record existed, or by another program:
    // nothing to check against.
    let Ok(text) = fs::read_to_string(base_path(path)) else {
        return Ok(());
    };
    let Some((base, pending)) = FileState::parse(&text) else {
        return Err(format!(
            "store {}: {} is not a record this server wrote; remove it only together with \
             the log {}",
            path.display(),
            base_path(path).display(),
            wal_path(path).display()
        ));
    };
    let now = FileState::of(path).map_err(|e| format!("store {}: {e}", path.display()))?;
    if pending || now == base {
        return Ok(());
    }
    Err(format!(
        "store {}: its write-ahead log {} ({log_len} bytes) was written on top of another \
         version of the file (the file changed since the log's last checkpoint: restored \
         from a backup or copied over?). Opening it would apply that log to this file and \
         corrupt it. Put back the file that goes with the log, or move {} and {} away to \
         open the file as it is (whatever the log held is then lost)",
        path.display(),
        wal_path(path).display(),
        wal_path(path).display(),
        shm_path(path).display()
    ))
}

/// Runs every checkpoint of one store in this process, one at a time,
/// keeping `<store>-walbase` true (see the module's comment).
#[derive(Clone)]
pub struct Checkpointer {
    path: PathBuf,
    /// The state last recorded; one checkpoint at a time.
    last: Arc<Mutex<Option<FileState>>>,
}

/// What a checkpoint did, as SQLite reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpointed {
    /// It could not finish: a reader or writer was in its way.
    pub busy: bool,
    /// Frames in the log, and those now copied into the file.
    pub log: i64,
    pub copied: i64,
}

impl Checkpointer {
    pub fn new(path: &Path) -> Checkpointer {
        Checkpointer {
            path: path.to_path_buf(),
            last: Arc::default(),
        }
    }

    /// Records the file as it is now, with an empty log: at open, after
    /// the log was checked, and before anything is written.
    pub fn settle(&self) -> Result<(), String> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = FileState::of(&self.path).map_err(|e| self.failed(e))?;
        if *last != Some(now) {
            record(&self.path, now, false).map_err(|e| self.failed(e))?;
            *last = Some(now);
        }
        Ok(())
    }

    /// A checkpoint on `conn` (`PASSIVE`, `RESTART` or `TRUNCATE`): the
    /// record says "pending" while the file may change, and the file's new
    /// state once it is done.
    pub fn run(&self, conn: &Connection, mode: &str) -> Result<Checkpointed, String> {
        // Never over a file another program wrote: that would record its
        // state as ours and hide what happened.
        if let Some(why) = self.overwritten() {
            return Err(why);
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let before = FileState::of(&self.path).map_err(|e| self.failed(e))?;
        record(&self.path, before, true).map_err(|e| self.failed(e))?;
        *last = None;
        let done = conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok(Checkpointed {
                    busy: r.get::<_, i64>(0)? != 0,
                    log: r.get(1)?,
                    copied: r.get(2)?,
                })
            })
            .map_err(|e| format!("store {}: checkpoint: {e}", self.path.display()));
        // Whatever the checkpoint did, the file is now in the state the
        // log builds on.
        let after = FileState::of(&self.path).map_err(|e| self.failed(e))?;
        record(&self.path, after, false).map_err(|e| self.failed(e))?;
        *last = Some(after);
        done
    }

    /// Why the file is not what the last checkpoint left, if it is not:
    /// another program wrote it (a backup copied over it). Checkpoints of
    /// other processes (an import) record what they did, so the record is
    /// read before and after looking at the file; a checkpoint meanwhile
    /// makes the look inconclusive, and it is left for the next one.
    pub fn overwritten(&self) -> Option<String> {
        let read = || fs::read_to_string(base_path(&self.path)).ok();
        let before = read()?;
        let now = FileState::of(&self.path).ok()?;
        if read()? != before {
            return None;
        }
        let (base, pending) = FileState::parse(&before)?;
        (!pending && (base.len, base.mtime_ns) != (now.len, now.mtime_ns)).then(|| {
            format!(
                "the store file {} was written by another program while the server had it \
                 open (a backup copied over it?); writes are refused (restart the server to \
                 serve the file as it is now)",
                self.path.display()
            )
        })
    }

    /// Whether the store's directory takes a small write now; the class of
    /// its refusal (full, read-only) if it does not.
    pub fn probe_write(&self) -> Option<trading_market::source::Reason> {
        use std::io::ErrorKind;
        use trading_market::source::Reason;
        let probe = sibling(&self.path, "-probe");
        let written = fs::File::create(&probe).and_then(|mut f| {
            f.write_all(&[0; 4096])?;
            f.sync_all()
        });
        let _ = fs::remove_file(&probe);
        match written {
            Err(e) if e.kind() == ErrorKind::StorageFull => Some(Reason::DiskFull),
            Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => Some(Reason::ReadOnly),
            Err(e) if e.kind() == ErrorKind::PermissionDenied => Some(Reason::ReadOnly),
            _ => None,
        }
    }

    /// Removes the record while the log is empty or gone (a clean stop,
    /// an open): there is nothing it would vouch for.
    pub fn forget(&self) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if self.log_len() == 0 {
            let _ = fs::remove_file(base_path(&self.path));
            *last = None;
        }
    }

    /// The log's size in bytes (0 when there is none).
    pub fn log_len(&self) -> u64 {
        fs::metadata(wal_path(&self.path)).map_or(0, |m| m.len())
    }

    fn failed(&self, e: std::io::Error) -> String {
        format!("store {}: {e}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_back_what_was_written() {
        let state = FileState {
            len: 16384,
            mtime_ns: 1_700_000_000_123_456_789,
            dev: 2049,
            ino: 77,
        };
        for pending in [true, false] {
            assert_eq!(
                FileState::parse(&state.text(pending)),
                Some((state, pending))
            );
        }
        assert_eq!(
            FileState::parse("trading-pro walbase 2 settled 1 2 3 4"),
            None
        );
        assert_eq!(FileState::parse("garbage"), None);
    }
}
