//! The access log: one line per request, as JSON, nginx's `combined`, or `key=value` text.
//!
//! A request formats its line and hands it to a writer thread through a bounded queue, so a slow
//! or full disk never blocks the event loop: when the queue is full, or a write fails (disk
//! full), lines are dropped and counted (`spillway_access_log_dropped_total`). A file is
//! reopened on SIGUSR1, after logrotate has moved it. The path is logged, never the query
//! string (it can carry tokens), and never `Location` (a presigned link is a credential).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, StatusCode};
use prometheus::IntCounter;
use serde::Serialize;

use crate::config::{LogFormat, LogSink};
use crate::core::outcome::Outcome;

/// Lines waiting for the writer, at most; more are dropped.
const QUEUE: usize = 65_536;

/// While requests keep coming, the writer takes their lines in batches this far apart (the
/// queue holds far more than this much traffic).
const BATCH_EVERY: Duration = Duration::from_millis(10);

/// Everything a line may say about one request.
pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: Option<IpAddr>,
    pub method: &'a str,
    /// Without the query string.
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`, ...
    pub protocol: &'a str,
    pub outcome: Outcome,
    /// The status sent; `None` when no response was started.
    pub status: Option<StatusCode>,
    pub body_bytes: u64,
    pub duration: Duration,
    /// The matching route's prefix.
    pub route: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub request_id: &'a str,
    /// Why a request was rejected.
    pub reason: Option<&'a dyn std::fmt::Display>,
    /// Why the response did not reach the client whole.
    pub cut_short: Option<&'a dyn std::fmt::Display>,
    /// Under a shadow route: what spillway would have done.
    pub would: Option<Outcome>,
}

impl<'a> Entry<'a> {
    /// A request's entry, from who asked what; how it was answered is added with the methods
    /// below (until then: rejected, nothing sent, no route).
    pub fn asked(
        client: Option<IpAddr>,
        method: &'a str,
        path: &'a str,
        protocol: &'a str,
        request_id: &'a str,
        started: Instant,
    ) -> Entry<'a> {
        Entry {
            time: SystemTime::now(),
            client,
            method,
            path,
            protocol,
            outcome: Outcome::Rejected,
            status: None,
            body_bytes: 0,
            duration: started.elapsed(),
            route: None,
            user_agent: None,
            referer: None,
            request_id,
            reason: None,
            cut_short: None,
            would: None,
        }
    }

    /// The request's `User-Agent` and `Referer`.
    pub fn headers(mut self, headers: &'a HeaderMap) -> Entry<'a> {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        self.user_agent = text(http::header::USER_AGENT);
        self.referer = text(http::header::REFERER);
        self
    }

    /// How it was answered: `status` (`None`: no response was started) and body bytes sent.
    pub fn answered(
        mut self,
        route: Option<&'a str>,
        outcome: Outcome,
        status: Option<StatusCode>,
        body_bytes: u64,
    ) -> Entry<'a> {
        self.route = route;
        self.outcome = outcome;
        self.status = status;
        self.body_bytes = body_bytes;
        self
    }

    /// Why it was rejected, why its answer was cut short, what a shadow route would have done.
    pub fn why(
        mut self,
        reason: Option<&'a dyn std::fmt::Display>,
        cut_short: Option<&'a dyn std::fmt::Display>,
        would: Option<Outcome>,
    ) -> Entry<'a> {
        self.reason = reason;
        self.cut_short = cut_short;
        self.would = would;
        self
    }
}

pub struct AccessLog {
    format: LogFormat,
    queue: Option<SyncSender<String>>,
    dropped: IntCounter,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// Starts the writer for `sink` (opening a file now, so a bad path fails at startup).
    pub fn start(format: LogFormat, sink: &LogSink, dropped: IntCounter) -> io::Result<AccessLog> {
        let reopen = Arc::new(AtomicBool::new(false));
        if format == LogFormat::Off {
            return Ok(AccessLog {
                format,
                queue: None,
                dropped,
                reopen,
            });
        }
        let (queue, lines) = mpsc::sync_channel(QUEUE);
        let mut writer = Writer::open(sink.clone())?;
        let (flag, counter) = (Arc::clone(&reopen), dropped.clone());
        std::thread::Builder::new()
            .name("access log".into())
            .spawn(move || writer.run(lines, &flag, &counter))?;
        Ok(AccessLog {
            format,
            queue: Some(queue),
            dropped,
            reopen,
        })
    }

    /// Asks the writer to reopen its file (SIGUSR1).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }

    /// Formats `entry` and queues it for the writer; never waits.
    pub fn write(&self, entry: &Entry) {
        let Some(queue) = &self.queue else {
            return;
        };
        let line = match self.format {
            LogFormat::Json => json(entry),
            LogFormat::Combined => combined(entry),
            LogFormat::Text | LogFormat::Off => text(entry),
        };
        match queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// The writer thread's end.
struct Writer {
    sink: LogSink,
    out: io::BufWriter<Box<dyn Write + Send>>,
}

impl Writer {
    fn open(sink: LogSink) -> io::Result<Writer> {
        let out: Box<dyn Write + Send> = match &sink {
            LogSink::Stderr => Box::new(io::stderr()),
            LogSink::Stdout => Box::new(io::stdout()),
            LogSink::File(path) => Box::new(append(path)?),
        };
        Ok(Writer {
            sink,
            out: io::BufWriter::with_capacity(64 * 1024, out),
        })
    }

    fn run(&mut self, lines: mpsc::Receiver<String>, reopen: &AtomicBool, dropped: &IntCounter) {
        loop {
            // Idle: block, waking at least every second to reopen promptly after a rotation.
            let first = match lines.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => Some(line),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.reopen_if_asked(reopen);
            let Some(first) = first else { continue };
            self.write(&first, dropped);
            // Busy: collect in batches. A sender only wakes a receiver that is blocked in
            // `recv`, so while this thread sleeps between batches a request's line costs it
            // no wake-up (a futex call and a context switch) at all.
            loop {
                let mut written = 0;
                loop {
                    match lines.try_recv() {
                        Ok(line) => {
                            self.write(&line, dropped);
                            written += 1;
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return self.flush(dropped),
                    }
                }
                self.flush(dropped);
                if written == 0 {
                    break;
                }
                // Steady traffic keeps this loop going: a rotation is looked for here too.
                self.reopen_if_asked(reopen);
                std::thread::sleep(BATCH_EVERY);
            }
        }
    }

    fn reopen_if_asked(&mut self, reopen: &AtomicBool) {
        if reopen.swap(false, Ordering::Relaxed) {
            self.reopen();
        }
    }

    fn write(&mut self, line: &str, dropped: &IntCounter) {
        if self.out.write_all(line.as_bytes()).is_err() {
            dropped.inc();
        }
    }

    fn flush(&mut self, dropped: &IntCounter) {
        if self.out.flush().is_err() {
            // A full disk: what could not be written is gone, and counted once per batch.
            dropped.inc();
        }
    }

    fn reopen(&mut self) {
        let LogSink::File(path) = &self.sink else {
            return;
        };
        let _ = self.out.flush();
        match append(path) {
            Ok(file) => self.out = io::BufWriter::with_capacity(64 * 1024, Box::new(file)),
            Err(e) => tracing::error!("cannot reopen the access log {}: {e}", path.display()),
        }
    }
}

fn append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn status_number(status: Option<StatusCode>) -> u16 {
    status.map_or(0, |s| s.as_u16())
}

/// `key=value` pairs: strings quoted, what is absent left out.
fn text(e: &Entry) -> String {
    let mut line = String::with_capacity(256);
    let _ = write!(
        line,
        "{} request outcome={:?} status={} method={:?} path={:?} duration_us={} bytes={} route={:?} client={} request_id={:?}",
        humantime::format_rfc3339_millis(e.time),
        e.outcome.as_str(),
        status_number(e.status),
        e.method,
        e.path,
        e.duration.as_micros(),
        e.body_bytes,
        e.route.unwrap_or("-"),
        e.client.map_or("-".to_owned(), |c| c.to_string()),
        e.request_id,
    );
    if let Some(reason) = e.reason {
        let _ = write!(line, " reason={:?}", reason.to_string());
    }
    if let Some(error) = e.cut_short {
        let _ = write!(line, " cut_short=true error={:?}", error.to_string());
    }
    if let Some(would) = e.would {
        let agrees = e.status.is_some_and(|s| would.agrees_with(s));
        let _ = write!(line, " would={:?} agrees={agrees}", would.as_str());
    }
    line.push('\n');
    line
}

/// nginx's and Apache's `combined`:
/// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"`
/// (the request line without its query string).
fn combined(e: &Entry) -> String {
    let quoted = |value: Option<&str>| match value {
        Some(v) if !v.is_empty() => escape_quoted(v),
        _ => "-".to_owned(),
    };
    format!(
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"\n",
        e.client.map_or("-".to_owned(), |c| c.to_string()),
        clf_time(e.time),
        e.method,
        escape_quoted(e.path),
        e.protocol,
        status_number(e.status),
        e.body_bytes,
        quoted(e.referer),
        quoted(e.user_agent),
    )
}

