//! Bodies at the proxy boundary: the client's request body with its size limit, and the
//! upstream's response body holding the upstream's connection permit until it ends (and,
//! for an HTTP/1 upstream, driving the connection it arrives on, which it returns to the
//! pool when it has ended).
//!
//! A request body that errors (a bad chunk size, a client that vanishes) or grows past the
//! limit fails the upstream request mid-stream, so the upstream never sees a complete
//! request; the shared [`BodyFault`] then tells the proxy the fault was the client's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use super::pool::Lease;
use crate::access_log::{AccessLog, Entry};

/// What went wrong with a request body, if anything; and, for the access log, how much of
/// it went upstream and how many times it was sent again on a fresh connection.
#[derive(Debug, Default)]
pub struct BodyFault {
    fault: AtomicU8,
    received: AtomicU64,
    retries: AtomicU8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    TooLarge,
    Client,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body exceeds {0} bytes")]
    TooLarge(u64),
    #[error("request body failed: {0}")]
    Client(#[from] hyper::Error),
}

/// The client's body on its way upstream, counted against the limit.
pub struct RequestBody {
    inner: Option<Incoming>,
    /// A body graygate made itself (a management API invocation), sent as one frame.
    once: Option<Bytes>,
    limit: u64,
    seen: u64,
    fault: Arc<BodyFault>,
}

/// The upstream's body on its way to the client.
pub struct UpstreamBody {
    inner: Incoming,
    /// The HTTP/1 connection the body arrives on (h2c and https bodies have their own task).
    lease: Option<Lease>,
    ended: bool,
    _permit: Option<OwnedSemaphorePermit>,
    /// The request's access log line, written when the body ends or is dropped.
    log: Option<(Box<Entry>, AccessLog)>,
}

// === impl BodyFault ===

impl BodyFault {
    pub fn get(&self) -> Fault {
        match self.fault.load(Ordering::Relaxed) {
            1 => Fault::TooLarge,
            2 => Fault::Client,
            _ => Fault::None,
        }
    }

    fn set(&self, fault: Fault) {
        let code = match fault {
            Fault::None => 0,
            Fault::TooLarge => 1,
            Fault::Client => 2,
        };
        self.fault.store(code, Ordering::Relaxed);
    }

    /// Request body bytes read from the client.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Times the request went out again after a failed connect or a closed pooled connection.
    pub fn retries(&self) -> u8 {
        self.retries.load(Ordering::Relaxed)
    }
}

// === impl RequestBody ===

impl RequestBody {
    pub fn new(inner: Incoming, limit: u64, fault: Arc<BodyFault>) -> Self {
        RequestBody { inner: Some(inner), once: None, limit, seen: 0, fault }
    }

    /// A body in memory, sent as one frame.
    pub fn full(bytes: Bytes) -> Self {
        let limit = bytes.len() as u64;
        RequestBody { inner: None, once: Some(bytes).filter(|b| !b.is_empty()), limit, seen: 0, fault: Arc::default() }
    }

    /// No body at all.
    #[cfg(test)]
    pub fn empty() -> Self {
        RequestBody { inner: None, once: None, limit: 0, seen: 0, fault: Arc::default() }
    }

    /// No body at all, for the second try of a bodiless request: it shares this body's
    /// bookkeeping (the retry is noted when it is sent).
    pub fn retry(&self) -> Self {
        RequestBody { inner: None, once: None, limit: 0, seen: 0, fault: Arc::clone(&self.fault) }
    }

    /// The request goes out again (the pool resends it on a fresh connection).
    pub fn note_retry(&self) {
        self.fault.retries.fetch_add(1, Ordering::Relaxed);
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(this.once.take().map(|bytes| Ok(Frame::data(bytes))));
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    this.fault.received.store(this.seen, Ordering::Relaxed);
                    if this.seen > this.limit {
                        this.fault.set(Fault::TooLarge);
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge(this.limit))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                this.fault.set(Fault::Client);
                Poll::Ready(Some(Err(RequestBodyError::Client(error))))
            }
            other => other.map_err(RequestBodyError::Client),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => inner.is_end_stream(),
            None => self.once.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(self.once.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

// === impl UpstreamBody ===

impl UpstreamBody {
    pub fn new(inner: Incoming, lease: Option<Lease>, permit: Option<OwnedSemaphorePermit>) -> Self {
        UpstreamBody { inner, lease, ended: false, _permit: permit, log: None }
    }

    /// Counts the bytes sent to the client into `entry` and logs it when the body is done.
    pub fn log_on_end(&mut self, entry: Box<Entry>, log: AccessLog) {
        self.log = Some((entry, log));
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Some(lease) = this.lease.as_mut() {
            lease.drive(cx);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some((entry, _)), Some(data)) = (this.log.as_mut(), frame.data_ref()) {
                    entry.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => {
                if let Some(lease) = this.lease.as_mut() {
                    lease.poison();
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Dropped with the body unread (a client gone mid-response): the connection is in
        // the middle of a message and is closed.
        if let Some(lease) = self.lease.take() {
            lease.release(self.ended || self.inner.is_end_stream());
        }
        if let Some((entry, log)) = self.log.take() {
            log.submit(entry);
        }
    }
}
