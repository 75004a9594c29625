//! APIG triggers: list, show, create, update (status and the routing fields), delete one,
//! delete all of a function's. A trigger's `invoke_url` is the data plane's public URL
//! plus its path, so a pipeline can smoke-test what it just bound.

use crate::admin::Editor;
use http::StatusCode;
use serde_json::Value;

use super::model::{ApigEventData, CreateTrigger, UpdateTrigger};
use super::precondition::{IfMatch, etag, tag};
use super::view;
use super::{FgError, Qualifier, Urn, bad, change, error, find, find_mut, target_of};
use crate::admin::{Reply, empty_reply, json_reply, new_uuid, now_text};
use crate::routes::edit::{self, TriggerChange};
use crate::routes::validate::check_trigger_path;
use crate::routes::{RoutesFile, TriggerSpec, TriggerStatus};

pub fn list(spec: &RoutesFile, urn: &Urn, base: &str) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let only = match urn.qualifier {
        Qualifier::None => None,
        ref q => Some(target_of(function, q)?),
    };
    let views: Vec<Value> = function
        .triggers
        .iter()
        .filter(|t| only.as_ref().is_none_or(|target| t.target == *target))
        .map(|t| view::trigger_view(function, t, base))
        .collect();
    Ok(json_reply(StatusCode::OK, &views))
}

pub fn show(spec: &RoutesFile, urn: &Urn, kind: &str, id: &str, base: &str) -> Result<Reply, FgError> {
    apig_only(kind)?;
    let function = find(spec, urn)?;
    let trigger = edit::trigger(function, id)?;
    Ok(tag(json_reply(StatusCode::OK, &view::trigger_view(function, trigger, base)), &etag(trigger)))
}

/// Only APIG triggers exist in graygate; another type's id is not found, not malformed.
fn apig_only(kind: &str) -> Result<(), FgError> {
    if kind == "APIG" {
        Ok(())
    } else {
        Err(error(StatusCode::NOT_FOUND, "FSS.0404", format!("trigger type \"{kind}\" is not supported: only APIG")))
    }
}

fn status_of(text: Option<&str>) -> Result<Option<TriggerStatus>, FgError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => edit::trigger_status(text)
            .map(Some)
            .ok_or_else(|| bad("FSS.1107", format!("invalid trigger_status \"{text}\": ACTIVE or DISABLED"))),
    }
}

/// The APIG fields graygate routes on, checked.
fn routing_fields(event: &ApigEventData) -> Result<Option<String>, FgError> {
    if let Some(path) = &event.path {
        check_trigger_path(path).map_err(|why| bad("FSS.1107", why))?;
    }
    let method = event.req_method.as_ref().map(|m| m.to_ascii_uppercase());
    if let Some(m) = &method
        && !matches!(m.as_str(), "ANY" | "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS")
    {
        return Err(bad("FSS.1107", format!("invalid req_method \"{m}\"")));
    }
    Ok(method)
}

pub async fn create(store: &Editor<'_>, urn: Urn, request: CreateTrigger, base: &str) -> Result<Reply, FgError> {
    if request.trigger_type_code != "APIG" {
        return Err(bad(
            "FSS.0400",
            format!("trigger_type_code \"{}\" is not supported: only APIG", request.trigger_type_code),
        ));
    }
    let status = status_of(request.trigger_status.as_deref())?.unwrap_or_default();
    let event: ApigEventData = serde_path_to_error::deserialize(request.event_data).map_err(|e| {
        bad("FSS.1107", format!("invalid APIG trigger parameter event_data.{}: {}", e.path(), e.inner()))
    })?;
    let method = routing_fields(&event)?;
    let id = new_uuid();
    let now = now_text();
    let base = base.to_owned();
    let view = change(store, move |spec| {
        let function = find(spec, &urn)?;
        let trigger = TriggerSpec {
            name: event.name.clone(),
            path: event.path.clone(),
            target: target_of(function, &urn.qualifier)?,
            req_method: method.clone().filter(|m| m != "ANY"),
            trigger_id: Some(id.clone()),
            created_time: Some(now.clone()),
            trigger_status: status,
        };
        let trigger = edit::add_trigger(spec, Some(&urn.package), &urn.function, trigger)?;
        Ok(view::trigger_view(find(spec, &urn)?, &trigger, &base))
    })
    .await?;
    Ok(json_reply(StatusCode::CREATED, &view))
}

/// `PUT /triggers/{urn}/APIG/{id}`: `trigger_status` enables or disables the trigger;
/// `event_data` may change its name, path and method.
pub async fn update(
    store: &Editor<'_>,
    urn: Urn,
    kind: &str,
    id: &str,
    request: UpdateTrigger,
    precondition: IfMatch,
    base: &str,
) -> Result<Reply, FgError> {
    apig_only(kind)?;
    let status = status_of(request.trigger_status.as_deref())?;
    let event = request.apig_fields()?;
    let method = routing_fields(&event)?;
    let change_asked = TriggerChange {
        status,
        name: event.name.clone(),
        path: event.path.clone(),
        req_method: method.map(|m| Some(m).filter(|m| m != "ANY")),
    };
    let (id, base) = (id.to_owned(), base.to_owned());
    let view = change(store, move |spec| {
        precondition.check(&etag(edit::trigger(find(spec, &urn)?, &id)?), "the trigger")?;
        let updated = edit::update_trigger(spec, Some(&urn.package), &urn.function, &id, change_asked.clone())?;
        Ok((view::trigger_view(find(spec, &urn)?, &updated, &base), etag(&updated)))
    })
    .await?;
    Ok(tag(json_reply(StatusCode::OK, &view.0), &view.1))
}

pub async fn delete(
    store: &Editor<'_>,
    urn: Urn,
    kind: &str,
    id: &str,
    precondition: IfMatch,
) -> Result<Reply, FgError> {
    apig_only(kind)?;
    let id = id.to_owned();
    change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        precondition.check(&etag(edit::trigger(function, &id)?), "the trigger")?;
        edit::delete_trigger(function, &id)?;
        Ok(())
    })
    .await?;
    Ok(empty_reply(StatusCode::NO_CONTENT))
}

/// `DELETE /triggers/{urn}`: every trigger of the function, in one change.
pub async fn delete_all(store: &Editor<'_>, urn: Urn) -> Result<Reply, FgError> {
    change(store, move |spec| {
        find_mut(spec, &urn)?.triggers.clear();
        Ok(())
    })
    .await?;
    Ok(empty_reply(StatusCode::NO_CONTENT))
}
