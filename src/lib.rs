//! spillway: serve local files, redirect misses to S3 (presigned when private), proxy the rest.
//!
//! A request flows front → decide → respond (or proxy). Each folder is one layer; a layer uses
//! those listed below it, never one above.

/// The git commit this binary was built from (see `build.rs`).
pub const GIT_HASH: &str = env!("SPILLWAY_GIT_HASH");

/// An error and its causes on one line, each said once: the clients spillway uses (the AWS
/// SDK, aws-config, hyper under the ACME client) put the useful part in the causes.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// The command line: `run`, `check`, `explain`.
pub mod cli;
/// `proxy.yaml` → a checked, compiled `Config`.
pub mod config;
/// From a request to a decision, as values: route, path, policy, key, outcome. No tokio, no Pingora.
pub mod core;
/// Client connections: HTTP/1 heads, h2 streams, answers made here.
pub mod front;
/// Beneath the document roots: openat2 lookups, non-blocking reads, zero-copy sends.
pub mod fs;
/// HTTP semantics of serving a file: validators, preconditions, ranges, negotiation, types.
pub mod http;
/// `spillway offload`: move files to the keys the proxy redirects to, prove it, then remove.
pub mod offload;
/// S3 addressing and URLs, SigV4 presigning, the credential cell and provider chain.
pub mod s3;
/// The process: listeners, signals and reloads, the runtime directory, readiness, admin.
pub mod server;
/// The request log line (and what operators observe).
pub mod telemetry;
/// The legacy upstream: the short way, Pingora's proxy, the authorization subrequest.
pub mod upstream;
/// What front and upstream share: HTTP/1 on the wire, the response writer, deciding off-disk.
pub mod wire;
