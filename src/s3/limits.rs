//! S3's limits on uploads, which offload and its configuration keep to.

/// S3's smallest part (all but the last) of a multipart upload.
pub const MIN_PART: u64 = 5 << 20;
/// S3's largest single PutObject.
pub const MAX_SINGLE_PUT: u64 = 5 << 30;
/// S3's most parts in one multipart upload.
pub const MAX_PARTS: u64 = 10_000;
