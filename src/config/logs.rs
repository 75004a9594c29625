//! The `access_log` block of graygate.yaml: its raw serde form and its validated settings.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::access_log::{AccessLogSettings, Format, Sink};

/// Lines queued for the writer before new ones are dropped (about 4 MiB of JSON lines).
const DEFAULT_BUFFER: usize = 8192;

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
    buffer: usize,
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
    if raw.buffer == 0 {
        return Err(invalid("access_log.buffer", "must be greater than 0"));
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
    Ok(AccessLogSettings { sink, format, sample: raw.sample, buffer: raw.buffer })
}
