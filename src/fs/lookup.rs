//! What a lookup beneath a root finds: the values the root, its open-file cache and `decide`
//! share.

use std::fs::{File, Metadata};
use std::io;
use std::sync::Arc;

/// What a relative path names beneath the root.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A regular file, opened for reading, with its metadata from the open handle.
    File(Arc<File>, Metadata),
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
