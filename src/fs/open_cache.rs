//! Recent lookups beneath a root, with their open handles: nginx's `open_file_cache`.
//!
//! A file found is answered from memory (no `openat2`, no `fstat`), and a miss remembered is a
//! redirect without a system call. What is remembered came from a lookup beneath the root, and
//! is trusted for `valid` after that lookup, then looked up again. So within that window:
//! - a file deleted (by `spillway offload`, say) is still served, from the handle opened before
//!   its deletion: the bytes it had, never anything else;
//! - a file replaced (renamed over) is served as it was; one changed in place is read as it is
//!   now, with the length it had;
//! - a file created where there was none is redirected to the bucket.
//!
//! The cache holds at most `entries` lookups, each found file one descriptor; quick_cache's
//! S3-FIFO eviction keeps a burst of one-off paths from pushing out the ones asked again.

use std::fmt;
use std::time::{Duration, Instant};

use super::lookup::{Lookup, LookupError};

/// `open_file_cache:`: how many lookups a root remembers, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub entries: usize,
    pub valid: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            entries: 10_000,
            valid: Duration::from_secs(1),
        }
    }
}

/// Longer paths are looked up every time: remembering misses of any length would let one
/// client fill memory with 8 KiB request paths.
const LONGEST_REMEMBERED: usize = 512;

pub struct OpenFileCache {
    entries: quick_cache::sync::Cache<Box<str>, Remembered>,
    valid: Duration,
}

#[derive(Clone)]
struct Remembered {
    found: Lookup,
    at: Instant,
}

impl OpenFileCache {
    /// A cache with these settings; none when either is zero.
    pub fn new(settings: CacheSettings) -> Option<OpenFileCache> {
        let entries = settings.entries.min(descriptor_budget());
        (entries > 0 && !settings.valid.is_zero()).then(|| OpenFileCache {
            entries: quick_cache::sync::Cache::new(entries),
            valid: settings.valid,
        })
    }

    /// What a lookup at `relative` found, if that was less than `valid` before `now`.
    pub fn get(&self, relative: &str, now: Instant) -> Option<Lookup> {
        let remembered = self.entries.get(relative)?;
        (now.saturating_duration_since(remembered.at) < self.valid).then_some(remembered.found)
    }

    /// Remembers what a lookup at `relative`, made at `now`, found. Errors are not remembered:
    /// a moment without descriptors or a denied permission is asked again.
    pub fn remember(&self, relative: &str, found: &Result<Lookup, LookupError>, now: Instant) {
        let Ok(found) = found else { return };
        if relative.len() > LONGEST_REMEMBERED {
            return;
        }
        let remembered = Remembered {
            found: found.clone(),
            at: now,
        };
        self.entries.insert(relative.into(), remembered);
    }

    /// How many lookups are remembered.
    pub fn remembered(&self) -> usize {
        self.entries.len()
    }
}

/// A quarter of the descriptors the process may open (the hard limit: the server raises its
/// soft limit to it): each cached file holds one, and connections, upstreams and logs need
/// the rest, whatever `entries` says.
fn descriptor_budget() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum;
    limit.map_or(usize::MAX, |n| usize::try_from(n / 4).unwrap_or(usize::MAX))
}

