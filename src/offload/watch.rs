//! `offload --watch`: keeps moving a route's files as they settle.
//!
//! inotify (through `notify`) says which paths changed. Only changes count: opens, reads and
//! closes without a write are what the walk and the uploads themselves cause, and removals
//! leave nothing to move. A changed file is due `min_age` after its last change and waits in a
//! timer wheel (`DelayQueue`) until then; a new or renamed-in directory is walked, since files
//! can land in it before its watch exists. A full walk runs at the start, every `--rescan`, and
//! when events were lost (the kernel's queue walk_owed, or more paths were pending than
//! `MAX_PENDING`). Idle, the loop sleeps on its timers and the inotify descriptor: no CPU.
//!
//! The loop owns every file's state, so a path is never in flight twice: waiting (a timer), due
//! (in line for one of `concurrency` slots), in flight (and changed meanwhile, or not).

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant, SystemTime, UNIX_EPOCH};

use futures_util::stream::{FuturesUnordered, StreamExt};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch as signal_watch, Notify};
use tokio_util::time::{delay_queue, DelayQueue};

use crate::offload::file::{Done, Failure, Job, Trace};
use crate::offload::remove::{Removed, QUARANTINE_PREFIX};
use crate::offload::report::{Finished, Report};
use crate::offload::stamp::Stamp;
use crate::offload::walk::{Found, Walk};
use crate::offload::{restore, url_path};

/// Paths pending at most (about 150 bytes each); past it, changes are dropped and a full walk
/// finds them instead.
pub const MAX_PENDING: usize = 250_000;
/// A full walk at least this often, for anything notifications missed (`--rescan`).
pub const RESCAN: Duration = Duration::from_secs(600);
/// A file that failed is tried again after this long.
const RETRY: Duration = Duration::from_secs(60);

/// Paths inotify reported as changed, waiting for the loop; deduplicated and bounded.
#[derive(Default)]
struct Changes {
    paths: HashSet<PathBuf>,
    lost: bool,
}

/// Where a pending file is.
enum State {
    Waiting(delay_queue::Key),
    Due,
    InFlight { changed: bool },
}

struct Pending {
    state: State,
    /// When it was first noticed (Unix ms), for the oldest-pending metric.
    since_ms: u64,
    /// Waiting after a failure: the route is not healthy until it moves.
    retrying: bool,
    /// Its "waiting" line was printed.
    said: bool,
}

