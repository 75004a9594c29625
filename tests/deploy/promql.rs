//! The metric names a PromQL expression reads, and the rules and dashboard checked with it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::files::{exported_metrics, recording_rules, rules_of, yaml};

/// Keywords, and the aggregation operators (which may stand before `by (…)` instead of `(`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// The metric names (and recording rules) `expr` selects: identifiers that are neither
/// functions, keywords, label names (in `{}` or a grouping list) nor inside strings, ranges
/// or Grafana variables.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    let mut depth_skip: Option<char> = None; // inside {…} or […]
    let mut grouping = false; // the next (…) is a label list
    while i < chars.len() {
        let c = chars[i];
        if let Some(close) = depth_skip {
            if c == '"' || c == '\'' {
                i = skip_string(&chars, i);
                continue;
            }
            if c == close {
                depth_skip = None;
            }
            i += 1;
            continue;
        }
        match c {
            '"' | '\'' | '`' => {
                i = skip_string(&chars, i);
                continue;
            }
            '{' => depth_skip = Some('}'),
            '[' => depth_skip = Some(']'),
            '$' => {
                // A Grafana variable such as $function or ${datasource}.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_{}".contains(chars[i])) {
                    i += 1;
                }
                continue;
            }
            '(' if grouping => {
                grouping = false;
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:.".contains(chars[i])) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                grouping = false;
                if GROUPING.contains(&word.as_str()) {
                    grouping = true;
                } else if word.starts_with(|c: char| c.is_ascii_digit() || c == '.')
                    || KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
                    || next == Some('(')
                {
                    // a number, a duration, a keyword, or a function / aggregation call
                } else {
                    out.insert(word);
                }
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() && c != '(' {
            grouping = false;
        }
        i += 1;
    }
    out
}

fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut i = start + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// What a query may read: graygate's metrics and the recording rules.
pub fn known_names() -> BTreeSet<String> {
    let mut known = exported_metrics();
    known.extend(recording_rules());
    known
}

#[test]
fn the_extractor_finds_metrics_and_nothing_else() {
    let expr = r#"histogram_quantile(0.99, sum by (version, le) (rate(graygate_request_duration_seconds_bucket{job=~"$job", function="$function", le!="a b"}[$__rate_interval])))
        / on (namespace, job) group_left () max without (instance) (x:y:z offset 5m) > bool 1.5e3 and vector(1) unless nan"#;
    assert_eq!(
        metric_names(expr),
        ["graygate_request_duration_seconds_bucket", "x:y:z"].into_iter().map(String::from).collect()
    );
    let names = known_names();
    assert!(names.contains("graygate_requests_total") && names.contains("graygate_request_duration_seconds_bucket"));
    assert!(!names.contains("graygate_request_duration_seconds"), "a histogram is read through its series");
    assert!(!names.contains("graygate_request_total"), "{names:?}");
}

#[test]
fn every_rule_reads_only_graygate_metrics_or_earlier_recording_rules() {
    let rules = yaml("deploy/prometheus/rules.yml");
    let mut known = exported_metrics();
    let mut alerts = 0;
    for rule in rules_of(&rules) {
        let expr = rule["expr"].as_str().expect("expr");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr}");
        let unknown: Vec<_> = names.difference(&known).collect();
        assert!(unknown.is_empty(), "{unknown:?} in {expr} is neither a graygate metric nor an earlier recording rule");
        if let Some(record) = rule.get("record").and_then(Value::as_str) {
            assert!(known.insert(record.to_owned()), "{record} is recorded twice");
        } else {
            alerts += 1;
        }
    }
    assert!(alerts >= 5, "the five alerts of issue 6 at least: {alerts}");
}

#[test]
fn the_alerts_cover_what_an_operator_watches() {
    let rules = yaml("deploy/prometheus/rules.yml");
    let alerts: Vec<(&str, &str)> =
        rules_of(&rules).filter_map(|r| Some((r.get("alert")?.as_str()?, r["expr"].as_str()?))).collect();
    let reads = |name: &str, metric: &str| alerts.iter().any(|(alert, expr)| *alert == name && expr.contains(metric));
    assert!(reads("GraygateCanaryErrorRatioAbovePrimary", "graygate_request_errors:ratio_rate5m"));
    assert!(reads("GraygateCanaryLatencyAbovePrimary", "graygate_request_duration_seconds:p99_5m"));
    assert!(reads("GraygateTrafficShareDiverges", "graygate_alias_weight_percent"));
    assert!(reads("GraygateConfigReloadFailed", r#"graygate_config_reloads_total{result="failure"}"#));
    assert!(reads("GraygateUpstreamEjected", "graygate_upstream_ejections_total"));
    for rule in rules_of(&rules).filter(|r| r.get("alert").is_some()) {
        let name = rule["alert"].as_str().unwrap();
        assert!(rule.pointer("/labels/severity").is_some(), "{name}: no severity");
        assert!(rule.pointer("/annotations/summary").is_some(), "{name}: no summary");
    }
}
