//! FunctionGraph request bodies, as the official SDKs send them (responses: `view`).

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{FgError, bad};
use crate::routes::VersionStrategy;

/// `POST …/versions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishVersion {
    pub version: Option<String>,
    pub description: Option<String>,
    /// Must be latest's code digest when given (see [`crate::routes::edit::code_digest`]).
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

/// `PUT /triggers/{urn}/{type}/{id}`. The SDK types `event_data` as a list of another
/// trigger type's fields; an object (APIG's fields) or a list of objects is accepted.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTrigger {
    pub trigger_status: Option<String>,
    #[serde(default)]
    pub event_data: Value,
}

impl UpdateTrigger {
    /// The APIG fields the body carries (none when `event_data` is absent).
    pub fn apig_fields(&self) -> Result<ApigEventData, FgError> {
        let object = match &self.event_data {
            Value::Null => Value::Object(Default::default()),
            Value::Array(items) => {
                let mut merged = serde_json::Map::new();
                for item in items {
                    let Value::Object(fields) = item else {
                        return Err(bad("FSS.1107", "event_data must be an object (or a list of objects)"));
                    };
                    merged.extend(fields.clone());
                }
                Value::Object(merged)
            }
            other => other.clone(),
        };
        serde_path_to_error::deserialize(object).map_err(|e| {
            bad("FSS.1107", format!("invalid APIG trigger parameter event_data.{}: {}", e.path(), e.inner()))
        })
    }
}

/// `POST /functions`. graygate models a function as the upstream its latest runs
/// (`code_url`), its package, timeout and description; the SDK's other fields are
/// accepted and not stored (nothing in graygate would act on them).
#[expect(dead_code, reason = "fields the SDKs send that graygate accepts but has no use for")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateFunction {
    pub func_name: Option<String>,
    pub package: Option<String>,
    pub runtime: Option<String>,
    pub timeout: Option<i64>,
    pub handler: Option<String>,
    pub memory_size: Option<Value>,
    pub code_type: Option<String>,
    pub code_url: Option<String>,
    pub description: Option<String>,
    pub code_filename: Option<Value>,
    pub func_code: Option<Value>,
    pub depend_version_list: Option<Value>,
    pub func_vpc: Option<Value>,
    pub gpu_memory: Option<Value>,
    pub gpu_type: Option<Value>,
    pub custom_image: Option<Value>,
    pub user_data: Option<Value>,
    pub encrypted_user_data: Option<Value>,
    pub xrole: Option<Value>,
    pub app_xrole: Option<Value>,
    pub mount_config: Option<Value>,
    pub initializer_handler: Option<Value>,
    pub initializer_timeout: Option<Value>,
    pub pre_stop_handler: Option<Value>,
    pub pre_stop_timeout: Option<Value>,
    pub enterprise_project_id: Option<Value>,
    #[serde(rename = "type")]
    pub kind: Option<Value>,
    pub log_config: Option<Value>,
    pub network_controller: Option<Value>,
    pub is_stateful_function: Option<Value>,
    pub enable_dynamic_memory: Option<Value>,
    pub enable_lts_log: Option<Value>,
    pub lts_custom_tag: Option<Value>,
    pub user_data_encrypt_kms_key_id: Option<Value>,
    pub code_encrypt_kms_key_id: Option<Value>,
    pub domain_names: Option<Value>,
    pub tags: Option<Value>,
}

