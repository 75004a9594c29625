//! Documents built to be expensive: 200,000 levels of nesting (YAML flow and block, JSON)
//! and a YAML alias bomb are refused in well under a second, by `graygate check` and by a
//! live reload, and a valid file written right after one is live at once.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Gateway, PATIENCE, backends, metric_value, render};

const BIN: &str = env!("CARGO_BIN_EXE_graygate");
const DEEP: usize = 200_000;
const FAILURE: &str = "graygate_config_reloads_total{result=\"failure\"}";

const VALID: &str = r#"project_id: p1
functions:
  - name: hello
    upstream: "@v1@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
    aliases:
      - { name: prod, version: v1, additional_version_weights: { v2: @weight@ } }
    triggers:
      - { target: prod }
"#;

/// The hostile documents, each with the words its refusal must contain.
fn hostile() -> Vec<(&'static str, &'static str, String)> {
    let mut bomb =
        String::from("project_id: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    let names = ["b", "c", "d", "e", "f", "g", "h", "i", "j"];
    for (i, name) in names.iter().enumerate() {
        let previous = if i == 0 { "a" } else { names[i - 1] };
        bomb.push_str(&format!("x{name}: &{name} [{}]\n", vec![format!("*{previous}"); 9].join(",")));
    }
    vec![
        ("routes.yaml", "nested more than 32 levels", format!("functions: {}{}\n", "[".repeat(DEEP), "]".repeat(DEEP))),
        ("routes.yaml", "nested more than 32 levels", (0..DEEP).map(|_| "- ").collect::<String>() + "x\n"),
        (
            "routes.json",
            "nested more than 32 levels",
            format!("{{\"project_id\": \"p\", \"functions\": {}{}}}", "[".repeat(DEEP), "]".repeat(DEEP)),
        ),
        ("routes.yaml", "limit on YAML alias expansion", bomb),
    ]
}

#[test]
fn check_refuses_each_hostile_document_in_under_a_second_naming_the_limit() {
    for (name, expected, doc) in hostile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), &doc).unwrap();
        let config = dir.path().join("graygate.yaml");
        std::fs::write(&config, format!("routes: {name}\n")).unwrap();
        let started = Instant::now();
        let out = Command::new(BIN).args(["check", "--config"]).arg(&config).output().unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(stderr.contains(name), "the error names the file: {stderr}");
        assert!(took < Duration::from_secs(1), "{name} ({expected}) took {took:?}");
    }
}

#[test]
fn check_refuses_a_file_over_max_routes_bytes_without_parsing_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("routes.yaml"), format!("project_id: p\n# {}\n", "x".repeat(4096))).unwrap();
    let config = dir.path().join("graygate.yaml");
    std::fs::write(&config, "routes: routes.yaml\nlimits: { max_routes_bytes: 1024 }\n").unwrap();
    let out = Command::new(BIN).args(["check", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("routes.yaml: larger than the limit of 1024 bytes (limits.max_routes_bytes)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_reload_refuses_each_hostile_document_and_the_next_valid_file_is_live_within_2_s() {
    let b = backends(&["v1", "v2"]).await;
    let valid = |weight: u32| render(VALID, &b).replace("@weight@", &weight.to_string());
    let gateway = Gateway::start(&valid(5)).await;
    let mut failures = 0.0;
    let mut weight = 5;
    for (name, _, doc) in hostile() {
        // The YAML reader takes JSON too: the same file name for all.
        let started = Instant::now();
        std::fs::write(&gateway.routes_path, &doc).unwrap();
        failures = wait_for(&gateway, FAILURE, failures).await;
        let refused = started.elapsed();
        assert!(refused < Duration::from_secs(1), "{name}: refused after {refused:?}");

        weight += 10;
        let generation = gateway.app.routes().current().generation();
        let started = Instant::now();
        std::fs::write(&gateway.routes_path, valid(weight)).unwrap();
        gateway.wait_for_generation(generation + 1).await;
        let live = started.elapsed();
        assert!(live < Duration::from_secs(2), "the valid file after {name} was live after {live:?}");
        let table = gateway.app.routes().current();
        assert_eq!(table.source().spec().functions[0].aliases[0].additional_version_weights["v2"], i64::from(weight));
    }
}

/// Waits until `series` exceeds `above`; returns its value.
async fn wait_for(gateway: &Gateway, series: &str, above: f64) -> f64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let value = metric_value(&gateway.metrics().await, series);
        if value > above {
            return value;
        }
        assert!(Instant::now() < deadline, "{series} stayed at {value}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
