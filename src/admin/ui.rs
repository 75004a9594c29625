//! The status page (`GET /ui`): a page, a script and a style sheet compiled into the binary,
//! so it works offline and behind any firewall. The page holds no data: its script asks for
//! the admin token once, keeps it in the tab's `sessionStorage` (`graygate.token`) and reads
//! `/graygate/v1/status` with it.

use http::{HeaderValue, StatusCode, header};

use super::{Reply, reply};

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// Only this page's own script and style run; nothing is fetched from elsewhere.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'";

pub fn page() -> Reply {
    asset("text/html; charset=utf-8", PAGE)
}

pub fn script() -> Reply {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub fn style() -> Reply {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Reply {
    let mut response = reply(StatusCode::OK, content_type, body.as_bytes().to_vec());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
