//! Every refusal of a request head carries graygate's JSON error body with an APIG code,
//! also the ones hyper writes itself before a request exists: a head beyond its buffer
//! (twice `limits.max_header_bytes`), a request target over 64 KiB, a head that is not HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ROUTES;
use crate::support::{Gateway, PATIENCE, backends, render};

struct Refusal {
    status: u16,
    head: String,
    body: serde_json::Value,
}

/// Sends `request` (written whole while the answer is read: the gateway answers before it
/// has read a large head) and reads one answer, by its content-length.
async fn send(addr: SocketAddr, request: Vec<u8>) -> Refusal {
    let request_len = request.len();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The gateway may stop reading and close first: a failed write is expected.
        // Not shut after it: hyper drops a request whose client half-closed.
        let _ = write.write_all(&request).await;
        write
    });
    let mut answer = Vec::new();
    let complete = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer).to_ascii_lowercase();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let length: usize = head.split("\r\ncontent-length: ").nth(1)?.split("\r\n").next()?.parse().ok()?;
        (body.len() >= length).then_some(())
    };
    let mut chunk = vec![0u8; 65536];
    while complete(&answer).is_none() {
        let n = tokio::time::timeout(PATIENCE, read.read(&mut chunk)).await.expect("an answer in time").unwrap();
        assert!(
            n > 0,
            "the connection closed before a whole answer to {} bytes: {:?}",
            request_len,
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    writer.abort();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {head}\n{body:?}"));
    Refusal { status, head: head.to_ascii_lowercase(), body }
}

fn with_header(bytes: usize) -> Vec<u8> {
    format!("GET /hello HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\n\r\n", "b".repeat(bytes)).into_bytes()
}

/// The APIG shape: a code, a message, and the request id the head also carries.
fn assert_gateway_error(refusal: &Refusal, status: u16, code: &str) {
    assert_eq!(refusal.status, status, "{}", refusal.head);
    assert_eq!(refusal.body["error_code"], code, "{}", refusal.body);
    assert!(refusal.body["error_msg"].as_str().is_some_and(|m| !m.is_empty()), "{}", refusal.body);
    let id = refusal.body["request_id"].as_str().unwrap();
    assert!(refusal.head.contains(&format!("\r\nx-request-id: {id}")), "{}", refusal.head);
    assert!(refusal.head.contains("\r\ncontent-type: application/json"), "{}", refusal.head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_beyond_hypers_buffer_answers_431_with_the_json_body() {
    let b = backends(&["v1"]).await;
    // A 16 KiB limit: hyper's buffer ends at 32 KiB, so 100 KiB is far beyond it.
    let gateway = Gateway::start_with(&render(ROUTES, &b), |config| config.limits.max_header_bytes = 16 * 1024).await;
    let addr = gateway.app.data_addr();
    for (bytes, what) in [(20 * 1024, "within hyper's buffer"), (100 * 1024, "100 KiB"), (1024 * 1024, "1 MiB")] {
        let refusal = send(addr, with_header(bytes)).await;
        assert_gateway_error(&refusal, 431, "APIG.0201");
        if bytes > 32 * 1024 {
            assert!(refusal.head.contains("\r\nconnection: close"), "{what}: {}", refusal.head);
        }
        assert!(refusal.body["error_msg"].as_str().unwrap().contains("header"), "{what}: {}", refusal.body);
    }
    assert_eq!(gateway.client.get("/hello").await.status, StatusCode::OK, "the gateway serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_over_64_kib_and_a_head_that_is_not_http_answer_with_the_json_body() {
    let b = backends(&["v1"]).await;
    let gateway = Gateway::start(&render(ROUTES, &b)).await;
    let addr = gateway.app.data_addr();
    let long = format!("GET /hello?{} HTTP/1.1\r\nHost: gw\r\n\r\n", "q".repeat(70 * 1024)).into_bytes();
    assert_gateway_error(&send(addr, long).await, 414, "APIG.0201");
    for garbage in
        [&b"GET /hello HTTP/1.1\r\nBad Header\r\n\r\n"[..], b"G\x01T / HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"]
    {
        let refusal = send(addr, garbage.to_vec()).await;
        assert_gateway_error(&refusal, 400, "APIG.0201");
        assert!(refusal.head.contains("\r\nconnection: close"), "{}", refusal.head);
    }
    assert_eq!(gateway.client.get("/hello").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_that_keeps_sending_reads_the_whole_answer_and_is_then_closed() {
    let b = backends(&["v1"]).await;
    let gateway = Gateway::start_with(&render(ROUTES, &b), |config| config.limits.max_header_bytes = 16 * 1024).await;
    let mut stream = TcpStream::connect(gateway.app.data_addr()).await.unwrap();
    stream.write_all(&with_header(64 * 1024)[..60 * 1024]).await.unwrap();
    // The head never ends and the client never stops sending. It still reads the whole
    // answer (the gateway drains it instead of resetting it), then the gateway's end of the
    // connection goes away and a write fails.
    let started = tokio::time::Instant::now();
    let mut sink = vec![0u8; 65536];
    let (mut answer, mut answered) = (Vec::new(), false);
    loop {
        tokio::select! {
            read = stream.read(&mut sink), if !answered => match read {
                Ok(0) => answered = true,
                Ok(n) => answer.extend_from_slice(&sink[..n]),
                Err(error) => panic!("the answer was reset: {error}; read so far {:?}", String::from_utf8_lossy(&answer)),
            },
            _ = tokio::time::sleep(Duration::from_millis(10)) => {
                if stream.write_all(b"bbbbbbbb").await.is_err() {
                    break;
                }
            }
        }
        assert!(started.elapsed() < PATIENCE, "the refused connection was never closed");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431 ") && answer.ends_with("\"}"), "{answer}");
}
