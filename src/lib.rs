//! spillway: serve local files, redirect misses to S3 (presigned when private), proxy the rest.
//!
//! The request flows route → path → decide → respond. The pure core (`route`, `path`, `policy`,
//! `s3`, `serve`, `decide`) knows nothing of Pingora; `proxy`, `respond` and `server` are the glue.

pub mod config;
pub mod credentials;
pub mod decide;
pub mod docroot;
pub mod explain;
pub mod negotiate;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod range;
pub mod read;
pub mod respond;
pub mod route;
pub mod s3;
pub mod serve;
pub mod server;
pub mod sigv4;
