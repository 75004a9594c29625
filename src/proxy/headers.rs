//! Header rewriting at the proxy boundary: hop-by-hop removal, forwarding headers, ids.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_GRAYGATE_VERSION: HeaderName = HeaderName::from_static("x-graygate-version");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers that describe one hop, never the message (RFC 9110 §7.6.1, RFC 7540 §3.2.1
/// `HTTP2-Settings`, and legacy ones).
const HOP_BY_HOP_COUNT: usize = 10;
const HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    HTTP2_SETTINGS,
    header::CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Longest client-supplied request id we pass on; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// True when the request carries more headers, or more header bytes, than allowed.
pub fn too_large(headers: &HeaderMap, max_headers: usize, max_bytes: usize) -> bool {
    if headers.len() > max_headers {
        return true;
    }
    // name, ": ", value, CRLF — as they took up on the wire.
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    bytes > max_bytes
}

/// Removes hop-by-hop headers, including every header that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One scan over the names present decides what goes: a message usually has none of the
    // ten or only `connection`, and ten removals by name are ten hash lookups per hop.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(index) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[index] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // Names the `connection` header lists go too; `keep-alive` and `close`, the usual
    // tokens, need no lookup of their own (and the vector allocates only for others).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|token| {
            !(token.is_empty() || token.eq_ignore_ascii_case("keep-alive") || token.eq_ignore_ascii_case("close"))
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// Sets `X-Forwarded-For/-Proto/-Host`; the original `Host` moves to `X-Forwarded-Host`
/// (the upstream gets its own authority as `Host`).
pub fn set_forwarded(headers: &mut HeaderMap, client: IpAddr, proto: &'static str, host: Option<HeaderValue>) {
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(previous) => HeaderValue::try_from(format!("{previous}, {client}")),
        None => HeaderValue::try_from(client.to_string()),
    };
    if let Ok(value) = forwarded_for {
        headers.insert(X_FORWARDED_FOR, value);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// The request's id: the client's `X-Request-Id` when it is sane, otherwise a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(id) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.to_str().is_ok() => id.clone(),
        _ => generate_request_id(),
    }
}

/// 128 random bits as 32 lowercase hex digits.
pub fn generate_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for byte in id.iter_mut().rev() {
        *byte = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_hop_by_hop_headers_is_untouched_and_usual_tokens_go_with_their_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        headers.insert("x-canary", HeaderValue::from_static("v2"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2);
        headers.insert(header::CONNECTION, HeaderValue::from_static("close, Keep-Alive"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2, "{headers:?}");
        assert!(headers.contains_key("x-canary") && headers.contains_key(header::CONTENT_LENGTH));
    }

    #[test]
    fn connection_named_headers_are_removed_too() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, X-Secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends_and_ids_are_generated_when_missing_or_bad() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        set_forwarded(&mut headers, IpAddr::from([127, 0, 0, 1]), "http", Some(HeaderValue::from_static("a.example")));
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "a.example");
        assert_eq!(headers["x-forwarded-proto"], "http");

        assert_eq!(request_id(&headers).len(), 32);
        headers.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&headers), "abc-123");
        headers.insert(X_REQUEST_ID, HeaderValue::from_str(&"x".repeat(200)).unwrap_or_else(|_| unreachable!()));
        assert_eq!(request_id(&headers).len(), 32);
    }
}
