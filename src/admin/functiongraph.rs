//! FunctionGraph's versions, aliases and APIG triggers API (`/v2/{project_id}/fgs/…`).
//!
//! Paths are matched exactly as the official SDKs send them: the function URN is one
//! percent-encoded segment, qualified (`:v1`, `:latest`, `:!alias`) or not. Reads come from
//! the table in force; every change goes through [`RoutesStore::apply`], so it is on disk
//! before it is acknowledged and live when the response is sent.

pub(crate) mod model;
mod precondition;

use http::{Method, StatusCode};
use indexmap::IndexMap;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{AdminRequest, Reply, fg_error, json_reply, now_text};
use crate::routes::validate::{MAX_ALIASES_PER_FUNCTION, check_name, check_trigger_path, check_version_name};
use crate::routes::{AliasSpec, FunctionSpec, RoutesFile, TriggerSpec, VersionSpec};
use crate::store::{ApplyError, RoutesStore};
use model::{AliasBody, ApigEventData, CreateTrigger, PublishVersion, UpdateCode};
use precondition::{IfMatch, etag, tag, versions_etag};

/// A FunctionGraph error: `{"error_code", "error_msg"}` with its HTTP status.
#[derive(Debug)]
pub struct FgError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

fn error(status: StatusCode, code: &'static str, message: impl Into<String>) -> FgError {
    FgError { status, code, message: message.into() }
}

fn bad(code: &'static str, message: impl Into<String>) -> FgError {
    error(StatusCode::BAD_REQUEST, code, message)
}

fn function_not_found() -> FgError {
    error(StatusCode::NOT_FOUND, "FSS.1051", "Not found the function")
}

/// What the URN's qualifier names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Qualifier {
    None,
    Latest,
    Version(String),
    Alias(String),
}

/// A function URN from the path, checked against the routes' project.
struct Urn {
    package: String,
    function: String,
    qualifier: Qualifier,
}

pub async fn handle(store: &RoutesStore, request: &AdminRequest) -> Reply {
    match dispatch(store, request).await {
        Ok(reply) => reply,
        Err(e) => fg_error(e.status, e.code, &e.message, &request.request_id),
    }
}

async fn dispatch(store: &RoutesStore, request: &AdminRequest) -> Result<Reply, FgError> {
    let segments = decode_segments(&request.path)?;
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let routes = store.current();
    let spec = routes.source().spec();
    let (project, rest) = match segments.as_slice() {
        ["", "v2", project, "fgs", rest @ ..] => (*project, rest),
        _ => return Err(error(StatusCode::NOT_FOUND, "FSS.0404", "No such API")),
    };
    if project != spec.project_id {
        return Err(function_not_found());
    }
    let method = &request.method;
    let precondition = IfMatch::from_headers(&request.headers);
    match rest {
        ["functions", urn, tail @ ..] => {
            let urn = parse_urn(urn, spec)?;
            match (tail, method) {
                ([], &Method::DELETE) => delete_version(store, urn, precondition).await,
                (["versions"], &Method::GET) => list_versions(spec, &urn, request.query.as_deref()),
                (["versions"], &Method::POST) => publish_version(store, urn, body(request)?).await,
                (["code"], &Method::PUT) => update_code(store, urn, body(request)?, precondition).await,
                (["aliases"], &Method::GET) => list_aliases(spec, &urn),
                (["aliases"], &Method::POST) => create_alias(store, urn, body(request)?).await,
                (["aliases", name], &Method::GET) => show_alias(spec, &urn, name),
                (["aliases", name], &Method::PUT) => update_alias(store, urn, name, body(request)?, precondition).await,
                (["aliases", name], &Method::DELETE) => delete_alias(store, urn, name, precondition).await,
                (["versions" | "code" | "aliases", ..], _) => Err(not_allowed(method)),
                _ => Err(error(StatusCode::NOT_FOUND, "FSS.0404", "No such API")),
            }
        }
        ["triggers", urn, tail @ ..] => {
            let urn = parse_urn(urn, spec)?;
            match (tail, method) {
                ([], &Method::GET) => list_triggers(spec, &urn),
                ([], &Method::POST) => create_trigger(store, urn, body(request)?).await,
                (["APIG", id], &Method::GET) => show_trigger(spec, &urn, id),
                (["APIG", id], &Method::DELETE) => delete_trigger(store, urn, id, precondition).await,
                ([] | ["APIG", _], _) => Err(not_allowed(method)),
                _ => Err(error(StatusCode::NOT_FOUND, "FSS.0404", "No such API")),
            }
        }
        _ => Err(error(StatusCode::NOT_FOUND, "FSS.0404", "No such API")),
    }
}

