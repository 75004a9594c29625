//! Route resolution (trigger lookup + alias decision) at 10, 1,000 and 100,000 triggers.
//!
//! Each function has an alias with a 90/10 weight split and a 4-rule header strategy; the
//! benchmark resolves a deep path on a function in the middle of the table, once with
//! headers that match no rule (weights decide) and once with headers that match all four.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use graygate::routes::{
    AliasSpec, FunctionSpec, RoutesFile, RuleSpec, TriggerSpec, ValidRoutes, VersionSpec, VersionStrategy,
};
use graygate::routing::{RoutingTable, compile};
use http::{HeaderMap, HeaderValue, Method};

// The allocator the graygate binary runs with: reload cost is mostly allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn table(triggers: usize) -> RoutingTable {
    let rule = |param: &str, op: &str, value: &str| RuleSpec {
        rule_type: "Header".into(),
        param: param.into(),
        op: op.into(),
        value: value.into(),
    };
    let functions = (0..triggers)
        .map(|i| FunctionSpec {
            name: format!("fn{i}"),
            package: "default".into(),
            upstream: "http://127.0.0.1:9000".into(),
            description: None,
            timeout_ms: None,
            versions: ["v1", "v2"]
                .iter()
                .map(|v| VersionSpec {
                    version: (*v).into(),
                    upstream: "http://127.0.0.1:9001".into(),
                    description: None,
                    last_modified: None,
                })
                .collect(),
            aliases: vec![AliasSpec {
                name: "canary".into(),
                version: "v1".into(),
                description: None,
                additional_version_weights: [("v2".to_owned(), 10)].into_iter().collect(),
                additional_version_strategy: [(
                    "v2".to_owned(),
                    VersionStrategy {
                        combine_type: "and".into(),
                        rules: vec![
                            rule("x-user-group", "in", "beta,qa,staff"),
                            rule("x-region", "=", "eu"),
                            rule("x-client", "in", "ios,android"),
                            rule("x-canary", "=", "yes"),
                        ],
                    },
                )]
                .into_iter()
                .collect(),
                sticky: None,
                last_modified: None,
                deployment_id: None,
            }],
            triggers: vec![TriggerSpec {
                name: None,
                path: None,
                target: "canary".into(),
                req_method: None,
                trigger_id: None,
                created_time: None,
                trigger_status: Default::default(),
            }],
        })
        .collect();
    let routes = RoutesFile { project_id: "p".into(), region: "local".into(), functions };
    let valid = ValidRoutes::new(routes).unwrap_or_else(|issues| panic!("{issues:?}"));
    compile(Arc::new(valid), 1, None, &Default::default()).unwrap()
}

fn headers(matching: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "gateway.example"),
        ("user-agent", "wrk/4.1"),
        ("accept", "*/*"),
        ("x-user-group", "qa"),
        ("x-region", "eu"),
        ("x-client", "android"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if matching {
        headers.insert("x-canary", HeaderValue::from_static("yes"));
    }
    headers
}

fn resolution(c: &mut Criterion) {
    let mut group = c.benchmark_group("resolve");
    for triggers in [10usize, 1_000, 100_000] {
        let table = table(triggers);
        let path = format!("/fn{}-canary/orders/42/items", triggers / 2);
        for (label, matching) in [("weights", false), ("rules", true)] {
            let headers = headers(matching);
            group.bench_with_input(BenchmarkId::new(label, triggers), &triggers, |b, _| {
                b.iter(|| {
                    let resolved = table
                        .resolve(&Method::GET, black_box(&path), black_box(&headers))
                        .unwrap_or_else(|_| panic!("routed"));
                    black_box(resolved.version.name.len())
                })
            });
        }
    }
    group.finish();
}

/// A routes file of `n` functions as text, the way an operator's file looks.
fn routes_text(n: usize) -> String {
    use std::fmt::Write as _;
    let mut doc = String::from("project_id: p\nregion: local\nfunctions:\n");
    for i in 0..n {
        let _ = write!(
            doc,
            "  - name: fn{i}\n    upstream: http://10.0.{}.{}:8080\n    versions:\n      - {{ version: v1, upstream: \"http://10.1.{}.{}:8080\" }}\n      - {{ version: v2, upstream: \"http://10.2.{}.{}:8080\" }}\n    aliases:\n      - name: prod\n        version: v1\n        additional_version_weights: {{ v2: 10 }}\n        additional_version_strategy:\n          v2: {{ combine_type: or, rules: [ {{ param: x-canary, op: \"=\", value: \"yes\" }} ] }}\n    triggers:\n      - {{ target: prod }}\n      - {{ target: v1 }}\n",
            i / 256,
            i % 256,
            i / 256,
            i % 256,
            i / 256,
            i % 256
        );
    }
    doc
}

/// Parse + validate + compile + publish of a 10,000-function routes file (what a reload does
/// after reading the file).
fn reload(c: &mut Criterion) {
    let yaml = routes_text(10_000);
    let parsed = ValidRoutes::parse(&yaml, "routes.yaml").unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_string_pretty(parsed.spec()).unwrap();
    let store = arc_swap::ArcSwap::from_pointee(table(10));
    let (retire, retired) = std::sync::mpsc::channel::<Arc<RoutingTable>>();
    let dropper = std::thread::spawn(move || retired.into_iter().for_each(drop));
    let mut group = c.benchmark_group("reload");
    group.sample_size(10);
    for (format, text) in [("json", &json), ("yaml", &yaml)] {
        group.bench_function(format!("10000_functions_{format}"), |b| {
            b.iter(|| {
                let valid = ValidRoutes::parse(black_box(text), "routes.yaml").unwrap_or_else(|e| panic!("{e}"));
                let previous = store.load_full();
                let next =
                    compile(Arc::new(valid), previous.generation() + 1, Some(&previous), &Default::default()).unwrap();
                drop(previous);
                // As the store does: the replaced table is freed on another thread.
                retire.send(store.swap(Arc::new(next))).unwrap();
            })
        });
    }
    group.finish();
    drop(retire);
    dropper.join().unwrap();
}

/// What metrics add to one proxied request: the route's handles (cached after the first
/// request) and one observation.
fn metrics(c: &mut Criterion) {
    let metrics = graygate::metrics::Metrics::new().unwrap();
    let route = std::sync::OnceLock::new();
    c.bench_function("metrics/record_per_request", |b| {
        b.iter(|| {
            let handles = route.get_or_init(|| metrics.route("bench", "canary", "v1"));
            metrics.record(handles, http::StatusCode::OK, std::time::Duration::from_micros(black_box(180)));
        })
    });
}

criterion_group!(benches, resolution, reload, metrics);
criterion_main!(benches);
