//! spillway: serve local files, redirect misses to S3 (presigned when private), proxy the rest.
//!
//! The request flows route → path → decide → respond. The pure core (`route`, `path`, `policy`,
//! `s3`, `serve`, `decide`, `http1`) knows nothing of Pingora. `front` owns each client
//! connection and answers locally through `respond`; requests for the legacy upstream go to
//! Pingora's proxy (`proxy`); `server` starts it all.

pub mod config;
pub mod credentials;
pub mod decide;
pub mod docroot;
pub mod explain;
pub mod front;
pub mod http1;
pub mod negotiate;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod range;
pub mod read;
pub mod request_log;
pub mod respond;
pub mod route;
pub mod s3;
pub mod serve;
pub mod server;
pub mod sigv4;
pub mod zero_copy;