/// Every file the watch knows of, and when each is due.
#[derive(Default)]
struct Queue {
    timers: DelayQueue<String>,
    files: HashMap<String, Pending>,
    due: VecDeque<String>,
    /// Files in the order they were first noticed; stale entries are skipped lazily.
    noticed: VecDeque<(u64, String)>,
    retrying: usize,
    /// A full walk is owed: something was dropped (too many pending, lost events), or the
    /// rescan interval passed.
    walk_owed: bool,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Queue {
    fn insert(&mut self, relative: String, state: State) {
        if self.files.len() >= MAX_PENDING {
            self.walk_owed = true;
            if let State::Waiting(key) = state {
                self.timers.remove(&key);
            }
            return;
        }
        let since_ms = unix_ms();
        self.noticed.push_back((since_ms, relative.clone()));
        if matches!(state, State::Due) {
            self.due.push_back(relative.clone());
        }
        self.files.insert(
            relative,
            Pending {
                state,
                since_ms,
                retrying: false,
                said: false,
            },
        );
    }

    /// `relative` changed: due `wait` from now (its last change counts). Returns whether it
    /// starts to wait now (its "waiting" line is to be said).
    fn changed(&mut self, relative: &str, wait: Duration) -> bool {
        match self.files.get_mut(relative) {
            Some(pending) => {
                match &pending.state {
                    State::Waiting(key) => self.timers.reset(key, wait),
                    State::Due => {}
                    State::InFlight { .. } => pending.state = State::InFlight { changed: true },
                }
                false
            }
            None => {
                let key = self.timers.insert(relative.to_owned(), wait);
                self.insert(relative.to_owned(), State::Waiting(key));
                match self.files.get_mut(relative) {
                    Some(pending) => {
                        pending.said = true;
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// A walk found `relative`: look at it now (its own stamp says how old it is).
    fn found(&mut self, relative: String) {
        match self.files.get_mut(&relative) {
            Some(pending) => {
                if let State::Waiting(key) = &pending.state {
                    self.timers.remove(key);
                    pending.state = State::Due;
                    if pending.retrying {
                        pending.retrying = false;
                        self.retrying -= 1;
                    }
                    self.due.push_back(relative);
                }
            }
            None => self.insert(relative, State::Due),
        }
    }

    /// Its timer fired.
    fn expired(&mut self, relative: String) {
        if let Some(pending) = self.files.get_mut(&relative) {
            if matches!(pending.state, State::Waiting(_)) {
                pending.state = State::Due;
                if pending.retrying {
                    pending.retrying = false;
                    self.retrying -= 1;
                }
                self.due.push_back(relative);
            }
        }
    }

    fn next_due(&mut self) -> Option<String> {
        let relative = self.due.pop_front()?;
        if let Some(pending) = self.files.get_mut(&relative) {
            pending.state = State::InFlight { changed: false };
        }
        Some(relative)
    }

    /// A file went as far as it could: gone from the queue, or waiting again. Returns whether
    /// its "waiting" line is still to be said.
    fn finished(&mut self, relative: &str, done: &Done, min_age: Duration) -> bool {
        let MapEntry::Occupied(mut entry) = self.files.entry(relative.to_owned()) else {
            return false;
        };
        let changed = matches!(entry.get().state, State::InFlight { changed: true });
        let (wait, retry) = match done {
            Done::TooYoung { wait } => (Some(*wait), false),
            // Being written, not failing: it moves once it has settled, as any change.
            Done::Failed(Failure::ChangedDuringUpload(None)) => (Some(min_age), false),
            Done::Failed(_) => (Some(RETRY), true),
            // Kept because it changed, or still there for any reason: it changed meanwhile.
            _ if changed => (Some(min_age), false),
            _ => (None, false),
        };
        let Some(wait) = wait else {
            entry.remove();
            return false;
        };
        let key = self.timers.insert(relative.to_owned(), wait);
        let pending = entry.get_mut();
        pending.state = State::Waiting(key);
        if retry {
            pending.retrying = true;
            self.retrying += 1;
        }
        let say = matches!(done, Done::TooYoung { .. }) && !pending.said;
        pending.said |= say;
        say
    }

    /// When the oldest pending file was first noticed (Unix ms).
    fn oldest(&mut self) -> Option<u64> {
        while let Some((since, relative)) = self.noticed.front() {
            match self.files.get(relative) {
                Some(pending) if pending.since_ms == *since => return Some(*since),
                _ => {
                    self.noticed.pop_front();
                }
            }
        }
        None
    }

    /// Keeps `noticed` from growing past twice what is pending (a path that comes and goes
    /// leaves entries behind an old one).
    fn compact(&mut self) {
        if self.noticed.len() > 2 * self.files.len() + 1024 {
            let mut live: Vec<(u64, String)> = self
                .files
                .iter()
                .map(|(relative, p)| (p.since_ms, relative.clone()))
                .collect();
            live.sort_unstable();
            self.noticed = live.into();
        }
    }
}

// Long on purpose: the event loop: its branches are one line each into RouteWatch, kept together so the loop reads whole.
/// Watches `job`'s route until `stop` is set. `watching` is called once the route's watch is
/// in place (or it fell back to walks alone).
pub async fn watch(
    job: &Job<'_>,
    report: &Report,
    rescan: Duration,
    mut stop: signal_watch::Receiver<bool>,
    watching: impl FnOnce(),
) {
    let root = job.route.docroot.path().to_owned();
    let changes = Arc::new(Mutex::new(Changes::default()));
    let wake = Arc::new(Notify::new());
    let watcher = watch_root(
        job,
        report,
        &root,
        rescan,
        Arc::clone(&changes),
        Arc::clone(&wake),
    );
    watching();
    let (walk_tx, mut walked) = mpsc::channel::<Found>(1024);
    let mut state = RouteWatch {
        job,
        report,
        root,
        watcher,
        walker: Walk::of(job.route),
        walk_tx,
        walks: 0,
        kept: HashMap::new(),
        queue: Queue::default(),
        was_idle: false,
    };
    state.start_walk(None);
    let mut in_flight = FuturesUnordered::new();
    let mut next_rescan = tokio::time::Instant::now() + rescan;
    let mut stopping = *stop.borrow();
    while !(stopping && in_flight.is_empty()) {
        while !stopping && in_flight.len() < job.settings.concurrency {
            let Some(relative) = state.queue.next_due() else {
                break;
            };
            in_flight.push(async move {
                let started = StdInstant::now();
                let mut trace = Trace::default();
                let done = job.offload(&relative, &mut trace).await;
                (relative, done, trace, started.elapsed())
            });
        }
        state.settle(in_flight.is_empty());
        tokio::select! {
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow();
            }
            Some((relative, done, trace, took)) = in_flight.next(), if !in_flight.is_empty() => {
                state.finished(&relative, &done, &trace, took);
            }
            Some(found) = walked.recv() => state.found(found),
            Some(expired) = state.queue.timers.next(), if !state.queue.timers.is_empty() => {
                state.queue.expired(expired.into_inner());
            }
            () = wake.notified() => {
                let (paths, lost) = match changes.lock() {
                    Ok(mut changes) => (std::mem::take(&mut changes.paths), std::mem::take(&mut changes.lost)),
                    Err(_) => (HashSet::new(), true),
                };
                state.changed(paths, lost);
            }
            () = tokio::time::sleep_until(next_rescan) => {
                next_rescan = tokio::time::Instant::now() + rescan;
                state.queue.walk_owed = true;
            }
        }
    }
}

/// Starts the inotify watch of `root` and says so; without one, the route is walked every
/// `rescan` only, and the operator is told.
fn watch_root(
    job: &Job<'_>,
    report: &Report,
    root: &Path,
    rescan: Duration,
    changes: Arc<Mutex<Changes>>,
    wake: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    match start_watcher(root, changes, wake) {
        Ok(watcher) => {
            let prefix = shown(&job.route.prefix);
            report.line(format!("watching   {prefix} ({})", root.display()));
            Some(watcher)
        }
        Err(e) => {
            report.line(format!(
                "warning    cannot watch {}: {e}; walking it every {}s instead",
                root.display(),
                rescan.as_secs()
            ));
            None
        }
    }
}

/// One route's watch between events: its queue, its walks, and what it tells.
struct RouteWatch<'j, 'c> {
    job: &'j Job<'c>,
    report: &'j Report,
    root: PathBuf,
    /// `None` when inotify could not be used: walks alone, every `--rescan`.
    watcher: Option<notify::RecommendedWatcher>,
    walker: Walk,
    /// Every walk sends what it finds here, then `Found::End`.
    walk_tx: mpsc::Sender<Found>,
    /// Walks under way.
    walks: usize,
    /// With `after: keep`: files proven in the bucket, as they were then. A walk passes over
    /// them while they stay so, instead of asking the bucket again every rescan.
    kept: HashMap<String, Stamp>,
    queue: Queue,
    /// Nothing was due, in flight or being walked when last looked.
    was_idle: bool,
}

impl RouteWatch<'_, '_> {
    /// Walks the whole root (`None`) or below a directory, on the blocking pool.
    fn start_walk(&mut self, below: Option<String>) {
        self.walks += 1;
        if let Some(metrics) = self.report.metrics() {
            let kind = if below.is_some() { "directory" } else { "full" };
            metrics.walked(&self.job.route.prefix, kind);
        }
        let walker = self.walker.clone();
        let tx = self.walk_tx.clone();
        tokio::task::spawn_blocking(move || {
            let send = |found: Found| tx.blocking_send(found).is_ok();
            match below {
                None => walker.run(send),
                Some(dir) => walker.run_below(dir, send),
            }
            let _ = tx.blocking_send(Found::End);
        });
    }

    /// Between events: a full walk if one is owed (the rescan interval, lost events, or too
    /// many pending) and none runs; the metrics; a success once the queue drains cleanly.
    fn settle(&mut self, nothing_in_flight: bool) {
        if self.queue.walk_owed && self.walks == 0 {
            self.queue.walk_owed = false;
            self.start_walk(None);
        }
        let idle = self.walks == 0 && nothing_in_flight && self.queue.due.is_empty();
        if let Some(metrics) = self.report.metrics() {
            self.queue.compact();
            let oldest = self.queue.oldest();
            metrics.pending(&self.job.route.prefix, self.queue.files.len(), oldest);
            if idle && !self.was_idle && self.queue.retrying == 0 {
                metrics.succeeded();
            }
        }
        self.was_idle = idle;
    }

    /// A file went as far as it could.
    fn finished(&mut self, relative: &str, done: &Done, trace: &Trace, took: Duration) {
        let job = self.job;
        let path = url_path(job.route, relative);
        let say_waiting = self.queue.finished(relative, done, job.min_age);
        let kept = matches!(
            done,
            Done::Uploaded {
                removed: Removed::Kept,
                ..
            } | Done::AlreadyThere {
                removed: Removed::Kept
            }
        );
        if let (true, Some(stamp)) = (kept, trace.stamp) {
            if self.kept.len() < MAX_PENDING || self.kept.contains_key(relative) {
                self.kept.insert(relative.to_owned(), stamp);
            }
        }
        match done {
            Done::TooYoung { wait } if say_waiting => self.report.waiting(&path, *wait),
            Done::TooYoung { .. } => {}
            // Gone before its turn (a temporary file, or another replica moved it): counted,
            // not said, or every short-lived file would make a line.
            Done::MovedElsewhere => {
                if let Some(metrics) = self.report.metrics() {
                    metrics.done(&job.route.prefix, done);
                }
            }
            _ => self.report.done(&Finished {
                route: &job.route.prefix,
                path: &path,
                bytes: trace.size,
                done,
                trace,
                took,
            }),
        }
    }

    /// A walk found something.
    fn found(&mut self, found: Found) {
        let job = self.job;
        match found {
            // Proven and kept, and unchanged since.
            Found::File {
                relative, stamp, ..
            } if self.kept.get(&relative) == Some(&stamp) => {}
            Found::File { relative, .. } if job.filter.admits(&relative) => {
                self.queue.found(relative)
            }
            Found::File { .. } => {}
            Found::Skipped { relative, why } => {
                let path = url_path(job.route, &relative);
                self.report.skipped(&job.route.prefix, &path, why)
            }
            Found::SetAside { dir, name } => restore(job.route, self.report, &dir, &name),
            Found::End => self.walks -= 1,
        }
    }

    /// inotify said these paths changed (or that it lost track: then a full walk is owed).
    fn changed(&mut self, paths: HashSet<PathBuf>, lost: bool) {
        if lost {
            self.queue.walk_owed = true;
            return;
        }
        let job = self.job;
        for path in paths {
            match classify(job, &self.root, &path) {
                Some(Change::File(relative)) if self.queue.changed(&relative, job.min_age) => {
                    let path = url_path(job.route, &relative);
                    self.report.waiting(&path, job.min_age);
                }
                Some(Change::File(_)) => {}
                Some(Change::Directory(relative)) => {
                    // Watched before it is walked: a file made in it (or in a directory made in
                    // it) after the walk listed it has an event then. notify adds watches for new
                    // directories itself, but only for those whose creation it saw, and a tree
                    // made with `mkdir -p` is faster than that.
                    if let Some(watcher) = self.watcher.as_mut() {
                        if watcher.watch(&path, RecursiveMode::Recursive).is_err() {
                            self.queue.walk_owed = true;
                        }
                    }
                    self.start_walk(Some(relative))
                }
                None => {}
            }
        }
    }
}

fn shown(prefix: &str) -> &str {
    if prefix.is_empty() {
        "/"
    } else {
        prefix
    }
}

/// Watches `root` recursively; what changed lands in `changes`, and `wake` is told.
fn start_watcher(
    root: &Path,
    changes: Arc<Mutex<Changes>>,
    wake: Arc<Notify>,
) -> notify::Result<notify::RecommendedWatcher> {
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(mut changes) = changes.lock() else {
            return;
        };
        match event {
            Ok(event) if event.need_rescan() => changes.lost = true,
            Ok(event) => {
                let paths = match event.kind {
                    // The new name of a rename is the second path.
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => &event.paths[1..],
                    kind if is_change(kind) => &event.paths[..],
                    _ => return,
                };
                for path in paths {
                    if changes.paths.len() >= MAX_PENDING {
                        changes.lost = true;
                        break;
                    }
                    changes.paths.insert(path.clone());
                }
            }
            Err(_) => changes.lost = true,
        }
        drop(changes);
        wake.notify_one();
    };
    // Symlinks are never moved, so nothing behind one is watched.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = notify::RecommendedWatcher::new(handler, config)?;
    watcher.watch(root, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Whether an event of this kind can leave a file to move at its path. Opens, reads and
/// closes after reading are what walks and uploads cause; a removal or the old name of a
/// rename leave nothing there.
fn is_change(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Remove(_) => false,
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => false,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any | EventKind::Other => true,
    }
}

enum Change {
    /// A regular file that may move once it is old enough.
    File(String),
    /// A directory to walk (ends in `/`): created, or moved in with files already in it.
    Directory(String),
}

/// What a changed path is, if anything offload would move.
fn classify(job: &Job<'_>, root: &Path, path: &Path) -> Option<Change> {
    let relative = path.strip_prefix(root).ok()?.to_str()?;
    let name = relative.rsplit('/').next().unwrap_or(relative);
    // Dotfiles and the like are said once by the walks, not at every event.
    if relative.is_empty() || job.route.hides(relative) || name.starts_with(QUARANTINE_PREFIX) {
        return None;
    }
    let kind = path.symlink_metadata().ok()?.file_type();
    if kind.is_dir() {
        Some(Change::Directory(format!("{relative}/")))
    } else if kind.is_file() && job.filter.admits(relative) {
        Some(Change::File(relative.to_owned()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where `done` leaves a file that was in flight: how long until it is due, and whether it
    /// counts as retrying.
    fn after(done: Done, min_age: Duration) -> (Option<Duration>, bool) {
        let mut queue = Queue::default();
        queue.insert("a.txt".to_owned(), State::Due);
        assert_eq!(queue.next_due().as_deref(), Some("a.txt"));
        queue.finished("a.txt", &done, min_age);
        let Some(pending) = queue.files.get("a.txt") else {
            return (None, false);
        };
        let State::Waiting(key) = &pending.state else {
            panic!("neither gone nor waiting");
        };
        let deadline = queue.timers.deadline(key);
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        (Some(wait), pending.retrying)
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_written_during_its_upload_waits_to_settle_and_a_failure_backs_off() {
        let min_age = Duration::from_secs(5);
        assert_eq!(
            after(Done::Failed(Failure::ChangedDuringUpload(None)), min_age),
            (Some(min_age), false)
        );
        let unreadable = std::io::Error::other("EIO");
        assert_eq!(
            after(Done::Failed(Failure::Read(unreadable)), min_age),
            (Some(RETRY), true)
        );
        assert_eq!(after(Done::MovedElsewhere, min_age), (None, false));
    }
}
