//! The human summary `spillway check` prints: everything the config sets, listener by listener
//! and route by route, in words an operator can paste into a ticket.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::acme::ChallengeKind;
use super::{AccessLog, Config, Listener, LogFormat, LogSink};
use crate::core::authorize::{AppliesTo, Authorize};
use crate::core::site::{After, Offload, Route};
use crate::s3::cloudfront::PolicyKind;

/// A certificate this close to its end is a warning.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

// Writing to a String cannot fail: the results of `writeln!` below are ignored for that reason.

pub fn describe(config: &Config) -> String {
    describe_at(config, SystemTime::now())
}

/// [`describe`], with certificate lifetimes counted from `now`.
pub fn describe_at(config: &Config, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config ok: {}", config.source.display());
    for listener in &config.listen {
        describe_listener(&mut out, (listener, &config.listen), config.threads, now);
    }
    let _ = match config.admin {
        Some(address) => writeln!(out, "admin {address}: /metrics, /healthz, /readyz"),
        None => writeln!(out, "admin off (no `admin:`)"),
    };
    let _ = writeln!(out, "access log {}", access_log(&config.access_log));
    let _ = match &config.site.default_upstream {
        Some(u) => writeln!(out, "default upstream {} at {}", u.name, u.address),
        None => writeln!(out, "no default upstream: paths outside the routes get 404"),
    };
    let _ = writeln!(out, "upstream limits {}", limits_of(&config.site.limits));
    let _ = match &config.site.compress {
        Some(compress) => writeln!(out, "compress {}", compress_of(compress)),
        None => writeln!(
            out,
            "compress off (no `compress:`): upstream answers pass as they are"
        ),
    };
    if !config.site.trusted_proxies.is_empty() {
        let nets: Vec<String> = config
            .site
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(
            out,
            "trusted proxies {} (X-Forwarded-For believed from these)",
            nets.join(", ")
        );
    }
    for (prefix, route) in config.site.routes.iter() {
        describe_route(&mut out, prefix, route);
    }
    out
}

/// One listener (`listeners`: all of them, as an ACME challenge may need another).
fn describe_listener(
    out: &mut String,
    (listener, listeners): (&Listener, &[Listener]),
    threads: usize,
    now: SystemTime,
) {
    let tls = if listener.tls.is_some() {
        " TLS (h2, http/1.1)"
    } else {
        ""
    };
    let _ = writeln!(out, "listen {}{tls} ({threads} threads)", listener.address);
    let Some(certificates) = &listener.tls else {
        return;
    };
    if let Some(acme) = &certificates.acme {
        let _ = writeln!(
            out,
            "  acme: {} from {} by {}; state {}",
            acme.domains.join(", "),
            acme.directory,
            acme.challenge.as_str(),
            acme.state_dir.display()
        );
        if certificates.is_empty() {
            let _ = writeln!(
                out,
                "  no certificate stored yet: ordered when the server starts"
            );
        }
        let on_80 = listeners
            .iter()
            .any(|l| l.tls.is_none() && l.address.port() == 80);
        if acme.challenge == ChallengeKind::Http01 && !on_80 {
            let _ = writeln!(
                out,
                "  warning: the CA validates http-01 on port 80 and no plain listener here is on it: \
                 forward port 80 to one, or use `challenge: tls-alpn-01`"
            );
        }
    }
    for cert in certificates.describe() {
        let left = cert.not_after.duration_since(now).unwrap_or_default();
        let days = left.as_secs() / (24 * 3600);
        let expires = humantime::format_rfc3339_seconds(cert.not_after);
        let _ = writeln!(
            out,
            "  certificate {}: issuer {}; expires {expires} ({days} days left)",
            cert.names.join(", "),
            cert.issuer
        );
        // An ACME certificate is renewed a third of its life before the end, by the server.
        if left < EXPIRY_WARNING && certificates.acme.is_none() {
            let _ = writeln!(
                out,
                "  warning: the certificate for {} expires in {days} days: renew it and reload",
                cert.names.join(", ")
            );
        }
    }
}

fn access_log(log: &AccessLog) -> String {
    let format = match log.format {
        LogFormat::Json => "json",
        LogFormat::Combined => "combined",
        LogFormat::Text => "text",
        LogFormat::Off => return "off".to_owned(),
    };
    match &log.sink {
        LogSink::Stderr => format!("{format} to stderr"),
        LogSink::Stdout => format!("{format} to stdout"),
        LogSink::File(path) => format!("{format} to {} (reopened on SIGUSR1)", path.display()),
    }
}

