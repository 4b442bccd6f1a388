//! spillway's black-box tests, one binary (one link of Pingora, s3s and the AWS SDK): the real
//! `spillway` binary on free ports against a real S3 server (s3s-fs, which checks signatures
//! and checksums), a real legacy HTTP server, real TLS and HTTP/2 clients. `support/` holds the
//! fixtures; each other module is one area of behaviour.

mod support;

mod acme;
mod architecture;
mod authorize;
mod cli;
mod cloudfront;
mod compress;
mod config;
mod connection;
mod containment;
mod cors;
mod examples;
mod forward;
mod http_semantics;
mod lifecycle;
mod limits;
mod local_files;
mod observing;
mod offload;
mod paths;
mod redirects;
mod shadow;
mod signing;
mod support_selftest;
mod tls;
mod upstream;
