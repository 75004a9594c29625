//! Alibaba Cloud ESA's routine actions, RPC style, as `alibabacloud-esa20240910` sends them:
//! the dispatch by action, the parameters, and the one place where errors (a bad
//! parameter, an edit refused, the store unavailable) become ESA's `{RequestId, Code,
//! Message}`.
//!
//! The action comes in `x-acs-action` (or an `Action` parameter); parameters are form
//! fields in the body or the query; `CodeVersions` is a JSON array in one field. On
//! graygate's model a routine is the function of the same name, its staging code is the
//! function's latest, a code version is a published version, and an environment
//! (`staging`, `production`) is the alias named after it, reached at `/{routine}-{env}`.

mod code;
mod deploy;
mod routines;

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Value, json};
use time::macros::format_description;

use super::{AdminRequest, Editor, Reply, json_reply};
use crate::routes::edit::EditError;
use crate::routes::{FunctionSpec, RoutesFile};
use crate::store::ApplyError;
pub(crate) use deploy::code_versions;

const ENVS: [&str; 2] = ["staging", "production"];

/// An ESA error: its HTTP status with `{RequestId, Code, Message}`.
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

type Params = HashMap<String, String>;

pub async fn handle(mut store: Editor<'_>, request: &AdminRequest) -> Reply {
    let params = parameters(request);
    let action = request
        .headers
        .get("x-acs-action")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.get("Action").cloned())
        .unwrap_or_default();
    store.who.operation = format!("esa:{action}");
    store.who.function = params.get("Name").cloned();
    store.who.alias = params.get("Env").cloned();
    let store = &store;
    let result = match action.as_str() {
        "CreateRoutine" => routines::create(store, &params).await,
        "DeleteRoutine" => routines::delete(store, &params).await,
        "GetRoutine" => routines::get(store, &params),
        "ListUserRoutines" => routines::list(store, &params),
        "CommitRoutineStagingCode" => code::commit(store, &params).await,
        "PublishRoutineCodeVersion" => code::publish(store, &params).await,
        "GetRoutineCodeVersionInfo" => code::info(store, &params),
        "DeleteRoutineCodeVersion" => code::delete(store, &params).await,
        "ListRoutineCodeVersions" => code::list(store, &params),
        "CreateRoutineCodeDeployment" => deploy::create(store, &params).await,
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
pub(crate) fn parameters(request: &AdminRequest) -> Params {
    let mut params: Params =
        form_urlencoded::parse(request.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect();
    params.extend(form_urlencoded::parse(&request.body).into_owned());
    params
}

fn required<'p>(params: &'p Params, name: &str) -> Result<&'p str, EsaError> {
    match params.get(name).map(String::as_str) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(invalid(format!("{name} is required"))),
    }
}

/// An environment parameter: `staging` or `production`.
fn env_of(params: &Params, name: &str) -> Result<String, EsaError> {
    let env = required(params, name)?;
    if ENVS.contains(&env) {
        Ok(env.to_owned())
    } else {
        Err(invalid(format!("{name} must be staging or production, got \"{env}\"")))
    }
}

fn routine<'s>(spec: &'s RoutesFile, name: &str) -> Result<&'s FunctionSpec, EsaError> {
    Ok(crate::routes::edit::function(spec, None, name)?)
}

/// `PageNumber` (from 1) and `PageSize` (1 to 100, default 20).
fn page(params: &Params) -> Result<(usize, usize), EsaError> {
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
    Ok((number("PageNumber", 1)?, number("PageSize", 20)?.min(100)))
}

/// A stored time (`2024-03-11 01:23:21`, UTC) in RFC 3339, as ESA answers times; empty
/// when none was stored.
fn rfc3339(stored: Option<&str>) -> String {
    let stored_format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let Some(text) = stored.filter(|t| !t.is_empty()) else {
        return String::new();
    };
    match time::PrimitiveDateTime::parse(text, stored_format) {
        Ok(at) => {
            at.assume_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| text.to_owned())
        }
        // Times written by hand in the routes file in another shape are shown as they are.
        Err(_) => text.to_owned(),
    }
}

/// ESA's numeric ids for code versions and deployments: they count up and never repeat.
fn numeric_id() -> String {
    super::new_deployment_id()
}

/// Runs an edit through the store and maps its failures to ESA errors; a refusal is
/// recorded in the audit trail with its code.
async fn change<T, F>(store: &Editor<'_>, edit: F) -> Result<T, EsaError>
where
    F: Fn(&mut RoutesFile) -> Result<T, EsaError> + Send + Sync + 'static,
    T: Send + 'static,
{
    let result = store.apply(edit).await.map_err(esa_refusal);
    if let Err(e) = &result {
        store.refused(e.status, e.code, &e.message).await;
    }
    result
}

fn esa_refusal(e: ApplyError<EsaError>) -> EsaError {
    match e {
        ApplyError::Rejected(e) => e,
        ApplyError::Invalid(issues) => {
            invalid(issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect::<Vec<_>>().join("; "))
        }
        ApplyError::Write(io) => {
            tracing::error!(error = %io, "cannot write the routes file; the change was not applied");
            EsaError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalError",
                message: format!("cannot persist the change: {io}"),
            }
        }
        ApplyError::Unavailable(why) => {
            tracing::warn!(%why, "ESA change refused: the routing store is unavailable");
            EsaError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                code: "ServiceUnavailable",
                message: format!("The routing store is unavailable: {why}"),
            }
        }
        ApplyError::Conflict(why) => EsaError { status: StatusCode::CONFLICT, code: "Conflict", message: why },
        ApplyError::TooLarge(why) => {
            EsaError { status: StatusCode::BAD_REQUEST, code: "InvalidParameter", message: why }
        }
        ApplyError::Internal(why) => {
            tracing::error!(%why, "ESA change failed");
            EsaError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "InternalError",
                message: "internal error".into(),
            }
        }
    }
}

/// ESA's codes for the edit layer's refusals (its API page: business errors are 400s).
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