fn describe_route(out: &mut String, prefix: &str, route: &Route) {
    let shown = if prefix.is_empty() { "/" } else { prefix };
    let _ = writeln!(out, "route {shown}");
    let containment = if route.docroot.kernel_contained() {
        "openat2 RESOLVE_BENEATH"
    } else {
        "canonicalising check"
    };
    let root = route.docroot.path().display();
    let _ = writeln!(out, "  root {root} ({containment})");
    // Shadow: what follows is what spillway would do, logged, never sent.
    let would = if route.shadow {
        let _ = writeln!(
            out,
            "  shadow: every request goes upstream; spillway logs what it would have done:"
        );
        "  would: "
    } else {
        "  "
    };
    match (&route.bucket, &route.bucket_name) {
        (Some(bucket), Some(name)) => {
            let signer = match (bucket.cloudfront(), bucket.credentials().current()) {
                (Some(_), _) => "private links signed for CloudFront".to_owned(),
                (None, Some(keys)) => {
                    format!("signs as {} from {}", keys.access_key_id, keys.source)
                }
                (None, None) => "no credentials".to_owned(),
            };
            let (base, key_prefix) = (bucket.base_url(), &route.key_prefix);
            let _ = writeln!(
                out,
                "{would}miss -> bucket {name}: {base}{key_prefix} ({signer})"
            );
            if bucket.public_base_url() != base {
                let public = bucket.public_base_url();
                let _ = writeln!(out, "{would}public objects via {public}{key_prefix}");
            }
            if let Some(cloudfront) = bucket.cloudfront() {
                let mut policy = match &cloudfront.policy {
                    PolicyKind::Canned => "canned policy".to_owned(),
                    PolicyKind::Custom {
                        ip_range,
                        not_before,
                    } => {
                        let mut said = "custom policy".to_owned();
                        if let Some(range) = ip_range {
                            said.push_str(&format!(", clients in {range}"));
                        }
                        if *not_before {
                            said.push_str(", not before signing");
                        }
                        said
                    }
                };
                if let Some(scope) = &cloudfront.cookies {
                    policy.push_str(&format!("; signed cookies for {}", scope.domain));
                }
                let _ = writeln!(
                    out,
                    "{would}private objects via {}{key_prefix}, CloudFront-signed with key {} ({}; {policy})",
                    bucket.public_base_url(),
                    cloudfront.key_pair_id,
                    cloudfront.key.describe()
                );
            }
            let _ = writeln!(out, "{would}access {}", route.policy.default_access());
            for (pattern, access) in route.policy.rules() {
                let _ = writeln!(out, "{would}  {pattern} -> {access}");
            }
        }
        _ => {
            let _ = writeln!(out, "{would}miss -> 404 (no bucket)");
        }
    }
    if let Some(check) = &route.authorize {
        let _ = writeln!(out, "{would}authorize {}", authorize(check));
    }
    if let Some(cors) = &route.cors {
        let _ = writeln!(out, "{would}cors {}", cors_of(cors));
    }
    if let Some(limits) = &route.limits {
        let _ = writeln!(out, "  upstream limits {}", limits_of(limits));
    }
    for (index, check) in route.authorize_by_rule.iter().enumerate() {
        if let (Some(check), Some((pattern, _))) = (check, route.policy.rules().nth(index)) {
            let _ = writeln!(out, "{would}  {pattern}: authorize {}", authorize(check));
        }
    }
    if route.bucket.is_some() {
        let _ = match &route.offload {
            Some(settings) => writeln!(out, "  offload {}", offload(settings)),
            None => writeln!(out, "  offload off (no `offload:` block)"),
        };
    }
    if let Some(u) = &route.upstream {
        let _ = writeln!(
            out,
            "  other methods -> upstream {} at {}",
            u.name, u.address
        );
    }
}

/// One line on a route's authorization check.
fn authorize(check: &Authorize) -> String {
    let forwarded: Vec<&str> = check.forward.iter().map(|n| n.as_str()).collect();
    let forwarding = match forwarded.is_empty() {
        true => "no client headers".to_owned(),
        false => forwarded.join(", "),
    };
    let applies = match check.applies_to {
        AppliesTo::Private => "presigned redirects",
        AppliesTo::All => "every answer of the route",
    };
    format!(
        "GET {} ({}) {} forwarding {forwarding}, for {applies}; timeout {}, answers kept {}",
        check.upstream.name,
        check.upstream.address,
        check.path,
        humantime::format_duration(check.timeout),
        humantime::format_duration(check.cache),
    )
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

/// `cors origins https://app.example.com; methods GET, HEAD; headers range; max_age 10m`.
fn cors_of(cors: &crate::core::cors::Cors) -> String {
    use crate::core::cors::Origins;
    let origins = match &cors.origins {
        Origins::Any => "* (any)".to_owned(),
        Origins::Listed(listed) => listed.join(", "),
    };
    let methods: Vec<&str> = cors.methods.iter().map(http::Method::as_str).collect();
    let headers: Vec<&str> = cors.headers.iter().map(http::HeaderName::as_str).collect();
    let headers = if headers.is_empty() {
        "none".to_owned()
    } else {
        headers.join(", ")
    };
    format!(
        "origins {origins}; methods {}; headers {headers}; max_age {}",
        methods.join(", "),
        humantime::format_duration(cors.max_age)
    )
}

/// `max_body 10 MiB, max_inflight 200`, or `none`.
fn limits_of(limits: &crate::core::limits::UpstreamLimits) -> String {
    let mut said = Vec::new();
    if let Some(max) = limits.max_body {
        said.push(format!("max_body {max} bytes"));
    }
    if let Some(max) = limits.max_inflight {
        said.push(format!("max_inflight {max}"));
    }
    if let Some(rate) = &limits.rate {
        said.push(format!(
            "rate {} per {}, burst {}, by client ip",
            rate.requests,
            humantime::format_duration(rate.per),
            rate.burst
        ));
    }
    match said.is_empty() {
        true => "none".to_owned(),
        false => said.join(", "),
    }
}

/// `zstd, br, gzip for text/*, application/json from 1024 bytes`.
fn compress_of(compress: &crate::core::compress::Compress) -> String {
    let codings: Vec<&str> = compress.encodings.iter().map(|e| e.token()).collect();
    format!(
        "{} for {} from {} bytes",
        codings.join(", "),
        compress.types.join(", "),
        compress.min_length
    )
}
