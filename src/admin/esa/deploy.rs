//! `CreateRoutineCodeDeployment`: a percentage split of code versions to an environment.
//! The first code version listed becomes the environment's own version (the one an
//! ejected version's share falls back to), the others its weights, so the split is kept
//! and shown in the order it was asked for. An environment that also routes by header
//! rules (set through FunctionGraph) is refused rather than having its rules dropped.

use crate::admin::Editor;
use http::StatusCode;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EsaError, Params, change, env_of, invalid, numeric_id, required, routine};
use crate::routes::FunctionSpec;
use crate::routes::edit::{self, Split};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeVersion {
    #[serde(rename = "CodeVersion")]
    code_version: Value,
    #[serde(rename = "Percentage")]
    percentage: i64,
}

/// Validated `CodeVersions`: (version, percentage), in request order.
pub(crate) fn code_versions(params: &Params, function: &FunctionSpec) -> Result<Vec<(String, i64)>, EsaError> {
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
        if !edit::has_version(function, &version) {
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
    Ok(versions)
}

/// The split of an environment: the first version is its own, the rest are weights.
pub(super) fn split_of(versions: &[(String, i64)]) -> Result<Split, EsaError> {
    let (own, rest) = versions.split_first().ok_or_else(|| invalid("CodeVersions is empty"))?;
    Ok(Split { version: own.0.clone(), weights: rest.iter().cloned().collect(), strategy: IndexMap::new() })
}

/// Deploys `versions` to `env` of routine `name` in one edit (the environment's alias and
/// its `/{name}-{env}` trigger); returns the deployment id.
pub(super) async fn deploy(
    store: &Editor<'_>,
    name: String,
    env: String,
    versions: Vec<(String, i64)>,
) -> Result<String, EsaError> {
    let now = super::super::now_text();
    let deployment_id = numeric_id();
    let id = deployment_id.clone();
    change(store, move |spec| {
        let function = edit::function_mut(spec, None, &name)?;
        // Versions could have changed since the caller's check: check again in the edit.
        for (version, _) in &versions {
            if !edit::has_version(function, version) {
                return Err(EsaError {
                    status: StatusCode::BAD_REQUEST,
                    code: "ParameterNotExist",
                    message: format!("The specified parameter does not exist: CodeVersion \"{version}\""),
                });
            }
        }
        edit::deploy_percentages(function, &env, split_of(&versions)?, id.clone(), now.clone())?;
        edit::ensure_default_trigger(spec, &name, &env, now.clone())?;
        Ok(())
    })
    .await?;
    Ok(deployment_id)
}

pub async fn create(store: &Editor<'_>, params: &Params) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    let env = env_of(params, "Env")?;
    let strategy = required(params, "Strategy")?;
    if strategy != "percentage" {
        return Err(invalid(format!("Strategy must be percentage, got \"{strategy}\"")));
    }
    let versions = code_versions(params, routine(store.current().source().spec(), &name)?)?;
    let deployment_id = deploy(store, name, env, versions.clone()).await?;
    Ok(json!({
        "Strategy": "percentage",
        "DeploymentId": deployment_id,
        "CodeVersions": versions.iter().map(|(v, p)| json!({ "CodeVersion": v, "Percentage": p })).collect::<Vec<_>>(),
    }))
}
