//! FunctionGraph's functions, versions, aliases and APIG triggers API
//! (`/v2/{project_id}/fgs/…`): the routing of a request to its resource's handler, and the
//! one place where errors (a bad request, an edit refused, the store unavailable) become
//! FunctionGraph's `{"error_code", "error_msg"}`.
//!
//! Paths are matched exactly as the official SDKs send them: the function URN is one
//! percent-encoded segment, qualified (`:v1`, `:latest`, `:!alias`) or not. Reads come from
//! the table in force; every change is an edit of [`crate::routes::edit`] run through
//! [`RoutesStore::apply`], so it is committed before it is acknowledged and live when the
//! response is sent.

mod aliases;
mod functions;
pub(crate) mod model;
pub(crate) mod precondition;
mod triggers;
mod versions;
mod view;

use http::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::{AdminRequest, Editor, Reply, fg_error};
use crate::audit::Attribution;
use crate::proxy::Gateway;
use crate::routes::edit::EditError;
use crate::routes::{FunctionSpec, RoutesFile};
use crate::store::ApplyError;
use precondition::IfMatch;

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

fn no_such_api() -> FgError {
    error(StatusCode::NOT_FOUND, "FSS.0404", "No such API")
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
#[derive(Debug, Clone)]
struct Urn {
    package: String,
    function: String,
    qualifier: Qualifier,
}

/// What a handler needs besides the request: the store, and the data plane's public URL
/// and the gateway itself, for triggers' `invoke_url` and for `invoke_function`.
pub struct Context<'a> {
    pub store: Editor<'a>,
    pub public_url: &'a str,
    pub gateway: &'a Gateway,
}

