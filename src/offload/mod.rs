//! `spillway offload`: the other half of a migration. Moves each route's files to the exact keys
//! the proxy redirects to, proves they arrived, and only then removes the local copies.
//!
//! A file is removed only when all of this holds, checked in this order:
//! 1. it is a regular file the server would serve (beneath the root, not a dotfile or symlink),
//!    unchanged for `min_age`;
//! 2. the server's own `decide`, with the file gone, redirects its path to exactly this key;
//! 3. the bucket holds it: uploaded now with checksums S3 verified on arrival, or already there;
//! 4. S3 itself says what it stored, and it matches: the CRC64NVME it verified (or the ETag it
//!    computed) in its answer to the upload, or a HEAD of the object for multipart uploads and
//!    objects already there (length and checksum); a missing checksum is not a match;
//! 5. its identity and content stamp (device, inode, size, mtime and ctime in nanoseconds) are
//!    what they were before the upload, checked again as it is moved aside, just before removal.
//!
//! Anything else keeps the file. One failure does not stop the other files; credentials S3
//! refuses stop the run.

pub mod digest;
pub mod file;
pub mod remove;
pub mod report;
pub mod stamp;
pub mod transfer;
pub mod verify;
pub mod walk;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch as signal_watch, Semaphore};

use crate::config::{Config, Route};
use crate::core::path::encode_relative;
use file::{Done, Job};
use report::{Report, Summary};
use walk::Found;

/// What the command line asks for.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Route prefixes; empty: every route with a bucket.
    pub routes: Vec<String>,
    pub dry_run: bool,
    /// Overrides every route's `min_age`.
    pub min_age: Option<Duration>,
    pub watch: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("no route {0} in the config (routes: {1})")]
    NoSuchRoute(String, String),
    #[error("route {0} has no bucket to offload to")]
    NoBucket(String),
    #[error("no route has a bucket: nothing to offload")]
    NothingToDo,
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

/// The routes to offload, in config order.
pub fn routes<'c>(config: &'c Config, asked: &[String]) -> Result<Vec<&'c Route>, OffloadError> {
    let shown = |prefix: &str| {
        if prefix.is_empty() {
            "/".to_owned()
        } else {
            prefix.to_owned()
        }
    };
    if asked.is_empty() {
        let routes: Vec<&Route> = config
            .routes
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.bucket.is_some())
            .collect();
        if routes.is_empty() {
            return Err(OffloadError::NothingToDo);
        }
        return Ok(routes);
    }
    asked
        .iter()
        .map(|prefix| {
            let wanted = prefix.trim_end_matches('/');
            let route = config
                .routes
                .iter()
                .find(|(p, _)| *p == wanted)
                .map(|(_, r)| r)
                .ok_or_else(|| {
                    let all: Vec<String> = config.routes.iter().map(|(p, _)| shown(p)).collect();
                    OffloadError::NoSuchRoute(prefix.clone(), all.join(", "))
                })?;
            match route.bucket {
                Some(_) => Ok(route),
                None => Err(OffloadError::NoBucket(shown(&route.prefix))),
            }
        })
        .collect()
}

/// Runs an offload of `config`'s routes as `options` say; returns what happened.
pub fn run(config: Config, options: Options) -> Result<Summary, OffloadError> {
    let chosen = routes(&config, &options.routes)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(OffloadError::Runtime)?;
    let report = Report::new(options.dry_run);
    runtime.block_on(async {
        let stop = stop_on_signals();
        for route in chosen {
            let job = job(&config, route, &options).await;
            if options.watch {
                watch::watch(&job, &report, stop.clone()).await;
            } else {
                let (tx, rx) = mpsc::channel(1024);
                let walker = spawn_walk(route, tx);
                offload_all(&job, &report, rx, stop.clone(), None).await;
                let _ = walker.await;
            }
            if *stop.borrow() {
                break;
            }
        }
    });
    Ok(report.finish())
}

