//! The file system under the document roots: opening beneath a root, remembering what was
//! opened, reading without stalling the event loop, and sending file bytes straight to a socket.

pub mod docroot;
pub mod lookup;
pub mod open_cache;
pub mod read;
pub mod zero_copy;
