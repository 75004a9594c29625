//! The routing state's owner: the published table (one `ArcSwap`) and the file behind it.
//!
//! Every change goes through here, serialised by one lock: a reload from the file (watch,
//! poll, SIGHUP) and, from the management API, a write to the file. A content hash makes a
//! re-read of unchanged content a no-op, so the watcher never loops on the gateway's own
//! writes; a file that fails to parse is re-read once it has settled before it counts as
//! rejected, so a writer caught between truncate and write is not reported as an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Mutex;

use crate::health::UpstreamPolicy;
use crate::metrics::Metrics;
use crate::routes::{Issue, RoutesError, RoutesFile, ValidRoutes};
use crate::routing::{self, RoutingTable};

mod background;
mod persist;

use background::Background;

/// How many times a failing file is re-read while it keeps changing under us.
const SETTLE_ATTEMPTS: usize = 5;

/// The published routing table and what is known about the file it came from.
pub struct RoutesStore {
    /// Shared with the metrics registry, which reads the configured splits from it.
    table: Arc<ArcSwap<RoutingTable>>,
    path: PathBuf,
    metrics: Metrics,
    /// A file that fails to parse is re-read after this long before it counts as rejected.
    settle: Duration,
    policy: UpstreamPolicy,
    /// Serialises reloads and API writes so two never interleave.
    file: Mutex<FileState>,
    /// Tables replaced but perhaps still used by requests in flight. Freeing a table of
    /// 10,000 functions takes milliseconds: that happens on the background thread, not in
    /// whichever request happens to drop the last reference.
    retired: std::sync::Mutex<Vec<Arc<RoutingTable>>>,
    /// Where reloads and API changes parse and compile, below the requests' priority.
    background: Background,
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

/// Why a change through [`RoutesStore::apply`] was not made; nothing was written then.
#[derive(Debug)]
pub enum ApplyError<E> {
    /// The change itself refused (a business rule of the API that asked for it).
    Rejected(E),
    /// The resulting routes would not validate.
    Invalid(Vec<Issue>),
    /// The routes file could not be written (read-only, full disk, …).
    Write(std::io::Error),
    /// A bug: validated routes failed to compile, or the worker died.
    Internal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Routes(#[from] RoutesError),
    #[error("cannot compile routes: {0}")]
    Compile(#[from] routing::CompileError),
    #[error("cannot export the routes' metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the background worker: {0}")]
    Worker(#[from] std::io::Error),
}

// === impl RoutesStore ===

impl RoutesStore {
    /// Loads the routes file; a gateway does not start on an invalid one.
    pub fn open(path: &Path, metrics: Metrics, settle: Duration, policy: UpstreamPolicy) -> Result<Self, StoreError> {
        let source = read(path)?;
        let valid = ValidRoutes::parse(&source, &crate::routes::display_name(path))?;
        let table = routing::compile(Arc::new(valid), 1, None, &policy)?;
        let table = Arc::new(ArcSwap::from_pointee(table));
        metrics.watch_routes(Arc::clone(&table))?;
        metrics.reload_succeeded(1);
        Ok(RoutesStore {
            table,
            path: path.to_owned(),
            metrics,
            settle,
            policy,
            retired: std::sync::Mutex::new(Vec::new()),
            background: Background::start()?,
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
        let (settle, policy) = (self.settle, self.policy.clone());
        let work = self.background.run(move || load(&path, &previous, known, force, settle, &policy)).await;
        let outcome = match work {
            Ok(outcome) => outcome,
            Err(lost) => Loaded::Rejected(
                hash_unknown(),
                RoutesError::single(&self.path.display().to_string(), None, "", lost.to_string()),
            ),
        };
        match outcome {
            Loaded::Unchanged => ReloadOutcome::Unchanged,
            Loaded::Compiled(content_hash, table) => {
                let generation = table.generation();
                self.publish(table);
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

    /// Makes `table` the one in force and retires the previous one.
    fn publish(&self, table: RoutingTable) {
        let generation = table.generation();
        let previous = self.table.swap(Arc::new(table));
        self.metrics.reload_succeeded(generation);
        let unused = {
            let mut retired = self.retired.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            retired.push(previous);
            let (unused, in_use): (Vec<_>, Vec<_>) = retired.drain(..).partition(|table| Arc::strong_count(table) == 1);
            *retired = in_use;
            unused
        };
        if !unused.is_empty() {
            self.background.spawn(move || drop(unused));
        }
    }

    /// Applies `change` to the routing state: durable on disk before it returns, and live
    /// on the data plane as it returns. Changes are serialised; a hand edit that the watcher
    /// has not picked up yet is taken in first, so API changes build on it rather than
    /// overwrite it (a hand edit that does not validate is overwritten: it was never live).
    pub async fn apply<T, E, F>(&self, change: F) -> Result<T, ApplyError<E>>
    where
        F: FnOnce(&mut RoutesFile) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        let mut state = self.file.lock().await;
        let path = self.path.clone();
        let previous = self.current();
        let known = *state;
        let policy = self.policy.clone();
        let work = self
            .background
            .run(move || {
                let adopted = match load(&path, &previous, known, false, Duration::ZERO, &policy) {
                    Loaded::Compiled(_, table) => Some(table),
                    Loaded::Unchanged | Loaded::Rejected(..) => None,
                };
                let base = adopted.as_ref().unwrap_or(&previous);
                let mut spec = base.source().spec().clone();
                let value = change(&mut spec).map_err(ApplyError::Rejected)?;
                let valid = ValidRoutes::new(spec).map_err(ApplyError::Invalid)?;
                let text = render(valid.spec()).map_err(ApplyError::Internal)?;
                let table = routing::compile(Arc::new(valid), base.generation() + 1, Some(base), &policy)
                    .map_err(|e| ApplyError::Internal(e.to_string()))?;
                persist::write_atomically(&path, text.as_bytes()).map_err(ApplyError::Write)?;
                Ok((value, hash(&text), table))
            })
            .await;
        let (value, content_hash, table) = match work {
            Ok(result) => result?,
            Err(lost) => return Err(ApplyError::Internal(lost.to_string())),
        };
        let generation = table.generation();
        self.publish(table);
        *state = FileState { applied_hash: content_hash, rejected_hash: None };
        tracing::info!(generation, "routes changed through the management API");
        Ok(value)
    }
}

/// The routes file as the management API writes it.
fn render(routes: &RoutesFile) -> Result<String, String> {
    let body = serde_norway::to_string(routes).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Routing state of graygate. Hand edits are applied on save; the management API rewrites\n\
         # this file (atomically) on every change, so comments are not kept.\n{body}"
    ))
}

enum Loaded {
    Unchanged,
    Compiled(u64, RoutingTable),
    Rejected(u64, RoutesError),
}

/// The blocking part of a reload: read, compare, parse, validate, compile.
fn load(
    path: &Path,
    previous: &RoutingTable,
    known: FileState,
    force: bool,
    settle: Duration,
    policy: &UpstreamPolicy,
) -> Loaded {
    let name = crate::routes::display_name(path);
    let mut attempt = 0;
    let (content_hash, valid) = loop {
        // Events for other files in the directory are common (a log beside the routes):
        // deciding "unchanged" streams the file through the hash instead of holding it.
        if !force {
            match hash_file(path) {
                Ok(unchanged) if unchanged == known.applied_hash || Some(unchanged) == known.rejected_hash => {
                    return Loaded::Unchanged;
                }
                Ok(_) => {}
                Err(error) => return Loaded::Rejected(hash_unknown(), error),
            }
        }
        let source = match read(path) {
            Ok(source) => source,
            Err(error) => return Loaded::Rejected(hash_unknown(), error),
        };
        let content_hash = hash(&source);
        if !force && (content_hash == known.applied_hash || Some(content_hash) == known.rejected_hash) {
            return Loaded::Unchanged;
        }
        match ValidRoutes::parse(&source, &name) {
            Ok(valid) => break (content_hash, valid),
            Err(error) => {
                // A writer between truncate and write leaves a short file for a moment:
                // only content that stays the same across a settle period is rejected.
                attempt += 1;
                std::thread::sleep(settle);
                let settled = hash_file(path).map(|now| now == content_hash).unwrap_or(true);
                if settled || attempt >= SETTLE_ATTEMPTS {
                    return Loaded::Rejected(content_hash, error);
                }
            }
        }
    };
    match routing::compile(Arc::new(valid), previous.generation() + 1, Some(previous), policy) {
        Ok(table) => Loaded::Compiled(content_hash, table),
        Err(error) => Loaded::Rejected(content_hash, RoutesError::single(&name, None, "", error.to_string())),
    }
}

fn read(path: &Path) -> Result<String, RoutesError> {
    std::fs::read_to_string(path).map_err(|error| RoutesError::unreadable(path, &error))
}

fn hash(source: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(source.as_bytes())
}

/// The same hash as [`hash`] of the file's content, read in chunks.
fn hash_file(path: &Path) -> Result<u64, RoutesError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|error| RoutesError::unreadable(path, &error))?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(hasher.digest()),
            Ok(n) => hasher.update(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(RoutesError::unreadable(path, &error)),
        }
    }
}

/// An unreadable file has no content hash; a value no real file hashes to keeps it
/// from suppressing the next attempt.
fn hash_unknown() -> u64 {
    u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_streamed_through_the_hash_hashes_as_its_content() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("routes.json");
        // Larger than one chunk and not a multiple of it.
        let content: String = (0..40_000).map(|i| format!("{i},")).collect();
        std::fs::write(&path, &content).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(content.len() > 3 * 64 * 1024);
        assert_eq!(hash_file(&path).ok(), Some(hash(&content)));
        assert!(hash_file(&dir.path().join("missing.json")).is_err());
    }
}