/// As nginx escapes logged values: `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'"' | b'\\' | 0..0x20 | 0x7f.. => {
                let _ = write!(out, "\\x{b:02X}");
            }
            _ => out.push(b as char),
        }
    }
    out
}

/// `29/Nov/2026:14:35:47 +0000`, the Common Log Format's time (in UTC).
fn clf_time(time: SystemTime) -> String {
    // From RFC 3339 (`2026-11-29T14:35:47Z`), so no calendar arithmetic is written here.
    let iso = humantime::format_rfc3339_seconds(time).to_string();
    let month = match iso.get(5..7) {
        Some("01") => "Jan",
        Some("02") => "Feb",
        Some("03") => "Mar",
        Some("04") => "Apr",
        Some("05") => "May",
        Some("06") => "Jun",
        Some("07") => "Jul",
        Some("08") => "Aug",
        Some("09") => "Sep",
        Some("10") => "Oct",
        Some("11") => "Nov",
        _ => "Dec",
    };
    format!(
        "{}/{month}/{}:{} +0000",
        iso.get(8..10).unwrap_or("01"),
        iso.get(0..4).unwrap_or("1970"),
        iso.get(11..19).unwrap_or("00:00:00"),
    )
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: Option<String>,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    status: u16,
    bytes: u64,
    duration_ms: f64,
    route: Option<&'a str>,
    outcome: Outcome,
    user_agent: Option<&'a str>,
    referer: Option<&'a str>,
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agrees: Option<bool>,
}

