//! Presigned links kept for the time they were signed at. Within one second (or one signing
//! window) every request for a key gets the same URL, so it is signed once and then copied:
//! a kept link costs a hash lookup, a fresh one the HMAC chain (about 1.4 µs).
//!
//! What it must never do, and why it cannot:
//! - serve a link past its window: the signing time is part of what is looked up, and the
//!   caller asks with the start of the current window, so a link from an earlier one is never
//!   found again;
//! - serve a link signed by credentials that were replaced: each link keeps the `Arc` of the
//!   keys that signed it and is found only by those same keys (and, holding them, their
//!   address cannot be taken by new ones); a CloudFront link is signed by the bucket's one
//!   key pair, which never changes while the process runs (`None` here);
//! - grow without bound: at `CAPACITY` paths the table is emptied and starts again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::s3::sigv4::Keys;

/// A presigned link and the moment it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub url: String,
    pub expires_at: SystemTime,
    /// `Set-Cookie` values to send with the redirect (CloudFront signed cookies), if any.
    pub cookies: Option<Arc<[String]>>,
}

/// Object paths kept at most; a few MiB of URLs.
pub const CAPACITY: usize = 4096;

/// What a link was signed for, besides its path.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkFor<'a> {
    pub method: &'a str,
    pub attachment: bool,
    pub time: SystemTime,
    pub ttl: Duration,
}

struct Link {
    method: String,
    attachment: bool,
    time: SystemTime,
    ttl: Duration,
    keys: Option<Arc<Keys>>,
    signed: Signed,
}

impl Link {
    fn is_for(&self, asked: &LinkFor<'_>, keys: Option<&Arc<Keys>>) -> bool {
        self.time == asked.time
            && self.ttl == asked.ttl
            && self.attachment == asked.attachment
            && self.method == asked.method
            && match (&self.keys, keys) {
                (Some(kept), Some(asked)) => Arc::ptr_eq(kept, asked),
                (None, None) => true,
                _ => false,
            }
    }
}

/// Signed links by object path (as signed: the bucket's path prefix and the encoded key).
#[derive(Default)]
pub struct SignedLinks {
    table: Mutex<HashMap<String, Vec<Link>>>,
}

impl std::fmt::Debug for SignedLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedLinks({} paths)", self.len())
    }
}

impl SignedLinks {
    /// The link to `path` for `asked`, signed by `keys`: the kept one, or the one `sign` makes
    /// (kept when it succeeds).
    pub fn get_or_sign<E>(
        &self,
        path: &str,
        asked: LinkFor<'_>,
        keys: Option<&Arc<Keys>>,
        sign: impl FnOnce() -> Result<Signed, E>,
    ) -> Result<Signed, E> {
        let table = || self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(links) = table().get(path) {
            if let Some(link) = links.iter().find(|l| l.is_for(&asked, keys)) {
                return Ok(link.signed.clone());
            }
        }
        // Signed outside the lock: the other workers go on meanwhile.
        let signed = sign()?;
        let mut table = table();
        if table.len() >= CAPACITY && !table.contains_key(path) {
            table.clear();
        }
        let links = table.entry(path.to_owned()).or_default();
        // Links from earlier windows are never asked for again.
        links.retain(|l| l.time >= asked.time && !l.is_for(&asked, keys));
        links.push(Link {
            method: asked.method.to_owned(),
            attachment: asked.attachment,
            time: asked.time,
            ttl: asked.ttl,
            keys: keys.cloned(),
            signed: signed.clone(),
        });
        Ok(signed)
    }

    /// Paths with a kept link.
    pub fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
