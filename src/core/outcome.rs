//! The one vocabulary for what happened to a request: the log line, `explain` and metrics all
//! say it with these words.

use serde::Serialize;

/// What spillway did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A local file answered (200, 206, or a 412/416 about it).
    Served,
    /// A local file's validators matched: 304.
    NotModified,
    /// A plain redirect: to a public object, or a directory's trailing slash.
    Redirect,
    /// A redirect to a presigned link.
    Presigned,
    /// Proxied to the legacy upstream.
    Upstream,
    /// Answered with an error status.
    Rejected,
    /// The application said no to an authorization check (its 401, 403 or 3xx).
    Denied,
    /// A browser's CORS preflight, answered for the route.
    Preflight,
    /// An ACME CA's HTTP-01 validation, answered with the key authorization.
    AcmeChallenge,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Served,
        Outcome::NotModified,
        Outcome::Redirect,
        Outcome::Presigned,
        Outcome::Upstream,
        Outcome::Rejected,
        Outcome::Denied,
        Outcome::Preflight,
        Outcome::AcmeChallenge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::NotModified => "not_modified",
            Outcome::Redirect => "redirect",
            Outcome::Presigned => "presigned",
            Outcome::Upstream => "upstream",
            Outcome::Rejected => "rejected",
            Outcome::Denied => "denied",
            Outcome::Preflight => "preflight",
            Outcome::AcmeChallenge => "acme_challenge",
        }
    }
}

impl Outcome {
    /// Whether what spillway would have done agrees with the status the upstream answered, for
    /// shadow mode: a file spillway would serve is one the upstream serves (200, 206, 304);
    /// a path it would redirect or refuse is one the upstream has no page for (not a 2xx).
    pub fn agrees_with(self, upstream: http::StatusCode) -> bool {
        let served = upstream.is_success() || upstream == http::StatusCode::NOT_MODIFIED;
        match self {
            Outcome::Served
            | Outcome::NotModified
            | Outcome::Preflight
            | Outcome::AcmeChallenge => served,
            Outcome::Redirect | Outcome::Presigned | Outcome::Rejected | Outcome::Denied => {
                !upstream.is_success()
            }
            Outcome::Upstream => true,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_say_the_same_word() {
        for outcome in Outcome::ALL {
            let json = serde_json::to_string(&outcome).unwrap();
            assert_eq!(json, format!("\"{outcome}\""));
        }
    }
}
