//! The S3 key of a request path: the one function from (route, canonical relative path) to key.
//!
//! Redirects, presigned links, `explain` and `offload` all name objects through [`of`], so the
//! key a file is uploaded to is the key the proxy redirects to.

use crate::core::site::Route;
use crate::s3::key::ObjectKey;

/// The key of `relative` (from [`crate::core::path::decode_relative`]) under `route`.
pub fn of<'a>(route: &'a Route, relative: &'a str) -> ObjectKey<'a> {
    ObjectKey::new(&route.key_prefix, relative)
}
