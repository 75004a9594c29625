//! FunctionGraph request and response bodies, as the official SDKs send and parse them.

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use crate::routes::{AliasSpec, FunctionSpec, RoutesFile, TriggerSpec, VersionSpec, VersionStrategy};

/// `POST …/versions`.
#[expect(dead_code, reason = "fields the SDKs send that graygate accepts but has no use for")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishVersion {
    pub version: Option<String>,
    pub description: Option<String>,
    /// Accepted for SDK compatibility; graygate versions have no code package to digest.
    pub digest: Option<String>,
}

/// `POST …/aliases` and `PUT …/aliases/{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasBody {
    pub name: Option<String>,
    pub version: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "weights")]
    pub additional_version_weights: Option<IndexMap<String, i64>>,
    pub additional_version_strategy: Option<IndexMap<String, VersionStrategy>>,
}

/// `PUT …/code`: points `latest` at a new upstream (graygate reads `code_url` as the URL
/// of the code that serves `latest`); the SDK's other fields are accepted and ignored.
#[expect(dead_code, reason = "fields the SDKs send that graygate accepts but has no use for")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCode {
    pub code_url: Option<String>,
    pub code_type: Option<String>,
    pub code_filename: Option<String>,
    pub func_code: Option<Value>,
    pub depend_list: Option<Value>,
    pub depend_version_list: Option<Value>,
    pub code_encrypt_kms_key_id: Option<Value>,
}

/// `POST /triggers/{urn}`: the envelope; `event_data` is read per trigger type.
#[expect(dead_code, reason = "fields the SDKs send that graygate accepts but has no use for")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTrigger {
    pub trigger_type_code: String,
    pub trigger_status: Option<String>,
    pub event_type_code: Option<String>,
    pub event_data: Value,
}

/// An APIG trigger's `event_data`. graygate routes on `name`, `path` and `req_method`;
/// the other fields an SDK sends describe the cloud's API gateway and are accepted.
#[expect(dead_code, reason = "fields the SDKs send that graygate accepts but has no use for")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApigEventData {
    pub name: Option<String>,
    pub path: Option<String>,
    pub req_method: Option<String>,
    pub env_name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub protocol: Option<Value>,
    pub group_id: Option<Value>,
    pub group_name: Option<Value>,
    pub match_mode: Option<Value>,
    pub env_id: Option<Value>,
    pub auth: Option<Value>,
    pub sl_domain: Option<Value>,
    pub backend_type: Option<Value>,
    pub instance_id: Option<Value>,
    pub roma_app_id: Option<Value>,
    pub api_id: Option<Value>,
    pub api_name: Option<Value>,
    pub invoke_url: Option<Value>,
    pub func_info: Option<Value>,
    pub triggerid: Option<Value>,
    pub timeout: Option<Value>,
}

/// Weights as a JSON object, or (the 2022 API edition) as a JSON object inside a string.
fn weights<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<IndexMap<String, i64>>, D::Error> {
    use serde::de::Error;
    let object = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(None),
        Some(Value::String(text)) => serde_json::from_str::<Value>(&text)
            .map_err(|e| D::Error::custom(format!("the string is not JSON: {e}")))?,
        Some(other) => other,
    };
    let Value::Object(entries) = object else {
        return Err(D::Error::custom("expected an object of version → integer weight (or that object as a string)"));
    };
    entries
        .into_iter()
        .map(|(version, weight)| match weight.as_i64() {
            Some(weight) => Ok((version, weight)),
            None => Err(D::Error::custom(format!("weight of \"{version}\" must be an integer, got {weight}"))),
        })
        .collect::<Result<IndexMap<_, _>, _>>()
        .map(Some)
}

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

/// A function version in the shape of FunctionGraph's function configuration.
pub fn version_view(routes: &RoutesFile, function: &FunctionSpec, version: Option<&VersionSpec>) -> Value {
    let (name, upstream, description, modified) = match version {
        Some(v) => (v.version.as_str(), v.upstream.as_str(), v.description.as_deref(), v.last_modified.as_deref()),
        None => ("latest", function.upstream.as_str(), None, None),
    };
    json!({
        "func_urn": format!("{}:{name}", function_urn(routes, function)),
        "func_name": function.name,
        "package": function.package,
        "runtime": "Http",
        "code_type": "url",
        "code_url": upstream,
        "timeout": function.timeout_ms.map_or(30, |ms| ms.div_ceil(1000)),
        "version": name,
        "description": description.unwrap_or(""),
        "version_description": description.unwrap_or(""),
        "last_modified": modified.unwrap_or(""),
    })
}

pub fn trigger_view(function: &FunctionSpec, trigger: &TriggerSpec) -> Value {
    let id = trigger.effective_id(&function.name);
    let created = trigger.created_time.as_deref().unwrap_or("");
    json!({
        "trigger_id": id,
        "trigger_type_code": "APIG",
        "trigger_status": "ACTIVE",
        "event_data": {
            "triggerid": id,
            "name": trigger.effective_name(&function.name),
            "path": trigger.effective_path(&function.name),
            "req_method": trigger.req_method.as_deref().unwrap_or("ANY"),
            "env_name": "RELEASE",
            "protocol": "HTTP",
            "match_mode": "SWA",
            "backend_type": "FUNCTION",
            "func_info": { "version": trigger.target },
        },
        "created_time": created,
        "last_updated_time": created,
    })
}
