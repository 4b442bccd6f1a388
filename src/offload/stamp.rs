//! A file's identity and content stamp. If any part differs between the moment an upload began
//! and the moment before removal, the file may not be what was uploaded, and it is kept.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Device and inode say which file; size, mtime and ctime (nanoseconds) say whether it changed.
/// ctime catches what mtime can be made to hide (`touch -d`, `utimensat`, a rename over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The same file with the same size and mtime: all but ctime, which renaming a file
    /// changes.
    pub fn same_but_ctime(&self, other: &Stamp) -> bool {
        (self.dev, self.ino, self.size, self.mtime)
            == (other.dev, other.ino, other.size, other.mtime)
    }

    /// How long ago the file last changed (content or metadata); zero for a time in the future.
    pub fn unchanged_for(&self, now: SystemTime) -> Duration {
        let latest = self.mtime.max(self.ctime);
        let at = u64::try_from(latest.0)
            .map(|secs| UNIX_EPOCH + Duration::new(secs, latest.1.clamp(0, 999_999_999) as u32))
            .unwrap_or(UNIX_EPOCH);
        now.duration_since(at).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn appending_or_touching_changes_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let before = Stamp::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(before, Stamp::of(&std::fs::metadata(&path).unwrap()));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"two")
            .unwrap();
        let appended = Stamp::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(before, appended);
        assert_eq!((before.dev, before.ino), (appended.dev, appended.ino));
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(UNIX_EPOCH + Duration::from_secs(1))
            .unwrap();
        let touched = Stamp::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(appended, touched, "mtime set back");
        assert!(
            touched.unchanged_for(SystemTime::now()) < Duration::from_secs(60),
            "ctime still says it just changed"
        );
    }
}
