//! The edits a management API makes to the routes model, with typed errors.
//!
//! Both vendor façades (FunctionGraph's REST API, ESA's RPC actions) change the routing
//! state only through these operations: they decode a request, run one or more of these
//! inside one [`crate::store::RoutesStore::apply`] and map an [`EditError`] to their own
//! vendor's code. The business rules (a version in use cannot go, an alias's split is
//! checked against the versions that exist, one path has one trigger, an alias's trigger
//! takes over its version's path) therefore exist once. What the whole model must satisfy
//! afterwards is still checked by validation, which the store runs on every edit.

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use super::file::{AliasSpec, FunctionSpec, RoutesFile, TriggerStatus, VersionSpec, VersionStrategy};
use super::validate::{MAX_ALIASES_PER_FUNCTION, check_name, check_version_name};

/// Why an edit was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("function \"{0}\" does not exist")]
    FunctionNotFound(String),
    #[error("function \"{0}\" already exists")]
    FunctionExists(String),
    #[error("function \"{function}\" still has {what}: delete them first")]
    FunctionInUse { function: String, what: String },
    #[error("version \"{0}\" does not exist")]
    VersionNotFound(String),
    #[error("version \"{0}\" already exists")]
    VersionExists(String),
    #[error("version \"{version}\" is in use: {by}")]
    VersionInUse { version: String, by: String },
    #[error("function \"{0}\" has no code yet: set latest's code (update_function_code) first")]
    NoCode(String),
    #[error("latest cannot be deleted")]
    LatestIsPermanent,
    #[error("latest has not changed since version \"{0}\" was published")]
    LatestUnchanged(String),
    #[error("digest {given} does not match latest's code, whose digest is {latest}")]
    DigestMismatch { given: String, latest: String },
    #[error("alias \"{0}\" does not exist")]
    AliasNotFound(String),
    #[error("alias \"{0}\" already exists")]
    AliasExists(String),
    #[error("\"{0}\" is the name of a version")]
    AliasNamedLikeVersion(String),
    #[error("a function has at most {MAX_ALIASES_PER_FUNCTION} aliases")]
    TooManyAliases,
    #[error("alias \"{alias}\" is bound to trigger {trigger}: delete the trigger first")]
    AliasInUse { alias: String, trigger: String },
    #[error("invalid {what}: {why}")]
    InvalidName { what: &'static str, why: String },
    #[error("additional version \"{0}\" is the alias's own version")]
    AdditionalIsOwn(String),
    #[error("invalid additional version \"{0}\" (it must be a published version, not latest)")]
    InvalidAdditional(String),
    #[error("weight of \"{version}\" must be an integer from 1 to 100, got {weight}")]
    Weight { version: String, weight: i64 },
    #[error("additional weights sum to {0}, more than 100")]
    WeightsOver(i64),
    #[error("request path \"{path}\" is already used by function {owner}")]
    PathTaken { path: String, owner: String },
    #[error("trigger \"{0}\" already exists")]
    TriggerExists(String),
    #[error("trigger \"{0}\" does not exist")]
    TriggerNotFound(String),
    #[error(
        "alias \"{alias}\" also routes by header rules to {versions:?}, which a percentage deployment cannot express; remove the rules first (through FunctionGraph's update_version_alias)"
    )]
    RulesWouldBeDropped { alias: String, versions: Vec<String> },
}

/// What an alias sends where: its own version, plus weights and header rules for others.
#[derive(Debug, Clone, Default)]
pub struct Split {
    pub version: String,
    pub weights: IndexMap<String, i64>,
    pub strategy: IndexMap<String, VersionStrategy>,
}

/// The digest of a version's code. graygate runs no code package: a version's code is the
/// upstream URL it forwards to, so its digest is the SHA-256 of that URL's bytes, in
/// lowercase hex. Two versions with one digest serve the same thing.
pub fn code_digest(upstream: &str) -> String {
    let hash = Sha256::digest(upstream.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

mod triggers;
pub use triggers::{
    TriggerChange, add_trigger, delete_trigger, ensure_default_trigger, set_trigger_status, trigger, update_trigger,
};

// === functions ===

/// The function named `name` (in `package`, when one is given).
pub fn function<'s>(spec: &'s RoutesFile, package: Option<&str>, name: &str) -> Result<&'s FunctionSpec, EditError> {
    spec.functions
        .iter()
        .find(|f| f.name == name && package.is_none_or(|p| f.package == p))
        .ok_or_else(|| EditError::FunctionNotFound(name.to_owned()))
}

pub fn function_mut<'s>(
    spec: &'s mut RoutesFile,
    package: Option<&str>,
    name: &str,
) -> Result<&'s mut FunctionSpec, EditError> {
    spec.functions
        .iter_mut()
        .find(|f| f.name == name && package.is_none_or(|p| f.package == p))
        .ok_or_else(|| EditError::FunctionNotFound(name.to_owned()))
}

