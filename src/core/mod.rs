//! The pure core: from a request to a decision, as values. It imports neither tokio nor
//! Pingora (`tests/it/architecture.rs` keeps it so), and is table-tested beside its code.

pub mod answer;
pub mod authorize;
pub mod client;
pub mod compress;
pub mod cors;
pub mod decide;
pub mod key;
pub mod limits;
pub mod outcome;
pub mod path;
pub mod policy;
pub mod rate;
pub mod route;
pub mod site;
pub mod upstream;
