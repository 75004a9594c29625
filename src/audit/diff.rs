//! The changed part of the routing state, before and after, for an audit record.
//!
//! A changed function is cut down to what changed: its name, the fields whose value
//! differs, and of its versions, aliases and triggers only the entries that were added,
//! changed or removed (matched by their name, version, id or path). A whole state pushed at
//! once can change thousands of functions: past a bound the record keeps only names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::routes::{FunctionSpec, RoutesFile};

/// Functions listed in one record at most.
const MAX_CHANGES: usize = 100;
/// The changes' JSON size past which before and after are dropped (names stay).
const MAX_BYTES: usize = 32 * 1024;

/// One function's change (or the project's, with no function).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// What changed as it was (`null`: the function is new).
    #[serde(default)]
    pub before: Value,
    /// What changed as it is now (`null`: the function is gone).
    #[serde(default)]
    pub after: Value,
}

// === impl Change ===

impl Change {
    pub fn function(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The names of the aliases this change touches.
    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        [&self.before, &self.after]
            .into_iter()
            .filter_map(|side| side.get("aliases")?.as_array())
            .flatten()
            .filter_map(|alias| alias.get("name")?.as_str())
    }
}

/// Every function that differs between `before` and `after`, cut down to what changed;
/// `true` when the list had to be truncated.
pub fn between(before: &RoutesFile, after: &RoutesFile) -> (Vec<Change>, bool) {
    let mut changes = Vec::new();
    if before.project_id != after.project_id || before.region != after.region {
        changes.push(Change {
            function: None,
            before: serde_json::json!({ "project_id": before.project_id, "region": before.region }),
            after: serde_json::json!({ "project_id": after.project_id, "region": after.region }),
        });
    }
    let old: std::collections::HashMap<&str, &FunctionSpec> =
        before.functions.iter().map(|f| (f.name.as_str(), f)).collect();
    let new: std::collections::HashSet<&str> = after.functions.iter().map(|f| f.name.as_str()).collect();
    for function in &after.functions {
        match old.get(function.name.as_str()) {
            None => changes.push(Change {
                function: Some(function.name.clone()),
                before: Value::Null,
                after: json(function),
            }),
            Some(previous) if *previous != function => {
                let (was, is) = cut(json(previous), json(function));
                changes.push(Change { function: Some(function.name.clone()), before: was, after: is });
            }
            Some(_) => {}
        }
    }
    for function in &before.functions {
        if !new.contains(function.name.as_str()) {
            changes.push(Change { function: Some(function.name.clone()), before: json(function), after: Value::Null });
        }
    }
    let mut truncated = false;
    if changes.len() > MAX_CHANGES {
        changes.truncate(MAX_CHANGES);
        truncated = true;
    }
    if serde_json::to_vec(&changes).map_or(true, |text| text.len() > MAX_BYTES) {
        for change in &mut changes {
            change.before = Value::Null;
            change.after = Value::Null;
        }
        truncated = true;
    }
    (changes, truncated)
}

fn json(function: &FunctionSpec) -> Value {
    serde_json::to_value(function).unwrap_or(Value::Null)
}

/// The two objects cut down to their name and the fields that differ; of a list of
/// entries, the entries that differ.
fn cut(before: Value, after: Value) -> (Value, Value) {
    let (Value::Object(before), Value::Object(after)) = (before, after) else {
        return (Value::Null, Value::Null);
    };
    let mut was = Map::new();
    let mut is = Map::new();
    if let Some(name) = after.get("name") {
        was.insert("name".into(), name.clone());
        is.insert("name".into(), name.clone());
    }
    let fields: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for field in fields {
        let (old, new) = (before.get(field), after.get(field));
        if old == new {
            continue;
        }
        match (old, new) {
            (Some(Value::Array(old)), Some(Value::Array(new))) if keyed(old) && keyed(new) => {
                let (gone, came) = entries_that_differ(old, new);
                was.insert(field.clone(), Value::Array(gone));
                is.insert(field.clone(), Value::Array(came));
            }
            _ => {
                was.insert(field.clone(), old.cloned().unwrap_or(Value::Null));
                is.insert(field.clone(), new.cloned().unwrap_or(Value::Null));
            }
        }
    }
    (Value::Object(was), Value::Object(is))
}

/// What identifies an entry of a list: an alias's name, a version, a trigger's id or path.
fn key_of(entry: &Value) -> Option<&Value> {
    ["name", "version", "trigger_id", "path", "target"].iter().find_map(|k| entry.get(*k))
}

fn keyed(list: &[Value]) -> bool {
    list.iter().all(|entry| key_of(entry).is_some())
}

fn entries_that_differ(old: &[Value], new: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let gone = old.iter().filter(|entry| !new.contains(entry)).cloned().collect();
    let came = new.iter().filter(|entry| !old.contains(entry)).cloned().collect();
    (gone, came)
}