/// `PUT /functions/{urn}/config`: graygate applies `timeout` and `description`; the
/// SDK's other fields are accepted and not stored.
#[expect(dead_code, reason = "fields the SDKs send that graygate accepts but has no use for")]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    pub func_name: Option<String>,
    pub runtime: Option<String>,
    pub timeout: Option<i64>,
    pub handler: Option<Value>,
    pub memory_size: Option<Value>,
    pub description: Option<String>,
    pub gpu_memory: Option<Value>,
    pub gpu_type: Option<Value>,
    pub user_data: Option<Value>,
    pub encrypted_user_data: Option<Value>,
    pub xrole: Option<Value>,
    pub app_xrole: Option<Value>,
    pub func_vpc: Option<Value>,
    pub peering_cidr: Option<Value>,
    pub mount_config: Option<Value>,
    pub strategy_config: Option<Value>,
    pub custom_image: Option<Value>,
    pub extend_config: Option<Value>,
    pub initializer_handler: Option<Value>,
    pub initializer_timeout: Option<Value>,
    pub pre_stop_handler: Option<Value>,
    pub pre_stop_timeout: Option<Value>,
    pub ephemeral_storage: Option<Value>,
    pub enterprise_project_id: Option<Value>,
    pub log_config: Option<Value>,
    pub network_controller: Option<Value>,
    pub is_stateful_function: Option<Value>,
    pub enable_dynamic_memory: Option<Value>,
    pub enable_auth_in_header: Option<Value>,
    pub domain_names: Option<Value>,
    pub restore_hook_handler: Option<Value>,
    pub restore_hook_timeout: Option<Value>,
    pub heartbeat_handler: Option<Value>,
    pub enable_class_isolation: Option<Value>,
    pub enable_lts_log: Option<Value>,
    pub lts_custom_tag: Option<Value>,
    pub user_data_encrypt_kms_key_id: Option<Value>,
}

/// FunctionGraph's execution timeout, in seconds, as milliseconds.
pub fn timeout_ms(seconds: i64) -> Result<u64, FgError> {
    match u64::try_from(seconds) {
        Ok(s @ 3..=900) => Ok(s * 1000),
        _ => Err(bad("FSS.0400", format!("timeout must be from 3 to 900 seconds, got {seconds}"))),
    }
}

/// graygate runs HTTP functions: what `runtime` may say.
pub fn check_runtime(runtime: Option<&str>) -> Result<(), FgError> {
    match runtime {
        None => Ok(()),
        Some(r) if r.eq_ignore_ascii_case("http") || r.eq_ignore_ascii_case("custom") => Ok(()),
        Some(r) => Err(bad(
            "FSS.0400",
            format!("runtime \"{r}\" is not supported: graygate forwards to HTTP functions (runtime http)"),
        )),
    }
}

/// The upstream a `code_type`/`code_url` pair names. graygate runs no code package: a
/// function's code is the URL of the HTTP service its latest forwards to (`code_type`
/// `url`, or absent). A package (inline, zip, jar, an OBS object, an image) is refused, as
/// is a `code_url` that points at one (an archive's name).
pub fn code_upstream(code_type: Option<&str>, code_url: Option<&str>) -> Result<String, FgError> {
    match code_type {
        None | Some("url") => {}
        Some(other @ ("inline" | "zip" | "obs" | "jar" | "Custom-Image-Swr")) => {
            return Err(bad(
                "FSS.0400",
                format!(
                    "code_type \"{other}\" is a code package, which graygate cannot run: it forwards to a running HTTP service; use code_type \"url\" with code_url http://host:port"
                ),
            ));
        }
        Some(other) => {
            return Err(bad("FSS.0400", format!("invalid code_type \"{other}\": graygate accepts \"url\"")));
        }
    }
    let url = code_url.ok_or_else(|| bad("FSS.0400", "code_url (the upstream that serves latest) is required"))?;
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    if [".zip", ".jar", ".war", ".tar", ".gz", ".tgz", ".7z", ".rar"].iter().any(|ext| path.ends_with(ext)) {
        return Err(bad(
            "FSS.0400",
            format!("code_url \"{url}\" names a code package; graygate needs the URL of a running HTTP service"),
        ));
    }
    crate::routes::validate::check_upstream(url).map_err(|why| bad("FSS.0400", format!("code_url: {why}")))?;
    Ok(url.to_owned())
}

/// `marker` and `maxitems` of a list request (`maxitems` capped at `max`).
pub fn page(query: Option<&str>, max: usize) -> Result<(usize, usize), FgError> {
    let (mut marker, mut max_items) = (0usize, max);
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let number =
            || value.parse::<usize>().map_err(|_| bad("FSS.0400", format!("{key} must be a non-negative integer")));
        match key.as_ref() {
            "marker" => marker = number()?,
            "maxitems" => max_items = number()?.clamp(1, max),
            _ => {}
        }
    }
    Ok((marker, max_items))
}
