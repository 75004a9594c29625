//! Lifecycle: `ServerConfig` → [`App::start`] (load routes, bind, spawn) → run → drain.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access_log::AccessLog;
use crate::admin::Admin;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::proxy::server::{self, ConnSettings};
use crate::proxy::upstream::{ClientSetupError, UpstreamClients};
use crate::proxy::{Gateway, RequestLimits};
use crate::reload;
use crate::store::{ReplicaIdentity, RoutesStore, StoreError};
use crate::tls::{Certificates, TlsError};

/// A running gateway: data and admin listeners, the reloader, and the shutdown switch.
pub struct App {
    data_addr: SocketAddr,
    admin_addr: SocketAddr,
    routes: Arc<RoutesStore>,
    metrics: Metrics,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The access log's writer, joined at shutdown so that the last lines reach the file.
    log_writer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Routes(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("admin_listen {0} is not a loopback address and no admin tokens or keys are configured")]
    OpenAdmin(SocketAddr),
    #[error("{0}")]
    Clients(#[from] ClientSetupError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("cannot watch the TLS certificate's directory: {0}")]
    Watch(#[from] notify::Error),
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
}

// === impl App ===

impl App {
    pub async fn start(config: ServerConfig) -> Result<App, StartError> {
        if !config.admin_listen.ip().is_loopback() && config.admin.tokens.is_empty() && config.admin.keys.is_empty() {
            return Err(StartError::OpenAdmin(config.admin_listen));
        }
        let metrics = Metrics::new()?;
        let data = bind(config.listen).await?;
        let admin = bind(config.admin_listen).await?;
        let data_addr = local_addr(&data, config.listen)?;
        let admin_addr = local_addr(&admin, config.admin_listen)?;
        let identity = ReplicaIdentity::detect(data_addr, admin_addr);
        let routes = RoutesStore::open(
            &config.source,
            metrics.clone(),
            &config.reload,
            config.upstream.clone(),
            identity,
            &config.audit_log,
        )
        .await?;
        let (shutdown, stop) = watch::channel(false);
        let settings = ConnSettings::from_config(&config);

        let (access_log, log_writer) = match &config.access_log {
            Some(settings) => {
                let (log, writer) =
                    AccessLog::start(settings, metrics.access_log_dropped()).map_err(StartError::AccessLog)?;
                (Some(log), Some(writer))
            }
            None => (None, None),
        };
        let scheme = if config.tls.is_some() { "https" } else { "http" };
        let public_url = config.public_url.clone().unwrap_or_else(|| default_public_url(scheme, data_addr));
        let gateway = Arc::new(Gateway::new(
            Arc::clone(&routes),
            UpstreamClients::build(&config)?,
            metrics.clone(),
            config.timeouts.request,
            RequestLimits {
                max_body_bytes: config.limits.max_body_bytes,
                max_headers: config.limits.max_headers,
                max_header_bytes: config.limits.max_header_bytes,
            },
            scheme,
            access_log.clone(),
        ));
        let certificates = config.tls.clone().map(Certificates::load).transpose()?;
        let tls = certificates.as_ref().map(|c| c.server_config()).transpose()?;
        let data_task = tokio::spawn(server::serve(
            data,
            settings.clone(),
            tls,
            {
                let gateway = Arc::clone(&gateway);
                move |request, peer| Arc::clone(&gateway).handle(request, peer)
            },
            server::AcceptErrors::new("data", metrics.accept_errors("data")),
            stop.clone(),
        ));
        let admin_state =
            Arc::new(Admin::new(Arc::clone(&routes), metrics.clone(), &config.admin, gateway, public_url));
        let sampler = admin_state.spawn_sampler(stop.clone());
        if !admin_state.has_credentials() {
            tracing::warn!("no admin tokens or keys are configured: every management API call will be refused");
        }
        let admin_task = tokio::spawn(server::serve(
            admin,
            settings,
            None,
            move |request, _peer| {
                let admin = Arc::clone(&admin_state);
                async move { admin.handle(request).await }
            },
            server::AcceptErrors::new("admin", metrics.accept_errors("admin")),
            stop.clone(),
        ));
        let mut tasks = vec![data_task, admin_task, sampler];
        if let Some(certificates) = certificates {
            tasks.push(reload::spawn_certificate_watcher(certificates, config.reload.clone(), stop.clone())?);
        }
        tasks.push(spawn_reopen_on_usr1(access_log, Arc::clone(&routes), stop.clone()));
        tasks.extend(routes.spawn(config.reload.clone(), stop)?);
        let status = routes.status();
        tracing::info!(%data_addr, %admin_addr, store = status.mode, ready = status.ready, "graygate started");
        Ok(App { data_addr, admin_addr, routes, metrics, shutdown, tasks, log_writer })
    }

    pub fn data_addr(&self) -> SocketAddr {
        self.data_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    pub fn routes(&self) -> &Arc<RoutesStore> {
        &self.routes
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stops accepting, lets requests in flight finish (up to the grace period), returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "a server task failed");
            }
        }
        // Every handle went with the tasks: the writer drains its queue and ends.
        if let Some(writer) = self.log_writer {
            let joined = tokio::task::spawn_blocking(move || writer.join());
            if tokio::time::timeout(LOG_DRAIN, joined).await.is_err() {
                tracing::warn!("the access log writer did not finish in time; its last lines may be lost");
            }
        }
        tracing::info!("graygate stopped");
    }

    /// Runs until `stop` fires, then shuts down gracefully.
    pub async fn run_until(self, stop: StopSignal) {
        stop.wait().await;
        tracing::info!("stop signal received; draining");
        self.shutdown().await;
    }
}

/// How long shutdown waits for the access log's last lines (a blocked pipe never drains).
const LOG_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The accept queue of each listener. `TcpListener::bind` asks for 128, which a burst of
/// connections (or a moment at the descriptor limit, when accepts fail) overflows: the
/// kernel then drops SYNs and clients wait out a retransmission (1 s, 3 s, ...) instead of
/// being queued. 1024 is what HAProxy and mio ask for; the kernel caps it at somaxconn.
const LISTEN_BACKLOG: u32 = 1024;

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let error = |source| StartError::Bind { addr, source };
    let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(error)?;
    // As `TcpListener::bind` does: a restarted gateway rebinds while old connections linger
    // in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(error)?;
    socket.bind(addr).map_err(error)?;
    socket.listen(LISTEN_BACKLOG).map_err(error)
}

/// The listen address as a URL; an unspecified address (all interfaces) becomes loopback,
/// which at least works from the gateway's own host.
fn default_public_url(scheme: &str, addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        ip if ip.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, addr.port()))
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind { addr, source })
}

/// SIGUSR1 reopens the log files, access and audit (logrotate's `postrotate`, as for nginx).
fn spawn_reopen_on_usr1(
    log: Option<AccessLog>,
    routes: Arc<RoutesStore>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut usr1 = match signal(SignalKind::user_defined1()) {
                Ok(usr1) => usr1,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGUSR1: log files are not reopened on it");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = usr1.recv() => {
                        if let Some(log) = &log {
                            log.reopen();
                        }
                        routes.reopen_audit();
                    }
                    _ = stop.changed() => return,
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = (log, routes, stop.changed().await);
        }
    })
}

/// SIGTERM and SIGINT, installed *before* the listeners open: a signal that arrives while
/// the gateway starts still drains it instead of killing the process.
pub struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

// === impl StopSignal ===

impl StopSignal {
    pub fn install() -> Self {
        StopSignal {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    pub async fn wait(self) {
        #[cfg(unix)]
        if let Some(mut term) = self.term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c; stopping");
        }
    }
}
