//! The human summary `spillway check` prints: what the server will do, route by route.

use std::fmt::Write as _;

use super::Config;
use crate::core::site::{After, Offload};

// Long on purpose: what `check` prints, in the order it prints it.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail; the results are ignored below for that reason.
    let _ = writeln!(out, "config ok: {}", config.source.display());
    for listener in &config.listen {
        let tls = match listener.tls {
            Some(_) => " TLS (h2, http/1.1)",
            None => "",
        };
        let _ = writeln!(
            out,
            "listen {}{tls} ({} threads)",
            listener.address, config.threads
        );
    }
    match &config.site.default_upstream {
        Some(u) => {
            let _ = writeln!(out, "default upstream {} at {}", u.name, u.address);
        }
        None => {
            let _ = writeln!(out, "no default upstream: paths outside the routes get 404");
        }
    }
    for (prefix, route) in config.site.routes.iter() {
        let shown = if prefix.is_empty() { "/" } else { prefix };
        let _ = writeln!(out, "route {shown}");
        let containment = if route.docroot.kernel_contained() {
            "openat2 RESOLVE_BENEATH"
        } else {
            "canonicalising check"
        };
        let _ = writeln!(
            out,
            "  root {} ({containment})",
            route.docroot.path().display()
        );
        match (&route.bucket, &route.bucket_name) {
            (Some(bucket), Some(name)) => {
                let signer = match bucket.credentials().current() {
                    Some(keys) => format!("signs as {} from {}", keys.access_key_id, keys.source),
                    None => "no credentials".to_owned(),
                };
                let _ = writeln!(
                    out,
                    "  miss -> bucket {name}: {}{} ({signer})",
                    bucket.base_url(),
                    route.key_prefix
                );
                if bucket.public_base_url() != bucket.base_url() {
                    let _ = writeln!(
                        out,
                        "  public objects via {}{}",
                        bucket.public_base_url(),
                        route.key_prefix
                    );
                }
                let _ = writeln!(out, "  access {}", route.policy.default_access());
                for (pattern, access) in route.policy.rules() {
                    let _ = writeln!(out, "    {pattern} -> {access}");
                }
                let _ = match &route.offload {
                    Some(settings) => writeln!(out, "  offload {}", offload(settings)),
                    None => writeln!(out, "  offload off (no `offload:` block)"),
                };
            }
            _ => {
                let _ = writeln!(out, "  miss -> 404 (no bucket)");
            }
        }
        if let Some(u) = &route.upstream {
            let _ = writeln!(
                out,
                "  other methods -> upstream {} at {}",
                u.name, u.address
            );
        }
    }
    out
}

/// One line on what `spillway offload` does with the route's files.
fn offload(offload: &Offload) -> String {
    let after = match &offload.after {
        After::Delete => "then delete".to_owned(),
        After::Archive(dir) => format!("then archive to {}", dir.display()),
        After::Keep => "and keep".to_owned(),
    };
    format!(
        "files unchanged for {}, {after} ({} at a time, multipart from {} MiB)",
        humantime::format_duration(offload.min_age),
        offload.concurrency,
        offload.multipart_threshold >> 20
    )
}
