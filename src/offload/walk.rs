//! Walking a route's root by the rules the server serves by: what it would serve is what may
//! move, and nothing else.
//!
//! Directories are listed by path, but nothing found here is trusted to be beneath the root:
//! every file is opened later through the route's `Docroot` (`openat2(RESOLVE_BENEATH)`), and
//! removed relative to a directory opened the same way.

use std::collections::VecDeque;
use std::fs::FileType;
use std::path::{Path, PathBuf};

use crate::core::site::{Dotfiles, Route};
use crate::offload::remove::QUARANTINE_PREFIX;
use crate::offload::stamp::Stamp;

/// One entry beneath the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A regular file the server could serve: a candidate to move. `stamp` as the walk saw it.
    File {
        relative: String,
        size: u64,
        stamp: Stamp,
    },
    /// Something that is never moved, and why.
    Skipped { relative: String, why: Skip },
    /// A file an interrupted run set aside while removing it (see `remove`), in `dir`.
    SetAside { dir: String, name: String },
    /// A walk that sends to a shared channel says it is over.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// A segment starts with `.` and the route does not serve dotfiles.
    Dotfile,
    /// A symlink: never followed, never moved.
    Symlink,
    /// A FIFO, socket or device.
    NotRegular,
    /// A name that is not UTF-8 has no URL the server would answer.
    NotUtf8,
    /// A directory that could not be listed.
    Unreadable,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Dotfile => "dotfile",
            Skip::Symlink => "symlink",
            Skip::NotRegular => "not a regular file",
            Skip::NotUtf8 => "name not UTF-8",
            Skip::Unreadable => "directory not readable",
        }
    }
}

/// A route's root and the rule for what in it is hidden.
#[derive(Debug, Clone)]
pub struct Walk {
    root: PathBuf,
    dotfiles: Dotfiles,
}

impl Walk {
    pub fn of(route: &Route) -> Walk {
        Walk {
            root: route.docroot.path().to_owned(),
            dotfiles: route.dotfiles,
        }
    }

    /// Walks the root breadth-first and hands every entry to `found`; stops early when it
    /// returns false. Blocking: run it off the event loop.
    pub fn run(&self, found: impl FnMut(Found) -> bool) {
        walk(&self.root, self.dotfiles, String::new(), found)
    }

    /// The same, below the directory `dir` (relative to the root, ending in `/`) only.
    pub fn run_below(&self, dir: String, found: impl FnMut(Found) -> bool) {
        walk(&self.root, self.dotfiles, dir, found)
    }
}

fn walk(root: &Path, dotfiles: Dotfiles, start: String, mut found: impl FnMut(Found) -> bool) {
    let mut dirs = VecDeque::from([start]);
    while let Some(dir) = dirs.pop_front() {
        let entries = match std::fs::read_dir(root.join(&dir)) {
            Ok(entries) => entries,
            Err(_) => {
                if !found(Found::Skipped {
                    relative: dir,
                    why: Skip::Unreadable,
                }) {
                    return;
                }
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                let relative = format!("{dir}{}", Path::new(&name).display());
                if !found(Found::Skipped {
                    relative,
                    why: Skip::NotUtf8,
                }) {
                    return;
                }
                continue;
            };
            if name.starts_with(QUARANTINE_PREFIX) {
                if !found(Found::SetAside {
                    dir: dir.clone(),
                    name: name.to_owned(),
                }) {
                    return;
                }
                continue;
            }
            let relative = format!("{dir}{name}");
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let next = match classify(dotfiles, &relative, kind) {
                Ok(true) => {
                    dirs.push_back(format!("{relative}/"));
                    continue;
                }
                Ok(false) => match entry.metadata() {
                    Ok(meta) => Found::File {
                        relative,
                        size: meta.len(),
                        stamp: Stamp::of(&meta),
                    },
                    Err(_) => continue,
                },
                Err(why) => Found::Skipped { relative, why },
            };
            if !found(next) {
                return;
            }
        }
    }
}

/// `Ok(true)`: a directory to descend into; `Ok(false)`: a regular file; `Err`: skipped.
fn classify(dotfiles: Dotfiles, relative: &str, kind: FileType) -> Result<bool, Skip> {
    if dotfiles.hide(relative) {
        Err(Skip::Dotfile)
    } else if kind.is_symlink() {
        Err(Skip::Symlink)
    } else if kind.is_dir() {
        Ok(true)
    } else if kind.is_file() {
        Ok(false)
    } else {
        // A FIFO, socket or device.
        Err(Skip::NotRegular)
    }
}
