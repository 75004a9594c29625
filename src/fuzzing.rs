//! Entry points for the fuzz targets under `fuzz/` and their replay in
//! `tests/fuzz_regressions.rs`: thin wrappers around the management API's request decoders,
//! which are private to the crate. Not part of graygate's API.

use bytes::Bytes;
use http::{HeaderMap, Method};

use crate::admin::AdminRequest;
use crate::admin::esa;
use crate::admin::functiongraph::{self, model};
use crate::routes::edit::{self, Split};
use crate::routes::{AliasSpec, FunctionSpec};

fn request(query: Option<&str>, body: &[u8]) -> AdminRequest {
    AdminRequest {
        method: Method::POST,
        path: "/".to_owned(),
        query: query.map(str::to_owned),
        headers: HeaderMap::new(),
        body: Bytes::copy_from_slice(body),
        request_id: "fuzz".to_owned(),
    }
}

/// Decodes a `POST …/versions` body as the handler does; `Err` is the error message.
pub fn decode_fg_version(body: &[u8]) -> Result<(), String> {
    functiongraph::body::<model::PublishVersion>(&request(None, body)).map(drop).map_err(|e| e.message)
}

/// Decodes a `PUT …/code` body as the handler does.
pub fn decode_fg_code(body: &[u8]) -> Result<(), String> {
    functiongraph::body::<model::UpdateCode>(&request(None, body)).map(drop).map_err(|e| e.message)
}

/// Decodes a `POST /triggers/{urn}` body, then its `event_data` as an APIG trigger's.
pub fn decode_fg_trigger(body: &[u8]) -> Result<(), String> {
    let envelope: model::CreateTrigger = functiongraph::body(&request(None, body)).map_err(|e| e.message)?;
    serde_path_to_error::deserialize::<_, model::ApigEventData>(envelope.event_data)
        .map(drop)
        .map_err(|e| format!("event_data.{}: {}", e.path(), e.inner()))
}

/// Decodes an alias body and applies it to `alias` of `function`, as `POST` and `PUT
/// …/aliases` do.
pub fn apply_fg_alias(function: &FunctionSpec, alias: &mut AliasSpec, body: &[u8]) -> Result<(), String> {
    let decoded: model::AliasBody = functiongraph::body(&request(None, body)).map_err(|e| e.message)?;
    let split = Split {
        version: decoded.version.ok_or("version is required")?,
        weights: decoded.additional_version_weights.unwrap_or_default(),
        strategy: decoded.additional_version_strategy.unwrap_or_default(),
    };
    edit::check_split(function, &split).map_err(|e| e.to_string())?;
    alias.version = split.version;
    alias.additional_version_weights = split.weights;
    alias.additional_version_strategy = split.strategy;
    if decoded.description.is_some() {
        alias.description = decoded.description;
    }
    Ok(())
}

/// Reads ESA parameters from a query and a form body, then `CodeVersions` against
/// `function`, as `CreateRoutineCodeDeployment` does.
pub fn decode_esa_code_versions(
    query: Option<&str>,
    body: &[u8],
    function: &FunctionSpec,
) -> Result<Vec<(String, i64)>, String> {
    let params = esa::parameters(&request(query, body));
    esa::code_versions(&params, function).map_err(|e| format!("{e:?}"))
}