pub async fn handle(mut context: Context<'_>, request: &AdminRequest) -> Reply {
    let segments = match decode_segments(&request.path) {
        Ok(segments) => segments,
        Err(e) => return fg_error(e.status, e.code, &e.message, &request.request_id),
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    attribute(&mut context.store.who, &segments, &request.method);
    match dispatch(&context, &segments, request).await {
        Ok(reply) => reply,
        Err(e) => fg_error(e.status, e.code, &e.message, &request.request_id),
    }
}

/// Names the SDK operation a request is, and what it is about, for the audit trail.
fn attribute(who: &mut Attribution, segments: &[&str], method: &Method) {
    let rest = match segments {
        ["", "v2", _, "fgs", rest @ ..] => rest,
        _ => return,
    };
    let qualified = |urn: &str| urn.split(':').count() == 8;
    let operation = match (rest, method) {
        (["functions"], &Method::POST) => "CreateFunction",
        (["functions", urn], &Method::DELETE) if qualified(urn) => "DeleteFunctionVersion",
        (["functions", _], &Method::DELETE) => "DeleteFunction",
        (["functions", _, "config"], &Method::PUT) => "UpdateFunctionConfig",
        (["functions", _, "code"], &Method::PUT) => "UpdateFunctionCode",
        (["functions", _, "versions"], &Method::POST) => "CreateFunctionVersion",
        (["functions", _, "aliases"], &Method::POST) => "CreateVersionAlias",
        (["functions", _, "aliases", _], &Method::PUT) => "UpdateVersionAlias",
        (["functions", _, "aliases", _], &Method::DELETE) => "DeleteVersionAlias",
        (["triggers", _], &Method::POST) => "CreateFunctionTrigger",
        (["triggers", _], &Method::DELETE) => "BatchDeleteFunctionTriggers",
        (["triggers", _, _, _], &Method::PUT) => "UpdateTrigger",
        (["triggers", _, _, _], &Method::DELETE) => "DeleteFunctionTrigger",
        _ => "",
    };
    who.operation = format!("functiongraph:{operation}");
    if let [_, urn, tail @ ..] = rest {
        let parts: Vec<&str> = urn.split(':').collect();
        who.function = Some(parts.get(6).copied().unwrap_or(urn).to_owned());
        who.alias = parts.get(7).and_then(|q| q.strip_prefix('!')).map(str::to_owned);
        match (rest.first(), tail) {
            (Some(&"functions"), ["aliases", name]) => who.alias = Some((*name).to_owned()),
            (Some(&"triggers"), [_, id]) => who.trigger = Some((*id).to_owned()),
            _ => {}
        }
    }
}

async fn dispatch(context: &Context<'_>, segments: &[&str], request: &AdminRequest) -> Result<Reply, FgError> {
    let store = &context.store;
    let routes = store.current();
    let spec = routes.source().spec();
    let (project, rest) = match segments {
        ["", "v2", project, "fgs", rest @ ..] => (*project, rest),
        _ => return Err(no_such_api()),
    };
    if project != spec.project_id {
        return Err(function_not_found());
    }
    let method = &request.method;
    let precondition = IfMatch::from_headers(&request.headers);
    let query = request.query.as_deref();
    match rest {
        ["functions"] => match *method {
            Method::GET => functions::list(spec, query),
            Method::POST => functions::create(store, body(request)?).await,
            _ => Err(not_allowed(method)),
        },
        ["functions", urn, tail @ ..] => {
            let urn = parse_urn(urn, spec)?;
            match (tail, method) {
                ([], &Method::DELETE) if urn.qualifier == Qualifier::None => functions::delete(store, urn).await,
                ([], &Method::DELETE) => versions::delete(store, urn, precondition).await,
                (["config"], &Method::GET) => functions::show_config(spec, &urn),
                (["config"], &Method::PUT) => functions::update_config(store, urn, body(request)?).await,
                (["code"], &Method::GET) => functions::show_code(spec, &urn),
                (["code"], &Method::PUT) => functions::update_code(store, urn, body(request)?, precondition).await,
                (["invocations"], &Method::POST) => functions::invoke(context, &urn, request).await,
                (["versions"], &Method::GET) => versions::list(spec, &urn, query),
                (["versions"], &Method::POST) => versions::publish(store, urn, body(request)?).await,
                (["aliases"], &Method::GET) => aliases::list(spec, &urn),
                (["aliases"], &Method::POST) => aliases::create(store, urn, body(request)?).await,
                (["aliases", name], &Method::GET) => aliases::show(spec, &urn, name),
                (["aliases", name], &Method::PUT) => {
                    aliases::update(store, urn, name, body(request)?, precondition).await
                }
                (["aliases", name], &Method::DELETE) => aliases::delete(store, urn, name, precondition).await,
                ([] | ["config" | "code" | "invocations" | "versions" | "aliases", ..], _) => Err(not_allowed(method)),
                _ => Err(no_such_api()),
            }
        }
        ["triggers", urn, tail @ ..] => {
            let urn = parse_urn(urn, spec)?;
            let base = context.public_url;
            match (tail, method) {
                ([], &Method::GET) => triggers::list(spec, &urn, base),
                ([], &Method::POST) => triggers::create(store, urn, body(request)?, base).await,
                ([], &Method::DELETE) => triggers::delete_all(store, urn).await,
                ([kind, id], &Method::GET) => triggers::show(spec, &urn, kind, id, base),
                ([kind, id], &Method::PUT) => {
                    triggers::update(store, urn, kind, id, body(request)?, precondition, base).await
                }
                ([kind, id], &Method::DELETE) => triggers::delete(store, urn, kind, id, precondition).await,
                ([] | [_, _], _) => Err(not_allowed(method)),
                _ => Err(no_such_api()),
            }
        }
        _ => Err(no_such_api()),
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

/// A URN as FunctionGraph writes it; the function's name alone is accepted too (the
/// SDKs' `function_urn` parameters are documented as either).
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
    Ok(crate::routes::edit::function(spec, Some(&urn.package), &urn.function)?)
}

fn find_mut<'s>(spec: &'s mut RoutesFile, urn: &Urn) -> Result<&'s mut FunctionSpec, FgError> {
    Ok(crate::routes::edit::function_mut(spec, Some(&urn.package), &urn.function)?)
}

