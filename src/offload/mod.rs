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

pub mod admin;
pub mod bwlimit;
pub mod client;
pub mod digest;
pub mod file;
pub mod filter;
pub mod metrics;
pub mod probe;
pub mod remove;
pub mod report;
pub mod stamp;
pub mod store;
pub mod transfer;
pub mod verify;
pub mod walk;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, watch as signal_watch, Semaphore};

use crate::config::Config;
use crate::core::site::{Offload, Route};
use crate::http::percent::encode_path;
use bwlimit::Limiter;
use file::{Job, Trace};
use filter::Filter;
use metrics::OffloadMetrics;
use report::{Finished, Report, Summary};
use store::Store;
use walk::Found;

/// What the command line asks for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Route prefixes; empty: every route with an `offload:` block.
    pub routes: Vec<String>,
    pub dry_run: bool,
    /// Overrides every route's `min_age`.
    pub min_age: Option<Duration>,
    pub watch: bool,
    /// One JSON object per file on stdout.
    pub json: bool,
    /// Globs on the path below the prefix.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Bytes per second over the whole run.
    pub bwlimit: Option<u64>,
    /// With `watch`: where to serve `/metrics`, `/healthz` and `/readyz`.
    pub admin: Option<SocketAddr>,
    /// With `watch`: a full walk at least this often.
    pub rescan: Duration,
}

/// Why a run could not start. Each is a configuration, credentials or usage problem (exit
/// status 3): no file was touched.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("no route {0} in the config (routes: {1})")]
    NoSuchRoute(String, String),
    #[error("route {0} has no `offload:` block, so offload never touches its files; add one to the route to move them (an empty `offload: {{}}` takes the defaults)")]
    NotOffloaded(String),
    #[error("no route has an `offload:` block: nothing to offload (add one to each route whose files should move; see README, Offload)")]
    NothingToDo,
    #[error(transparent)]
    Filter(#[from] filter::BadGlob),
    #[error(transparent)]
    NoCredentials(#[from] store::NoCredentials),
    #[error(transparent)]
    Admin(#[from] admin::BindError),
    #[error("cannot start: {0}")]
    Runtime(std::io::Error),
}

fn shown(prefix: &str) -> String {
    if prefix.is_empty() {
        "/".to_owned()
    } else {
        prefix.to_owned()
    }
}

/// The routes to offload, in config order, with their `offload:` blocks: those asked for, or
/// every route that has one. A route without one is never touched.
pub fn routes<'c>(
    config: &'c Config,
    asked: &[String],
) -> Result<Vec<(&'c Route, &'c Offload)>, OffloadError> {
    if asked.is_empty() {
        let routes: Vec<_> = config
            .site
            .routes
            .iter()
            .filter_map(|(_, r)| Some((r, r.offload.as_ref()?)))
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
                .site
                .routes
                .iter()
                .find(|(p, _)| *p == wanted)
                .map(|(_, r)| r)
                .ok_or_else(|| {
                    let all: Vec<String> =
                        config.site.routes.iter().map(|(p, _)| shown(p)).collect();
                    OffloadError::NoSuchRoute(prefix.clone(), all.join(", "))
                })?;
            match &route.offload {
                Some(settings) => Ok((route, settings)),
                None => Err(OffloadError::NotOffloaded(shown(&route.prefix))),
            }
        })
        .collect()
}

