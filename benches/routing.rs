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

criterion_group!(benches, resolution);
criterion_main!(benches);