impl fmt::Debug for OpenFileCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenFileCache")
            .field("entries", &self.entries.len())
            .field("valid", &self.valid)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    use super::*;
    use crate::fs::docroot::Docroot;

    const VALID: Duration = Duration::from_secs(1);

    fn settings(entries: usize) -> CacheSettings {
        CacheSettings {
            entries,
            valid: VALID,
        }
    }

    /// `outer/www` with `a.txt` and `b.txt`, and `outer/secret.txt` outside the root.
    fn root(entries: usize) -> (tempfile::TempDir, Docroot) {
        let outer = tempfile::tempdir().unwrap();
        let www = outer.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("a.txt"), "a").unwrap();
        std::fs::write(www.join("b.txt"), "bb").unwrap();
        std::fs::write(outer.path().join("secret.txt"), "secret").unwrap();
        let root = Docroot::open(&www, true, settings(entries)).unwrap();
        (outer, root)
    }

    /// What the server would serve at `path`, `after` the first lookup's time `t0`: from the
    /// caches, else (as `Warm` does) after a blocking lookup.
    fn served(root: &Docroot, path: &str, t0: Instant, after: Duration) -> String {
        let now = t0 + after;
        let found = root.lookup_cached_at(path, now).or_else(|| {
            root.lookup_and_remember_at(path, now);
            root.lookup_cached_at(path, now)
        });
        match found {
            Some(Ok(Lookup::File(file, meta))) => {
                // At an offset, as the server reads: the handle is shared.
                let mut body = vec![0; 64];
                let n = file.read_at(&mut body, 0).unwrap();
                assert_eq!(n as u64, meta.len(), "{path}: its own metadata");
                String::from_utf8(body[..n].to_vec()).unwrap()
            }
            Some(Ok(Lookup::Missing)) => "missing".into(),
            Some(Ok(Lookup::Refused)) => "refused".into(),
            Some(Ok(Lookup::Directory)) => "directory".into(),
            Some(Err(e)) => format!("error: {e}"),
            None => "not cached by the kernel".into(),
        }
    }

    fn www(outer: &tempfile::TempDir) -> std::path::PathBuf {
        outer.path().join("www")
    }

    #[test]
    fn a_deleted_file_is_missing_once_its_window_has_passed() {
        let (outer, root) = root(100);
        let t0 = Instant::now();
        assert_eq!(served(&root, "a.txt", t0, Duration::ZERO), "a");
        std::fs::remove_file(www(&outer).join("a.txt")).unwrap();
        // Within the window, the handle opened before the deletion: the bytes the file had.
        assert_eq!(served(&root, "a.txt", t0, VALID / 2), "a");
        assert_eq!(served(&root, "a.txt", t0, VALID), "missing");
    }

    #[test]
    fn a_replaced_file_is_new_once_its_window_has_passed() {
        let (outer, root) = root(100);
        let t0 = Instant::now();
        assert_eq!(served(&root, "a.txt", t0, Duration::ZERO), "a");
        let new = outer.path().join("new.txt");
        std::fs::write(&new, "replaced").unwrap();
        std::fs::rename(&new, www(&outer).join("a.txt")).unwrap();
        assert_eq!(served(&root, "a.txt", t0, VALID / 2), "a");
        assert_eq!(served(&root, "a.txt", t0, VALID), "replaced");
    }

    #[test]
    fn a_remembered_miss_is_found_once_its_window_has_passed() {
        let (outer, root) = root(100);
        let t0 = Instant::now();
        assert_eq!(served(&root, "new.txt", t0, Duration::ZERO), "missing");
        std::fs::write(www(&outer).join("new.txt"), "new").unwrap();
        assert_eq!(served(&root, "new.txt", t0, VALID / 2), "missing");
        assert_eq!(served(&root, "new.txt", t0, VALID), "new");
    }

    #[test]
    fn nothing_outside_the_root_is_ever_served() {
        let (outer, root) = root(100);
        let www = www(&outer);
        symlink("a.txt", www.join("link")).unwrap();
        symlink(outer.path().join("secret.txt"), www.join("absolute")).unwrap();
        symlink("../secret.txt", www.join("relative")).unwrap();
        let t0 = Instant::now();
        for path in ["absolute", "relative", "../secret.txt"] {
            for after in [Duration::ZERO, VALID / 2, VALID] {
                assert_eq!(served(&root, path, t0, after), "refused", "{path}");
            }
        }
        // A link swapped to lead outside: the file it led to within the window, refused after.
        assert_eq!(served(&root, "link", t0, Duration::ZERO), "a");
        std::fs::remove_file(www.join("link")).unwrap();
        symlink("../secret.txt", www.join("link")).unwrap();
        assert_eq!(served(&root, "link", t0, VALID / 2), "a");
        assert_eq!(served(&root, "link", t0, VALID), "refused");
        // A remembered miss that becomes a link outside.
        assert_eq!(served(&root, "later", t0, Duration::ZERO), "missing");
        symlink(outer.path().join("secret.txt"), www.join("later")).unwrap();
        assert_eq!(served(&root, "later", t0, VALID), "refused");
    }

    #[test]
    fn each_root_remembers_only_its_own_lookups() {
        let (outer, a) = root(100);
        let other = outer.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        let b = Docroot::open(&other, true, settings(100)).unwrap();
        let t0 = Instant::now();
        assert_eq!(served(&a, "a.txt", t0, Duration::ZERO), "a");
        assert_eq!(served(&b, "a.txt", t0, Duration::ZERO), "missing");
    }

    /// Descriptors this process holds open on files beneath `dir`.
    fn open_beneath(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .count()
    }

    #[test]
    fn entries_and_descriptors_stay_bounded() {
        let (outer, root) = root(64);
        let www = www(&outer);
        for i in 0..500 {
            std::fs::write(www.join(format!("{i}.txt")), "x").unwrap();
        }
        let t0 = Instant::now();
        for i in 0..500 {
            assert_eq!(served(&root, &format!("{i}.txt"), t0, Duration::ZERO), "x");
            assert_eq!(
                served(&root, &format!("missing-{i}"), t0, Duration::ZERO),
                "missing"
            );
        }
        assert!(root.cached_entries() > 0, "it remembers");
        assert!(root.cached_entries() <= 64, "{}", root.cached_entries());
        let open = open_beneath(&www.canonicalize().unwrap());
        assert!(open <= 64 + 1, "{open} descriptors open beneath the root");
    }

    #[test]
    fn long_paths_and_errors_are_not_remembered() {
        let (_outer, root) = root(100);
        let t0 = Instant::now();
        root.lookup_and_remember_at(&"x".repeat(LONGEST_REMEMBERED), t0);
        assert_eq!(root.cached_entries(), 1);
        root.lookup_and_remember_at(&"y".repeat(LONGEST_REMEMBERED + 1), t0);
        assert_eq!(root.cached_entries(), 1);
        let cache = OpenFileCache::new(settings(100)).unwrap();
        cache.remember("a", &Err(LookupError::NoDescriptors), t0);
        assert_eq!(cache.remembered(), 0);
        assert!(cache.get("a", t0).is_none());
    }

    #[test]
    fn zero_entries_or_zero_validity_is_no_cache() {
        let off = |entries, valid| OpenFileCache::new(CacheSettings { entries, valid }).is_none();
        assert!(off(0, VALID));
        assert!(off(100, Duration::ZERO));
        assert!(!off(100, VALID));
    }
}
