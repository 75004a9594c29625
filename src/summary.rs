//! The one-screen summary `graygate check` prints for a valid routes file.

use std::fmt::Write as _;

use crate::routes::{AliasSpec, RoutesFile};

/// Functions listed in full; the rest are counted, so the summary stays one screen.
const MAX_LISTED_FUNCTIONS: usize = 10;

/// `source` names where the routes came from (a file's path, an etcd prefix and revision).
pub fn render(source: &str, routes: &RoutesFile) -> String {
    let count = |f: fn(&crate::routes::FunctionSpec) -> usize| routes.functions.iter().map(f).sum::<usize>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: ok (project {}, region {}): {} function(s), {} version(s), {} alias(es), {} trigger(s)",
        source,
        routes.project_id,
        routes.region,
        routes.functions.len(),
        count(|f| f.versions.len()),
        count(|f| f.aliases.len()),
        count(|f| f.triggers.len()),
    );
    for function in routes.functions.iter().take(MAX_LISTED_FUNCTIONS) {
        let timeout = function.timeout_ms.map_or_else(|| "default timeout".to_owned(), |ms| format!("timeout {ms} ms"));
        let _ = writeln!(
            out,
            "function {} (package {}, {timeout}); latest -> {}",
            function.name, function.package, function.upstream
        );
        for version in &function.versions {
            let _ = writeln!(out, "  version {:<12} -> {}", version.version, version.upstream);
        }
        for alias in &function.aliases {
            let _ = writeln!(out, "  alias   {:<12} -> {}", alias.name, describe_alias(alias));
        }
        for trigger in &function.triggers {
            let _ = writeln!(
                out,
                "  trigger {:<24} {} -> {}{}",
                trigger.effective_name(&function.name),
                trigger.effective_path(&function.name),
                trigger.target,
                trigger.req_method.as_deref().map_or_else(String::new, |m| format!(" ({m} only)")),
            );
        }
    }
    if routes.functions.len() > MAX_LISTED_FUNCTIONS {
        let _ = writeln!(out, "… and {} more function(s)", routes.functions.len() - MAX_LISTED_FUNCTIONS);
    }
    out
}

fn describe_alias(alias: &AliasSpec) -> String {
    let extra: i64 = alias.additional_version_weights.values().sum();
    let mut parts = vec![format!("{} {}%", alias.version, 100 - extra)];
    for (version, weight) in &alias.additional_version_weights {
        parts.push(format!("{version} {weight}%"));
    }
    let mut text = parts.join(", ");
    for (version, strategy) in &alias.additional_version_strategy {
        let joiner = if strategy.combine_type == "or" { " or " } else { " and " };
        let rules: Vec<String> = strategy.rules.iter().map(|r| format!("{} {} {}", r.param, r.op, r.value)).collect();
        let _ = write!(text, "; {version} when {}", rules.join(joiner));
    }
    if let Some(sticky) = &alias.sticky {
        let key = match (&sticky.header, &sticky.cookie) {
            (Some(header), _) => format!("header {header}"),
            (None, Some(cookie)) => format!("cookie {cookie}"),
            (None, None) => String::from("nothing"),
        };
        let _ = write!(text, "; sticky by {key}");
    }
    text
}
