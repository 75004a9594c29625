//! Slow and idle clients, and the connection cap (battery #12-14).

use super::*;

// ============================================================================================
// 12-13. Slow and idle clients.
// ============================================================================================

const HEADER_READ: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_closed_at_the_header_read_deadline() {
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let mut wire = connect(s.addr()).await;
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "silent socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_sent_only_p_is_closed_at_the_header_read_deadline() {
    // "P" may still be the HTTP/2 preface: the protocol detection itself must time out.
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let mut wire = connect(s.addr()).await;
    wire.send(b"P").await.unwrap();
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "\"P\"");
    let mut wire = connect(s.addr()).await;
    wire.send(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "half an HTTP/2 preface");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_at_the_header_read_deadline() {
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let stream = TcpStream::connect(s.addr()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let started = Instant::now();
    let dripper = tokio::spawn(async move {
        if write.write_all(b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Slow: ").await.is_err() {
            return;
        }
        // One header byte every 300 ms, for far longer than the deadline.
        for _ in 0..30 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut wire = Wire::new(read);
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await.map(|_| started.elapsed());
    assert_closed_by_deadline(closed, HEADER_READ, "slowloris");
    dripper.abort();
    s.origin.assert_nothing("a head that never completed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keepalive_connection_is_closed() {
    let s = start(&[], |config| config.timeouts.header_read = HEADER_READ).await;
    let mut wire = connect(s.addr()).await;
    wire.send(GET).await.unwrap();
    assert_eq!(wire.reply().await.expect("an answer").status, 200);
    let closed = wire.closed_within(HEADER_READ + Duration::from_secs(5)).await;
    assert_closed_by_deadline(closed, HEADER_READ, "idle keep-alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_after_keepalive_idle() {
    let idle = Duration::from_secs(1);
    let s = start(&[], |config| config.timeouts.keepalive_idle = idle).await;
    let stream = TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/hello-prod", s.addr())).body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    response.into_body().collect().await.unwrap();
    let started = Instant::now();
    let ended = tokio::time::timeout(idle + Duration::from_secs(3), connection).await;
    assert!(ended.is_ok(), "the idle h2c connection is still open after {:?}", started.elapsed());
    assert!(started.elapsed() >= idle.mul_f32(0.8), "closed before the idle timeout: {:?}", started.elapsed());
    drop(sender);
}

/// The server's own HTTP/2 keep-alive PINGs move bytes on an idle connection; if they counted
/// as activity, with `keepalive_idle` above the PING interval (a third of it) an idle h2
/// connection would never be closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2c_connection_is_closed_even_when_keepalive_idle_exceeds_the_ping_interval() {
    let idle = Duration::from_secs(3);
    let s = start(&[], |config| config.timeouts.keepalive_idle = idle).await;
    let stream = TcpStream::connect(s.addr()).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("http://{}/hello-prod", s.addr())).body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await.unwrap().unwrap();
    response.into_body().collect().await.unwrap();
    let ended = tokio::time::timeout(idle + Duration::from_secs(4), connection).await;
    assert!(ended.is_ok(), "an idle h2c connection outlived keepalive_idle ({idle:?}): PINGs count as activity");
    drop(sender);
}

// ============================================================================================
// 14. The connection cap.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_and_existing_ones_still_served() {
    let (gated, mut arrivals, release) = gated_backend().await;
    let s = start(&[("gated", gated)], |config| config.limits.max_connections = 3).await;

    // One connection with a request in flight, two idle keep-alive connections.
    let mut busy = connect(s.addr()).await;
    busy.send(b"GET /hello-gated HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.expect("the held request reaches its upstream");
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut wire = connect(s.addr()).await;
        wire.send(GET).await.unwrap();
        assert_eq!(wire.reply().await.expect("an answer").status, 200);
        idle.push(wire);
    }

    // 20 more: each is closed at once, unserved.
    let mut extra = Vec::new();
    for _ in 0..20 {
        let addr = s.addr();
        extra.push(tokio::spawn(async move {
            let mut wire = connect(addr).await;
            let _ = wire.send(GET).await;
            let mut received = Vec::new();
            let drain = async {
                while wire.fill().await {
                    received.append(&mut wire.buf);
                }
            };
            let closed = tokio::time::timeout(Duration::from_secs(3), drain).await.is_ok();
            (closed, received)
        }));
    }
    for task in extra {
        let (closed, received) = task.await.unwrap();
        assert!(closed, "a connection over the cap was left open");
        assert!(received.is_empty(), "a connection over the cap was served: {}", String::from_utf8_lossy(&received));
    }
    assert_eq!(s.origin.count(), 2, "only the two admitted requests reached the origin");

    // The three admitted connections are unharmed.
    release.notify_one();
    let reply = busy.reply().await.expect("the held request completes");
    assert_eq!((reply.status, reply.text().as_str()), (200, "slow"));
    for wire in &mut idle {
        wire.send(GET).await.unwrap();
        assert_eq!(wire.reply().await.expect("an idle connection still answers").status, 200);
    }

    // A slot freed is a slot reusable.
    drop(idle.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (_, reply) = exchange(s.addr(), GET).await;
        if reply.as_ref().is_some_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "no new connection admitted after one closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sent_a_byte_does_not_hold_up_shutdown() {
    // The header-read deadline (10 s by default) is far longer than the wait below.
    let s = start(&[], |_| {}).await;
    let silent = TcpStream::connect(s.addr()).await.unwrap();
    let mut answered = connect(s.addr()).await;
    answered.send(GET).await.unwrap();
    assert_eq!(answered.reply().await.expect("an answer").status, 200);
    // Both connections are open (one idle after a request, one before any): shutdown drains
    // the first and closes the second at once.
    let stopped = tokio::time::timeout(Duration::from_secs(3), s.gw.app.shutdown()).await;
    assert!(stopped.is_ok(), "shutdown waited on a connection that never sent a request");
    drop(silent);
}
