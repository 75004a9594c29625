//! The routes file as the source of the routing state: read at start, re-read when its
//! directory changes (or on the poll, or SIGHUP), rewritten atomically by API edits.
//!
//! A content hash makes a re-read of unchanged content a no-op, so the watcher never loops
//! on the gateway's own writes and SIGHUP over an unchanged file changes nothing; a file
//! that fails to parse is re-read once it has settled before it counts as rejected, so a
//! writer caught between truncate and write is not reported as an error. A file that cannot
//! be read at all (EMFILE, a permission) is an I/O error, not an invalid configuration.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{ApplyError, Edit, ReloadOutcome, RoutesStore, Stamp, StoreError, compile_over, persist, run_edit};
use crate::audit::{Attribution, Outcome};
use crate::config::ReloadSettings;
use crate::health::UpstreamPolicy;
use crate::routes::changes::Changes;
use crate::routes::{self, ReadLimits, RoutesError, RoutesFile, ValidRoutes};
use crate::routing::RoutingTable;

/// How many times a failing file is re-read while it keeps changing under us.
const SETTLE_ATTEMPTS: usize = 5;

pub(super) struct FileSource {
    reading: Reading,
    known: std::sync::Mutex<Known>,
    /// When "cannot be read" was last logged, and how many since went unlogged: out of
    /// descriptors, every event in the directory (a log file beside the routes, say) fails
    /// the same way, and a line each would feed the very events that cause them.
    unreadable_logged: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

/// At most one "cannot be read" line per this long.
const UNREADABLE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How the file is read: where, how patiently, within which bounds.
#[derive(Debug, Clone)]
struct Reading {
    path: PathBuf,
    /// A file that fails to parse is re-read after this long before it counts as rejected.
    settle: Duration,
    limits: ReadLimits,
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
    /// The new table, and who wrote the file (a hand edit, or `routes push`).
    Compiled(u64, Box<RoutingTable>, Changes, Box<Attribution>),
    Rejected(u64, RoutesError),
    Unreadable(RoutesError),
}

// === impl FileSource ===

impl FileSource {
    /// Reads and validates the file; a gateway does not start on an invalid one.
    pub(super) fn open(path: &Path, reload: &ReloadSettings) -> Result<(Self, ValidRoutes), StoreError> {
        persist::remove_leftovers(path);
        let reading = Reading { path: path.to_owned(), settle: reload.debounce, limits: reload.limits };
        let bytes = routes::read_within(path, &reading.limits)?;
        let applied_hash = hash(&bytes);
        let name = routes::display_name(path);
        let valid =
            ValidRoutes::parse_within(&routes::text_within(bytes, &name, &reading.limits)?, &name, &reading.limits)?;
        let known = Known { applied_hash, rejected_hash: None };
        let unreadable_logged = std::sync::Mutex::new((None, 0));
        Ok((FileSource { reading, known: std::sync::Mutex::new(known), unreadable_logged }, valid))
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
    let (reading, previous, known, policy) =
        (source.reading.clone(), store.current(), source.known(), store.policy.clone());
    let work = store.background.run(move || load(&reading, &previous, known, force, &policy)).await;
    let loaded = work.unwrap_or_else(|lost| {
        Loaded::Unreadable(RoutesError::single(&source.reading.path.display().to_string(), None, "", lost.to_string()))
    });
    match loaded {
        Loaded::Unchanged => {
            store.metrics.reload_unchanged();
            ReloadOutcome::Unchanged
        }
        Loaded::Compiled(content_hash, table, changes, by) => {
            source.set_known(Known { applied_hash: content_hash, rejected_hash: None });
            let replica = store.replica_id().to_owned();
            let before = store.current();
            let after = Arc::clone(table.source());
            let generation = store.publish(*table, Stamp::Next);
            tracing::info!(generation, changes = %changes, actor = %by.actor, "routes reloaded from the file");
            let built = store
                .background
                .run(move || by.record(&replica, Outcome::Applied, before.source().spec(), after.spec()));
            if let Ok(mut record) = built.await {
                record.revision = Some(generation);
                store.keep(record).await;
            }
            ReloadOutcome::Applied { generation }
        }
        Loaded::Rejected(content_hash, error) => {
            store.reject(store.current().revision(), &error);
            source.set_known(Known { rejected_hash: Some(content_hash), ..known });
            let record = Attribution::file().refused(store.replica_id(), Outcome::Rejected, error.to_string());
            store.keep(record).await;
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
    who: &Attribution,
    edit: Arc<Edit<T, E>>,
) -> Result<T, ApplyError<E>> {
    let reading = Reading { settle: Duration::ZERO, ..source.reading.clone() };
    let (previous, known, policy) = (store.current(), source.known(), store.policy.clone());
    let (who, replica) = (who.clone(), store.replica_id().to_owned());
    let work = store
        .background
        .run(move || {
            let adopted = match load(&reading, &previous, known, false, &policy) {
                Loaded::Compiled(_, table, _, by) => {
                    let record = by.record(&replica, Outcome::Applied, previous.source().spec(), table.source().spec());
                    Some((table, record))
                }
                Loaded::Unchanged | Loaded::Rejected(..) | Loaded::Unreadable(_) => None,
            };
            let base: &RoutingTable = adopted.as_ref().map_or(&previous, |(table, _)| table);
            let (value, valid) = run_edit(base.source().spec(), &*edit)?;
            let changes = Changes::between(base.source().spec(), valid.spec());
            let outcome = if changes.is_empty() { Outcome::Unchanged } else { Outcome::Applied };
            let record = who.record(&replica, outcome, base.source().spec(), valid.spec());
            let text = render(valid.spec()).map_err(ApplyError::Internal)?;
            let table = compile_over(valid, base, &policy).map_err(|e| ApplyError::Internal(e.to_string()))?;
            persist::write_atomically(&reading.path, text.as_bytes()).map_err(ApplyError::Write)?;
            Ok((value, hash(text.as_bytes()), table, changes, record, adopted.map(|(_, record)| record)))
        })
        .await;
    let (value, content_hash, table, changes, mut record, hand_edit) =
        work.map_err(|lost| ApplyError::Internal(lost.to_string()))??;
    source.set_known(Known { applied_hash: content_hash, rejected_hash: None });
    let generation = store.publish(table, Stamp::Next);
    tracing::info!(generation, changes = %changes, "routes changed through the management API");
    if let Some(mut hand_edit) = hand_edit {
        // The hand edit was live for this edit only: it shares the edit's generation.
        hand_edit.revision = Some(generation);
        store.keep(hand_edit).await;
    }
    record.revision = Some(generation);
    store.keep(record).await;
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
    let dirs = vec![crate::reload::parent_dir(&source.reading.path)];
    let task = crate::reload::spawn_watch(dirs, settings, shutdown, move |force| {
        let store = Arc::clone(&store);
        async move {
            let outcome = store.reload(force).await;
            if let super::Source::File(source) = &store.source {
                log_outcome(source, &outcome, force);
            }
        }
    })?;
    Ok(task)
}

fn log_outcome(source: &FileSource, outcome: &ReloadOutcome, forced: bool) {
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
            let mut logged = source.unreadable_logged.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            match logged.0 {
                Some(at) if at.elapsed() < UNREADABLE_LOG_INTERVAL => logged.1 += 1,
                _ => {
                    let repeats = logged.1;
                    tracing::warn!(%error, repeats, "routes file cannot be read; the previous routes stay in force");
                    *logged = (Some(std::time::Instant::now()), 0);
                }
            }
        }
    }
}

/// The first line `graygate routes push` writes: who pushed, and a hash of the rest of the
/// file, so that a later hand edit (which changes the rest) is not taken for the push.
const PUSH_MARK: &str = "# graygate routes push by ";

/// The text `routes push` writes: the pushed file under a line naming its pusher.
pub(super) fn with_push_mark(text: &str, actor: &str) -> String {
    format!("{PUSH_MARK}{actor} xxh3={:016x}\n{text}", hash(text.as_bytes()))
}

/// Who pushed the file, if it is exactly what `routes push` wrote.
fn pushed_by(path: &Path, content_hash: u64, limits: &ReadLimits) -> Option<Attribution> {
    let text = String::from_utf8(routes::read_within(path, limits).ok()?).ok()?;
    // The file read now must still be the content that was parsed.
    if hash(text.as_bytes()) != content_hash {
        return None;
    }
    let (mark, rest) = text.split_once('\n')?;
    let (actor, digest) = mark.strip_prefix(PUSH_MARK)?.rsplit_once(" xxh3=")?;
    (format!("{:016x}", hash(rest.as_bytes())) == digest).then(|| Attribution::new(actor, "routes push"))
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
fn load(reading: &Reading, previous: &RoutingTable, known: Known, force: bool, policy: &UpstreamPolicy) -> Loaded {
    let (path, limits) = (reading.path.as_path(), &reading.limits);
    let name = routes::display_name(path);
    let seen = |content: u64| content == known.applied_hash || (!force && Some(content) == known.rejected_hash);
    let mut attempt = 0;
    let (content_hash, valid) = loop {
        // Events for other files in the directory are common (a log beside the routes):
        // deciding "unchanged" streams the file through the hash instead of holding it.
        match hash_file(path, limits) {
            Ok(content) if seen(content) => return Loaded::Unchanged,
            Ok(_) => {}
            Err(error) => return Loaded::Unreadable(error),
        }
        let stamp = Stamped::of(path);
        let bytes = match routes::read_within(path, limits) {
            Ok(bytes) => bytes,
            Err(error) => return Loaded::Unreadable(error),
        };
        let content_hash = hash(&bytes);
        if seen(content_hash) {
            return Loaded::Unchanged;
        }
        let parsed = match routes::text_within(bytes, &name, limits) {
            Ok(text) => {
                let (name, limits) = (name.clone(), *limits);
                match parse_unless_superseded(path, stamp, text, move |text| {
                    ValidRoutes::parse_within(&text, &name, &limits)
                }) {
                    Some(parsed) => parsed,
                    // The file changed while it was being parsed: the newer content wins.
                    None => continue,
                }
            }
            Err(error) => Err(error),
        };
        match parsed {
            Ok(valid) => break (content_hash, valid),
            Err(error) => {
                // A writer between truncate and write leaves a short file for a moment:
                // only content that stays the same across a settle period is rejected.
                attempt += 1;
                std::thread::sleep(reading.settle);
                let settled = hash_file(path, limits).map(|now| now == content_hash).unwrap_or(true);
                if settled || attempt >= SETTLE_ATTEMPTS {
                    return Loaded::Rejected(content_hash, error);
                }
            }
        }
    };
    let changes = Changes::between(previous.source().spec(), valid.spec());
    let by = pushed_by(path, content_hash, limits).unwrap_or_else(Attribution::file);
    match compile_over(valid, previous, policy) {
        Ok(table) => Loaded::Compiled(content_hash, Box::new(table), changes, Box::new(by)),
        Err(error) => Loaded::Rejected(content_hash, RoutesError::single(&name, None, "", error.to_string())),
    }
}

/// Below this size a parse is milliseconds: it runs in place, with nothing to supersede.
const PARSE_ASIDE_BYTES: usize = 1024 * 1024;

/// How often a long parse checks whether the file changed under it.
const SUPERSEDE_CHECK: Duration = Duration::from_millis(50);

/// Abandoned parses still running; past this many a new one is waited for, not abandoned,
/// so a writer replacing a huge file in a loop cannot pile up threads.
const MAX_ABANDONED: usize = 2;

static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// Parses `text` (read from `path` when it looked like `stamp`); a large one on a thread of
/// its own while the file is watched. `None`: the file changed before the parse finished, so
/// the caller reads the newer content (the abandoned parse ends on its own, unheard).
fn parse_unless_superseded<T: Send + 'static>(
    path: &Path,
    stamp: Option<Stamped>,
    text: String,
    parse: impl FnOnce(String) -> T + Send + 'static,
) -> Option<T> {
    if text.len() < PARSE_ASIDE_BYTES || stamp.is_none() {
        return Some(parse(text));
    }
    let (done, result) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new().name("graygate-parse".into()).spawn(move || {
        let _ = done.send(parse(text));
    });
    if spawned.is_err() {
        // No thread to spare: nothing can supersede this parse, so read again later.
        return None;
    }
    loop {
        match result.recv_timeout(SUPERSEDE_CHECK) {
            Ok(parsed) => return Some(parsed),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Stamped::of(path) != stamp && ABANDONED.load(Ordering::Relaxed) < MAX_ABANDONED {
            ABANDONED.fetch_add(1, Ordering::Relaxed);
            // The count drops when the abandoned parse ends and finds nobody listening.
            std::thread::spawn(move || {
                let _ = result.recv();
                ABANDONED.fetch_sub(1, Ordering::Relaxed);
            });
            tracing::info!(path = %path.display(), "routes file changed while it was being parsed; reading the newer one");
            return None;
        }
    }
}

/// What the file system says about the file, cheaply: a changed stamp means new content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamped {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl Stamped {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamped { len: meta.len(), modified: meta.modified().ok(), inode: meta.ino() })
    }
}

fn hash(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// The same hash as [`hash`] of the file's content (as far as it is read), in chunks.
fn hash_file(path: &Path, limits: &ReadLimits) -> Result<u64, RoutesError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|error| RoutesError::unreadable(path, &error))?;
    let mut file = file.take(routes::cap(limits));
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
        let limits = ReadLimits::default();
        assert_eq!(hash_file(&path, &limits).ok(), Some(hash(content.as_bytes())));
        assert!(hash_file(&dir.path().join("missing.json"), &limits).is_err());
    }

    #[test]
    fn a_long_parse_is_abandoned_when_the_file_changes_under_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("routes.yaml");
        std::fs::write(&path, "old").unwrap_or_else(|e| unreachable!("{e}"));
        let big = "x".repeat(PARSE_ASIDE_BYTES);
        let (release, hold) = mpsc::channel::<()>();
        // The stamp is taken before the writer starts: a stamp of the newer file would leave
        // nothing to supersede the parse.
        let before = Stamped::of(&path);
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || std::fs::write(&path, "newer content").unwrap_or_else(|e| unreachable!("{e}")))
        };
        // A parse that only the change can end; should it fail to, the bounded wait turns a
        // hang into a failed assertion.
        let parsed = parse_unless_superseded(&path, before, big.clone(), move |_| {
            hold.recv_timeout(Duration::from_secs(30)).is_ok()
        });
        assert_eq!(parsed, None, "the newer file supersedes the parse");
        let _ = writer.join();
        drop(release);
        let stamp = Stamped::of(&path);
        assert_eq!(parse_unless_superseded(&path, stamp, big, |text| text.len()), Some(PARSE_ASIDE_BYTES));
        assert_eq!(parse_unless_superseded(&path, stamp, "small".into(), |text| text.len()), Some(5));
    }
}