fn json(e: &Entry) -> String {
    let line = JsonLine {
        time: humantime::format_rfc3339_millis(e.time).to_string(),
        client: e.client.map(|c| c.to_string()),
        method: e.method,
        path: e.path,
        protocol: e.protocol,
        status: status_number(e.status),
        bytes: e.body_bytes,
        // Whole microseconds: `0.123`, never `0.12300000000000001`.
        duration_ms: e.duration.as_micros() as f64 / 1000.0,
        route: e.route,
        outcome: e.outcome,
        user_agent: e.user_agent,
        referer: e.referer,
        request_id: e.request_id,
        reason: e.reason.map(|r| r.to_string()),
        error: e.cut_short.map(|c| c.to_string()),
        would: e.would,
        agrees: e.would.map(|w| e.status.is_some_and(|s| w.agrees_with(s))),
    };
    let mut text = serde_json::to_string(&line).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            client: Some("192.0.2.7".parse().unwrap()),
            method: "GET",
            path: "/uploads/a \"b\".jpg",
            protocol: "HTTP/1.1",
            outcome: Outcome::Served,
            status: Some(StatusCode::OK),
            body_bytes: 1234,
            duration: Duration::from_micros(1500),
            route: Some("/uploads"),
            user_agent: Some("curl/8.0"),
            referer: None,
            request_id: "abc",
            reason: None,
            cut_short: None,
            would: None,
        }
    }

    #[test]
    fn combined_is_nginx_combined() {
        assert_eq!(
            combined(&entry()),
            "192.0.2.7 - - [18/Nov/2026:11:06:40 +0000] \"GET /uploads/a \\x22b\\x22.jpg HTTP/1.1\" 200 1234 \"-\" \"curl/8.0\"\n"
        );
    }

    #[test]
    fn json_is_one_object_per_line() {
        let line = json(&entry());
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2026-11-18T11:06:40.000Z");
        assert_eq!(value["status"], 200);
        assert_eq!(value["outcome"], "served");
        assert_eq!(value["duration_ms"], 1.5);
        let odd = Entry {
            duration: Duration::from_nanos(123_456_789),
            ..entry()
        };
        let value: serde_json::Value = serde_json::from_str(&json(&odd)).unwrap();
        assert_eq!(value["duration_ms"].to_string(), "123.456");
        assert!(value.get("reason").is_none());
    }
}
