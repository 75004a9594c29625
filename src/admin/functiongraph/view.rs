//! FunctionGraph response bodies, as the official SDKs parse them. Only what graygate
//! models is shown: a field graygate would have to invent is left out, not faked.

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Value, json};

use crate::routes::edit::code_digest;
use crate::routes::{AliasSpec, FunctionSpec, RoutesFile, TriggerSpec, VersionSpec, VersionStrategy};

/// `urn:fss:{region}:{project}:function:{package}:{name}` and its qualified forms.
pub fn function_urn(routes: &RoutesFile, function: &FunctionSpec) -> String {
    format!("urn:fss:{}:{}:function:{}:{}", routes.region, routes.project_id, function.package, function.name)
}

#[derive(Serialize)]
pub struct AliasView<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    last_modified: &'a str,
    alias_urn: String,
    additional_version_weights: &'a IndexMap<String, i64>,
    additional_version_strategy: &'a IndexMap<String, VersionStrategy>,
}

pub fn alias_view<'a>(routes: &RoutesFile, function: &FunctionSpec, alias: &'a AliasSpec) -> AliasView<'a> {
    AliasView {
        name: &alias.name,
        version: &alias.version,
        description: alias.description.as_deref().unwrap_or(""),
        last_modified: alias.last_modified.as_deref().unwrap_or(""),
        alias_urn: format!("{}:!{}", function_urn(routes, function), alias.name),
        additional_version_weights: &alias.additional_version_weights,
        additional_version_strategy: &alias.additional_version_strategy,
    }
}

/// The execution timeout in seconds (FunctionGraph's default 30 s when none is set).
fn timeout_s(function: &FunctionSpec) -> u64 {
    function.timeout_ms.map_or(30, |ms| ms.div_ceil(1000))
}

/// A function version (`None`: latest) in the shape of FunctionGraph's function
/// configuration: what `show_function_config`, `list_function_versions` and
/// `create_function_version` answer.
pub fn version_view(routes: &RoutesFile, function: &FunctionSpec, version: Option<&VersionSpec>) -> Value {
    let (name, upstream, description, modified) = match version {
        Some(v) => (v.version.as_str(), v.upstream.as_str(), v.description.as_deref(), v.last_modified.as_deref()),
        None => ("latest", function.upstream.as_str(), function.description.as_deref(), None),
    };
    json!({
        "func_urn": format!("{}:{name}", function_urn(routes, function)),
        "func_name": function.name,
        "package": function.package,
        "runtime": "http",
        "code_type": "url",
        "code_url": upstream,
        "digest": code_digest(upstream),
        "timeout": timeout_s(function),
        "version": name,
        "description": description.unwrap_or(""),
        "version_description": version.and_then(|v| v.description.as_deref()).unwrap_or(""),
        "last_modified": modified.unwrap_or(""),
    })
}

/// `show_function_code`: where latest's code is and its digest.
pub fn code_view(routes: &RoutesFile, function: &FunctionSpec) -> Value {
    json!({
        "func_urn": format!("{}:latest", function_urn(routes, function)),
        "func_name": function.name,
        "runtime": "http",
        "code_type": "url",
        "code_url": function.upstream,
        "digest": code_digest(&function.upstream),
    })
}

/// A function as `list_functions` shows it: its latest, and how many versions it has.
pub fn function_entry(routes: &RoutesFile, function: &FunctionSpec) -> Value {
    let mut entry = version_view(routes, function, None);
    entry["func_urn"] = Value::String(function_urn(routes, function));
    entry
}

/// An APIG trigger; `base` is the data plane's public URL (`invoke_url` = base + path).
pub fn trigger_view(function: &FunctionSpec, trigger: &TriggerSpec, base: &str) -> Value {
    let id = trigger.effective_id(&function.name);
    let created = trigger.created_time.as_deref().unwrap_or("");
    let path = trigger.effective_path(&function.name);
    json!({
        "trigger_id": id,
        "trigger_type_code": "APIG",
        "trigger_status": trigger.trigger_status.as_str(),
        "event_data": {
            "triggerid": id,
            "name": trigger.effective_name(&function.name),
            "path": path,
            "req_method": trigger.req_method.as_deref().unwrap_or("ANY"),
            "env_name": "RELEASE",
            "protocol": "HTTP",
            "match_mode": "SWA",
            "backend_type": "FUNCTION",
            "func_info": { "version": trigger.target },
            "invoke_url": format!("{}{path}", base.trim_end_matches('/')),
        },
        "created_time": created,
        "last_updated_time": created,
    })
}
