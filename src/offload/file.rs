//! One file's way to the bucket: open it beneath the root, check it may move, upload it (or
//! find it already there), prove it arrived, and only then remove it.

use std::convert::Infallible;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::core::answer::Answer;
use crate::core::decide::{decide, Decision, Request};
use crate::core::key;
use crate::core::site::{Offload, Route};
use crate::fs::docroot::{Docroot, Io};
use crate::fs::lookup::{Lookup, LookupError};
use crate::http::content_type::content_type;
use crate::http::percent::encode_path;
use crate::offload::bwlimit::Limiter;
use crate::offload::digest::{self, Sums};
use crate::offload::filter::Filter;
use crate::offload::remove::{self, RemoveError, Removed};
use crate::offload::stamp::Stamp;
use crate::offload::store::Store;
use crate::offload::transfer::{self, S3Error, Target};
use crate::offload::verify::{self, Evidence, Local};
use crate::s3::{MAX_PARTS, MIN_PART};

/// Parts are this large unless a file needs larger ones to fit in S3's 10,000.
const PART_SIZE: u64 = 8 << 20;

/// What one route's run needs for each of its files.
pub struct Job<'c> {
    pub config: &'c Config,
    pub route: &'c Route,
    /// The route's `offload:` block.
    pub settings: &'c Offload,
    /// `None` on a dry run: nothing is sent.
    pub store: Option<Arc<Store>>,
    pub min_age: Duration,
    /// Parts in flight across all files of the run (each holds one part in memory).
    pub slots: Arc<Semaphore>,
    /// `--include` / `--exclude`.
    pub filter: &'c Filter,
    /// `--bwlimit`, shared by every route of the run.
    pub limiter: Option<Arc<Limiter>>,
}

/// What a file's line and JSON object say besides how it ended.
#[derive(Debug, Default)]
pub struct Trace {
    /// The key it goes (or went) to, once known.
    pub key: Option<String>,
    /// Its checksum as computed here (`crc64nvme:<base64>`), once known.
    pub checksum: Option<String>,
    /// Its size when it was opened.
    pub size: u64,
    /// Its stamp when it was opened.
    pub stamp: Option<Stamp>,
}

/// How one file ended.
#[derive(Debug)]
pub enum Done {
    Uploaded {
        bytes: u64,
        removed: Removed,
    },
    AlreadyThere {
        removed: Removed,
    },
    /// Dry run: the object it would go to (`s3://bucket/key`).
    WouldMove {
        to: String,
        bytes: u64,
    },
    /// Changed too recently: it may move in this much time, if it stays unchanged.
    TooYoung {
        wait: Duration,
    },
    /// The server would not redirect its path to its key once it is gone (another route
    /// answers it, or the path is refused): moving it would lose it.
    NotRedirected(String),
    /// Gone (or no longer a regular file) before this run could move it: another run moved
    /// it, or the application removed it. Not a failure.
    MovedElsewhere,
    /// The bucket has different bytes at the key, or bytes that cannot be compared.
    Conflict(String),
    Failed(Failure),
}

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    S3(#[from] S3Error),
    #[error("cannot read it: {0}")]
    Read(std::io::Error),
    #[error("the upload did not verify: {0}")]
    NotVerified(String),
    #[error("{0}")]
    Remove(#[from] RemoveError),
    #[error("it changed after the upload began, so it was kept; {}", match .0 {
        None => "the upload was withdrawn, and the next run sends the new bytes".to_owned(),
        Some(e) => format!("withdrawing the upload failed ({e}), so the next run reports a conflict"),
    })]
    ChangedDuringUpload(Option<S3Error>),
}

