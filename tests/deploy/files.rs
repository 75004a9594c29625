//! Reading deploy/: YAML documents as JSON values, and the metric names graygate exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(relative: &str) -> String {
    let path = repo().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a (multi-document) YAML file.
pub fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).unwrap_or_else(|e| panic!("{what}: not YAML: {e}")))
        .filter(|value| !value.is_null())
        .collect()
}

pub fn yaml(relative: &str) -> Value {
    let mut documents = yaml_documents(&read(relative), relative);
    assert_eq!(documents.len(), 1, "{relative}: one document expected");
    documents.remove(0)
}

/// Every document of a YAML file under the repository, each with that file's path.
pub fn objects_of(relative: &str) -> Vec<(String, Value)> {
    yaml_documents(&read(relative), relative).into_iter().map(|document| (relative.to_owned(), document)).collect()
}

/// A path under the repository, relative to it.
pub fn relative(path: &Path) -> String {
    path.strip_prefix(repo()).unwrap().display().to_string()
}

/// Every `.yaml` file under `relative`, recursively, sorted.
pub fn yaml_files(relative: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join(relative), &mut out);
    out.sort();
    out
}

/// The files that name exported metrics: the registry, and the collectors read at scrape time.
const METRIC_SOURCES: [&str; 2] = ["src/metrics.rs", "src/store/weights.rs"];

/// The metric names those files register, with a histogram's `_bucket`, `_sum` and
/// `_count` series in place of its own name.
pub fn exported_metrics() -> BTreeSet<String> {
    let source: String = METRIC_SOURCES.iter().map(|file| read(file)).collect();
    let mut names = BTreeSet::new();
    for (at, _) in source.match_indices("\"graygate_") {
        let rest = &source[at + 1..];
        let name = &rest[..rest.find('"').unwrap()];
        let histogram = source[..at].trim_end().ends_with("HistogramOpts::new(");
        if histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_owned());
        }
    }
    assert!(names.len() >= 8, "too few metric names found in src/metrics.rs: {names:?}");
    names
}

/// The recording rules of deploy/prometheus/rules.yml, in order.
pub fn recording_rules() -> Vec<String> {
    rules_of(&yaml("deploy/prometheus/rules.yml"))
        .filter_map(|rule| rule.get("record").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// Every rule of every group of a rules file.
pub fn rules_of(file: &Value) -> impl Iterator<Item = &Value> {
    file["groups"].as_array().expect("groups").iter().flat_map(|group| group["rules"].as_array().expect("rules"))
}

/// A value at a JSON pointer, or a failure naming it.
pub fn at<'a>(value: &'a Value, pointer: &str, what: &str) -> &'a Value {
    value.pointer(pointer).unwrap_or_else(|| panic!("{what}: no {pointer}"))
}

pub fn str_at<'a>(value: &'a Value, pointer: &str, what: &str) -> &'a str {
    at(value, pointer, what).as_str().unwrap_or_else(|| panic!("{what}: {pointer} is not a string"))
}
