//! HTTP semantics of serving a file, as pure functions over headers and metadata.

pub mod conditional;
pub mod content_type;
pub mod file;
pub mod negotiate;
pub mod range;
