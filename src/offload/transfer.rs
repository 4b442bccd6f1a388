//! Talking to the bucket: what is stored at a key, and uploading a file there with checksums
//! the server verifies on arrival.
//!
//! Single uploads send `x-amz-checksum-crc64nvme` and `Content-MD5` as headers: S3 (and
//! s3s-fs) reject a body that does not match either. Multipart uploads send both per part, and
//! the full-object CRC64NVME on completion, which S3 checks and stores; so in production the
//! evidence afterwards is always S3's own full-object checksum. (s3s-fs, the test server,
//! stores none for multipart objects; there the multipart ETag, computed here from the parts'
//! MD5s, is what proves the bytes arrived.)
//!
//! A store that refuses the `x-amz-checksum-*` headers (several S3-compatible ones did,
//! aws-cli#9214) gets `Content-MD5` alone from then on (`Store::fall_back_to_md5`): it still
//! verifies every body on arrival, and the ETag it computes (the MD5, or the multipart ETag of
//! the same part boundaries) is the evidence.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart,
};
use aws_sdk_s3::Client;
use tokio::sync::Semaphore;

use crate::offload::bwlimit::Limiter;
use crate::offload::digest::{self, Sums};
use crate::offload::store::Store;

/// Where an object goes, the headers it is stored with (as the proxy would serve it), and
/// how fast it may go.
pub struct Target<'a> {
    pub store: &'a Store,
    pub key: &'a str,
    pub content_type: &'a str,
    pub cache_control: Option<&'a str>,
    pub limiter: Option<&'a Arc<Limiter>>,
}

impl Target<'_> {
    fn client(&self) -> &Client {
        &self.store.client
    }

    fn bucket(&self) -> &str {
        &self.store.bucket
    }

    /// `stream` at the run's rate, if it has one.
    fn body(&self, stream: ByteStream) -> ByteStream {
        Limiter::throttle_if(self.limiter, stream)
    }
}

/// What the bucket holds at a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub len: u64,
    /// The full-object CRC64NVME, base64, if the server keeps one.
    pub crc64: Option<String>,
    /// Without quotes.
    pub etag: Option<String>,
}

/// A failed S3 call, said the way an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error(
        "access denied to s3://{bucket}/{key}: the credentials need {permission} ({status}{code})"
    )]
    Denied {
        bucket: String,
        key: String,
        permission: &'static str,
        status: u16,
        code: String,
    },
    #[error("the S3 credentials are not accepted ({status}{code}): {hint}")]
    Credentials {
        status: u16,
        code: String,
        hint: &'static str,
    },
    #[error("S3 rejected the upload of s3://{bucket}/{key} as corrupt ({code}): the file changed while it was read, or bytes were damaged on the way")]
    Corrupt {
        bucket: String,
        key: String,
        code: String,
    },
    #[error("an object appeared at s3://{bucket}/{key} during the upload; it was not overwritten")]
    Appeared { bucket: String, key: String },
    #[error("cannot reach S3 at {endpoint} for s3://{bucket}/{key} ({operation}, after retries): {detail}")]
    Unreachable {
        endpoint: String,
        bucket: String,
        key: String,
        operation: &'static str,
        detail: String,
    },
    #[error("S3 stayed busy ({status}{code}) for {operation} of s3://{bucket}/{key}, after retries with backoff")]
    Busy {
        bucket: String,
        key: String,
        operation: &'static str,
        status: u16,
        code: String,
    },
    #[error("S3 answered {status}{code} to {operation} of s3://{bucket}/{key}{message}")]
    Other {
        bucket: String,
        key: String,
        operation: &'static str,
        status: u16,
        code: String,
        message: String,
    },
    #[error("S3 at {endpoint} refused the x-amz-checksum-* headers ({status}{code})")]
    ChecksumsRefused {
        endpoint: String,
        status: u16,
        code: String,
    },
    #[error("reading the file failed: {0}")]
    Read(std::io::Error),
}

