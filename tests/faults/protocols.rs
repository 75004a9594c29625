//! h2c and https upstreams.

use super::*;

// === 9. h2c upstreams ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_upstream_is_spoken_to_in_http2() {
    let versions: Arc<Mutex<Vec<http::Version>>> = Arc::default();
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    {
        let versions = versions.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let versions = versions.clone();
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    versions.lock().unwrap().push(request.version());
                    let body = format!("{:?} {}", request.version(), request.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body)))) }
                });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
    }
    let gw = Gateway::start(&routes(&[("h2up", &format!("h2c://{addr}"))], None)).await;
    for h2_client in [false, true] {
        let reply = send(&client(h2_client), &gw, Method::GET, "/h2up-latest/x", b"").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.text(), "HTTP/2.0 /x");
    }
    assert_eq!(*versions.lock().unwrap(), [http::Version::HTTP_2, http::Version::HTTP_2]);
}

// === 10. https upstreams ===

/// A CA, and a certificate for `localhost` it signed.
struct Pki {
    ca_pem: String,
    cert: rustls_pki_types::CertificateDer<'static>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn pki(name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, name);
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: leaf.der().clone(),
        key: rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

/// An https origin for `localhost` (ALPN h2 and http/1.1); counts the requests it served.
async fn https_origin(pki: &Pki) -> (SocketAddr, Arc<Mutex<Vec<http::Version>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(local()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served: Arc<Mutex<Vec<http::Version>>> = Arc::default();
    let record = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, record) = (acceptor.clone(), record.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    record.lock().unwrap().push(request.version());
                    async move { Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("secure")))) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_trusted_through_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = pki("graygate test CA");
    let stranger = pki("some other CA");
    let trusted_ca = dir.path().join("trusted.pem");
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&trusted_ca, &trusted.ca_pem).unwrap();
    std::fs::write(&other_ca, &stranger.ca_pem).unwrap();
    let (addr, served) = https_origin(&trusted).await;
    let routes = routes(&[("tls", &format!("https://localhost:{}", addr.port()))], None);

    let gw = Gateway::start_with(&routes, |config| config.upstream_ca = Some(trusted_ca.clone())).await;
    let reply = get(&gw, "/tls-latest").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.text(), "secure");
    assert_eq!(served.lock().unwrap().len(), 1);
    println!("https upstream served over {:?}", served.lock().unwrap()[0]);

    let gw = Gateway::start_with(&routes, |config| config.upstream_ca = Some(other_ca.clone())).await;
    let reply = get(&gw, "/tls-latest").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.text());
    assert_eq!(reply.error_code(), "APIG.0202");
    assert_eq!(served.lock().unwrap().len(), 1, "nothing was sent over an untrusted connection");
}
