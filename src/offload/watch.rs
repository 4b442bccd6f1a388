//! `offload --watch`: keeps moving a route's files as they become old enough.
//!
//! inotify (through `notify`) says which paths changed; each is due `min_age` after its last
//! change. A full walk runs at the start, whenever events were lost (the queue is bounded and
//! so is the set of pending paths), and every `RESCAN` in any case. Memory stays bounded
//! whatever the tree or the event rate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch as signal_watch};
use tokio::time::Instant;

use crate::offload::file::Job;
use crate::offload::remove::QUARANTINE_PREFIX;
use crate::offload::report::Report;
use crate::offload::walk::Found;
use crate::offload::{offload_all, spawn_walk};

/// Paths waiting for their `min_age`, at most.
const MAX_PENDING: usize = 100_000;
/// Events queued between batches, at most; more mean a rescan.
const EVENT_QUEUE: usize = 4096;
/// A full walk at least this often, for anything notifications missed.
const RESCAN: Duration = Duration::from_secs(600);

/// Watches `job`'s route until `stop` is set.
pub async fn watch(job: &Job<'_>, report: &Report, mut stop: signal_watch::Receiver<bool>) {
    let root = job.route.docroot.path().to_owned();
    let lost = Arc::new(AtomicBool::new(false));
    let (events_tx, mut events) = mpsc::channel::<PathBuf>(EVENT_QUEUE);
    let lost_events = Arc::clone(&lost);
    let watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                for path in event.paths {
                    if events_tx.try_send(path).is_err() {
                        lost_events.store(true, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => lost_events.store(true, Ordering::Relaxed),
        });
    let mut watcher = match watcher {
        Ok(watcher) => watcher,
        Err(e) => {
            report.line(format!(
                "warning    cannot watch {}: {e}; rescanning every {}s instead",
                root.display(),
                RESCAN.as_secs()
            ));
            return rescan_only(job, report, stop).await;
        }
    };
    if let Err(e) = watcher.watch(&root, RecursiveMode::Recursive) {
        report.line(format!(
            "warning    cannot watch {}: {e}; rescanning every {}s instead",
            root.display(),
            RESCAN.as_secs()
        ));
        return rescan_only(job, report, stop).await;
    }
    report.line(format!(
        "watching   {} ({})",
        job.route.prefix,
        root.display()
    ));
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut next_rescan = Instant::now();
    while !*stop.borrow() {
        let now = Instant::now();
        let events_lost = lost.swap(false, Ordering::Relaxed);
        if now >= next_rescan || events_lost {
            pending.clear();
            let (tx, rx) = mpsc::channel(1024);
            let walker = spawn_walk(job.route, tx);
            schedule_young(job, report, rx, stop.clone(), &mut pending, &lost).await;
            let _ = walker.await;
            next_rescan = Instant::now() + RESCAN;
            continue;
        }
        let due: Vec<String> = pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(relative, _)| relative.clone())
            .collect();
        if !due.is_empty() {
            for relative in &due {
                pending.remove(relative);
            }
            let (tx, rx) = mpsc::channel(due.len());
            for relative in due {
                let _ = tx.try_send(Found::File { relative, size: 0 });
            }
            drop(tx);
            schedule_young(job, report, rx, stop.clone(), &mut pending, &lost).await;
            continue;
        }
        let wake = pending
            .values()
            .min()
            .copied()
            .unwrap_or(next_rescan)
            .min(next_rescan);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            changed = stop.changed() => if changed.is_err() { return },
            Some(path) = events.recv() => {
                note_change(job, &root, &path, &mut pending, &lost);
                // Take whatever else is queued without waiting.
                while let Ok(path) = events.try_recv() {
                    note_change(job, &root, &path, &mut pending, &lost);
                }
            }
        }
    }
}

/// Offloads what `found` sends and schedules the files still too young.
async fn schedule_young(
    job: &Job<'_>,
    report: &Report,
    found: mpsc::Receiver<Found>,
    stop: signal_watch::Receiver<bool>,
    pending: &mut HashMap<String, Instant>,
    lost: &AtomicBool,
) {
    let mut young = Vec::new();
    offload_all(job, report, found, stop, Some(&mut young)).await;
    let now = Instant::now();
    for (relative, wait) in young {
        remember(pending, relative, now + wait, lost);
    }
}

/// A path changed: it is due `min_age` from now. A directory (created, or moved in with files
/// already in it) means a walk.
fn note_change(
    job: &Job<'_>,
    root: &Path,
    path: &Path,
    pending: &mut HashMap<String, Instant>,
    lost: &AtomicBool,
) {
    let Some(relative) = path.strip_prefix(root).ok().and_then(Path::to_str) else {
        return;
    };
    let name = relative.rsplit('/').next().unwrap_or(relative);
    if relative.is_empty() || job.route.hides(relative) || name.starts_with(QUARANTINE_PREFIX) {
        return;
    }
    match path.symlink_metadata() {
        // Gone again (offload's own removals among them): nothing to move.
        Err(_) => return,
        Ok(meta) if meta.is_dir() => {
            lost.store(true, Ordering::Relaxed);
            return;
        }
        Ok(_) => {}
    }
    remember(
        pending,
        relative.to_owned(),
        Instant::now() + job.min_age,
        lost,
    );
}

fn remember(
    pending: &mut HashMap<String, Instant>,
    relative: String,
    at: Instant,
    lost: &AtomicBool,
) {
    if pending.len() >= MAX_PENDING && !pending.contains_key(&relative) {
        // Forgotten now, found by the next walk.
        lost.store(true, Ordering::Relaxed);
        return;
    }
    pending.insert(relative, at);
}

/// Without notifications: walk every `RESCAN` (or sooner, when a file will be old enough).
async fn rescan_only(job: &Job<'_>, report: &Report, mut stop: signal_watch::Receiver<bool>) {
    while !*stop.borrow() {
        let (tx, rx) = mpsc::channel(1024);
        let walker = spawn_walk(job.route, tx);
        let mut young = Vec::new();
        offload_all(job, report, rx, stop.clone(), Some(&mut young)).await;
        let _ = walker.await;
        let wait = young
            .iter()
            .map(|(_, w)| *w)
            .min()
            .unwrap_or(RESCAN)
            .min(RESCAN);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}
