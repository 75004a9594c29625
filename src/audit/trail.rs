//! This replica's audit file (JSON lines, appended and synced before a change is answered)
//! and, for a routes file, the trail kept in memory for `GET /graygate/v1/audit`, read back
//! from the file's end at start.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Filter, Record};

/// How much of an existing audit file is read back at start.
const READ_BACK_BYTES: u64 = 4 * 1024 * 1024;

/// `audit_log:` in graygate.yaml, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// The JSON lines file; `None`: the trail is kept (in memory, or in etcd) but not written.
    pub path: Option<PathBuf>,
    /// Records kept for queries (and in etcd), the oldest dropped first.
    pub retain: usize,
}

pub struct Trail {
    path: Option<PathBuf>,
    retain: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Newest last.
    kept: VecDeque<Record>,
    file: Option<File>,
}

// === impl AuditSettings ===

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings { path: None, retain: 1000 }
    }
}

// === impl Trail ===

impl Trail {
    /// Opens the file for appending and reads back its last records. A file that cannot
    /// be opened is an error: an operator who asked for an audit trail must get one.
    pub fn open(settings: &AuditSettings) -> std::io::Result<Trail> {
        let mut kept = VecDeque::new();
        let file = match &settings.path {
            Some(path) => {
                kept = read_back(path, settings.retain)?;
                Some(open_append(path)?)
            }
            None => None,
        };
        Ok(Trail {
            path: settings.path.clone(),
            retain: settings.retain.max(1),
            inner: Mutex::new(Inner { kept, file }),
        })
    }

    pub fn retain(&self) -> usize {
        self.retain
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `record` to the file and syncs it (a blocking call: the store makes it on its
    /// background thread). A failed write is logged: the change itself is already committed.
    pub fn write(&self, record: &Record) {
        let mut inner = self.lock();
        let Some(file) = inner.file.as_mut() else { return };
        let mut line = match serde_json::to_vec(record) {
            Ok(line) => line,
            Err(error) => {
                tracing::error!(%error, "cannot serialise an audit record");
                return;
            }
        };
        line.push(b'\n');
        if let Err(error) = file.write_all(&line).and_then(|()| file.sync_data()) {
            tracing::error!(%error, id = %record.id, "cannot write the audit log; the record is only in memory");
        }
    }

    /// Keeps `record` for queries (routes file mode; a fleet's trail is kept in etcd).
    pub fn remember(&self, record: Record) {
        let mut inner = self.lock();
        inner.kept.push_back(record);
        while inner.kept.len() > self.retain {
            inner.kept.pop_front();
        }
    }

    /// The kept records that match, newest first.
    pub fn query(&self, filter: &Filter) -> Vec<Record> {
        let inner = self.lock();
        inner.kept.iter().rev().filter(|r| r.matches(filter)).take(filter.limit).cloned().collect()
    }

    /// Closes and reopens the file (SIGUSR1, after logrotate renamed it).
    pub fn reopen(&self) {
        let Some(path) = &self.path else { return };
        let reopened = open_append(path);
        let mut inner = self.lock();
        match reopened {
            Ok(file) => inner.file = Some(file),
            Err(error) => tracing::error!(%error, path = %path.display(), "cannot reopen the audit log"),
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The last `retain` records of the file (its last few MiB: bounded, whatever its size).
fn read_back(path: &Path, retain: usize) -> std::io::Result<VecDeque<Record>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(VecDeque::new()),
        Err(error) => return Err(error),
    };
    let length = file.metadata()?.len();
    let start = length.saturating_sub(READ_BACK_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(READ_BACK_BYTES).read_to_end(&mut tail)?;
    let mut lines = tail.split(|b| *b == b'\n');
    if start > 0 {
        // Begun mid-line.
        lines.next();
    }
    let mut kept: VecDeque<Record> = lines.filter_map(|line| serde_json::from_slice(line).ok()).collect();
    while kept.len() > retain {
        kept.pop_front();
    }
    Ok(kept)
}
