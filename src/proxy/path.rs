//! Request path hygiene before routing: no trigger may be reached, or escaped, by a path
//! that means something else once an upstream normalises it.
//!
//! Dot segments (`.`, `..`, also percent-encoded), encoded slashes and backslashes, and NUL
//! are refused; runs of `/` are merged (as Envoy's `merge_slashes` does), so `//hello-prod`
//! routes like `/hello-prod` and no empty segment reaches an upstream.

use std::borrow::Cow;

/// Why a path is refused (the 400's message).
pub type Refusal = &'static str;

/// The path to route on, or why the request is refused.
pub fn sanitize(path: &str) -> Result<Cow<'_, str>, Refusal> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err("the request path must start with '/'");
    }
    let mut needs_merge = false;
    let mut suspicious = false;
    for window in bytes.windows(2) {
        match window {
            [b'/', b'/'] => needs_merge = true,
            [b'/', b'.'] | [b'%', _] | [b'\\', _] | [_, b'\\'] => suspicious = true,
            _ => {}
        }
    }
    if suspicious {
        check_segments(path)?;
    }
    if !needs_merge {
        return Ok(Cow::Borrowed(path));
    }
    let mut merged = String::with_capacity(path.len());
    let mut previous_slash = false;
    for c in path.chars() {
        if c == '/' && previous_slash {
            continue;
        }
        previous_slash = c == '/';
        merged.push(c);
    }
    Ok(Cow::Owned(merged))
}

fn check_segments(path: &str) -> Result<(), Refusal> {
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains('\\') {
        return Err("the request path has an encoded slash or a backslash");
    }
    if lower.contains("%00") {
        return Err("the request path has an encoded NUL");
    }
    for segment in lower.split('/') {
        let decoded = segment.replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Err("the request path has a '.' or '..' segment");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass_untouched() {
        for path in ["/", "/hello-prod", "/hello-prod/a/b.json", "/a/.well-known", "/x/..y", "/q%20r", "/a...b"] {
            assert!(matches!(sanitize(path), Ok(Cow::Borrowed(p)) if p == path), "{path}");
        }
    }

    #[test]
    fn slashes_are_merged() {
        assert_eq!(sanitize("//hello-prod//a///b").as_deref(), Ok("/hello-prod/a/b"));
    }

    #[test]
    fn traversal_and_encoded_separators_are_refused() {
        for path in [
            "/pub/../admin",
            "/pub/..",
            "/pub/./x",
            "/pub/%2e%2e/admin",
            "/pub/.%2E/admin",
            "/pub/..%2fadmin",
            "/pub%2Fadmin",
            "/pub\\admin",
            "/pub/%5cadmin",
            "/pub/%00",
            "*",
            "",
        ] {
            assert!(sanitize(path).is_err(), "{path}");
        }
    }
}
