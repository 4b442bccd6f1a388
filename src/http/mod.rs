//! HTTP semantics, as pure functions over headers and metadata: serving a file, and what a proxy
//! passes on.

pub mod conditional;
pub mod content_type;
pub mod file;
pub mod hop_by_hop;
pub mod negotiate;
pub mod percent;
pub mod range;
