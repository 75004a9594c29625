//! Keeps the routing table current: file events, a poll fallback and SIGHUP all lead to
//! one `reload`, which reads, parses, validates and compiles off the async threads and
//! publishes the result with a single `ArcSwap` store.
//!
//! The watch is on the routes file's *directory*: editors save by rename and Kubernetes
//! swaps a `..data` symlink, and a watch on the file itself goes deaf after the first such
//! change. Any event in the directory triggers a re-read by path; a content hash makes
//! unrelated events (and our own writes) no-ops. An invalid file is logged and counted,
//! and the last good table keeps serving until the file is fixed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;

use crate::config::ReloadSettings;
use crate::metrics::Metrics;
use crate::routes::{RoutesError, ValidRoutes};
use crate::routing::{self, RoutingTable};

/// The published routing table and what is known about the file it came from.
pub struct RoutesStore {
    table: ArcSwap<RoutingTable>,
    path: PathBuf,
    metrics: Metrics,
    /// Serialises reloads (and, later, API writes) so two never interleave.
    file: Mutex<FileState>,
}

#[derive(Debug, Clone, Copy)]
struct FileState {
    applied_hash: u64,
    /// A rejected file is not re-parsed (or re-logged) until its content changes.
    rejected_hash: Option<u64>,
}

#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Applied { generation: u64 },
    Rejected(RoutesError),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Routes(#[from] RoutesError),
    #[error("cannot compile routes: {0}")]
    Compile(#[from] routing::CompileError),
}

// === impl RoutesStore ===

impl RoutesStore {
    /// Loads the routes file; a gateway does not start on an invalid one.
    pub fn open(path: &Path, metrics: Metrics) -> Result<Self, StoreError> {
        let source = read(path)?;
        let valid = ValidRoutes::parse(&source, &crate::routes::display_name(path))?;
        let table = routing::compile(Arc::new(valid), 1, None)?;
        metrics.reload_succeeded(1, table.source().spec());
        Ok(RoutesStore {
            table: ArcSwap::from_pointee(table),
            path: path.to_owned(),
            metrics,
            file: Mutex::new(FileState { applied_hash: hash(&source), rejected_hash: None }),
        })
    }

    /// The table in force; hold it for the whole request, not across reloads' concerns.
    pub fn current(&self) -> Arc<RoutingTable> {
        self.table.load_full()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file and applies it if it changed (always, when `force`).
    pub async fn reload(&self, force: bool) -> ReloadOutcome {
        let mut state = self.file.lock().await;
        let path = self.path.clone();
        let previous = self.current();
        let known = *state;
        let work = tokio::task::spawn_blocking(move || load(&path, &previous, known, force)).await;
        let outcome = match work {
            Ok(outcome) => outcome,
            Err(join_error) => Loaded::Rejected(
                hash_unknown(),
                RoutesError::single(&self.path.display().to_string(), None, "", join_error.to_string()),
            ),
        };
        match outcome {
            Loaded::Unchanged => ReloadOutcome::Unchanged,
            Loaded::Compiled(content_hash, table) => {
                let generation = table.generation();
                self.metrics.reload_succeeded(generation, table.source().spec());
                self.table.store(Arc::new(table));
                *state = FileState { applied_hash: content_hash, rejected_hash: None };
                ReloadOutcome::Applied { generation }
            }
            Loaded::Rejected(content_hash, error) => {
                self.metrics.reload_failed();
                state.rejected_hash = Some(content_hash);
                ReloadOutcome::Rejected(error)
            }
        }
    }
}

enum Loaded {
    Unchanged,
    Compiled(u64, RoutingTable),
    Rejected(u64, RoutesError),
}

/// The blocking part of a reload: read, compare, parse, validate, compile.
fn load(path: &Path, previous: &RoutingTable, known: FileState, force: bool) -> Loaded {
    let name = crate::routes::display_name(path);
    let source = match read(path) {
        Ok(source) => source,
        Err(error) => return Loaded::Rejected(hash_unknown(), error),
    };
    let content_hash = hash(&source);
    if !force && (content_hash == known.applied_hash || Some(content_hash) == known.rejected_hash) {
        return Loaded::Unchanged;
    }
    let valid = match ValidRoutes::parse(&source, &name) {
        Ok(valid) => valid,
        Err(error) => return Loaded::Rejected(content_hash, error),
    };
    match routing::compile(Arc::new(valid), previous.generation() + 1, Some(previous)) {
        Ok(table) => Loaded::Compiled(content_hash, table),
        Err(error) => Loaded::Rejected(content_hash, RoutesError::single(&name, None, "", error.to_string())),
    }
}

fn read(path: &Path) -> Result<String, RoutesError> {
    std::fs::read_to_string(path).map_err(|error| {
        RoutesError::single(&crate::routes::display_name(path), None, "", format!("cannot read: {error}"))
    })
}

fn hash(source: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(source.as_bytes())
}

/// An unreadable file has no content hash; a value no real file hashes to keeps it
/// from suppressing the next attempt.
fn hash_unknown() -> u64 {
    u64::MAX
}

/// Watches the routes file's directory, polls as a fallback and reloads on SIGHUP,
/// until `shutdown` turns true.
pub fn spawn_watcher(
    store: Arc<RoutesStore>,
    settings: ReloadSettings,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, notify::Error> {
    let changed = Arc::new(Notify::new());
    let signal = Arc::clone(&changed);
    let mut debouncer = new_debouncer(settings.debounce, None, move |result: DebounceEventResult| match result {
        Ok(_) => signal.notify_one(),
        Err(errors) => tracing::warn!(?errors, "file watch error"),
    })?;
    let dir = match store.path().parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    let mut hangup = hangup_signal();

    Ok(tokio::spawn(async move {
        // The debouncer stops watching when dropped: it lives as long as this task.
        let _debouncer = debouncer;
        let mut poll = tokio::time::interval(settings.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll.tick().await;
        loop {
            let force = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                _ = changed.notified() => false,
                _ = poll.tick() => false,
                _ = recv_hangup(&mut hangup) => true,
            };
            log_outcome(&store.reload(force).await);
        }
    }))
}

fn log_outcome(outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Unchanged => {}
        ReloadOutcome::Applied { generation } => tracing::info!(generation, "routes reloaded"),
        ReloadOutcome::Rejected(error) => {
            for problem in &error.problems {
                tracing::warn!(%problem, "routes file rejected; the previous routes stay in force");
            }
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

async fn recv_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        signal.recv().await;
        return;
    }
    let _ = hangup;
    std::future::pending::<()>().await
}
