//! Connect failures and the one retry they allow: only an idempotent request without a body, only when nothing was sent.

use super::*;

// === 1. connect failures and the one retry ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_upstream_port_is_a_502_counted_as_a_connect_error() {
    let dead = closed_port().await;
    let gw = Gateway::start(&routes(&[("dead", &http(dead))], None)).await;
    for n in 1..=2 {
        let reply = get(&gw, "/dead-latest").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
        assert_eq!(reply.error_code(), "APIG.0202");
        assert!(reply.json()["error_msg"].as_str().unwrap().contains("connection failed"), "{}", reply.text());
        assert!(reply.elapsed < Duration::from_secs(3), "a refused connect fails fast: {:?}", reply.elapsed);
        // One client request is one error, whether or not it was retried.
        assert_eq!(upstream_errors(&gw, "dead", "latest", "connect").await, f64::from(n));
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Sends `method` with `body` to an upstream whose first connection attempt times out
/// and whose second would succeed; returns the reply and what the origin received.
async fn against_a_full_listen_queue(method: Method, body: &'static [u8]) -> (Reply, Record, Gateway) {
    let record = Record::default();
    let mut upstream = Backlogged::start(&record, |_, _| Act::Answer(ok("served"))).await;
    let gw = Gateway::start_with(&routes(&[("queued", &http(upstream.addr))], None), |config| {
        config.timeouts.upstream_connect = CONNECT_TIMEOUT;
    })
    .await;
    let request = {
        let client = client(false);
        let method = method.clone();
        let url = format!("http://{}/queued-latest", gw.app.data_addr());
        tokio::spawn(async move {
            let request = Request::builder().method(method).uri(url).body(Full::new(Bytes::from_static(body))).unwrap();
            let started = Instant::now();
            let response = client.request(request).await.expect("an answer");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}"));
            Reply { status: parts.status, headers: parts.headers, body, elapsed: started.elapsed() }
        })
    };
    // The gateway's first SYN was dropped; empty the queue so a second attempt connects.
    wait_for_connect_attempt(upstream.addr).await;
    upstream.drain();
    let reply = tokio::time::timeout(PATIENCE, request).await.expect("answer in time").unwrap();
    (reply, record, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_get_whose_connect_timed_out_is_retried_once_on_a_fresh_connection() {
    let (reply, record, gw) = against_a_full_listen_queue(Method::GET, b"").await;
    assert_eq!(reply.status, StatusCode::OK, "the retry connected: {}", reply.text());
    assert_eq!(reply.text(), "served");
    assert!(reply.elapsed >= CONNECT_TIMEOUT - Duration::from_millis(50), "the first attempt timed out: {reply:?}");
    let seen = record.requests();
    assert_eq!(seen.len(), 1, "one GET reached the origin: {seen:?}");
    assert!(seen[0].head.starts_with("GET / HTTP/1.1\r\n"), "{}", seen[0].head);
    assert_eq!(upstream_errors(&gw, "queued", "latest", "connect").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_connect_timed_out_is_not_retried() {
    let (reply, record, gw) = against_a_full_listen_queue(Method::POST, b"{\"order\":1}").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "APIG.0202");
    assert!(reply.elapsed >= CONNECT_TIMEOUT - Duration::from_millis(50), "{reply:?}");
    // Give a (wrong) retry time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(record.count(), 0, "no POST reached the origin: {:?}", record.requests());
    assert_eq!(upstream_errors(&gw, "queued", "latest", "connect").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_with_a_body_whose_connect_timed_out_is_not_retried() {
    // PUT is idempotent, but its body streams from the client and cannot be sent twice.
    let (reply, record, _gw) = against_a_full_listen_queue(Method::PUT, b"{\"state\":\"on\"}").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "APIG.0202");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(record.count(), 0, "{:?}", record.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_to_an_upstream_that_never_accepts_is_tried_exactly_twice_and_a_post_once() {
    let record = Record::default();
    let mut get_upstream = Backlogged::start(&record, |_, _| Act::Answer(ok("late"))).await;
    let mut post_upstream = Backlogged::start(&record, |_, _| Act::Answer(ok("late"))).await;
    let connect = Duration::from_millis(400);
    let routes = routes(&[("getq", &http(get_upstream.addr)), ("postq", &http(post_upstream.addr))], None);
    let gw = Gateway::start_with(&routes, |config| config.timeouts.upstream_connect = connect).await;
    for (method, path, upstream, attempts) in
        [(Method::GET, "/getq-latest", get_upstream.addr, 2), (Method::POST, "/postq-latest", post_upstream.addr, 1)]
    {
        // Every connection attempt stays in SYN-SENT for the whole connect timeout: watch
        // for them, one distinct local port per attempt.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut attempts = HashSet::new();
                while !stop.load(Ordering::SeqCst) {
                    attempts.extend(connecting_to(upstream.port())?);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Some(attempts.len())
            })
        };
        let reply = send(&client(false), &gw, method.clone(), path, b"").await;
        stop.store(true, Ordering::SeqCst);
        let watched = watch.await.unwrap();
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{method}: {}", reply.text());
        assert_eq!(reply.error_code(), "APIG.0202");
        let slack = Duration::from_millis(50);
        assert!(
            reply.elapsed >= connect * attempts - slack,
            "{method}: {attempts} connect timeouts: {:?}",
            reply.elapsed
        );
        // Where /proc/net/tcp is not readable the timing above must do.
        if let Some(watched) = watched {
            assert_eq!(watched, attempts as usize, "{method}: connection attempts");
        }
    }
    get_upstream.drain();
    post_upstream.drain();
    assert_eq!(upstream_errors(&gw, "getq", "latest", "connect").await, 1.0, "one request, one error");
    assert_eq!(upstream_errors(&gw, "postq", "latest", "connect").await, 1.0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(record.count(), 0);
}

/// An origin that accepts its first connection and closes it without reading a byte,
/// then serves normally; returns its address and how many connections it accepted.
async fn closes_first_connection(record: &Record) -> (SocketAddr, Arc<AtomicUsize>) {
    let accepted = Arc::new(AtomicUsize::new(0));
    let policy: Policy = Arc::new(|_, _| Act::Answer(ok("served")));
    let (record, counter) = (record.clone(), accepted.clone());
    let addr = raw_backend(move |stream| {
        let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
        let (record, policy) = (record.clone(), policy.clone());
        async move {
            if !first {
                serve_recorded(stream, record, policy, None).await;
            }
        }
    })
    .await;
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_fresh_connection_was_closed_at_accept_is_not_retried() {
    let record = Record::default();
    let (addr, accepted) = closes_first_connection(&record).await;
    let gw = Gateway::start(&routes(&[("flaky", &http(addr))], None)).await;
    let reply = send(&client(false), &gw, Method::POST, "/flaky-latest", b"{\"pay\":10}").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "APIG.0202");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The second connection would have served it: a retry would show here.
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "no second connection was opened for the POST");
    assert_eq!(record.count(), 0, "{:?}", record.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_fresh_connection_was_closed_at_accept_is_tried_at_most_twice() {
    // Not a connect failure (the TCP connect succeeded): the spec allows, but does not
    // require, a retry. What matters is that it never loops.
    let record = Record::default();
    let (addr, accepted) = closes_first_connection(&record).await;
    let gw = Gateway::start(&routes(&[("flaky", &http(addr))], None)).await;
    let reply = get(&gw, "/flaky-latest").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let connections = accepted.load(Ordering::SeqCst);
    println!("GET on a connection closed at accept: {} after {connections} connection(s)", reply.status);
    assert!(connections <= 2, "at most one retry: {connections} connections");
    match reply.status {
        StatusCode::OK => assert_eq!(record.count(), 1, "served once by the retry"),
        StatusCode::BAD_GATEWAY => assert_eq!(reply.error_code(), "APIG.0202"),
        other => panic!("unexpected {other}: {}", reply.text()),
    }
}
