//! Opening files beneath a document root, with containment enforced by the kernel.
//!
//! The root is opened once at startup; every request opens its path relative to that directory
//! handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so neither `..` nor a symlink
//! can lead outside it, and there is no window between a check and the open. Kernels without
//! `openat2` (before 5.6) get a canonicalising check instead, announced in the log at startup.

use std::convert::Infallible;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// What a relative path names beneath the root.
#[derive(Debug)]
pub enum Lookup {
    /// A regular file, opened for reading, with its metadata from the open handle.
    File(File, Metadata),
    /// A directory (served only through an index file; otherwise a miss).
    Directory,
    /// Nothing there: the redirect path.
    Missing,
    /// Something that must not be served and must not be redirected either: a FIFO, socket or
    /// device, or a symlink that leads outside the root.
    Refused,
}

/// Failures that are neither "missing" nor "refused", each with its own status.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("permission denied")]
    PermissionDenied,
    /// The process (or the system) has no file descriptor left: a moment's overload, not a
    /// fault of the file.
    #[error("out of file descriptors")]
    NoDescriptors,
    #[error("{0}")]
    Io(#[from] io::Error),
}

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

/// Only what the kernel's dentry cache can answer (`RESOLVE_CACHED`); anything else is left
/// as a [`Warm`] at once. For the event loop.
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

/// A path to resolve once with blocking I/O, so that the next cached-only lookup finds it.
#[derive(Debug)]
pub struct Warm {
    docroot: Arc<Docroot>,
    relative: String,
}

impl Warm {
    /// Blocking: run it on the blocking pool. The result is dropped; the dentry cache keeps
    /// what matters.
    pub fn run(&self) {
        let _ = self.docroot.lookup(&self.relative);
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
}

impl Docroot {
    /// Opens `path` as a document root. It must be a directory. Symlinks that stay beneath the
    /// root are followed unless `follow_symlinks` is false.
    pub fn open(path: &Path, follow_symlinks: bool) -> io::Result<Docroot> {
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
            Containment::Kernel => openat2(&self.dir, relative, self.resolve),
            Containment::Canonical(root) => open_checked(
                root,
                relative,
                self.resolve.contains(ResolveFlags::NO_SYMLINKS),
            ),
        };
        classify(opened)
    }

    /// The same lookup from the dentry cache only; `None` when it would need the disk. Kernels
    /// without `RESOLVE_CACHED` always wait.
    pub fn lookup_cached(&self, relative: &str) -> Option<Result<Lookup, LookupError>> {
        if !self.cached_lookups {
            return Some(self.lookup(relative));
        }
        let relative = if relative.is_empty() { "." } else { relative };
        match openat2(&self.dir, relative, self.resolve | ResolveFlags::CACHED) {
            Err(Errno::AGAIN) => None,
            opened => Some(classify(opened)),
        }
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
        Lookup::File(file, meta)
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
        let root = Docroot::open(&www, true).unwrap();
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
            ("outside", "refused"),
            ("absolute", "refused"),
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
        let r = Docroot::open(&keep.path().join("www"), false).unwrap();
        assert_eq!(kind(&r, "sub/a.txt"), "file");
        assert_eq!(
            kind(&r, "inside"),
            "refused",
            "a link, though it stays inside"
        );
        assert_eq!(kind(&r, "outside"), "refused");
    }
}
