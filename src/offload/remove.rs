//! The last step, taken only on positive evidence: deleting or archiving a local file whose
//! object is proven to be in the bucket.
//!
//! The file is first renamed aside (atomically, never over anything), and the stamp of what was
//! renamed is compared with the stamp taken before the upload. Only if they are equal is it
//! deleted (or left in the archive); otherwise it is renamed back. So what gets removed is
//! exactly the file that was verified, even if something is renamed over its path meanwhile.
//! A crash between the two steps leaves a `.spillway-offload.` file, which the next run puts
//! back before it starts. The run holds an `flock` on the file throughout, so overlapping runs
//! never remove the same file twice nor put back one that another run is removing.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::core::site::{After, Route};
use crate::offload::stamp::Stamp;

/// Names a file gets while it is being removed. It starts with `.`, so the server never serves
/// it and no walk offloads it.
pub const QUARANTINE_PREFIX: &str = ".spillway-offload.";

/// What happened to a local file whose object is in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Deleted,
    Archived(PathBuf),
    /// `after: keep`.
    Kept,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("it changed after the upload began, so it was kept")]
    Changed,
    /// Not there any more: another run (or the application) moved or removed it first.
    #[error("it is gone: another run moved it first")]
    Gone,
    #[error("the archive already has {}, so the file was kept", .0.display())]
    ArchiveTaken(PathBuf),
    #[error("cannot {action}: {error}; the file was kept")]
    Io {
        action: &'static str,
        error: io::Error,
    },
}

fn io_error(action: &'static str) -> impl FnOnce(Errno) -> RemoveError {
    move |e| match e {
        Errno::NOENT => RemoveError::Gone,
        e => RemoveError::Io {
            action,
            error: e.into(),
        },
    }
}

/// Deletes, archives or keeps (as `after` says) the file at `relative`, if it is still the
/// file stamped `before`.
/// `file` is the open file that was uploaded: it is locked while it is removed, so that two
/// runs never remove the same file, and no run puts back what another is removing.
pub fn remove(
    route: &Route,
    after: &After,
    relative: &str,
    file: &File,
    before: &Stamp,
) -> Result<Removed, RemoveError> {
    match lock(file) {
        Ok(true) => {}
        Ok(false) => return Err(RemoveError::Gone),
        Err(error) => {
            return Err(RemoveError::Io {
                action: "lock it",
                error,
            })
        }
    }
    let (dir, name) = match relative.rsplit_once('/') {
        Some((dir, name)) => (dir, name),
        None => ("", relative),
    };
    let parent = route
        .docroot
        .open_dir(dir)
        .map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => RemoveError::Gone,
            _ => RemoveError::Io {
                action: "open its directory",
                error,
            },
        })?;
    if stamp_at(&parent, name)? != *before {
        return Err(RemoveError::Changed);
    }
    match after {
        After::Keep => Ok(Removed::Kept),
        After::Delete => delete(&parent, name, before),
        After::Archive(archive) => {
            let target = archive.join(relative);
            let archive_dir = open_archive_dir(&target)?;
            set_aside(&parent, name, &archive_dir, name, before).map_err(|e| match e {
                SetAside::Taken => RemoveError::ArchiveTaken(target.clone()),
                SetAside::Failed(e) => e,
            })?;
            Ok(Removed::Archived(target))
        }
    }
}

/// Renames the file to a quarantine name, checks it is the verified one, and unlinks it.
fn delete(parent: &OwnedFd, name: &str, before: &Stamp) -> Result<Removed, RemoveError> {
    let quarantine = format!("{QUARANTINE_PREFIX}{name}");
    if quarantine.len() > 255 {
        // No room for the prefix in a name this long: the stamp was just checked, so unlink.
        rustix::fs::unlinkat(parent, name, AtFlags::empty()).map_err(io_error("delete it"))?;
        return Ok(Removed::Deleted);
    }
    set_aside(parent, name, parent, &quarantine, before).map_err(|e| match e {
        // Another run is removing the same file right now.
        SetAside::Taken => RemoveError::Gone,
        SetAside::Failed(e) => e,
    })?;
    rustix::fs::unlinkat(parent, &quarantine, AtFlags::empty()).map_err(io_error("delete it"))?;
    Ok(Removed::Deleted)
}

enum SetAside {
    /// Something already has the new name.
    Taken,
    Failed(RemoveError),
}

impl From<RemoveError> for SetAside {
    fn from(e: RemoveError) -> Self {
        SetAside::Failed(e)
    }
}

/// Renames `from` to `to` (never replacing), then checks that what moved is the file stamped
/// `before`, unchanged; if not, moves it back.
fn set_aside(
    from_dir: &OwnedFd,
    from: &str,
    to_dir: &OwnedFd,
    to: &str,
    before: &Stamp,
) -> Result<(), SetAside> {
    match rustix::fs::renameat_with(from_dir, from, to_dir, to, RenameFlags::NOREPLACE) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Err(SetAside::Taken),
        Err(e) => return Err(io_error("move it")(e).into()),
    }
    // The rename itself moves ctime on, so this check leaves it out; it was compared just
    // before the move, and a write since then moves mtime.
    if stamp_at(to_dir, to)?.same_but_ctime(before) {
        return Ok(());
    }
    // Something else was renamed over the path between the check and the move: put it back.
    // If the path is taken again by now, both stay, under their names.
    let _ = rustix::fs::renameat_with(to_dir, to, from_dir, from, RenameFlags::NOREPLACE);
    Err(RemoveError::Changed.into())
}

/// The stamp of `name` in `dir`, without following a symlink.
fn stamp_at(dir: &OwnedFd, name: &str) -> Result<Stamp, RemoveError> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_error("check it"))?;
    let meta = File::from(fd).metadata().map_err(|error| RemoveError::Io {
        action: "check it",
        error,
    })?;
    Ok(Stamp::of(&meta))
}

/// Creates the archive's directories for `target` and opens its parent.
fn open_archive_dir(target: &Path) -> Result<OwnedFd, RemoveError> {
    let parent = target.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(parent).map_err(|error| RemoveError::Io {
        action: "create the archive directory",
        error,
    })?;
    rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_error("open the archive directory"))
}

/// Puts back a file a crashed run left set aside in `dir` (relative to the root), if its name
/// is free. Returns the name it has again, or `None` when a live run holds it (it is removing
/// it right now: putting it back would undo its work) or it is gone (that run finished).
pub fn restore(route: &Route, dir: &str, quarantined: &str) -> io::Result<Option<String>> {
    let name = quarantined
        .strip_prefix(QUARANTINE_PREFIX)
        .ok_or_else(|| io::Error::other("not a quarantined name"))?;
    let parent = route.docroot.open_dir(dir)?;
    let set_aside = match rustix::fs::openat(
        &parent,
        quarantined,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !lock(&set_aside)? {
        return Ok(None);
    }
    match rustix::fs::renameat_with(&parent, quarantined, &parent, name, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(Some(format!("{dir}{name}"))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Takes the lock a run holds on a file while it removes it (`flock`, released when the run
/// closes the file or dies; NFSv4 carries it between hosts). False: another run holds it.
fn lock(file: &impl AsFd) -> io::Result<bool> {
    match rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
