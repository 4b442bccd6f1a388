//! `--bwlimit`: one rate for the whole run, over every file and part in flight.
//!
//! Each body the run uploads passes its chunks through a shared [`Limiter`], which keeps a
//! virtual clock of when the bytes sent so far may have been sent at the rate; a body that is
//! ahead of it waits that long before its next chunk. Retries rebuild the body, and what they
//! send again is charged again: the limit is on bytes on the wire.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, SdkBody};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Bytes per second over the whole run.
#[derive(Debug)]
pub struct Limiter {
    bytes_per_second: f64,
    /// When the bytes charged so far are all "sent" at the rate.
    caught_up: Mutex<Instant>,
}

impl Limiter {
    pub fn new(bytes_per_second: u64) -> Arc<Limiter> {
        Arc::new(Limiter {
            bytes_per_second: bytes_per_second.max(1) as f64,
            caught_up: Mutex::new(Instant::now()),
        })
    }

    /// Charges `bytes` just sent; returns how long the sender must wait before sending more.
    fn charge(&self, bytes: usize) -> Duration {
        let now = Instant::now();
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second);
        let Ok(mut caught_up) = self.caught_up.lock() else {
            return Duration::ZERO;
        };
        // An idle stretch earns no credit: the clock restarts from now.
        *caught_up = (*caught_up).max(now) + cost;
        caught_up.saturating_duration_since(now)
    }

    /// `stream` at `limiter`'s rate, or as it is without one.
    pub fn throttle_if(limiter: Option<&Arc<Limiter>>, stream: ByteStream) -> ByteStream {
        match limiter {
            Some(limiter) => limiter.throttle(stream),
            None => stream,
        }
    }

    /// `stream`, sent no faster than the run's rate.
    pub fn throttle(self: &Arc<Self>, stream: ByteStream) -> ByteStream {
        let body = stream.into_inner();
        let limiter = Arc::clone(self);
        ByteStream::new(SdkBody::retryable(move || {
            let inner = body.try_clone().unwrap_or_else(SdkBody::taken);
            SdkBody::from_body_1_x(Throttled {
                inner,
                limiter: Arc::clone(&limiter),
                wait: None,
            })
        }))
    }
}

/// A body that waits, after each chunk, for the limiter to catch up.
struct Throttled {
    inner: SdkBody,
    limiter: Arc<Limiter>,
    wait: Option<Pin<Box<Sleep>>>,
}

impl Body for Throttled {
    type Data = Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(wait) = self.wait.as_mut() {
            if wait.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.wait = None;
        }
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame {
            if let Some(data) = frame.data_ref() {
                let delay = self.limiter.charge(data.len());
                if !delay.is_zero() {
                    self.wait = Some(Box::pin(tokio::time::sleep(delay)));
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.wait.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn charges_add_up_at_the_rate_and_idle_time_earns_no_credit() {
        let limiter = Limiter::new(1000);
        assert_eq!(limiter.charge(500), Duration::from_millis(500));
        assert_eq!(limiter.charge(500), Duration::from_millis(1000));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(limiter.charge(100), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_stream_takes_as_long_as_its_bytes_at_the_rate() {
        let limiter = Limiter::new(10_000);
        let started = Instant::now();
        let stream = limiter.throttle(ByteStream::from(vec![7u8; 50_000]));
        let bytes = stream.collect().await.expect("body").into_bytes();
        assert_eq!(bytes.len(), 50_000);
        // One chunk, then the wait it costs before the body may end.
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
