//! `decide` on the event loop: lookups the caches can answer are made there, and a path the
//! disk must be read for is looked up on the blocking pool, then decided again.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::acme::{shared_http01, Challenges};
use crate::config::Config;
use crate::core::answer::Answer;
use crate::core::decide::{decide_as, Decided, Decision, Request, Shadow};
use crate::core::outcome::Outcome;
use crate::fs::docroot::{CachedOnly, MayBlock};

/// Runs `decide` on the event loop with cached-only lookups. A path the kernel must read from
/// disk to resolve is resolved on the blocking pool instead, and the decision retried, so a cold
/// disk never stalls the other requests on this worker.
pub async fn decide_without_blocking<'c, 'p>(
    config: &'c Config,
    request: &Request<'p>,
) -> Decided<'c, 'p> {
    decide_as_without_blocking(Shadow::Honour, config, request).await
}

/// Under a shadow route: what spillway would have answered, had it been live (it is never
/// sent: the upstream answers).
pub async fn would_answer(config: &Config, request: &Request<'_>) -> Outcome {
    let decided = decide_as_without_blocking(Shadow::AsIfLive, config, request).await;
    match decided.decision {
        Decision::Answer(Answer::Serve(local)) => {
            let status =
                crate::http::file::plan(request.method, request.headers, &local.meta).status;
            Answer::Serve(local).outcome(status)
        }
        Decision::Answer(answer) => answer.outcome(http::StatusCode::OK),
        Decision::Upstream(_) => Outcome::Upstream,
    }
}

async fn decide_as_without_blocking<'c, 'p>(
    shadow: Shadow,
    config: &'c Config,
    request: &Request<'p>,
) -> Decided<'c, 'p> {
    // An ACME CA validating a certificate order asks before any route is looked at.
    if let Some(key_authorization) = acme_challenge(config, request.path).await {
        return Decided {
            route: None,
            relative: None,
            decision: Decision::Answer(Answer::Challenge(key_authorization)),
        };
    }
    // Each round warms one more path (the file, then a precompressed variant or index file).
    for _ in 0..4 {
        let warm = match decide_as(
            shadow,
            &config.site,
            request,
            SystemTime::now(),
            &CachedOnly,
        ) {
            Ok(decided) => return decided,
            Err(warm) => warm,
        };
        if tokio::task::spawn_blocking(move || warm.run())
            .await
            .is_err()
        {
            break;
        }
    }
    // A file system whose lookups never stay cached (network file systems revalidate):
    // fall back to what nginx does, a blocking lookup here.
    let Ok(decided) = decide_as(shadow, &config.site, request, SystemTime::now(), &MayBlock);
    decided
}

/// The answer to an ACME HTTP-01 validation at `path`: one this process opened, or one another
/// process sharing the state directory left there (read on the blocking pool).
async fn acme_challenge(config: &Config, path: &str) -> Option<Arc<str>> {
    let token = Challenges::http01_token(path)?;
    if let Some(answer) = config.challenges.http01(token) {
        return Some(answer);
    }
    if config.http01_dirs.is_empty() {
        return None;
    }
    let dirs = Arc::clone(&config.http01_dirs);
    let token = token.to_owned();
    let shared = tokio::task::spawn_blocking(move || shared_http01(&dirs, &token)).await;
    match shared {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            tracing::warn!("acme: {e}; the CA's validation fails here");
            None
        }
        Err(_) => None,
    }
}
