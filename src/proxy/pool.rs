//! HTTP/1 upstream connections driven by the request's own task, and the pool that keeps
//! them between requests.
//!
//! hyper-util's legacy client hands every request to a connection task through a channel
//! and spawns a task per response to put the connection back once it is ready again: per
//! request, a spawn and wake-ups across three tasks. Here the task that serves the request
//! polls the upstream connection itself — while it waits for the response head, then with
//! every poll of the response body — and the body puts the connection back when it ends.
//! An idle connection is polled by nobody; checkout polls it once, which is when a close
//! by the upstream is seen. h2c and https upstreams keep the legacy client (`upstream`).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
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

/// Idle HTTP/1 connections by upstream authority, most recently used last.
pub struct Http1Pool {
    settings: PoolSettings,
    builder: http1::Builder,
    idle: Mutex<HashMap<Box<str>, Vec<Idle>>>,
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
    key: Box<str>,
    pool: Weak<Http1Pool>,
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
        let pool = Arc::new(Http1Pool { settings, builder: http1::Builder::new(), idle: Mutex::default() });
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
    /// was sent, so even a POST is safe to send again.
    pub async fn send(
        self: &Arc<Self>,
        authority: &str,
        host: &str,
        port: u16,
        mut request: Request<RequestBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        if let Some(conn) = self.checkout(authority).await {
            match exchange(conn, request).await {
                Ok((response, conn)) => return Ok((response, self.lease(authority, conn))),
                Err(mut refused) => match refused.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(refused.into_error().into()),
                },
            }
        }
        let conn = self.connect(authority, host, port).await?;
        match exchange(conn, request).await {
            Ok((response, conn)) => Ok((response, self.lease(authority, conn))),
            Err(refused) => Err(refused.into_error().into()),
        }
    }

    fn lease(self: &Arc<Self>, authority: &str, conn: Conn) -> Lease {
        Lease { conn, key: authority.into(), pool: Arc::downgrade(self), reusable: true }
    }

    /// The most recently used idle connection that is still open and ready.
    async fn checkout(&self, authority: &str) -> Option<Conn> {
        loop {
            let idle = self.lock().get_mut(authority)?.pop()?;
            if idle.since.elapsed() >= self.settings.idle_timeout {
                continue;
            }
            let mut conn = idle.conn;
            // One poll: an upstream that closed the connection (or sent bytes nobody asked
            // for) ends it here, instead of failing the request sent on it.
            let alive = poll_fn(|cx| Poll::Ready(conn.drive(cx))).await;
            if alive && conn.sender.is_ready() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, key: Box<str>, conn: Conn) {
        let mut idle = self.lock();
        let list = idle.entry(key).or_default();
        if list.len() < self.settings.max_idle_per_upstream {
            list.push(Idle { conn, since: Instant::now() });
        }
    }

    fn sweep(&self) {
        let timeout = self.settings.idle_timeout;
        let mut expired = Vec::new();
        {
            let mut idle = self.lock();
            idle.retain(|_, list| {
                let (old, fresh): (Vec<_>, Vec<_>) = list.drain(..).partition(|idle| idle.since.elapsed() >= timeout);
                *list = fresh;
                expired.extend(old);
                !list.is_empty()
            });
        }
        // Closed outside the lock: each is a syscall.
        drop(expired);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        self.lock().get(authority).map_or(0, Vec::len)
    }
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
        // One more turn of the state machine past the body's end, which is where hyper
        // marks the connection ready; nobody needs waking, checkout polls it again.
        let mut cx = Context::from_waker(Waker::noop());
        if !self.conn.drive(&mut cx) || !self.conn.sender.is_ready() {
            return;
        }
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self.key, self.conn);
        }
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
