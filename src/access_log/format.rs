//! Access log lines: JSON (one object per line, every field always present, in a fixed
//! order) and Apache's combined format followed by graygate's fields.
//!
//! Written by hand, on the request's thread, into a reused per-thread buffer: no allocation,
//! no `core::fmt` for numbers, strings copied as they are unless they need escaping, and
//! the time's text made once per second. Measured, `core::fmt` and a general JSON escaper
//! were half of what the log cost a request.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::macros::format_description;

use super::{Entry, Format};

/// A thread's formatting state: the line being made, a scratch for the decision's detail,
/// and the current second's text.
#[derive(Default)]
pub struct Scratch {
    line: Vec<u8>,
    detail: Vec<u8>,
    clock: Clock,
}

/// The current second's text in both formats, remade when the second changes.
#[derive(Default)]
pub struct Clock {
    second: Option<u64>,
    /// `2026-12-05T15:48:41`
    iso: Vec<u8>,
    /// `05/Dec/2026:15:48:41 +0000`
    common: Vec<u8>,
}

// === impl Scratch ===

impl Scratch {
    /// `entry`'s line, ending in a newline.
    pub fn line(&mut self, entry: &Entry, format: Format) -> &[u8] {
        self.line.clear();
        self.detail.clear();
        let name = entry.decision_into(&mut self.detail);
        match format {
            Format::Json => json(entry, name, &self.detail, &mut self.clock, &mut self.line),
            Format::Combined => combined(entry, name, &self.detail, &mut self.clock, &mut self.line),
        }
        &self.line
    }
}

// === impl Clock ===

impl Clock {
    /// Refreshes the second's texts for `time`; the microseconds within the second.
    fn at(&mut self, time: SystemTime) -> u32 {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let second = since.as_secs();
        if self.second != Some(second) {
            let at = i64::try_from(second).ok().and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
            let at = at.unwrap_or(OffsetDateTime::UNIX_EPOCH);
            let iso = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
            let common = format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
            self.iso = at.format(iso).unwrap_or_default().into_bytes();
            self.common = at.format(common).unwrap_or_default().into_bytes();
            self.second = Some(second);
        }
        since.subsec_micros()
    }
}