fn not_allowed(method: &Method) -> FgError {
    error(StatusCode::METHOD_NOT_ALLOWED, "FSS.0405", format!("method {method} is not allowed here"))
}

/// Splits the raw path on `/` and percent-decodes each segment (so an encoded `/` inside
/// a URN stays inside it).
fn decode_segments(raw_path: &str) -> Result<Vec<String>, FgError> {
    raw_path
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("FSS.0400", "the path is not valid UTF-8"))
        })
        .collect()
}

fn parse_urn(text: &str, spec: &RoutesFile) -> Result<Urn, FgError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (project, package, function, qualifier) = match parts.as_slice() {
        ["urn", "fss", _region, project, "function", package, name] => (*project, *package, *name, None),
        ["urn", "fss", _region, project, "function", package, name, qualifier] => {
            (*project, *package, *name, Some(*qualifier))
        }
        _ => {
            return Err(bad(
                "FSS.0400",
                format!(
                    "function_urn \"{text}\" is not urn:fss:{{region}}:{{project_id}}:function:{{package}}:{{name}}[:{{qualifier}}]"
                ),
            ));
        }
    };
    if project != spec.project_id {
        return Err(function_not_found());
    }
    let qualifier = match qualifier {
        None => Qualifier::None,
        Some("latest") => Qualifier::Latest,
        Some(alias) if alias.starts_with('!') => Qualifier::Alias(alias[1..].to_owned()),
        Some(version) => Qualifier::Version(version.to_owned()),
    };
    Ok(Urn { package: package.to_owned(), function: function.to_owned(), qualifier })
}

/// The function a URN names, in `spec` (FSS.1051 when it does not exist).
fn find<'s>(spec: &'s RoutesFile, urn: &Urn) -> Result<&'s FunctionSpec, FgError> {
    spec.functions.iter().find(|f| f.name == urn.function && f.package == urn.package).ok_or_else(function_not_found)
}

fn find_mut<'s>(spec: &'s mut RoutesFile, urn: &Urn) -> Result<&'s mut FunctionSpec, FgError> {
    spec.functions
        .iter_mut()
        .find(|f| f.name == urn.function && f.package == urn.package)
        .ok_or_else(function_not_found)
}

/// Decodes a JSON body; errors name the field (`additional_version_weights.v2: …`).
pub(crate) fn body<T: DeserializeOwned>(request: &AdminRequest) -> Result<T, FgError> {
    let text: &[u8] = if request.body.is_empty() { b"{}" } else { &request.body };
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            bad("FSS.0400", format!("invalid request body: {inner}"))
        } else {
            bad("FSS.0400", format!("invalid request body: {path}: {inner}"))
        }
    })
}

