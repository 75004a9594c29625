//! Semantic validation of a parsed routes file: names, references, weights, rules and paths.
//!
//! The rules follow FunctionGraph's (name charset and length, weights 1–100 summing to at
//! most 100, an additional version is never the alias's own version nor `latest`, `=`/`in`
//! operators, `and`/`or`), plus what a router needs (every reference resolves, trigger paths
//! are unique and canonical). Every problem is collected with its field path, so one run
//! reports all of them.

use std::fmt;

use rustc_hash::{FxHashMap, FxHashSet};

use super::file::{AliasSpec, FunctionSpec, RoutesFile, RuleSpec, TriggerSpec};

/// FunctionGraph's quota of aliases per function.
pub const MAX_ALIASES_PER_FUNCTION: usize = 10;
/// FunctionGraph's longest function execution time.
pub const MAX_TIMEOUT_MS: u64 = 900_000;
const MAX_NAME_LEN: usize = 64;
const MAX_PATH_LEN: usize = 1024;

/// One validation problem, located by its field path (`functions[0].aliases[1].version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub path: String,
    pub message: String,
}

#[derive(Default)]
struct Issues(Vec<Issue>);

impl Issues {
    fn push(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.0.push(Issue { path: path.to_string(), message: message.into() });
    }
}

/// A field path (`functions[0].aliases[1].version`), turned into text only when an issue is
/// reported: a valid file of 10,000 functions then costs no path strings at all.
#[derive(Clone, Copy)]
struct At<'a> {
    steps: [Step<'a>; MAX_DEPTH],
    len: usize,
}

#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

const MAX_DEPTH: usize = 12;

impl<'a> At<'a> {
    const ROOT: At<'static> = At { steps: [Step::Index(0); MAX_DEPTH], len: 0 };

    fn field(self, name: &'a str) -> Self {
        self.push(Step::Field(name))
    }

    fn index(self, index: usize) -> Self {
        self.push(Step::Index(index))
    }

