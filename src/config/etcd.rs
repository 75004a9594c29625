//! The `etcd` block of graygate.yaml: its raw serde form, its validated settings, and the
//! step between them (endpoints, timeouts, credentials with ${ENV}, TLS files).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, expand_env};
use crate::secret::Secret;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EtcdFile {
    endpoints: Vec<String>,
    #[serde(default = "default_etcd_prefix")]
    prefix: String,
    /// Relative to the directory of graygate.yaml.
    #[serde(default = "default_snapshot")]
    snapshot: PathBuf,
    #[serde(default = "default_dial_timeout_ms")]
    dial_timeout_ms: u64,
    #[serde(default = "default_request_timeout_ms")]
    request_timeout_ms: u64,
    /// How long a replica's registration outlives its last keep-alive.
    #[serde(default = "default_lease_ttl_s")]
    lease_ttl_s: u64,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    tls: Option<EtcdTlsFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdTlsFile {
    #[serde(default)]
    ca: Option<PathBuf>,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `http://` or `https://host:port`; tried in turn when one fails.
    pub endpoints: Vec<http::Uri>,
    /// Every key of the fleet lives under it (`/graygate`): one prefix per fleet.
    pub prefix: String,
    /// The last applied state, rewritten after every change: a replica that starts while
    /// etcd is down serves it.
    pub snapshot: PathBuf,
    pub dial_timeout: Duration,
    pub request_timeout: Duration,
    pub lease_ttl: Duration,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<EtcdTls>,
}

/// TLS to etcd: a CA to trust instead of the system roots, and a client certificate.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

pub(super) fn etcd_settings(
    raw: &EtcdFile,
    file: &str,
    relative: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<EtcdSettings, ConfigError> {
    let invalid = |field, message: String| ConfigError::Invalid { file: file.to_owned(), field, message };
    if raw.endpoints.is_empty() {
        return Err(invalid("etcd.endpoints", "at least one endpoint is required".into()));
    }
    let mut endpoints = Vec::with_capacity(raw.endpoints.len());
    for endpoint in &raw.endpoints {
        let uri: http::Uri =
            endpoint.parse().map_err(|e| invalid("etcd.endpoints", format!("\"{endpoint}\" is not a URL: {e}")))?;
        let usable = matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.authority().is_some()
            && uri.path_and_query().is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty());
        if !usable {
            return Err(invalid("etcd.endpoints", format!("\"{endpoint}\" must be http(s)://host:port")));
        }
        endpoints.push(uri);
    }
    let prefix = raw.prefix.trim_end_matches('/').to_owned();
    let prefix_ok = prefix.starts_with('/')
        && prefix.len() > 1
        && prefix.bytes().all(|b| b.is_ascii_graphic())
        && !prefix.split('/').skip(1).any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if !prefix_ok {
        return Err(invalid(
            "etcd.prefix",
            format!("\"{}\" must be an absolute key path such as /graygate", raw.prefix),
        ));
    }
    for (field, value) in
        [("etcd.dial_timeout_ms", raw.dial_timeout_ms), ("etcd.request_timeout_ms", raw.request_timeout_ms)]
    {
        if value == 0 {
            return Err(invalid(field, "must be greater than 0".into()));
        }
    }
    if !(2..=3600).contains(&raw.lease_ttl_s) {
        return Err(invalid("etcd.lease_ttl_s", format!("must be between 2 and 3600, got {}", raw.lease_ttl_s)));
    }
    let expand = |value: &str, field: &'static str| {
        expand_env(value).map_err(|name| ConfigError::MissingEnv { file: file.to_owned(), field, name })
    };
    let username = raw.username.as_deref().map(|u| expand(u, "etcd.username")).transpose()?;
    let password = raw.password.as_deref().map(|p| expand(p, "etcd.password")).transpose()?;
    if username.is_some() != password.is_some() {
        return Err(invalid("etcd.username", "username and password go together".into()));
    }
    let tls = raw.tls.as_ref().map(|tls| EtcdTls {
        ca: tls.ca.as_ref().map(relative),
        cert: tls.cert.as_ref().map(relative),
        key: tls.key.as_ref().map(relative),
    });
    if let Some(tls) = &tls
        && tls.cert.is_some() != tls.key.is_some()
    {
        return Err(invalid("etcd.tls", "cert and key go together".into()));
    }
    Ok(EtcdSettings {
        endpoints,
        prefix,
        snapshot: relative(&raw.snapshot),
        dial_timeout: Duration::from_millis(raw.dial_timeout_ms),
        request_timeout: Duration::from_millis(raw.request_timeout_ms),
        lease_ttl: Duration::from_secs(raw.lease_ttl_s),
        username,
        password: password.map(|p| Secret::new(&p)),
        tls,
    })
}

fn default_etcd_prefix() -> String {
    "/graygate".to_owned()
}

fn default_snapshot() -> PathBuf {
    PathBuf::from("routes.snapshot.json")
}

fn default_dial_timeout_ms() -> u64 {
    2_000
}

fn default_request_timeout_ms() -> u64 {
    3_000
}

fn default_lease_ttl_s() -> u64 {
    10
}