impl S3Error {
    /// Errors that every other file would meet too: the run stops starting new ones.
    pub fn stops_the_run(&self) -> Option<&'static str> {
        match self {
            S3Error::Credentials { .. } => Some("S3 refuses the credentials"),
            S3Error::Unreachable { .. } => Some("S3 cannot be reached"),
            _ => None,
        }
    }

    /// Some S3-compatible stores answer a request with additional checksum headers this way
    /// (aws-cli#9214). `carried`: whether the request had them.
    fn refuses_checksums(self, target: &Target, carried: bool) -> S3Error {
        match self {
            S3Error::Other {
                status: status @ (400 | 501),
                code,
                ..
            // A HEAD answer has no body to name a code in.
            } if carried
                && matches!(
                    code.trim(),
                    "" | "InvalidArgument" | "InvalidRequest" | "NotImplemented"
                ) =>
            {
                S3Error::ChecksumsRefused {
                    endpoint: target.store.endpoint.clone(),
                    status,
                    code,
                }
            }
            other => other,
        }
    }
}

/// The S3 action each operation needs, for an access-denied message.
fn permission(operation: &'static str) -> &'static str {
    match operation {
        "HeadObject" => "s3:GetObject",
        "AbortMultipartUpload" => "s3:AbortMultipartUpload",
        "DeleteObject" => "s3:DeleteObject",
        _ => "s3:PutObject",
    }
}

// Long on purpose: a table from S3's answers to what an operator can act on.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    target: &Target,
    operation: &'static str,
    error: SdkError<E>,
) -> S3Error {
    let bucket = target.bucket().to_owned();
    let key = target.key.to_owned();
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().unwrap_or_default().to_owned();
    let shown = if code.is_empty() {
        String::new()
    } else {
        format!(" {code}")
    };
    let Some(status) = status else {
        let detail = match &error {
            SdkError::DispatchFailure(d) if d.is_timeout() => "timed out".to_owned(),
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            other => crate::error_chain(other),
        };
        return S3Error::Unreachable {
            endpoint: target.store.endpoint.clone(),
            bucket,
            key,
            operation,
            detail,
        };
    };
    match (status, code.as_str()) {
        (403, "SignatureDoesNotMatch") => S3Error::Credentials {
            status,
            code: shown,
            hint: "the secret key does not match the access key id",
        },
        (403, "InvalidAccessKeyId" | "NotSignedUp") => S3Error::Credentials {
            status,
            code: shown,
            hint: "the access key id is unknown to this S3 endpoint",
        },
        (400 | 403, "ExpiredToken" | "InvalidToken" | "TokenRefreshRequired") => {
            S3Error::Credentials {
                status,
                code: shown,
                hint: "the session token is expired or invalid",
            }
        }
        (403, _) => S3Error::Denied {
            bucket,
            key,
            permission: permission(operation),
            status,
            code: shown,
        },
        (400, "BadDigest" | "InvalidDigest" | "XAmzContentChecksumMismatch") => {
            S3Error::Corrupt { bucket, key, code }
        }
        (412, _) => S3Error::Appeared { bucket, key },
        (429 | 500..=599, _) => S3Error::Busy {
            bucket,
            key,
            operation,
            status,
            code: shown,
        },
        _ => S3Error::Other {
            bucket,
            key,
            operation,
            status,
            code: shown,
            message: error
                .message()
                .map(|m| format!(": {m}"))
                .unwrap_or_default(),
        },
    }
}

/// What is stored at the target's key; `None` if nothing is.
pub async fn stored(target: &Target<'_>) -> Result<Option<Stored>, S3Error> {
    let carried = !target.store.md5_only();
    let mut head = target
        .client()
        .head_object()
        .bucket(target.bucket())
        .key(target.key);
    if carried {
        head = head.checksum_mode(ChecksumMode::Enabled);
    }
    let head = head.send().await;
    match head {
        Ok(head) => Ok(Some(Stored {
            len: head
                .content_length()
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(0),
            crc64: head.checksum_crc64_nvme().map(str::to_owned),
            etag: head.e_tag().map(|e| e.trim_matches('"').to_owned()),
        })),
        Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            Err(why_forbidden(target).await)
        }
        Err(e) => Err(classify(target, "HeadObject", e).refuses_checksums(target, carried)),
    }
}

/// A HEAD answer has no body, so a 403 does not say whether the signature or the permission
/// failed. A one-byte GET of the same key does.
async fn why_forbidden(target: &Target<'_>) -> S3Error {
    let get = target
        .client()
        .get_object()
        .bucket(target.bucket())
        .key(target.key)
        .range("bytes=0-0")
        .send()
        .await;
    match get {
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 403) => {
            classify(target, "HeadObject", e)
        }
        _ => S3Error::Denied {
            bucket: target.bucket().to_owned(),
            key: target.key.to_owned(),
            permission: permission("HeadObject"),
            status: 403,
            code: String::new(),
        },
    }
}

