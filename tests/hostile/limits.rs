//! Header and body limits, answered in the gateway's own JSON (battery #10-11).

use super::*;

// ============================================================================================
// 10-11. Header and body limits.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_headers_is_431_and_others_are_still_served() {
    let s = start(&[], |_| {}).await;
    let request = with_headers;
    // 100 headers (Host and 99 more) is the default limit: still served.
    let (_, reply) = exchange(s.addr(), request(100).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    assert_eq!(s.origin.count(), 1);

    let (mut wire, reply) = exchange(s.addr(), request(101).as_bytes()).await;
    let reply = reply.expect("an answer to 101 headers");
    assert_eq!(reply.status, 431, "{}", reply.head);
    assert_eq!(s.gw.client.get("/hello-prod").await.status, StatusCode::OK, "a parallel client is served");
    // The refused connection is closed, or still answers.
    if wire.closed_within(Duration::from_millis(500)).await.is_none() {
        wire.send(GET).await.unwrap();
        assert_eq!(wire.reply().await.expect("usable").status, 200);
    }
    assert_eq!(s.origin.all().iter().filter(|r| r.has("x-h100")).count(), 0, "the 101-header request went upstream");
}

/// A request with `count` headers in all (Host and `count - 1` more).
fn with_headers(count: usize) -> String {
    let mut request = "GET /hello-prod HTTP/1.1\r\nHost: gw\r\n".to_owned();
    for i in 1..count {
        request.push_str(&format!("X-H{i}: v\r\n"));
    }
    request + "\r\n"
}

/// The limits are the configured ones, not hyper's defaults (100 headers, ~400 KB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_limits_follow_the_configuration() {
    let s = start(&[], |config| config.limits.max_headers = 20).await;
    let (_, reply) = exchange(s.addr(), with_headers(20).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let (_, reply) = exchange(s.addr(), with_headers(21).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 431);

    // The default head limit is 64 KiB: 32 KB passes, 100 KB does not.
    let big = |kb: usize| format!("GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n", "b".repeat(kb * 1024));
    let (_, reply) = exchange(s.addr(), big(32).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let (_, reply) = exchange(s.addr(), big(100).as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 431);
    assert_eq!(s.origin.count(), 2, "only the two requests within the limits went upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_kb_header_is_431_and_others_are_still_served() {
    let s = start(&[], |_| {}).await;
    let request = format!("GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n", "a".repeat(500 * 1024));
    let (read, mut write) = TcpStream::connect(s.addr()).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        // The gateway stops reading at its limit: the rest of this write may fail.
        let _ = write.write_all(request.as_bytes()).await;
        write
    });
    let mut reader = Wire::new(read);
    let parallel = s.gw.client.get("/hello-prod").await;
    assert_eq!(parallel.status, StatusCode::OK, "a parallel client is served while the big head arrives");
    let reply = reader.reply().await.expect("an answer to a 500 KB header");
    assert_eq!(reply.status, 431, "{}", reply.head);
    assert!(reader.closed_within(Duration::from_secs(3)).await.is_some(), "the connection is closed");
    let _ = writer.await;
    assert_eq!(s.origin.all().iter().filter(|r| r.has("x-big")).count(), 0, "the big head went upstream");
    let mut wire = connect(s.addr()).await;
    wire.send(GET).await.unwrap();
    assert_eq!(wire.reply().await.expect("a new connection is served").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_413_and_never_complete_upstream() {
    let s = start(&[], |config| config.limits.max_body_bytes = 1024).await;

    // Declared too large: refused before anything goes upstream.
    let body = "x".repeat(2048);
    let request = format!("POST /hello-prod HTTP/1.1\r\nHost: gw\r\nContent-Length: 2048\r\n\r\n{body}");
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    let reply = reply.expect("an answer");
    reply.assert_error(413, "APIG.0201", "Content-Length 2048");
    // Refused after routing: the answer names the version, as every routed answer does.
    assert!(reply.header("x-graygate-version").is_some(), "{}", reply.head);
    assert!(reply.header("x-request-id").is_some(), "{}", reply.head);
    s.origin.assert_nothing("a declared oversized body").await;

    // At the limit: fine, both ways (the limit is not off by one).
    let body = "y".repeat(1024);
    let request = format!("POST /hello-prod/cl HTTP/1.1\r\nHost: gw\r\nContent-Length: 1024\r\n\r\n{body}");
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let chunk = format!("100\r\n{}\r\n", "z".repeat(256));
    let request = format!(
        "POST /hello-prod/te HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(4)
    );
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    assert_eq!(reply.expect("an answer").status, 200);
    let sizes: Vec<usize> = s.origin.complete().iter().map(|r| r.body.len()).collect();
    assert_eq!(sizes, [1024, 1024]);

    // Chunked and growing past the limit: 413 (or a cut), never a complete body upstream.
    let request = format!(
        "POST /hello-prod/big HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(8)
    );
    let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
    if let Some(reply) = reply {
        reply.assert_error(413, "APIG.0201", "a chunked body past the limit");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for request in s.origin.all().iter().filter(|r| r.target() == "/big") {
        assert!(!request.complete, "the oversized body arrived complete upstream");
        assert!(request.body.len() <= 1024, "{} bytes went upstream", request.body.len());
    }
}