/// Adds a new function (its name is unique across packages: it is a routing key).
pub fn create_function(spec: &mut RoutesFile, function: FunctionSpec) -> Result<(), EditError> {
    check_name(&function.name).map_err(|why| EditError::InvalidName { what: "function name", why })?;
    check_name(&function.package).map_err(|why| EditError::InvalidName { what: "package name", why })?;
    if spec.functions.iter().any(|f| f.name == function.name) {
        return Err(EditError::FunctionExists(function.name));
    }
    spec.functions.push(function);
    Ok(())
}

/// Removes a function and its versions; refused while an alias or a trigger still routes
/// to it (a pipeline deletes those first, as FunctionGraph's console asks).
pub fn delete_function(spec: &mut RoutesFile, package: Option<&str>, name: &str) -> Result<FunctionSpec, EditError> {
    let function = function(spec, package, name)?;
    let mut what = Vec::new();
    if !function.aliases.is_empty() {
        what.push(format!("{} alias(es)", function.aliases.len()));
    }
    if !function.triggers.is_empty() {
        what.push(format!("{} trigger(s)", function.triggers.len()));
    }
    if !what.is_empty() {
        return Err(EditError::FunctionInUse { function: name.to_owned(), what: what.join(" and ") });
    }
    let index = spec
        .functions
        .iter()
        .position(|f| f.name == name)
        .ok_or_else(|| EditError::FunctionNotFound(name.to_owned()))?;
    Ok(spec.functions.remove(index))
}

// === versions ===

pub fn has_version(function: &FunctionSpec, version: &str) -> bool {
    function.versions.iter().any(|v| v.version == version)
}

/// Publishes latest's code as version `name`. With a `digest`, latest's code must have
/// it (the caller proves which code it means to publish).
pub fn publish_version<'f>(
    function: &'f mut FunctionSpec,
    name: String,
    description: Option<String>,
    digest: Option<&str>,
    now: String,
) -> Result<&'f VersionSpec, EditError> {
    if function.upstream.is_empty() {
        return Err(EditError::NoCode(function.name.clone()));
    }
    if let Some(given) = digest {
        let latest = code_digest(&function.upstream);
        if !given.eq_ignore_ascii_case(&latest) {
            return Err(EditError::DigestMismatch { given: given.to_owned(), latest });
        }
    }
    if let Some(last) = function.versions.last().filter(|v| v.upstream == function.upstream) {
        return Err(EditError::LatestUnchanged(last.version.clone()));
    }
    check_version_name(&name).map_err(|why| EditError::InvalidName { what: "version name", why })?;
    if has_version(function, &name) || function.aliases.iter().any(|a| a.name == name) {
        return Err(EditError::VersionExists(name));
    }
    function.versions.push(VersionSpec {
        version: name,
        upstream: function.upstream.clone(),
        description,
        last_modified: Some(now),
    });
    function.versions.last().ok_or_else(|| EditError::VersionNotFound(String::new()))
}

/// Removes a published version nothing refers to.
pub fn delete_version(function: &mut FunctionSpec, version: &str) -> Result<VersionSpec, EditError> {
    if version.eq_ignore_ascii_case("latest") {
        return Err(EditError::LatestIsPermanent);
    }
    let index = function
        .versions
        .iter()
        .position(|v| v.version == version)
        .ok_or_else(|| EditError::VersionNotFound(version.to_owned()))?;
    if let Some(by) = version_user(function, version) {
        return Err(EditError::VersionInUse { version: version.to_owned(), by });
    }
    Ok(function.versions.remove(index))
}

/// What refers to `version` (an alias or a trigger), if anything does.
pub fn version_user(function: &FunctionSpec, version: &str) -> Option<String> {
    for alias in &function.aliases {
        if alias.version == version {
            return Some(format!("it is the version of alias \"{}\"", alias.name));
        }
        if alias.additional_version_weights.contains_key(version)
            || alias.additional_version_strategy.contains_key(version)
        {
            return Some(format!("it is an additional version of alias \"{}\"", alias.name));
        }
    }
    function
        .triggers
        .iter()
        .find(|t| t.target == version)
        .map(|t| format!("it is bound to trigger {}", t.effective_name(&function.name)))
}

// === aliases ===

pub fn alias<'f>(function: &'f FunctionSpec, name: &str) -> Result<&'f AliasSpec, EditError> {
    function.aliases.iter().find(|a| a.name == name).ok_or_else(|| EditError::AliasNotFound(name.to_owned()))
}

fn alias_index(function: &FunctionSpec, name: &str) -> Result<usize, EditError> {
    function.aliases.iter().position(|a| a.name == name).ok_or_else(|| EditError::AliasNotFound(name.to_owned()))
}

