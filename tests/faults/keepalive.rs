//! The keep-alive race and connection reuse: pooled connections the upstream closes, idle timeouts, one connection for sequential requests.

use super::*;

// === 6. the keep-alive race ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_upstream_connection() {
    let record = Record::default();
    let upstream = origin(&record, None, |n, _| Act::Answer(ok(&format!("r{n}")))).await;
    let gw = Gateway::start(&routes(&[("ka", &http(upstream))], None)).await;
    let client = client(false);
    for round in 0..50 {
        let reply = send(&client, &gw, Method::GET, "/ka-latest", b"").await;
        assert_eq!(reply.status, StatusCode::OK, "GET {round}: {}", reply.text());
    }
    assert_eq!(record.count(), 50);
    assert_eq!(record.connections(), 1, "each request after the first went out on the pooled connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_keepalive_shorter_than_the_pool_loses_no_get_and_duplicates_no_post() {
    let record = Record::default();
    let upstream = origin(&record, Some(Duration::from_millis(300)), |n, _| Act::Answer(ok(&format!("r{n}")))).await;
    let gw = Gateway::start(&routes(&[("ka", &http(upstream))], None)).await;
    let client = client(false);
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let reply = send(&client, &gw, Method::GET, "/ka-latest", b"").await;
        assert_eq!(reply.status, StatusCode::OK, "GET {round}: {}", reply.text());
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(record.count(), ROUNDS);
    assert!(record.connections() >= ROUNDS, "the upstream closed every idle connection: {}", record.connections());

    const BODIES: [&[u8]; ROUNDS] = [b"p0", b"p1", b"p2", b"p3", b"p4", b"p5"];
    let mut failed = 0;
    for body in BODIES {
        let reply = send(&client, &gw, Method::POST, "/ka-latest", body).await;
        failed += usize::from(reply.status != StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let posts: Vec<Vec<u8>> = record.requests().into_iter().filter(|s| s.method == "POST").map(|s| s.body).collect();
    for body in BODIES {
        let times = posts.iter().filter(|b| b.as_slice() == body).count();
        assert!(times <= 1, "POST {:?} reached the origin {times} times", String::from_utf8_lossy(body));
    }
    assert_eq!(failed, 0, "no POST failed either");
    assert_eq!(upstream_errors(&gw, "ka", "latest", "reset").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_idle_timeout_below_the_upstream_keepalive_never_reuses_a_closing_connection() {
    // The documented fix for the race: pooled connections expire before the upstream's
    // keep-alive does, so a request is never written to one the upstream is closing.
    let record = Record::default();
    let upstream = origin(&record, Some(Duration::from_millis(600)), |n, _| Act::Answer(ok(&format!("r{n}")))).await;
    let gw = Gateway::start_with(&routes(&[("ka", &http(upstream))], None), |config| {
        config.timeouts.pool_idle = Duration::from_millis(150);
    })
    .await;
    let client = client(false);
    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        let reply = send(&client, &gw, Method::GET, "/ka-latest", b"").await;
        assert_eq!(reply.status, StatusCode::OK, "GET {round}: {}", reply.text());
        // Past the pool's 150 ms, well before the upstream's 600 ms.
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
    assert_eq!(record.count(), ROUNDS);
    assert_eq!(record.connections(), ROUNDS, "every request after an idle pause took a fresh connection");
}

/// An origin that answers the first request on each connection and then, like a server
/// whose keep-alive timer fires as the next request arrives, reads the next request and
/// closes without answering.
async fn drops_second_request(record: &Record) -> SocketAddr {
    origin(
        record,
        None,
        |n, on_connection| {
            if on_connection == 0 { Act::Answer(ok(&format!("r{n}"))) } else { Act::Close }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_on_a_pooled_connection_the_upstream_drops_is_not_duplicated() {
    let record = Record::default();
    let upstream = drops_second_request(&record).await;
    let gw = Gateway::start(&routes(&[("ka", &http(upstream))], None)).await;
    let client = client(false);
    let first = send(&client, &gw, Method::POST, "/ka-latest", b"first").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    tokio::time::sleep(Duration::from_millis(100)).await; // back in the pool
    let second = send(&client, &gw, Method::POST, "/ka-latest", b"second").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = record.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].connection, 0, "the second POST went out on the pooled connection");
    assert_eq!(second.status, StatusCode::BAD_GATEWAY, "{}", second.text());
    assert_eq!(second.error_code(), "APIG.0202");
    assert_eq!(record.connections(), 1, "no new connection was opened to send the POST again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_a_pooled_connection_the_upstream_drops_is_sent_at_most_twice() {
    let record = Record::default();
    let upstream = drops_second_request(&record).await;
    let gw = Gateway::start(&routes(&[("ka", &http(upstream))], None)).await;
    let client = client(false);
    assert_eq!(send(&client, &gw, Method::GET, "/ka-latest", b"").await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = send(&client, &gw, Method::GET, "/ka-latest", b"").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "GET on a pooled connection dropped by the upstream: {} ({} requests on {} connections at the origin)",
        second.status,
        record.count(),
        record.connections()
    );
    assert!(record.count() <= 3, "at most one retry: {:?}", record.requests());
    if second.status != StatusCode::OK {
        assert_eq!(second.status, StatusCode::BAD_GATEWAY, "{}", second.text());
        assert_eq!(second.error_code(), "APIG.0202");
    }
}
