//! Aliases: list, show (with its `ETag`), create, update (the split as a whole), delete.

use crate::admin::Editor;
use http::StatusCode;
use serde_json::Value;

use super::model::AliasBody;
use super::precondition::{IfMatch, etag, tag};
use super::view;
use super::{FgError, Urn, bad, change, find, find_mut};
use crate::admin::{Reply, json_reply, now_text};
use crate::routes::RoutesFile;
use crate::routes::edit::{self, Split};

pub fn list(spec: &RoutesFile, urn: &Urn) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let views: Vec<_> = function.aliases.iter().map(|a| view::alias_view(spec, function, a)).collect();
    Ok(json_reply(StatusCode::OK, &views))
}

pub fn show(spec: &RoutesFile, urn: &Urn, name: &str) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let alias = edit::alias(function, name)?;
    Ok(tag(json_reply(StatusCode::OK, &view::alias_view(spec, function, alias)), &etag(alias)))
}

pub async fn create(store: &Editor<'_>, urn: Urn, request: AliasBody) -> Result<Reply, FgError> {
    let name = request.name.clone().ok_or_else(|| bad("FSS.1014", "name is required"))?;
    let now = now_text();
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        let split = split_of(request.clone())?;
        edit::create_alias(function, &name, split, request.description.clone(), now.clone())?;
        alias_value(spec, &urn, &name)
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

pub async fn update(
    store: &Editor<'_>,
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
        precondition.check(&etag(edit::alias(function, &target)?), "the alias")?;
        let split = split_of(request.clone())?;
        let tag = etag(&*edit::set_split(function, &target, split, request.description.clone(), now.clone())?);
        Ok((alias_value(spec, &urn, &target)?, tag))
    })
    .await?;
    Ok(tag(json_reply(StatusCode::OK, &view.0), &view.1))
}

/// The split a create or update body asks for: a PUT replaces the split as a whole.
fn split_of(request: AliasBody) -> Result<Split, FgError> {
    let version = request.version.ok_or_else(|| bad("FSS.1015", "version is required"))?;
    Ok(Split {
        version,
        weights: request.additional_version_weights.unwrap_or_default(),
        strategy: request.additional_version_strategy.unwrap_or_default(),
    })
}

/// The alias as the API shows it, taken inside the change that made it.
fn alias_value(spec: &RoutesFile, urn: &Urn, name: &str) -> Result<Value, FgError> {
    let function = find(spec, urn)?;
    let alias = edit::alias(function, name)?;
    serde_json::to_value(view::alias_view(spec, function, alias))
        .map_err(|e| super::error(StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500", e.to_string()))
}

pub async fn delete(store: &Editor<'_>, urn: Urn, name: &str, precondition: IfMatch) -> Result<Reply, FgError> {
    let target = name.to_owned();
    change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        precondition.check(&etag(edit::alias(function, &target)?), "the alias")?;
        edit::delete_alias(function, &target)?;
        Ok(())
    })
    .await?;
    Ok(crate::admin::empty_reply(StatusCode::NO_CONTENT))
}
