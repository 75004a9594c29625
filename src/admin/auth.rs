//! Authentication of management calls: `X-Auth-Token`, Huawei Cloud `SDK-HMAC-SHA256` and
//! Alibaba Cloud `ACS3-HMAC-SHA256` signatures, exactly as the vendors' SDKs compute them.
//!
//! Both signatures are HMAC-SHA256 over a canonical request (method, URI, query, the
//! signed headers, the body's SHA-256), keyed with the raw secret; they differ in how the
//! URI and query are canonicalised and in the string to sign. Secrets are compared in
//! constant time, a signature's date must be within the allowed skew, and every failure
//! looks the same to the caller.

use std::time::Duration;

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::secret::{AccessKey, Secret};
use time::OffsetDateTime;
use time::format_description::well_known::Iso8601;
use time::macros::format_description;

/// Everything needed to check a request.
pub struct Credentials {
    tokens: Vec<Secret>,
    keys: Vec<AccessKey>,
    max_skew: Duration,
}

/// What a request presented, as far as the signature is concerned.
pub struct SignedRequest<'a> {
    pub method: &'a Method,
    /// The path exactly as it arrived (still percent-encoded).
    pub raw_path: &'a str,
    pub raw_query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Which scheme authenticated the call (for logs; failures carry no detail outward).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Token,
    HuaweiSdk,
    AlibabaAcs3,
}

/// Why a request was refused; logged at debug level, never sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials presented")]
    Missing,
    #[error("token does not match")]
    BadToken,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("unknown access key")]
    UnknownKey,
    #[error("request date missing, unsigned or unparseable")]
    BadDate,
    #[error("request date is outside the allowed clock skew")]
    Skewed,
    #[error("body hash does not match x-acs-content-sha256")]
    BodyHash,
    #[error("signature does not match")]
    BadSignature,
}

/// RFC 3986 unreserved characters stay; everything else is %XX (what both SDKs do).
const RFC3986: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// === impl Credentials ===

impl Credentials {
    pub fn new(tokens: Vec<Secret>, keys: Vec<AccessKey>, max_skew: Duration) -> Self {
        Credentials { tokens, keys, max_skew }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.keys.is_empty()
    }

    /// Accepts the request if any configured credential vouches for it.
    pub fn authenticate(&self, request: &SignedRequest<'_>, now: OffsetDateTime) -> Result<Scheme, AuthError> {
        if let Some(authorization) = request.headers.get(http::header::AUTHORIZATION) {
            let authorization = authorization.to_str().map_err(|_| AuthError::Malformed)?;
            if let Some(fields) = authorization.strip_prefix("SDK-HMAC-SHA256 ") {
                return self.check_huawei(request, fields, now).map(|()| Scheme::HuaweiSdk);
            }
            if let Some(fields) = authorization.strip_prefix("ACS3-HMAC-SHA256 ") {
                return self.check_acs3(request, fields, now).map(|()| Scheme::AlibabaAcs3);
            }
            // Another scheme (a header meant for some other hop): the token decides.
        }
        let token = request.headers.get("x-auth-token").ok_or(AuthError::Missing)?;
        // Every token is compared, so the time taken does not say which one came close.
        let matched = self.tokens.iter().fold(false, |found, t| t.matches(token.as_bytes()) | found);
        if matched { Ok(Scheme::Token) } else { Err(AuthError::BadToken) }
    }

    /// Who an authenticated request acts as, for the audit trail: `ak:{access key id}` for a
    /// signature, a fingerprint of the token for `X-Auth-Token` (never a secret).
    pub fn actor(request: &SignedRequest<'_>, scheme: Scheme) -> String {
        let authorization = header_text(request.headers, "authorization").unwrap_or("");
        let signed_by = |prefix: &str, separator: &str, names: [&str; 3]| {
            let fields = authorization.strip_prefix(prefix)?;
            parse_fields(fields, separator, names).ok().map(|[access, _, _]| format!("ak:{access}"))
        };
        let actor = match scheme {
            Scheme::Token => {
                request.headers.get("x-auth-token").map(|t| crate::audit::Attribution::token_actor(t.as_bytes()))
            }
            Scheme::HuaweiSdk => signed_by("SDK-HMAC-SHA256 ", ", ", ["Access", "SignedHeaders", "Signature"]),
            Scheme::AlibabaAcs3 => signed_by("ACS3-HMAC-SHA256 ", ",", ["Credential", "SignedHeaders", "Signature"]),
        };
        actor.unwrap_or_else(|| "unknown".into())
    }

    fn key(&self, id: &str) -> Result<&AccessKey, AuthError> {
        self.keys.iter().find(|k| k.id == id).ok_or(AuthError::UnknownKey)
    }

    fn check_skew(&self, date: OffsetDateTime, now: OffsetDateTime) -> Result<(), AuthError> {
        let skew = (now - date).unsigned_abs();
        if skew > self.max_skew { Err(AuthError::Skewed) } else { Ok(()) }
    }

