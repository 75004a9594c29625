//! A connection's byte stream as the HTTP layer sees it (bytes already read while detecting
//! the protocol are replayed first), and its request activity for the idle watchdog.
//!
//! Idleness is counted in requests, not bytes: HTTP/2 keep-alive PINGs move bytes on a
//! connection nobody uses, and must not keep it open forever.
//!
//! On HTTP/1 the stream also replaces hyper's own answers to a request head it cannot parse
//! (400, 414, and 431 for a head beyond its buffer): hyper writes those before any request
//! reaches graygate, bare and with no body. They are recognised on the way out — a status
//! line hyper uses for them, `content-length: 0`, and no `x-request-id`, which every answer
//! graygate produces carries — and replaced with graygate's JSON error, so every error a
//! client sees has the gateway's shape, however large the head that caused it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::GatewayError;

/// When a connection last started a request, and how many it has in flight.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

/// Marks a request in flight until dropped (when its response has been produced).
pub struct InFlight(Arc<Activity>);

pub struct ConnIo<T> {
    prefix: Bytes,
    inner: T,
    /// HTTP/1: hyper's automatic error answers are replaced.
    answers_parse_errors: bool,
    /// graygate's answer in place of hyper's, still to be written (what hyper wrote after
    /// it is swallowed: the connection closes after this answer).
    replacement: Option<Bytes>,
    /// After a replaced answer: the write side is shut, and the rest of the oversized head
    /// is read and dropped until the client stops or this expires (nginx's lingering
    /// close). Closing with unread bytes would make the kernel reset the connection, and a
    /// reset can destroy the answer before the client has read it.
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a connection whose head was refused is drained before it is closed.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

// === impl Activity ===

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity { started: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// How long the connection has had no request in flight and none started
    /// (zero while one is in flight).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return std::time::Duration::ZERO;
        }
        let now = self.started.elapsed().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.last_ms.store(self.0.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

// === impl ConnIo ===

impl<T> ConnIo<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        ConnIo { prefix, inner, answers_parse_errors: false, replacement: None, linger: None }
    }

    /// An HTTP/1 connection: hyper's bare answers to unparseable heads are replaced.
    pub fn http1(mut self) -> Self {
        self.answers_parse_errors = true;
        self
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> ConnIo<T> {
    /// Shuts the write side after a replaced answer, then drains the client until it
    /// stops sending, closes, or [`LINGER`] is over.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        if self.linger.is_none() {
            std::task::ready!(Pin::new(&mut self.inner).poll_shutdown(cx))?;
            self.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
        }
        let mut sink = [0u8; 8192];
        loop {
            if let Some(deadline) = self.linger.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut sink);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> ConnIo<T> {
    /// Writes what is left of the replacement; ready once it is all out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(pending) = self.replacement.as_mut() {
            if pending.is_empty() {
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            pending.advance(n);
        }
        Poll::Ready(Ok(()))
    }

    /// `Some(len)` when `data` was taken over (or swallowed) instead of written through.
    fn poll_take_over(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if self.replacement.is_none() {
            if !self.answers_parse_errors {
                return None;
            }
            self.replacement = Some(Bytes::from(replacement_for(data)?));
        }
        Some(self.poll_replacement(cx).map_ok(|()| data.len()))
    }
}

/// graygate's answer for `written` if it is one of hyper's automatic error answers.
fn replacement_for(written: &[u8]) -> Option<Vec<u8>> {
    let error = match written.get(..13)? {
        b"HTTP/1.1 400 " => GatewayError::BadRequest("Malformed request head"),
        b"HTTP/1.1 414 " => GatewayError::UriTooLong,
        b"HTTP/1.1 431 " => GatewayError::HeadersTooLarge,
        _ => return None,
    };
    let end = written.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &written[..end + 2];
    let mut date = None;
    let mut bare = false;
    for line in head.split_inclusive(|&b| b == b'\n').skip(1) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"x-request-id:") {
            return None;
        }
        bare |= lower.as_slice() == b"content-length: 0\r\n";
        if lower.starts_with(b"date:") {
            date = Some(line);
        }
    }
    bare.then(|| error.to_wire(&crate::proxy::headers::generate_request_id(), date))
}

impl<T: AsyncRead + Unpin> AsyncRead for ConnIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ConnIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(taken) = self.poll_take_over(cx, data) {
            return taken;
        }
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's automatic answer is one buffer (a head, no body); anything vectored after
        // a replacement is swallowed whole.
        if self.answers_parse_errors {
            let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| &b[..]);
            let total = bufs.iter().map(|b| b.len()).sum();
            if let Some(taken) = self.poll_take_over(cx, first) {
                return taken.map_ok(|_| total);
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.replacement.is_some() {
            return self.poll_linger(cx);
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
