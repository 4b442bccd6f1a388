//! `spillway explain`: what the server would do with one request, from the same `decide`.

use std::fmt::Write as _;
use std::time::SystemTime;

use http::{HeaderMap, Method};
use serde::Serialize;

use crate::config::Config;
use crate::core::answer::{Answer, Reject};
use crate::core::authorize::{original_uri, Authorize};
use crate::core::decide::{decide, Decided, Decision, Request};
use crate::core::outcome::Outcome;
use crate::core::policy::Access;
use crate::core::site::Route;
use crate::fs::docroot::MayBlock;
use crate::s3::cloudfront;
use crate::upstream::authorize::{Asker, Authorizer};

/// Everything `explain` reports. Field names are the `--json` interface.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub method: String,
    pub path: String,
    /// The matching route's prefix, if any.
    pub route: Option<String>,
    /// The canonical path relative to the route.
    pub relative: Option<String>,
    /// The file looked for under the route's root.
    pub file: Option<String>,
    pub exists: bool,
    /// The path is a directory without an index file.
    pub directory: bool,
    /// The policy rule that decided the access (`None`: the route default).
    pub rule: Option<String>,
    /// `public` or `private`, for misses that go to a bucket.
    pub access: Option<&'static str>,
    /// The S3 key, for routes with a bucket.
    pub key: Option<String>,
    /// What the server would do, in the words of its log line.
    pub outcome: Outcome,
    /// The status spillway answers with (`None` for upstream: the upstream decides).
    pub status: Option<u16>,
    pub location: Option<String>,
    pub cache_control: Option<String>,
    /// Why a request is rejected.
    pub reason: Option<String>,
    /// The upstream, as `name (address)`.
    pub upstream: Option<String>,
    /// The authorization check the answer waits for, if one applies: where it goes and what
    /// it carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize: Option<String>,
    /// The policy a CloudFront-signed location was signed over, as CloudFront reads it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloudfront_policy: Option<String>,
    /// `Set-Cookie` values sent with the redirect (CloudFront signed cookies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_cookies: Vec<String>,
}

/// Explains `method target` (`target` may carry a query) as of `now`, sent with `headers`.
/// With headers, an authorization check that applies is run for real.
pub fn explain(
    config: &Config,
    method: &Method,
    target: &str,
    now: SystemTime,
    headers: &HeaderMap,
) -> Explanation {
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let request = Request {
        method,
        path,
        query,
        headers,
    };
    let Ok(decided) = decide(&config.site, &request, now, &MayBlock);
    let mut e = context(method, target, &decided);
    match decided.decision {
        Decision::Upstream(upstream) => {
            e.outcome = Outcome::Upstream;
            e.upstream = Some(format!("{} ({})", upstream.name, upstream.address));
        }
        Decision::Answer(answer) => {
            let relative = decided.relative.as_deref();
            e.authorize = decided.route.and_then(|route| {
                let check = answer.check(route)?;
                let uri = original_uri(&route.prefix, relative?);
                Some(describe_check(check, &uri, method))
            });
            let answer = if e.authorize.is_some() && !headers.is_empty() {
                ask(decided.route, relative, &request, answer)
            } else {
                answer
            };
            describe_answer(&mut e, decided.route, &answer);
        }
    }
    e
}

/// Runs the route's authorization check as the server would, and returns what it would send.
fn ask<'c>(
    route: Option<&'c Route>,
    relative: Option<&str>,
    request: &Request,
    answer: Answer<'c>,
) -> Answer<'c> {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let why = format!("cannot start a runtime to ask: {e}");
            return Answer::Reject(Reject::CheckFailed(why));
        }
    };
    let asker = Asker {
        request,
        client: None,
    };
    runtime.block_on(Authorizer::new().authorized(route, relative, &asker, answer))
}

/// The request the check sends, in one line: `GET legacy (127.0.0.1:8081) /spillway/authorize
/// with X-Original-URI: …, X-Original-Method: GET, forwarding cookie`.
fn describe_check(check: &Authorize, uri: &str, method: &Method) -> String {
    let forwarded: Vec<&str> = check.forward.iter().map(|n| n.as_str()).collect();
    let forwarding = if forwarded.is_empty() {
        "no client headers".to_owned()
    } else {
        format!("forwarding {}", forwarded.join(", "))
    };
    format!(
        "GET {} ({}) {} with X-Original-URI: {uri}, X-Original-Method: {method}, {forwarding}; \
         the answer before it is sent",
        check.upstream.name, check.upstream.address, check.path
    )
}

