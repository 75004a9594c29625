//! `graygate demo`: three built-in function backends and a gateway in one process.
//!
//! Each backend answers with a small JSON document naming its version, so a curl shows
//! which version served it. The demo writes its routes to a temporary directory, which is
//! watched like any other: edit the file there and the split changes within a second.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::app::{App, StopSignal};
use crate::config::ServerConfig;
use crate::secret::{AccessKey, Secret};

const ROUTES_TEMPLATE: &str = include_str!("../config/demo-routes.yaml");
/// The demo routes' project (every FunctionGraph path and URN names it).
const PROJECT: &str = "7aad83af3e8d42e99ac194e8419e2c9b";

/// Starts a backend that answers every request with `{"version": NAME, ...}`.
pub async fn spawn_backend(name: &str) -> std::io::Result<SocketAddr> {
    serve_backend(SocketAddr::from(([127, 0, 0, 1], 0)), name, Duration::ZERO).await
}

/// Starts a backend on `listen` that answers after `delay`; returns its address.
pub async fn serve_backend(listen: SocketAddr, name: &str, delay: Duration) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let name: std::sync::Arc<str> = name.into();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let name = name.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let name = name.clone();
                async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Infallible>(echo(&name, request).await)
                }
            });
            tokio::spawn(async move {
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(addr)
}

/// What a demo backend answers (field order kept: the version comes first).
#[derive(serde::Serialize)]
struct Echo<'a> {
    version: &'a str,
    method: &'a str,
    uri: String,
    headers: BTreeMap<&'a str, &'a str>,
    body_bytes: usize,
}

/// The backend's answer: its version, and what it received (method, URI, headers, body size).
async fn echo(version: &str, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let received = body.collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let headers: BTreeMap<&str, &str> =
        parts.headers.iter().map(|(name, value)| (name.as_str(), value.to_str().unwrap_or("<binary>"))).collect();
    let document =
        Echo { version, method: parts.method.as_str(), uri: parts.uri.to_string(), headers, body_bytes: received };
    let mut text = serde_json::to_string(&document).unwrap_or_default();
    text.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    response
}

/// Runs the demo; with `self_test` it checks the split and exits instead of serving.
pub async fn run(listen: SocketAddr, admin_listen: SocketAddr, self_test: bool) -> Result<(), String> {
    let mut ports = Vec::new();
    for version in ["v1", "v2", "v3"] {
        let addr = spawn_backend(version).await.map_err(|e| format!("cannot start the {version} backend: {e}"))?;
        ports.push(addr.port());
    }
    let dir = std::env::temp_dir().join(format!("graygate-demo-{}", std::process::id()));
    let routes_path = write_routes(&dir, &ports).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
    let mut config =
        ServerConfig::with_defaults(listen, admin_listen, routes_path.clone()).map_err(|e| e.to_string())?;
    // A fresh token per run: the management API is never open, not even in the demo.
    let token = format!("demo-{:016x}", fastrand::u64(..));
    config.admin.tokens = vec![Secret::new(&token)];
    // An access key pair for the vendors' SDKs, which sign requests instead of sending a
    // token (examples/ drives the demo with them).
    let (access_key, secret_key) =
        (format!("DEMOAK{:016X}", fastrand::u64(..)), format!("demo-sk-{:032x}", fastrand::u128(..)));
    config.admin.keys = vec![AccessKey { id: access_key.clone(), secret: Secret::new(&secret_key) }];
    let stop = StopSignal::install();
    let app = App::start(config).await.map_err(|e| e.to_string())?;
    let base = format!("http://{}", app.data_addr());

    let split = sample_split(&format!("{base}/hello-prod"), 100).await?;
    println!("graygate demo: gateway on {base}, admin on http://{}", app.admin_addr());
    println!(
        "backends: v1 on 127.0.0.1:{}, v2 on 127.0.0.1:{}, v3 (latest) on 127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    println!();
    println!("100 requests to /hello-prod (alias prod: v1 + 10% v2) were served by: {split:?}");
    println!();
    println!("Try:");
    println!("  curl -i {base}/hello-prod                                 # v1, or v2 one time in ten");
    println!("  curl -i {base}/hello-beta -H 'x-user-group: qa'           # header rule: v2");
    println!("  curl -i {base}/hello-beta                                 # no rule matched: v1");
    println!("  curl -i {base}/hello-sticky -H 'x-user-id: alice'         # sticky: same version every time");
    println!("  curl -i {base}/hello-v2/any/path?q=1                      # a version's own trigger");
    println!("  curl -i {base}/hello-latest                               # latest (v3's backend)");
    println!("  curl -i {base}/nothing-here                               # 404 APIG.0101");
    println!("  curl -s http://{}/metrics | grep graygate_                # Prometheus metrics", app.admin_addr());
    println!();
    println!("Edit {} (e.g. set v2's weight to 50); the new split applies within a second.", routes_path.display());
    println!();
    println!(
        "Status page: http://{}/ui (the admin token it asks for: {token}); audit trail: curl -H 'X-Auth-Token: {token}' http://{}/graygate/v1/audit",
        app.admin_addr(),
        app.admin_addr()
    );
    println!();
    println!(
        "The management API (docs/management-api.md, \"A gray upgrade through the API\"; examples/ for the SDKs) takes these variables:"
    );
    println!(
        "  export GW={base} ADMIN=http://{} TOKEN={token} B1=http://127.0.0.1:{} B2=http://127.0.0.1:{} B3=http://127.0.0.1:{} AK={access_key} SK={secret_key} PROJECT={PROJECT}",
        app.admin_addr(),
        ports[0],
        ports[1],
        ports[2]
    );

    let exact = split.get("v1") == Some(&90) && split.get("v2") == Some(&10);
    if self_test {
        app.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
        return if exact {
            println!("self-test: ok");
            Ok(())
        } else {
            Err(format!("self-test: expected v1=90 v2=10, got {split:?}"))
        };
    }
    println!("Press Ctrl-C to stop.");
    app.run_until(stop).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn write_routes(dir: &Path, ports: &[u16]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut routes = ROUTES_TEMPLATE.to_owned();
    for (i, port) in ports.iter().enumerate() {
        routes = routes.replace(&format!("@@PORT{}@@", i + 1), &port.to_string());
    }
    let path = dir.join("routes.yaml");
    std::fs::write(&path, routes)?;
    Ok(path)
}

/// Sends `n` requests and counts the `X-Graygate-Version` of the answers.
async fn sample_split(url: &str, n: usize) -> Result<BTreeMap<String, usize>, String> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let response = client.get(uri.clone()).await.map_err(|e| format!("request to {url} failed: {e}"))?;
        let version =
            response.headers().get("x-graygate-version").and_then(|v| v.to_str().ok()).unwrap_or("?").to_owned();
        let _ = response.into_body().collect().await;
        *counts.entry(version).or_insert(0) += 1;
    }
    Ok(counts)
}
