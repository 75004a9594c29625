//! Request framing (smuggling, conflicting lengths, bad Transfer-Encoding and headers,
//! invalid chunk sizes), hop-by-hop smuggling and pipelining (battery #1-7).

use super::*;

// ============================================================================================
// 1-4. Request framing: smuggling, conflicting lengths, bad Transfer-Encoding, bad headers.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cl_plus_te_never_lets_a_smuggled_request_through() {
    let s = start(&[], |_| {}).await;
    let smuggled = b"GET /hello-prod/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let body = [b"0\r\n\r\n".as_slice(), smuggled].concat();
    let framings = [
        format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", body.len()),
        format!("Transfer-Encoding: chunked\r\nContent-Length: {}\r\n", body.len()),
        // CL.TE the other way round: a length that stops inside the chunked framing.
        "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n".to_owned(),
    ];
    let mut answered = Vec::new();
    for (i, framing) in framings.iter().enumerate() {
        let request =
            [format!("POST /hello-prod/first{i} HTTP/1.1\r\nHost: gw\r\n{framing}\r\n").as_bytes(), &body].concat();
        let (mut wire, reply) = exchange(s.addr(), &request).await;
        // hyper uses the chunked framing, drops the Content-Length and closes afterwards
        // (a 400 would do as well); the bytes after the 0-chunk are never a request.
        if let Some(reply) = &reply {
            assert!(reply.status == 200 || reply.status == 400, "{framing:?}: {}", reply.head);
            if reply.status == 200 {
                answered.push(format!("/first{i}"));
            }
        }
        let closed = wire.closed_within(Duration::from_secs(3)).await;
        assert!(closed.is_some(), "{framing:?}: the connection stays open after an ambiguous framing");
        assert!(wire.buf.is_empty(), "{framing:?}: a second answer came back: {}", String::from_utf8_lossy(&wire.buf));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = s.origin.all();
    let targets: Vec<&str> = seen.iter().map(Seen::target).collect();
    assert_eq!(targets, answered, "exactly the one request per connection, never the smuggled one: {seen:#?}");
    for request in &seen {
        assert!(
            !(request.has("content-length") && request.has("transfer-encoding")),
            "the origin got an ambiguous framing: {}",
            request.head
        );
        assert!(
            header(&request.head, "content-length").is_none_or(|cl| cl == request.body.len().to_string()),
            "the client's Content-Length went upstream: {}",
            request.head
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_content_lengths_are_400_and_nothing_upstream() {
    let s = start(&[], |_| {}).await;
    for lengths in ["Content-Length: 3\r\nContent-Length: 4\r\n", "Content-Length: 3, 4\r\n", "Content-Length: +3\r\n"]
    {
        let request = format!("POST /hello-prod HTTP/1.1\r\nHost: gw\r\n{lengths}\r\nabcd");
        let (mut wire, reply) = exchange(s.addr(), request.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("{lengths:?}: no answer"));
        assert_eq!(reply.status, 400, "{lengths:?}: {}", reply.head);
        assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "{lengths:?}: connection kept open");
    }
    s.origin.assert_nothing("conflicting Content-Length").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transfer_encodings_are_refused() {
    let s = start(&[], |_| {}).await;
    let body = "5\r\nhello\r\n0\r\n\r\n";
    let cases = [
        ("HTTP/1.1", "Transfer-Encoding: xchunked\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: xchunked\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
        ("HTTP/1.1", "Transfer-Encoding: chunked, identity\r\n"),
        ("HTTP/1.0", "Transfer-Encoding: chunked\r\n"),
    ];
    for (version, te) in cases {
        let request = format!("POST /hello-prod {version}\r\nHost: gw\r\n{te}\r\n{body}");
        let (mut wire, reply) = exchange(s.addr(), request.as_bytes()).await;
        if let Some(reply) = &reply {
            assert_eq!(reply.status, 400, "{version} {te:?}: {}", reply.head);
        }
        assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "{version} {te:?}: connection kept open");
    }
    s.origin.assert_nothing("bad Transfer-Encoding").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn space_before_colon_and_obs_fold_are_400() {
    let s = start(&[], |_| {}).await;
    let cases: [&[u8]; 3] = [
        b"POST /hello-prod HTTP/1.1\r\nHost: gw\r\nContent-Length : 3\r\n\r\nabc",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nX-Folded: a\r\n\tTransfer-Encoding: chunked\r\n\r\n",
    ];
    for request in cases {
        let what = String::from_utf8_lossy(request);
        let (_, reply) = exchange(s.addr(), request).await;
        let reply = reply.unwrap_or_else(|| panic!("{what:?}: no answer"));
        assert_eq!(reply.status, 400, "{what:?}: {}", reply.head);
    }
    s.origin.assert_nothing("malformed header lines").await;
}

// ============================================================================================
// 5. Invalid chunk sizes: the error comes after the headers, so it must abort the upstream.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_chunk_sizes_never_complete_upstream_and_are_never_200() {
    let s = start(&[], |_| {}).await;
    let bad_chunks = [
        "Z\r\nhello\r\n0\r\n\r\n",
        "FFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\nZ\r\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\nFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n",
        "3\r\nabc\r\n5\nhello\r\n0\r\n\r\n",
    ];
    // Whatever follows the broken chunk must never be read as a next request either.
    let smuggled = "GET /hello-prod/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    for chunks in bad_chunks {
        let request =
            format!("POST /hello-prod HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{chunks}{smuggled}");
        let (mut wire, reply) = exchange(s.addr(), request.as_bytes()).await;
        // Closed without an answer is acceptable too.
        if let Some(reply) = &reply {
            reply.assert_error(400, "APIG.0201", chunks);
        }
        assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "{chunks:?}: connection kept open");
        assert!(wire.buf.is_empty(), "{chunks:?}: a second answer: {}", String::from_utf8_lossy(&wire.buf));
    }

    // The bad chunk after a good one that is already on its way upstream: the upstream
    // request is aborted, never finished with a terminating chunk.
    let mut wire = connect(s.addr()).await;
    wire.send(b"POST /hello-prod/partial HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !s.origin.all().iter().any(|r| r.target() == "/partial") {
        assert!(Instant::now() < deadline, "the streamed request never reached the origin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = wire.send(format!("Z\r\nhello\r\n0\r\n\r\n{smuggled}").as_bytes()).await;
    if let Some(reply) = wire.reply().await {
        reply.assert_error(400, "APIG.0201", "a bad chunk after a forwarded one");
    }
    assert!(wire.closed_within(Duration::from_secs(3)).await.is_some(), "connection kept open after a bad chunk");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = s.origin.all();
    assert!(
        seen.iter().all(|r| !r.complete),
        "the origin received a complete request built from a bad body: {seen:#?}"
    );
    assert!(seen.iter().all(|r| r.target() != "/smuggled"), "bytes after a bad chunk became a request: {seen:#?}");
}

// ============================================================================================
// 6-7. Hop-by-hop smuggling and pipelining.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_and_upgrade_headers_never_reach_the_origin() {
    let s = start(&[], |_| {}).await;
    let requests: [&[u8]; 3] = [
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nConnection: close, X-Internal\r\nX-Internal: admin=1\r\nTE: trailers\r\n\r\n",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\nConnection: X-Internal, TE\r\nX-Internal: 1\r\nTE: trailers, deflate\r\nKeep-Alive: timeout=5\r\n\r\n",
    ];
    for request in requests {
        let what = String::from_utf8_lossy(request);
        let (_, reply) = exchange(s.addr(), request).await;
        let reply = reply.unwrap_or_else(|| panic!("{what:?}: no answer"));
        assert_ne!(reply.status, 101, "{what:?}: the gateway agreed to an upgrade");
        assert_eq!(reply.status, 200, "{what:?}: {}", reply.head);
    }
    let seen = s.origin.all();
    assert_eq!(seen.len(), requests.len(), "{seen:#?}");
    for request in &seen {
        for name in ["x-internal", "te", "upgrade", "http2-settings", "keep-alive"] {
            assert!(!request.has(name), "{name} reached the origin: {}", request.head);
        }
        let connection = header(&request.head, "connection").unwrap_or_default().to_ascii_lowercase();
        assert!(!connection.contains("x-internal") && !connection.contains("upgrade"), "{}", request.head);
    }
}

/// `HTTP2-Settings` is connection-specific (RFC 7540 §3.2.1) even when a client forgets to
/// name it in `Connection`: it must not reach the origin either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_headers_without_a_connection_token_never_reach_the_origin() {
    let s = start(&[], |_| {}).await;
    let request =
        b"GET /hello-prod HTTP/1.1\r\nHost: gw\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    let (_, reply) = exchange(s.addr(), request).await;
    let reply = reply.expect("an answer");
    assert_eq!(reply.status, 200, "{}", reply.head);
    let seen = s.origin.all();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].has("upgrade"), "{}", seen[0].head);
    assert!(!seen[0].has("http2-settings"), "HTTP2-Settings reached the origin: {}", seen[0].head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_reach_the_origin_and_answer_in_order() {
    let s = start(&[], |_| {}).await;
    let mut wire = connect(s.addr()).await;
    wire.send(
        b"POST /hello-prod/one HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc\
          GET /hello-prod/two HTTP/1.1\r\nHost: gw\r\n\r\n\
          GET /hello-prod/three HTTP/1.1\r\nHost: gw\r\n\r\n",
    )
    .await
    .unwrap();
    for expected in ["/one", "/two", "/three"] {
        let reply = wire.reply().await.unwrap_or_else(|| panic!("no answer for {expected}"));
        assert_eq!(reply.status, 200, "{}", reply.head);
        assert_eq!(reply.text(), expected, "answers come back in order");
    }
    let targets: Vec<String> = s.origin.all().iter().map(|r| r.target().to_owned()).collect();
    assert_eq!(targets, ["/one", "/two", "/three"]);
    assert_eq!(s.origin.all()[0].body, b"abc");
}