impl Done {
    /// The word for it in `--json` output and in metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Done::Uploaded { .. } => "uploaded",
            Done::AlreadyThere { .. } => "exists",
            Done::WouldMove { .. } => "would_move",
            Done::TooYoung { .. } => "waiting",
            Done::NotRedirected(_) => "skipped",
            Done::MovedElsewhere => "moved_elsewhere",
            Done::Conflict(_) => "conflict",
            Done::Failed(_) => "failed",
        }
    }

    /// Why the run must stop starting new files, if it must: every other file would meet the
    /// same.
    pub fn stops_the_run(&self) -> Option<&'static str> {
        match self {
            Done::Failed(Failure::S3(e)) => e.stops_the_run(),
            _ => None,
        }
    }
}

/// Every lookup says "missing": the server's view of a path once its file is offloaded.
struct AsIfGone;

impl Io for AsIfGone {
    type Pending = Infallible;

    fn lookup(
        &self,
        _root: &Arc<Docroot>,
        _relative: &str,
    ) -> Result<Result<Lookup, LookupError>, Infallible> {
        Ok(Ok(Lookup::Missing))
    }
}

/// The key the server will redirect `relative` to once its file is gone, computed by the
/// server's own `decide`; or why it would not redirect there.
pub fn redirect_key(config: &Config, route: &Route, relative: &str) -> Result<String, String> {
    let path = format!("{}/{}", route.prefix, encode_path(relative));
    let headers = HeaderMap::new();
    let request = Request {
        method: &Method::GET,
        path: &path,
        query: None,
        headers: &headers,
    };
    let Ok(decided) = decide(&config.site, &request, SystemTime::now(), &AsIfGone);
    let same_route = decided.route.is_some_and(|r| std::ptr::eq(r, route));
    let key = key::of(route, relative);
    match &decided.decision {
        Decision::Answer(Answer::Redirect(_)) if same_route && decided.key() == Some(key) => {
            Ok(key.to_string())
        }
        Decision::Answer(Answer::Reject(reject)) => Err(format!(
            "the server answers {path} with {}: {reject}",
            reject.status()
        )),
        _ if !same_route => Err(format!(
            "{path} is answered by route {}",
            decided.route.map_or("(none)", |r| r.prefix.as_str())
        )),
        _ => Err(format!("the server would not redirect {path} to {key}")),
    }
}

/// Parts of a multipart upload of `len` bytes.
pub fn part_size(len: u64) -> u64 {
    len.div_ceil(MAX_PARTS)
        .next_multiple_of(1 << 20)
        .max(PART_SIZE)
        .max(MIN_PART)
}

