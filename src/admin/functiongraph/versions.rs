//! Versions: list (paged, with `latest` first), publish latest's code, delete an unused one.

use crate::admin::Editor;
use http::StatusCode;
use serde_json::{Value, json};

use super::model::{self, PublishVersion};
use super::precondition::{IfMatch, tag, versions_etag};
use super::view;
use super::{FgError, Qualifier, Urn, bad, change, find, find_mut};
use crate::admin::{Reply, json_reply, now_compact, now_text};
use crate::routes::RoutesFile;
use crate::routes::edit;

pub fn list(spec: &RoutesFile, urn: &Urn, query: Option<&str>) -> Result<Reply, FgError> {
    let function = find(spec, urn)?;
    let all: Vec<Value> = std::iter::once(view::version_view(spec, function, None))
        .chain(function.versions.iter().map(|v| view::version_view(spec, function, Some(v))))
        .collect();
    let (marker, max_items) = model::page(query, 400)?;
    let page: Vec<&Value> = all.iter().skip(marker).take(max_items).collect();
    let next = (marker + page.len()).min(all.len());
    let reply = json_reply(StatusCode::OK, &json!({ "versions": page, "next_marker": next, "count": all.len() }));
    Ok(tag(reply, &versions_etag(function)))
}

/// `POST …/versions`: latest's code as a new immutable version; a `digest` must be
/// latest's (the caller proves it publishes the code it tested).
pub async fn publish(store: &Editor<'_>, urn: Urn, request: PublishVersion) -> Result<Reply, FgError> {
    let now = now_text();
    let default_name = now_compact();
    let view = change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        let name = request.version.clone().unwrap_or_else(|| default_name.clone());
        let digest = request.digest.as_deref().filter(|d| !d.is_empty());
        edit::publish_version(function, name, request.description.clone(), digest, now.clone())?;
        // The answer describes this change, whatever other changes follow it.
        let function = find(spec, &urn)?;
        Ok(view::version_view(spec, function, function.versions.last()))
    })
    .await?;
    Ok(json_reply(StatusCode::OK, &view))
}

/// `DELETE /functions/{urn:version}`: removes a published version nothing refers to.
pub async fn delete(store: &Editor<'_>, urn: Urn, precondition: IfMatch) -> Result<Reply, FgError> {
    let version = match &urn.qualifier {
        Qualifier::Version(version) => version.clone(),
        Qualifier::Latest => return Err(edit::EditError::LatestIsPermanent.into()),
        Qualifier::None | Qualifier::Alias(_) => {
            return Err(bad("FSS.0400", "qualify the function URN with the version to delete"));
        }
    };
    change(store, move |spec| {
        let function = find_mut(spec, &urn)?;
        if !edit::has_version(function, &version) {
            return Err(edit::EditError::VersionNotFound(version.clone()).into());
        }
        precondition.check(&versions_etag(function), "the version list")?;
        edit::delete_version(function, &version)?;
        Ok(())
    })
    .await?;
    Ok(crate::admin::empty_reply(StatusCode::NO_CONTENT))
}
