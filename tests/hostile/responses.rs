//! Invalid upstream responses: obs-fold, Content-Length with Transfer-Encoding, and the
//! pooled connection they must never poison (battery #9).

use super::*;

// ============================================================================================
// 9. Invalid upstream responses.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_obs_fold_response_is_502() {
    let (fold, connections) =
        canned_backend(b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok").await;
    let s = start(&[("fold", fold)], |_| {}).await;
    for _ in 0..2 {
        let (_, reply) = exchange(s.addr(), b"GET /hello-fold HTTP/1.1\r\nHost: gw\r\n\r\n").await;
        reply.expect("an answer").assert_error(502, "APIG.0202", "obs-fold from the upstream");
    }
    assert_eq!(connections.load(Ordering::SeqCst), 2, "a connection that sent an invalid response is not reused");
}

/// An upstream response with both Content-Length and Transfer-Encoding is ambiguous
/// (RFC 9112 §6.3: the sender is broken, and a proxy must not pass the framing on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cl_plus_te_response_is_502() {
    let answers: [&'static [u8]; 3] = [
        // A Content-Length reader sees the 5 bytes "0\r\n\r\n"; a chunked reader sees nothing.
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ];
    for answer in answers {
        let what = String::from_utf8_lossy(answer);
        let (clte, _) = canned_backend(answer).await;
        let s = start(&[("clte", clte)], |_| {}).await;
        for _ in 0..2 {
            let mut wire = connect(s.addr()).await;
            wire.send(b"GET /hello-clte HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n").await.unwrap();
            let raw = wire.everything(Duration::from_secs(3)).await;
            let got = String::from_utf8_lossy(&raw);
            let reply = Wire::new(std::io::Cursor::new(raw.clone())).reply().await;
            let reply =
                reply.unwrap_or_else(|| panic!("upstream {what:?}: no complete answer; the client got {got:?}"));
            assert_eq!(reply.status, 502, "upstream {what:?}: the client got {got:?}");
            reply.assert_error(502, "APIG.0202", &what);
        }
    }
}

/// After an upstream answered with both framings, its connection must not go back to the
/// pool: bytes the upstream sent past the chunked end (a whole response, if it meant the
/// Content-Length) would otherwise be read as the answer to the next user's request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cl_plus_te_response_never_poisons_the_next_request() {
    let connections = Arc::new(AtomicUsize::new(0));
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (counter, once) = (Arc::clone(&connections), Arc::clone(&first));
    let upstream = raw_backend(move |stream| {
        let (counter, once) = (Arc::clone(&counter), Arc::clone(&once));
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut wire = Wire::new(stream);
            while wire.head().await.is_some() {
                let sent = if once.swap(false, Ordering::SeqCst) {
                    // A chunked reader stops after "0\r\n\r\n"; what follows, a moment later,
                    // is a complete response of its own.
                    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
                    let sent = wire.send(head).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    sent.and(wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned").await)
                } else {
                    wire.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean").await
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    let s = start(&[("clte", upstream)], |_| {}).await;
    let mut answers = Vec::new();
    for i in 0..3 {
        let mut wire = connect(s.addr()).await;
        let request = format!("GET /hello-clte/{i} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
        wire.send(request.as_bytes()).await.unwrap();
        let reply = wire.reply().await.unwrap_or_else(|| panic!("request {i}: no answer"));
        answers.push((reply.status, reply.text()));
    }
    assert_eq!(answers[0].0, 502, "{answers:?}");
    assert_eq!(
        answers[1..],
        [(200, "clean".to_owned()), (200, "clean".to_owned())],
        "other users got the bytes smuggled after an ambiguous response (upstream connections: {})",
        connections.load(Ordering::SeqCst)
    );
}
