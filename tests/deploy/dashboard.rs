//! deploy/grafana/graygate-dashboard.json: a Grafana dashboard whose every query reads only
//! what graygate exports (or the recording rules of deploy/prometheus/rules.yml).
//! tests/deploy/prometheus_scrape.py runs the same queries against a real Prometheus.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::files::{at, read, str_at};
use crate::promql::{known_names, metric_names};

const FILE: &str = "deploy/grafana/graygate-dashboard.json";

fn dashboard() -> Value {
    serde_json::from_str(&read(FILE)).unwrap_or_else(|e| panic!("{FILE}: not JSON: {e}"))
}

/// (where, expr) of every panel target and annotation query.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in at(dashboard, "/panels", FILE).as_array().unwrap() {
        for target in panel.get("targets").and_then(Value::as_array).into_iter().flatten() {
            let expr = str_at(target, "/expr", "a panel target");
            out.push((format!("panel {:?}", panel["title"]), expr.to_owned()));
        }
    }
    for annotation in at(dashboard, "/annotations/list", FILE).as_array().unwrap() {
        if let Some(expr) = annotation.get("expr").and_then(Value::as_str) {
            out.push((format!("annotation {:?}", annotation["name"]), expr.to_owned()));
        }
    }
    for variable in at(dashboard, "/templating/list", FILE).as_array().unwrap() {
        if let Some(query) = variable.pointer("/query/query").and_then(Value::as_str) {
            let inner = query.strip_prefix("label_values(").and_then(|q| q.rsplit_once(',')).map(|(m, _)| m);
            let inner = inner.unwrap_or_else(|| panic!("variable {:?}: not label_values(…)", variable["name"]));
            out.push((format!("variable {:?}", variable["name"]), inner.to_owned()));
        }
    }
    out
}

#[test]
fn the_dashboard_is_a_grafana_dashboard_with_panels() {
    let dashboard = dashboard();
    for field in ["/title", "/uid"] {
        assert!(!str_at(&dashboard, field, FILE).is_empty(), "{field} is empty");
    }
    assert!(at(&dashboard, "/schemaVersion", FILE).as_u64().is_some_and(|v| v >= 36), "schemaVersion");
    let panels = at(&dashboard, "/panels", FILE).as_array().unwrap();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = str_at(panel, "/title", "a panel");
        assert!(ids.insert(at(panel, "/id", title).as_u64().expect("numeric id")), "{title}: duplicate id");
        for field in ["x", "y", "w", "h"] {
            assert!(panel.pointer(&format!("/gridPos/{field}")).and_then(Value::as_u64).is_some(), "{title}: gridPos");
        }
        let x = panel["gridPos"]["x"].as_u64().unwrap();
        let w = panel["gridPos"]["w"].as_u64().unwrap();
        assert!(x + w <= 24, "{title}: wider than the 24-column grid");
        if str_at(panel, "/type", title) == "row" {
            continue;
        }
        assert_eq!(str_at(panel, "/datasource/uid", title), "${datasource}", "{title}: the datasource variable");
        let targets = at(panel, "/targets", title).as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(refs.insert(str_at(target, "/refId", title)), "{title}: duplicate refId");
            assert!(!str_at(target, "/expr", title).trim().is_empty(), "{title}: empty query");
        }
    }
}

#[test]
fn every_query_reads_only_metrics_graygate_exports() {
    let dashboard = dashboard();
    let known = known_names();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 10, "{} queries", queries.len());
    let mut read = BTreeSet::new();
    for (place, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: reads no metric: {expr}");
        let unknown: Vec<_> = names.difference(&known).collect();
        assert!(unknown.is_empty(), "{place}: {unknown:?} is neither a graygate metric nor a recording rule: {expr}");
        assert_eq!(expr.matches('(').count(), expr.matches(')').count(), "{place}: unbalanced parentheses: {expr}");
        read.extend(names);
    }
    // What issue 6 asks the dashboard to show.
    for metric in [
        "graygate_requests_total",
        "graygate_request_duration_seconds_bucket",
        "graygate_alias_weight_percent",
        "graygate_config_reloads_total",
        "function_alias_version:graygate_requests:share5m",
    ] {
        assert!(read.contains(metric), "no query reads {metric}: {read:?}");
    }
}

#[test]
fn the_function_row_repeats_per_function_and_its_panels_filter_by_it() {
    let dashboard = dashboard();
    let variables = at(&dashboard, "/templating/list", FILE).as_array().unwrap();
    let function = variables.iter().find(|v| v["name"] == "function").expect("a `function` variable");
    assert_eq!(function["type"], "query");
    assert_eq!(function["multi"], true, "several functions at once");
    assert!(variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource"));

    let panels = at(&dashboard, "/panels", FILE).as_array().unwrap();
    let row = panels
        .iter()
        .position(|p| p["type"] == "row" && p["repeat"] == "function")
        .expect("a row repeated per function");
    let per_function: Vec<&Value> = panels[row + 1..].iter().take_while(|p| p["type"] != "row").collect();
    assert!(per_function.len() >= 4, "{} panels per function", per_function.len());
    let mut expressions = String::new();
    for panel in &per_function {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.contains(r#"function="$function""#), "{}: not filtered by $function: {expr}", panel["title"]);
            expressions.push_str(expr);
        }
    }
    for (what, needle) in [
        ("requests/s by version", "sum by (version) (rate(graygate_requests_total"),
        ("error ratio", r#"code=~"5..""#),
        ("p50", "histogram_quantile(0.5,"),
        ("p99", "histogram_quantile(0.99,"),
        ("configured weight", "graygate_alias_weight_percent"),
        ("observed share", "graygate_requests:share5m"),
    ] {
        assert!(expressions.contains(needle), "no per-function panel shows {what} ({needle})");
    }
    let reloads = panels.iter().any(|p| {
        p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["expr"].as_str().unwrap().contains("graygate_config_reloads_total"))
    });
    assert!(reloads, "no panel shows reload events");
}