/// What led to the decision: the route, the path below it, the file and the key.
fn context(method: &Method, target: &str, decided: &Decided) -> Explanation {
    let route = decided.route;
    let relative = decided.relative.as_deref();
    Explanation {
        method: method.to_string(),
        path: target.to_owned(),
        route: route.map(|r| {
            if r.prefix.is_empty() {
                "/".into()
            } else {
                r.prefix.clone()
            }
        }),
        relative: relative.map(str::to_owned),
        file: route
            .zip(relative)
            .map(|(r, rel)| r.docroot.path().join(rel).display().to_string()),
        exists: false,
        directory: false,
        rule: None,
        access: None,
        key: decided.key().map(|k| k.to_string()),
        outcome: Outcome::Rejected,
        status: None,
        location: None,
        cache_control: None,
        reason: None,
        cloudfront_policy: None,
        set_cookies: Vec::new(),
        upstream: None,
        authorize: None,
    }
}

/// The answer spillway would send itself, as the server would send it to a plain GET.
fn describe_answer(e: &mut Explanation, route: Option<&Route>, answer: &Answer) {
    let status = match answer {
        Answer::Serve(local) => {
            e.exists = true;
            e.cache_control = local
                .route
                .cache_control
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            http::StatusCode::OK
        }
        Answer::AddSlash(location) => {
            e.exists = true;
            e.location = Some(location.clone());
            http::StatusCode::MOVED_PERMANENTLY
        }
        Answer::Redirect(redirect) => {
            e.access = Some(match redirect.verdict.access {
                Access::Public => "public",
                Access::Private(_) => "private",
            });
            e.rule = route
                .zip(redirect.verdict.rule)
                .and_then(|(r, i)| r.policy.rules().nth(i))
                .map(|(pattern, _)| pattern.to_owned());
            e.cache_control = redirect
                .cache_control
                .header_value()
                .to_str()
                .ok()
                .map(str::to_owned);
            let signed_for_cloudfront = route
                .and_then(|r| r.bucket.as_ref())
                .is_some_and(|b| b.cloudfront().is_some())
                && matches!(redirect.verdict.access, Access::Private(_));
            if signed_for_cloudfront {
                e.cloudfront_policy = cloudfront::policy_of(&redirect.location);
            }
            e.location = Some(redirect.location.clone());
            e.set_cookies = redirect
                .cookies
                .iter()
                .flat_map(|c| c.iter().cloned())
                .collect();
            http::StatusCode::FOUND
        }
        Answer::Reject(reject) => {
            e.directory = matches!(reject, Reject::NoIndex);
            e.reason = Some(reject.to_string());
            reject.status()
        }
        Answer::Preflight(preflight) => {
            e.reason = Some(match preflight.grant {
                Some(_) => "a CORS preflight, answered for the route".to_owned(),
                None => "a CORS preflight from an origin not allowed: nothing granted".to_owned(),
            });
            http::StatusCode::NO_CONTENT
        }
        Answer::Challenge(_) => {
            e.reason = Some("an open ACME HTTP-01 challenge, answered before any route".to_owned());
            http::StatusCode::OK
        }
        // Only the application says no; `decide` never does.
        Answer::Denied(denial) => {
            e.reason = Some("the application said no".to_owned());
            e.location = denial
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            denial.status
        }
    };
    e.status = Some(status.as_u16());
    e.outcome = answer.outcome(status);
}

impl Explanation {
    /// The human form: one `name: value` line per known field.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                let _ = writeln!(out, "{name:<14}{value}");
            }
        };
        line("request", Some(&format!("{} {}", self.method, self.path)));
        line("route", Some(self.route.as_deref().unwrap_or("-")));
        line("relative", self.relative.as_deref());
        if let Some(file) = &self.file {
            line(
                "file",
                Some(&format!(
                    "{file} ({})",
                    match (self.directory, self.exists) {
                        (true, _) => "directory, no index",
                        (false, true) => "exists",
                        (false, false) => "missing",
                    }
                )),
            );
        }
        line(
            "rule",
            self.rule
                .as_deref()
                .or(self.access.map(|_| "(route default)")),
        );
        line("access", self.access);
        line("key", self.key.as_deref());
        line("outcome", Some(self.outcome.as_str()));
        line("status", self.status.map(|s| s.to_string()).as_deref());
        line("location", self.location.as_deref());
        line("cache-control", self.cache_control.as_deref());
        line("reason", self.reason.as_deref());
        line("upstream", self.upstream.as_deref());
        line("authorize", self.authorize.as_deref());
        line("policy", self.cloudfront_policy.as_deref());
        for cookie in &self.set_cookies {
            line("set-cookie", Some(cookie));
        }
        out
    }
}
