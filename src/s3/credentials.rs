//! Signing credentials: the cell requests read them from, and the AWS provider chain.
//!
//! A bucket either has explicit keys in `proxy.yaml` or uses the standard AWS provider chain
//! through `aws-config`: environment, shared profile files, web identity (IRSA), ECS container
//! credentials, EC2 IMDSv2. Chain credentials are fetched once at startup, then kept fresh by
//! the server's refresher (`server::refresher`, with `config::chain`). Requests read the current
//! keys with one atomic load: no lock, no await.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use futures_util::task::AtomicWaker;

use crate::s3::sigv4::Keys;

/// Presigned links must end at least this long before the credentials that signed them do,
/// for clock skew and for the time between the redirect and its use.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The current credentials of a bucket, swapped atomically when refreshed.
#[derive(Debug, Default)]
pub struct CredentialCell {
    current: ArcSwapOption<Keys>,
    /// Set by a request that found the credentials too close to expiry; the refresher waits on
    /// `refresher` for it. (An atomic and a waker: no runtime in this layer.)
    refresh_asked: AtomicBool,
    refresher: AtomicWaker,
    /// Filled (and refreshed) from the AWS provider chain rather than `proxy.yaml`.
    from_chain: bool,
}

impl CredentialCell {
    /// Keys written in `proxy.yaml`: they never change.
    pub fn with(keys: Keys) -> CredentialCell {
        CredentialCell {
            current: ArcSwapOption::new(Some(Arc::new(keys))),
            from_chain: false,
            ..CredentialCell::default()
        }
    }

    /// An empty cell for credentials from the AWS provider chain.
    pub fn for_chain() -> CredentialCell {
        CredentialCell {
            from_chain: true,
            ..CredentialCell::default()
        }
    }

    pub fn from_chain(&self) -> bool {
        self.from_chain
    }

    /// The current keys: one atomic load.
    pub fn current(&self) -> Option<Arc<Keys>> {
        self.current.load_full()
    }

    pub fn set(&self, keys: Keys) {
        self.current.store(Some(Arc::new(keys)));
    }

    /// Asks the background refresher to refresh now. Never blocks.
    pub fn request_refresh(&self) {
        self.refresh_asked.store(true, Ordering::Release);
        self.refresher.wake();
    }

    /// Resolves when a refresh has been asked for (once per request, however many asked).
    pub fn refresh_requested(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.refresh_asked.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.refresher.register(cx.waker());
            // Asked between the check and the registration: the wake went to an old waker.
            if self.refresh_asked.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}
