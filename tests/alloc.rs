//! Route resolution allocates nothing: a counting allocator (dhat) watches 10,000 resolutions
//! through a table of 1,000 triggers, with weights, header rules and a sticky key in play.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::sync::Arc;

use graygate::routes::ValidRoutes;
use graygate::routing::compile;
use http::{HeaderMap, HeaderValue, Method};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn routes(functions: usize) -> String {
    let mut doc = String::from("project_id: p\nfunctions:\n");
    for i in 0..functions {
        let _ = write!(
            doc,
            "  - name: fn{i}\n    upstream: http://127.0.0.1:9000\n    versions:\n      - {{ version: v1, upstream: \"http://127.0.0.1:9001\" }}\n      - {{ version: v2, upstream: \"http://127.0.0.1:9002\" }}\n    aliases:\n      - name: canary\n        version: v1\n        additional_version_weights: {{ v2: 10 }}\n        additional_version_strategy:\n          v2: {{ combine_type: and, rules: [ {{ param: x-user-group, op: in, value: \"beta,qa\" }}, {{ param: x-region, op: \"=\", value: eu }}, {{ param: x-client, op: in, value: \"ios,android\" }}, {{ param: x-canary, op: \"=\", value: \"yes\" }} ] }}\n      - name: pinned\n        version: v1\n        additional_version_weights: {{ v2: 50 }}\n        sticky: {{ cookie: uid }}\n    triggers:\n      - {{ target: canary }}\n      - {{ target: pinned }}\n"
        );
    }
    doc
}

#[test]
fn resolution_does_not_allocate() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let valid = ValidRoutes::parse(&routes(500), "routes.yaml").unwrap();
    let table = compile(Arc::new(valid), 1, None, &Default::default()).unwrap();
    let mut headers = HeaderMap::new();
    for (name, value) in [("x-user-group", "qa"), ("x-region", "eu"), ("x-client", "ios"), ("cookie", "a=1; uid=u-42")]
    {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let mut matching = headers.clone();
    matching.insert("x-canary", HeaderValue::from_static("yes"));
    let paths: Vec<String> = (0..500).flat_map(|i| [format!("/fn{i}-canary/a/b"), format!("/fn{i}-pinned")]).collect();

    let before = dhat::HeapStats::get();
    let mut versions = 0usize;
    for round in 0..10 {
        for path in &paths {
            let h = if round % 2 == 0 { &headers } else { &matching };
            let resolved = table.resolve(&Method::GET, path, h).expect("routed");
            versions += resolved.version.name.len();
        }
    }
    let after = dhat::HeapStats::get();
    assert!(versions > 0);
    dhat::assert_eq!(after.total_blocks - before.total_blocks, 0);
}