/// Deletes the object this run just uploaded (it no longer matches the file, or it was a
/// probe).
pub async fn withdraw(target: &Target<'_>) -> Result<(), S3Error> {
    target
        .client()
        .delete_object()
        .bucket(target.bucket())
        .key(target.key)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify(target, "DeleteObject", e))
}

/// Uploads the first `sums.len` bytes of `file` in one request, never over an existing object
/// (an object already there is `S3Error::Appeared`). Returns what the server says it stored:
/// the checksum it verified the bytes against and the ETag it computed from them.
pub async fn put(target: &Target<'_>, file: &File, sums: &Sums) -> Result<Stored, S3Error> {
    // Through the descriptor this run opened beneath the root, and reopened on a retry.
    let body = ByteStream::read_from()
        .path(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .length(Length::Exact(sums.len))
        .build()
        .await
        .map_err(|e| S3Error::Read(std::io::Error::other(e)))?;
    put_body(target, body, sums).await
}

/// `put` of bytes in memory (`check --probe`).
pub async fn put_bytes(target: &Target<'_>, bytes: Vec<u8>) -> Result<Stored, S3Error> {
    let sums = Sums::of(&bytes);
    put_body(target, ByteStream::from(bytes), &sums).await
}

async fn put_body(target: &Target<'_>, body: ByteStream, sums: &Sums) -> Result<Stored, S3Error> {
    let mut put = target
        .client()
        .put_object()
        .bucket(target.bucket())
        .key(target.key)
        .body(target.body(body))
        .content_length(i64::try_from(sums.len).unwrap_or(i64::MAX))
        .content_md5(sums.md5_base64())
        .content_type(target.content_type)
        .if_none_match("*");
    let carried = !target.store.md5_only();
    if carried {
        put = put.checksum_crc64_nvme(sums.crc64_base64());
    }
    if let Some(cache_control) = target.cache_control {
        put = put.cache_control(cache_control);
    }
    let stored = put
        .send()
        .await
        .map_err(|e| classify(target, "PutObject", e).refuses_checksums(target, carried))?;
    Ok(Stored {
        len: sums.len,
        crc64: stored.checksum_crc64_nvme().map(str::to_owned),
        etag: stored.e_tag().map(|e| e.trim_matches('"').to_owned()),
    })
}

/// Uploads `file` (`len` bytes) in parts of `part_size`, at most as many at once as `slots`
/// allows; each part is read once into memory, checksummed, and sent. Returns the parts'
/// checksums. On any failure the upload is aborted, so no parts are left behind.
pub async fn put_multipart(
    target: &Target<'_>,
    file: &Arc<File>,
    len: u64,
    part_size: u64,
    slots: &Arc<Semaphore>,
) -> Result<Vec<Sums>, S3Error> {
    let mut create = target
        .client()
        .create_multipart_upload()
        .bucket(target.bucket())
        .key(target.key)
        .content_type(target.content_type);
    // One choice for the whole upload, even if another file falls back meanwhile.
    let carried = !target.store.md5_only();
    if carried {
        create = create
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .checksum_type(ChecksumType::FullObject);
    }
    if let Some(cache_control) = target.cache_control {
        create = create.cache_control(cache_control);
    }
    let created = create.send().await.map_err(|e| {
        classify(target, "CreateMultipartUpload", e).refuses_checksums(target, carried)
    })?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let result = send_parts(target, &upload_id, file, len, part_size, slots, carried).await;
    let result = match result {
        Ok((parts, sums)) => complete(target, &upload_id, parts, &sums, len, carried)
            .await
            .map(|()| sums),
        Err(e) => Err(e),
    };
    if result.is_err() {
        // Best effort: a bucket lifecycle rule cleans up what this cannot.
        let _ = target
            .client()
            .abort_multipart_upload()
            .bucket(target.bucket())
            .key(target.key)
            .upload_id(&upload_id)
            .send()
            .await;
    }
    result
}

// Long on purpose: the parts' pipeline (read, checksum, send, collect) with its early stop on the first failure.
async fn send_parts(
    target: &Target<'_>,
    upload_id: &str,
    file: &Arc<File>,
    len: u64,
    part_size: u64,
    slots: &Arc<Semaphore>,
    carried: bool,
) -> Result<(Vec<CompletedPart>, Vec<Sums>), S3Error> {
    let count = len.div_ceil(part_size);
    let mut parts = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let offset = index * part_size;
        let size = part_size.min(len - offset);
        let permit = Arc::clone(slots)
            .acquire_owned()
            .await
            .map_err(|_| S3Error::Read(std::io::Error::other("stopped")))?;
        let request = target
            .client()
            .upload_part()
            .bucket(target.bucket())
            .key(target.key)
            .upload_id(upload_id)
            .part_number(i32::try_from(index + 1).unwrap_or(i32::MAX));
        tasks.spawn(upload_part(
            request,
            Arc::clone(file),
            Part {
                index,
                offset,
                size,
                md5_only: !carried,
                limiter: target.limiter.cloned(),
            },
            permit,
        ));
        // Collect finished parts as we go, so an early failure stops the rest.
        while let Some(done) = tasks.try_join_next() {
            parts.push(part_result(target, done, carried)?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        parts.push(part_result(target, done, carried)?);
    }
    parts.sort_by_key(|(index, _, _)| *index);
    Ok(parts
        .into_iter()
        .map(|(index, sums, etag)| {
            let mut part = CompletedPart::builder()
                .part_number(i32::try_from(index + 1).unwrap_or(i32::MAX))
                .e_tag(etag);
            if carried {
                part = part.checksum_crc64_nvme(sums.crc64_base64());
            }
            let part = part.build();
            (part, sums)
        })
        .unzip())
}

type PartOutcome = Result<
    (
        u64,
        Sums,
        Result<
            aws_sdk_s3::operation::upload_part::UploadPartOutput,
            SdkError<aws_sdk_s3::operation::upload_part::UploadPartError>,
        >,
    ),
    S3Error,
>;

/// One part of a multipart upload: where it is in the file, and how it is sent.
struct Part {
    index: u64,
    offset: u64,
    size: u64,
    md5_only: bool,
    limiter: Option<Arc<Limiter>>,
}

/// Reads a part, checksums it, and sends it.
async fn upload_part(
    request: aws_sdk_s3::operation::upload_part::builders::UploadPartFluentBuilder,
    file: Arc<File>,
    part: Part,
    _permit: tokio::sync::OwnedSemaphorePermit,
) -> PartOutcome {
    let Part {
        index,
        offset,
        size,
        ..
    } = part;
    let bytes = tokio::task::spawn_blocking(move || read_part(&file, offset, size))
        .await
        .map_err(|e| S3Error::Read(std::io::Error::other(e)))?
        .map_err(S3Error::Read)?;
    let sums = Sums::of(&bytes);
    let body = Limiter::throttle_if(part.limiter.as_ref(), ByteStream::from(bytes));
    let mut request = request.body(body).content_md5(sums.md5_base64());
    if !part.md5_only {
        request = request.checksum_crc64_nvme(sums.crc64_base64());
    }
    Ok((index, sums, request.send().await))
}

fn part_result(
    target: &Target,
    done: Result<PartOutcome, tokio::task::JoinError>,
    carried: bool,
) -> Result<(u64, Sums, String), S3Error> {
    let (index, sums, sent) = done.map_err(|e| S3Error::Read(std::io::Error::other(e)))??;
    let output =
        sent.map_err(|e| classify(target, "UploadPart", e).refuses_checksums(target, carried))?;
    Ok((index, sums, output.e_tag().unwrap_or_default().to_owned()))
}

fn read_part(file: &File, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0; usize::try_from(size).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut bytes, offset)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => digest::shrank(),
            _ => e,
        })?;
    Ok(bytes)
}

async fn complete(
    target: &Target<'_>,
    upload_id: &str,
    parts: Vec<CompletedPart>,
    sums: &[Sums],
    len: u64,
    carried: bool,
) -> Result<(), S3Error> {
    let mut complete = target
        .client()
        .complete_multipart_upload()
        .bucket(target.bucket())
        .key(target.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .mpu_object_size(i64::try_from(len).unwrap_or(i64::MAX))
        .if_none_match("*");
    if carried {
        complete = complete
            .checksum_crc64_nvme(digest::crc64_base64(digest::combined_crc64(sums)))
            .checksum_type(ChecksumType::FullObject);
    }
    complete.send().await.map(|_| ()).map_err(|e| {
        classify(target, "CompleteMultipartUpload", e).refuses_checksums(target, carried)
    })
}
