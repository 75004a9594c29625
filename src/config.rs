//! Server settings from `graygate.yaml`: listeners, the routes file, timeouts and limits.
//!
//! ```text
//!   graygate.yaml ──serde──▶ ServerFile ──validate──▶ ServerConfig (durations, absolute paths)
//! ```
//! Read once at start; the routing state it names (a routes file, or an etcd prefix shared
//! by a fleet) is the part that changes live. Every field has a default an operator can run
//! with, so `{"routes": "routes.yaml"}` is a whole config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod etcd;
mod logs;

use etcd::{EtcdFile, etcd_settings};
pub use etcd::{EtcdSettings, EtcdTls};
use logs::{AccessLogFile, AuditLogFile, access_log_settings, audit_log_settings};

use crate::access_log::AccessLogSettings;
use crate::audit::AuditSettings;
use crate::health::UpstreamPolicy;
use crate::routes::ReadLimits;
use crate::secret::{AccessKey, Secret};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default = "default_admin_listen")]
    admin_listen: SocketAddr,
    /// Relative to the directory of graygate.yaml (default `routes.yaml`); not with `etcd`.
    #[serde(default)]
    routes: Option<PathBuf>,
    /// The routing state in etcd instead of a file: what a fleet of replicas shares.
    #[serde(default)]
    etcd: Option<EtcdFile>,
    #[serde(default)]
    timeouts: TimeoutsFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    reload: ReloadFile,
    #[serde(default)]
    admin: AdminFile,
    #[serde(default)]
    outlier: OutlierFile,
    /// TLS on the data plane; absent means plain HTTP/1.1 and h2c.
    #[serde(default)]
    tls: Option<TlsFile>,
    /// A CA bundle (PEM) trusted for `https://` upstreams instead of the system roots.
    #[serde(default)]
    upstream_ca: Option<PathBuf>,
    /// The data plane's URL as clients reach it (`https://api.example.com`): the base of
    /// triggers' `invoke_url`. Default: the listen address.
    #[serde(default)]
    public_url: Option<String>,
    /// One line per request (off by default).
    #[serde(default)]
    access_log: Option<AccessLogFile>,
    /// The audit trail's file and retention.
    #[serde(default)]
    audit_log: Option<AuditLogFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct OutlierFile {
    consecutive_failures: u32,
    ejection_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TimeoutsFile {
    header_read_ms: u64,
    keepalive_idle_ms: u64,
    tls_handshake_ms: u64,
    upstream_connect_ms: u64,
    request_ms: u64,
    pool_idle_ms: u64,
    shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LimitsFile {
    max_connections: usize,
    max_body_bytes: u64,
    max_connections_per_upstream: usize,
    max_headers: usize,
    max_header_bytes: usize,
    pool_max_idle_per_upstream: usize,
    /// Largest routing state read (a routes file, a snapshot, one etcd value).
    max_routes_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ReloadFile {
    debounce_ms: u64,
    poll_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct AdminFile {
    /// Accepted `X-Auth-Token` values; `${NAME}` is replaced with the environment variable.
    tokens: Vec<String>,
    /// Access key pairs for SDK-HMAC-SHA256 and ACS3-HMAC-SHA256 signatures.
    keys: Vec<KeyFile>,
    max_body_bytes: usize,
    max_clock_skew_s: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    access_key: String,
    secret_key: String,
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// Where the routing state lives.
    pub source: SourceSettings,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub reload: ReloadSettings,
    pub admin: AdminSettings,
    pub upstream: UpstreamPolicy,
    pub tls: Option<TlsPaths>,
    pub upstream_ca: Option<PathBuf>,
    /// The base of triggers' `invoke_url`; `None`: the bound listen address.
    pub public_url: Option<String>,
    pub access_log: Option<AccessLogSettings>,
    pub audit_log: AuditSettings,
}

/// Where the routing state lives: one source per gateway.
#[derive(Debug, Clone)]
pub enum SourceSettings {
    /// A routes file, watched and hot-reloaded; API changes rewrite it.
    File(PathBuf),
    /// A prefix in etcd that every replica of a fleet lists and watches.
    Etcd(Box<EtcdSettings>),
}

/// Certificate chain and private key (PEM) for the data plane; reloaded when they change.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub tokens: Vec<Secret>,
    pub keys: Vec<AccessKey>,
    /// Management request bodies above this are refused (413) before they are parsed.
    pub max_body_bytes: usize,
    /// Signed requests dated further than this from our clock are refused.
    pub max_clock_skew: Duration,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    /// Deadline for a request's headers (and for the first bytes of a connection); on
    /// HTTP/1 it also bounds an idle keep-alive connection, because hyper starts it when it
    /// waits for the next request head.
    pub header_read: Duration,
    /// An HTTP/2 connection with no stream and no traffic for this long is closed.
    pub keepalive_idle: Duration,
    pub tls_handshake: Duration,
    pub upstream_connect: Duration,
    /// Default for functions without `timeout_ms`: until the upstream's response headers.
    pub request: Duration,
    /// Idle pooled upstream connections are closed after this (keep it below the
    /// upstreams' own keep-alive timeout, or a reused connection can race their close).
    pub pool_idle: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// Request bodies above this are refused with 413 (by Content-Length or as they stream).
    pub max_body_bytes: u64,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub pool_max_idle_per_upstream: usize,
}

#[derive(Debug, Clone)]
pub struct ReloadSettings {
    pub debounce: Duration,
    /// Fallback re-check for changes no file event reported (network file systems).
    pub poll: Duration,
    /// What reading the routing state may cost (`limits.max_routes_bytes`, and the fixed
    /// nesting and alias bounds).
    pub limits: ReadLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}:{line}: {message}")]
    Parse { file: String, line: usize, message: String },
    #[error("{file}: {field}: environment variable {name} is not set")]
    MissingEnv { file: String, field: &'static str, name: String },
    #[error("{file}: {field}: {message}")]
    Invalid { file: String, field: &'static str, message: String },
}

// === impl ServerConfig ===

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let source =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&source, &file, base)
    }

    /// Parses settings; a relative `routes` path is taken from `base`.
    pub fn parse(source: &str, file: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: ServerFile = serde_norway::from_str(source).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            line: e.location().map_or(0, |l| l.line()),
            message: e.to_string(),
        })?;
        Self::from_raw(raw, file, base)
    }

    fn from_raw(raw: ServerFile, file: &str, base: &Path) -> Result<Self, ConfigError> {
        let invalid =
            |field, message: &str| ConfigError::Invalid { file: file.to_owned(), field, message: message.to_owned() };
        let t = &raw.timeouts;
        for (field, value) in [
            ("timeouts.header_read_ms", t.header_read_ms),
            ("timeouts.upstream_connect_ms", t.upstream_connect_ms),
            ("timeouts.request_ms", t.request_ms),
            ("timeouts.pool_idle_ms", t.pool_idle_ms),
            ("reload.debounce_ms", raw.reload.debounce_ms),
            ("reload.poll_ms", raw.reload.poll_ms),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        let l = &raw.limits;
        for (field, value) in [
            ("limits.max_connections", l.max_connections),
            ("limits.max_headers", l.max_headers),
            ("limits.max_header_bytes", l.max_header_bytes),
            ("limits.max_routes_bytes", l.max_routes_bytes),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if l.max_header_bytes < 8192 {
            return Err(invalid("limits.max_header_bytes", "must be at least 8192"));
        }
        let admin = admin_settings(&raw.admin, file)?;
        let relative = |path: &PathBuf| if path.is_absolute() { path.clone() } else { base.join(path) };
        let source = match (&raw.routes, &raw.etcd) {
            (Some(_), Some(_)) => {
                return Err(invalid("etcd", "set either routes (a file) or etcd (a fleet's store), not both"));
            }
            (routes, None) => SourceSettings::File(relative(routes.as_ref().unwrap_or(&default_routes()))),
            (None, Some(etcd)) => SourceSettings::Etcd(Box::new(etcd_settings(etcd, file, &relative)?)),
        };
        if l.max_connections_per_upstream == 0 {
            return Err(invalid("limits.max_connections_per_upstream", "must be greater than 0"));
        }
        for (field, value) in
            [("timeouts.keepalive_idle_ms", t.keepalive_idle_ms), ("timeouts.tls_handshake_ms", t.tls_handshake_ms)]
        {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        Ok(ServerConfig {
            listen: raw.listen,
            admin_listen: raw.admin_listen,
            source,
            timeouts: Timeouts {
                header_read: Duration::from_millis(t.header_read_ms),
                keepalive_idle: Duration::from_millis(t.keepalive_idle_ms),
                tls_handshake: Duration::from_millis(t.tls_handshake_ms),
                upstream_connect: Duration::from_millis(t.upstream_connect_ms),
                request: Duration::from_millis(t.request_ms),
                pool_idle: Duration::from_millis(t.pool_idle_ms),
                shutdown_grace: Duration::from_millis(t.shutdown_grace_ms),
            },
            limits: Limits {
                max_connections: l.max_connections,
                max_body_bytes: l.max_body_bytes,
                max_headers: l.max_headers,
                max_header_bytes: l.max_header_bytes,
                pool_max_idle_per_upstream: l.pool_max_idle_per_upstream,
            },
            reload: ReloadSettings {
                debounce: Duration::from_millis(raw.reload.debounce_ms),
                poll: Duration::from_millis(raw.reload.poll_ms),
                limits: ReadLimits { max_bytes: l.max_routes_bytes },
            },
            admin,
            upstream: UpstreamPolicy {
                consecutive_failures: raw.outlier.consecutive_failures,
                ejection: Duration::from_millis(raw.outlier.ejection_ms),
                max_connections: l.max_connections_per_upstream,
            },
            tls: raw.tls.as_ref().map(|tls| TlsPaths { cert: relative(&tls.cert), key: relative(&tls.key) }),
            upstream_ca: raw.upstream_ca.as_ref().map(relative),
            public_url: match raw.public_url {
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(url.trim_end_matches('/').to_owned())
                }
                Some(_) => return Err(invalid("public_url", "must be an http:// or https:// URL")),
                None => None,
            },
            access_log: raw.access_log.as_ref().map(|log| access_log_settings(log, file, base)).transpose()?,
            audit_log: audit_log_settings(raw.audit_log.as_ref(), file, base)?,
        })
    }

    /// Settings for a gateway on the given addresses with every other value defaulted.
    pub fn with_defaults(
        listen: SocketAddr,
        admin_listen: SocketAddr,
        routes_path: PathBuf,
    ) -> Result<Self, ConfigError> {
        let raw = ServerFile {
            listen,
            admin_listen,
            routes: Some(routes_path),
            etcd: None,
            timeouts: TimeoutsFile::default(),
            limits: LimitsFile::default(),
            reload: ReloadFile::default(),
            admin: AdminFile::default(),
            outlier: OutlierFile::default(),
            tls: None,
            upstream_ca: None,
            public_url: None,
            access_log: None,
            audit_log: None,
        };
        Self::from_raw(raw, "defaults", Path::new("."))
    }
}

fn admin_settings(raw: &AdminFile, file: &str) -> Result<AdminSettings, ConfigError> {
    let expand = |value: &str, field: &'static str| {
        expand_env(value).map_err(|name| ConfigError::MissingEnv { file: file.to_owned(), field, name })
    };
    let mut tokens = Vec::new();
    for token in &raw.tokens {
        let token = expand(token, "admin.tokens")?;
        if token.is_empty() {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                field: "admin.tokens",
                message: "a token is empty".into(),
            });
        }
        tokens.push(Secret::new(&token));
    }
    let mut keys = Vec::new();
    for key in &raw.keys {
        let id = expand(&key.access_key, "admin.keys.access_key")?;
        let secret = expand(&key.secret_key, "admin.keys.secret_key")?;
        if id.is_empty() || secret.is_empty() {
            return Err(ConfigError::Invalid {
                file: file.to_owned(),
                field: "admin.keys",
                message: "an access or secret key is empty".into(),
            });
        }
        keys.push(AccessKey { id, secret: Secret::new(&secret) });
    }
    if raw.max_body_bytes == 0 {
        return Err(ConfigError::Invalid {
            file: file.to_owned(),
            field: "admin.max_body_bytes",
            message: "must be greater than 0".into(),
        });
    }
    Ok(AdminSettings {
        tokens,
        keys,
        max_body_bytes: raw.max_body_bytes,
        max_clock_skew: Duration::from_secs(raw.max_clock_skew_s),
    })
}

