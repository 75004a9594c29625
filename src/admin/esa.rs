//! Alibaba Cloud ESA routine deployments, RPC style, as `alibabacloud-esa20240910` sends them.
//!
//! The action comes in `x-acs-action` (or an `Action` parameter); parameters are form
//! fields in the body or the query; `CodeVersions` is a JSON array in one field. A routine
//! is the graygate function of the same name, its code versions are the function's
//! versions, and a deployment to an environment sets the alias named after it.

use std::collections::HashMap;

use http::StatusCode;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AdminRequest, Reply, json_reply, now_text};
use crate::routes::edit::{self, EditError, Split};
use crate::routes::{FunctionSpec, RoutesFile};
use crate::store::{ApplyError, RoutesStore};

const ENVS: [&str; 2] = ["staging", "production"];

/// An ESA error: HTTP 400 (or 500) with `{RequestId, Code, Message}`.
#[derive(Debug)]
pub(crate) struct EsaError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn invalid(message: impl Into<String>) -> EsaError {
    EsaError { status: StatusCode::BAD_REQUEST, code: "InvalidParameter", message: message.into() }
}

fn routine_not_exist(name: &str) -> EsaError {
    EsaError {
        status: StatusCode::BAD_REQUEST,
        code: "RoutineNotExist",
        message: format!("The routine name does not exist: \"{name}\". Check the routine name and try again."),
    }
}

/// ESA's codes for the edit layer's refusals (its API page: every business error is a 400).
impl From<EditError> for EsaError {
    fn from(e: EditError) -> Self {
        use EditError as E;
        let code = match &e {
            E::FunctionNotFound(name) => return routine_not_exist(name),
            E::VersionNotFound(_) => "ParameterNotExist",
            E::VersionInUse { .. } | E::AliasInUse { .. } | E::FunctionInUse { .. } => "DependedByOthers",
            E::FunctionExists(_) => "RoutineNameAlreadyExist",
            _ => "InvalidParameter",
        };
        EsaError { status: StatusCode::BAD_REQUEST, code, message: e.to_string() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeVersion {
    #[serde(rename = "CodeVersion")]
    code_version: Value,
    #[serde(rename = "Percentage")]
    percentage: i64,
}

pub async fn handle(store: &RoutesStore, request: &AdminRequest) -> Reply {
    let params = parameters(request);
    let action = request
        .headers
        .get("x-acs-action")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.get("Action").cloned())
        .unwrap_or_default();
    let result = match action.as_str() {
        "CreateRoutineCodeDeployment" => create_deployment(store, &params).await,
        "GetRoutine" => get_routine(store, &params),
        "ListRoutineCodeVersions" => list_code_versions(store, &params),
        // Alibaba's answer to an action the API does not have (the SDK raises it as such).
        other => Err(EsaError {
            status: StatusCode::NOT_FOUND,
            code: "InvalidAction.NotFound",
            message: format!("Specified api \"{other}\" is not found."),
        }),
    };
    match result {
        Ok(mut body) => {
            body["RequestId"] = Value::String(request.request_id.clone());
            json_reply(StatusCode::OK, &body)
        }
        Err(e) => {
            let body = json!({ "RequestId": request.request_id, "Code": e.code, "Message": e.message });
            json_reply(e.status, &body)
        }
    }
}

/// Query and form-body parameters; the body wins when a name appears in both.
pub(crate) fn parameters(request: &AdminRequest) -> HashMap<String, String> {
    let mut params: HashMap<String, String> =
        form_urlencoded::parse(request.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect();
    params.extend(form_urlencoded::parse(&request.body).into_owned());
    params
}

fn required<'p>(params: &'p HashMap<String, String>, name: &str) -> Result<&'p str, EsaError> {
    match params.get(name).map(String::as_str) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(invalid(format!("{name} is required"))),
    }
}

fn routine<'s>(spec: &'s RoutesFile, name: &str) -> Result<&'s FunctionSpec, EsaError> {
    spec.functions.iter().find(|f| f.name == name).ok_or_else(|| routine_not_exist(name))
}

/// Validated `CodeVersions`: (version, percentage), highest percentage first.
pub(crate) fn code_versions(
    params: &HashMap<String, String>,
    function: &FunctionSpec,
) -> Result<Vec<(String, i64)>, EsaError> {
    let raw = required(params, "CodeVersions")?;
    let entries: Vec<CodeVersion> = serde_json::from_str(raw)
        .map_err(|e| invalid(format!("CodeVersions must be a JSON array of {{CodeVersion, Percentage}}: {e}")))?;
    if entries.is_empty() || entries.len() > 2 {
        return Err(invalid(format!("CodeVersions holds 1 or 2 versions, got {}", entries.len())));
    }
    let mut versions = Vec::with_capacity(entries.len());
    for entry in entries {
        let version = match entry.code_version {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            other => return Err(invalid(format!("CodeVersion must be a string, got {other}"))),
        };
        if !(1..=100).contains(&entry.percentage) {
            return Err(invalid(format!("Percentage of {version} must be from 1 to 100, got {}", entry.percentage)));
        }
        if versions.iter().any(|(v, _)| *v == version) {
            return Err(invalid(format!("CodeVersion {version} is listed twice")));
        }
        if !function.versions.iter().any(|v| v.version == version) {
            return Err(EsaError {
                status: StatusCode::BAD_REQUEST,
                code: "ParameterNotExist",
                message: format!("The specified parameter does not exist: CodeVersion \"{version}\""),
            });
        }
        versions.push((version, entry.percentage));
    }
    let total: i64 = versions.iter().map(|(_, p)| p).sum();
    if total != 100 {
        return Err(invalid(format!("Percentages must sum to 100, got {total}")));
    }
    // The highest share becomes the alias's own version (the first one on a tie).
    versions.sort_by_key(|(_, percentage)| std::cmp::Reverse(*percentage));
    Ok(versions)
}

