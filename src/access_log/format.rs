//! Access log lines: JSON (one object per line, every field always present) and Apache's
//! combined format followed by graygate's fields.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use super::Entry;

/// One JSON line; field order is the order of this struct.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    request_id: &'a str,
    client: String,
    method: &'a str,
    path: &'a str,
    protocol: &'static str,
    status: u16,
    bytes_in: u64,
    bytes_out: u64,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    function: Option<&'a str>,
    trigger: Option<&'a str>,
    alias: Option<&'a str>,
    version: Option<&'a str>,
    decision: Option<&'static str>,
    decision_detail: Option<String>,
    upstream: Option<&'a str>,
    retries: u8,
    error_code: Option<&'static str>,
}

pub fn json(entry: &Entry) -> Vec<u8> {
    let route = entry.route.as_ref();
    let (decision, decision_detail) = entry.decision();
    let line = Line {
        time: OffsetDateTime::from(entry.time).format(&Rfc3339).unwrap_or_default(),
        request_id: entry.request_id.to_str().unwrap_or(""),
        client: entry.client.to_string(),
        method: entry.method.as_str(),
        path: entry.uri.path(),
        protocol: protocol(entry.protocol),
        status: entry.status,
        bytes_in: entry.bytes_in,
        bytes_out: entry.bytes_out,
        duration_ms: millis(entry.started.elapsed()),
        upstream_ms: entry.upstream_duration.map(millis),
        function: route.map(|r| &*r.function),
        trigger: route.map(|r| &*r.trigger),
        alias: route.and_then(|r| r.alias.as_deref()),
        version: route.map(|r| &*r.version),
        decision,
        decision_detail,
        upstream: route.map(|r| r.upstream.authority()),
        retries: entry.retries,
        error_code: entry.error_code,
    };
    let mut out = Vec::with_capacity(512);
    // Serializing borrowed strings and numbers cannot fail.
    let _ = serde_json::to_writer(&mut out, &line);
    out.push(b'\n');
    out
}

/// `client - - [time] "METHOD path PROTO" status bytes "referer" "agent"`, then
/// `rid= fn= trigger= alias= version= decision= detail= upstream= rt= urt= retries= code=`.
pub fn combined(entry: &Entry) -> Vec<u8> {
    use std::io::Write;
    let route = entry.route.as_ref();
    let (decision, detail) = entry.decision();
    let time = OffsetDateTime::from(entry.time)
        .format(format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"))
        .unwrap_or_default();
    let header = |value: &Option<http::HeaderValue>| {
        value.as_ref().and_then(|v| v.to_str().ok()).map_or_else(|| "-".to_owned(), quote_safe)
    };
    let dash = |value: Option<&str>| value.map_or_else(|| "-".to_owned(), quote_safe);
    let mut out = Vec::with_capacity(384);
    let _ = write!(
        out,
        "{} - - [{time}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
        entry.client.ip(),
        entry.method,
        quote_safe(entry.uri.path()),
        protocol(entry.protocol),
        entry.status,
        entry.bytes_out,
        header(&entry.referer),
        header(&entry.user_agent),
    );
    let _ = writeln!(
        out,
        " rid={} fn={} trigger={} alias={} version={} decision={} detail=\"{}\" upstream={} rt={:.3} urt={} retries={} code={}",
        dash(entry.request_id.to_str().ok()),
        dash(route.map(|r| &*r.function)),
        dash(route.map(|r| &*r.trigger)),
        dash(route.and_then(|r| r.alias.as_deref())),
        dash(route.map(|r| &*r.version)),
        decision.unwrap_or("-"),
        detail.as_deref().map_or_else(|| "-".to_owned(), quote_safe),
        dash(route.map(|r| r.upstream.authority())),
        entry.started.elapsed().as_secs_f64(),
        entry.upstream_duration.map_or_else(|| "-".to_owned(), |d| format!("{:.3}", d.as_secs_f64())),
        entry.retries,
        entry.error_code.unwrap_or("-"),
    );
    out
}

fn protocol(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn millis(duration: Duration) -> f64 {
    // Microsecond precision: a float of milliseconds reads well and sorts numerically.
    (duration.as_micros() as f64) / 1000.0
}

/// A value as it may stand between quotes in a combined line: `"`, `\` and control bytes
/// escaped as nginx does (`\xHH`), so a client cannot forge a field or a line.
fn quote_safe(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'"' | b'\\' | 0..=0x1f | 0x7f.. => out.push_str(&format!("\\x{byte:02X}")),
            b => out.push(char::from(b)),
        }
    }
    out
}