/// Runs a change through the store and maps its failures to FunctionGraph errors.
async fn change<T, F>(store: &RoutesStore, apply: F) -> Result<T, FgError>
where
    F: Fn(&mut RoutesFile) -> Result<T, FgError> + Send + Sync + 'static,
    T: Send + 'static,
{
    store.apply(apply).await.map_err(|e| match e {
        ApplyError::Rejected(e) => e,
        ApplyError::Invalid(issues) => {
            bad("FSS.0400", issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "))
        }
        ApplyError::Write(io) => {
            tracing::error!(error = %io, "cannot write the routes file; the change was not applied");
            error(StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500", format!("cannot persist the change: {io}"))
        }
        ApplyError::Unavailable(why) => {
            tracing::warn!(%why, "management change refused: the routing store is unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "FSS.0503", format!("the routing store is unavailable: {why}"))
        }
        ApplyError::Conflict(why) => error(StatusCode::CONFLICT, "FSS.0409", why),
        ApplyError::Internal(why) => {
            tracing::error!(%why, "management change failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500", "internal error")
        }
    })
}

// === versions ===

fn list_versions(spec: &RoutesFile, urn: &Urn, query: Option<&str>) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let all: Vec<Value> = std::iter::once(model::version_view(spec, function, None))
        .chain(function.versions.iter().map(|v| model::version_view(spec, function, Some(v))))
        .collect();
    let mut marker = 0usize;
    let mut max_items = 400usize;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let number =
            || value.parse::<usize>().map_err(|_| bad("FSS.0400", format!("{key} must be a non-negative integer")));
        match key.as_ref() {
            "marker" => marker = number()?,
            "maxitems" => max_items = number()?.clamp(1, 400),
            _ => {}
        }
    }
    let page: Vec<&Value> = all.iter().skip(marker).take(max_items).collect();
    let next = (marker + page.len()).min(all.len());
    let reply = json_reply(StatusCode::OK, &json!({ "versions": page, "next_marker": next, "count": all.len() }));
    Ok(tag(reply, &versions_etag(function)))
}

async fn publish_version(store: &RoutesStore, urn: Urn, request: PublishVersion) -> Result<Reply, FgError> {
    let now = now_text();
    let default_name = super::now_compact();
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        if function.versions.last().is_some_and(|v| v.upstream == function.upstream) {
            return Err(bad("FSS.1016", "latest has not changed since the last version was published"));
        }
        let name = request.version.clone().unwrap_or_else(|| default_name.clone());
        check_version_name(&name).map_err(|why| bad("FSS.1015", why))?;
        if function.versions.iter().any(|v| v.version == name) || function.aliases.iter().any(|a| a.name == name) {
            return Err(error(StatusCode::CONFLICT, "FSS.1062", format!("version \"{name}\" already exists")));
        }
        function.versions.push(VersionSpec {
            version: name.clone(),
            upstream: function.upstream.clone(),
            description: request.description.clone(),
            last_modified: Some(now.clone()),
        });
        // The answer describes this change, whatever other changes follow it.
        let function = find(spec, &urn)?;
        Ok(model::version_view(spec, function, function.versions.last()))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

/// `DELETE /functions/{urn:version}`: removes a published version nothing refers to.
async fn delete_version(store: &RoutesStore, urn: Urn, precondition: IfMatch) -> Result<Reply, FgError> {
    let version = match &urn.qualifier {
        Qualifier::Version(version) => version.clone(),
        Qualifier::Latest => return Err(bad("FSS.1015", "latest cannot be deleted")),
        Qualifier::None | Qualifier::Alias(_) => {
            return Err(bad("FSS.0400", "qualify the function URN with the version to delete"));
        }
    };
    change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        let index =
            function.versions.iter().position(|v| v.version == version).ok_or_else(|| {
                error(StatusCode::NOT_FOUND, "FSS.1052", format!("Not found the version \"{version}\""))
            })?;
        precondition.check(&versions_etag(function), "the version list")?;
        let in_use = |why: String| error(StatusCode::FORBIDDEN, "FSS.1094", why);
        for alias in &function.aliases {
            if alias.additional_version_weights.contains_key(&version)
                || alias.additional_version_strategy.contains_key(&version)
            {
                return Err(in_use(format!(
                    "version \"{version}\" is an additional version of alias \"{}\"",
                    alias.name
                )));
            }
            if alias.version == version {
                return Err(in_use(format!("version \"{version}\" is the version of alias \"{}\"", alias.name)));
            }
        }
        if let Some(trigger) = function.triggers.iter().find(|t| t.target == version) {
            return Err(in_use(format!(
                "version \"{version}\" is bound to trigger {}",
                trigger.effective_name(&function.name)
            )));
        }
        function.versions.remove(index);
        Ok(())
    })
    .await?;
    Ok(super::empty_reply(StatusCode::NO_CONTENT))
}