impl Job<'_> {
    // Long on purpose: the steps that earn a removal, in the order the module's evidence list gives them.
    /// Takes `relative` as far as the evidence allows, noting in `trace` what it learns.
    pub async fn offload(&self, relative: &str, trace: &mut Trace) -> Done {
        let (file, stamp) = match self.open(relative).await {
            Ok(Some(opened)) => opened,
            Ok(None) => return Done::MovedElsewhere,
            Err(e) => return Done::Failed(Failure::Read(e)),
        };
        trace.size = stamp.size;
        trace.stamp = Some(stamp);
        let age = stamp.unchanged_for(SystemTime::now());
        if age < self.min_age {
            return Done::TooYoung {
                wait: self.min_age - age,
            };
        }
        let key = match redirect_key(self.config, self.route, relative) {
            Ok(key) => key,
            Err(why) => return Done::NotRedirected(why),
        };
        trace.key = Some(key.clone());
        let Some(store) = &self.store else {
            return Done::WouldMove {
                to: format!("s3://{}/{key}", self.bucket_name()),
                bytes: stamp.size,
            };
        };
        let cache_control = self
            .route
            .cache_control
            .as_ref()
            .and_then(|v| v.to_str().ok());
        let target = Target {
            store,
            key: &key,
            content_type: &content_type(relative),
            cache_control,
            limiter: self.limiter.as_ref(),
        };
        let after = &self.settings.after;
        let uploaded = match self.upload(&target, &file, stamp.size, trace).await {
            Err(Step::Failed(Failure::S3(S3Error::ChecksumsRefused { .. }))) => {
                // Files in flight meanwhile meet the same refusal: each tries again, and the
                // first says so.
                if store.fall_back_to_md5() {
                    tracing::warn!(
                        "S3 at {} refuses the x-amz-checksum-* headers: uploads to bucket {} carry Content-MD5 only from now on, verified by the ETag S3 computes",
                        store.endpoint,
                        store.bucket
                    );
                }
                self.upload(&target, &file, stamp.size, trace).await
            }
            other => other,
        };
        match uploaded {
            Ok(Some(bytes)) => match remove::remove(self.route, after, relative, &file, &stamp) {
                Ok(removed) => Done::Uploaded { bytes, removed },
                Err(RemoveError::Gone) => Done::MovedElsewhere,
                Err(RemoveError::Changed) => {
                    // The object holds bytes the file no longer has; this run put it there, so
                    // it takes it back rather than leave a conflict for the next run.
                    let withdrawn = transfer::withdraw(&target).await;
                    Done::Failed(Failure::ChangedDuringUpload(withdrawn.err()))
                }
                Err(e) => Done::Failed(e.into()),
            },
            Ok(None) => match remove::remove(self.route, after, relative, &file, &stamp) {
                Ok(removed) => Done::AlreadyThere { removed },
                Err(RemoveError::Gone) => Done::MovedElsewhere,
                Err(e) => Done::Failed(e.into()),
            },
            Err(Step::Conflict(why)) => Done::Conflict(why),
            Err(Step::Failed(failure)) => Done::Failed(failure),
        }
    }

    fn bucket_name(&self) -> &str {
        self.route.bucket.as_ref().map_or("", |b| b.name())
    }

    /// Opens the file beneath the root by the serving rules, and stamps it from the open
    /// descriptor. `None`: it is no longer a regular file there.
    async fn open(&self, relative: &str) -> std::io::Result<Option<(Arc<File>, Stamp)>> {
        let docroot = Arc::clone(&self.route.docroot);
        let relative = relative.to_owned();
        let looked_up = tokio::task::spawn_blocking(move || docroot.lookup(&relative))
            .await
            .map_err(std::io::Error::other)?;
        match looked_up {
            Ok(Lookup::File(file, meta)) => Ok(Some((file, Stamp::of(&meta)))),
            Ok(_) => Ok(None),
            Err(LookupError::PermissionDenied) => {
                Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            }
            Err(LookupError::NoDescriptors) => {
                Err(std::io::Error::other("out of file descriptors"))
            }
            Err(LookupError::Io(e)) => Err(e),
        }
    }

    /// Makes sure the bucket holds the file's `len` bytes at the target's key, and proves it.
    /// `Some(bytes)`: uploaded now; `None`: it was already there.
    async fn upload(
        &self,
        target: &Target<'_>,
        file: &Arc<File>,
        len: u64,
        trace: &mut Trace,
    ) -> Result<Option<u64>, Step> {
        if len >= self.settings.multipart_threshold {
            return self.upload_in_parts(target, file, len, trace).await;
        }
        // The checksums travel in the request's headers, so they come first.
        let sums = hash(file, move |file| Sums::of_file(file, len)).await?;
        trace.checksum = Some(format!("crc64nvme:{}", sums.crc64_base64()));
        let local = Local::single(&sums);
        let stored = match transfer::put(target, file, &sums).await {
            Ok(stored) => stored,
            // Something is at the key already (the PUT never overwrites): compare.
            Err(S3Error::Appeared { .. }) => return self.already_there(target, &local).await,
            Err(e) => return Err(e.into()),
        };
        // S3 answers a PUT with the checksum it verified the bytes against, and an ETag it
        // computed from them: evidence of what it stored. If it said neither, ask.
        match verify::compare(&stored, &local) {
            Evidence::Same => Ok(Some(len)),
            Evidence::Unknown(_) => self.read_back(target, &local).await.map(|()| Some(len)),
            Evidence::Different(why) => Err(Step::Failed(Failure::NotVerified(why))),
        }
    }

    /// A large file: looked for first (sending it again would be costly), then sent in parts,
    /// then read back.
    async fn upload_in_parts(
        &self,
        target: &Target<'_>,
        file: &Arc<File>,
        len: u64,
        trace: &mut Trace,
    ) -> Result<Option<u64>, Step> {
        let part_size = part_size(len);
        let local_parts = |sums: &[Sums], trace: &mut Trace| {
            let local = Local::parts(sums);
            trace.checksum = Some(format!("crc64nvme:{}", digest::crc64_base64(local.crc64)));
            local
        };
        if transfer::stored(target).await?.is_some() {
            let sums = hash(file, move |f| part_sums(f, len, part_size)).await?;
            return self.already_there(target, &local_parts(&sums, trace)).await;
        }
        match transfer::put_multipart(target, file, len, part_size, &self.slots).await {
            Ok(parts) => self
                .read_back(target, &local_parts(&parts, trace))
                .await
                .map(|()| Some(len)),
            // Another run completed the same key first (If-None-Match: *): compare.
            Err(S3Error::Appeared { .. }) => {
                let sums = hash(file, move |f| part_sums(f, len, part_size)).await?;
                self.already_there(target, &local_parts(&sums, trace)).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An object is at the key already: the same bytes (`None`, nothing to upload) or a
    /// conflict.
    async fn already_there(&self, target: &Target<'_>, local: &Local) -> Result<Option<u64>, Step> {
        let Some(stored) = transfer::stored(target).await? else {
            return Err(Step::Failed(Failure::NotVerified(
                "an object was at the key, and then was not".to_owned(),
            )));
        };
        match verify::compare(&stored, local) {
            Evidence::Same => Ok(None),
            Evidence::Different(why) => Err(Step::Conflict(format!(
                "s3://{}/{} already holds other bytes: {why}",
                target.store.bucket, target.key
            ))),
            Evidence::Unknown(why) => Err(Step::Conflict(format!(
                "s3://{}/{} already exists and cannot be compared: {why}",
                target.store.bucket, target.key
            ))),
        }
    }

    /// A HEAD of the object must show the local bytes' length and checksum.
    async fn read_back(&self, target: &Target<'_>, local: &Local) -> Result<(), Step> {
        let stored = transfer::stored(target).await?.ok_or_else(|| {
            Step::Failed(Failure::NotVerified(
                "the object is not there after the upload".to_owned(),
            ))
        })?;
        match verify::compare(&stored, local) {
            Evidence::Same => Ok(()),
            Evidence::Different(why) | Evidence::Unknown(why) => {
                Err(Step::Failed(Failure::NotVerified(why)))
            }
        }
    }
}

/// Runs a hash of `file` on the blocking pool.
async fn hash<T: Send + 'static>(
    file: &Arc<File>,
    sums: impl FnOnce(&File) -> std::io::Result<T> + Send + 'static,
) -> Result<T, Step> {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || sums(&file))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(|e| Step::Failed(Failure::Read(e)))
}

/// The checksums of each `part_size` part of the first `len` bytes of `file`.
fn part_sums(file: &File, len: u64, part_size: u64) -> std::io::Result<Vec<Sums>> {
    use std::os::unix::fs::FileExt;
    let mut sums = Vec::new();
    let mut buf = Vec::new();
    let mut offset = 0;
    while offset < len {
        let size = part_size.min(len - offset);
        buf.resize(usize::try_from(size).map_err(std::io::Error::other)?, 0);
        file.read_exact_at(&mut buf, offset)?;
        sums.push(Sums::of(&buf));
        offset += size;
    }
    Ok(sums)
}

/// Why an upload did not end in proof.
enum Step {
    Conflict(String),
    Failed(Failure),
}

impl From<S3Error> for Step {
    fn from(e: S3Error) -> Self {
        Step::Failed(Failure::S3(e))
    }
}
