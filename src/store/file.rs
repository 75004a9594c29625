//! The routes file as the source of the routing state: read at start, re-read when its
//! directory changes (or on the poll, or SIGHUP), rewritten atomically by API edits.
//!
//! A content hash makes a re-read of unchanged content a no-op, so the watcher never loops
//! on the gateway's own writes and SIGHUP over an unchanged file changes nothing; a file
//! that fails to parse is re-read once it has settled before it counts as rejected, so a
//! writer caught between truncate and write is not reported as an error. A file that cannot
//! be read at all (EMFILE, a permission) is an I/O error, not an invalid configuration.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::diff::Changes;
use super::{ApplyError, Edit, ReloadOutcome, RoutesStore, Stamp, StoreError, compile_over, persist, run_edit};
use crate::config::ReloadSettings;
use crate::health::UpstreamPolicy;
use crate::routes::{RoutesError, RoutesFile, ValidRoutes};
use crate::routing::RoutingTable;

/// How many times a failing file is re-read while it keeps changing under us.
const SETTLE_ATTEMPTS: usize = 5;

pub(super) struct FileSource {
    path: PathBuf,
    /// A file that fails to parse is re-read after this long before it counts as rejected.
    settle: Duration,
    known: std::sync::Mutex<Known>,
}

/// What the source knows of the file's content (changed only under the store's edit lock).
#[derive(Debug, Clone, Copy)]
struct Known {
    applied_hash: u64,
    /// A rejected file is not re-parsed (or re-logged) until its content changes.
    rejected_hash: Option<u64>,
}

enum Loaded {
    Unchanged,
    Compiled(u64, Box<RoutingTable>, Changes),
    Rejected(u64, RoutesError),
    Unreadable(RoutesError),
}

// === impl FileSource ===

impl FileSource {
    /// Reads and validates the file; a gateway does not start on an invalid one.
    pub(super) fn open(path: &Path, settle: Duration) -> Result<(Self, ValidRoutes), StoreError> {
        persist::remove_leftovers(path);
        let source = read(path)?;
        let valid = ValidRoutes::parse(&source, &crate::routes::display_name(path))?;
        let known = Known { applied_hash: hash(&source), rejected_hash: None };
        Ok((FileSource { path: path.to_owned(), settle, known: std::sync::Mutex::new(known) }, valid))
    }

