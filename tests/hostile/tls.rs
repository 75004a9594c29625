//! TLS: HTTP/1.1 and h2 over ALPN, the handshake deadline, certificate hot reload (battery #15).

use super::*;

// ============================================================================================
// 15. TLS: HTTP/1.1 and h2 over ALPN, the handshake deadline, certificate hot reload.
// ============================================================================================

struct Pki {
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A leaf certificate: PEM chain, PEM key and the DER a client sees.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "graygate test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        Pki { ca }
    }

    fn leaf(&self, common_name: &str, serial: u64) -> Leaf {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().clone() }
    }

    fn connector(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

async fn tls_connect(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Tls {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp)).await.expect("handshake in time").unwrap()
}

fn peer_certificate(tls: &Tls) -> CertificateDer<'static> {
    tls.get_ref().1.peer_certificates().expect("a server certificate")[0].clone().into_owned()
}

fn write_leaf(dir: &Path, leaf: &Leaf) -> TlsPaths {
    let paths = TlsPaths { cert: dir.join("cert.pem"), key: dir.join("key.pem") };
    std::fs::write(&paths.cert, &leaf.cert_pem).unwrap();
    std::fs::write(&paths.key, &leaf.key_pem).unwrap();
    paths
}

async fn tls_gateway(pki: &Pki, certs: &tempfile::TempDir) -> (Setup, Leaf) {
    let leaf = pki.leaf("graygate one", 1);
    let paths = write_leaf(certs.path(), &leaf);
    let s = start(&[], |config| {
        config.tls = Some(paths);
        config.timeouts.tls_handshake = Duration::from_secs(1);
        config.reload.debounce = Duration::from_millis(50);
        config.reload.poll = Duration::from_millis(500);
    })
    .await;
    (s, leaf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_http1_and_h2_by_alpn() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (s, leaf) = tls_gateway(&pki, &certs).await;

    // HTTP/1.1 (the only protocol offered).
    let tls = tls_connect(&pki.connector(&[b"http/1.1"]), s.addr()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"http/1.1".as_slice()));
    assert_eq!(peer_certificate(&tls), leaf.der);
    let mut wire = Wire::new(tls);
    wire.send(b"GET /hello-prod/one HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let reply = wire.reply().await.expect("an answer over TLS");
    assert_eq!((reply.status, reply.text().as_str()), (200, "/one"));

    // h2, offered first with HTTP/1.1 as a fallback.
    let tls = tls_connect(&pki.connector(&[b"h2", b"http/1.1"]), s.addr()).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.unwrap();
    tokio::spawn(connection);
    let request = Request::get("https://localhost/hello-prod/two").body(Empty::<Bytes>::new()).unwrap();
    let response = tokio::time::timeout(PATIENCE, sender.send_request(request)).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "/two");

    let seen = s.origin.all();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(header(&request.head, "x-forwarded-proto").as_deref(), Some("https"), "{}", request.head);
        assert!(request.head.lines().next().unwrap_or("").ends_with(" HTTP/1.1"), "{}", request.head);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_says_hello_is_closed_at_the_handshake_deadline() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (s, _) = tls_gateway(&pki, &certs).await;
    let mut wire = connect(s.addr()).await;
    let closed = wire.closed_within(Duration::from_secs(6)).await;
    assert_closed_by_deadline(closed, Duration::from_secs(1), "no ClientHello");
    // And the listener still handshakes with everyone else.
    let tls = tls_connect(&pki.connector(&[b"http/1.1"]), s.addr()).await;
    let mut wire = Wire::new(tls);
    wire.send(GET).await.unwrap();
    assert_eq!(wire.reply().await.expect("an answer").status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_certificate_is_served_to_new_connections_only() {
    let pki = Pki::new();
    let certs = tempfile::tempdir().unwrap();
    let (s, first) = tls_gateway(&pki, &certs).await;
    let connector = pki.connector(&[b"http/1.1"]);

    let old = tls_connect(&connector, s.addr()).await;
    assert_eq!(peer_certificate(&old), first.der);
    let mut old = Wire::new(old);
    old.send(GET).await.unwrap();
    assert_eq!(old.reply().await.expect("an answer").status, 200);

    let second = pki.leaf("graygate two", 2);
    assert_ne!(second.der, first.der);
    write_leaf(certs.path(), &second);

    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tls = tls_connect(&connector, s.addr()).await;
        if peer_certificate(&tls) == second.der {
            let mut wire = Wire::new(tls);
            wire.send(GET).await.unwrap();
            assert_eq!(wire.reply().await.expect("an answer with the new certificate").status, 200);
            break;
        }
        assert_eq!(peer_certificate(&tls), first.der, "only the old or the new certificate is ever served");
        assert!(Instant::now() < deadline, "the new certificate was not picked up within 5 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The connection opened before the reload still works, on its old certificate.
    assert_eq!(peer_certificate(old.stream_ref()), first.der);
    old.send(GET).await.unwrap();
    assert_eq!(old.reply().await.expect("the old connection still answers").status, 200);
}

// ============================================================================================
// 16. Graceful shutdown.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight_and_refuses_new_connections() {
    let (gated, mut arrivals, release) = gated_backend().await;
    let s = start(&[("gated", gated)], |_| {}).await;
    let addr = s.addr();
    let mut busy = connect(addr).await;
    busy.send(b"GET /hello-gated HTTP/1.1\r\nHost: gw\r\n\r\n").await.unwrap();
    tokio::time::timeout(PATIENCE, arrivals.recv()).await.expect("the request reaches its upstream");

    let Setup { gw: Gateway { app, dir: _dir, .. }, .. } = s;
    let shutdown = tokio::spawn(app.shutdown());

    // New connections are refused once the listener is gone, while the request is held.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        assert!(Instant::now() < deadline, "new connections still accepted 3 s into shutdown");
        match TcpStream::connect(addr).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Caught in the backlog as the listener closed (reset, or accepted by the kernel
            // and then dropped): keep trying until the port refuses.
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("unexpected connect error: {error}"),
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!shutdown.is_finished(), "shutdown finished with a request still in flight");

    release.notify_one();
    let reply = busy.reply().await.expect("the request in flight completes");
    assert_eq!((reply.status, reply.text().as_str()), (200, "slow"));
    tokio::time::timeout(PATIENCE, shutdown).await.expect("shutdown completes once drained").unwrap();
}
