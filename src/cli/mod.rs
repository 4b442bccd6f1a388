//! The `spillway` command line: `run` (the default), `check` and `explain`.

pub mod explain;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use crate::config;
use crate::offload::report::exit as offload_exit;

/// What `--help` ends with: how to steer a running server, and its log.
const AFTER_HELP: &str = "\
Signals to a running server: SIGHUP reloads the config without dropping a request (what \
`spillway reload` sends), SIGTERM stops gracefully (requests in flight finish), SIGINT stops at \
once, SIGUSR1 reopens the access log file (after logrotate).

Logging: RUST_LOG sets what is written to stderr (default: spillway's own lines at info, the \
libraries' warnings), e.g. RUST_LOG=debug or RUST_LOG=spillway=debug.";

#[derive(Parser)]
#[command(
    name = "spillway",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("SPILLWAY_GIT_HASH"), ")"),
    about = "Serve local files, redirect misses to S3 (presigned when private), proxy the rest",
    after_help = AFTER_HELP,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a command: `run` with these arguments.
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Run(RunArgs),
    /// Reload the running server: a new process loads the config and takes the listening
    /// sockets over; nothing in flight is dropped. An invalid config leaves the old one serving.
    Reload(ConfigArg),
    /// Validate the config and print the compiled routes; exits non-zero on any error.
    Check(CheckArgs),
    /// Print what the server would do with one request, computed by the same code it runs.
    Explain(ExplainArgs),
    /// Print a shell completion script: `spillway completions bash > /etc/bash_completion.d/spillway`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `spillway man > /usr/local/share/man/man1/spillway.1`.
    Man,
    /// Move local files to the keys the server redirects to, prove they arrived, then remove
    /// them. Only routes with an `offload:` block are touched.
    ///
    /// Exit status: 0 all done (or nothing to do), 1 some files failed, 2 conflicts (the
    /// bucket holds other bytes at a key), 3 configuration, credentials or usage problem,
    /// 4 interrupted by a signal before every file was looked at.
    Offload(OffloadArgs),
}

#[derive(clap::Args)]
struct OffloadArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Only this route (its prefix, e.g. /uploads); may be repeated. Default: every route
    /// with an `offload:` block.
    #[arg(long = "route", value_name = "PREFIX")]
    routes: Vec<String>,
    /// Only files whose path below the prefix matches this glob (`*` within a segment, `**`
    /// across); may be repeated.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Not files whose path below the prefix matches this glob; may be repeated.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Upload no faster than this over the whole run, e.g. 10MiB (per second).
    #[arg(long, value_name = "SIZE", value_parser = parse_rate)]
    bwlimit: Option<u64>,
    /// One JSON object per file on stdout, and a summary object last; the human lines go to
    /// stderr.
    #[arg(long)]
    json: bool,
    /// With --watch: serve /metrics, /healthz and /readyz here (default: the config's
    /// `admin:`; `off` for none).
    #[arg(long, value_name = "ADDRESS", requires = "watch")]
    admin: Option<String>,
    /// With --watch: walk every route in full at least this often, for changes inotify does
    /// not see (writes from other hosts on NFS).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", requires = "watch")]
    rescan: std::time::Duration,
    /// Print what would move, and to which key; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// A file must have been unchanged this long (overrides each route's offload.min_age).
    #[arg(long, value_parser = humantime::parse_duration)]
    min_age: Option<std::time::Duration>,
    /// Keep running: move files as they become old enough.
    #[arg(long, conflicts_with = "dry_run")]
    watch: bool,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also upload, verify and delete a small probe object in each bucket that offload
    /// uploads to: credentials, write access and the checksum headers, tried for real.
    #[arg(long)]
    probe: bool,
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The request method.
    #[arg(long, default_value = "GET", value_parser = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])]
    method: String,
    /// Sign as of this moment (RFC 3339, e.g. 2026-01-01T00:00:00Z) to reproduce a URL.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    at: Option<SystemTime>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Send the request with this Cookie header; an authorization check then runs for real.
    #[arg(long)]
    cookie: Option<String>,
    /// Send the request with this header (`Name: value`, repeatable); an authorization check
    /// then runs for real.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The request path as a client sends it, percent-encoded, e.g. /uploads/a%20b.jpg
    path: String,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Take the listening sockets over from the running server (what `reload` starts).
    #[arg(long, short)]
    upgrade: bool,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, default_value = "proxy.yaml")]
    config: PathBuf,
}

/// What is logged without `RUST_LOG`: spillway's own lines at info; Pingora's only when they
/// warn (its start and stop narration is there at `RUST_LOG=debug`). The new process of a
/// reload polls the upgrade socket and Pingora logs every empty poll as an error, though the
/// sockets come a moment later: a failed hand-over is said by spillway itself.
const DEFAULT_LOG: &str =
    "info,pingora_core=warn,pingora_proxy=warn,pingora_core::server::transfer_fd=off";

/// `--bwlimit`: a size per second.
fn parse_rate(text: &str) -> Result<u64, String> {
    let size = text.strip_suffix("/s").unwrap_or(text);
    match config::parse_size(size) {
        Some(0) | None => Err(format!(
            "{text:?} is not a rate: write a size per second, e.g. 500KiB or 10MiB"
        )),
        Some(bytes) => Ok(bytes),
    }
}