    fn push(mut self, step: Step<'a>) -> Self {
        if self.len < MAX_DEPTH {
            self.steps[self.len] = step;
            self.len += 1;
        }
        self
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps[..self.len].iter().enumerate() {
            match step {
                Step::Field(name) if i == 0 => f.write_str(name)?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Checks the whole file and returns every issue found (empty when valid).
pub fn validate(file: &RoutesFile) -> Vec<Issue> {
    validate_file(file)
}

fn validate_file<'a>(file: &'a RoutesFile) -> Vec<Issue> {
    let mut issues = Issues::default();
    if let Err(why) = check_identifier(&file.project_id) {
        issues.push("project_id", why);
    }
    if let Err(why) = check_identifier(&file.region) {
        issues.push("region", why);
    }
    let mut function_names = FxHashSet::default();
    function_names.reserve(file.functions.len());
    let mut trigger_paths: FxHashMap<String, At<'a>> = FxHashMap::default();
    trigger_paths.reserve(file.functions.len());
    for (i, function) in file.functions.iter().enumerate() {
        let at = At::ROOT.field("functions").index(i);
        if !function_names.insert(function.name.as_str()) {
            issues.push(at.field("name"), format!("function \"{}\" is defined twice", function.name));
        }
        validate_function(function, at, &mut trigger_paths, &mut issues);
    }
    issues.0
}

fn validate_function<'a>(
    function: &'a FunctionSpec,
    at: At<'a>,
    trigger_paths: &mut FxHashMap<String, At<'a>>,
    issues: &mut Issues,
) {
    if let Err(why) = check_name(&function.name) {
        issues.push(at.field("name"), why);
    }
    if let Err(why) = check_name(&function.package) {
        issues.push(at.field("package"), why);
    }
    // An empty upstream is a function without code yet (an ESA routine just created):
    // nothing may route to its latest until it has some.
    if !function.upstream.is_empty()
        && let Err(why) = check_upstream(&function.upstream)
    {
        issues.push(at.field("upstream"), why);
    }
    let no_code = function.upstream.is_empty();
    if let Some(timeout) = function.timeout_ms
        && !(1..=MAX_TIMEOUT_MS).contains(&timeout)
    {
        issues.push(at.field("timeout_ms"), format!("must be between 1 and {MAX_TIMEOUT_MS}, got {timeout}"));
    }

    let mut versions = FxHashSet::default();
    for (j, version) in function.versions.iter().enumerate() {
        let vat = at.field("versions").index(j);
        if let Err(why) = check_version_name(&version.version) {
            issues.push(vat.field("version"), why);
        } else if !versions.insert(version.version.as_str()) {
            issues.push(vat.field("version"), format!("version \"{}\" is defined twice", version.version));
        }
        if let Err(why) = check_upstream(&version.upstream) {
            issues.push(vat.field("upstream"), why);
        }
    }

    if function.aliases.len() > MAX_ALIASES_PER_FUNCTION {
        issues.push(
            at.field("aliases"),
            format!("a function has at most {MAX_ALIASES_PER_FUNCTION} aliases, got {}", function.aliases.len()),
        );
    }
    let mut aliases = FxHashSet::default();
    for (j, alias) in function.aliases.iter().enumerate() {
        let aat = at.field("aliases").index(j);
        if let Err(why) = check_name(&alias.name) {
            issues.push(aat.field("name"), why);
        } else if versions.contains(alias.name.as_str()) || alias.name.eq_ignore_ascii_case("latest") {
            issues.push(aat.field("name"), format!("alias \"{}\" has the name of a version", alias.name));
        } else if !aliases.insert(alias.name.as_str()) {
            issues.push(aat.field("name"), format!("alias \"{}\" is defined twice", alias.name));
        }
        validate_alias(alias, aat, &versions, issues);
        if no_code && alias.version == "latest" {
            issues.push(aat.field("version"), "latest has no code yet (its upstream is empty)");
        }
    }

    let mut trigger_names = FxHashSet::default();
    for (j, trigger) in function.triggers.iter().enumerate() {
        let tat = at.field("triggers").index(j);
        validate_trigger(function, trigger, tat, &versions, &aliases, trigger_paths, issues);
        if no_code && trigger.target == "latest" {
            issues.push(tat.field("target"), "latest has no code yet (its upstream is empty)");
        }
        if !trigger_names.insert(trigger.effective_name(&function.name)) {
            issues.push(
                tat.field("name"),
                format!("trigger \"{}\" is defined twice", trigger.effective_name(&function.name)),
            );
        }
    }
}

fn validate_alias<'a>(alias: &'a AliasSpec, at: At<'a>, versions: &FxHashSet<&str>, issues: &mut Issues) {
    if alias.version != "latest" && !versions.contains(alias.version.as_str()) {
        issues.push(at.field("version"), format!("version \"{}\" does not exist", alias.version));
    }
    let mut total: i64 = 0;
    for (version, weight) in &alias.additional_version_weights {
        let wat = at.field("additional_version_weights").field(version);
        check_additional_version(alias, version, versions, wat, issues);
        if !(1..=100).contains(weight) {
            issues.push(wat, format!("weight must be an integer from 1 to 100, got {weight}"));
        } else {
            total += weight;
        }
    }
    if total > 100 {
        issues.push(at.field("additional_version_weights"), format!("weights sum to {total}, more than 100"));
    }
    for (version, strategy) in &alias.additional_version_strategy {
        let sat = at.field("additional_version_strategy").field(version);
        check_additional_version(alias, version, versions, sat, issues);
        if strategy.combine_type != "and" && strategy.combine_type != "or" {
            issues.push(
                sat.field("combine_type"),
                format!("must be \"and\" or \"or\", got \"{}\"", strategy.combine_type),
            );
        }
        if strategy.rules.is_empty() {
            issues.push(sat.field("rules"), "at least one rule is required");
        }
        for (k, rule) in strategy.rules.iter().enumerate() {
            validate_rule(rule, sat.field("rules").index(k), issues);
        }
    }
    if let Some(sticky) = &alias.sticky {
        let sat = at.field("sticky");
        match (&sticky.header, &sticky.cookie) {
            (Some(name), None) | (None, Some(name)) => {
                if let Err(why) = check_token(name) {
                    issues.push(sat, why);
                }
            }
            _ => issues.push(sat, "set exactly one of \"header\" or \"cookie\""),
        }
    }
}

fn check_additional_version(
    alias: &AliasSpec,
    version: &str,
    versions: &FxHashSet<&str>,
    at: At<'_>,
    issues: &mut Issues,
) {
    if version.eq_ignore_ascii_case("latest") {
        issues.push(at, "an additional version cannot be latest");
    } else if version == alias.version {
        issues.push(at, format!("additional version \"{version}\" is the alias's own version"));
    } else if !versions.contains(version) {
        issues.push(at, format!("version \"{version}\" does not exist"));
    }
}

fn validate_rule(rule: &RuleSpec, at: At<'_>, issues: &mut Issues) {
    if !rule.rule_type.eq_ignore_ascii_case("header") {
        issues.push(at.field("rule_type"), format!("must be \"Header\", got \"{}\"", rule.rule_type));
    }
    if let Err(why) = check_token(&rule.param) {
        issues.push(at.field("param"), why);
    }
    match rule.op.as_str() {
        "=" => {
            if rule.value.is_empty() {
                issues.push(at.field("value"), "must not be empty");
            }
        }
        "in" => {
            if rule.value.split(',').any(|v| v.trim().is_empty()) {
                issues.push(at.field("value"), "must be comma-separated non-empty values");
            }
        }
        other => issues.push(at.field("op"), format!("must be \"=\" or \"in\", got \"{other}\"")),
    }
    if http::HeaderValue::from_str(&rule.value).is_err() {
        issues.push(at.field("value"), "must be printable ASCII");
    }
}

fn validate_trigger<'a>(
    function: &'a FunctionSpec,
    trigger: &'a TriggerSpec,
    at: At<'a>,
    versions: &FxHashSet<&str>,
    aliases: &FxHashSet<&str>,
    trigger_paths: &mut FxHashMap<String, At<'a>>,
    issues: &mut Issues,
) {
    let target = trigger.target.as_str();
    if target != "latest" && !versions.contains(target) && !aliases.contains(target) {
        issues.push(
            at.field("target"),
            format!("\"{target}\" is neither latest, a version nor an alias of \"{}\"", function.name),
        );
    }
    if let Some(name) = &trigger.name
        && let Err(why) = check_trigger_name(name)
    {
        issues.push(at.field("name"), why);
    }
    if let Some(method) = &trigger.req_method
        && !matches!(method.as_str(), "ANY" | "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS")
    {
        issues.push(
            at.field("req_method"),
            format!("must be ANY, GET, POST, PUT, DELETE, PATCH, HEAD or OPTIONS, got \"{method}\""),
        );
    }
    let path = trigger.effective_path(&function.name);
    let path_at = if trigger.path.is_some() { at.field("path") } else { at.to_owned() };
    if let Err(why) = check_trigger_path(&path) {
        issues.push(path_at, why);
    } else if let Some(owner) = trigger_paths.get(&path) {
        issues.push(path_at, format!("path \"{path}\" is already used by {owner}"));
    } else {
        trigger_paths.insert(path, at);
    }
}

