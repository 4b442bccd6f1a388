//! S3 as spillway sees it: where a key lives (addressing, URLs), how a link to it is signed,
//! the credentials that sign, and S3's limits. No tokio, no Pingora, and no S3 call on the
//! request path.

pub mod bucket;
pub mod cloudfront;
pub mod credentials;
pub mod key;
pub mod limits;
mod rsa_sha1;
pub mod signed_links;
pub mod sigv4;

pub use bucket::{Addressing, Bucket, BucketError, ClientAddressing, SignError, Signed, MAX_TTL};
pub use limits::{MAX_PARTS, MAX_SINGLE_PUT, MIN_PART};
