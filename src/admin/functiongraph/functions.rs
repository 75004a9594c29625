//! Functions as a whole: list, create, delete (unqualified, refused while aliases or
//! triggers exist), show and update the configuration, show and update latest's code, and
//! invoke a version or alias synchronously through the data plane's routing.

use crate::admin::Editor;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::model::{self, CreateFunction, UpdateCode, UpdateConfig};
use super::precondition::{IfMatch, tag, versions_etag};
use super::view;
use super::{Context, FgError, Qualifier, Urn, bad, change, error, find, find_mut, target_of};
use crate::admin::{AdminRequest, Reply, json_reply};
use crate::proxy::invoke::{Invocation, InvokeError};
use crate::routes::edit;
use crate::routes::{FunctionSpec, RoutesFile};

/// `GET /functions?marker&maxitems&package_name&func_name`: every function's latest, in
/// routes order, filtered by package and by a name substring.
pub fn list(spec: &RoutesFile, query: Option<&str>) -> Result<Reply, FgError> {
    let (marker, max_items) = model::page(query, 400)?;
    let mut package = None;
    let mut name = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "package_name" if !value.is_empty() => package = Some(value.into_owned()),
            "func_name" if !value.is_empty() => name = Some(value.into_owned()),
            _ => {}
        }
    }
    let matching: Vec<&FunctionSpec> = spec
        .functions
        .iter()
        .filter(|f| package.as_ref().is_none_or(|p| f.package == *p))
        .filter(|f| name.as_ref().is_none_or(|n| f.name.contains(n.as_str())))
        .collect();
    let page: Vec<Value> =
        matching.iter().skip(marker).take(max_items).map(|f| view::function_entry(spec, f)).collect();
    let next = (marker + page.len()).min(matching.len());
    Ok(json_reply(StatusCode::OK, &json!({ "functions": page, "next_marker": next, "count": matching.len() })))
}

/// `POST /functions`: a new function whose latest forwards to `code_url`.
pub async fn create(store: &Editor<'_>, request: CreateFunction) -> Result<Reply, FgError> {
    let name = request.func_name.clone().ok_or_else(|| bad("FSS.0400", "func_name is required"))?;
    model::check_runtime(request.runtime.as_deref())?;
    let upstream = model::code_upstream(request.code_type.as_deref(), request.code_url.as_deref())?;
    let timeout_ms = request.timeout.map(model::timeout_ms).transpose()?;
    let function = FunctionSpec {
        name,
        package: request.package.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "default".to_owned()),
        upstream,
        description: request.description.clone().filter(|d| !d.is_empty()),
        timeout_ms,
        versions: Vec::new(),
        aliases: Vec::new(),
        triggers: Vec::new(),
    };
    let view = change(store, move |spec| {
        edit::create_function(spec, function.clone())?;
        let created = edit::function(spec, None, &function.name)?;
        Ok(view::version_view(spec, created, None))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

/// `DELETE /functions/{urn}` (unqualified): the function and its versions.
pub async fn delete(store: &Editor<'_>, urn: Urn) -> Result<Reply, FgError> {
    change(store, move |spec| {
        edit::delete_function(spec, Some(&urn.package), &urn.function)?;
        Ok(())
    })
    .await?;
    Ok(crate::admin::empty_reply(StatusCode::NO_CONTENT))
}

/// `GET /functions/{urn}/config`: latest's, or the qualified version's, configuration.
pub fn show_config(spec: &RoutesFile, urn: &Urn) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let version = match &urn.qualifier {
        Qualifier::None | Qualifier::Latest => None,
        Qualifier::Version(v) => Some(
            function.versions.iter().find(|x| x.version == *v).ok_or(edit::EditError::VersionNotFound(v.clone()))?,
        ),
        Qualifier::Alias(a) => {
            let alias = edit::alias(function, a)?;
            function.versions.iter().find(|x| x.version == alias.version)
        }
    };
    Ok(json_reply(StatusCode::OK, &view::version_view(spec, function, version)))
}

/// `PUT /functions/{urn}/config`: the timeout and description (latest's, which every
/// version shares: graygate's timeout is per function).
pub async fn update_config(store: &Editor<'_>, urn: Urn, request: UpdateConfig) -> Result<Reply, FgError> {
    if !matches!(urn.qualifier, Qualifier::None | Qualifier::Latest) {
        return Err(bad("FSS.0400", "only latest's configuration can change: published versions are immutable"));
    }
    if request.func_name.as_deref().is_some_and(|n| n != urn.function) {
        return Err(bad("FSS.0400", "func_name does not match the function URN: a function cannot be renamed"));
    }
    model::check_runtime(request.runtime.as_deref())?;
    let timeout_ms = request.timeout.map(model::timeout_ms).transpose()?;
    let description = request.description.clone();
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        if let Some(ms) = timeout_ms {
            function.timeout_ms = Some(ms);
        }
        if let Some(text) = &description {
            function.description = Some(text.clone()).filter(|d| !d.is_empty());
        }
        Ok(view::version_view(spec, find(spec, &urn)?, None))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

/// `GET /functions/{urn}/code`.
pub fn show_code(spec: &RoutesFile, urn: &Urn) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    Ok(json_reply(StatusCode::OK, &view::code_view(spec, function)))
}

/// `PUT /functions/{urn}/code`: points latest at a new upstream.
pub async fn update_code(
    store: &Editor<'_>,
    urn: Urn,
    request: UpdateCode,
    precondition: IfMatch,
) -> Result<Reply, FgError> {
    let url = model::code_upstream(request.code_type.as_deref(), request.code_url.as_deref())?;
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        precondition.check(&versions_etag(function), "the version list")?;
        function.upstream = url.clone();
        let function = find(spec, &urn)?;
        Ok((view::version_view(spec, function, None), versions_etag(function)))
    })
    .await?;
    Ok(tag(json_reply(StatusCode::OK, &view.0), &view.1))
}

