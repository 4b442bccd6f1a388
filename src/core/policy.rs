//! Access policy: which objects are public and which get a presigned, short-lived link.
//!
//! A route has a default access; its rules are globs on the path relative to the route prefix,
//! and the first rule that matches wins. Globs follow `globset` with `literal_separator`, so `*`
//! stays within one path segment and `**` crosses them.

use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};

/// How an object that is not on local disk may be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A plain redirect to the object URL.
    Public,
    /// A redirect to a presigned URL.
    Private(Signing),
}

/// How private objects are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signing {
    /// How long a link lives.
    pub ttl: Duration,
    /// Sign at the start of fixed windows of this length, so every request for a key in one
    /// window gets the same URL and browsers can cache the object.
    pub window: Option<Duration>,
    /// Ask S3 to answer with `Content-Disposition: attachment` and the file name.
    pub attachment: bool,
}

impl Signing {
    pub fn with_ttl(ttl: Duration) -> Signing {
        Signing {
            ttl,
            window: None,
            attachment: false,
        }
    }
}

/// The outcome of matching one path: the access and which rule (if any) decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub access: Access,
    /// Index into the route's `rules`, or `None` when the route default applied.
    pub rule: Option<usize>,
}

#[derive(Debug)]
struct Rule {
    pattern: String,
    matcher: GlobMatcher,
    access: Access,
}

#[derive(Debug)]
pub struct Policy {
    default: Access,
    rules: Vec<Rule>,
}

impl Policy {
    pub fn new(default: Access) -> Policy {
        Policy {
            default,
            rules: Vec::new(),
        }
    }

    /// Adds a rule after the existing ones; fails with globset's message on a bad pattern.
    pub fn add_rule(&mut self, pattern: &str, access: Access) -> Result<(), globset::Error> {
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()?
            .compile_matcher();
        self.rules.push(Rule {
            pattern: pattern.to_owned(),
            matcher,
            access,
        });
        Ok(())
    }

    /// Decides the access for a canonical relative path. Linear on purpose: rules are few, order
    /// matters, and `GlobMatcher::is_match` does not allocate.
    pub fn evaluate(&self, relative_path: &str) -> Verdict {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.matcher.is_match(relative_path) {
                return Verdict {
                    access: rule.access,
                    rule: Some(index),
                };
            }
        }
        Verdict {
            access: self.default,
            rule: None,
        }
    }

    pub fn default_access(&self) -> Access {
        self.default
    }

    /// The rules as written, with their access, for `spillway check` and `explain`.
    pub fn rules(&self) -> impl Iterator<Item = (&str, Access)> {
        self.rules.iter().map(|r| (r.pattern.as_str(), r.access))
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::Private(s) => {
                write!(f, "private (ttl {}", humantime::format_duration(s.ttl))?;
                if let Some(window) = s.window {
                    write!(f, ", sign_window {}", humantime::format_duration(window))?;
                }
                if s.attachment {
                    f.write_str(", attachment")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE_MIN: Access = Access::Private(Signing {
        ttl: Duration::from_secs(300),
        window: None,
        attachment: false,
    });

    fn policy() -> Policy {
        let mut p = Policy::new(FIVE_MIN);
        p.add_rule("avatars/**", Access::Public).unwrap();
        p.add_rule("*.css", Access::Public).unwrap();
        p.add_rule("**/*.css", FIVE_MIN).unwrap();
        p
    }

    #[test]
    fn first_matching_rule_wins_and_default_applies_otherwise() {
        let p = policy();
        let cases = [
            ("avatars/1.png", Access::Public, Some(0)),
            ("avatars/deep/x/1.png", Access::Public, Some(0)),
            ("site.css", Access::Public, Some(1)),
            ("sub/site.css", FIVE_MIN, Some(2)),
            ("avatars.png", FIVE_MIN, None),
            ("private/avatars/1.png", FIVE_MIN, None),
            ("", FIVE_MIN, None),
        ];
        for (path, access, rule) in cases {
            assert_eq!(p.evaluate(path), Verdict { access, rule }, "path {path:?}");
        }
    }

    #[test]
    fn a_bad_glob_is_an_error() {
        let mut p = Policy::new(Access::Public);
        assert!(
            p.add_rule("a/[b", Access::Public).is_err(),
            "unclosed class"
        );
    }
}
