//! Trigger edits: one request path has one trigger across all functions, and an alias's
//! trigger takes over the path of a trigger bound to the version the alias points at (one
//! URL keeps serving while the release moves from a version to an alias).

use super::{EditError, function, function_mut};
use crate::routes::file::{FunctionSpec, RoutesFile, TriggerSpec, TriggerStatus};

/// What `update_trigger` may change; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct TriggerChange {
    pub status: Option<TriggerStatus>,
    pub name: Option<String>,
    pub path: Option<String>,
    /// `Some(None)` sets `ANY`.
    pub req_method: Option<Option<String>>,
}

/// The trigger of `function` with this id.
pub fn trigger<'f>(function: &'f FunctionSpec, id: &str) -> Result<&'f TriggerSpec, EditError> {
    function
        .triggers
        .iter()
        .find(|t| t.effective_id(&function.name) == id)
        .ok_or_else(|| EditError::TriggerNotFound(id.to_owned()))
}

fn trigger_index(function: &FunctionSpec, id: &str) -> Result<usize, EditError> {
    function
        .triggers
        .iter()
        .position(|t| t.effective_id(&function.name) == id)
        .ok_or_else(|| EditError::TriggerNotFound(id.to_owned()))
}

/// Which function's trigger (function index, trigger index) serves `path`.
fn path_owner(spec: &RoutesFile, path: &str) -> Option<(usize, usize)> {
    spec.functions.iter().enumerate().find_map(|(f, function)| {
        let t = function.triggers.iter().position(|t| t.effective_path(&function.name) == path)?;
        Some((f, t))
    })
}

/// Adds `trigger` to function `name`, taking over its version's path for an alias.
pub fn add_trigger(
    spec: &mut RoutesFile,
    package: Option<&str>,
    name: &str,
    trigger: TriggerSpec,
) -> Result<TriggerSpec, EditError> {
    let owner_function = function(spec, package, name)?;
    let fname = owner_function.name.clone();
    let path = trigger.effective_path(&fname);
    let alias_version = owner_function.aliases.iter().find(|a| a.name == trigger.target).map(|a| a.version.clone());
    if let Some((f, t)) = path_owner(spec, &path) {
        let owner = &spec.functions[f];
        let takes_over = owner.name == fname && alias_version.as_deref() == Some(owner.triggers[t].target.as_str());
        if !takes_over {
            return Err(EditError::PathTaken { path, owner: owner.name.clone() });
        }
        spec.functions[f].triggers.remove(t);
    }
    let function = function_mut(spec, package, name)?;
    let trigger_name = trigger.effective_name(&fname);
    if function.triggers.iter().any(|t| t.effective_name(&fname) == trigger_name) {
        return Err(EditError::TriggerExists(trigger_name));
    }
    function.triggers.push(trigger.clone());
    Ok(trigger)
}

/// Makes sure `/{function}-{target}` routes to `target` of function `name` (ESA's
/// environments are reached that way): adds the default trigger if the path is free.
pub fn ensure_default_trigger(spec: &mut RoutesFile, name: &str, target: &str, now: String) -> Result<(), EditError> {
    let trigger = TriggerSpec {
        name: None,
        path: None,
        target: target.to_owned(),
        req_method: None,
        trigger_id: None,
        created_time: Some(now),
        trigger_status: TriggerStatus::Active,
    };
    let path = trigger.effective_path(name);
    match path_owner(spec, &path) {
        Some((f, t)) if spec.functions[f].name == name && spec.functions[f].triggers[t].target == target => Ok(()),
        Some((f, _)) => Err(EditError::PathTaken { path, owner: spec.functions[f].name.clone() }),
        None => {
            function_mut(spec, None, name)?.triggers.push(trigger);
            Ok(())
        }
    }
}

/// Changes a trigger's status and routing fields; a new path must be free.
pub fn update_trigger(
    spec: &mut RoutesFile,
    package: Option<&str>,
    name: &str,
    id: &str,
    change: TriggerChange,
) -> Result<TriggerSpec, EditError> {
    let function = function(spec, package, name)?;
    let fname = function.name.clone();
    let index = trigger_index(function, id)?;
    let mut updated = function.triggers[index].clone();
    if let Some(path) = change.path {
        updated.path = Some(path);
    }
    if let Some(new_name) = change.name {
        updated.name = Some(new_name);
    }
    if let Some(method) = change.req_method {
        updated.req_method = method;
    }
    if let Some(status) = change.status {
        updated.trigger_status = status;
    }
    // Keep the id the caller knows even if the derived one would change with the name.
    updated.trigger_id = Some(id.to_owned());
    let path = updated.effective_path(&fname);
    if let Some((f, t)) = path_owner(spec, &path)
        && !(spec.functions[f].name == fname && t == index)
    {
        return Err(EditError::PathTaken { path, owner: spec.functions[f].name.clone() });
    }
    let function = function_mut(spec, package, name)?;
    let trigger_name = updated.effective_name(&fname);
    if function.triggers.iter().enumerate().any(|(i, t)| i != index && t.effective_name(&fname) == trigger_name) {
        return Err(EditError::TriggerExists(trigger_name));
    }
    function.triggers[index] = updated.clone();
    Ok(updated)
}

/// Sets whether a trigger routes.
pub fn set_trigger_status(
    spec: &mut RoutesFile,
    package: Option<&str>,
    name: &str,
    id: &str,
    status: TriggerStatus,
) -> Result<TriggerSpec, EditError> {
    update_trigger(spec, package, name, id, TriggerChange { status: Some(status), ..TriggerChange::default() })
}

/// Removes a trigger.
pub fn delete_trigger(function: &mut FunctionSpec, id: &str) -> Result<TriggerSpec, EditError> {
    let index = trigger_index(function, id)?;
    Ok(function.triggers.remove(index))
}
