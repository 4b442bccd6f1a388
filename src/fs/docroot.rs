//! Opening files beneath a document root, with containment enforced by the kernel.
//!
//! The root is opened once at startup; every request opens its path relative to that directory
//! handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so neither `..` nor a symlink
//! can lead outside it, and there is no window between a check and the open. Kernels without
//! `openat2` (before 5.6) get a canonicalising check instead, announced in the log at startup.

use std::convert::Infallible;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::lookup::{Lookup, LookupError};
use super::open_cache::{CacheSettings, OpenFileCache};

/// How much a lookup may wait for the disk. `decide` is generic over it, so what a lookup may
/// leave undone is part of the type: nothing under [`MayBlock`], a [`Warm`] under [`CachedOnly`].
pub trait Io {
    /// What is left to do when the lookup could not finish without the disk.
    type Pending;

    fn lookup(
        &self,
        root: &Arc<Docroot>,
        relative: &str,
    ) -> Result<Result<Lookup, LookupError>, Self::Pending>;
}

/// Whatever it takes. For the blocking pool, tools, and kernels without `RESOLVE_CACHED`.
#[derive(Debug, Clone, Copy)]
pub struct MayBlock;

/// Only what the root's open-file cache or the kernel's dentry cache (`RESOLVE_CACHED`) can
/// answer; anything else is left as a [`Warm`] at once. For the event loop.
#[derive(Debug, Clone, Copy)]
pub struct CachedOnly;

impl Io for MayBlock {
    type Pending = Infallible;

    fn lookup(
        &self,
        root: &Arc<Docroot>,
        relative: &str,
    ) -> Result<Result<Lookup, LookupError>, Infallible> {
        Ok(root.lookup(relative))
    }
}

impl Io for CachedOnly {
    type Pending = Warm;

    fn lookup(
        &self,
        root: &Arc<Docroot>,
        relative: &str,
    ) -> Result<Result<Lookup, LookupError>, Warm> {
        root.lookup_cached(relative).ok_or_else(|| Warm {
            docroot: Arc::clone(root),
            relative: relative.to_owned(),
        })
    }
}

/// A path to look up once with blocking I/O, so that the next cached-only lookup finds it.
#[derive(Debug)]
pub struct Warm {
    docroot: Arc<Docroot>,
    relative: String,
}

impl Warm {
    /// Blocking: run it on the blocking pool. What it finds is remembered by the open-file
    /// cache, and the kernel's dentry cache keeps the path in any case.
    pub fn run(&self) {
        self.docroot
            .lookup_and_remember_at(&self.relative, Instant::now());
    }
}

#[derive(Debug)]
enum Containment {
    /// `openat2` with `RESOLVE_BENEATH`: the kernel refuses to leave `dir`.
    Kernel,
    /// Old kernel: join, canonicalise, and check the prefix.
    Canonical(PathBuf),
}

#[derive(Debug)]
pub struct Docroot {
    path: PathBuf,
    dir: OwnedFd,
    containment: Containment,
    /// `openat2` resolve flags: always beneath the root; with `symlinks: deny`, no symlinks.
    resolve: ResolveFlags,
    /// Whether the kernel knows `RESOLVE_CACHED` (5.12+).
    cached_lookups: bool,
    /// What the server's recent lookups found. Only [`CachedOnly`] reads it: `offload` and
    /// `explain` always look at the disk.
    cache: Option<OpenFileCache>,
}

