//! Watching files for changes: file events, a poll fallback and SIGHUP all lead to one
//! action (the store's file source re-reads the routes; the TLS certificate reloads).
//!
//! The watch is on the routes file's *directory*: editors save by rename and Kubernetes
//! swaps a `..data` symlink, and a watch on the file itself goes deaf after the first such
//! change. Any event in the directory schedules a re-read by path `debounce` later; events
//! meanwhile join that reload and a later one, so a burst of writes costs at most one reload
//! per `debounce` and the last write is always applied within `debounce` of it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::config::ReloadSettings;
use crate::tls::Certificates;

/// Reloads the data plane's TLS certificate when its files change (or on SIGHUP).
pub fn spawn_certificate_watcher(
    certificates: Arc<Certificates>,
    settings: ReloadSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, notify::Error> {
    let mut dirs = vec![parent_dir(&certificates.paths().cert), parent_dir(&certificates.paths().key)];
    dirs.dedup();
    spawn_watch(dirs, settings, shutdown, move |_force| {
        let certificates = Arc::clone(&certificates);
        async move {
            match certificates.reload() {
                Ok(true) => tracing::info!("TLS certificate reloaded; new connections use it"),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in use"),
            }
        }
    })
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Watches `dirs`, polls, listens for SIGHUP, and runs `action` (with `force` on SIGHUP)
/// until `shutdown` turns true.
pub(crate) fn spawn_watch<A, F>(
    dirs: Vec<PathBuf>,
    settings: ReloadSettings,
    mut shutdown: watch::Receiver<bool>,
    mut action: A,
) -> Result<JoinHandle<()>, notify::Error>
where
    A: FnMut(bool) -> F + Send + 'static,
    F: Future<Output = ()> + Send,
{
    let changed = Arc::new(Notify::new());
    let signal = Arc::clone(&changed);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
        // Reads (ours included) are no change; a completed write is.
        Ok(event) if is_read_only(&event.kind) => {}
        Ok(_) => signal.notify_one(),
        Err(error) => tracing::warn!(%error, "file watch error"),
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    let mut hangup = hangup_signal();

    Ok(tokio::spawn(async move {
        // The watcher stops watching when dropped: it lives as long as this task.
        let _watcher = watcher;
        let mut poll = tokio::time::interval(settings.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let force = tokio::select! {
                _ = stopped(&mut shutdown) => break,
                _ = changed.notified() => {
                    // Let the writer finish; events until then are covered by this reload.
                    tokio::select! {
                        _ = stopped(&mut shutdown) => break,
                        _ = tokio::time::sleep(settings.debounce) => false,
                    }
                }
                _ = poll.tick() => false,
                _ = recv_hangup(&mut hangup) => true,
            };
            action(force).await;
        }
    }))
}

/// Resolves once `shutdown` turns true (the guard `wait_for` returns is not `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn is_read_only(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(access) if *access != AccessKind::Close(AccessMode::Write))
}

/// SIGHUP, where there is one.
#[cfg(unix)]
pub(crate) type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
pub(crate) type Hangup = Option<()>;

#[cfg(unix)]
pub(crate) fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
pub(crate) fn hangup_signal() -> Hangup {
    None
}

/// Resolves at the next SIGHUP (never, without one).
pub(crate) async fn recv_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        signal.recv().await;
        return;
    }
    let _ = hangup;
    std::future::pending::<()>().await
}
