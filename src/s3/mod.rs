//! S3 as the proxy sees it: where a key lives (addressing, URLs), how a link to it is signed,
//! and the credentials that sign. Pure computation plus the credential cell: no Pingora, and
//! no S3 call on the request path.

pub mod bucket;
pub mod credentials;
pub mod sigv4;

pub use bucket::{Addressing, Bucket, BucketError, SignError, Signed, MAX_TTL};