impl Docroot {
    /// Opens `path` as a document root. It must be a directory. Symlinks that stay beneath the
    /// root are followed unless `follow_symlinks` is false.
    pub fn open(path: &Path, follow_symlinks: bool, cache: CacheSettings) -> io::Result<Docroot> {
        let dir = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let canonical = path.canonicalize()?;
        let containment = match openat2(&dir, ".", ResolveFlags::empty()) {
            Err(Errno::NOSYS) => {
                tracing::warn!(
                    root = %canonical.display(),
                    "openat2 is not available on this kernel: containment falls back to a canonicalising check"
                );
                Containment::Canonical(canonical.clone())
            }
            _ => Containment::Kernel,
        };
        let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        if !follow_symlinks {
            resolve |= ResolveFlags::NO_SYMLINKS;
        }
        let cached_lookups = matches!(containment, Containment::Kernel)
            && !matches!(
                openat2(&dir, ".", resolve | ResolveFlags::CACHED),
                Err(Errno::INVAL)
            );
        Ok(Docroot {
            path: canonical,
            dir,
            containment,
            resolve,
            cached_lookups,
            cache: OpenFileCache::new(cache),
        })
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the kernel enforces containment (for `spillway check` and the startup log).
    pub fn kernel_contained(&self) -> bool {
        matches!(self.containment, Containment::Kernel)
    }

    /// Looks up a canonical relative path (see `core::path::decode_relative`), waiting for the
    /// disk if need be. `""` is the root.
    pub fn lookup(&self, relative: &str) -> Result<Lookup, LookupError> {
        let relative = if relative.is_empty() { "." } else { relative };
        let opened = match &self.containment {
            Containment::Kernel => match openat2(&self.dir, relative, self.resolve) {
                Err(Errno::XDEV) if self.follows_symlinks() => self.open_through_link(relative),
                opened => opened,
            },
            Containment::Canonical(root) => open_checked(
                root,
                relative,
                self.resolve.contains(ResolveFlags::NO_SYMLINKS),
            ),
        };
        classify(opened)
    }

    fn follows_symlinks(&self) -> bool {
        !self.resolve.contains(ResolveFlags::NO_SYMLINKS)
    }

    /// A path `RESOLVE_BENEATH` refused (`EXDEV`) because a symlink on it left the root, or is
    /// absolute: it refuses `/srv/www/img/a.png` even inside `/srv/www`, which nginx serves.
    /// Such a path is resolved as the system would, to an `O_PATH` handle (which opens
    /// nothing, so no device is touched), and is kept only if the file that handle names lies
    /// beneath the root's real path. That is judged from the handle itself, so a link swapped
    /// between the resolution and the check changes nothing; the file is then opened through
    /// the same handle.
    fn open_through_link(&self, relative: &str) -> Result<OwnedFd, Errno> {
        if relative.starts_with('/') {
            return Err(Errno::XDEV);
        }
        let resolved = rustix::fs::openat2(
            &self.dir,
            relative,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_MAGICLINKS,
        )?;
        let handle = format!("/proc/self/fd/{}", resolved.as_raw_fd());
        let target = std::fs::read_link(&handle).map_err(|_| Errno::XDEV)?;
        if !target.starts_with(&self.path) {
            return Err(Errno::XDEV);
        }
        rustix::fs::open(handle.as_str(), open_flags(), Mode::empty())
    }

    /// The same lookup from the open-file cache, else from the dentry cache only; `None` when
    /// it would need the disk. Kernels without `RESOLVE_CACHED` always wait.
    pub fn lookup_cached(&self, relative: &str) -> Option<Result<Lookup, LookupError>> {
        self.lookup_cached_at(relative, Instant::now())
    }

    /// [`Docroot::lookup_cached`] at `now`, which tests move forward.
    pub(crate) fn lookup_cached_at(
        &self,
        relative: &str,
        now: Instant,
    ) -> Option<Result<Lookup, LookupError>> {
        if let Some(found) = self.cache.as_ref().and_then(|c| c.get(relative, now)) {
            return Some(Ok(found));
        }
        let found = if self.cached_lookups {
            let path = if relative.is_empty() { "." } else { relative };
            match openat2(&self.dir, path, self.resolve | ResolveFlags::CACHED) {
                // A link that leaves the root, or an absolute one: the blocking lookup decides.
                Err(Errno::AGAIN) => return None,
                Err(Errno::XDEV) if self.follows_symlinks() => return None,
                opened => classify(opened),
            }
        } else {
            self.lookup(relative)
        };
        if let Some(cache) = &self.cache {
            cache.remember(relative, &found, now);
        }
        Some(found)
    }

    /// A blocking lookup made at `now`, whose result the open-file cache remembers.
    pub(crate) fn lookup_and_remember_at(&self, relative: &str, now: Instant) {
        let found = self.lookup(relative);
        if let Some(cache) = &self.cache {
            cache.remember(relative, &found, now);
        }
    }

    /// How many lookups the open-file cache remembers.
    pub fn cached_entries(&self) -> usize {
        self.cache.as_ref().map_or(0, OpenFileCache::remembered)
    }
}

impl Docroot {
    /// Opens the directory at `relative` (`""` is the root) beneath the root, by the same rules
    /// as a lookup: for `offload` to rename and unlink in, never outside the root.
    pub fn open_dir(&self, relative: &str) -> io::Result<OwnedFd> {
        let relative = if relative.is_empty() { "." } else { relative };
        let fd = match &self.containment {
            Containment::Kernel => rustix::fs::openat2(
                &self.dir,
                relative,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                self.resolve,
            )?,
            Containment::Canonical(root) => open_checked(
                root,
                relative,
                self.resolve.contains(ResolveFlags::NO_SYMLINKS),
            )?,
        };
        if !File::from(fd.try_clone()?).metadata()?.is_dir() {
            return Err(io::Error::from(io::ErrorKind::NotADirectory));
        }
        Ok(fd)
    }
}

/// What an open's result means for serving.
fn classify(opened: Result<OwnedFd, Errno>) -> Result<Lookup, LookupError> {
    let fd = match opened {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::NAMETOOLONG) => return Ok(Lookup::Missing),
        // EXDEV: a symlink (or absolute path) tried to leave the root. ELOOP: a symlink loop,
        // or any symlink under `symlinks: deny`.
        Err(Errno::XDEV | Errno::LOOP) => return Ok(Lookup::Refused),
        Err(Errno::ACCESS | Errno::PERM) => return Err(LookupError::PermissionDenied),
        Err(Errno::MFILE | Errno::NFILE) => return Err(LookupError::NoDescriptors),
        Err(e) => return Err(LookupError::Io(e.into())),
    };
    let file = File::from(fd);
    let meta = file.metadata()?;
    let kind = meta.file_type();
    Ok(if kind.is_file() {
        Lookup::File(Arc::new(file), meta)
    } else if kind.is_dir() {
        Lookup::Directory
    } else {
        Lookup::Refused
    })
}

