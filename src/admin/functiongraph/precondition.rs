//! Optimistic concurrency beyond FunctionGraph: every alias, version list and trigger has
//! an `ETag` (a strong validator: a hash of the stored resource), and a PUT or DELETE with
//! an `If-Match` that no longer matches answers 412 and changes nothing.
//!
//! The check runs inside the edit, against the state the edit is applied to, so it holds
//! in a fleet too: a write that overtook the caller's read on another replica is seen here.
//! Without `If-Match` the last writer wins, as in FunctionGraph.

use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;

use super::{FgError, error};
use crate::routes::FunctionSpec;

/// What a request's `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No `If-Match`: last writer wins.
    Any,
    /// `If-Match: *`: the resource must exist (it does, wherever this is checked).
    Exists,
    /// One of these entity tags (quoted, as sent).
    Tags(Vec<String>),
}

// === impl IfMatch ===

impl IfMatch {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let values: Vec<&str> =
            headers.get_all(http::header::IF_MATCH).iter().filter_map(|v| v.to_str().ok()).collect();
        if values.is_empty() {
            return IfMatch::Any;
        }
        let tags: Vec<String> = values.iter().flat_map(|v| v.split(',')).map(|t| t.trim().to_owned()).collect();
        if tags.iter().any(|t| t == "*") { IfMatch::Exists } else { IfMatch::Tags(tags) }
    }

    /// Ok if `current` (the resource's tag now) satisfies the precondition. Weak tags never
    /// match: If-Match compares strongly (RFC 9110 §13.1.1).
    pub fn check(&self, current: &str, what: &str) -> Result<(), FgError> {
        match self {
            IfMatch::Any | IfMatch::Exists => Ok(()),
            IfMatch::Tags(tags) if tags.iter().any(|t| t == current) => Ok(()),
            IfMatch::Tags(tags) => Err(error(
                StatusCode::PRECONDITION_FAILED,
                "FSS.0412",
                format!(
                    "{what} changed since it was read: If-Match {} does not match its ETag {current}",
                    tags.join(", ")
                ),
            )),
        }
    }
}

/// The strong entity tag of a stored resource.
pub fn etag<T: Serialize + ?Sized>(resource: &T) -> String {
    let bytes = serde_json::to_vec(resource).unwrap_or_default();
    format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes))
}

/// A function's version list, latest (what it runs) included.
pub fn versions_etag(function: &FunctionSpec) -> String {
    etag(&(&function.upstream, &function.versions))
}

/// Sets the `ETag` header of a reply.
pub fn tag(mut reply: super::Reply, etag: &str) -> super::Reply {
    if let Ok(value) = HeaderValue::from_str(etag) {
        reply.headers_mut().insert(http::header::ETAG, value);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_compares_strongly_and_star_matches_what_exists() {
        let mut headers = HeaderMap::new();
        assert_eq!(IfMatch::from_headers(&headers), IfMatch::Any);
        headers.insert(http::header::IF_MATCH, HeaderValue::from_static("\"a\", \"b\""));
        let precondition = IfMatch::from_headers(&headers);
        assert!(precondition.check("\"b\"", "the alias").is_ok());
        let refused = precondition.check("\"c\"", "the alias").err().map(|e| (e.status, e.code));
        assert_eq!(refused, Some((StatusCode::PRECONDITION_FAILED, "FSS.0412")));
        headers.insert(http::header::IF_MATCH, HeaderValue::from_static("W/\"c\""));
        assert!(IfMatch::from_headers(&headers).check("\"c\"", "the alias").is_err(), "a weak tag never matches");
        headers.insert(http::header::IF_MATCH, HeaderValue::from_static("*"));
        assert!(IfMatch::from_headers(&headers).check("\"c\"", "the alias").is_ok());
        assert_ne!(etag(&1), etag(&2));
        assert_eq!(etag(&"x"), etag(&"x"));
    }
}
