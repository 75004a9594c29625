//! etcd as it is run in production: with authentication (graygate renews an expired token
//! on its own) and over TLS with client certificates; wrong credentials are refused with a
//! message that says so.

use std::path::Path;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;

use crate::cluster::{Etcd, Options, Replica, cli_with, etcd_block, functions};

const ROUTES: &str = r#"{"project_id": "0123456789abcdef0123456789abcdef", "functions": [
  {"name": "hello", "upstream": "@v1@", "versions": [{"version": "v1", "upstream": "@v1@"}, {"version": "v2", "upstream": "@v2@"}],
   "aliases": [{"name": "prod", "version": "v1"}], "triggers": [{"target": "prod"}]}]}"#;

/// Pushes `ROUTES` with a config of `etcd_extra`; (exit code, stdout + stderr).
fn push(dir: &Path, etcd: &Etcd, etcd_extra: &str, env: &[(&str, &str)], routes: &str) -> (i32, String) {
    let config = dir.join("push.yaml");
    std::fs::write(&config, etcd_block(&[etcd.endpoint()], etcd_extra)).unwrap();
    let file = dir.join("routes.json");
    std::fs::write(&file, routes).unwrap();
    let args = ["routes", "push", file.to_str().unwrap(), "--config", config.to_str().unwrap()];
    let (code, stdout, stderr) = cli_with(&args, env);
    (code, format!("{stdout}{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_graygate_uses_its_credentials_and_renews_an_expired_token() {
    // Tokens live one second without use: long enough for a request, short for a test.
    let mut etcd = Etcd::start_with("http", vec!["--auth-token-ttl".into(), "1".into()], Vec::new()).await;
    etcd.etcdctl(&["user", "add", "root", "--new-user-password", "s3cret-pass"]);
    etcd.etcdctl(&["auth", "enable"]);
    etcd.ctl_args = vec!["--user".into(), "root:s3cret-pass".into()];
    let backends = crate::support::backends(&["v1", "v2"]).await;
    let routes = crate::support::render(ROUTES, &backends);
    let dir = tempfile::tempdir().unwrap();
    let extra = "  username: root\n  password: ${FLEET_ETCD_PASSWORD}\n";

    let (code, output) = push(dir.path(), &etcd, extra, &[("FLEET_ETCD_PASSWORD", "wrong")], &routes);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("authentication failed"), "{output}");
    let (code, output) = push(dir.path(), &etcd, extra, &[("FLEET_ETCD_PASSWORD", "s3cret-pass")], &routes);
    assert_eq!(code, 0, "{output}");

    let endpoints = [etcd.endpoint()];
    let env = [("FLEET_ETCD_PASSWORD", "s3cret-pass")];
    // A long lease, so the registration's keep-alives leave the token idle between them.
    let options = Options { lease_ttl_s: 60, etcd_extra: extra, env: &env, ..Options::plain(&endpoints) };
    let replica = Replica::start("authenticated", dir.path(), &options).await;
    assert_eq!(replica.client.get("/hello-prod").await.version(), "v1");

    // The token etcd handed out expires (by time: nothing to observe but the clock).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let alias = functions("hello", "latest", "/aliases/prod");
    let answer = replica.fg(Method::PUT, &alias, Some(json!({ "version": "v2" })), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}\n{}", answer.text(), replica.log());
    assert_eq!(replica.client.get("/hello-prod").await.version(), "v2");
    let stored = etcd.etcdctl(&["get", "--prefix", "/fleet-test/routes/set/", "--print-value-only"]);
    assert!(stored.contains("\"version\":\"v2\""), "the change is in etcd: {stored}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
fn pki(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "fleet test CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    std::fs::write(dir.join("ca.pem"), ca.self_signed(&ca_key).unwrap().pem()).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    // etcd's JSON gateway dials etcd's own gRPC with the server certificate: with client
    // certificates required, that certificate must be good for client auth too.
    for (name, sans, usages) in [
        ("server", vec!["127.0.0.1".to_owned(), "localhost".to_owned()], vec![ServerAuth, ClientAuth]),
        ("client", Vec::new(), vec![ClientAuth]),
    ] {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = usages;
        std::fs::write(dir.join(format!("{name}.pem")), params.signed_by(&key, &issuer).unwrap().pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_client_certificate() {
    let pki_dir = tempfile::tempdir().unwrap();
    pki(pki_dir.path());
    let file = |name: &str| pki_dir.path().join(name).to_str().unwrap().to_owned();
    let server = vec![
        "--cert-file".into(),
        file("server.pem"),
        "--key-file".into(),
        file("server-key.pem"),
        "--trusted-ca-file".into(),
        file("ca.pem"),
        "--client-cert-auth".into(),
    ];
    let ctl = vec![
        "--cacert".into(),
        file("ca.pem"),
        "--cert".into(),
        file("client.pem"),
        "--key".into(),
        file("client-key.pem"),
    ];
    let etcd = Etcd::start_with("https", server, ctl).await;
    let backends = crate::support::backends(&["v1", "v2"]).await;
    let routes = crate::support::render(ROUTES, &backends);
    let dir = tempfile::tempdir().unwrap();

    let without_client = format!("  tls: {{ ca: {} }}\n", file("ca.pem"));
    let (code, output) = push(dir.path(), &etcd, &without_client, &[], &routes);
    assert_eq!(code, 1, "etcd wants a client certificate: {output}");
    let tls =
        format!("  tls: {{ ca: {}, cert: {}, key: {} }}\n", file("ca.pem"), file("client.pem"), file("client-key.pem"));
    let (code, output) = push(dir.path(), &etcd, &tls, &[], &routes);
    assert_eq!(code, 0, "{output}\n{}", etcd.log());

    let endpoints = [etcd.endpoint()];
    let options = Options { etcd_extra: &tls, ..Options::plain(&endpoints) };
    let replica = Replica::start("tls", dir.path(), &options).await;
    let alias = functions("hello", "latest", "/aliases/prod");
    let answer = replica.fg(Method::PUT, &alias, Some(json!({ "version": "v2" })), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}\n{}", answer.text(), replica.log());
    assert_eq!(replica.client.get("/hello-prod").await.version(), "v2");
}