/// Read-only, close-on-exec, and non-blocking so that opening a FIFO cannot hang a worker.
fn open_flags() -> OFlags {
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

fn openat2(dir: &OwnedFd, relative: &str, resolve: ResolveFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(dir, relative, open_flags(), Mode::empty(), resolve)
}

/// The pre-5.6 fallback. It has a window between the check and the open that `openat2` does
/// not, which is why it is only used when the kernel offers nothing better.
fn open_checked(root: &Path, relative: &str, no_symlinks: bool) -> Result<OwnedFd, Errno> {
    let joined = root.join(relative);
    let canonical = joined
        .canonicalize()
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    if !canonical.starts_with(root) || (no_symlinks && canonical != joined) {
        return Err(Errno::XDEV);
    }
    rustix::fs::open(&canonical, open_flags(), Mode::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, Docroot) {
        let outer = tempfile::tempdir().unwrap();
        let www = outer.path().join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("sub/a.txt"), "a").unwrap();
        std::fs::write(outer.path().join("secret.txt"), "secret").unwrap();
        symlink("sub/a.txt", www.join("inside")).unwrap();
        symlink("../secret.txt", www.join("outside")).unwrap();
        symlink(outer.path().join("secret.txt"), www.join("absolute")).unwrap();
        symlink(www.join("sub/a.txt"), www.join("absolute_inside")).unwrap();
        symlink("../www/sub/a.txt", www.join("escapes_and_returns")).unwrap();
        let root = Docroot::open(&www, true, CacheSettings::default()).unwrap();
        (outer, root)
    }

    fn kind(r: &Docroot, p: &str) -> &'static str {
        match r.lookup(p) {
            Ok(Lookup::File(..)) => "file",
            Ok(Lookup::Directory) => "dir",
            Ok(Lookup::Missing) => "missing",
            Ok(Lookup::Refused) => "refused",
            Err(_) => "error",
        }
    }

    #[test]
    fn lookups_stay_beneath_the_root() {
        let (_keep, r) = root();
        assert!(r.kernel_contained(), "this kernel has openat2");
        let cases = [
            ("sub/a.txt", "file"),
            ("sub", "dir"),
            ("", "dir"),
            ("nope.txt", "missing"),
            ("sub/a.txt/x", "missing"),
            ("inside", "file"),
            ("absolute_inside", "file"),
            ("outside", "refused"),
            ("absolute", "refused"),
            ("escapes_and_returns", "file"),
            ("../secret.txt", "refused"),
            ("/etc/passwd", "refused"),
        ];
        for (path, want) in cases {
            assert_eq!(kind(&r, path), want, "lookup {path:?}");
        }
    }

    #[test]
    fn cached_only_lookups_succeed_once_the_path_is_warm() {
        let (_keep, r) = root();
        assert!(r.cached_lookups, "this kernel has RESOLVE_CACHED");
        // Whether the first cached-only attempt hits depends on the dentry cache; after a
        // blocking lookup the same path must resolve without the disk.
        assert_eq!(kind(&r, "sub/a.txt"), "file");
        assert!(matches!(
            r.lookup_cached("sub/a.txt"),
            Some(Ok(Lookup::File(..)))
        ));
        assert!(matches!(
            r.lookup_cached("sub"),
            Some(Ok(Lookup::Directory))
        ));
    }

    #[test]
    fn symlinks_deny_refuses_even_links_inside() {
        let (keep, _) = root();
        let r = Docroot::open(&keep.path().join("www"), false, CacheSettings::default()).unwrap();
        assert_eq!(kind(&r, "sub/a.txt"), "file");
        assert_eq!(
            kind(&r, "inside"),
            "refused",
            "a link, though it stays inside"
        );
        assert_eq!(kind(&r, "outside"), "refused");
        assert_eq!(kind(&r, "absolute_inside"), "refused");
    }

    #[test]
    fn a_link_swapped_to_lead_outside_is_refused() {
        let (keep, r) = root();
        let www = keep.path().join("www");
        assert_eq!(kind(&r, "absolute_inside"), "file");
        std::fs::remove_file(www.join("absolute_inside")).unwrap();
        symlink(keep.path().join("secret.txt"), www.join("absolute_inside")).unwrap();
        assert_eq!(kind(&r, "absolute_inside"), "refused");
        // A directory link out of the root, with the file beyond it.
        symlink(keep.path(), www.join("up")).unwrap();
        assert_eq!(kind(&r, "up/secret.txt"), "refused");
        assert_eq!(
            kind(&r, "up/www/sub/a.txt"),
            "file",
            "back inside through it"
        );
    }
}
