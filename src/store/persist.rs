//! Durable replacement of the routes file: temp file in the same directory, fsync, rename,
//! fsync of the directory. A reader sees the old file or the new one, never a mix, and
//! after a crash the file is one of the two.

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
    fn a_missing_directory_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.path().join("gone").join("routes.yaml");
        assert!(write_atomically(&path, b"x").is_err());
    }
}