async fn update_code(
    store: &RoutesStore,
    urn: Urn,
    request: UpdateCode,
    precondition: IfMatch,
) -> Result<Reply, FgError> {
    let Some(url) = request.code_url else {
        return Err(bad("FSS.0400", "code_url (the upstream that serves latest) is required"));
    };
    crate::routes::validate::check_upstream(&url).map_err(|why| bad("FSS.0400", format!("code_url: {why}")))?;
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        precondition.check(&versions_etag(function), "the version list")?;
        function.upstream = url.clone();
        let function = find(spec, &urn)?;
        Ok((model::version_view(spec, function, None), versions_etag(function)))
    })
    .await?;
    Ok(tag(json_reply(StatusCode::OK, &view.0), &view.1))
}

// === aliases ===

fn list_aliases(spec: &RoutesFile, urn: &Urn) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let views: Vec<_> = function.aliases.iter().map(|a| model::alias_view(spec, function, a)).collect();
    Ok(json_reply(StatusCode::OK, &views))
}

fn show_alias(spec: &RoutesFile, urn: &Urn, name: &str) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let alias = function.aliases.iter().find(|a| a.name == name).ok_or_else(|| alias_not_found(name))?;
    Ok(tag(json_reply(StatusCode::OK, &model::alias_view(spec, function, alias)), &etag(alias)))
}

fn alias_not_found(name: &str) -> FgError {
    error(StatusCode::NOT_FOUND, "FSS.1053", format!("Not found the alias \"{name}\""))
}

async fn create_alias(store: &RoutesStore, urn: Urn, request: AliasBody) -> Result<Reply, FgError> {
    let name = request.name.clone().ok_or_else(|| bad("FSS.1014", "name is required"))?;
    check_name(&name).map_err(|why| bad("FSS.1014", why))?;
    let now = now_text();
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        if function.aliases.iter().any(|a| a.name == name) {
            return Err(error(StatusCode::CONFLICT, "FSS.1063", format!("alias \"{name}\" already exists")));
        }
        if function.versions.iter().any(|v| v.version == name) || name.eq_ignore_ascii_case("latest") {
            return Err(bad("FSS.1014", format!("alias \"{name}\" has the name of a version")));
        }
        if function.aliases.len() >= MAX_ALIASES_PER_FUNCTION {
            return Err(error(
                StatusCode::FORBIDDEN,
                "FSS.1043",
                format!("a function has at most {MAX_ALIASES_PER_FUNCTION} aliases"),
            ));
        }
        let mut alias = AliasSpec {
            name: name.clone(),
            version: String::new(),
            description: None,
            additional_version_weights: IndexMap::new(),
            additional_version_strategy: IndexMap::new(),
            sticky: None,
            last_modified: None,
            deployment_id: None,
        };
        fill_alias(function, &mut alias, request.clone(), now.clone())?;
        function.aliases.push(alias);
        alias_value(spec, &urn, &name)
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

async fn update_alias(
    store: &RoutesStore,
    urn: Urn,
    name: &str,
    request: AliasBody,
    precondition: IfMatch,
) -> Result<Reply, FgError> {
    if request.name.as_deref().is_some_and(|n| n != name) {
        return Err(bad("FSS.1014", "an alias cannot be renamed"));
    }
    let now = now_text();
    let target = name.to_owned();
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        let index = function.aliases.iter().position(|a| a.name == target).ok_or_else(|| alias_not_found(&target))?;
        precondition.check(&etag(&function.aliases[index]), "the alias")?;
        let mut alias = function.aliases[index].clone();
        fill_alias(function, &mut alias, request.clone(), now.clone())?;
        let tag = etag(&alias);
        function.aliases[index] = alias;
        Ok((alias_value(spec, &urn, &target)?, tag))
    })
    .await?;
    Ok(tag(json_reply(StatusCode::OK, &view.0), &view.1))
}

