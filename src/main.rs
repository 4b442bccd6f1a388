//! The `spillway` command: `run` (the default) and `check`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Serve local files, redirect misses to S3 (presigned when private), proxy the rest"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Run(ConfigArg),
    /// Validate the config and print the compiled routes; exits non-zero on any error.
    Check(ConfigArg),
}

#[derive(clap::Args, Default)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, default_value = "proxy.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(ConfigArg {
            config: PathBuf::from("proxy.yaml"),
        }),
        Some(Command::Run(arg)) => run(arg),
        Some(Command::Check(arg)) => check(arg),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spillway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(arg: ConfigArg) -> anyhow::Result<()> {
    let config = spillway::config::load(&arg.config)?;
    spillway::server::run(config)?;
    Ok(())
}

fn check(arg: ConfigArg) -> anyhow::Result<()> {
    let config = spillway::config::load(&arg.config)?;
    print!("{}", spillway::config::describe(&config));
    Ok(())
}