/// Runs the command line; the exit status is 1 on any error, which is printed once (offload
/// has its own statuses: see its help).
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage mistakes exit 3 rather than clap's 2, which `offload` uses for conflicts.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                offload_exit::USAGE
            } else {
                0
            });
        }
    };
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(arg)) => run(arg),
        Some(Command::Reload(arg)) => reload(arg),
        Some(Command::Check(arg)) => check(arg),
        Some(Command::Explain(args)) => explain(args),
        Some(Command::Offload(args)) => return offload(args),
        Some(Command::Completions { shell }) => completions(shell),
        Some(Command::Man) => man(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spillway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config.config)?;
    crate::server::run(config, args.upgrade)?;
    Ok(())
}

/// Sends SIGHUP to the server running this config, and waits for the new process to take over.
fn reload(arg: ConfigArg) -> anyhow::Result<()> {
    use crate::server::runtime_dir::read_pid;
    use rustix::process::{kill_process, Pid, Signal};
    let config = config::load(&arg.config)?;
    // What the new process would refuse at start is said here, at once.
    crate::server::check_listeners(&config, true)?;
    let pid_file = config.runtime_dir().join("spillway.pid");
    let old = read_pid(&pid_file).map_err(|e| {
        anyhow::anyhow!(
            "no running server found for this config ({}: {e})",
            pid_file.display()
        )
    })?;
    let pid = i32::try_from(old)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| anyhow::anyhow!("{} holds no pid", pid_file.display()))?;
    kill_process(pid, Signal::HUP).map_err(|e| {
        anyhow::anyhow!("cannot signal pid {old} (from {}): {e}", pid_file.display())
    })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match read_pid(&pid_file) {
            Ok(new) if new != old => {
                println!(
                    "reloaded: pid {new} serves the config now (pid {old} finishes and exits)"
                );
                return Ok(());
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    anyhow::bail!("sent SIGHUP to pid {old}, but no new process took over within 30s; the server's log says why (it keeps serving)")
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut command, "spillway", &mut std::io::stdout());
    Ok(())
}

fn man() -> anyhow::Result<()> {
    let command = <Cli as clap::CommandFactory>::command();
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(())
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let config = config::load(&args.config.config)?;
    print!("{}", config::describe(&config));
    if !args.probe {
        return Ok(());
    }
    let probed = crate::offload::probe::probe(&config)
        .map_err(|e| anyhow::anyhow!("cannot start the probe: {e}"))?;
    if probed.is_empty() {
        println!("probe      no route has an `offload:` block: nothing to probe");
    }
    for result in &probed {
        println!("{}", result.line);
    }
    let failed = probed.iter().filter(|p| !p.ok).count();
    if failed > 0 {
        anyhow::bail!(
            "offload would not work with {failed} of the buckets it uploads to (see above)"
        );
    }
    Ok(())
}

fn explain(args: ExplainArgs) -> anyhow::Result<()> {
    // As the server would: a request target other than `*` or an absolute URL starts with `/`.
    if !args.path.starts_with('/') {
        anyhow::bail!(
            "{:?} is not a request path: a request path starts with '/', as a client sends it (e.g. /uploads/a%20b.jpg)",
            args.path
        );
    }
    let config = config::load(&args.config.config)?;
    let method: http::Method = args.method.parse()?;
    let now = args.at.unwrap_or_else(SystemTime::now);
    let mut headers = http::HeaderMap::new();
    for header in &args.headers {
        let parsed = header.split_once(':').and_then(|(name, value)| {
            let name = http::HeaderName::from_bytes(name.trim().as_bytes()).ok()?;
            Some((name, http::HeaderValue::from_str(value.trim()).ok()?))
        });
        let Some((name, value)) = parsed else {
            anyhow::bail!("--header {header:?}: expected `Name: value`");
        };
        headers.append(name, value);
    }
    if let Some(cookie) = &args.cookie {
        let value = http::HeaderValue::from_str(cookie)
            .map_err(|_| anyhow::anyhow!("--cookie {cookie:?}: not a header value"))?;
        headers.append(http::header::COOKIE, value);
    }
    let explanation = explain::explain(&config, &method, &args.path, now, &headers);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{}", explanation.to_text());
    }
    Ok(())
}

/// Runs `offload`; its exit status says how it went (see its help).
fn offload(args: OffloadArgs) -> ExitCode {
    let status = match offload_run(args) {
        Ok(summary) => summary.exit_status(),
        Err(e) => {
            eprintln!("spillway: {e:#}");
            offload_exit::USAGE
        }
    };
    ExitCode::from(status)
}

fn offload_run(args: OffloadArgs) -> anyhow::Result<crate::offload::report::Summary> {
    let config = config::load(&args.config.config)?;
    let admin = match args.admin.as_deref() {
        Some("off") => None,
        Some(address) => Some(address.parse().map_err(|e| {
            anyhow::anyhow!("--admin {address:?} is not an address like 127.0.0.1:9902: {e}")
        })?),
        None if args.watch => config.admin,
        None => None,
    };
    let options = crate::offload::Options {
        routes: args.routes,
        dry_run: args.dry_run,
        min_age: args.min_age,
        watch: args.watch,
        json: args.json,
        include: args.include,
        exclude: args.exclude,
        bwlimit: args.bwlimit,
        admin,
        rescan: args.rescan,
    };
    let json = options.json;
    let summary = crate::offload::run(config, options)?;
    if json {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    match summary.exit_status() {
        offload_exit::INTERRUPTED => {
            eprintln!(
                "spillway: interrupted before every file was looked at; run it again to go on"
            )
        }
        offload_exit::FAILED | offload_exit::CONFLICTS => eprintln!(
            "spillway: {} failed and {} conflicted; their local files were kept",
            summary.failed, summary.conflicts
        ),
        _ => {}
    }
    Ok(summary)
}
