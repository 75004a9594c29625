//! Routines: create (a function without code yet), delete, list, and `GetRoutine`, which
//! tells what each environment serves, including header rules ESA's percentages cannot
//! express.

use crate::admin::Editor;
use serde_json::{Value, json};

use super::{ENVS, EsaError, Params, change, invalid, page, required, rfc3339, routine};
use crate::routes::edit;
use crate::routes::{AliasSpec, FunctionSpec};
use crate::store::RoutesStore;

/// `CreateRoutine`: a routine whose staging code is not set yet. graygate runs no code of
/// its own: the staging code is the URL of an HTTP service, set through FunctionGraph's
/// `update_function_code` (or the routes file); until then nothing can be committed.
pub async fn create(store: &Editor<'_>, params: &Params) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    if params.get("HasAssets").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(invalid("HasAssets is not supported: graygate routines have no static assets"));
    }
    let function = FunctionSpec {
        name,
        package: "default".to_owned(),
        upstream: String::new(),
        description: params.get("Description").filter(|d| !d.is_empty()).cloned(),
        timeout_ms: None,
        versions: Vec::new(),
        aliases: Vec::new(),
        triggers: Vec::new(),
    };
    change(store, move |spec| Ok(edit::create_function(spec, function.clone())?)).await?;
    Ok(json!({ "Status": "OK" }))
}

/// `DeleteRoutine`: refused with `DependedByOthers` while environments or triggers exist.
pub async fn delete(store: &Editor<'_>, params: &Params) -> Result<Value, EsaError> {
    let name = required(params, "Name")?.to_owned();
    change(store, move |spec| {
        edit::delete_function(spec, None, &name)?;
        Ok(())
    })
    .await?;
    Ok(json!({ "Status": "OK" }))
}

/// `ListUserRoutines`: every function is a routine; `SearchKeyWord` filters by name.
pub fn list(store: &RoutesStore, params: &Params) -> Result<Value, EsaError> {
    let routes = store.current();
    let spec = routes.source().spec();
    let (page_number, page_size) = page(params)?;
    let keyword = params.get("SearchKeyWord").map(String::as_str).unwrap_or("");
    let matching: Vec<&FunctionSpec> = spec.functions.iter().filter(|f| f.name.contains(keyword)).collect();
    let skip = (page_number - 1).checked_mul(page_size).ok_or_else(|| invalid("PageNumber is too large"))?;
    let routines: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(page_size)
        .map(|f| json!({ "RoutineName": f.name, "Description": f.description.clone().unwrap_or_default(), "HasAssets": false }))
        .collect();
    Ok(json!({
        "PageNumber": page_number,
        "PageSize": page_size,
        "TotalCount": matching.len(),
        "UsedRoutineNumber": spec.functions.len(),
        "Routines": routines,
    }))
}

/// `GetRoutine`: each environment's split as it is served.
pub fn get(store: &RoutesStore, params: &Params) -> Result<Value, EsaError> {
    let routes = store.current();
    let function = routine(routes.source().spec(), required(params, "Name")?)?;
    let envs: Vec<Value> = ENVS
        .iter()
        .filter_map(|env| function.aliases.iter().find(|a| a.name == *env))
        .map(|alias| env_view(function, alias))
        .collect();
    Ok(json!({
        "Description": function.description.clone().unwrap_or_default(),
        "HasAssets": false,
        "Envs": envs,
    }))
}

/// One environment. The percentages are what requests no header rule matches get; an
/// environment with header rules (set through FunctionGraph) says so: its `Strategy` is
/// `rules+percentage`, each rule's version is listed at 0 % with the rule in its
/// description, and `Rules` holds them as FunctionGraph writes them.
fn env_view(function: &FunctionSpec, alias: &AliasSpec) -> Value {
    let created = rfc3339(alias.last_modified.as_deref());
    let description = |version: &str| -> String {
        if version == "latest" {
            return "the staging code (latest), not a published code version".to_owned();
        }
        function.versions.iter().find(|v| v.version == version).and_then(|v| v.description.clone()).unwrap_or_default()
    };
    let entry = |version: &str, percentage: i64, description: String| json!({ "CodeVersion": version, "Percentage": percentage, "CreateTime": created, "Description": description });
    let extra: i64 = alias.additional_version_weights.values().sum();
    let mut versions = vec![entry(&alias.version, 100 - extra, description(&alias.version))];
    versions.extend(alias.additional_version_weights.iter().map(|(v, p)| entry(v, *p, description(v))));
    for (version, strategy) in &alias.additional_version_strategy {
        let rules: Vec<String> = strategy.rules.iter().map(|r| format!("{} {} {}", r.param, r.op, r.value)).collect();
        let said = format!(
            "requests matching the header rules ({}: {}) go here before any percentage",
            strategy.combine_type,
            rules.join("; ")
        );
        versions.push(entry(version, 0, said));
    }
    let rules = !alias.additional_version_strategy.is_empty();
    json!({
        "Env": alias.name,
        "CodeDeploy": {
            "DeployId": alias.deployment_id.clone().unwrap_or_default(),
            "Strategy": if rules { "rules+percentage" } else { "percentage" },
            "CreationTime": created,
            "CodeVersions": versions,
            "Rules": alias.additional_version_strategy,
        },
    })
}
