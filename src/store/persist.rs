//! Durable replacement of a file (the routes file, the etcd snapshot): temp file in the same
//! directory, fsync, rename, fsync of the directory. A reader sees the old file or the new
//! one, never a mix, and after a crash the file is one of the two — plus, perhaps, the temp
//! file of the interrupted write, which [`remove_leftovers`] clears at the next start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces the file at `path` with `contents`. A symlinked file (a ConfigMap mount, a file
/// kept elsewhere) is written at its target, so the link stays a link.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::canonicalize(path)?,
        _ => path.to_owned(),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let permissions = fs::metadata(&target).ok().map(|meta| meta.permissions());
    let written = write_temp(&temp, contents, permissions).and_then(|()| fs::rename(&temp, &target));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    // The new file is in place; a failed directory sync only weakens crash durability,
    // so memory must follow the file now rather than report a failure.
    if let Err(error) = File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(%error, dir = %dir.display(), "cannot fsync the routes directory");
    }
    Ok(())
}

/// Removes the temp files an interrupted [`write_atomically`] of `path` left beside it:
/// `.{name}.{pid}.{n}.tmp` of a process that is no longer running. Nothing else is touched.
pub fn remove_leftovers(path: &Path) {
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let Some(name) = target.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let Ok(entries) = fs::read_dir(&dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = leftover_pid(&file_name, &prefix) else {
            continue;
        };
        // A temp file of a process still running is its write in progress.
        if pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => tracing::info!(file = %entry.path().display(), "removed the leftover of an interrupted write"),
            Err(error) => tracing::warn!(file = %entry.path().display(), %error, "cannot remove a leftover temp file"),
        }
    }
}

/// The pid in `{prefix}{pid}.{n}.tmp`, if `file_name` has exactly that shape.
fn leftover_pid(file_name: &str, prefix: &str) -> Option<u32> {
    let middle = file_name.strip_prefix(prefix)?.strip_suffix(".tmp")?;
    let (pid, counter) = middle.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(counter)).then(|| pid.parse().ok()).flatten()
}

fn write_temp(temp: &Path, contents: &[u8], permissions: Option<fs::Permissions>) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(temp)?;
    if let Some(permissions) = permissions {
        file.set_permissions(permissions)?;
    }
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("routes.yaml");
        fs::write(&path, "old").unwrap_or_else(|e| unreachable!("{e}"));
        write_atomically(&path, b"new").unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(fs::read_to_string(&path).unwrap_or_default(), "new");
        assert_eq!(fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0), 1);
    }

    #[test]
    fn a_symlinked_file_is_written_through_the_link() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let real = dir.path().join("real.yaml");
        let link = dir.path().join("routes.yaml");
        fs::write(&real, "old").unwrap_or_else(|e| unreachable!("{e}"));
        std::os::unix::fs::symlink(&real, &link).unwrap_or_else(|e| unreachable!("{e}"));
        write_atomically(&link, b"new").unwrap_or_else(|e| unreachable!("{e}"));
        assert!(fs::symlink_metadata(&link).map(|m| m.file_type().is_symlink()).unwrap_or(false));
        assert_eq!(fs::read_to_string(&real).unwrap_or_default(), "new");
    }

    #[test]
    fn leftovers_of_interrupted_writes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("routes.yaml");
        fs::write(&path, "routes").unwrap_or_else(|e| unreachable!("{e}"));
        // pid 2^22 + 1 is above Linux's pid_max: no such process is running.
        let dead = ".routes.yaml.4194305.3.tmp";
        let kept =
            [".routes.yaml.swp", "routes.yaml.1.2.tmp", ".routes.yaml.x.2.tmp", ".other.yaml.4194305.1.tmp", "notes"];
        for name in std::iter::once(dead).chain(kept) {
            fs::write(dir.path().join(name), "x").unwrap_or_else(|e| unreachable!("{e}"));
        }
        remove_leftovers(&path);
        assert!(!dir.path().join(dead).exists());
        for name in kept {
            assert!(dir.path().join(name).exists(), "{name} was removed");
        }
        assert_eq!(fs::read_to_string(&path).unwrap_or_default(), "routes");
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("gone").join("routes.yaml");
        assert!(write_atomically(&path, b"x").is_err());
    }
}