/// Applies a create/update body to `alias` with FunctionGraph's error codes; a PUT
/// replaces the split as a whole (absent weights or strategy mean none).
pub(crate) fn fill_alias(
    function: &FunctionSpec,
    alias: &mut AliasSpec,
    request: AliasBody,
    now: String,
) -> Result<(), FgError> {
    let version = request.version.ok_or_else(|| bad("FSS.1015", "version is required"))?;
    if version != "latest" {
        check_version_name(&version).map_err(|why| bad("FSS.1015", why))?;
        if !function.versions.iter().any(|v| v.version == version) {
            return Err(error(StatusCode::NOT_FOUND, "FSS.1052", format!("Not found the version \"{version}\"")));
        }
    }
    let weights = request.additional_version_weights.unwrap_or_default();
    let strategy = request.additional_version_strategy.unwrap_or_default();
    for additional in weights.keys().chain(strategy.keys()) {
        if *additional == version {
            return Err(bad("FSS.1093", format!("additional version \"{additional}\" is the alias's own version")));
        }
        if additional.eq_ignore_ascii_case("latest") || !function.versions.iter().any(|v| v.version == *additional) {
            return Err(bad("FSS.1091", format!("invalid additional version \"{additional}\"")));
        }
    }
    let mut total = 0;
    for (additional, weight) in &weights {
        if !(1..=100).contains(weight) {
            return Err(bad(
                "FSS.1092",
                format!("weight of \"{additional}\" must be an integer from 1 to 100, got {weight}"),
            ));
        }
        total += weight;
    }
    if total > 100 {
        return Err(bad("FSS.1092", format!("additional weights sum to {total}, more than 100")));
    }
    alias.version = version;
    if request.description.is_some() {
        alias.description = request.description;
    }
    alias.additional_version_weights = weights;
    alias.additional_version_strategy = strategy;
    alias.last_modified = Some(now);
    Ok(())
}

/// The alias as the API shows it, taken inside the change that made it.
fn alias_value(spec: &RoutesFile, urn: &Urn, name: &str) -> Result<Value, FgError> {
    let function = find(spec, urn)?;
    let alias = function.aliases.iter().find(|a| a.name == name).ok_or_else(|| alias_not_found(name))?;
    serde_json::to_value(model::alias_view(spec, function, alias))
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500", e.to_string()))
}

async fn delete_alias(store: &RoutesStore, urn: Urn, name: &str, precondition: IfMatch) -> Result<Reply, FgError> {
    let target = name.to_owned();
    change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        let index = function.aliases.iter().position(|a| a.name == target).ok_or_else(|| alias_not_found(&target))?;
        precondition.check(&etag(&function.aliases[index]), "the alias")?;
        if let Some(trigger) = function.triggers.iter().find(|t| t.target == target) {
            return Err(error(
                StatusCode::FORBIDDEN,
                "FSS.1154",
                format!(
                    "Aliases bound with triggers cannot be deleted: \"{target}\" is bound to {}",
                    trigger.effective_name(&function.name)
                ),
            ));
        }
        function.aliases.remove(index);
        Ok(())
    })
    .await?;
    Ok(super::empty_reply(StatusCode::NO_CONTENT))
}

// === triggers ===

/// The trigger target a URN qualifies (unqualified means latest).
fn target_of(function: &FunctionSpec, qualifier: &Qualifier) -> Result<String, FgError> {
    match qualifier {
        Qualifier::None | Qualifier::Latest => Ok("latest".into()),
        Qualifier::Version(v) if function.versions.iter().any(|x| x.version == *v) => Ok(v.clone()),
        Qualifier::Version(v) => {
            Err(error(StatusCode::NOT_FOUND, "FSS.1052", format!("Not found the version \"{v}\"")))
        }
        Qualifier::Alias(a) if function.aliases.iter().any(|x| x.name == *a) => Ok(a.clone()),
        Qualifier::Alias(a) => Err(alias_not_found(a)),
    }
}

fn list_triggers(spec: &RoutesFile, urn: &Urn) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let only = match urn.qualifier {
        Qualifier::None => None,
        ref q => Some(target_of(function, q)?),
    };
    let views: Vec<Value> = function
        .triggers
        .iter()
        .filter(|t| only.as_ref().is_none_or(|target| t.target == *target))
        .map(|t| model::trigger_view(function, t))
        .collect();
    Ok(json_reply(StatusCode::OK, &views))
}

