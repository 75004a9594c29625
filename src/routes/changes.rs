//! What changed between two routing states, for the log line of every applied change:
//! functions and aliases added, changed and removed (triggers and versions count as a
//! change of their function).

use std::fmt;

use rustc_hash::FxHashMap;

use crate::routes::{FunctionSpec, RoutesFile};

/// Names longer lists are cut to in the log line (the counts stay exact).
const LISTED: usize = 8;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub functions: Delta,
    /// `function/alias`.
    pub aliases: Delta,
    /// The project or region changed.
    pub meta: bool,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

// === impl Changes ===

impl Changes {
    pub fn between(old: &RoutesFile, new: &RoutesFile) -> Changes {
        let mut changes =
            Changes { meta: old.project_id != new.project_id || old.region != new.region, ..Changes::default() };
        let before: FxHashMap<&str, &FunctionSpec> = old.functions.iter().map(|f| (f.name.as_str(), f)).collect();
        let after: FxHashMap<&str, &FunctionSpec> = new.functions.iter().map(|f| (f.name.as_str(), f)).collect();
        for function in &new.functions {
            match before.get(function.name.as_str()) {
                None => {
                    changes.functions.added.push(function.name.clone());
                    for alias in &function.aliases {
                        changes.aliases.added.push(format!("{}/{}", function.name, alias.name));
                    }
                }
                Some(previous) if *previous != function => {
                    changes.functions.changed.push(function.name.clone());
                    changes.aliases.compare(&function.name, previous, function);
                }
                Some(_) => {}
            }
        }
        for function in &old.functions {
            if !after.contains_key(function.name.as_str()) {
                changes.functions.removed.push(function.name.clone());
                for alias in &function.aliases {
                    changes.aliases.removed.push(format!("{}/{}", function.name, alias.name));
                }
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        !self.meta && self.functions.is_empty() && self.aliases.is_empty()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing");
        }
        let mut parts = Vec::new();
        if self.meta {
            parts.push("project/region changed".to_owned());
        }
        if !self.functions.is_empty() {
            parts.push(format!("functions {}", self.functions));
        }
        if !self.aliases.is_empty() {
            parts.push(format!("aliases {}", self.aliases));
        }
        f.write_str(&parts.join("; "))
    }
}

// === impl Delta ===

impl Delta {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    fn compare(&mut self, function: &str, old: &FunctionSpec, new: &FunctionSpec) {
        for alias in &new.aliases {
            match old.aliases.iter().find(|a| a.name == alias.name) {
                None => self.added.push(format!("{function}/{}", alias.name)),
                Some(previous) if previous != alias => self.changed.push(format!("{function}/{}", alias.name)),
                Some(_) => {}
            }
        }
        for alias in &old.aliases {
            if !new.aliases.iter().any(|a| a.name == alias.name) {
                self.removed.push(format!("{function}/{}", alias.name));
            }
        }
    }
}

impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (sign, names) in [("+", &self.added), ("~", &self.changed), ("-", &self.removed)] {
            if names.is_empty() {
                continue;
            }
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{sign}[{}", names.iter().take(LISTED).cloned().collect::<Vec<_>>().join(","))?;
            if names.len() > LISTED {
                write!(f, ",… {} in all", names.len())?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(yaml: &str) -> RoutesFile {
        serde_norway::from_str(yaml).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn names_what_was_added_changed_and_removed() {
        let old = routes(
            "project_id: p\nfunctions:\n- {name: a, upstream: 'http://x:1', versions: [{version: v1, upstream: 'http://x:1'}], aliases: [{name: prod, version: v1}, {name: old, version: v1}]}\n- {name: gone, upstream: 'http://x:1'}\n",
        );
        let new = routes(
            "project_id: p\nfunctions:\n- {name: a, upstream: 'http://x:1', versions: [{version: v1, upstream: 'http://x:1'}], aliases: [{name: prod, version: latest}, {name: beta, version: v1}]}\n- {name: fresh, upstream: 'http://x:1'}\n",
        );
        let changes = Changes::between(&old, &new);
        assert_eq!(changes.functions.added, ["fresh"]);
        assert_eq!(changes.functions.changed, ["a"]);
        assert_eq!(changes.functions.removed, ["gone"]);
        assert_eq!(changes.aliases.added, ["a/beta"]);
        assert_eq!(changes.aliases.changed, ["a/prod"]);
        assert_eq!(changes.aliases.removed, ["a/old"]);
        assert_eq!(changes.to_string(), "functions +[fresh] ~[a] -[gone]; aliases +[a/beta] ~[a/prod] -[a/old]");
        assert!(Changes::between(&new, &new).is_empty());
        assert_eq!(Changes::between(&new, &new).to_string(), "nothing");
    }
}
