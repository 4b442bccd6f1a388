//! Client connections: HTTP/1 heads read and decided (`connection`), h2 streams (`h2`), answers
//! made here (`local`), and the count of open connections (`connections`).

pub mod connection;
pub mod connections;
pub mod h2;
pub mod local;