/// The target (version, `latest` or alias) a URN's qualifier names; unqualified means latest.
fn target_of(function: &FunctionSpec, qualifier: &Qualifier) -> Result<String, FgError> {
    use crate::routes::edit;
    match qualifier {
        Qualifier::None | Qualifier::Latest => Ok("latest".into()),
        Qualifier::Version(v) if edit::has_version(function, v) => Ok(v.clone()),
        Qualifier::Version(v) => Err(EditError::VersionNotFound(v.clone()).into()),
        Qualifier::Alias(a) => Ok(edit::alias(function, a)?.name.clone()),
    }
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

/// Runs a change through the store and maps its failures to FunctionGraph errors; a
/// refusal is recorded in the audit trail with its code.
async fn change<T, F>(store: &Editor<'_>, apply: F) -> Result<T, FgError>
where
    F: Fn(&mut RoutesFile) -> Result<T, FgError> + Send + Sync + 'static,
    T: Send + 'static,
{
    let result = store.apply(apply).await.map_err(fg_refusal);
    if let Err(e) = &result {
        store.refused(e.status, e.code, &e.message).await;
    }
    result
}

fn fg_refusal(e: ApplyError<FgError>) -> FgError {
    match e {
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
        ApplyError::TooLarge(why) => error(StatusCode::PAYLOAD_TOO_LARGE, "FSS.0413", why),
        ApplyError::Internal(why) => {
            tracing::error!(%why, "management change failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500", "internal error")
        }
    }
}

/// FunctionGraph's codes for the edit layer's refusals.
impl From<EditError> for FgError {
    fn from(e: EditError) -> Self {
        use EditError as E;
        let (status, code) = match &e {
            E::FunctionNotFound(_) => return function_not_found(),
            E::VersionNotFound(v) => {
                return error(StatusCode::NOT_FOUND, "FSS.1052", format!("Not found the version \"{v}\""));
            }
            E::AliasNotFound(a) => {
                return error(StatusCode::NOT_FOUND, "FSS.1053", format!("Not found the alias \"{a}\""));
            }
            E::TriggerNotFound(t) => {
                return error(StatusCode::NOT_FOUND, "FSS.0404", format!("Not found the trigger \"{t}\""));
            }
            E::AliasInUse { .. } => {
                return error(
                    StatusCode::FORBIDDEN,
                    "FSS.1154",
                    format!("Aliases bound with triggers cannot be deleted: {e}"),
                );
            }
            E::FunctionExists(_) => (StatusCode::CONFLICT, "FSS.1061"),
            E::FunctionInUse { .. } => (StatusCode::FORBIDDEN, "FSS.1095"),
            E::VersionExists(_) => (StatusCode::CONFLICT, "FSS.1062"),
            E::VersionInUse { .. } => (StatusCode::FORBIDDEN, "FSS.1094"),
            E::LatestIsPermanent => (StatusCode::BAD_REQUEST, "FSS.1015"),
            E::LatestUnchanged(_) => (StatusCode::BAD_REQUEST, "FSS.1016"),
            E::NoCode(_) => (StatusCode::BAD_REQUEST, "FSS.1018"),
            E::DigestMismatch { .. } => (StatusCode::BAD_REQUEST, "FSS.1017"),
            E::AliasExists(_) => (StatusCode::CONFLICT, "FSS.1063"),
            E::AliasNamedLikeVersion(_) => (StatusCode::BAD_REQUEST, "FSS.1014"),
            E::TooManyAliases => (StatusCode::FORBIDDEN, "FSS.1043"),
            E::InvalidName { what: "alias name", .. } => (StatusCode::BAD_REQUEST, "FSS.1014"),
            E::InvalidName { what: "version name" | "version", .. } => (StatusCode::BAD_REQUEST, "FSS.1015"),
            E::InvalidName { .. } => (StatusCode::BAD_REQUEST, "FSS.0400"),
            E::AdditionalIsOwn(_) => (StatusCode::BAD_REQUEST, "FSS.1093"),
            E::InvalidAdditional(_) => (StatusCode::BAD_REQUEST, "FSS.1091"),
            E::Weight { .. } | E::WeightsOver(_) => (StatusCode::BAD_REQUEST, "FSS.1092"),
            E::PathTaken { .. } => (StatusCode::CONFLICT, "FSS.1147"),
            E::TriggerExists(_) => (StatusCode::CONFLICT, "FSS.1146"),
            E::RulesWouldBeDropped { .. } => (StatusCode::CONFLICT, "FSS.0409"),
        };
        error(status, code, e.to_string())
    }
}
