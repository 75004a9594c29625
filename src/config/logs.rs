//! The `access_log` and `audit_log` blocks of graygate.yaml: their raw serde forms and
//! their validated settings.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::access_log::{AccessLogSettings, Format, Sink};
use crate::audit::AuditSettings;

/// Bytes of formatted lines held for the writer before new ones are dropped (about 10,000
/// JSON lines; at 100,000 requests a second, a tenth of a second of them).
const DEFAULT_BUFFER: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessLogFile {
    /// `stdout`, or a file (relative to the directory of graygate.yaml).
    path: String,
    #[serde(default)]
    format: FormatFile,
    #[serde(default = "default_sample")]
    sample: f64,
    #[serde(default = "default_buffer")]
    buffer_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FormatFile {
    #[default]
    Json,
    Combined,
}

fn default_sample() -> f64 {
    1.0
}

fn default_buffer() -> usize {
    DEFAULT_BUFFER
}

pub(super) fn access_log_settings(
    raw: &AccessLogFile,
    file: &str,
    base: &Path,
) -> Result<AccessLogSettings, ConfigError> {
    let invalid =
        |field, message: &str| ConfigError::Invalid { file: file.to_owned(), field, message: message.to_owned() };
    if !(0.0..=1.0).contains(&raw.sample) {
        return Err(invalid("access_log.sample", "must be between 0.0 and 1.0"));
    }
    if !(4096..=1 << 30).contains(&raw.buffer_bytes) {
        return Err(invalid("access_log.buffer_bytes", "must be between 4096 and 1073741824"));
    }
    let sink = match raw.path.as_str() {
        "" => return Err(invalid("access_log.path", "must be stdout or a file")),
        "stdout" | "-" => Sink::Stdout,
        path => {
            let path = PathBuf::from(path);
            Sink::File(if path.is_absolute() { path } else { base.join(path) })
        }
    };
    let format = match raw.format {
        FormatFile::Json => Format::Json,
        FormatFile::Combined => Format::Combined,
    };
    Ok(AccessLogSettings { sink, format, sample: raw.sample, buffer_bytes: raw.buffer_bytes })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditLogFile {
    /// A JSON lines file (relative to the directory of graygate.yaml); without one the
    /// trail is still kept (in memory, or in etcd) and queryable.
    #[serde(default)]
    path: Option<String>,
    /// Records kept for `GET /graygate/v1/audit` (and in etcd), the oldest dropped first.
    #[serde(default = "default_retain")]
    retain: usize,
}

fn default_retain() -> usize {
    AuditSettings::default().retain
}

pub(super) fn audit_log_settings(
    raw: Option<&AuditLogFile>,
    file: &str,
    base: &Path,
) -> Result<AuditSettings, ConfigError> {
    let Some(raw) = raw else { return Ok(AuditSettings::default()) };
    let invalid =
        |field, message: &str| ConfigError::Invalid { file: file.to_owned(), field, message: message.to_owned() };
    if !(1..=100_000).contains(&raw.retain) {
        return Err(invalid("audit_log.retain", "must be between 1 and 100000"));
    }
    let path = match raw.path.as_deref() {
        None => None,
        Some("") => return Err(invalid("audit_log.path", "must be a file")),
        Some(path) => {
            let path = PathBuf::from(path);
            Some(if path.is_absolute() { path } else { base.join(path) })
        }
    };
    Ok(AuditSettings { path, retain: raw.retain })
}