/// Checks a split against the function's versions, with FunctionGraph's rules.
pub fn check_split(function: &FunctionSpec, split: &Split) -> Result<(), EditError> {
    if split.version != "latest" {
        check_version_name(&split.version).map_err(|why| EditError::InvalidName { what: "version", why })?;
        if !has_version(function, &split.version) {
            return Err(EditError::VersionNotFound(split.version.clone()));
        }
    }
    for additional in split.weights.keys().chain(split.strategy.keys()) {
        if *additional == split.version {
            return Err(EditError::AdditionalIsOwn(additional.clone()));
        }
        if additional.eq_ignore_ascii_case("latest") || !has_version(function, additional) {
            return Err(EditError::InvalidAdditional(additional.clone()));
        }
    }
    let mut total = 0;
    for (version, weight) in &split.weights {
        if !(1..=100).contains(weight) {
            return Err(EditError::Weight { version: version.clone(), weight: *weight });
        }
        total += weight;
    }
    if total > 100 { Err(EditError::WeightsOver(total)) } else { Ok(()) }
}

/// A new alias with `split`.
pub fn create_alias<'f>(
    function: &'f mut FunctionSpec,
    name: &str,
    split: Split,
    description: Option<String>,
    now: String,
) -> Result<&'f AliasSpec, EditError> {
    check_name(name).map_err(|why| EditError::InvalidName { what: "alias name", why })?;
    if function.aliases.iter().any(|a| a.name == name) {
        return Err(EditError::AliasExists(name.to_owned()));
    }
    if has_version(function, name) || name.eq_ignore_ascii_case("latest") {
        return Err(EditError::AliasNamedLikeVersion(name.to_owned()));
    }
    if function.aliases.len() >= MAX_ALIASES_PER_FUNCTION {
        return Err(EditError::TooManyAliases);
    }
    check_split(function, &split)?;
    function.aliases.push(AliasSpec {
        name: name.to_owned(),
        version: split.version,
        description,
        additional_version_weights: split.weights,
        additional_version_strategy: split.strategy,
        sticky: None,
        last_modified: Some(now),
        deployment_id: None,
    });
    let index = function.aliases.len() - 1;
    Ok(&function.aliases[index])
}

/// Replaces an alias's split as a whole (absent weights or rules mean none); a given
/// description replaces the old one.
pub fn set_split<'f>(
    function: &'f mut FunctionSpec,
    name: &str,
    split: Split,
    description: Option<String>,
    now: String,
) -> Result<&'f mut AliasSpec, EditError> {
    let index = alias_index(function, name)?;
    check_split(function, &split)?;
    let alias = &mut function.aliases[index];
    alias.version = split.version;
    alias.additional_version_weights = split.weights;
    alias.additional_version_strategy = split.strategy;
    if description.is_some() {
        alias.description = description;
    }
    alias.last_modified = Some(now);
    Ok(alias)
}

/// A percentage deployment (ESA's): creates the alias or sets its weights. Refused when the
/// alias also routes by header rules, which a percentage deployment cannot carry: the
/// deployment never drops them silently.
pub fn deploy_percentages<'f>(
    function: &'f mut FunctionSpec,
    name: &str,
    split: Split,
    deployment_id: String,
    now: String,
) -> Result<&'f AliasSpec, EditError> {
    match function.aliases.iter().find(|a| a.name == name) {
        None => {
            create_alias(function, name, split, None, now)?;
        }
        Some(existing) if !existing.additional_version_strategy.is_empty() => {
            return Err(EditError::RulesWouldBeDropped {
                alias: name.to_owned(),
                versions: existing.additional_version_strategy.keys().cloned().collect(),
            });
        }
        Some(_) => {
            set_split(function, name, split, None, now)?;
        }
    }
    let index = alias_index(function, name)?;
    function.aliases[index].deployment_id = Some(deployment_id);
    Ok(&function.aliases[index])
}

/// Removes an alias no trigger is bound to.
pub fn delete_alias(function: &mut FunctionSpec, name: &str) -> Result<AliasSpec, EditError> {
    let index = alias_index(function, name)?;
    if let Some(trigger) = function.triggers.iter().find(|t| t.target == name) {
        return Err(EditError::AliasInUse { alias: name.to_owned(), trigger: trigger.effective_name(&function.name) });
    }
    Ok(function.aliases.remove(index))
}

/// What a status field says, FunctionGraph's spelling (`ACTIVE`, `DISABLED`).
pub fn trigger_status(text: &str) -> Option<TriggerStatus> {
    match text.to_ascii_uppercase().as_str() {
        "ACTIVE" => Some(TriggerStatus::Active),
        "DISABLED" => Some(TriggerStatus::Disabled),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
