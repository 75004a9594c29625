//! HTTP/1 upstream connections driven by the request's own task, and the pool that keeps
//! them between requests.
//!
//! hyper-util's legacy client hands every request to a connection task through a channel
//! and spawns a task per response to put the connection back once it is ready again: per
//! request, a spawn and wake-ups across three tasks. Here the task that serves the request
//! polls the upstream connection itself — while it waits for the response head, then with
//! every poll of the response body — and the body puts the connection back when it ends.
//! An idle connection is polled by nobody: a close by the upstream meanwhile is seen by the
//! next request's first poll, and hyper then hands that request back unsent, so it goes out
//! on a new connection. h2c and https upstreams keep the legacy client (`upstream`).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::RequestBody;

type Driver = Pin<Box<Connection<TokioIo<TcpStream>, RequestBody>>>;

#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    /// Idle connections older than this are closed (keep it below the upstreams' own).
    pub idle_timeout: Duration,
    pub max_idle_per_upstream: usize,
}

/// Idle HTTP/1 connections by upstream authority.
pub struct Http1Pool {
    settings: PoolSettings,
    builder: http1::Builder,
    upstreams: Mutex<HashMap<Box<str>, Arc<Slot>>>,
}

/// One upstream's idle connections, most recently used last. A lease holds its slot, so
/// putting a connection back needs no lookup (and no copy of the authority).
#[derive(Default)]
struct Slot {
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One upstream connection: the handle a request is sent on, and the connection's state
/// machine, which does the I/O only while someone polls it.
struct Conn {
    sender: SendRequest<RequestBody>,
    /// `None` once the connection has ended.
    driver: Option<Driver>,
}

/// A connection lent to one exchange. It must be driven for the response body to arrive,
/// and goes back to the pool when the body has ended, unless the exchange poisoned it.
pub struct Lease {
    conn: Conn,
    slot: Arc<Slot>,
    max_idle: usize,
    reusable: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("connect to {authority}: {reason}")]
    Connect { authority: Box<str>, reason: String },
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

// === impl Http1Pool ===

impl Http1Pool {
    /// The pool, and a task that closes connections idle for longer than the timeout (the
    /// task ends with the pool).
    pub fn spawn(settings: PoolSettings) -> Arc<Self> {
        let pool = Arc::new(Http1Pool { settings, builder: http1::Builder::new(), upstreams: Mutex::default() });
        let weak = Arc::downgrade(&pool);
        let every = (settings.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = weak.upgrade() else { break };
                pool.sweep();
            }
        });
        pool
    }

    /// Sends `request` (origin-form URI, `Host` set) to `authority`, on an idle connection
    /// if one is alive, else on a new one. A pooled connection that turns out closed before
    /// the request was written hands it back, and it goes out on a new connection: nothing
    /// was sent, so even a POST is safe to send again. With `retry_connect`, a failed connect
    /// is tried once more (the request is still ours then: no copy of it is needed).
    pub async fn send(
        self: &Arc<Self>,
        authority: &str,
        host: &str,
        port: u16,
        mut request: Request<RequestBody>,
        retry_connect: bool,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        let slot = self.slot(authority);
        let mut pooled = self.checkout(&slot);
        // One await of `exchange` (in a loop, not two call sites): each site would be a
        // state of its own in this future, which every request carries.
        loop {
            let reused = pooled.is_some();
            let conn = match pooled.take() {
                Some(conn) => conn,
                // Boxed: once per connection, and the resolver's and connect's futures would
                // otherwise size every request's future.
                None => match Box::pin(self.connect(authority, host, port)).await {
                    Err(error) if retry_connect => {
                        tracing::debug!(%error, "connect failed; retrying once on a fresh connection");
                        request.body().note_retry();
                        Box::pin(self.connect(authority, host, port)).await?
                    }
                    connected => connected?,
                },
            };
            match exchange(conn, request).await {
                Ok((response, conn)) => return Ok((response, self.lease(slot, conn))),
                Err(mut refused) => match refused.take_message() {
                    Some(unsent) if reused => {
                        unsent.body().note_retry();
                        request = unsent;
                    }
                    _ => return Err(refused.into_error().into()),
                },
            }
        }
    }

    fn lease(&self, slot: Arc<Slot>, conn: Conn) -> Lease {
        Lease { conn, slot, max_idle: self.settings.max_idle_per_upstream, reusable: true }
    }

    fn slot(&self, authority: &str) -> Arc<Slot> {
        let mut upstreams = lock(&self.upstreams);
        if let Some(slot) = upstreams.get(authority) {
            return Arc::clone(slot);
        }
        Arc::clone(upstreams.entry(authority.into()).or_default())
    }

    /// The most recently used idle connection that is still open and ready. It is not
    /// polled here: if the upstream closed it meanwhile, the request's first poll sees it.
    fn checkout(&self, slot: &Slot) -> Option<Conn> {
        loop {
            let idle = lock(&slot.idle).pop()?;
            if idle.since.elapsed() < self.settings.idle_timeout
                && idle.conn.driver.is_some()
                && idle.conn.sender.is_ready()
            {
                return Some(idle.conn);
            }
        }
    }

    fn sweep(&self) {
        let timeout = self.settings.idle_timeout;
        let slots: Vec<Arc<Slot>> = lock(&self.upstreams).values().cloned().collect();
        for slot in slots {
            let expired: Vec<Idle> = {
                let mut idle = lock(&slot.idle);
                let (old, fresh) = idle.drain(..).partition(|idle| idle.since.elapsed() >= timeout);
                *idle = fresh;
                old
            };
            // Closed outside the lock: each is a syscall.
            drop(expired);
        }
        // Slots of upstreams no request uses any more (gone with a reload) go too.
        lock(&self.upstreams).retain(|_, slot| Arc::strong_count(slot) > 1 || !lock(&slot.idle).is_empty());
    }

    async fn connect(&self, authority: &str, host: &str, port: u16) -> Result<Conn, SendError> {
        let failed = |reason: String| SendError::Connect { authority: authority.into(), reason };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let connecting = async {
            let mut last = None;
            for addr in tokio::net::lookup_host((host, port)).await? {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(error) => last = Some(error),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))
        };
        let stream = match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(failed(error.to_string())),
            Err(_) => return Err(failed(format!("timed out after {:?}", self.settings.connect_timeout))),
        };
        stream.set_nodelay(true).map_err(|error| failed(error.to_string()))?;
        // Keep-alive probes find an upstream that vanished without a FIN (as the legacy
        // connector's keep-alive did).
        let keepalive = socket2::TcpKeepalive::new().with_time(self.settings.idle_timeout.max(Duration::from_secs(1)));
        if let Err(error) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
            tracing::debug!(%error, "setting TCP keep-alive failed");
        }
        let (sender, driver) = self.builder.handshake(TokioIo::new(stream)).await?;
        Ok(Conn { sender, driver: Some(Box::pin(driver)) })
    }

    #[cfg(test)]
    fn idle_count(&self, authority: &str) -> usize {
        lock(&self.upstreams).get(authority).map_or(0, |slot| lock(&slot.idle).len())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes the request and reads the response head, driving the connection meanwhile.
async fn exchange(
    mut conn: Conn,
    request: Request<RequestBody>,
) -> Result<(Response<Incoming>, Conn), hyper::client::conn::TrySendError<Request<RequestBody>>> {
    let mut response = std::pin::pin!(conn.sender.try_send_request(request));
    let result = poll_fn(|cx| {
        conn.drive(cx);
        response.as_mut().poll(cx)
    })
    .await;
    result.map(|response| (response, conn))
}

// === impl Conn ===

impl Conn {
    /// Polls the connection's state machine; false once the connection has ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return false;
        };
        match driver.as_mut().poll(cx) {
            Poll::Pending => true,
            Poll::Ready(result) => {
                if let Err(error) = result {
                    tracing::debug!(%error, "upstream connection ended");
                }
                self.driver = None;
                false
            }
        }
    }
}

// === impl Lease ===

impl Lease {
    /// Lets the connection do its I/O: the response body arrives only through this.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.conn.drive(cx) {
            self.reusable = false;
        }
    }

    /// Never reuse this connection (its response was unsafe to read past).
    pub fn poison(&mut self) {
        self.reusable = false;
    }

    /// Back to the pool if the body was read to its end and the connection is ready for
    /// another request; otherwise dropped, which closes it.
    pub fn release(mut self, body_ended: bool) {
        if !(self.reusable && body_ended) {
            return;
        }
        // hyper marks the connection ready in the same poll that reads the body's end, as a
        // rule; if not, one more turn of its state machine (nobody needs waking: the next
        // request polls it again).
        if !self.conn.sender.is_ready() {
            let mut cx = Context::from_waker(Waker::noop());
            if !self.conn.drive(&mut cx) || !self.conn.sender.is_ready() {
                return;
            }
        }
        let mut idle = lock(&self.slot.idle);
        if idle.len() < self.max_idle {
            idle.push(Idle { conn: self.conn, since: Instant::now() });
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