async fn create_deployment(store: &RoutesStore, params: &HashMap<String, String>) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    let env = required(params, "Env")?.to_owned();
    if !ENVS.contains(&env.as_str()) {
        return Err(invalid(format!("Env must be staging or production, got \"{env}\"")));
    }
    let strategy = required(params, "Strategy")?;
    if strategy != "percentage" {
        return Err(invalid(format!("Strategy must be percentage, got \"{strategy}\"")));
    }
    let versions = code_versions(params, routine(store.current().source().spec(), &name)?)?;
    let now = now_text();
    let deployment_id = super::new_deployment_id();
    let (id, split) = (deployment_id.clone(), versions.clone());
    let applied = store
        .apply(move |spec| {
            let function = edit::function_mut(spec, None, &name)?;
            let mut split = split.clone().into_iter();
            let (own, _) = split.next().ok_or_else(|| invalid("CodeVersions is empty"))?;
            let split = Split { version: own, weights: split.collect(), strategy: IndexMap::new() };
            edit::deploy_percentages(function, &env, split, id.clone(), now.clone())?;
            edit::ensure_default_trigger(spec, &name, &env, now.clone())?;
            Ok(())
        })
        .await;
    applied.map_err(|e| match e {
        ApplyError::Rejected(e) => e,
        ApplyError::Invalid(issues) => {
            invalid(issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "))
        }
        ApplyError::Write(io) => {
            tracing::error!(error = %io, "cannot write the routes file; the deployment was not applied");
            EsaError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalError",
                message: format!("cannot persist the change: {io}"),
            }
        }
        ApplyError::Unavailable(why) => {
            tracing::warn!(%why, "deployment refused: the routing store is unavailable");
            EsaError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ServiceUnavailable",
                message: format!("The routing store is unavailable: {why}"),
            }
        }
        ApplyError::Conflict(why) => EsaError { status: StatusCode::CONFLICT, code: "Conflict", message: why },
        ApplyError::Internal(why) => {
            tracing::error!(%why, "deployment failed");
            EsaError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalError",
                message: "internal error".into(),
            }
        }
    })?;
    Ok(json!({
        "Strategy": "percentage",
        "DeploymentId": deployment_id,
        "CodeVersions": versions.iter().map(|(v, p)| json!({ "CodeVersion": v, "Percentage": p })).collect::<Vec<_>>(),
    }))
}

fn get_routine(store: &RoutesStore, params: &HashMap<String, String>) -> Result<Value, EsaError> {
    let routes = store.current();
    let spec = routes.source().spec();
    let function = routine(spec, required(params, "Name")?)?;
    let envs: Vec<Value> = ENVS
        .iter()
        .filter_map(|env| function.aliases.iter().find(|a| a.name == *env))
        .map(|alias| {
            let extra: i64 = alias.additional_version_weights.values().sum();
            let created = alias.last_modified.clone().unwrap_or_default();
            let entry = |version: &str, percentage: i64| {
                let description = function.versions.iter().find(|v| v.version == version).and_then(|v| v.description.clone());
                json!({ "CodeVersion": version, "Percentage": percentage, "CreateTime": created, "Description": description.unwrap_or_default() })
            };
            let mut versions = vec![entry(&alias.version, 100 - extra)];
            versions.extend(alias.additional_version_weights.iter().map(|(v, p)| entry(v, *p)));
            json!({
                "Env": alias.name,
                "CodeDeploy": {
                    "DeployId": alias.deployment_id.clone().unwrap_or_default(),
                    "Strategy": "percentage",
                    "CreationTime": created,
                    "CodeVersions": versions,
                },
            })
        })
        .collect();
    Ok(json!({
        "Description": "",
        "CreateTime": "",
        "DefaultRelatedRecord": "",
        "HasAssets": false,
        "Envs": envs,
    }))
}

fn list_code_versions(store: &RoutesStore, params: &HashMap<String, String>) -> Result<Value, EsaError> {
    let routes = store.current();
    let spec = routes.source().spec();
    let function = routine(spec, required(params, "Name")?)?;
    let number = |name: &str, default: usize| -> Result<usize, EsaError> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(format!("{name} must be a positive integer"))),
        }
    };
    let page_number = number("PageNumber", 1)?;
    let page_size = number("PageSize", 20)?.min(100);
    let keyword = params.get("SearchKeyWord").map(String::as_str).unwrap_or("");
    let matching: Vec<_> = function
        .versions
        .iter()
        .filter(|v| {
            keyword.is_empty()
                || v.version.contains(keyword)
                || v.description.as_deref().unwrap_or("").contains(keyword)
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip((page_number - 1).saturating_mul(page_size))
        .take(page_size)
        .map(|v| {
            json!({
                "CodeVersion": v.version,
                "CodeDescription": v.description.clone().unwrap_or_default(),
                "Status": "available",
                "CreateTime": v.last_modified.clone().unwrap_or_default(),
            })
        })
        .collect();
    Ok(json!({ "PageNumber": page_number, "PageSize": page_size, "TotalCount": matching.len(), "CodeVersions": page }))
}