    /// Huawei Cloud APIG signing (`huaweicloudsdkcore` `Signer`).
    fn check_huawei(&self, request: &SignedRequest<'_>, fields: &str, now: OffsetDateTime) -> Result<(), AuthError> {
        let [access, signed_headers, signature] = parse_fields(fields, ", ", ["Access", "SignedHeaders", "Signature"])?;
        let key = self.key(access)?;
        let signed: Vec<&str> = signed_headers.split(';').collect();
        if !signed.contains(&"x-sdk-date") {
            return Err(AuthError::BadDate);
        }
        let date_text = header_text(request.headers, "x-sdk-date").ok_or(AuthError::BadDate)?;
        let format = format_description!("[year][month][day]T[hour][minute][second]Z");
        let date = time::PrimitiveDateTime::parse(date_text, format).map_err(|_| AuthError::BadDate)?.assume_utc();
        self.check_skew(date, now)?;

        let canonical = canonical_request(
            request.method,
            &huawei_uri(request.raw_path),
            &canonical_query(request.raw_query, false),
            &canonical_headers(request.headers, &signed)?,
            signed_headers,
            &hex_sha256(request.body),
        );
        let to_sign = format!("SDK-HMAC-SHA256\n{date_text}\n{}", hex_sha256(canonical.as_bytes()));
        verify(&key.secret, &to_sign, signature)
    }

    /// Alibaba Cloud V3 signing (`alibabacloud_tea_openapi` `Utils.get_authorization`).
    fn check_acs3(&self, request: &SignedRequest<'_>, fields: &str, now: OffsetDateTime) -> Result<(), AuthError> {
        let [access, signed_headers, signature] =
            parse_fields(fields, ",", ["Credential", "SignedHeaders", "Signature"])?;
        let key = self.key(access)?;
        let signed: Vec<&str> = signed_headers.split(';').collect();
        if !signed.contains(&"x-acs-date") {
            return Err(AuthError::BadDate);
        }
        let date_text = header_text(request.headers, "x-acs-date").ok_or(AuthError::BadDate)?;
        let date = OffsetDateTime::parse(date_text, &Iso8601::DEFAULT).map_err(|_| AuthError::BadDate)?;
        self.check_skew(date, now)?;
        let body_hash = hex_sha256(request.body);
        if let Some(claimed) = header_text(request.headers, "x-acs-content-sha256")
            && !bool::from(claimed.as_bytes().ct_eq(body_hash.as_bytes()))
        {
            return Err(AuthError::BodyHash);
        }
        let canonical = canonical_request(
            request.method,
            request.raw_path,
            &canonical_query(request.raw_query, true),
            &canonical_headers(request.headers, &signed)?,
            signed_headers,
            &body_hash,
        );
        let to_sign = format!("ACS3-HMAC-SHA256\n{}", hex_sha256(canonical.as_bytes()));
        verify(&key.secret, &to_sign, signature)
    }
}

/// Splits `A=x<sep>B=y<sep>C=z` into the values of the expected names, in order.
fn parse_fields<'a>(fields: &'a str, separator: &str, names: [&str; 3]) -> Result<[&'a str; 3], AuthError> {
    let mut values = [""; 3];
    let mut parts = fields.split(separator);
    for (value, name) in values.iter_mut().zip(names) {
        let part = parts.next().ok_or(AuthError::Malformed)?;
        let (key, found) = part.trim().split_once('=').ok_or(AuthError::Malformed)?;
        if key != name || found.is_empty() {
            return Err(AuthError::Malformed);
        }
        *value = found;
    }
    if parts.next().is_some() {
        return Err(AuthError::Malformed);
    }
    Ok(values)
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn canonical_request(method: &Method, uri: &str, query: &str, headers: &str, signed: &str, body_hash: &str) -> String {
    format!("{method}\n{uri}\n{query}\n{headers}\n{signed}\n{body_hash}")
}

/// Huawei: decode the path, re-encode each segment (RFC 3986), end with `/`.
fn huawei_uri(raw_path: &str) -> String {
    let mut uri = raw_path
        .split('/')
        .map(|segment| {
            let decoded: Vec<u8> = percent_decode_str(segment).collect();
            percent_encoding::percent_encode(&decoded, RFC3986).to_string()
        })
        .collect::<Vec<_>>()
        .join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// Sorted `key=value` pairs, both RFC 3986-encoded. `plus_is_space`: Alibaba's wire query
/// is form-encoded; Huawei's is already canonical and a `+` there is a literal plus.
fn canonical_query(raw_query: Option<&str>, plus_is_space: bool) -> String {
    let decode = |s: &str| -> String {
        let s = if plus_is_space { s.replace('+', " ") } else { s.to_owned() };
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    let mut pairs: Vec<(String, String)> = raw_query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", utf8_percent_encode(k, RFC3986), utf8_percent_encode(v, RFC3986)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:value\n` for each signed header (values trimmed; repeats sorted and comma-joined).
fn canonical_headers(headers: &HeaderMap, signed: &[&str]) -> Result<String, AuthError> {
    let mut out = String::new();
    for name in signed {
        let mut values: Vec<&str> = headers
            .get_all(*name)
            .iter()
            .map(|v| v.to_str().map(str::trim).map_err(|_| AuthError::Malformed))
            .collect::<Result<_, _>>()?;
        if values.is_empty() {
            return Err(AuthError::BadSignature);
        }
        values.sort_unstable();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

fn hex_sha256(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return EMPTY_SHA256.to_owned();
    }
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn verify(secret: &Secret, to_sign: &str, presented: &str) -> Result<(), AuthError> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).map_err(|_| AuthError::BadSignature)?;
    mac.update(to_sign.as_bytes());
    let expected = hex(&mac.finalize().into_bytes());
    if bool::from(expected.as_bytes().ct_eq(presented.to_ascii_lowercase().as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests;