/// Runs an offload of `config`'s routes as `options` say; returns what happened.
pub fn run(config: Config, options: Options) -> Result<Summary, OffloadError> {
    let chosen = routes(&config, &options.routes)?;
    let filter = Filter::new(&options.include, &options.exclude)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(OffloadError::Runtime)?;
    let metrics =
        (options.watch && options.admin.is_some()).then(|| Arc::new(OffloadMetrics::new()));
    let report = Report::new(
        options.dry_run,
        options.json,
        !options.watch,
        metrics.clone(),
    );
    runtime.block_on(async {
        let stores = stores(&chosen, options.dry_run).await?;
        let limiter = options.bwlimit.map(Limiter::new);
        let ready = Arc::new(AtomicBool::new(false));
        if let (Some(address), Some(metrics)) = (options.admin, &metrics) {
            let bound = admin::serve(address, Arc::clone(metrics), Arc::clone(&ready)).await?;
            report.line(format!(
                "admin      http://{bound}/metrics, /healthz, /readyz"
            ));
        }
        let jobs: Vec<Job> = chosen
            .iter()
            .map(|&(route, settings)| Job {
                config: &config,
                route,
                settings,
                store: route
                    .bucket_name
                    .as_ref()
                    .and_then(|name| stores.get(name))
                    .cloned(),
                min_age: options.min_age.unwrap_or(settings.min_age),
                slots: Arc::new(Semaphore::new(settings.concurrency)),
                filter: &filter,
                limiter: limiter.clone(),
            })
            .collect();
        let stop = stop_on_signals();
        if options.watch {
            let unwatched = AtomicUsize::new(jobs.len());
            let watching = || {
                if unwatched.fetch_sub(1, Ordering::AcqRel) == 1 {
                    ready.store(true, Ordering::Release);
                    crate::telemetry::systemd::notify("READY=1");
                }
            };
            let _watchdog = crate::telemetry::systemd::keep_watchdog_fed();
            join_all(
                jobs.iter()
                    .map(|job| watch::watch(job, &report, options.rescan, stop.clone(), watching)),
            )
            .await;
        } else {
            join_all(jobs.iter().map(|job| once(job, &report, stop.clone()))).await;
        }
        Ok::<(), OffloadError>(())
    })?;
    Ok(report.finish())
}

/// A store for each bucket the chosen routes use, each with credentials: none on a dry run.
async fn stores(
    chosen: &[(&Route, &Offload)],
    dry_run: bool,
) -> Result<HashMap<String, Arc<Store>>, OffloadError> {
    let mut stores = HashMap::new();
    if dry_run {
        return Ok(stores);
    }
    for (route, _) in chosen {
        let (Some(name), Some(bucket)) = (&route.bucket_name, &route.bucket) else {
            continue;
        };
        if !stores.contains_key(name) {
            let store = Store::connect(name, bucket).await?;
            stores.insert(name.clone(), Arc::new(store));
        }
    }
    Ok(stores)
}

/// One pass over a route: every file the walk finds, as far as it goes.
async fn once(job: &Job<'_>, report: &Report, stop: signal_watch::Receiver<bool>) {
    let (tx, rx) = mpsc::channel(1024);
    let walker = spawn_walk(job.route, tx);
    offload_all(job, report, rx, stop).await;
    let _ = walker.await;
}

/// Walks `route` on the blocking pool, sending what it finds until the receiver is gone.
pub fn spawn_walk(route: &Route, tx: mpsc::Sender<Found>) -> tokio::task::JoinHandle<()> {
    let walk = walk::Walk::of(route);
    tokio::task::spawn_blocking(move || walk.run(|found| tx.blocking_send(found).is_ok()))
}

/// Takes every file `found` sends as far as it goes, `concurrency` at a time, until the
/// walk ends or `stop` is set. Files in flight when it is set still finish (or fail) whole.
pub async fn offload_all(
    job: &Job<'_>,
    report: &Report,
    mut found: mpsc::Receiver<Found>,
    mut stop: signal_watch::Receiver<bool>,
) {
    let concurrency = job.settings.concurrency;
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
                    Some(Found::File { relative, size, .. }) if job.filter.admits(&relative) => {
                        report.found(size);
                        in_flight.push(async move {
                            let started = Instant::now();
                            let mut trace = Trace { size, ..Trace::default() };
                            let done = job.offload(&relative, &mut trace).await;
                            (relative, done, trace, started.elapsed())
                        });
                    }
                    Some(Found::File { .. }) => {}
                    Some(Found::Skipped { relative, why }) => {
                        report.skipped(&job.route.prefix, &url_path(job.route, &relative), why)
                    }
                    Some(Found::SetAside { dir, name }) => restore(job.route, report, &dir, &name),
                    Some(Found::End) | None => walking = false,
                }
            }
            Some((relative, done, trace, took)) = in_flight.next(), if !in_flight.is_empty() => {
                if let (Some(why), false) = (done.stops_the_run(), stopping) {
                    stopping = true;
                    report.line(format!("stopping   {why}: no other file is tried"));
                }
                report.done(&Finished {
                    route: &job.route.prefix,
                    path: &url_path(job.route, &relative),
                    bytes: trace.size,
                    done: &done,
                    trace: &trace,
                    took,
                });
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

/// Puts back a file an interrupted run set aside (unless a live run holds it).
fn restore(route: &Route, report: &Report, dir: &str, name: &str) {
    match remove::restore(route, dir, name) {
        Ok(None) => {}
        Ok(Some(relative)) => report.line(format!(
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
    format!("{}/{}", route.prefix, encode_path(relative))
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
