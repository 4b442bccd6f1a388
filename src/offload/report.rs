//! What an offload run tells its operator and its machines: a progress bar on a terminal
//! (files, bytes, rate, ETA), a line per file otherwise, one JSON object per file with
//! `--json`, metrics when it runs as a daemon, and always a summary at the end.
//!
//! Human lines go to stdout, or to stderr when stdout carries JSON.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::json;

use crate::offload::file::{Done, Trace};
use crate::offload::metrics::OffloadMetrics;
use crate::offload::remove::Removed;
use crate::offload::walk::Skip;

/// Skipped paths remembered so each is reported once per run, at most; past it, repeats are
/// reported again rather than memory grown.
const MAX_REMEMBERED_SKIPS: usize = 100_000;

/// Counts of a run, by how each file ended.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub uploaded: u64,
    pub already_there: u64,
    pub would_move: u64,
    pub moved_elsewhere: u64,
    pub deleted: u64,
    pub archived: u64,
    pub kept: u64,
    pub skipped: BTreeMap<&'static str, u64>,
    pub conflicts: u64,
    pub failed: u64,
    /// Bytes uploaded (or that would be, on a dry run).
    pub bytes: u64,
    pub elapsed: Duration,
    pub dry_run: bool,
    /// Stopped by a signal before every file was looked at.
    pub interrupted: bool,
}

/// The documented exit statuses of `spillway offload`.
pub mod exit {
    pub const DONE: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const CONFLICTS: u8 = 2;
    /// Configuration, credentials or usage.
    pub const USAGE: u8 = 3;
    pub const INTERRUPTED: u8 = 4;
}

impl Summary {
    /// The exit status this run ends with: interrupted, then failures, then conflicts.
    pub fn exit_status(&self) -> u8 {
        if self.interrupted {
            exit::INTERRUPTED
        } else if self.failed > 0 {
            exit::FAILED
        } else if self.conflicts > 0 {
            exit::CONFLICTS
        } else {
            exit::DONE
        }
    }

    fn count(&mut self, done: &Done) {
        match done {
            Done::Uploaded { bytes, removed } => {
                self.uploaded += 1;
                self.bytes += bytes;
                self.count_removed(removed);
            }
            Done::AlreadyThere { removed } => {
                self.already_there += 1;
                self.count_removed(removed);
            }
            Done::WouldMove { bytes, .. } => {
                self.would_move += 1;
                self.bytes += bytes;
            }
            Done::TooYoung { .. } => self.skip("too young"),
            Done::NotRedirected(_) => self.skip("not redirected to its key"),
            Done::MovedElsewhere => self.moved_elsewhere += 1,
            Done::Conflict(_) => self.conflicts += 1,
            Done::Failed(_) => self.failed += 1,
        }
    }

    fn count_removed(&mut self, removed: &Removed) {
        match removed {
            Removed::Deleted => self.deleted += 1,
            Removed::Archived(_) => self.archived += 1,
            Removed::Kept => self.kept += 1,
        }
    }

    fn skip(&mut self, why: &'static str) {
        *self.skipped.entry(why).or_default() += 1;
    }

    fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The summary as the last `--json` line.
    fn to_json(&self) -> serde_json::Value {
        json!({
            "type": "summary",
            "dry_run": self.dry_run,
            "uploaded": self.uploaded,
            "already_there": self.already_there,
            "would_move": self.would_move,
            "moved_elsewhere": self.moved_elsewhere,
            "deleted": self.deleted,
            "archived": self.archived,
            "kept": self.kept,
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "failed": self.failed,
            "bytes": self.bytes,
            "duration_ms": millis(self.elapsed),
            "interrupted": self.interrupted,
            "exit_status": self.exit_status(),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dry_run {
            write!(
                f,
                "offload --dry-run: {} would move ({}), nothing was changed",
                self.would_move,
                HumanBytes(self.bytes)
            )?;
        } else {
            write!(
                f,
                "offload: {} uploaded ({}), {} already there, {} moved elsewhere; {} deleted, {} archived, {} kept",
                self.uploaded,
                HumanBytes(self.bytes),
                self.already_there,
                self.moved_elsewhere,
                self.deleted,
                self.archived,
                self.kept
            )?;
        }
        let skipped = self.skipped_total();
        write!(f, "; {skipped} skipped")?;
        if skipped > 0 {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(why, n)| format!("{n} {why}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        write!(
            f,
            "; {} conflicts, {} failed; {:.1}s",
            self.conflicts,
            self.failed,
            self.elapsed.as_secs_f64()
        )?;
        if self.interrupted {
            f.write_str(" (interrupted)")?;
        }
        Ok(())
    }
}

/// One file that went as far as it could.
pub struct Finished<'a> {
    /// The route's prefix (the metrics label).
    pub route: &'a str,
    /// Its URL path, as clients request it.
    pub path: &'a str,
    pub bytes: u64,
    pub done: &'a Done,
    pub trace: &'a Trace,
    pub took: Duration,
}

/// Where the per-file news goes.
pub struct Report {
    /// Counts bytes (so its rate and ETA are about bytes); its message counts files.
    bar: Option<ProgressBar>,
    json: bool,
    metrics: Option<Arc<OffloadMetrics>>,
    files: Mutex<(u64, u64)>,
    summary: Mutex<Summary>,
    /// Paths already reported as skipped (a watch finds a dotfile at every rescan).
    skips_said: Mutex<HashSet<String>>,
    started: Instant,
}

impl Report {
    /// A bar when stderr is a terminal and the run has an end (`bar`: a daemon's totals would
    /// mean nothing); plain lines otherwise. With `json`, stdout carries one JSON object per file
    /// and the human lines go to stderr.
    pub fn new(
        dry_run: bool,
        json: bool,
        bar: bool,
        metrics: Option<Arc<OffloadMetrics>>,
    ) -> Report {
        let bar = (bar && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Report {
            bar,
            json,
            metrics,
            files: Mutex::new((0, 0)),
            summary: Mutex::new(Summary {
                dry_run,
                ..Summary::default()
            }),
            skips_said: Mutex::new(HashSet::new()),
            started: Instant::now(),
        }
    }

    pub fn metrics(&self) -> Option<&OffloadMetrics> {
        self.metrics.as_deref()
    }

    /// A file of `bytes` was found that will be looked at.
    pub fn found(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(bytes);
            self.count_files(1, 0, bar);
        }
    }

    fn count_files(&self, found: u64, done: u64, bar: &ProgressBar) {
        if let Ok(mut files) = self.files.lock() {
            files.0 += found;
            files.1 += done;
            bar.set_message(format!("{}/{} files", files.1, files.0));
        }
    }

    /// A line for people.
    pub fn line(&self, text: String) {
        match (&self.bar, self.json) {
            (Some(bar), _) => bar.println(text),
            (None, true) => eprintln!("{text}"),
            (None, false) => println!("{text}"),
        }
    }

    /// A line for machines (`--json` only).
    fn object(&self, value: serde_json::Value) {
        if self.json {
            let mut out = std::io::stdout().lock();
            // A closed stdout ends nothing here: the files are what matters.
            let _ = writeln!(out, "{value}");
        }
    }

    /// A file that went as far as it could.
    pub fn done(&self, file: &Finished) {
        if let Ok(mut summary) = self.summary.lock() {
            summary.count(file.done);
        }
        if let Some(bar) = &self.bar {
            bar.inc(file.bytes);
            self.count_files(0, 1, bar);
        }
        if let Some(metrics) = &self.metrics {
            metrics.done(file.route, file.done);
        }
        self.line(describe(file.path, file.done));
        if self.json {
            self.object(file_json(file));
        }
    }

    /// The run stopped (a signal) before every file was looked at.
    pub fn interrupted(&self) {
        if let Ok(mut summary) = self.summary.lock() {
            summary.interrupted = true;
        }
    }

    /// Something at `path` is never moved: said once per run.
    pub fn skipped(&self, route: &str, path: &str, why: Skip) {
        if !self.first_time(path) {
            return;
        }
        if let Ok(mut summary) = self.summary.lock() {
            summary.skip(why.as_str());
        }
        if let Some(metrics) = &self.metrics {
            metrics.skipped(route, why.as_str());
        }
        self.line(format!("skipped    {path}: {}", why.as_str()));
        self.object(json!({
            "type": "file",
            "path": path,
            "outcome": "skipped",
            "reason": why.as_str(),
        }));
    }

    fn first_time(&self, path: &str) -> bool {
        let Ok(mut said) = self.skips_said.lock() else {
            return true;
        };
        if said.contains(path) {
            return false;
        }
        if said.len() < MAX_REMEMBERED_SKIPS {
            said.insert(path.to_owned());
        }
        true
    }

    /// `--watch`: a file too young to move is waiting; said when it starts to wait.
    pub fn waiting(&self, path: &str, wait: Duration) {
        let wait = humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)));
        self.line(format!(
            "waiting    {path}: moves in {wait} if it stays unchanged"
        ));
        self.object(json!({
            "type": "file",
            "path": path,
            "outcome": "waiting",
            "reason": format!("changed too recently; moves in {wait} if it stays unchanged"),
        }));
    }

    pub fn finish(self) -> Summary {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let mut summary = self.summary.into_inner().unwrap_or_default();
        summary.elapsed = self.started.elapsed();
        if self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", summary.to_json());
        }
        summary
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The JSON object for one file.
fn file_json(file: &Finished) -> serde_json::Value {
    let done = file.done;
    let removed = match done {
        Done::Uploaded { removed, .. } | Done::AlreadyThere { removed } => Some(match removed {
            Removed::Deleted => "deleted",
            Removed::Archived(_) => "archived",
            Removed::Kept => "kept",
        }),
        _ => None,
    };
    let reason = match done {
        Done::Uploaded { .. } | Done::AlreadyThere { .. } | Done::WouldMove { .. } => None,
        _ => Some(reason(done)),
    };
    json!({
        "type": "file",
        "path": file.path,
        "key": file.trace.key,
        "bytes": file.bytes,
        "outcome": done.outcome(),
        "reason": reason,
        "removed": removed,
        "duration_ms": millis(file.took),
        "checksum": file.trace.checksum,
    })
}

