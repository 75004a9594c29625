//! Code versions: commit the staging code (latest) as a new one, publish one to an
//! environment, show, list and delete them. A code version is a published version of the
//! routine's function, named with ESA's numeric ids.

use crate::admin::Editor;
use serde_json::{Value, json};

use super::{ENVS, EsaError, Params, change, env_of, invalid, numeric_id, page, required, rfc3339, routine};
use crate::routes::edit::{self, EditError, code_digest};
use crate::routes::{FunctionSpec, VersionSpec};
use crate::store::RoutesStore;

/// The environments whose split includes `version` (`staging,production` when both).
fn deploy_env(function: &FunctionSpec, version: &str) -> String {
    ENVS.iter()
        .filter(|env| {
            function.aliases.iter().any(|a| {
                a.name == **env
                    && (a.version == version
                        || a.additional_version_weights.contains_key(version)
                        || a.additional_version_strategy.contains_key(version))
            })
        })
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

fn version_view(function: &FunctionSpec, version: &VersionSpec) -> Value {
    json!({
        "CodeVersion": version.version,
        "CodeDescription": version.description.clone().unwrap_or_default(),
        "Status": "available",
        "CreateTime": rfc3339(version.last_modified.as_deref()),
        "DeployEnv": deploy_env(function, &version.version),
    })
}

/// `CommitRoutineStagingCode`: the staging code becomes a new code version; with
/// `DeployEnv` it is also deployed there at 100 %, in the same change.
pub async fn commit(store: &Editor<'_>, params: &Params) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    let description = params.get("CodeDescription").filter(|d| !d.is_empty()).cloned();
    let env = match params.get("DeployEnv").filter(|e| !e.is_empty()) {
        Some(_) => Some(env_of(params, "DeployEnv")?),
        None => None,
    };
    let version = numeric_id();
    let now = super::super::now_text();
    let deployment = numeric_id();
    let committed = version.clone();
    change(store, move |spec| {
        let function = edit::function_mut(spec, None, &name)?;
        edit::publish_version(function, committed.clone(), description.clone(), None, now.clone())?;
        if let Some(env) = &env {
            let split = edit::Split { version: committed.clone(), ..edit::Split::default() };
            edit::deploy_percentages(function, env, split, deployment.clone(), now.clone())?;
            edit::ensure_default_trigger(spec, &name, env, now.clone())?;
        }
        Ok(())
    })
    .await?;
    Ok(json!({ "CodeVersion": version }))
}

/// `PublishRoutineCodeVersion`: one code version at 100 % of an environment.
pub async fn publish(store: &Editor<'_>, params: &Params) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    let version = required(params, "CodeVersion")?.to_owned();
    let env = env_of(params, "Env")?;
    if !edit::has_version(routine(store.current().source().spec(), &name)?, &version) {
        return Err(EditError::VersionNotFound(version).into());
    }
    super::deploy::deploy(store, name, env, vec![(version.clone(), 100)]).await?;
    Ok(json!({ "CodeVersion": version }))
}

/// `GetRoutineCodeVersionInfo`. `ExtraInfo` says what graygate's code is: the upstream URL
/// and its digest.
pub fn info(store: &RoutesStore, params: &Params) -> Result<Value, EsaError> {
    let routes = store.current();
    let function = routine(routes.source().spec(), required(params, "Name")?)?;
    let wanted = required(params, "CodeVersion")?;
    let version = function
        .versions
        .iter()
        .find(|v| v.version == wanted)
        .ok_or_else(|| EsaError::from(EditError::VersionNotFound(wanted.to_owned())))?;
    let extra = json!({ "CodeUrl": version.upstream, "Digest": code_digest(&version.upstream) }).to_string();
    let mut view = version_view(function, version);
    view["HasAssets"] = Value::Bool(false);
    view["ExtraInfo"] = Value::String(extra);
    Ok(view)
}

/// `DeleteRoutineCodeVersion`: refused with `DependedByOthers` while an environment (or
/// any alias or trigger) uses it.
pub async fn delete(store: &Editor<'_>, params: &Params) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    let version = required(params, "CodeVersion")?.to_owned();
    change(store, move |spec| {
        edit::delete_version(edit::function_mut(spec, None, &name)?, &version)?;
        Ok(())
    })
    .await?;
    Ok(json!({ "Status": "OK" }))
}

/// `ListRoutineCodeVersions`: oldest first, filtered by `SearchKeyWord` in the version or
/// its description.
pub fn list(store: &RoutesStore, params: &Params) -> Result<Value, EsaError> {
    let routes = store.current();
    let function = routine(routes.source().spec(), required(params, "Name")?)?;
    let (page_number, page_size) = page(params)?;
    let keyword = params.get("SearchKeyWord").map(String::as_str).unwrap_or("");
    let matching: Vec<&VersionSpec> = function
        .versions
        .iter()
        .filter(|v| {
            keyword.is_empty()
                || v.version.contains(keyword)
                || v.description.as_deref().unwrap_or("").contains(keyword)
        })
        .collect();
    let skip = (page_number - 1).checked_mul(page_size).ok_or_else(|| invalid("PageNumber is too large"))?;
    let page: Vec<Value> = matching.iter().skip(skip).take(page_size).map(|v| version_view(function, v)).collect();
    Ok(json!({ "PageNumber": page_number, "PageSize": page_size, "TotalCount": matching.len(), "CodeVersions": page }))
}