/// `POST /functions/{urn}/invocations`: the body goes to the version the URN qualifies
/// (an alias chooses as for a trigger's request; unqualified is latest), and the answer
/// comes back in FunctionGraph's invocation shape: `{request_id, result, log, status}`,
/// `result` being the upstream's body as text and `status` its HTTP status.
pub async fn invoke(context: &Context<'_>, urn: &Urn, request: &AdminRequest) -> Result<Reply, FgError> {
    let target = {
        let routes = context.store.current();
        target_of(find(routes.source().spec(), urn)?, &urn.qualifier)?
    };
    let request_id = HeaderValue::from_str(&request.request_id).unwrap_or(HeaderValue::from_static("invalid"));
    let invocation = Invocation {
        function: urn.function.clone(),
        target,
        headers: forwarded_headers(&request.headers),
        body: if request.body.is_empty() { Bytes::from_static(b"{}") } else { request.body.clone() },
        request_id,
    };
    match context.gateway.invoke(invocation).await {
        Ok(invoked) => {
            let result = String::from_utf8_lossy(&invoked.body).into_owned();
            let body = json!({ "request_id": request.request_id, "result": result, "log": "", "status": invoked.status.as_u16() });
            let mut reply = json_reply(StatusCode::OK, &body);
            if let Ok(id) = HeaderValue::from_str(&request.request_id) {
                reply.headers_mut().insert("x-cff-request-id", id);
            }
            if let Ok(version) = HeaderValue::from_str(&invoked.version) {
                reply.headers_mut().insert("x-graygate-version", version);
            }
            Ok(reply)
        }
        Err(InvokeError::NoTarget { .. }) => Err(super::function_not_found()),
        Err(e @ InvokeError::ResultTooLarge) => Err(error(StatusCode::BAD_GATEWAY, "FSS.0502", e.to_string())),
        Err(InvokeError::Gateway(e)) => {
            let code = if e.status() == StatusCode::GATEWAY_TIMEOUT { "FSS.0504" } else { "FSS.0502" };
            Err(error(e.status(), code, format!("the function's upstream failed: {e}")))
        }
    }
}

/// The caller's headers an invocation passes on (the rules of an alias may match them),
/// without the management API's own credentials.
fn forwarded_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = headers.clone();
    for name in ["authorization", "x-auth-token", "x-sdk-date", "x-sdk-content-sha256", "x-project-id", "host"] {
        out.remove(name);
    }
    let signed: Vec<_> = out.keys().filter(|k| k.as_str().starts_with("x-acs-")).cloned().collect();
    for name in signed {
        out.remove(name);
    }
    out
}
