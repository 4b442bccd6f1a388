//! What an offload run tells its operator: a progress bar on a terminal (files, bytes, rate,
//! ETA), a line per file otherwise, and always a summary at the end.

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

use crate::offload::file::Done;
use crate::offload::remove::Removed;
use crate::offload::walk::Skip;

/// Counts of a run, by how each file ended.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub uploaded: u64,
    pub already_there: u64,
    pub would_move: u64,
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

impl Summary {
    /// Whether the run may exit 0: nothing failed and nothing conflicted.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.conflicts == 0
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
            Done::Vanished => self.skip("gone"),
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
                "offload: {} uploaded ({}), {} already there; {} deleted, {} archived, {} kept",
                self.uploaded,
                HumanBytes(self.bytes),
                self.already_there,
                self.deleted,
                self.archived,
                self.kept
            )?;
        }
        let skipped: u64 = self.skipped.values().sum();
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

/// Where the per-file news goes.
pub struct Report {
    /// Counts bytes (so its rate and ETA are about bytes); its message counts files.
    bar: Option<ProgressBar>,
    files: Mutex<(u64, u64)>,
    summary: Mutex<Summary>,
    started: Instant,
}

impl Report {
    /// A bar when stderr is a terminal; plain lines on stdout otherwise.
    pub fn new(dry_run: bool) -> Report {
        let bar = std::io::stderr().is_terminal().then(|| {
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
            files: Mutex::new((0, 0)),
            summary: Mutex::new(Summary {
                dry_run,
                ..Summary::default()
            }),
            started: Instant::now(),
        }
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

    pub fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// `path` (the URL path), a file of `bytes`, ended as `done`.
    pub fn done(&self, path: &str, bytes: u64, done: &Done) {
        if let Ok(mut summary) = self.summary.lock() {
            summary.count(done);
        }
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            self.count_files(0, 1, bar);
        }
        self.line(describe(path, done));
    }

    /// The run stopped (a signal) before every file was looked at.
    pub fn interrupted(&self) {
        if let Ok(mut summary) = self.summary.lock() {
            summary.interrupted = true;
        }
    }

    pub fn skipped(&self, path: &str, why: Skip) {
        if let Ok(mut summary) = self.summary.lock() {
            summary.skip(why.as_str());
        }
        self.line(format!("skipped    {path}: {}", why.as_str()));
    }

    pub fn finish(self) -> Summary {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let mut summary = self.summary.into_inner().unwrap_or_default();
        summary.elapsed = self.started.elapsed();
        summary
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
        Done::TooYoung { wait } => format!(
            "skipped    {path}: changed too recently (may move in {})",
            humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
        ),
        Done::NotRedirected(why) => format!("skipped    {path}: {why}"),
        Done::Vanished => format!("skipped    {path}: gone"),
        Done::Conflict(why) => format!("conflict   {path}: {why}; the file was kept"),
        Done::Failed(why) => format!("failed     {path}: {why}"),
    }
}