    fn known(&self) -> Known {
        *self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_known(&self, known: Known) {
        *self.known.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = known;
    }
}

/// Re-reads the file and applies it if its content changed.
pub(super) async fn reload(store: &RoutesStore, source: &FileSource, force: bool) -> ReloadOutcome {
    let _serialised = store.edits.lock().await;
    let (path, previous, known, settle, policy) =
        (source.path.clone(), store.current(), source.known(), source.settle, store.policy.clone());
    let work = store.background.run(move || load(&path, &previous, known, force, settle, &policy)).await;
    let loaded = work.unwrap_or_else(|lost| {
        Loaded::Unreadable(RoutesError::single(&source.path.display().to_string(), None, "", lost.to_string()))
    });
    match loaded {
        Loaded::Unchanged => {
            store.metrics.reload_unchanged();
            ReloadOutcome::Unchanged
        }
        Loaded::Compiled(content_hash, table, changes) => {
            source.set_known(Known { applied_hash: content_hash, rejected_hash: None });
            let generation = store.publish(*table, Stamp::Next);
            tracing::info!(generation, changes = %changes, "routes reloaded from the file");
            ReloadOutcome::Applied { generation }
        }
        Loaded::Rejected(content_hash, error) => {
            store.reject(store.current().revision(), &error);
            source.set_known(Known { rejected_hash: Some(content_hash), ..known });
            ReloadOutcome::Rejected(error)
        }
        Loaded::Unreadable(error) => {
            store.metrics.reload_unreadable();
            ReloadOutcome::Unreadable(error)
        }
    }
}

/// An API edit: a hand edit the watcher has not picked up yet is taken in first, so the
/// edit builds on it rather than overwriting it (a hand edit that does not validate is
/// overwritten: it was never live). Durable on disk before the table is published.
pub(super) async fn apply<T: Send + 'static, E: Send + 'static>(
    store: &RoutesStore,
    source: &FileSource,
    edit: Arc<Edit<T, E>>,
) -> Result<T, ApplyError<E>> {
    let (path, previous, known, policy) = (source.path.clone(), store.current(), source.known(), store.policy.clone());
    let work = store
        .background
        .run(move || {
            let adopted = match load(&path, &previous, known, false, Duration::ZERO, &policy) {
                Loaded::Compiled(_, table, _) => Some(table),
                Loaded::Unchanged | Loaded::Rejected(..) | Loaded::Unreadable(_) => None,
            };
            let base: &RoutingTable = adopted.as_deref().unwrap_or(&previous);
            let (value, valid) = run_edit(base.source().spec(), &*edit)?;
            let changes = Changes::between(base.source().spec(), valid.spec());
            let text = render(valid.spec()).map_err(ApplyError::Internal)?;
            let table = compile_over(valid, base, &policy).map_err(|e| ApplyError::Internal(e.to_string()))?;
            persist::write_atomically(&path, text.as_bytes()).map_err(ApplyError::Write)?;
            Ok((value, hash(&text), table, changes))
        })
        .await;
    let (value, content_hash, table, changes) = work.map_err(|lost| ApplyError::Internal(lost.to_string()))??;
    source.set_known(Known { applied_hash: content_hash, rejected_hash: None });
    let generation = store.publish(table, Stamp::Next);
    tracing::info!(generation, changes = %changes, "routes changed through the management API");
    Ok(value)
}

/// Watches the file's directory, polls as a fallback and reloads on SIGHUP.
pub(super) fn spawn(
    store: Arc<RoutesStore>,
    settings: ReloadSettings,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, StoreError> {
    let super::Source::File(source) = &store.source else {
        return Err(StoreError::Etcd("the file watcher was asked for an etcd store".into()));
    };
    let dirs = vec![crate::reload::parent_dir(&source.path)];
    let task = crate::reload::spawn_watch(dirs, settings, shutdown, move |force| {
        let store = Arc::clone(&store);
        async move { log_outcome(&store.reload(force).await, force) }
    })?;
    Ok(task)
}

fn log_outcome(outcome: &ReloadOutcome, forced: bool) {
    match outcome {
        ReloadOutcome::Unchanged if forced => tracing::info!("SIGHUP: routes file unchanged"),
        ReloadOutcome::Unchanged => tracing::debug!("routes file unchanged"),
        ReloadOutcome::Applied { .. } => {}
        ReloadOutcome::Rejected(error) => {
            for problem in &error.problems {
                tracing::warn!(%problem, "routes file rejected; the previous routes stay in force");
            }
        }
        ReloadOutcome::Unreadable(error) => {
            tracing::warn!(%error, "routes file cannot be read; the previous routes stay in force");
        }
    }
}

/// The routes file as the management API writes it.
pub(super) fn render(routes: &RoutesFile) -> Result<String, String> {
    let body = serde_norway::to_string(routes).map_err(|e| e.to_string())?;
    Ok(format!(
        "# Routing state of graygate. Hand edits are applied on save; the management API rewrites\n\
         # this file (atomically) on every change, so comments are not kept.\n{body}"
    ))
}

/// The blocking part of a reload: read, compare, parse, validate, compile.
fn load(
    path: &Path,
    previous: &RoutingTable,
    known: Known,
    force: bool,
    settle: Duration,
    policy: &UpstreamPolicy,
) -> Loaded {
    let name = crate::routes::display_name(path);
    let seen = |content: u64| content == known.applied_hash || (!force && Some(content) == known.rejected_hash);
    let mut attempt = 0;
    let (content_hash, valid) = loop {
        // Events for other files in the directory are common (a log beside the routes):
        // deciding "unchanged" streams the file through the hash instead of holding it.
        match hash_file(path) {
            Ok(content) if seen(content) => return Loaded::Unchanged,
            Ok(_) => {}
            Err(error) => return Loaded::Unreadable(error),
        }
        let source = match read(path) {
            Ok(source) => source,
            Err(error) => return Loaded::Unreadable(error),
        };
        let content_hash = hash(&source);
        if seen(content_hash) {
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
    let changes = Changes::between(previous.source().spec(), valid.spec());
    match compile_over(valid, previous, policy) {
        Ok(table) => Loaded::Compiled(content_hash, Box::new(table), changes),
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