/// Replaces every `${NAME}` with the environment variable NAME; `Err(NAME)` if it is unset.
fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let name = &after[..end];
        out.push_str(&std::env::var(name).map_err(|_| name.to_owned())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

// === defaults (stated in docs/configuration.md) ===

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}

fn default_routes() -> PathBuf {
    PathBuf::from("routes.yaml")
}

impl Default for TimeoutsFile {
    fn default() -> Self {
        TimeoutsFile {
            header_read_ms: 10_000,
            keepalive_idle_ms: 60_000,
            tls_handshake_ms: 10_000,
            upstream_connect_ms: 3_000,
            request_ms: 30_000,
            pool_idle_ms: 1_500,
            shutdown_grace_ms: 30_000,
        }
    }
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_connections: 10_000,
            max_body_bytes: 10 * 1024 * 1024,
            max_connections_per_upstream: 1024,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            pool_max_idle_per_upstream: 256,
            max_routes_bytes: crate::routes::limits::DEFAULT_MAX_BYTES,
        }
    }
}

impl Default for OutlierFile {
    fn default() -> Self {
        OutlierFile { consecutive_failures: 5, ejection_ms: 30_000 }
    }
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile { tokens: Vec::new(), keys: Vec::new(), max_body_bytes: 1024 * 1024, max_clock_skew_s: 15 * 60 }
    }
}

impl Default for ReloadFile {
    fn default() -> Self {
        ReloadFile { debounce_ms: 200, poll_ms: 5_000 }
    }
}