// === name and value checks, shared with the management API ===

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Function, package and alias names: FunctionGraph's rule.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(is_name_char);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a valid name: 1-{MAX_NAME_LEN} letters, digits, '_' or '-', starting with a letter and ending with a letter or digit",
            name.escape_debug()
        ))
    }
}

/// Version names also allow '.' and a leading digit (`1.0`, `20240101-120000`).
pub fn check_version_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| is_name_char(c) || c == '.')
        && !name.eq_ignore_ascii_case("latest");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{}\" is not a valid version: 1-{MAX_NAME_LEN} letters, digits, '.', '_' or '-', starting and ending with a letter or digit, and not \"latest\"",
            name.escape_debug()
        ))
    }
}

fn check_trigger_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_LEN * 2).contains(&name.len()) && name.chars().all(is_name_char);
    if ok { Ok(()) } else { Err(format!("\"{}\" is not a valid trigger name", name.escape_debug())) }
}

fn check_identifier(value: &str) -> Result<(), String> {
    if (1..=MAX_NAME_LEN).contains(&value.len()) && value.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(format!("\"{}\" must be 1-{MAX_NAME_LEN} letters, digits, '_' or '-'", value.escape_debug()))
    }
}

/// Header, cookie and rule parameter names: letters, digits, '_' and '-'.
pub fn check_token(name: &str) -> Result<(), String> {
    if (1..=MAX_NAME_LEN).contains(&name.len()) && name.chars().all(is_name_char) {
        Ok(())
    } else {
        Err(format!("\"{}\" must be 1-{MAX_NAME_LEN} letters, digits, '_' or '-'", name.escape_debug()))
    }
}

/// Upstreams are `http://`, `https://` or `h2c://host:port[/base]`, without query or fragment.
pub fn check_upstream(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("\"{}\" is not a URL: {e}", url.escape_debug()))?;
    if !matches!(uri.scheme_str(), Some("http" | "https" | "h2c")) {
        return Err(format!("\"{url}\" must start with http://, https:// or h2c://"));
    }
    if uri.authority().is_none_or(|a| a.host().is_empty()) {
        return Err(format!("\"{url}\" has no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(format!("\"{url}\" must not have a query or fragment"));
    }
    Ok(())
}

/// Trigger paths are canonical: `/`-separated segments of URL path characters, no empty,
/// `.` or `..` segment, no trailing slash, no percent-escape (so no encoded `/` either).
pub fn check_trigger_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("path \"{}\" {why}", path.escape_debug()));
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("is too long");
    }
    if path == "/" {
        return Ok(());
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() {
            return bad("has an empty segment or a trailing '/'");
        }
        if segment == "." || segment == ".." {
            return bad("has a '.' or '..' segment");
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c);
        if !segment.chars().all(allowed) {
            return bad("has a character that is not allowed in a path segment");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
