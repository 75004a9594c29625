//! Paths: no traversal, no encoded separators, slashes merged (battery #8).

use super::*;

// ============================================================================================
// 8. Paths: no traversal, no encoded separators, slashes merged.
// ============================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_and_encoded_slashes_are_400_and_never_forwarded() {
    let s = start(&[], |_| {}).await;
    let paths = [
        "/pub/..%2fadmin",
        "/pub/..%2Fadmin",
        "/pub/%2e%2e/admin",
        "/pub/%2E%2e%2Fadmin",
        "/pub/../admin",
        "/hello-prod/../admin",
        "/hello-prod/%2e%2e/x",
        "/hello-prod/.%2e/x",
        "/hello-prod/./x",
        "/hello-prod%2fx",
        "/hello-prod/a%2Fb",
        "/%2fhello-prod",
        "/hello-prod/%5c..%5cadmin",
        "/hello-prod/%00",
        "//pub/..//admin",
    ];
    for path in paths {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
        let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("{path}: no answer"));
        reply.assert_error(400, "APIG.0201", path);
    }
    s.origin.assert_nothing("refused paths").await;
    s.admin.assert_nothing("the protected route").await;

    // Runs of slashes are merged: `//hello-prod` routes like `/hello-prod`.
    for (path, upstream) in [("//hello-prod", "/"), ("//hello-prod//x///y", "/x/y"), ("/pub//z", "/z")] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
        let (_, reply) = exchange(s.addr(), request.as_bytes()).await;
        let reply = reply.unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(reply.status, 200, "{path}: {}\n{}", reply.head, reply.text());
        assert_eq!(reply.text(), upstream, "{path}");
    }
    s.admin.assert_nothing("the protected route").await;
}