/// What a route's files share.
async fn job<'c>(config: &'c Config, route: &'c Route, options: &Options) -> Job<'c> {
    let client = match (&route.bucket, options.dry_run) {
        (Some(bucket), false) => Some(crate::s3::client::client(bucket).await),
        _ => None,
    };
    Job {
        config,
        route,
        client,
        min_age: options.min_age.unwrap_or(route.offload.min_age),
        slots: Arc::new(Semaphore::new(route.offload.concurrency)),
    }
}

/// Walks `route` on the blocking pool, sending what it finds until the receiver is gone.
pub fn spawn_walk(route: &Route, tx: mpsc::Sender<Found>) -> tokio::task::JoinHandle<()> {
    let walk = walk::Walk::of(route);
    tokio::task::spawn_blocking(move || walk.run(|found| tx.blocking_send(found).is_ok()))
}

/// Takes every file `found` sends as far as it goes, `concurrency` at a time, until the
/// walk ends or `stop` is set. Files in flight when it is set still finish (or fail) whole.
/// With `young`, files too young to move are collected there (with how long they must wait)
/// instead of reported.
pub async fn offload_all(
    job: &Job<'_>,
    report: &Report,
    mut found: mpsc::Receiver<Found>,
    mut stop: signal_watch::Receiver<bool>,
    mut young: Option<&mut Vec<(String, Duration)>>,
) {
    let concurrency = job.route.offload.concurrency;
    let mut in_flight = FuturesUnordered::new();
    let mut walking = true;
    let mut stopping = *stop.borrow();
    loop {
        if in_flight.is_empty() && (!walking || stopping) {
            break;
        }
        tokio::select! {
            next = found.recv(), if walking && !stopping && in_flight.len() < concurrency => {
                match next {
                    Some(Found::File { relative, size }) => {
                        report.found(size);
                        in_flight.push(async move {
                            let done = job.offload(&relative).await;
                            (relative, size, done)
                        });
                    }
                    Some(Found::Skipped { relative, why }) => report.skipped(&url_path(job.route, &relative), why),
                    Some(Found::SetAside { dir, name }) => restore(job.route, report, &dir, &name),
                    None => walking = false,
                }
            }
            Some((relative, size, done)) = in_flight.next(), if !in_flight.is_empty() => {
                if done.stops_the_run() && !stopping {
                    stopping = true;
                    report.line(
                        "stopping   S3 refuses the credentials: no other file is tried".to_owned(),
                    );
                }
                match (&mut young, &done) {
                    (Some(young), Done::TooYoung { wait }) => young.push((relative, *wait)),
                    _ => report.done(&url_path(job.route, &relative), size, &done),
                }
            }
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow();
                if stopping && walking {
                    report.interrupted();
                }
            }
        }
    }
}

/// Puts back a file an interrupted run set aside.
fn restore(route: &Route, report: &Report, dir: &str, name: &str) {
    match remove::restore(route, dir, name) {
        Ok(relative) => report.line(format!(
            "restored   {}: an interrupted run had set it aside",
            url_path(route, &relative)
        )),
        Err(e) => report.line(format!(
            "warning    {}: an interrupted run set this aside and it cannot be put back: {e}",
            url_path(route, &format!("{dir}{name}"))
        )),
    }
}

/// The URL path of a file, as clients request it.
pub fn url_path(route: &Route, relative: &str) -> String {
    format!("{}/{}", route.prefix, encode_relative(relative))
}

/// A flag set on SIGTERM or SIGINT: no new file starts; files in flight finish.
fn stop_on_signals() -> signal_watch::Receiver<bool> {
    let (tx, rx) = signal_watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping: files in flight finish, no new ones start");
        let _ = tx.send(true);
        // A second signal stops at once; what is in flight is left (nothing half-verified is
        // ever removed, so nothing is lost).
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        std::process::exit(130);
    });
    rx
}
