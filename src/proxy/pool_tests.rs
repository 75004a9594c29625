//! The pool against a real upstream on loopback: one connection carries sequential
//! requests, a connection the upstream closed while idle is never used, and idle
//! connections are closed after the idle timeout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::*;
use crate::proxy::body::{RequestBody, UpstreamBody};

/// Connections the upstream accepted, and how many of them are still open.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
}

/// An HTTP/1 upstream answering `ok`; with `close_idle_after`, it closes each connection
/// that long after its first answer (as an upstream with a short keep-alive does).
async fn upstream(close_idle_after: Option<Duration>) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let seen = Arc::clone(&counts);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.accepted.fetch_add(1, Ordering::SeqCst);
            seen.open.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                });
                let connection =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                match close_idle_after {
                    Some(after) => {
                        let _ = tokio::time::timeout(after, connection).await;
                    }
                    None => {
                        let _ = connection.await;
                    }
                }
                seen.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts)
}

fn pool(idle_timeout: Duration) -> Arc<Http1Pool> {
    Http1Pool::spawn(PoolSettings { connect_timeout: Duration::from_secs(2), idle_timeout, max_idle_per_upstream: 4 })
}

/// One GET through the pool, its body read to the end the way the server reads it.
async fn get(pool: &Arc<Http1Pool>, addr: SocketAddr) -> String {
    let key = addr.to_string();
    let request = Request::builder().uri("/").header("host", &key).body(RequestBody::empty()).unwrap();
    let (response, lease) = pool.send(&key, "127.0.0.1", addr.port(), request, false).await.unwrap();
    let body = UpstreamBody::new(response.into_body(), Some(lease), None);
    String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection() {
    let (addr, counts) = upstream(None).await;
    let pool = pool(Duration::from_secs(30));
    for _ in 0..100 {
        assert_eq!(get(&pool, addr).await, "ok");
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 1, "every request after the first reused the connection");
    assert_eq!(pool.idle_count(&addr.to_string()), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used() {
    let (addr, counts) = upstream(Some(Duration::from_millis(50))).await;
    let pool = pool(Duration::from_secs(30));
    assert_eq!(get(&pool, addr).await, "ok");
    wait_for("the upstream closes the idle connection", || counts.open.load(Ordering::SeqCst) == 0).await;
    // The pool still holds it; checkout sees the close and connects anew.
    assert_eq!(pool.idle_count(&addr.to_string()), 1);
    assert_eq!(get(&pool, addr).await, "ok");
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let (addr, counts) = upstream(None).await;
    let pool = pool(Duration::from_millis(200));
    assert_eq!(get(&pool, addr).await, "ok");
    assert_eq!(counts.open.load(Ordering::SeqCst), 1);
    wait_for("the sweeper closes the idle connection", || counts.open.load(Ordering::SeqCst) == 0).await;
    assert_eq!(pool.idle_count(&addr.to_string()), 0);
}

#[tokio::test]
async fn a_body_dropped_before_its_end_closes_its_connection() {
    let (addr, counts) = upstream(None).await;
    let pool = pool(Duration::from_secs(30));
    let key = addr.to_string();
    let request = Request::builder().uri("/").header("host", &key).body(RequestBody::empty()).unwrap();
    let (response, lease) = pool.send(&key, "127.0.0.1", addr.port(), request, false).await.unwrap();
    drop(UpstreamBody::new(response.into_body(), Some(lease), None));
    assert_eq!(pool.idle_count(&key), 0, "a connection in the middle of a message is never pooled");
    wait_for("the connection is closed", || counts.open.load(Ordering::SeqCst) == 0).await;
}