/// `{"time", "request_id", "client", "method", "path", "protocol", "status", "bytes_in",
/// "bytes_out", "duration_ms", "upstream_ms", "function", "trigger", "alias", "version",
/// "decision", "decision_detail", "upstream", "retries", "error_code"}`.
fn json(entry: &Entry, decision: Option<&str>, detail: &[u8], clock: &mut Clock, out: &mut Vec<u8>) {
    let route = entry.route.as_ref();
    let micros = clock.at(entry.time);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(&clock.iso);
    out.push(b'.');
    padded(out, u64::from(micros), 6);
    out.extend_from_slice(b"Z\",\"request_id\":");
    string(out, entry.request_id.as_bytes());
    out.extend_from_slice(b",\"client\":\"");
    address(out, entry.client);
    out.extend_from_slice(b"\",\"method\":");
    // A method is an HTTP token: no quote, backslash or control byte.
    out.push(b'"');
    out.extend_from_slice(entry.method.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(b",\"path\":");
    string(out, entry.uri.path().as_bytes());
    out.extend_from_slice(b",\"protocol\":\"");
    out.extend_from_slice(protocol(entry.protocol).as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    integer(out, u64::from(entry.status));
    out.extend_from_slice(b",\"bytes_in\":");
    integer(out, entry.bytes_in);
    out.extend_from_slice(b",\"bytes_out\":");
    integer(out, entry.bytes_out);
    out.extend_from_slice(b",\"duration_ms\":");
    millis(out, entry.duration);
    out.extend_from_slice(b",\"upstream_ms\":");
    match entry.upstream_duration {
        Some(duration) => millis(out, duration),
        None => out.extend_from_slice(b"null"),
    }
    // Names, trigger paths and upstream addresses passed validation (letters, digits and
    // `-._~!$&'()*+,;=:@/`): nothing in them needs escaping, so they are copied as they are.
    validated(out, b"function", route.map(|r| r.function.as_bytes()));
    validated(out, b"trigger", route.map(|r| r.trigger.as_bytes()));
    validated(out, b"alias", route.and_then(|r| r.alias.as_deref()).map(str::as_bytes));
    validated(out, b"version", route.map(|r| r.version.as_bytes()));
    validated(out, b"decision", decision.map(str::as_bytes));
    field(out, b"decision_detail", (!detail.is_empty()).then_some(detail));
    validated(out, b"upstream", route.map(|r| r.upstream.authority().as_bytes()));
    out.extend_from_slice(b",\"retries\":");
    integer(out, u64::from(entry.retries));
    validated(out, b"error_code", entry.error_code.map(str::as_bytes));
    out.extend_from_slice(b"}\n");
}

/// `client - - [time] "METHOD path PROTO" status bytes "referer" "agent"`, then
/// `rid= fn= trigger= alias= version= decision= detail="…" upstream= rt= urt= retries= code=`.
fn combined(entry: &Entry, decision: Option<&str>, detail: &[u8], clock: &mut Clock, out: &mut Vec<u8>) {
    let route = entry.route.as_ref();
    clock.at(entry.time);
    ip(out, entry.client.ip());
    out.extend_from_slice(b" - - [");
    out.extend_from_slice(&clock.common);
    out.extend_from_slice(b"] \"");
    quote_safe(out, entry.method.as_str().as_bytes());
    out.push(b' ');
    quote_safe(out, entry.uri.path().as_bytes());
    out.push(b' ');
    out.extend_from_slice(protocol(entry.protocol).as_bytes());
    out.extend_from_slice(b"\" ");
    integer(out, u64::from(entry.status));
    out.push(b' ');
    integer(out, entry.bytes_out);
    out.extend_from_slice(b" \"");
    dash(out, entry.referer.as_ref().map(|v| v.as_bytes()));
    out.extend_from_slice(b"\" \"");
    dash(out, entry.user_agent.as_ref().map(|v| v.as_bytes()));
    out.extend_from_slice(b"\" rid=");
    bare(out, Some(entry.request_id.as_bytes()));
    out.extend_from_slice(b" fn=");
    bare(out, route.map(|r| r.function.as_bytes()));
    out.extend_from_slice(b" trigger=");
    bare(out, route.map(|r| r.trigger.as_bytes()));
    out.extend_from_slice(b" alias=");
    bare(out, route.and_then(|r| r.alias.as_deref()).map(str::as_bytes));
    out.extend_from_slice(b" version=");
    bare(out, route.map(|r| r.version.as_bytes()));
    out.extend_from_slice(b" decision=");
    bare(out, decision.map(str::as_bytes));
    out.extend_from_slice(b" detail=\"");
    dash(out, (!detail.is_empty()).then_some(detail));
    out.extend_from_slice(b"\" upstream=");
    bare(out, route.map(|r| r.upstream.authority().as_bytes()));
    out.extend_from_slice(b" rt=");
    seconds(out, entry.duration);
    out.extend_from_slice(b" urt=");
    match entry.upstream_duration {
        Some(duration) => seconds(out, duration),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" retries=");
    integer(out, u64::from(entry.retries));
    out.extend_from_slice(b" code=");
    bare(out, entry.error_code.map(str::as_bytes));
    out.push(b'\n');
}

/// `,"name":"value"` (escaped), or `,"name":null`.
fn field(out: &mut Vec<u8>, name: &[u8], value: Option<&[u8]>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
    match value {
        Some(value) => string(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// `,"name":"value"` for a value known to need no escaping, or `,"name":null`.
fn validated(out: &mut Vec<u8>, name: &[u8], value: Option<&[u8]>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name);
    out.extend_from_slice(b"\":");
    match value {
        Some(value) => {
            out.push(b'"');
            out.extend_from_slice(value);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string, quoted; copied as it is when nothing in it needs escaping (the common
/// case: names, ids and paths are printable ASCII), escaped byte by byte otherwise.
fn string(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    if !needs_escape(value) {
        out.extend_from_slice(value);
    } else {
        for chunk in value.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    '"' => out.extend_from_slice(b"\\\""),
                    '\\' => out.extend_from_slice(b"\\\\"),
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.extend_from_slice(b"\\t"),
                    c if (c as u32) < 0x20 || c == '\u{7f}' => {
                        out.extend_from_slice(b"\\u00");
                        out.push(HEX[(c as usize) >> 4]);
                        out.push(HEX[(c as usize) & 0xf]);
                    }
                    c => {
                        let mut utf8 = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    }
                }
            }
            // A byte that is not UTF-8 (a header may hold one) becomes U+FFFD.
            if !chunk.invalid().is_empty() {
                out.extend_from_slice("\u{fffd}".as_bytes());
            }
        }
    }
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether any byte is a quote, a backslash, a control byte or not ASCII: eight bytes at a
/// time (a byte-by-byte scan was a tenth of the log's cost).
fn needs_escape(value: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte of `word` below `n` (n ≤ 0x80); and a zero byte.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH != 0;
    let mut words = value.chunks_exact(8);
    for chunk in &mut words {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        if word & HIGH != 0
            || below(word, 0x20)
            || zero(word ^ (ONES * 0x22))
            || zero(word ^ (ONES * 0x5c))
            || zero(word ^ (ONES * 0x7f))
        {
            return true;
        }
    }
    words.remainder().iter().any(|&b| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\')
}

/// The decimal digits of `n`, from a stack buffer.
fn digits(mut n: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

pub fn integer(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(digits(n, &mut [0; 20]));
}

/// `n` with leading zeros to `width` digits.
fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buffer = [0; 20];
    let text = digits(n, &mut buffer);
    out.extend(std::iter::repeat_n(b'0', width.saturating_sub(text.len())));
    out.extend_from_slice(text);
}

/// Milliseconds with microsecond precision (`0.612`).
fn millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    integer(out, micros / 1000);
    out.push(b'.');
    padded(out, micros % 1000, 3);
}

/// Seconds with millisecond precision (`0.001`), as nginx's `$request_time`.
fn seconds(out: &mut Vec<u8>, duration: Duration) {
    let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    integer(out, millis / 1000);
    out.push(b'.');
    padded(out, millis % 1000, 3);
}

fn address(out: &mut Vec<u8>, address: SocketAddr) {
    match address {
        SocketAddr::V4(v4) => {
            ip(out, IpAddr::V4(*v4.ip()));
            out.push(b':');
        }
        SocketAddr::V6(v6) => {
            out.push(b'[');
            ip(out, IpAddr::V6(*v6.ip()));
            out.extend_from_slice(b"]:");
        }
    }
    integer(out, u64::from(address.port()));
}

fn ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                integer(out, u64::from(octet));
            }
        }
        // Rare enough here for the general formatter.
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
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

/// An unquoted `key=value` field: as [`dash`], spaces escaped too, so a value cannot end its
/// field early and forge the next one.
fn bare(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) if !value.is_empty() => {
            for part in value.split(|b| *b == b' ').enumerate() {
                if part.0 > 0 {
                    out.extend_from_slice(b"\\x20");
                }
                quote_safe(out, part.1);
            }
        }
        _ => out.push(b'-'),
    }
}

fn dash(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(value) if !value.is_empty() => quote_safe(out, value),
        _ => out.push(b'-'),
    }
}

/// A value as it may stand in a combined line: `"`, `\` and control bytes escaped as
/// nginx does (`\xHH`), so a client cannot forge a field or a line.
fn quote_safe(out: &mut Vec<u8>, value: &[u8]) {
    for &byte in value {
        match byte {
            b'"' | b'\\' | 0..=0x1f | 0x7f.. => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_strings_are_written_as_json_reads_them() {
        let mut out = Vec::new();
        for (n, text) in [(0, "0"), (7, "7"), (10, "10"), (u64::MAX, "18446744073709551615")] {
            out.clear();
            integer(&mut out, n);
            assert_eq!(out, text.as_bytes());
        }
        out.clear();
        millis(&mut out, Duration::from_micros(12_034));
        assert_eq!(out, b"12.034");
        for value in ["plain /path-1", "quote \" back \\ slash", "tab\tnew\nline \u{1}", "ünïcode ✓", ""] {
            out.clear();
            string(&mut out, value.as_bytes());
            assert_eq!(serde_json::from_slice::<String>(&out).ok().as_deref(), Some(value), "{value:?}");
        }
        for escaped in 0u8..=255 {
            let plain = (0x20..0x7f).contains(&escaped) && escaped != b'"' && escaped != b'\\';
            for at in 0..17 {
                let mut value = vec![b'a'; 17];
                value[at] = escaped;
                assert_eq!(needs_escape(&value), !plain, "byte {escaped:#x} at {at}");
            }
        }
        out.clear();
        string(&mut out, b"bad \xff byte");
        assert_eq!(serde_json::from_slice::<String>(&out).ok().as_deref(), Some("bad \u{fffd} byte"));
    }
}