fn show_trigger(spec: &RoutesFile, urn: &Urn, id: &str) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let trigger =
        function.triggers.iter().find(|t| t.effective_id(&function.name) == id).ok_or_else(|| trigger_not_found(id))?;
    Ok(tag(json_reply(StatusCode::OK, &model::trigger_view(function, trigger)), &etag(trigger)))
}

fn trigger_not_found(id: &str) -> FgError {
    error(StatusCode::NOT_FOUND, "FSS.0404", format!("Not found the trigger \"{id}\""))
}

async fn create_trigger(store: &RoutesStore, urn: Urn, request: CreateTrigger) -> Result<Reply, FgError> {
    if request.trigger_type_code != "APIG" {
        return Err(bad(
            "FSS.0400",
            format!("trigger_type_code \"{}\" is not supported: only APIG", request.trigger_type_code),
        ));
    }
    let event: ApigEventData = serde_path_to_error::deserialize(request.event_data).map_err(|e| {
        bad("FSS.1107", format!("invalid APIG trigger parameter event_data.{}: {}", e.path(), e.inner()))
    })?;
    if let Some(path) = &event.path {
        check_trigger_path(path).map_err(|why| bad("FSS.1107", why))?;
    }
    let method = event.req_method.map(|m| m.to_ascii_uppercase());
    if let Some(m) = &method
        && !matches!(m.as_str(), "ANY" | "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS")
    {
        return Err(bad("FSS.1107", format!("invalid req_method \"{m}\"")));
    }
    let id = super::new_uuid();
    let now = now_text();
    let view = change(store, move |spec| {
        let path_owner = |spec: &RoutesFile, path: &str| {
            spec.functions.iter().enumerate().find_map(|(f, function)| {
                let t = function.triggers.iter().position(|t| t.effective_path(&function.name) == path)?;
                Some((f, t))
            })
        };
        let function = find(spec, &urn)?;
        let target = target_of(function, &urn.qualifier)?;
        let trigger = TriggerSpec {
            name: event.name.clone(),
            path: event.path.clone(),
            target: target.clone(),
            req_method: method.clone().filter(|m| m != "ANY"),
            trigger_id: Some(id.clone()),
            created_time: Some(now.clone()),
        };
        let fname = function.name.clone();
        let path = trigger.effective_path(&fname);
        // One trigger URL serves an alias or its matched version: an alias's trigger takes
        // over the path of a trigger of the version the alias points at.
        let alias_version = function.aliases.iter().find(|a| a.name == target).map(|a| a.version.clone());
        if let Some((f, t)) = path_owner(spec, &path) {
            let owner = &spec.functions[f];
            let takes_over = owner.name == fname && alias_version.as_deref() == Some(owner.triggers[t].target.as_str());
            if !takes_over {
                return Err(error(StatusCode::CONFLICT, "FSS.1147", format!("request path \"{path}\" already exists")));
            }
            spec.functions[f].triggers.remove(t);
        }
        let function = find_mut(spec, &urn)?;
        let name = trigger.effective_name(&fname);
        if function.triggers.iter().any(|t| t.effective_name(&fname) == name) {
            return Err(error(StatusCode::CONFLICT, "FSS.1146", format!("trigger \"{name}\" already exists")));
        }
        let view = model::trigger_view(function, &trigger);
        function.triggers.push(trigger);
        Ok(view)
    })
    .await?;
    Ok(json_reply(StatusCode::CREATED, &view))
}

async fn delete_trigger(store: &RoutesStore, urn: Urn, id: &str, precondition: IfMatch) -> Result<Reply, FgError> {
    let id = id.to_owned();
    change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        let name = function.name.clone();
        let index =
            function.triggers.iter().position(|t| t.effective_id(&name) == id).ok_or_else(|| trigger_not_found(&id))?;
        precondition.check(&etag(&function.triggers[index]), "the trigger")?;
        function.triggers.remove(index);
        Ok(())
    })
    .await?;
    Ok(super::empty_reply(StatusCode::NO_CONTENT))
}
