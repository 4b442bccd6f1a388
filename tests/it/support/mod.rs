//! Shared black-box test fixtures for spillway's integration tests.
//!
//! Everything here talks over real sockets on 127.0.0.1. Tests run in
//! parallel, so every server gets its own OS-assigned port and its own temp
//! dir; nothing is fixed or shared. Readiness is established by polling a
//! port, never by sleeping a guessed amount of time.
//!
//! Contents:
//! - ports: [`free_port`], [`wait_for_port`]
//! - a raw HTTP/1.1 client ([`request`], [`get`], [`Conn`], [`follow`]) that
//!   sends the request target byte-for-byte as written (no URL normalisation),
//!   so tests can probe how spillway handles odd paths;
//! - [`S3Server`]: in-process s3s + s3s-fs that really verifies SigV4;
//! - [`Legacy`]: an upstream that echoes what it received;
//! - [`Spillway`]: the real binary as a child process, plus [`run_cli`].

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub(crate) const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// How long a server may take before its port accepts connections.
pub(crate) const PORT_WAIT: Duration = Duration::from_secs(10);
/// The binary is a debug build starting while other tests hog both cores, so
/// give it more slack than an in-process server needs.
pub(crate) const SPILLWAY_START_WAIT: Duration = Duration::from_secs(20);

/// What the server logs once every listener accepts and its signal handlers are in place.
pub(crate) const READY_LINE: &str = "spillway::server::ready: ready pid=";
/// Upper bound for any single read/write, so a hung server fails the test
/// instead of hanging the whole suite.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(30);

mod certs;
mod client;
mod downloads;
mod metrics;
mod pebble;
mod ports;
mod s3;
mod servers;
mod spillway;
mod stack;
mod upstreams;

pub use certs::*;
pub use client::*;
pub use downloads::*;
pub use metrics::*;
pub use pebble::*;
pub use ports::*;
pub use s3::*;
pub use servers::*;
pub use spillway::*;
pub use stack::*;
pub use upstreams::*;
