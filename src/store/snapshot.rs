//! The etcd source's snapshot: the last applied routing state and its revision, rewritten
//! atomically after every change, so a replica that starts while etcd is down serves what
//! the fleet served (and catches up once etcd answers).
//!
//! ```json
//! {"graygate_snapshot": 1, "prefix": "/graygate", "revision": 42, "saved_at": "…", "routes": {…}}
//! ```
//! `routes` is a routes file: `jq .routes routes.snapshot.json > routes.json` gives one that
//! `graygate check` reads and `graygate routes push` can restore a fleet from.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::persist;
use crate::routes::{RoutesFile, ValidRoutes};

const FORMAT: u32 = 1;

#[derive(Serialize)]
struct SnapshotOut<'a> {
    graygate_snapshot: u32,
    prefix: &'a str,
    revision: u64,
    saved_at: String,
    routes: &'a RoutesFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotIn {
    graygate_snapshot: u32,
    prefix: String,
    revision: u64,
    #[serde(rename = "saved_at")]
    _saved_at: String,
    routes: RoutesFile,
}

pub fn save(path: &Path, prefix: &str, revision: u64, routes: &RoutesFile) -> std::io::Result<()> {
    let snapshot =
        SnapshotOut { graygate_snapshot: FORMAT, prefix, revision, saved_at: crate::admin::now_text(), routes };
    let bytes = serde_json::to_vec(&snapshot).map_err(std::io::Error::other)?;
    persist::write_atomically(path, &bytes)
}

/// The snapshot's state and revision; `Ok(None)` when there is no snapshot file.
pub fn load(path: &Path, prefix: &str) -> Result<Option<(ValidRoutes, u64)>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: cannot read: {error}", path.display())),
    };
    // Written by graygate, but a file on disk all the same: bounded like any routing state.
    crate::routes::limits::json_depth(&bytes, &path.display().to_string()).map_err(|e| e.to_string())?;
    let snapshot: SnapshotIn =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not a graygate snapshot: {e}", path.display()))?;
    if snapshot.graygate_snapshot != FORMAT {
        return Err(format!("{}: snapshot format {} is not {FORMAT}", path.display(), snapshot.graygate_snapshot));
    }
    if snapshot.prefix != prefix {
        return Err(format!(
            "{}: the snapshot is of prefix {}, not {prefix}: not used",
            path.display(),
            snapshot.prefix
        ));
    }
    let valid = ValidRoutes::new(snapshot.routes).map_err(|issues| {
        let first = issues.first().map(|i| format!("{}: {}", i.path, i.message)).unwrap_or_default();
        format!("{}: the snapshot does not validate: {first}", path.display())
    })?;
    Ok(Some((valid, snapshot.revision)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_snapshot_loads_for_its_prefix_only() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("routes.snapshot.json");
        assert_eq!(load(&path, "/gg").ok(), Some(None), "no file is no snapshot");
        let routes: RoutesFile =
            serde_json::from_str(r#"{"project_id":"p","functions":[{"name":"a","upstream":"http://x:1"}]}"#)
                .unwrap_or_else(|e| unreachable!("{e}"));
        save(&path, "/gg", 17, &routes).unwrap_or_else(|e| unreachable!("{e}"));
        let (valid, revision) = load(&path, "/gg").ok().flatten().unwrap_or_else(|| unreachable!("loads"));
        assert_eq!((valid.spec(), revision), (&routes, 17));
        assert!(load(&path, "/other").unwrap_err().contains("not used"));
        std::fs::write(&path, b"{\"graygate_snapshot\": 1").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(load(&path, "/gg").is_err());
    }
}