/// Why a file did not move, as said after its path.
fn reason(done: &Done) -> String {
    match done {
        Done::TooYoung { wait } => format!(
            "changed too recently (may move in {})",
            humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
        ),
        Done::NotRedirected(why) | Done::Conflict(why) => why.clone(),
        Done::MovedElsewhere => {
            "gone before this run could move it (another run moved it, or it was removed)"
                .to_owned()
        }
        Done::Failed(why) => why.to_string(),
        Done::Uploaded { .. } | Done::AlreadyThere { .. } | Done::WouldMove { .. } => String::new(),
    }
}

/// The line for one file.
fn describe(path: &str, done: &Done) -> String {
    let removed = |removed: &Removed| match removed {
        Removed::Deleted => "deleted".to_owned(),
        Removed::Archived(to) => format!("archived to {}", to.display()),
        Removed::Kept => "kept".to_owned(),
    };
    match done {
        Done::Uploaded { bytes, removed: r } => {
            format!("uploaded   {path} ({}), {}", HumanBytes(*bytes), removed(r))
        }
        Done::AlreadyThere { removed: r } => {
            format!(
                "exists     {path}: same bytes already in the bucket, {}",
                removed(r)
            )
        }
        Done::WouldMove { to, bytes } => {
            format!("would move {path} -> {to} ({})", HumanBytes(*bytes))
        }
        Done::TooYoung { .. } | Done::NotRedirected(_) => {
            format!("skipped    {path}: {}", reason(done))
        }
        Done::MovedElsewhere => format!("elsewhere  {path}: {}", reason(done)),
        Done::Conflict(why) => format!("conflict   {path}: {why}; the file was kept"),
        Done::Failed(why) => format!("failed     {path}: {why}"),
    }
}
