//! The access log: one line per request, saying why it got its version.
//!
//! The request path only builds an [`Entry`] (reference-counted names, no formatting) and
//! offers the formatted line to a bounded queue; a thread of its own writes the queue to
//! stdout or a file. A full queue (a slow disk, a blocked pipe) drops the line and counts
//! it in `graygate_access_log_dropped_total`: a request never waits for its log line.
//! `SIGUSR1` reopens the file, as nginx does for logrotate.

mod format;
mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, Uri};
use prometheus::IntCounter;

use crate::health::UpstreamHealth;
use crate::routing::Decision;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the fields of [`Entry`]).
    Json,
    /// Apache's combined format, then graygate's fields as `key=value`.
    Combined,
}

/// `access_log:` in graygate.yaml, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    pub sink: Sink,
    pub format: Format,
    /// The share of requests logged, 0.0..=1.0.
    pub sample: f64,
    /// Lines the queue holds before new ones are dropped.
    pub buffer: usize,
}

/// The log's handle on the request path: cheap to clone, never blocks.
#[derive(Clone)]
pub struct AccessLog {
    queue: SyncSender<Vec<u8>>,
    format: Format,
    sample: f64,
    dropped: IntCounter,
    reopen: Arc<writer::Reopen>,
}

/// What one request came to, collected as it goes and formatted once it ends.
pub struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) started: Instant,
    pub(crate) request_id: HeaderValue,
    pub(crate) client: SocketAddr,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) protocol: http::Version,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) route: Option<RouteTaken>,
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) upstream_duration: Option<Duration>,
    pub(crate) retries: u8,
    pub(crate) error_code: Option<&'static str>,
}

/// The route a request took and why.
pub struct RouteTaken {
    pub function: Arc<str>,
    pub trigger: Arc<str>,
    pub alias: Option<Arc<str>>,
    pub version: Arc<str>,
    pub decision: Decision,
    /// The additional version the alias chose, whose upstream was ejected.
    pub fallback_from: Option<Arc<str>>,
    pub upstream: Arc<UpstreamHealth>,
}

// === impl AccessLog ===

impl AccessLog {
    /// Starts the writer thread, which ends (having written every queued line) once the
    /// last handle is dropped. A file that cannot be opened is retried on every reopen (its
    /// lines dropped meanwhile), so a log never stops the gateway from starting.
    pub fn start(settings: &AccessLogSettings, dropped: IntCounter) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (queue, lines) = std::sync::mpsc::sync_channel(settings.buffer.max(1));
        let reopen = Arc::new(writer::Reopen::default());
        let writer = writer::spawn(settings.sink.clone(), lines, Arc::clone(&reopen))?;
        Ok((AccessLog { queue, format: settings.format, sample: settings.sample, dropped, reopen }, writer))
    }

    /// Whether this request is logged (`sample` of them, at random).
    #[inline]
    pub fn sampled(&self) -> bool {
        self.sample >= 1.0 || (self.sample > 0.0 && fastrand::f64() < self.sample)
    }

    /// Formats the entry and offers it to the writer; a full queue drops it (and counts).
    pub fn submit(&self, entry: &Entry) {
        let line = match self.format {
            Format::Json => format::json(entry),
            Format::Combined => format::combined(entry),
        };
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Asks the writer to close and reopen its file (after logrotate renamed it).
    pub fn reopen(&self) {
        self.reopen.request();
    }
}

// === impl Entry ===

impl Entry {
    /// The request as it arrived; the rest is filled in as it is answered.
    pub fn begin<B>(
        request: &http::Request<B>,
        client: SocketAddr,
        request_id: &HeaderValue,
        started: Instant,
    ) -> Self {
        let headers = request.headers();
        Entry {
            time: SystemTime::now(),
            started,
            request_id: request_id.clone(),
            client,
            method: request.method().clone(),
            uri: request.uri().clone(),
            protocol: request.version(),
            referer: headers.get(http::header::REFERER).cloned(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            route: None,
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            upstream_duration: None,
            retries: 0,
            error_code: None,
        }
    }

    /// The decision as the log spells it, and its detail.
    pub fn decision(&self) -> (Option<&'static str>, Option<String>) {
        let Some(route) = &self.route else { return (None, None) };
        let (name, detail) = match route.decision {
            Decision::Fixed => ("fixed", None),
            Decision::Rule(_) => ("rule", None),
            Decision::Sticky(bucket) => ("sticky", Some(format!("bucket {bucket}"))),
            Decision::Rotation(position) => ("weight", Some(format!("slot {position}"))),
        };
        match &route.fallback_from {
            Some(ejected) => {
                let chosen = match detail {
                    Some(detail) => format!("{name} {detail}"),
                    None => name.to_owned(),
                };
                (Some("fallback"), Some(format!("{ejected} ejected ({chosen})")))
            }
            None => (Some(name), detail),
        }
    }
}

#[cfg(test)]
mod tests;
